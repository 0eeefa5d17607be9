package bulkhead_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// The faults in this file were found by using bulkhead as a new user would,
// not by the soaks: deadlines that land on replies, workers that lie or stop
// reading, callers whose encoders panic.

// TestDeadlineRace races deadlines against replies: calls whose deadlines
// straddle the handler's duration. It once crashed the dispatcher (a ctx
// callback read the start marker after its page was unmapped), and counted
// crashes for calls whose callers got none.
func TestDeadlineRace(t *testing.T) {
	n := 1500
	if testing.Short() {
		n = 300
	}
	logs := &bulkhead.LogRecords{}
	p := newPool(t, bulkhead.Config{Workers: 2, Logger: slog.New(logs), TermGrace: 50 * time.Millisecond,
		DumpGrace: 50 * time.Millisecond})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var crashes, ok, canceled int
	for c := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 1))
			for range n {
				d := 1500*time.Microsecond + time.Duration(r.Int64N(int64(time.Millisecond)))
				ctx, cancel := context.WithTimeout(context.Background(), d)
				_, err := p.Call(ctx, "nap", 2)
				cancel()
				var ce *bulkhead.CrashError
				var ca *bulkhead.CanceledError
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case errors.As(err, &ce):
					crashes++
					t.Errorf("crash under a deadline race: %v", err)
				case errors.As(err, &ca):
					canceled++
				default:
					t.Errorf("unexpected error: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	st := p.Stats()
	if st.CallCrashes != uint64(crashes) {
		t.Errorf("Stats.CallCrashes = %d, but callers got %d *CrashError", st.CallCrashes, crashes)
	}
	for _, r := range logs.All() {
		if r["msg"] == "worker crashed" {
			t.Errorf("crash record with no crash: %v", r)
		}
	}
	t.Logf("ok %d, canceled %d, crashes %d; workers started %d", ok, canceled, crashes, st.Started)
}

// TestCanceledBeforeCall: a ctx that has already ended gets a
// *CanceledError at once; nothing is sent and no worker is harmed.
func TestCanceledBeforeCall(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1})
	pid := workerPID(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 {
		_, err := p.Call(ctx, "null")
		var ca *bulkhead.CanceledError
		if !errors.As(err, &ca) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Call with a canceled ctx = %v, want *CanceledError wrapping context.Canceled", err)
		}
		ca.Wait()
		if ca.Started || ca.PID != 0 {
			t.Fatalf("CanceledError = %+v: want a call that never reached a worker", ca)
		}
	}
	if got := workerPID(t, p); got != pid {
		t.Fatalf("worker %d replaced by %d: a call that was never sent cost a worker", pid, got)
	}
	if st := p.Stats(); st.Started != 1 || st.InFlight != 0 {
		t.Fatalf("Stats = %+v: want 1 worker started and nothing in flight", st)
	}
}

func workerPID(t *testing.T, p *bulkhead.Pool) int {
	t.Helper()
	pid, err := bulkhead.CallAs[int](context.Background(), p, "pid")
	if err != nil {
		t.Fatalf("pid: %v", err)
	}
	return pid
}

// panicky's encoder panics, as a buggy MarshalCBOR would.
type panicky struct{}

func (panicky) MarshalCBOR() ([]byte, error) { panic("encoder bug") }

// TestEncoderPanic: a panic in the caller's argument encoder, recovered by
// the caller (as net/http does), leaves no worker held.
func TestEncoderPanic(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1})
	for range 3 {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("the encoder's panic did not reach the caller")
				}
			}()
			p.Call(context.Background(), "echo", panicky{})
		}()
	}
	if st := p.Stats(); st.InFlight != 0 {
		t.Fatalf("InFlight = %d after panicking encoders", st.InFlight)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.Call(ctx, "null"); err != nil {
		t.Fatalf("call after the panics: %v", err)
	}
}

// TestLyingReply: a REPLY whose CBOR breaks PROTOCOL.md section 5 is a
// protocol violation that costs the worker, never a success.
func TestLyingReply(t *testing.T) {
	for kind := range lies {
		t.Run(kind, func(t *testing.T) {
			p := newPool(t, bulkhead.Config{Workers: 1})
			pid := workerPID(t, p) // request 1
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := p.Call(ctx, "lie", lieArgs{Kind: kind, ID: 2})
			var ce *bulkhead.CrashError
			if !errors.As(err, &ce) || !errors.Is(err, wire.ErrProtocol) {
				t.Fatalf("Call = %v, want a *CrashError for a protocol violation", err)
			}
			if ce.PID != pid {
				t.Fatalf("CrashError.PID = %d, want %d", ce.PID, pid)
			}
			if got := workerPID(t, p); got == pid {
				t.Fatalf("the lying worker %d is still serving", pid)
			}
		})
	}
}

// TestDeadWorkerOutOfService: a worker that exits while a descendant keeps
// its socket is out of service at once; the descendant's answer is never
// taken for the worker's.
func TestDeadWorkerOutOfService(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1, KillGrace: 3 * time.Second})
	pid := workerPID(t, p) // request 1
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := p.Call(ctx, "orphanreply", uint64(2))
	var ce *bulkhead.CrashError
	if !errors.As(err, &ce) {
		t.Fatalf("Call = %v, want the worker's exit as a *CrashError", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the crash was reported after %v: the pool waited for the reaping", d)
	}
	for _, w := range p.Workers() {
		if w.PID == pid {
			t.Fatalf("dead worker %d still listed", pid)
		}
	}
}

// TestWriteStall: a call whose frame the worker does not read (it is
// frozen by SIGSTOP) returns by its deadline, and costs that worker.
func TestWriteStall(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1, TermGrace: 50 * time.Millisecond, DumpGrace: 50 * time.Millisecond})
	pid := workerPID(t, p)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := p.Call(ctx, "echobytes", make([]byte, 12<<20))
	took := time.Since(start)
	var ca *bulkhead.CanceledError
	if !errors.As(err, &ca) {
		t.Fatalf("Call = %v, want *CanceledError", err)
	}
	if took > deadline+time.Second {
		t.Fatalf("Call returned %v after its deadline of %v", took, deadline)
	}
	ca.Wait()
	if got := workerPID(t, p); got == pid {
		t.Fatal("the frozen worker still serves")
	}
}

// TestPingFlood: a worker flooding PINGs (and not reading PONGs) cannot
// keep its caller past the deadline.
func TestPingFlood(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1, TermGrace: 50 * time.Millisecond, DumpGrace: 50 * time.Millisecond})
	const deadline = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := p.Call(ctx, "pingflood")
	var ca *bulkhead.CanceledError
	if !errors.As(err, &ca) {
		t.Fatalf("Call = %v, want *CanceledError", err)
	}
	if took := time.Since(start); took > deadline+time.Second {
		t.Fatalf("Call returned %v after its deadline of %v", took, deadline)
	}
	ca.Wait()
}

// TestHangsCountTowardQuarantine: a request that makes the library loop is
// quarantined like one that crashes it.
func TestHangsCountTowardQuarantine(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1, QuarantineAfter: 1, TermGrace: 20 * time.Millisecond,
		DumpGrace: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := p.Call(ctx, "hang", "same request")
	var ca *bulkhead.CanceledError
	if !errors.As(err, &ca) {
		t.Fatalf("Call = %v, want *CanceledError", err)
	}
	ca.Wait()
	if !ca.Started {
		t.Fatalf("the hang was not started: %+v", ca)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	_, err = p.Call(ctx2, "hang", "same request")
	if !errors.Is(err, bulkhead.ErrQuarantined) {
		t.Fatalf("second identical hang = %v, want ErrQuarantined", err)
	}
	if st := p.Stats(); st.Hung != 1 || st.Quarantines != 1 {
		t.Fatalf("Hung %d, Quarantines %d: want 1 and 1", st.Hung, st.Quarantines)
	}
}

// TestPanicBystanders: calls queued behind handlers that panic
// (Config.Pipeline) never ran, and are sent elsewhere at no cost to their
// redispatch budget, however many panics they sit behind.
func TestPanicBystanders(t *testing.T) {
	for i := range 3 {
		t.Run(strconv.Itoa(i), func(t *testing.T) { panicBystanders(t) })
	}
}

func panicBystanders(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1, Pipeline: 8, MaxRedispatch: 1})
	fifo := filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	panicked := make(chan error, 2)
	go func() {
		_, err := p.Call(ctx, "gate", gateArgs{Fifo: fifo, Then: "panic"})
		panicked <- err
	}()
	waitInFlight(t, p, 1)
	waitSent(t, p, "gate") // else a null call may overtake it, and be answered
	go func() {
		_, err := p.Call(ctx, "panic") // a second panic, queued behind the first
		panicked <- err
	}()
	const n = 7 // with the gate and the panic: the worker's depth, 1 + Pipeline
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := p.Call(ctx, "null")
			errs <- err
		}()
	}
	waitHeld(t, p, 2+n)
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{1})
	f.Close()
	for range 2 {
		var re *bulkhead.RemoteError
		if err := <-panicked; !errors.As(err, &re) || re.Code != bulkhead.CodePanic {
			t.Fatalf("panicking call = %v, want a panic", err)
		}
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("bystander of a panic: %v", err)
		}
	}
}

// reentrant is a slog handler that calls back into the pool, as a user's
// handler may (to read Stats for a metric). Were a record logged under the
// pool's lock, it would deadlock.
type reentrant struct {
	pool  atomic.Pointer[bulkhead.Pool]
	count atomic.Int64
}

func (h *reentrant) Enabled(context.Context, slog.Level) bool { return true }
func (h *reentrant) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *reentrant) WithGroup(string) slog.Handler            { return h }
func (h *reentrant) Handle(context.Context, slog.Record) error {
	if p := h.pool.Load(); p != nil {
		p.Stats()
		p.Workers()
		p.Quarantined()
	}
	h.count.Add(1)
	return nil
}

// TestLogHandlerMayCallPool: no record is logged with the pool's lock held.
func TestLogHandlerMayCallPool(t *testing.T) {
	h := &reentrant{}
	p := newPool(t, bulkhead.Config{Workers: 2, MaxCalls: 3, QuarantineAfter: 1, Logger: slog.New(h),
		TermGrace: 20 * time.Millisecond, DumpGrace: 20 * time.Millisecond})
	h.pool.Store(p)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 6 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			p.Call(ctx, "segv", i) // crash records, quarantine records
			p.Call(ctx, "panic", i)
			p.Call(ctx, "null") // recycling records
			cancel()
			ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
			p.Call(ctx, "hang", i) // hung-call records
			cancel()
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("calls did not finish: a log record under the pool's lock deadlocked?")
	}
	if h.count.Load() < 10 {
		t.Fatalf("only %d records", h.count.Load())
	}
}

// TestSoftCancel: with Config.CancelGrace, a caller that hangs up returns at
// once and costs no worker when the worker answers within the grace; one
// stuck in native code is stopped once the grace runs out.
func TestSoftCancel(t *testing.T) {
	t.Run("answered within the grace", softCancelAnswered)
	t.Run("deaf to CANCEL", softCancelDeaf)
}

func softCancelAnswered(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1, CancelGrace: 5 * time.Second,
		TermGrace: 20 * time.Millisecond, DumpGrace: 20 * time.Millisecond})
	pid := workerPID(t, p)
	for range 5 {
		g := newGate(t)
		// The caller hangs up (a cancel, not a deadline, which the worker
		// would see too and might skip the call for) once the worker runs
		// the call: it has opened the gate's fifo, which the open below
		// waits for.
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() {
			_, err := p.Call(ctx, "gate", gateArgs{Fifo: g.path})
			res <- err
		}()
		f, err := os.OpenFile(g.path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		err = <-res // at once: the worker still runs the call
		var ca *bulkhead.CanceledError
		if !errors.As(err, &ca) {
			f.Close()
			t.Fatalf("Call = %v, want *CanceledError", err)
		}
		f.Write([]byte{1}) // the worker answers, within the grace
		f.Close()
		ca.Wait()
		if !ca.Started || ca.PID != pid {
			t.Fatalf("CanceledError %+v: want started on %d", ca, pid)
		}
	}
	if got := workerPID(t, p); got != pid {
		t.Fatalf("worker %d replaced by %d: callers that hang up cost workers", pid, got)
	}
}

func softCancelDeaf(t *testing.T) {
	hung := newPool(t, bulkhead.Config{Workers: 1, CancelGrace: 50 * time.Millisecond,
		TermGrace: 20 * time.Millisecond, DumpGrace: 20 * time.Millisecond})
	pid := workerPID(t, hung)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(50*time.Millisecond, cancel) // no deadline: the worker starts the call however late
	_, err := hung.Call(ctx, "hang")
	var ca *bulkhead.CanceledError
	if !errors.As(err, &ca) {
		t.Fatalf("Call = %v, want *CanceledError", err)
	}
	ca.Wait()
	if !ca.Started || ca.Signal == 0 && ca.ExitCode == -1 {
		t.Fatalf("CanceledError %+v: want a started call whose worker was stopped", ca)
	}
	if got := workerPID(t, hung); got == pid {
		t.Fatal("a worker deaf to CANCEL was not stopped after the grace")
	}
	if st := hung.Stats(); st.Hung != 1 {
		t.Fatalf("Hung = %d, want 1", st.Hung)
	}
}

// TestCancelIsNoHang: a caller that hangs up (ctx canceled, no deadline
// passed) does not put its request in quarantine.
func TestCancelIsNoHang(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1, QuarantineAfter: 1, TermGrace: 20 * time.Millisecond,
		DumpGrace: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err := p.Call(ctx, "nap", 200)
	var ca *bulkhead.CanceledError
	if !errors.As(err, &ca) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Call = %v, want a canceled *CanceledError", err)
	}
	ca.Wait()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, err := p.Call(ctx2, "nap", 200); err != nil {
		t.Fatalf("the same request after its caller hung up: %v", err)
	}
	if st := p.Stats(); st.Quarantines != 0 {
		t.Fatalf("Quarantines = %d, want 0", st.Quarantines)
	}
}

// TestCloseKillNamed: a call still running when Close's ctx ends fails with
// a *CrashError that says Close killed its worker.
func TestCloseKillNamed(t *testing.T) {
	bulkhead.CheckLeaks(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := bulkhead.New(context.Background(), bulkhead.Config{Command: exe, Workers: 1,
		Env: append(os.Environ(), "GORACE=atexit_sleep_ms=0"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	workerPID(t, p)
	errs := make(chan error, 1)
	go func() {
		_, err := p.Call(context.Background(), "hang")
		errs <- err
	}()
	waitInFlight(t, p, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want its ctx's error", err)
	}
	var ce *bulkhead.CrashError
	if err := <-errs; !errors.As(err, &ce) || !ce.Killed || !strings.Contains(ce.Reason, "Close") {
		t.Fatalf("call = %v, want a *CrashError naming Close", err)
	}
	if err := p.Close(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Close = %v, want the first one's error", err)
	}
}

// waitHeld waits until n calls are on the pool's workers or waiting for
// one: a call the worker's queue had no room for waits in the pool, and is
// a bystander all the same.
func waitHeld(t *testing.T, p *bulkhead.Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := p.Stats()
		if st.InFlight+st.Waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want %d calls held or waiting", st, n)
		}
		runtimeGosched()
	}
}
