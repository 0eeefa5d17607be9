package bulkhead_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead"
)

// TestSnapshotBusyWorker holds a call behind a gate and reads it back as
// the worker's current call, with the worker's memory from /proc.
func TestSnapshotBusyWorker(t *testing.T) {
	p := newPool(t, bulkhead.Config{})
	g := newGate(t)
	ch := callPID(p, context.Background(), "gate", map[string]any{"Fifo": g.path})
	waitInFlight(t, p, 1)
	var w bulkhead.WorkerInfo
	for w.Current == nil || w.Current.RequestID == 0 { // sent a moment after the worker was taken
		s := p.Snapshot()
		if len(s.Workers) != 1 {
			t.Fatalf("workers %+v", s.Workers)
		}
		w = s.Workers[0]
		runtimeGosched()
	}
	if w.State != "busy" || w.Current == nil || w.Current.Method != "gate" || w.Current.RequestID == 0 || w.Current.Running < 0 {
		t.Errorf("busy worker %+v, current %+v", w, w.Current)
	}
	if w.RSS <= 0 {
		t.Errorf("worker's RSS %d", w.RSS)
	}
	g.open()
	if r := <-ch; r.err != nil {
		t.Fatal(r.err)
	}
	w = p.Snapshot().Workers[0]
	if w.State != "idle" || w.Current != nil || w.Calls != 1 {
		t.Errorf("idle worker %+v", w)
	}
}

// TestSnapshotCrashLog crashes a worker in C and finds the crash in the
// log with its signal, call, fingerprint and stderr.
func TestSnapshotCrashLog(t *testing.T) {
	p := newPool(t, bulkhead.Config{QuarantineAfter: 5})
	_, err := p.Call(context.Background(), "segv")
	var ce *bulkhead.CrashError
	if !errors.As(err, &ce) {
		t.Fatalf("segv: %v", err)
	}
	// The caller saw the crash; onExit may log it a moment later.
	var cs []bulkhead.CrashRecord
	for len(cs) == 0 {
		cs = p.Snapshot().Crashes
		runtimeGosched()
	}
	c := cs[0]
	if c.PID != ce.PID || c.Phase != bulkhead.PhaseCall || c.Signal != syscall.SIGSEGV || c.Method != "segv" ||
		c.RequestID != ce.RequestID || !strings.HasPrefix(c.Fingerprint, "segv #") || c.Stderr != ce.Stderr {
		t.Errorf("crash record %+v\nfrom %+v", c, ce)
	}
}
