package activation

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// helperServer is a ServerConfig that runs this test binary as a class
// server serving spec (see activation_helper_test.go).
func helperServer(t testing.TB, spec string, classes []ClassConfig, env ...string) ServerConfig {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A race-enabled child sleeps a second at exit unless told not to.
	e := testutil.HelperEnviron("classes", append([]string{actClassesEnv + "=" + spec, "GORACE=atexit_sleep_ms=0"}, env...)...)
	return ServerConfig{Name: "helper", Process: bulkhead.Process{Command: exe, Env: e}, Classes: classes}
}

func multi(names ...string) []ClassConfig {
	var cc []ClassConfig
	for _, n := range names {
		cc = append(cc, ClassConfig{Name: n})
	}
	return cc
}

// newAct starts an activator and checks, when the test ends, that closing
// it left no process, descriptor or goroutine behind.
func newAct(t testing.TB, cfg ActivatorConfig, h actHooks) *Activator {
	t.Helper()
	checkLeaks(t)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a, err := newActivator(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return a
}

// goneWatch collects the servers whose exit has been processed.
type goneWatch struct{ ch chan *server }

func newGoneWatch() *goneWatch { return &goneWatch{ch: make(chan *server, 64)} }

func (g *goneWatch) hook(s *server) { g.ch <- s }

// waitFor waits until server pid is gone.
func (g *goneWatch) waitFor(t *testing.T, pid int) {
	t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case s := <-g.ch:
			if s.pid == pid {
				return
			}
		case <-timeout.C:
			t.Fatalf("server %d never went away", pid)
		}
	}
}

func call[T any](t *testing.T, o *Object, method string, args ...any) T {
	t.Helper()
	var v T
	r, err := o.Call(context.Background(), method, args...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if err := r.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func serverState(a *Activator, pid int) (ServerInfo, bool) {
	for _, si := range a.Servers() {
		if si.PID == pid {
			return si, true
		}
	}
	return ServerInfo{}, false
}

func TestActivationBasics(t *testing.T) {
	a := newAct(t, ActivatorConfig{Servers: []ServerConfig{helperServer(t, "Counter:apartment", multi("Counter"))}}, actHooks{})
	ctx := context.Background()
	x, err := a.CreateInstance(ctx, "Counter", 10)
	if err != nil {
		t.Fatal(err)
	}
	if n := call[int](t, x, "add", 5); n != 15 {
		t.Fatalf("add = %d", n)
	}
	y, err := x.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Release(); err != nil {
		t.Fatal(err)
	}
	if err := x.Release(); !errors.Is(err, ErrReleased) {
		t.Fatalf("double release: %v", err)
	}
	if _, err := x.Call(ctx, "add", 1); !errors.Is(err, ErrReleased) {
		t.Fatalf("call on a released handle: %v", err)
	}
	if n := call[int](t, y, "add", 1); n != 16 {
		t.Fatalf("the clone sees %d: the object died with the first handle", n)
	}
	var re *bulkhead.RemoteError
	if _, err := y.Call(ctx, "nope"); !errors.As(err, &re) || re.Code != bulkhead.CodeUnknownMethod {
		t.Fatalf("unknown method: %v", err)
	}
	if _, err := a.CreateInstance(ctx, "Counter", -1); !errors.As(err, &re) || !strings.Contains(re.Message, "negative start") {
		t.Fatalf("constructor error: %v", err)
	}
	if _, err := a.CreateInstance(ctx, "Nope"); !errors.Is(err, ErrUnknownClass) {
		t.Fatalf("unknown class: %v", err)
	}
	if err := y.Release(); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.Activations != 1 || st.Launches != 1 || st.Objects != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Seed 001, figure 3: the race to LockServer. Client A gets a class handle;
// before it can call LockServer, client B creates and releases the last
// object on the same server. The handout locked the server in the same
// step, so B's release cannot stop it.
func TestRaceToLockServer(t *testing.T) {
	var armed atomic.Bool
	handedOut := make(chan *ClassObject)
	proceed := make(chan struct{})
	gone := newGoneWatch()
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "Counter:apartment", multi("Counter"))}},
		actHooks{gone: gone.hook, handout: func(co *ClassObject) {
			if armed.Load() {
				handedOut <- co
				<-proceed
			}
		}})
	ctx := context.Background()
	armed.Store(true)
	type result struct {
		co  *ClassObject
		err error
	}
	got := make(chan result, 1)
	go func() {
		co, err := a.GetClassObject(ctx, "Counter")
		got <- result{co, err}
	}()
	held := <-handedOut // A holds the handle and has not called LockServer
	armed.Store(false)

	b, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	if b.PID() != held.PID() {
		t.Fatalf("B went to server %d, A's handle is on %d", b.PID(), held.PID())
	}
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	if si, ok := serverState(a, held.PID()); !ok || si.State != "running" || si.Locks != 1 {
		t.Fatalf("after B's last release the server is %+v (found %v); want running with A's lock", si, ok)
	}
	close(proceed)
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	co := r.co
	if err := co.LockServer(true); err != nil {
		t.Fatal(err)
	}
	o, err := co.CreateInstance(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if o.PID() != held.PID() {
		t.Fatalf("object on %d, class handle on %d", o.PID(), held.PID())
	}
	o.Release()
	if err := co.LockServer(false); err != nil {
		t.Fatal(err)
	}
	if err := co.LockServer(false); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("unbalanced unlock: %v", err)
	}
	if si, ok := serverState(a, held.PID()); !ok || si.State != "running" {
		t.Fatalf("the class handle alone must keep the server: %+v", si)
	}
	if err := co.Release(); err != nil {
		t.Fatal(err)
	}
	gone.waitFor(t, held.PID())
	if err := co.Release(); !errors.Is(err, ErrReleased) {
		t.Fatalf("double release of a class handle: %v", err)
	}
	if st := a.Stats(); st.Launches != 1 || st.ServerStops != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Seed 001: the gap between the decision to shut down and the suspend
// (PostQuitMessage ... CoRevokeClassObject). The last release decides and
// suspends in one critical section; the hook holds the server right after
// it, before SUSPEND or QUIT is sent, while a new activation comes in: it
// must go to a new server, never to the one that decided.
func TestDecisionAndSuspendAreOneStep(t *testing.T) {
	var armed atomic.Bool
	decided := make(chan *server)
	proceed := make(chan struct{})
	gone := newGoneWatch()
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}},
		actHooks{gone: gone.hook, decided: func(s *server) {
			if armed.Load() {
				decided <- s
				<-proceed
			}
		}})
	ctx := context.Background()
	x, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	first := x.PID()
	armed.Store(true)
	released := make(chan error, 1)
	go func() { released <- x.Release() }()
	s := <-decided
	armed.Store(false)
	if si, ok := serverState(a, first); !ok || si.State != "stopping" {
		t.Fatalf("right after the decision the server is %+v; want stopping (suspended)", si)
	}
	y, err := a.CreateInstance(ctx, "Counter", 1)
	if err != nil {
		t.Fatal(err)
	}
	if y.PID() == first || y.PID() == s.pid {
		t.Fatalf("activation routed to the server that had decided to stop (%d)", first)
	}
	close(proceed)
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	gone.waitFor(t, first)
	if n := call[int](t, y, "add", 1); n != 2 {
		t.Fatalf("add = %d", n)
	}
	if st := a.Stats(); st.Launches != 2 || st.StoppingRetries != 0 {
		t.Fatalf("stats %+v", st)
	}
	y.Release()
}

// Seeds 001 and 002: a multi-class server. An activation that arrives after
// the server registered its first class but before it resumed them all must
// wait: nothing is sent to the server before RESUME.
func TestActivationBeforeResumeWaits(t *testing.T) {
	var mu sync.Mutex
	var trace []string
	note := func(s string) {
		mu.Lock()
		trace = append(trace, s)
		mu.Unlock()
	}
	regA := make(chan *server)
	proceed := make(chan struct{})
	waiting := make(chan string, 4)
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "A:apartment,B:free", multi("A", "B"))}},
		actHooks{
			frame: func(_ *server, t wire.Type) { note(t.String()) },
			registered: func(s *server, class string) {
				if class == "A" {
					regA <- s
					<-proceed
				}
			},
			waiting:      func(class string) { waiting <- class },
			activateSent: func(*server, uint64) { note("ACTIVATE sent") },
		})
	ctx := context.Background()
	type result struct {
		o   *Object
		err error
	}
	results := make(chan result, 2)
	activate := func(class string) {
		o, err := a.CreateInstance(ctx, class)
		results <- result{o, err}
	}
	go activate("A")
	if c := <-waiting; c != "A" {
		t.Fatalf("waiting for %q", c)
	}
	s := <-regA // A registered; B not yet; nothing resumed
	go activate("B")
	if c := <-waiting; c != "B" {
		t.Fatalf("waiting for %q", c)
	}
	if si, ok := serverState(a, s.pid); !ok || si.State != "registered" || !slices.Equal(si.Classes, []string{"A"}) {
		t.Fatalf("server before resume: %+v", si)
	}
	close(proceed)
	var objs []*Object
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.o.PID() != s.pid {
			t.Fatalf("object on %d, want the server being registered (%d)", r.o.PID(), s.pid)
		}
		objs = append(objs, r.o)
	}
	mu.Lock()
	got := strings.Join(trace, ",")
	mu.Unlock()
	if want := "REGISTER,REGISTER,RESUME,ACTIVATE sent,ACTIVATE sent"; got != want {
		t.Fatalf("trace %s\nwant  %s", got, want)
	}
	for _, o := range objs {
		o.Release()
	}
	if st := a.Stats(); st.Launches != 1 {
		t.Fatalf("launches %d", st.Launches)
	}
}

// Seed 004: the server decides to stop by itself (it revokes its classes)
// while an activation is on its way to it. The server answers "server
// stopping"; the activator launches another and retries; the caller never
// sees it. The REVOKE is held at the dispatcher until the ACTIVATE has been
// written, so the activation surely crosses the decision.
func TestLateActivationIsRetried(t *testing.T) {
	var armed atomic.Bool
	revoked := make(chan *server)
	proceed := make(chan struct{})
	sent := make(chan *server, 1)
	gone := newGoneWatch()
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "Counter:apartment", multi("Counter"))}},
		actHooks{gone: gone.hook,
			frame: func(s *server, ty wire.Type) {
				if ty == wire.TypeRevoke && armed.Load() {
					revoked <- s
					<-proceed
				}
			},
			activateSent: func(s *server, _ uint64) {
				if armed.Load() {
					sent <- s
				}
			}})
	ctx := context.Background()
	x, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	revokeDone := make(chan error, 1)
	go func() {
		_, err := x.Call(ctx, "revoke")
		revokeDone <- err
	}()
	s := <-revoked
	type result struct {
		o   *Object
		err error
	}
	got := make(chan result, 1)
	go func() {
		o, err := a.CreateInstance(ctx, "Counter", 3)
		got <- result{o, err}
	}()
	if to := <-sent; to != s {
		t.Fatalf("activation sent to %d, want the stopping server %d", to.pid, s.pid)
	}
	armed.Store(false)
	close(proceed)
	r := <-got
	if r.err != nil {
		t.Fatalf("the caller saw the late activation: %v", r.err)
	}
	if r.o.PID() == s.pid {
		t.Fatal("object created on the stopping server")
	}
	if n := call[int](t, r.o, "add", 1); n != 4 {
		t.Fatalf("add = %d", n)
	}
	if err := <-revokeDone; err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.StoppingRetries != 1 || st.Launches != 2 {
		t.Fatalf("stats %+v", st)
	}
	// The revoked server keeps serving what it has, and goes when that
	// is released.
	if n := call[int](t, x, "add", 2); n != 2 {
		t.Fatalf("add on the revoked server = %d", n)
	}
	x.Release()
	gone.waitFor(t, s.pid)
	r.o.Release()
}

// A client that dies while it holds references, a class handle, an explicit
// lock and a keep-alive ROT entry: its session ends the moment the process
// exits, everything is released, and the server, now unlocked, stops.
func TestClientDeathReleasesEverything(t *testing.T) {
	gone := newGoneWatch()
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}},
		actHooks{gone: gone.hook})
	client := exec.Command("sleep", "3600")
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	sess, err := a.NewSession(SessionConfig{PID: client.Process.Pid})
	if err != nil {
		t.Fatal(err)
	}
	pid := holdEverything(t, a, sess)
	client.Process.Kill()
	client.Wait()
	<-sess.Done()
	var se *SessionEndedError
	if err := sess.Err(); !errors.As(err, &se) || se.PID != client.Process.Pid || !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("session error %v", err)
	}
	gone.waitFor(t, pid)
	if st := a.Stats(); st.Objects != 0 || st.ROTEntries != 0 || st.Servers != 0 {
		t.Fatalf("after the client died: %+v", st)
	}
	if _, err := sess.CreateInstance(context.Background(), "Counter"); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("create on an ended session: %v", err)
	}
}

// holdEverything takes every kind of reference in sess and returns the pid
// of the server they lock.
func holdEverything(t *testing.T, a *Activator, sess *Session) int {
	t.Helper()
	ctx := context.Background()
	x, err := sess.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Clone(); err != nil {
		t.Fatal(err)
	}
	co, err := sess.GetClassObject(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	if err := co.LockServer(true); err != nil {
		t.Fatal(err)
	}
	if err := sess.Register("held-by-"+strconv.Itoa(x.PID()), x, true); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Objects != 1 || st.ROTEntries != 1 {
		t.Fatalf("stats %+v", st)
	}
	return x.PID()
}

func TestSessionCloseReleasesEverything(t *testing.T) {
	gone := newGoneWatch()
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}},
		actHooks{gone: gone.hook})
	sess, err := a.NewSession(SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	pid := holdEverything(t, a, sess)
	sess.Close()
	gone.waitFor(t, pid)
	if st := a.Stats(); st.Objects != 0 || st.ROTEntries != 0 || st.Sessions != 1 {
		t.Fatalf("after Close: %+v", st)
	}
}

// A server that dies disconnects its objects: calls fail with
// TestServerCrashFunction: a class server's crash report names the function
// it died in, as a pool worker's does (bulkhead.NativeFunction): on the
// crashing call's error and on the next call of another of its objects.
func TestServerCrashFunction(t *testing.T) {
	gone := newGoneWatch()
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}},
		actHooks{gone: gone.hook})
	ctx := context.Background()
	x, _ := a.CreateInstance(ctx, "Counter")
	y, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	defer y.Release()
	defer x.Release()
	pid := x.PID()
	_, err = x.Call(ctx, "cfault")
	var ce *bulkhead.CrashError
	if !errors.As(err, &ce) || ce.Function != "XML_Parse" || ce.RequestID == 0 || ce.Method != "cfault" {
		t.Fatalf("call that crashed the server: %v (%+v)", err, ce)
	}
	gone.waitFor(t, pid)
	_, err = y.Call(ctx, "add", 1)
	if !errors.As(err, &ce) || ce.Function != "XML_Parse" {
		t.Fatalf("call on another object of the dead server: %v (%+v)", err, ce)
	}
}

// ErrObjectDisconnected wrapping the *CrashError; its ROT entries go; the
// next activation launches a fresh server.
func TestServerCrashDisconnects(t *testing.T) {
	gone := newGoneWatch()
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}},
		actHooks{gone: gone.hook})
	ctx := context.Background()
	x, _ := a.CreateInstance(ctx, "Counter")
	y, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	pid := x.PID()
	if err := a.Register("x", x, false); err != nil {
		t.Fatal(err)
	}
	if err := a.Register("y", y, true); err != nil {
		t.Fatal(err)
	}
	sub, err := y.Subscribe(4)
	if err != nil {
		t.Fatal(err)
	}
	_, err = x.Call(ctx, "kill")
	var ce *bulkhead.CrashError
	if !errors.Is(err, ErrObjectDisconnected) || !errors.As(err, &ce) || ce.Signal != syscall.SIGKILL || ce.Phase != bulkhead.PhaseCall {
		t.Fatalf("call that crashed the server: %v", err)
	}
	gone.waitFor(t, pid)
	_, err = y.Call(ctx, "add", 1)
	var de *DisconnectedError
	if !errors.As(err, &de) || de.Object != y.ID() || !errors.As(err, &ce) || ce.Signal != syscall.SIGKILL {
		t.Fatalf("call on another object of the dead server: %v", err)
	}
	if _, ok := <-sub.Events(); ok || !errors.Is(sub.Err(), ErrObjectDisconnected) {
		t.Fatalf("subscription after the crash: %v", sub.Err())
	}
	if _, err := a.Lookup("x"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("ROT entry survived its server: %v", err)
	}
	if st := a.Stats(); st.ROTEntries != 0 || st.Objects != 0 || st.ServerCrashes != 1 || st.Disconnected != 2 {
		t.Fatalf("stats %+v", st)
	}
	z, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	if z.PID() == pid {
		t.Fatal("activation on the dead server")
	}
	for _, h := range []*Object{x, y, z} {
		if err := h.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Revoke("y"); err != nil {
		t.Fatal(err)
	}
}

func TestInstancing(t *testing.T) {
	gone := newGoneWatch()
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{
		helperServer(t, "Multi:free", multi("Multi")),
		helperServer(t, "Iso:apartment", []ClassConfig{{Name: "Iso", Instancing: SingleUse}}),
		helperServer(t, "Pool:free", []ClassConfig{{Name: "Pool", Instancing: Pooled, PoolSize: 2}}),
	}}, actHooks{gone: gone.hook})
	ctx := context.Background()
	mk := func(class string) *Object {
		o, err := a.CreateInstance(ctx, class)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	m1, m2 := mk("Multi"), mk("Multi")
	if m1.PID() != m2.PID() {
		t.Fatalf("multiple-use objects in %d and %d", m1.PID(), m2.PID())
	}
	i1, i2 := mk("Iso"), mk("Iso")
	if i1.PID() == i2.PID() || i1.PID() == m1.PID() {
		t.Fatalf("single-use objects share server %d", i1.PID())
	}
	p1, p2, p3 := mk("Pool"), mk("Pool"), mk("Pool")
	if p1.PID() == p2.PID() || (p3.PID() != p1.PID() && p3.PID() != p2.PID()) {
		t.Fatalf("pooled objects in %d %d %d; want two servers", p1.PID(), p2.PID(), p3.PID())
	}
	cookies := map[string]bool{}
	for _, si := range a.Servers() {
		cookies[si.Cookie] = true
	}
	if len(a.Servers()) != 5 || len(cookies) != 5 {
		t.Fatalf("servers %+v", a.Servers())
	}
	i1.Release()
	gone.waitFor(t, i1.PID())
	for _, o := range []*Object{m1, m2, i2, p1, p2, p3} {
		o.Release()
	}
}

// Linger keeps a stopping server's process for a while, but it is
// suspended from the decision: a new activation goes to a new server.
func TestLinger(t *testing.T) {
	clock := newLeaseClock()
	gone := newGoneWatch()
	a := newAct(t, ActivatorConfig{Linger: time.Second, Clock: clock, Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}},
		actHooks{gone: gone.hook})
	ctx := context.Background()
	x, _ := a.CreateInstance(ctx, "Counter")
	pid := x.PID()
	x.Release()
	if si, ok := serverState(a, pid); !ok || si.State != "stopping" {
		t.Fatalf("lingering server %+v", si)
	}
	y, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	if y.PID() == pid {
		t.Fatal("activation routed to a lingering server")
	}
	clock.Advance(time.Second)
	gone.waitFor(t, pid)
	y.Release()
	clock.Advance(time.Second)
	gone.waitFor(t, y.PID())
}

func TestRunningObjectTable(t *testing.T) {
	gone := newGoneWatch()
	a := newAct(t, ActivatorConfig{Linger: NoLinger, MaxROTEntries: 2, Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}},
		actHooks{gone: gone.hook})
	ctx := context.Background()
	x, _ := a.CreateInstance(ctx, "Counter", 5)
	pid := x.PID()
	for _, name := range []string{"", strings.Repeat("n", 257), "bad\x00name", string([]byte{0xff})} {
		if err := a.Register(name, x, false); !errors.Is(err, ErrInvalidName) {
			t.Fatalf("Register(%q) = %v", name, err)
		}
	}
	if err := a.Register("keep", x, true); err != nil {
		t.Fatal(err)
	}
	if err := a.Register("weak", x, false); err != nil {
		t.Fatal(err)
	}
	if err := a.Register("keep", x, false); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("duplicate name: %v", err)
	}
	if err := a.Register("third", x, false); !errors.Is(err, ErrROTFull) {
		t.Fatalf("over the bound: %v", err)
	}
	x.Release() // the keep-alive entry still holds it
	sess, _ := a.NewSession(SessionConfig{})
	l, err := sess.Lookup("weak")
	if err != nil {
		t.Fatal(err)
	}
	if n := call[int](t, l, "add", 1); n != 6 {
		t.Fatalf("looked-up object has %d", n)
	}
	l.Release()
	if err := sess.Revoke("keep"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("revoke by another session: %v", err)
	}
	if err := a.Revoke("keep"); err != nil { // last reference: object and server go
		t.Fatal(err)
	}
	gone.waitFor(t, pid)
	if _, err := a.Lookup("weak"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("weak entry outlived its object: %v", err)
	}
	sess.Close()
}

// Events reach every subscriber in order; one that falls behind is cut off
// with a typed error and stalls neither the worker nor the others.
func TestEventsAndSlowSubscriber(t *testing.T) {
	a := newAct(t, ActivatorConfig{Servers: []ServerConfig{helperServer(t, "Probe:free", multi("Probe"))}}, actHooks{})
	x, err := a.CreateInstance(context.Background(), "Probe")
	if err != nil {
		t.Fatal(err)
	}
	fast, _ := x.Subscribe(100)
	slow, _ := x.Subscribe(1)
	if _, err := x.Subscribe(0); err == nil {
		t.Fatal("zero buffer accepted")
	}
	if n := call[int](t, x, "emit", 50); n != 50 {
		t.Fatalf("emit = %d", n)
	}
	// The worker emitted before replying; the reply is read after the
	// events, so all of them have been offered by now.
	for i := range 50 {
		ev := <-fast.Events()
		var v int
		if ev.Name != "tick" || ev.Decode(0, &v) != nil || v != i {
			t.Fatalf("event %d: %+v %d", i, ev, v)
		}
	}
	if ev, ok := <-slow.Events(); !ok || ev.Name != "tick" {
		t.Fatal("the slow subscriber lost its first event")
	}
	if _, ok := <-slow.Events(); ok {
		t.Fatal("the slow subscriber was not cut off")
	}
	var se *SlowSubscriberError
	if !errors.As(slow.Err(), &se) || !errors.Is(slow.Err(), ErrSubscriberTooSlow) || se.Buffer != 1 {
		t.Fatalf("slow subscriber error %v", slow.Err())
	}
	x.Release()
	if _, ok := <-fast.Events(); ok || !errors.Is(fast.Err(), ErrReleased) {
		t.Fatalf("subscription after release: %v", fast.Err())
	}
}

func TestActivatorCloseDisconnectsHandles(t *testing.T) {
	a := newAct(t, ActivatorConfig{Servers: []ServerConfig{helperServer(t, "Probe:free", multi("Probe"))}}, actHooks{})
	x, _ := a.CreateInstance(context.Background(), "Probe")
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Call(context.Background(), "null"); !errors.Is(err, bulkhead.ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
	if _, err := a.CreateInstance(context.Background(), "Probe"); !errors.Is(err, bulkhead.ErrClosed) {
		t.Fatalf("create after Close: %v", err)
	}
}

func TestActivatorConfigValidation(t *testing.T) {
	good := helperServer(t, "C:free", multi("C"))
	tests := []struct {
		name string
		cfg  ActivatorConfig
		want string
	}{
		{"no servers", ActivatorConfig{}, "at least one server"},
		{"no classes", ActivatorConfig{Servers: []ServerConfig{{Process: good.Process}}}, "at least one class"},
		{"bad class name", ActivatorConfig{Servers: []ServerConfig{{Process: good.Process, Classes: multi("a\tb")}}}, "printable"},
		{"duplicate class", ActivatorConfig{Servers: []ServerConfig{good, good}}, "configured twice"},
		{"pool size", ActivatorConfig{Servers: []ServerConfig{{Process: good.Process, Classes: []ClassConfig{{Name: "P", Instancing: Pooled, PoolSize: 5000}}}}}, "PoolSize"},
		{"instancing", ActivatorConfig{Servers: []ServerConfig{{Process: good.Process, Classes: []ClassConfig{{Name: "P", Instancing: 7}}}}}, "Instancing"},
		{"retries", ActivatorConfig{MaxRetries: -1, Servers: []ServerConfig{good}}, "MaxRetries"},
		{"command", ActivatorConfig{Servers: []ServerConfig{{Process: bulkhead.Process{Command: "/no/such"}, Classes: multi("C")}}}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewActivator(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	a := newAct(t, ActivatorConfig{Servers: []ServerConfig{good}}, actHooks{})
	for _, sc := range []SessionConfig{{Lease: -1}, {Lease: 48 * time.Hour}, {PID: -3}} {
		if _, err := a.NewSession(sc); err == nil {
			t.Fatalf("NewSession(%+v) accepted", sc)
		}
	}
}

// A server that does not register a configured class: the activation fails
// with ErrClassNotRegistered instead of waiting forever.
func TestClassNotRegistered(t *testing.T) {
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "A:free", multi("A", "Missing"))}}, actHooks{})
	if _, err := a.CreateInstance(context.Background(), "Missing"); !errors.Is(err, ErrClassNotRegistered) {
		t.Fatalf("err = %v", err)
	}
	o, err := a.CreateInstance(context.Background(), "A")
	if err != nil {
		t.Fatal(err)
	}
	o.Release()
}

// Events a server emits while no call is in flight are read by the idle
// watcher and delivered all the same.
func TestEventsWhileIdle(t *testing.T) {
	a := newAct(t, ActivatorConfig{Servers: []ServerConfig{helperServer(t, "Probe:free", multi("Probe"))}}, actHooks{})
	ctx := context.Background()
	x, _ := a.CreateInstance(ctx, "Probe")
	y, err := a.CreateInstance(ctx, "Probe")
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := x.Subscribe(10)
	if _, err := x.Call(ctx, "emitLater", "g", 5); err != nil {
		t.Fatal(err)
	}
	// Open the gate through another object; the emitting goroutine runs
	// after this call has its reply.
	if _, err := y.Call(ctx, "open", "g"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		ev := <-sub.Events()
		var v int
		if ev.Name != "later" || ev.Decode(0, &v) != nil || v != i {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	x.Release()
	y.Release()
}

// Many callers activating and calling at once on one warm server: the
// reader role passes from caller to caller (and to the watcher) without a
// wake-up lost, and every request is answered. (The storm, in CI, is the
// heavier check: it caught a lost wake-up this test did not.)
func TestManyCallersOneServer(t *testing.T) {
	a := newAct(t, ActivatorConfig{Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}}, actHooks{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a bound: a hang fails, not blocks
	defer cancel()
	co, err := a.GetClassObject(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	defer co.Release()
	if err := co.LockServer(true); err != nil { // one server, warm, for every caller
		t.Fatal(err)
	}
	errs := make(chan error, 32)
	for range 32 {
		go func() {
			for range 100 {
				o, err := a.CreateInstance(ctx, "Counter")
				if err != nil {
					errs <- err
					return
				}
				if _, err := o.Call(ctx, "add", 1); err != nil {
					errs <- err
					return
				}
				o.Release()
			}
			errs <- nil
		}()
	}
	var first error
	for range 32 { // every caller has returned before the test does
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		t.Fatal(first)
	}
}
