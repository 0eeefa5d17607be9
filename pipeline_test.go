package bulkhead_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"golang.org/x/sys/unix"
)

// gate is a named pipe that a "gate" call blocks on until the test opens it.
type gate struct {
	t    *testing.T
	path string
}

func newGate(t *testing.T) *gate {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gate")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gate{t: t, path: path}
	// A test that fails early must not leave a call blocked: the pool's
	// Close would wait for it. O_RDWR does not wait for a reader.
	t.Cleanup(func() {
		if f, err := os.OpenFile(path, os.O_RDWR|unix.O_NONBLOCK, 0); err == nil {
			f.Write([]byte{1})
			f.Close()
		}
	})
	return g
}

// open lets the blocked call through: the write blocks until the call has
// opened its end, then the byte it reads releases it.
func (g *gate) open() {
	g.t.Helper()
	f, err := os.OpenFile(g.path, os.O_WRONLY, 0)
	if err != nil {
		g.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte{1}); err != nil {
		g.t.Fatal(err)
	}
}

// arrive waits until the blocked call has opened the gate, and returns the
// open end that release lets it through with.
func (g *gate) arrive() *os.File {
	g.t.Helper()
	f, err := os.OpenFile(g.path, os.O_WRONLY, 0)
	if err != nil {
		g.t.Fatal(err)
	}
	return f
}

// release lets a call that arrived through.
func (g *gate) release(f *os.File) {
	g.t.Helper()
	defer f.Close()
	if _, err := f.Write([]byte{1}); err != nil {
		g.t.Fatal(err)
	}
}

// waitInFlight yields until the pool's only worker holds n calls.
func waitInFlight(t *testing.T, p *bulkhead.Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws := p.Workers()
		if len(ws) == 1 && ws[0].InFlight == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %+v: want one holding %d calls; stats %+v", ws, n, p.Stats())
		}
		runtimeGosched()
	}
}

// waitSent yields until the pool's only worker runs a call to method that
// has been sent: its request id is taken, so that every call made after it
// goes to the worker behind it. waitInFlight alone does not say so: a call
// counts as in flight once it holds the worker, a moment before it takes
// its id, and a call made meanwhile could overtake it.
func waitSent(t *testing.T, p *bulkhead.Pool, method string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws := p.Workers()
		if len(ws) == 1 && ws[0].Current != nil && ws[0].Current.Method == method && ws[0].Current.RequestID > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %+v: want one running a sent %q call", ws, method)
		}
		runtimeGosched()
	}
}

// waitQueued yields until the pool's only worker holds 2 calls, or the
// queued call ends first (which the caller then reports).
func waitQueued(t *testing.T, p *bulkhead.Pool, queued <-chan result) result {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case r := <-queued:
			t.Fatalf("the queued call ended before it was seen queued: pid %d, %v; stats %+v", r.pid, r.err, p.Stats())
		default:
		}
		if ws := p.Workers(); len(ws) == 1 && ws[0].InFlight == 2 {
			return result{}
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %+v: want one holding 2 calls; stats %+v", p.Workers(), p.Stats())
		}
		runtimeGosched()
	}
}

type result struct {
	pid int
	err error
}

func callPID(p *bulkhead.Pool, ctx context.Context, method string, args ...any) <-chan result {
	ch := make(chan result, 1)
	go func() {
		pid, err := bulkhead.CallAs[int](ctx, p, method, args...)
		ch <- result{pid, err}
	}()
	return ch
}

// TestPipelineCrashRedispatchesQueued: the calls queued behind a call that
// crashes its worker never started, so they run on the replacement, once;
// only the crashing call fails.
func TestPipelineCrashRedispatchesQueued(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1, Pipeline: 4})
	ctx := context.Background()
	pid := mustPID(t, p)
	g := newGate(t)
	crash := callPID(p, ctx, "gate", gateArgs{Fifo: g.path, Then: "segv"})
	waitInFlight(t, p, 1)
	waitSent(t, p, "gate")
	var queued []<-chan result
	for range 4 {
		queued = append(queued, callPID(p, ctx, "pid"))
	}
	waitInFlight(t, p, 5) // one running, four in its socket
	g.open()

	r := <-crash
	var ce *bulkhead.CrashError
	if !errors.As(r.err, &ce) || ce.Phase != bulkhead.PhaseCall || ce.Method != "gate" {
		t.Fatalf("crashing call: %v, want a *CrashError in phase call", r.err)
	}
	for i, ch := range queued {
		r := <-ch
		if r.err != nil {
			t.Errorf("queued call %d: %v", i, r.err)
		} else if r.pid == pid || r.pid == 0 {
			t.Errorf("queued call %d ran on pid %d; the crashed worker was %d", i, r.pid, pid)
		}
	}
	if s := p.Stats(); s.Redispatched != 4 {
		t.Errorf("Redispatched = %d, want 4", s.Redispatched)
	}
}

// TestPipelineCancelQueued: a queued call whose ctx ends returns at once
// and costs the running call nothing; Wait then tells whether the worker ran
// it anyway (no deadline: it could not know) or skipped it (its deadline
// had passed).
func TestPipelineCancelQueued(t *testing.T) {
	tests := []struct {
		name        string
		timeout     time.Duration // 0: the test cancels the call once it is queued
		wantStarted *bool         // nil: either (see below)
		wantErr     error
	}{
		// The worker is sent CANCEL for the queued call: it may read it
		// before it takes the call up and skip the call (not started), or
		// after, and run it (started). Either is right; the worker stays.
		{"cancel", 0, nil, context.Canceled},
		// Queued at once (the pool is at MaxWorkers, the worker has room),
		// so it has reached the worker by the time its deadline passes.
		{"deadline", 500 * time.Millisecond, new(bool), context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, bulkhead.Config{Workers: 1, Pipeline: 2})
			pid := mustPID(t, p)
			g := newGate(t)
			running := callPID(p, context.Background(), "gate", gateArgs{Fifo: g.path})
			// The worker runs the gate call once it has opened the fifo,
			// which this open waits for: only then is the next call
			// queued behind it (else it could be sent first, and run).
			held := g.arrive()
			ctx, cancel := context.WithCancel(context.Background())
			if tt.timeout > 0 {
				ctx, cancel = context.WithTimeout(context.Background(), tt.timeout)
			}
			defer cancel()
			queued := callPID(p, ctx, "pid")
			var r result
			if tt.timeout == 0 {
				r = waitQueued(t, p, queued)
				cancel()
			}
			if r.pid == 0 && r.err == nil {
				r = <-queued
			}
			var e *bulkhead.CanceledError
			if !errors.As(r.err, &e) || !errors.Is(r.err, tt.wantErr) || e.PID != pid {
				t.Fatalf("queued call: %v, want a *CanceledError wrapping %v from pid %d", r.err, tt.wantErr, pid)
			}
			g.release(held)
			if r := <-running; r.err != nil || r.pid != pid {
				t.Fatalf("running call: pid %d, %v; want pid %d and no error", r.pid, r.err, pid)
			}
			e.Wait()
			if (tt.wantStarted != nil && e.Started != *tt.wantStarted) || e.Signal != 0 {
				t.Errorf("after Wait: Started %v (want %v), signal %v; reason %q", e.Started, tt.wantStarted, e.Signal, e.Reason)
			}
			if got := mustPID(t, p); got != pid {
				t.Errorf("worker replaced (pid %d, was %d): a queued call's cancel must not stop it", got, pid)
			}
		})
	}
}

// TestPipelineOff: without Pipeline a busy worker is sent nothing more;
// the second call waits in the pool, where another worker could take it.
func TestPipelineOff(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1})
	g := newGate(t)
	running := callPID(p, context.Background(), "gate", gateArgs{Fifo: g.path})
	waitInFlight(t, p, 1)
	queued := callPID(p, context.Background(), "pid")
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Waiting != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want one call queued in the pool", p.Stats())
		}
		runtimeGosched()
	}
	if ws := p.Workers(); ws[0].InFlight != 1 {
		t.Errorf("worker holds %d calls, want 1", ws[0].InFlight)
	}
	g.open()
	for _, ch := range []<-chan result{running, queued} {
		if r := <-ch; r.err != nil {
			t.Error(r.err)
		}
	}
}
