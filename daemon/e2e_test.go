package daemon

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/client"
)

// A pool through the daemon behaves as in-process: results, the worker's
// errors, a crash that costs one call, and a deadline.
func TestCallThroughDaemon(t *testing.T) {
	d := startDaemon(t, "")
	p := d.dial(t).Pool("p")
	ctx := context.Background()
	if got := ok[string](t)(bulkhead.CallAs[string](ctx, p, "echo", "hello")); got != "hello" {
		t.Fatalf("echo = %q", got)
	}
	_, err := p.Call(ctx, "fail")
	if re := wantErr[*bulkhead.RemoteError](t, err); re.Code != bulkhead.CodeApplication || re.Message != "it failed" {
		t.Fatalf("fail: %+v", re)
	}
	_, err = p.Call(ctx, "crash")
	if ce := wantErr[*bulkhead.CrashError](t, err); ce.Signal != syscall.SIGSEGV || ce.Phase != bulkhead.PhaseCall || ce.PID == 0 {
		t.Fatalf("crash: %+v", ce)
	}
	if !errors.Is(err, bulkhead.ErrWorkerCrashed) {
		t.Fatalf("errors.Is(%v, ErrWorkerCrashed) is false", err)
	}
	if got := ok[int](t)(bulkhead.CallAs[int](ctx, p, "echo", 7)); got != 7 {
		t.Fatalf("echo after the crash = %d", got)
	}
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = p.Call(dctx, "block")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("block past its deadline: %v", err)
	}
	wantErr[*bulkhead.CanceledError](t, err)
	if got := ok[string](t)(bulkhead.CallAs[string](ctx, p, "echo", "again")); got != "again" {
		t.Fatalf("echo after the hang = %q", got)
	}
}

// Objects through the daemon: activation, calls, events, clones, the
// running object table across two clients, and release.
func TestObjectsThroughDaemon(t *testing.T) {
	d := startDaemon(t, "")
	a, b := d.dial(t), d.dial(t)
	ctx := context.Background()
	o := ok[*client.Object](t)(a.CreateInstance(ctx, "Counter"))
	sub := ok[*client.Subscription](t)(o.Subscribe(ctx, 8))
	if n := ok[int](t)(bulkhead.CallAs[int](ctx, o, "add", 2)); n != 2 {
		t.Fatalf("add = %d", n)
	}
	ev := <-sub.Events()
	var n int
	if ev.Name != "changed" || ev.Decode(0, &n) != nil || n != 2 {
		t.Fatalf("event %+v (%d)", ev, n)
	}
	sub.Close()
	for range sub.Events() {
	}
	if err := sub.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("subscription ended with %v", err)
	}
	if err := a.Register(ctx, "shared", o, false); err != nil {
		t.Fatal(err)
	}
	ob := ok[*client.Object](t)(b.Lookup(ctx, "shared"))
	if ob.PID() != o.PID() {
		t.Fatalf("lookup found pid %d, want %d", ob.PID(), o.PID())
	}
	if n := ok[int](t)(bulkhead.CallAs[int](ctx, ob, "add", 3)); n != 5 {
		t.Fatalf("add through the other client = %d", n)
	}
	c := ok[*client.Object](t)(o.Clone(ctx))
	for _, h := range []*client.Object{o, ob, c} {
		if err := h.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Release(); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("a second release: %v", err)
	}
	if got := d.objects(); got != 0 {
		t.Fatalf("%d objects left after every release", got)
	}
	if _, err := b.Lookup(ctx, "shared"); !errors.Is(err, activation.ErrNotRegistered) && !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("lookup after the release: %v", err)
	}
}

// A class server that crashes under a call disconnects its objects, and the
// errors cross as they are in-process: the call gets the crash, wrapped in
// a *DisconnectedError; another object of that server is disconnected; a
// new activation gets a fresh server.
func TestServerCrashThroughDaemon(t *testing.T) {
	d := startDaemon(t, "")
	c := d.dial(t)
	ctx := context.Background()
	x := ok[*client.Object](t)(c.CreateInstance(ctx, "Counter"))
	y := ok[*client.Object](t)(c.CreateInstance(ctx, "Counter"))
	_, err := x.Call(ctx, "crash")
	var crash *bulkhead.CrashError
	if !errors.As(err, &crash) || crash.Signal != syscall.SIGSEGV {
		t.Fatalf("the crashing call: %v, want a CrashError of SIGSEGV", err)
	}
	if !errors.Is(err, activation.ErrObjectDisconnected) {
		t.Fatalf("the crashing call: %v, want it to match ErrObjectDisconnected", err)
	}
	_, err = y.Call(ctx, "add", 1)
	var de *activation.DisconnectedError
	if !errors.As(err, &de) || de.PID != x.PID() {
		t.Fatalf("the other object: %v, want a *DisconnectedError of server %d", err, x.PID())
	}
	z := ok[*client.Object](t)(c.CreateInstance(ctx, "Counter"))
	if z.PID() == x.PID() {
		t.Fatal("the new object is in the dead server")
	}
	if n := ok[int](t)(bulkhead.CallAs[int](ctx, z, "add", 4)); n != 4 {
		t.Fatalf("add on the new server = %d", n)
	}
	x.Release()
	y.Release()
	z.Release()
}

// A call that outlives the daemon's max_deadline: the client gets the
// daemon's report, complete, once the worker has been stopped.
func TestDaemonDeadlineReport(t *testing.T) {
	d := startDaemon(t, `max_deadline = "200ms"`)
	_, err := d.dial(t).Pool("p").Call(context.Background(), "block")
	ce := wantErr[*bulkhead.CanceledError](t, err)
	if !errors.Is(err, context.DeadlineExceeded) || !ce.Started || ce.PID == 0 || ce.RequestID == 0 || ce.Reason == "" {
		t.Fatalf("report: %+v", ce)
	}
}
