//go:build cgo

package csdk

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/worker"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func(){"threadbound": runThreadBound}, "threadbound", worker.IsWorker)
}

// runThreadBound serves class "TL", apartment-threaded, whose objects each
// hold a context of the thread-bound library: opened by the constructor,
// used by "use", closed by Destroy, each failing from a wrong thread.
func runThreadBound() {
	var s worker.Server
	var destroyed, wrong atomic.Int64
	c := &worker.Class[ThreadCtx]{Name: "TL", Threading: worker.Apartment,
		New: func(context.Context, *worker.Object, worker.Args) (ThreadCtx, error) { return OpenThreadCtx() },
		Destroy: func(t ThreadCtx) {
			if t.Close() != nil {
				wrong.Add(1)
			}
			destroyed.Add(1)
		},
	}
	c.Method("use", func(_ context.Context, t ThreadCtx, _ worker.Args) (any, error) { return t.Use() })
	c.Method("tid", func(context.Context, ThreadCtx, worker.Args) (any, error) { return Tid(), nil })
	c.Method("destroys", func(context.Context, ThreadCtx, worker.Args) (any, error) {
		return []int64{destroyed.Load(), wrong.Load()}, nil
	})
	s.Register(c)
	s.Concurrency = 8
	s.Run()
}

// Every call of an apartment object, its constructor and its Destroy run on
// one OS thread for the object's whole life, and each object has its own:
// the thread-bound library never sees a wrong thread, under calls from many
// goroutines at once.
func TestApartmentIsAThread(t *testing.T) {
	testutil.CheckLeaks(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := activation.NewActivator(activation.ActivatorConfig{Servers: []activation.ServerConfig{{
		Process: bulkhead.Process{Command: self, Env: []string{testutil.HelperEnv + "=threadbound"}},
		Classes: []activation.ClassConfig{{Name: "TL"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	// keep holds the server up: its last object's release would stop it.
	keep, err := a.CreateInstance(ctx, "TL")
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Release()
	const objects, callers, calls = 6, 4, 100
	for round := range 3 { // objects come and go: each new one gets a thread
		tids := make(map[int64]bool) // of the live objects
		objs := make([]*activation.Object, objects)
		for i := range objs {
			if objs[i], err = a.CreateInstance(ctx, "TL"); err != nil {
				t.Fatal(err)
			}
		}
		if err := hammer(ctx, objs, callers, calls); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, o := range objs {
			r, err := o.Call(ctx, "use")
			var n int64
			if err == nil {
				err = r.Decode(&n)
			}
			if err != nil || n != callers*calls+1 {
				t.Fatalf("object's count %d, %v; want %d", n, err, callers*calls+1)
			}
			r, err = o.Call(ctx, "tid")
			var tid int64
			if err == nil {
				err = r.Decode(&tid)
			}
			if err != nil || tids[tid] {
				t.Fatalf("tid %d, %v: two live objects share a thread", tid, err)
			}
			if o.PID() != keep.PID() {
				t.Fatalf("object in server %d, want %d: the server was replaced", o.PID(), keep.PID())
			}
			tids[tid] = true
			o.Release()
		}
	}
	// Every Destroy ran on its object's thread, in the one server.
	testutil.Until(t, "every Destroy", func() bool {
		var d []int64
		r, err := keep.Call(ctx, "destroys")
		if err == nil {
			err = r.Decode(&d)
		}
		if err != nil || len(d) != 2 {
			t.Fatalf("destroys: %v %v", d, err)
		}
		if d[1] != 0 {
			t.Fatalf("%d of %d Destroys ran on a wrong thread", d[1], d[0])
		}
		return d[0] == 3*objects
	})
}

// hammer calls "use" calls times from callers goroutines on each object.
func hammer(ctx context.Context, objs []*activation.Object, callers, calls int) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(objs)*callers)
	for _, o := range objs {
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range calls {
					if _, err := o.Call(ctx, "use"); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when closed empty
}
