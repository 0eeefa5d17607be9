package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
)

// stormTally counts outcomes across the storm's goroutines.
type stormTally struct {
	activations  atomic.Uint64
	calls        atomic.Uint64
	failures     atomic.Uint64
	disconnected atomic.Uint64
	firstMu      sync.Mutex
	first        string
}

func (t *stormTally) fail(what string, err error) {
	t.failures.Add(1)
	if errors.Is(err, activation.ErrObjectDisconnected) {
		t.disconnected.Add(1)
	}
	t.firstMu.Lock()
	if t.first == "" {
		t.first = what + ": " + err.Error()
	}
	t.firstMu.Unlock()
}

func runStormInProcess(ctx context.Context, o stormOptions) (*stormResult, error) {
	act, err := activation.NewActivator(stormConfig(o))
	if err != nil {
		return nil, err
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	var next atomic.Int64
	var t stormTally
	var wg sync.WaitGroup
	start := time.Now()
	for g := range o.Goroutines {
		wg.Go(func() { stormClient(ctx, inProcess(act), o, g, &next, &t) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := act.Close(context.Background()); err != nil {
		return nil, fmt.Errorf("storm: closing the activator: %w", err)
	}
	st := act.Stats()
	res := &stormResult{
		Activations: t.activations.Load(), Calls: t.calls.Load(),
		Failures: t.failures.Load(), Disconnected: t.disconnected.Load(),
		Launches: st.Launches, StoppingRetries: st.StoppingRetries, Redispatched: st.Redispatched,
		ServerStops: st.ServerStops, ServerCrashes: st.ServerCrashes,
		Goroutines: o.Goroutines, Seconds: elapsed.Seconds(),
		FirstFailure: t.first,
	}
	res.PerSecond = float64(res.Activations) / elapsed.Seconds()
	if st.ServerCrashes > 0 && res.Failures == 0 {
		res.Failures = st.ServerCrashes
		res.FirstFailure = "a class server crashed"
	}
	return res, nil
}

// stormClient is one client: its own session, taking activation numbers
// until they run out. newSession opens a session: of the activator in
// process, or a connection to the daemon.
func stormClient(ctx context.Context, newSession func() (stormSession, error), o stormOptions, g int, next *atomic.Int64, t *stormTally) {
	sess, err := newSession()
	if err != nil {
		t.fail("session", err)
		return
	}
	defer sess.Close()
	for ctx.Err() == nil {
		i := int(next.Add(1))
		if i > o.Activations {
			return
		}
		i += o.offset
		class := stormClasses[i%len(stormClasses)]
		if o.SingleEvery > 0 && i%o.SingleEvery == 0 {
			class = "Iso"
		}
		stormOne(ctx, newSession, sess, o, g, i, class, t)
	}
}

// stormOne creates one object through one of the paths, calls it and lets
// it go.
func stormOne(ctx context.Context, newSession func() (stormSession, error), sess stormSession, o stormOptions, g, i int, class string, t *stormTally) {
	start := i % 100
	switch i % 16 {
	case 0: // class handle, explicit lock, activation through it
		stormClassObject(ctx, sess, o, class, start, t)
	case 1: // a clone outlives the original
		obj, ok := stormCreate(ctx, sess, class, start, t)
		if !ok {
			return
		}
		clone, err := obj.Clone(ctx)
		obj.Release()
		if err != nil {
			t.fail("Clone", err)
			return
		}
		stormCalls(ctx, clone, o.Calls, start, t)
		if err := clone.Release(); err != nil {
			t.fail("Release", err)
		}
	case 2: // through the running object table, keep-alive or weak
		stormROT(ctx, sess, o, g, i, class, start, t)
	case 3: // a client that goes away holding its references
		dead, err := newSession()
		if err != nil {
			t.fail("session", err)
			return
		}
		obj, ok := stormCreate(ctx, dead, class, start, t)
		if ok {
			stormCalls(ctx, obj, o.Calls, start, t)
			_, _ = obj.Clone(ctx)
		}
		dead.Close()
	default:
		obj, ok := stormCreate(ctx, sess, class, start, t)
		if !ok {
			return
		}
		stormCalls(ctx, obj, o.Calls, start, t)
		if err := obj.Release(); err != nil {
			t.fail("Release", err)
		}
	}
}

// stormClassObject activates through a class handle held with an explicit
// lock.
func stormClassObject(ctx context.Context, sess stormSession, o stormOptions, class string, start int, t *stormTally) {
	co, err := sess.GetClassObject(ctx, class)
	if err != nil {
		t.fail("GetClassObject", err)
		return
	}
	defer co.Release()
	if err := co.LockServer(ctx, true); err != nil {
		t.fail("LockServer", err)
		return
	}
	obj, err := co.CreateInstance(ctx, start)
	if err != nil {
		t.fail("ClassObject.CreateInstance", err)
		return
	}
	t.activations.Add(1)
	stormCalls(ctx, obj, o.Calls, start, t)
	obj.Release()
	if err := co.LockServer(ctx, false); err != nil {
		t.fail("LockServer(false)", err)
	}
}

// stormROT publishes an object in the running object table, keep-alive or
// weak, and calls it through a lookup.
func stormROT(ctx context.Context, sess stormSession, o stormOptions, g, i int, class string, start int, t *stormTally) {
	obj, ok := stormCreate(ctx, sess, class, start, t)
	if !ok {
		return
	}
	name := "storm/" + strconv.Itoa(os.Getpid()) + "/" + strconv.Itoa(g) + "/" + strconv.Itoa(i)
	keep := i%32 == 2
	if err := sess.Register(ctx, name, obj, keep); err != nil {
		t.fail("Register", err)
		obj.Release()
		return
	}
	if keep {
		obj.Release() // the entry alone keeps it
	}
	got, err := sess.Lookup(ctx, name)
	if err != nil {
		t.fail("Lookup", err)
	} else {
		stormCalls(ctx, got, o.Calls, start, t)
		got.Release()
	}
	if err := sess.Revoke(ctx, name); err != nil {
		t.fail("Revoke", err)
	}
	if !keep {
		obj.Release()
	}
}

func stormCreate(ctx context.Context, sess stormSession, class string, start int, t *stormTally) (stormObject, bool) {
	obj, err := sess.CreateInstance(ctx, class, start)
	if err != nil {
		if ctx.Err() == nil {
			t.fail("CreateInstance "+class, err)
		}
		return nil, false
	}
	t.activations.Add(1)
	return obj, true
}

// stormCalls adds 1 n times and checks every total: a call that reached the
// wrong object, or a fresh one, would show.
func stormCalls(ctx context.Context, obj stormObject, n, start int, t *stormTally) {
	for k := 1; k <= n; k++ {
		got, err := bulkhead.CallAs[int](ctx, obj, "add", 1)
		if err != nil {
			if ctx.Err() == nil {
				t.fail("call", err)
			}
			return
		}
		t.calls.Add(1)
		if got != start+k {
			t.fail("call", fmt.Errorf("object %s: total %d, want %d", obj.Name(), got, start+k))
			return
		}
	}
}
