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
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
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
	if err := o.Release(); !errors.Is(err, activation.ErrReleased) {
		t.Fatalf("a second release: %v", err)
	}
	if _, err := o.Call(ctx, "add", 1); !errors.Is(err, activation.ErrReleased) {
		t.Fatalf("a call after the release: %v", err)
	}
	// Release does not wait, but a request sent after it sees it done.
	ok[map[string]any](t)(a.Status(ctx))
	ok[map[string]any](t)(b.Status(ctx))
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

// Release is one-way, and the daemon carries it out before the next
// request of the connection: with max_handles = 1, a create_instance sent
// right after the release of the only handle never finds the limit
// reached.
func TestReleaseIsOrdered(t *testing.T) {
	d := startDaemon(t, "[limits]\nmax_handles = 1")
	c := d.dial(t)
	ctx := context.Background()
	for i := range 200 {
		o, err := c.CreateInstance(ctx, "Counter")
		if err != nil {
			t.Fatalf("activation %d: %v", i, err)
		}
		if err := o.Release(); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
	o := ok[*client.Object](t)(c.CreateInstance(ctx, "Counter"))
	if _, err := c.CreateInstance(ctx, "Counter"); !errors.Is(err, client.ErrLimit) {
		t.Fatalf("a second handle with max_handles = 1: %v", err)
	}
	if n := ok[int](t)(bulkhead.CallAs[int](ctx, o, "add", 7)); n != 7 {
		t.Fatalf("add = %d", n)
	}
	o.Release()
	ok[map[string]any](t)(c.Status(ctx))
	if got := d.objects(); got != 0 {
		t.Fatalf("%d objects left after every release", got)
	}
}

// On the wire: a release is answered only if it fails, and its ERROR comes
// before the answer of the request sent after it.
func TestReleaseOnTheWire(t *testing.T) {
	d := startDaemon(t, "")
	rc := d.raw(t, true)
	rc.send(clientwire.TypeRequest, 1, clientwire.Request{Op: clientwire.OpCreateInstance, Class: "Counter"})
	h, p := rc.next()
	var rep clientwire.Reply
	if h.Type != clientwire.TypeReply || h.ID != 1 || clientwire.Decode(p, &rep) != nil || rep.Object == 0 {
		t.Fatalf("create_instance answered %v %d %x", h.Type, h.ID, p)
	}
	rc.send(clientwire.TypeRequest, 2, clientwire.Request{Op: clientwire.OpRelease, Handle: rep.Object})
	rc.send(clientwire.TypeRequest, 3, clientwire.Request{Op: clientwire.OpRelease, Handle: rep.Object})
	rc.send(clientwire.TypeRequest, 4, clientwire.Request{Op: clientwire.OpStatus})
	want := []struct {
		t    wire.Type
		id   uint64
		kind string
	}{{clientwire.TypeError, 3, "not_found"}, {clientwire.TypeReply, 4, ""}}
	for _, w := range want {
		h, p := rc.next()
		if h.Type != w.t || h.ID != w.id || (w.kind != "" && kindOf(p) != w.kind) {
			t.Fatalf("got %v id %d (%s), want %v id %d (%s)", h.Type, h.ID, kindOf(p), w.t, w.id, w.kind)
		}
	}
	if got := d.objects(); got != 0 {
		t.Fatalf("%d objects left after the release", got)
	}
}
