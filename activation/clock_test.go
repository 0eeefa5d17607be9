package activation

import (
	"sync/atomic"
	"testing"
	"time"
)

// Every path of an owned timer calls f at most once and releases the
// activator's WaitGroup exactly once, whether Stop comes before arm, before
// the timer is due, or after it fired.
func TestOwnedTimer(t *testing.T) {
	tests := []struct {
		name     string
		run      func(a *Activator, clk *leaseClock, f func()) (stopped bool)
		wantCall bool
		wantStop bool
	}{
		{"stop before arm", func(a *Activator, clk *leaseClock, f func()) bool {
			tm := a.newTimer()
			ok := tm.Stop()
			tm.arm(time.Second, f)
			clk.Advance(time.Second)
			return ok
		}, false, true},
		{"stop before due", func(a *Activator, clk *leaseClock, f func()) bool {
			tm := a.newTimer()
			tm.arm(time.Second, f)
			ok := tm.Stop()
			clk.Advance(time.Second)
			return ok
		}, false, true},
		{"stop after firing", func(a *Activator, clk *leaseClock, f func()) bool {
			tm := a.newTimer()
			tm.arm(time.Second, f)
			clk.Advance(time.Second)
			return tm.Stop()
		}, true, false},
		{"stop twice", func(a *Activator, clk *leaseClock, f func()) bool {
			tm := a.newTimer()
			tm.arm(time.Second, f)
			tm.Stop()
			return tm.Stop()
		}, false, false},
		{"nil", func(*Activator, *leaseClock, func()) bool {
			var tm *ownedTimer
			tm.stopWait()
			return tm.Stop()
		}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newLeaseClock()
			a := &Activator{clock: clk}
			var calls atomic.Int32
			stopped := tt.run(a, clk, func() { calls.Add(1) })
			a.wg.Wait() // hangs if a path forgot Done
			if got := calls.Load() == 1; got != tt.wantCall || calls.Load() > 1 {
				t.Fatalf("f called %d times, want call %v", calls.Load(), tt.wantCall)
			}
			if stopped != tt.wantStop {
				t.Fatalf("Stop = %v, want %v", stopped, tt.wantStop)
			}
		})
	}
}

// stopWait returns only after a callback that had started has returned.
func TestOwnedTimerStopWaitsForCallback(t *testing.T) {
	a := &Activator{clock: systemClock{}}
	entered, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	tm := a.newTimer()
	tm.arm(0, func() {
		close(entered)
		<-release
		finished.Store(true)
	})
	<-entered
	waited := make(chan bool)
	go func() {
		tm.stopWait()
		waited <- finished.Load()
	}()
	close(release)
	if !<-waited {
		t.Fatal("stopWait returned while the callback was running")
	}
	a.wg.Wait()
}
