package activation

import (
	"sync"
	"time"
)

// Clock is the activator's source of time, for leases and linger. Tests
// inject a fake one to expire a lease without waiting for it.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f on its own goroutine after d, unless stopped.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop prevents the call; it reports false if the call has already
	// started or the timer was stopped.
	Stop() bool
}

// systemClock is the real clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// ownedTimer is a timer whose callback belongs to the activator: the
// activator's WaitGroup counts it from newTimer until its callback has
// returned, or it has been stopped before the callback started.
//
// It is made in two steps. newTimer takes the WaitGroup's count under
// Activator.mu, where Close cannot have started waiting; arm then calls the
// Clock, a user's code, with no lock held. Stop may come at any point,
// before arm too: the callback then never calls f.
type ownedTimer struct {
	clock Clock
	done  func() // the WaitGroup's Done, called exactly once

	mu      sync.Mutex
	t       Timer // nil until armed
	stopped bool
	fired   bool          // the callback has started
	ran     chan struct{} // closed when the callback has returned
}

// newTimer reserves a timer. Call it with a.mu held, after checking that the
// activator is not closed, and arm it once the lock is released.
func (a *Activator) newTimer() *ownedTimer {
	a.wg.Add(1)
	return &ownedTimer{clock: a.clock, done: a.wg.Done, ran: make(chan struct{})}
}

// arm starts the timer: f runs after d unless Stop comes first.
func (t *ownedTimer) arm(d time.Duration, f func()) {
	tt := t.clock.AfterFunc(d, func() {
		t.mu.Lock()
		t.fired = true
		stopped := t.stopped
		t.mu.Unlock()
		if !stopped {
			f()
		}
		close(t.ran)
		t.done()
	})
	t.mu.Lock()
	t.t = tt
	stopped := t.stopped
	t.mu.Unlock()
	if stopped && tt.Stop() {
		// Stopped before it was armed, and the clock has not called it.
		close(t.ran)
		t.done()
	}
}

// Stop prevents f from running; it reports false if f has started already
// (or the timer was stopped before). A nil timer is never armed.
func (t *ownedTimer) Stop() bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	if t.stopped || t.fired {
		t.mu.Unlock()
		return false
	}
	t.stopped = true
	tt := t.t
	t.mu.Unlock()
	// Not armed yet: arm stops it. Armed: if the clock has not called it,
	// nobody will; if it is calling it, the callback finds stopped set.
	if tt != nil && tt.Stop() {
		close(t.ran)
		t.done()
	}
	return true
}

// stopWait stops the timer and, if its callback has started, waits for it
// to return: after it, nothing the callback touches is in use by it. Call it
// with no lock held that the callback takes.
func (t *ownedTimer) stopWait() {
	if t == nil || t.Stop() {
		return
	}
	t.mu.Lock()
	fired := t.fired
	t.mu.Unlock()
	if fired {
		<-t.ran
	}
}
