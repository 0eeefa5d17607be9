package activation

import (
	"context"
	"errors"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// leaseClock is a Clock that moves only when told; due timers fire on the
// goroutine that calls Advance.
type leaseClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *leaseClock
	at   time.Time
	f    func()
	done bool
}

func newLeaseClock() *leaseClock { return &leaseClock{now: time.Unix(1_000_000, 0)} }

func (c *leaseClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *leaseClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	return true
}

func (c *leaseClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.done:
		case !t.at.After(c.now):
			t.done = true
			due = append(due, t)
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// leaseClocks are the clocks every lease test runs on. The fake clock
// expires a lease on demand and fires timers on the goroutine that advances
// it, which orders everything a timer touches; the system clock fires them on
// goroutines of their own, so -race sees what the fake one hides.
type leaseClockCase struct {
	name  string
	fake  *leaseClock // nil: the system clock
	lease time.Duration
}

func leaseClocks() []leaseClockCase {
	return []leaseClockCase{
		{name: "fake", fake: newLeaseClock(), lease: 10 * time.Second},
		// Long enough to launch a server under -race on a loaded machine:
		// the session must outlive holdEverything.
		{name: "system", lease: 2 * time.Second},
	}
}

// clock is the case's Clock for ActivatorConfig.
func (c leaseClockCase) clock() Clock {
	if c.fake == nil {
		return nil
	}
	return c.fake
}

// advance moves the fake clock; the system clock moves by itself.
func (c leaseClockCase) advance(d time.Duration) {
	if c.fake != nil {
		c.fake.Advance(d)
	}
}

// A client that cannot be watched holds a lease; when it stops renewing, its
// session ends and releases everything.
func TestLeaseExpiry(t *testing.T) {
	for _, tc := range leaseClocks() {
		t.Run(tc.name, func(t *testing.T) {
			gone := newGoneWatch()
			a := newAct(t, ActivatorConfig{Linger: NoLinger, Clock: tc.clock(), Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}},
				actHooks{gone: gone.hook})
			sess, err := a.NewSession(SessionConfig{Lease: tc.lease})
			if err != nil {
				t.Fatal(err)
			}
			pid := holdEverything(t, a, sess)
			if tc.fake != nil {
				tc.advance(6 * time.Second)
				if err := sess.Renew(); err != nil {
					t.Fatal(err)
				}
				tc.advance(6 * time.Second) // 12 s since start, 6 since renewal
				if err := sess.Err(); err != nil {
					t.Fatalf("a renewed session expired: %v", err)
				}
				tc.advance(4 * time.Second) // 10 s since renewal
			}
			<-sess.Done()
			var se *SessionEndedError
			if err := sess.Err(); !errors.As(err, &se) || se.Lease != tc.lease {
				t.Fatalf("session error %v", err)
			}
			gone.waitFor(t, pid)
			if st := a.Stats(); st.Objects != 0 || st.ROTEntries != 0 {
				t.Fatalf("after expiry: %+v", st)
			}
		})
	}
}

// A session that is never used expires on its first timer: the timer's
// callback ends the session while NewSession may still be returning.
func TestLeaseExpiresUntouched(t *testing.T) {
	for _, tc := range leaseClocks() {
		t.Run(tc.name, func(t *testing.T) {
			a := newAct(t, ActivatorConfig{Clock: tc.clock(), Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}}, actHooks{})
			lease := tc.lease
			if tc.fake == nil {
				lease = time.Millisecond
			}
			for range 20 {
				sess, err := a.NewSession(SessionConfig{Lease: lease})
				if err != nil {
					t.Fatal(err)
				}
				tc.advance(lease)
				<-sess.Done()
				var se *SessionEndedError
				if err := sess.Err(); !errors.As(err, &se) || se.Lease != lease {
					t.Fatalf("session error %v", err)
				}
			}
			if st := a.Stats(); st.Sessions != 1 {
				t.Fatalf("sessions left: %+v", st)
			}
		})
	}
}

// A session that watches a client process and whose lease runs out at once
// may end before NewSession returns. Ending it must still stop its watch:
// nothing may be left waiting for the client to exit, so Close returns at
// once and no goroutine or descriptor stays behind (newAct checks).
func TestShortLeaseWithClientWatch(t *testing.T) {
	a := newAct(t, ActivatorConfig{Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}}, actHooks{})
	client := exec.Command("sleep", "3600")
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	defer client.Wait()
	defer client.Process.Kill()
	for range 200 {
		sess, err := a.NewSession(SessionConfig{PID: client.Process.Pid, Lease: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		<-sess.Done()
		var se *SessionEndedError
		if err := sess.Err(); !errors.As(err, &se) || se.Lease != time.Nanosecond {
			t.Fatalf("session error %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- a.Close(ctx) }()
	watchdog := time.NewTimer(10 * time.Second)
	defer watchdog.Stop()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-watchdog.C:
		client.Process.Kill() // lets Close return, so that the test can end
		<-closed
		t.Fatal("Close waited for the client process of an ended session")
	}
}

// Every operation through a session's handles renews its lease (the
// SessionConfig.Lease doc), not only calls: a client that only clones,
// registers or subscribes is as alive as one that calls.
func TestEveryHandleRenewsTheLease(t *testing.T) {
	clock := newLeaseClock()
	a := newAct(t, ActivatorConfig{Clock: clock, Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}}, actHooks{})
	ctx := context.Background()
	keep, err := a.CreateInstance(ctx, "Counter") // one server for every case
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Release()
	type held struct {
		sess *Session
		x    *Object
		co   *ClassObject
		sub  *Subscription
		name string // x's running object table entry
	}
	tests := []struct {
		name string
		op   func(h held) error
	}{
		{"Object.Call", func(h held) error { _, err := h.x.Call(ctx, "null"); return err }},
		{"Object.Clone", func(h held) error { _, err := h.x.Clone(); return err }},
		{"Object.Subscribe", func(h held) error { _, err := h.x.Subscribe(1); return err }},
		{"Object.Release", func(h held) error { return h.x.Release() }},
		{"Subscription.Close", func(h held) error { h.sub.Close(); return nil }},
		{"Session.Register", func(h held) error { return h.sess.Register(h.name+"/2", h.x, true) }},
		{"Session.Revoke", func(h held) error { return h.sess.Revoke(h.name) }},
		{"Session.Lookup", func(h held) error { _, err := h.sess.Lookup(h.name); return err }},
		{"Session.Renew", func(h held) error { return h.sess.Renew() }},
		{"Session.CreateInstance", func(h held) error { _, err := h.sess.CreateInstance(ctx, "Counter"); return err }},
		{"ClassObject.CreateInstance", func(h held) error { _, err := h.co.CreateInstance(ctx); return err }},
		{"ClassObject.LockServer", func(h held) error { return h.co.LockServer(true) }},
		{"ClassObject.Release", func(h held) error { return h.co.Release() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess, err := a.NewSession(SessionConfig{Lease: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			h := held{sess: sess, name: "renew/" + tt.name}
			if h.x, err = sess.CreateInstance(ctx, "Counter"); err != nil {
				t.Fatal(err)
			}
			if h.co, err = sess.GetClassObject(ctx, "Counter"); err != nil {
				t.Fatal(err)
			}
			if err := sess.Register(h.name, h.x, false); err != nil {
				t.Fatal(err)
			}
			if h.sub, err = h.x.Subscribe(1); err != nil {
				t.Fatal(err)
			}
			clock.Advance(6 * time.Second)
			if err := tt.op(h); err != nil {
				t.Fatal(err)
			}
			clock.Advance(6 * time.Second) // 12 s since the last renewal above, 6 since op
			if err := sess.Err(); err != nil {
				t.Fatalf("%s did not renew the lease: %v", tt.name, err)
			}
			clock.Advance(4 * time.Second) // 10 s since op
			<-sess.Done()
		})
	}
}
