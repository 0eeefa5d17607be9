//go:build cgo

package csdk

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// buildCounter builds testdata/counter.c, a class server on the C SDK.
func buildCounter(t *testing.T) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	bin := filepath.Join(t.TempDir(), "counter")
	cmd := exec.Command(gcc, "-std=c99", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror", "-I", "../../sdk/c",
		"-o", bin, "testdata/counter.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return bin
}

// The C SDK's object protocol under a real activator: registration,
// activation with arguments, object calls, events, a failing constructor,
// unknown methods, release with its destructor, and a crash in an object
// call that costs that server only.
func TestCObjects(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := context.Background()
	a := counterActivator(t)
	c1, err := a.CreateInstance(ctx, "Counter", 10)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Release()
	c2, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c1.Subscribe(8)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	call := func(o *activation.Object, method string, args ...any) (int64, error) {
		r, err := o.Call(ctx, method, args...)
		var n int64
		if err == nil {
			err = r.Decode(&n)
		}
		return n, err
	}
	if n, err := call(c1, "add", 5); err != nil || n != 15 {
		t.Fatalf("c1.add(5) = %d, %v; want 15", n, err)
	}
	if n, err := call(c2, "add", -3); err != nil || n != -3 {
		t.Fatalf("c2.add(-3) = %d, %v; want -3", n, err)
	}
	ev := <-sub.Events()
	var v int64
	if ev.Name != "changed" || ev.Len() != 1 || ev.Decode(0, &v) != nil || v != 15 {
		t.Fatalf("event %q with %d args (%d); want changed [15]", ev.Name, ev.Len(), v)
	}
	var re *bulkhead.RemoteError
	if _, err := call(c1, "nosuch"); !errors.As(err, &re) || re.Code != bulkhead.CodeUnknownMethod {
		t.Fatalf("c1.nosuch: %v; want unknown_method", err)
	}
	if _, err := call(c1, "add", "x"); !errors.As(err, &re) || re.Code != bulkhead.CodeBadArguments {
		t.Fatalf("c1.add(\"x\"): %v; want bad_arguments", err)
	}
	if _, err := a.CreateInstance(ctx, "Counter", -1); !errors.As(err, &re) || re.Code != bulkhead.CodeApplication {
		t.Fatalf("Counter(-1): %v; want an application error from the constructor", err)
	}
	c2.Release()
	// c2's destructor ran before c3's constructor (the RELEASE precedes the
	// ACTIVATE on the connection): c1 and c3 live.
	c3, err := a.CreateInstance(ctx, "Counter", 1)
	if err != nil {
		t.Fatal(err)
	}
	if c3.PID() != c1.PID() {
		t.Fatalf("c3 in server %d, c1 in %d", c3.PID(), c1.PID())
	}
	if n, err := call(c3, "get"); err != nil || n != 1 {
		t.Fatalf("c3.get = %d, %v", n, err)
	}
	if n, err := call(c3, "live"); err != nil || n != 2 {
		t.Fatalf("live counters %d, %v; want 2 (c2's destructor ran)", n, err)
	}
	crashDisconnects(t, c1, c3)
	c3.Release()
	// A new object gets a new server.
	c4, err := a.CreateInstance(ctx, "Counter", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Release()
	if n, err := call(c4, "add", 2); err != nil || n != 4 {
		t.Fatalf("c4.add(2) = %d, %v", n, err)
	}
}

// Seed 001's unload race, closed by construction: a library is never
// unloaded from a live process. A generated or C SDK worker links its
// library in; letting go of it means the server revokes its classes, drains
// its objects (their destructors run in a process that keeps the library),
// quits, and is replaced. Here servers recycle every 25 activations under a
// storm of activations, calls and releases: nothing fails, nothing crashes.
func TestRecycleStorm(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := context.Background()
	a := counterActivator(t, "COUNTER_RECYCLE=25")
	const goroutines, each = 8, 40
	pids := make(chan int, goroutines*each)
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				o, err := a.CreateInstance(ctx, "Counter", i)
				if err != nil {
					errs <- err
					return
				}
				r, err := o.Call(ctx, "add", 1)
				var n int
				if err == nil {
					err = r.Decode(&n)
				}
				pids <- o.PID()
				o.Release()
				if err != nil || n != i+1 {
					errs <- fmt.Errorf("add: %d, %v; want %d", n, err, i+1)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(pids)
	for err := range errs {
		t.Fatal(err)
	}
	servers := map[int]int{}
	for pid := range pids {
		servers[pid]++
	}
	if len(servers) < goroutines*each/25 {
		t.Fatalf("%d servers for %d activations at 25 each: they did not recycle", len(servers), goroutines*each)
	}
	for pid, n := range servers {
		if n > 25 {
			t.Fatalf("server %d took %d activations, more than the 25 it revokes after", pid, n)
		}
	}
}

// crashDisconnects crashes the server of c3 in C, and checks that c1, in
// the same server, is disconnected.
func crashDisconnects(t *testing.T, c1, c3 *activation.Object) {
	t.Helper()
	ctx := context.Background()
	_, err := c3.Call(ctx, "boom")
	var de *activation.DisconnectedError
	var ce *bulkhead.CrashError
	if !errors.As(err, &de) && !errors.As(err, &ce) {
		t.Fatalf("c3.boom: %v; want the crash", err)
	}
	if _, err := c1.Call(ctx, "get"); !errors.Is(err, activation.ErrObjectDisconnected) {
		t.Fatalf("c1 after its server crashed: %v; want ErrObjectDisconnected", err)
	}
}

// A C class server's crash, reported by the SDK's handler, names the
// function it died in, as a pool worker's does (bulkhead.NativeFunction):
// fault is static, named from the server program's symbols.
func TestCObjectCrashFunction(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx := context.Background()
	a := counterActivator(t)
	o, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Release()
	_, err = o.Call(ctx, "fault")
	var ce *bulkhead.CrashError
	if !errors.As(err, &ce) || ce.Function != "fault" || ce.RequestID == 0 || ce.Method != "fault" {
		t.Fatalf("fault: %v (%+v); want a crash in function fault with its request id", err, ce)
	}
}

// counterActivator is an activator of class Counter served by
// testdata/counter.c, with env; the test's cleanup closes it.
func counterActivator(t *testing.T, env ...string) *activation.Activator {
	t.Helper()
	bin := buildCounter(t)
	a, err := activation.NewActivator(activation.ActivatorConfig{Servers: []activation.ServerConfig{{
		Process: bulkhead.Process{Command: bin, Env: env},
		Classes: []activation.ClassConfig{{Name: "Counter"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	return a
}
