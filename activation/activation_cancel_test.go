package activation

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// sendCounter counts the ACTIVATEs and OBJCALLs written, and tells ch
// (if set) about each.
type sendCounter struct {
	n  atomic.Int32
	ch chan struct{}
}

func (c *sendCounter) hook(*server, uint64) {
	c.n.Add(1)
	if c.ch != nil {
		c.ch <- struct{}{}
	}
}

func (c *sendCounter) hooks(h actHooks) actHooks {
	h.activateSent, h.callSent = c.hook, c.hook
	return h
}

// wantCanceled checks that err is a *CanceledError wrapping context.Canceled.
func wantCanceled(t *testing.T, err error) *bulkhead.CanceledError {
	t.Helper()
	var ce *bulkhead.CanceledError
	if !errors.As(err, &ce) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want a *bulkhead.CanceledError wrapping context.Canceled", err)
	}
	return ce
}

// An already-cancelled ctx returns a *CanceledError at once: nothing is sent
// and the server, shared with another client, is left alone. Before, the
// request went out and the server was killed, even when the call returned
// success.
func TestCanceledBeforeSendHarmsNothing(t *testing.T) {
	var sent sendCounter
	a := newAct(t, ActivatorConfig{Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}}, sent.hooks(actHooks{}))
	bg := context.Background()
	other, err := a.CreateInstance(bg, "Counter", 5) // another client's object on the same server
	if err != nil {
		t.Fatal(err)
	}
	defer other.Release()
	sess, _ := a.NewSession(SessionConfig{})
	x, err := sess.CreateInstance(bg, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	co, err := sess.GetClassObject(bg, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	canceled, cancel := context.WithCancel(bg)
	cancel()
	tests := []struct {
		name string
		op   func() error
	}{
		{"Session.CreateInstance", func() error { _, err := sess.CreateInstance(canceled, "Counter"); return err }},
		{"ClassObject.CreateInstance", func() error { _, err := co.CreateInstance(canceled); return err }},
		{"Session.GetClassObject", func() error { _, err := sess.GetClassObject(canceled, "Counter"); return err }},
		{"Object.Call", func() error { _, err := x.Call(canceled, "add", 1); return err }},
	}
	pid := other.PID()
	before := a.Stats()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent.n.Store(0)
			for range 5 {
				ce := wantCanceled(t, tt.op())
				if ce.RequestID != 0 || ce.PID != 0 {
					t.Fatalf("request %d to server %d: want none", ce.RequestID, ce.PID)
				}
			}
			if n := sent.n.Load(); n != 0 {
				t.Fatalf("%d requests sent", n)
			}
			if n := call[int](t, other, "add", 0); n != 5 {
				t.Fatalf("other client's object has %d", n)
			}
		})
	}
	if n := call[int](t, x, "add", 0); n != 0 {
		t.Fatalf("a cancelled call ran: %d", n)
	}
	st := a.Stats()
	if si, ok := serverState(a, pid); !ok || si.State != "running" || st.ServerCrashes != 0 ||
		st.Objects != before.Objects || st.Launches != 1 {
		t.Fatalf("server %+v, stats %+v", si, st)
	}
}

// A request whose ctx ends while it waits behind another request on a
// shared server, which has not started it, returns a *CanceledError and
// leaves the server running: the other request completes, and Wait then
// tells what the worker did with the abandoned one. Before, the server was
// killed, and every object on it disconnected.
func TestCanceledWhileQueuedLeavesServerRunning(t *testing.T) {
	tests := []struct {
		name string
		op   func(ctx context.Context, a *Activator, y *Object) error
		// check runs once the abandoned request has been answered.
		check func(t *testing.T, a *Activator, y *Object)
	}{
		{"Object.Call", func(ctx context.Context, _ *Activator, y *Object) error {
			_, err := y.Call(ctx, "add", 1)
			return err
		}, func(t *testing.T, a *Activator, y *Object) {
			if n := call[int](t, y, "add", 0); n != 1 {
				t.Fatalf("the worker ran the abandoned add, yet y has %d", n)
			}
		}},
		{"CreateInstance", func(ctx context.Context, a *Activator, _ *Object) error {
			_, err := a.CreateInstance(ctx, "Q")
			return err
		}, func(t *testing.T, a *Activator, _ *Object) {
			// The object the worker made after all has been released.
			if st := a.Stats(); st.Objects != 2 {
				t.Fatalf("stats %+v", st)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := sendCounter{ch: make(chan struct{}, 1)}
			var armed atomic.Bool
			a := newAct(t, ActivatorConfig{Servers: []ServerConfig{helperServer(t, "Q:single", multi("Q"))}},
				actHooks{activateSent: func(s *server, oid uint64) {
					if armed.Load() {
						sent.hook(s, oid)
					}
				}, callSent: func(s *server, oid uint64) {
					if armed.Load() {
						sent.hook(s, oid)
					}
				}})
			bg := context.Background()
			x, _ := a.CreateInstance(bg, "Q")
			y, err := a.CreateInstance(bg, "Q")
			if err != nil {
				t.Fatal(err)
			}
			defer x.Release()
			defer y.Release()
			pid := x.PID()
			sub, _ := x.Subscribe(1)
			blocked := make(chan error, 1)
			go func() {
				_, err := x.Call(bg, "block")
				blocked <- err
			}()
			<-sub.Events() // the server runs x's call, on its only thread

			ctx, cancel := context.WithCancel(bg)
			armed.Store(true)
			res := make(chan error, 1)
			go func() { res <- tt.op(ctx, a, y) }()
			<-sent.ch // queued behind x's call, not started
			armed.Store(false)
			cancel()
			ce := wantCanceled(t, <-res)
			if si, ok := serverState(a, pid); !ok || si.State != "running" {
				t.Fatalf("the server was harmed: %+v", si)
			}
			syscall.Kill(pid, syscall.SIGUSR1)
			if err := <-blocked; err != nil {
				t.Fatalf("the request the server was running: %v", err)
			}
			waitCanceled(t, ce)
			if !ce.Started || ce.PID != pid {
				t.Fatalf("after Wait: %+v", ce)
			}
			tt.check(t, a, y)
			if st := a.Stats(); st.ServerCrashes != 0 || st.Launches != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// waitCanceled waits for ce.Wait, failing the test if it takes long.
func waitCanceled(t *testing.T, ce *bulkhead.CanceledError) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		ce.Wait()
		close(done)
	}()
	watchdog := time.NewTimer(20 * time.Second)
	defer watchdog.Stop()
	select {
	case <-done:
	case <-watchdog.C:
		t.Fatal("CanceledError.Wait never returned")
	}
}

// Whatever a short deadline interrupts, the caller gets a working object
// (or answer) or a *CanceledError, never success from a server that was
// killed for the cancellation.
func TestShortDeadlineNeverSucceedsOnAKilledServer(t *testing.T) {
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}}, actHooks{})
	bg := context.Background()
	keep, err := a.CreateInstance(bg, "Counter") // a running server to send to
	if err != nil {
		t.Fatal(err)
	}
	defer func() { keep.Release() }()
	// check fails the test if op succeeded and o is then unusable.
	check := func(i int, what string, o *Object, err error) {
		var ce *bulkhead.CanceledError
		switch {
		case err != nil && !errors.As(err, &ce):
			t.Fatalf("attempt %d: %s: %v", i, what, err)
		case err == nil:
			if _, err := o.Call(bg, "null"); err != nil {
				t.Fatalf("attempt %d: %s succeeded, then: %v", i, what, err)
			}
		}
	}
	for i := range 40 {
		d := time.Duration(i%8) * 50 * time.Microsecond
		ctx, cancel := context.WithTimeout(bg, d)
		o, err := a.CreateInstance(ctx, "Counter")
		check(i, "CreateInstance", o, err)
		cancel()
		if err == nil {
			ctx, cancel := context.WithTimeout(bg, d)
			_, err := o.Call(ctx, "add", 1)
			check(i, "Call", o, err)
			cancel()
			o.Release()
		}
		if _, err := keep.Call(bg, "null"); err != nil {
			// Killed for a cancellation that returned a *CanceledError,
			// as it may: start over on a fresh server.
			keep.Release()
			if keep, err = a.CreateInstance(bg, "Counter"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A request whose ctx ends while its server runs it costs the server, which
// may be stuck in it; the report says how the server ended, and Started is
// read once it is dead, when no request in its socket can start any more
// (before, Started was read at the kill, and ExitCode and Signal were
// empty). A request queued behind it on a server that dies is reported
// not started, by the dead server's marker.
func TestCanceledRequestReport(t *testing.T) {
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "Q:single", multi("Q"))}}, actHooks{})
	bg := context.Background()
	x, err := a.CreateInstance(bg, "Q")
	if err != nil {
		t.Fatal(err)
	}
	defer x.Release()
	sub, _ := x.Subscribe(1)
	ctx, cancel := context.WithCancel(bg)
	res := make(chan error, 1)
	go func() {
		_, err := x.Call(ctx, "block")
		res <- err
	}()
	<-sub.Events() // the server runs it
	cancel()
	ce := wantCanceled(t, <-res)
	waitCanceled(t, ce)
	if !ce.Started || ce.Signal != syscall.SIGKILL || ce.ExitCode != -1 || ce.Reason == "" {
		t.Fatalf("after Wait: %+v", ce)
	}
	// Its end is no crash (a pool's hung worker is none either), and a
	// bystander's error says whose request it was.
	var de *DisconnectedError
	var crash *bulkhead.CrashError
	if _, err := x.Call(bg, "null"); !errors.As(err, &de) || !errors.As(err, &crash) || crash.AbandonedBy != ce.RequestID {
		t.Fatalf("a call after the kill: %v, want a *DisconnectedError naming request %d", err, ce.RequestID)
	}
	if st := a.Stats(); st.ServerCrashes != 0 {
		t.Fatalf("the activator's kill counted as a crash: %+v", st)
	}
}

func TestQueuedRequestOnDeadServer(t *testing.T) {
	sent := sendCounter{ch: make(chan struct{}, 1)}
	var armed atomic.Bool
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "Q:single", multi("Q"))}},
		actHooks{callSent: func(s *server, oid uint64) {
			if armed.Load() {
				sent.hook(s, oid)
			}
		}})
	bg := context.Background()
	x, _ := a.CreateInstance(bg, "Q")
	y, err := a.CreateInstance(bg, "Q")
	if err != nil {
		t.Fatal(err)
	}
	defer x.Release()
	defer y.Release()
	sub, _ := x.Subscribe(1)
	blocked := make(chan error, 1)
	go func() {
		_, err := x.Call(bg, "block")
		blocked <- err
	}()
	<-sub.Events()
	ctx, cancel := context.WithCancel(bg)
	armed.Store(true)
	res := make(chan error, 1)
	go func() {
		_, err := y.Call(ctx, "add", 1)
		res <- err
	}()
	<-sent.ch // queued behind x's call
	armed.Store(false)
	cancel()
	ce := wantCanceled(t, <-res)
	syscall.Kill(x.PID(), syscall.SIGKILL)
	var de *DisconnectedError
	if err := <-blocked; !errors.As(err, &de) {
		t.Fatalf("the running request: %v, want a *DisconnectedError", err)
	}
	waitCanceled(t, ce)
	if ce.Started || !strings.Contains(ce.Reason, "connection ended") {
		t.Fatalf("after Wait: %+v", ce)
	}
}
