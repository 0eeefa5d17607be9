package bulkhead_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/proc"
)

// newPool starts a pool of helper workers and checks, when the test ends,
// that closing it left no process, zombie, descriptor or goroutine behind.
func newPool(t *testing.T, cfg bulkhead.Config, env ...string) *bulkhead.Pool {
	t.Helper()
	p, err := startPool(t, cfg, env...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func startPool(t *testing.T, cfg bulkhead.Config, env ...string) (*bulkhead.Pool, error) {
	t.Helper()
	bulkhead.CheckLeaks(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Command = exe
	// A race-enabled worker sleeps a second at exit unless told not to.
	cfg.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0"), env...)
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := bulkhead.New(context.Background(), cfg)
	if p != nil {
		t.Cleanup(func() {
			if err := p.Close(context.Background()); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	return p, err
}

func TestCallValues(t *testing.T) {
	p := newPool(t, bulkhead.Config{})
	ctx := context.Background()
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"null", nil, nil},
		{"bool", true, true},
		{"negative", -7, int64(-7)},
		{"positive", 7, uint64(7)},
		{"float", 2.5, 2.5},
		{"text", "héllo", "héllo"},
		{"bytes", []byte{0, 255}, []byte{0, 255}},
		{"array", []any{1, "a"}, []any{uint64(1), "a"}},
		{"map", map[string]int{"a": 1}, map[any]any{"a": uint64(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := p.Call(ctx, "echo", tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Value()
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, tt.want) {
				t.Fatalf("echo(%#v) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
	s, err := bulkhead.CallAs[string](ctx, p, "upper", "shout")
	if err != nil || s != "SHOUT" {
		t.Fatalf("CallAs upper = %q, %v", s, err)
	}
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i)
	}
	got, err := bulkhead.CallAs[[]byte](ctx, p, "echo", big)
	if err != nil || string(got) != string(big) {
		t.Fatalf("3 MiB echo: len %d, %v", len(got), err)
	}
}

func equal(a, b any) bool {
	ea, _ := wireMarshal(a)
	eb, _ := wireMarshal(b)
	return string(ea) == string(eb)
}

func TestRemoteErrors(t *testing.T) {
	p := newPool(t, bulkhead.Config{})
	ctx := context.Background()
	tests := []struct {
		method string
		code   bulkhead.ErrorCode
		msg    string
	}{
		{"fail", bulkhead.CodeApplication, "no such record"},
		{"coded", 42, "custom"},
		{"no-such-method", bulkhead.CodeUnknownMethod, "unknown method"},
		{"Version", bulkhead.CodeUnknownMethod, "the worker's methods: "}, // from its HELLO
		{"upper", bulkhead.CodeBadArguments, "want 1 arguments, got 0"},
		{"panic", bulkhead.CodePanic, "handler bug"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			_, err := p.Call(ctx, tt.method)
			var re *bulkhead.RemoteError
			if !errors.As(err, &re) || re.Code != tt.code || !strings.Contains(re.Message, tt.msg) {
				t.Fatalf("err = %v, want RemoteError code %v containing %q", err, tt.code, tt.msg)
			}
			if errors.Is(err, bulkhead.ErrWorkerCrashed) {
				t.Fatal("a remote error must not count as a crash")
			}
			if tt.code == bulkhead.CodeUnknownMethod && (!strings.Contains(re.Message, "echo, ") || !strings.Contains(re.Message, "null")) {
				t.Fatalf("an unknown method's error does not list the worker's methods: %q", re.Message)
			}
			if tt.code == bulkhead.CodePanic && !strings.Contains(re.Stack(), "panic") {
				t.Fatalf("panic error carries no stack: %q", re.Stack())
			}
			// The pool keeps serving.
			if _, err := p.Call(ctx, "null"); err != nil {
				t.Fatalf("call after %s: %v", tt.method, err)
			}
		})
	}
}

func TestCrashDuringCall(t *testing.T) {
	tests := []struct {
		method string
		args   []any
		exit   int
		signal syscall.Signal
		killed bool
		reason string
		stderr string
	}{
		{"exit", []any{3}, 3, 0, false, "exit status 3", "exiting with 3"},
		{"kill", nil, -1, syscall.SIGKILL, false, "killed by signal", "killing myself"},
		{"abort", nil, -1, syscall.SIGABRT, false, "signal aborted", "goroutine"},
		{"segv", nil, -1, syscall.SIGSEGV, false, "signal segmentation fault", ""},
		{"cabort", nil, -1, syscall.SIGABRT, false, "signal aborted", ""},
		{"garbage", nil, -1, syscall.SIGKILL, true, "broke the protocol", ""},
		{"oversize", nil, -1, syscall.SIGKILL, true, "larger than the limit", ""},
		{"closesock", nil, -1, syscall.SIGKILL, true, "closed its connection", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			logs := &bulkhead.LogRecords{}
			p := newPool(t, bulkhead.Config{Logger: slog.New(logs)})
			ctx := context.Background()
			pid := mustPID(t, p)
			_, err := p.Call(ctx, tt.method, tt.args...)
			var ce *bulkhead.CrashError
			if !errors.As(err, &ce) || !errors.Is(err, bulkhead.ErrWorkerCrashed) {
				t.Fatalf("err = %v, want *CrashError", err)
			}
			if ce.Phase != bulkhead.PhaseCall || ce.PID != pid || ce.Method != tt.method || ce.RequestID == 0 {
				t.Errorf("crash = %+v, want phase call, pid %d, method %s", ce, pid, tt.method)
			}
			if ce.ExitCode != tt.exit || ce.Signal != tt.signal || ce.Killed != tt.killed {
				t.Errorf("exit %d signal %v killed %v; want %d %v %v", ce.ExitCode, ce.Signal, ce.Killed, tt.exit, tt.signal, tt.killed)
			}
			if !strings.Contains(ce.Reason, tt.reason) || !strings.Contains(ce.Stderr, tt.stderr) {
				t.Errorf("reason %q stderr %q; want %q and %q", ce.Reason, ce.Stderr, tt.reason, tt.stderr)
			}
			// The worker is replaced and the next call succeeds.
			if newPID := mustPID(t, p); newPID == pid {
				t.Errorf("the crashed worker %d is still serving", pid)
			}
			rec := logs.First(t, "worker crashed")
			if rec["pid"] != int64(pid) || rec["phase"] != "call" {
				t.Errorf("crash log record %v", rec)
			}
		})
	}
}

func mustPID(t *testing.T, p *bulkhead.Pool) int {
	t.Helper()
	pid, err := bulkhead.CallAs[int](context.Background(), p, "pid")
	if err != nil {
		t.Fatalf("pid: %v", err)
	}
	return pid
}

func TestStartupFailure(t *testing.T) {
	tests := []struct {
		mode   string
		exited bool
		exit   int
		reason string
		stderr string
	}{
		{"exit", true, 3, "exited before HELLO: exit status 3", "cannot load the native library"},
		{"silent", false, -1, "no HELLO within", ""},
		{"badversion", false, -1, "protocol version 2", ""},
		{"badcookie", false, -1, "cookie does not match", ""},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			// Only the silent worker needs a short start timeout; the
			// others must fail by themselves, however loaded the machine.
			timeout := 10 * time.Second
			if tt.mode == "silent" {
				timeout = 300 * time.Millisecond
			}
			_, err := startPool(t, bulkhead.Config{StartTimeout: timeout, KillGrace: time.Second}, "HELPER_START="+tt.mode)
			var se *bulkhead.StartError
			if !errors.As(err, &se) || !errors.Is(err, bulkhead.ErrStartFailed) {
				t.Fatalf("err = %v, want *StartError", err)
			}
			if !tt.exited && se.ExitCode != -1 {
				se.ExitCode = -1 // a refused worker may exit by itself before it is killed
			}
			if se.PID == 0 || se.ExitCode != tt.exit || !strings.Contains(se.Reason, tt.reason) || !strings.Contains(se.Stderr, tt.stderr) {
				t.Fatalf("StartError %+v; want exit %d, reason %q, stderr %q", se, tt.exit, tt.reason, tt.stderr)
			}
			if se.Exited != tt.exited || errors.Is(err, bulkhead.ErrWorkerCrashed) != tt.exited {
				t.Fatalf("Exited = %v, want %v", se.Exited, tt.exited)
			}
		})
	}
}

// A start-up crash after New gives the waiting call the start error, and the
// pool heals when the cause goes away.
func TestStartupCrashReplacement(t *testing.T) {
	once := filepath.Join(t.TempDir(), "once")
	logs := &bulkhead.LogRecords{}
	p := newPool(t, bulkhead.Config{Workers: 2, Logger: slog.New(logs)}, "HELPER_START=exit", "HELPER_ONCE="+once)
	for range 20 {
		if _, err := p.Call(context.Background(), "null"); err != nil {
			t.Fatal(err)
		}
	}
	rec := logs.First(t, "worker failed to start")
	if !strings.Contains(rec["stderr_tail"].(string), "cannot load") {
		t.Fatalf("start failure log %v", rec)
	}
}

func TestStdoutNoiseIsHarmless(t *testing.T) {
	p := newPool(t, bulkhead.Config{}, "HELPER_START=noise")
	if _, err := p.Call(context.Background(), "null"); err != nil {
		t.Fatal(err)
	}
}

func TestIdleCrashIsReplaced(t *testing.T) {
	tests := []struct {
		sig  syscall.Signal
		exit string
	}{
		{syscall.SIGKILL, "killed by signal killed"},
		{syscall.SIGTERM, "exit status 0"}, // the SDK treats SIGTERM as a request to stop
		{syscall.SIGSEGV, "exit status 2"}, // a Go worker reports a stray SIGSEGV and exits 2
	}
	for _, tt := range tests {
		t.Run(tt.sig.String(), func(t *testing.T) {
			logs := &bulkhead.LogRecords{}
			p := newPool(t, bulkhead.Config{Logger: slog.New(logs)})
			pid := mustPID(t, p)
			syscall.Kill(pid, tt.sig)
			rec := logs.First(t, "worker crashed")
			if rec["phase"] != "idle" || rec["pid"] != int64(pid) || rec["exit"] != tt.exit {
				t.Fatalf("log record %v, want idle crash of %d with %q", rec, pid, tt.exit)
			}
			if newPID := mustPID(t, p); newPID == pid {
				t.Fatal("dead worker still serving")
			}
			if s := p.Stats(); s.IdleCrashes != 1 || s.CallCrashes != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// A worker that dies after taking a call off the socket but before starting
// it: with the start marker the call goes to another worker unnoticed;
// without it the call fails, because it may have run.
func TestDeathBeforeStart(t *testing.T) {
	t.Run("marker: redispatched", func(t *testing.T) {
		once := filepath.Join(t.TempDir(), "once")
		p := newPool(t, bulkhead.Config{}, "HELPER_START=die_on_call", "HELPER_ONCE="+once)
		s, err := bulkhead.CallAs[string](context.Background(), p, "upper", "again")
		if err != nil || s != "AGAIN" {
			t.Fatalf("call = %q, %v; want it redispatched", s, err)
		}
		if st := p.Stats(); st.Redispatched != 1 {
			t.Fatalf("Redispatched = %d, want 1", st.Redispatched)
		}
	})
	t.Run("no marker: failed, not retried", func(t *testing.T) {
		once := filepath.Join(t.TempDir(), "once")
		p := newPool(t, bulkhead.Config{}, "HELPER_START=die_on_call_nomarker", "HELPER_ONCE="+once)
		_, err := p.Call(context.Background(), "upper", "once")
		var ce *bulkhead.CrashError
		if !errors.As(err, &ce) || ce.Signal != syscall.SIGKILL {
			t.Fatalf("err = %v, want CrashError", err)
		}
		if st := p.Stats(); st.Redispatched != 0 {
			t.Fatalf("Redispatched = %d, want 0", st.Redispatched)
		}
	})
}

func TestDeadlineKillsHungWorker(t *testing.T) {
	for _, kind := range []string{"deadline", "cancel"} {
		t.Run(kind, func(t *testing.T) {
			p := newPool(t, bulkhead.Config{KillGrace: 50 * time.Millisecond})
			pid := mustPID(t, p)
			var ctx context.Context
			var cancel context.CancelFunc
			want := context.DeadlineExceeded
			if kind == "deadline" {
				ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
			} else {
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(100*time.Millisecond, cancel)
				want = context.Canceled
			}
			defer cancel()
			_, err := p.Call(ctx, "hang")
			var ce *bulkhead.CanceledError
			if errors.As(err, &ce) {
				ce.Wait()
			}
			if !errors.Is(err, want) || !errors.As(err, &ce) || ce.PID != pid || !ce.Started {
				t.Fatalf("err = %v (%+v), want CanceledError wrapping %v", err, ce, want)
			}
			if newPID := mustPID(t, p); newPID == pid {
				t.Fatal("hung worker still serving")
			}
		})
	}
}

func TestConcurrentCallers(t *testing.T) {
	for _, conc := range []int{1, 4} {
		t.Run("concurrency="+strconv.Itoa(conc), func(t *testing.T) {
			p := newPool(t, bulkhead.Config{Workers: 2, ConcurrencyPerWorker: conc}, "HELPER_CONC="+strconv.Itoa(conc))
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for g := range 16 {
				wg.Go(func() {
					for i := range 50 {
						want := g*1000 + i
						got, err := bulkhead.CallAs[int](context.Background(), p, "echo", want)
						if err != nil || got != want {
							errs <- errors.Join(err, errors.New("wrong echo "+strconv.Itoa(got)))
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
}

func TestCloseDrainsThenRefuses(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 2})
	var wg sync.WaitGroup
	results := make(chan error, 2)
	started := make(chan struct{}, 2)
	for range 2 {
		wg.Go(func() {
			started <- struct{}{}
			_, err := p.Call(context.Background(), "sleep", 200)
			results <- err
		})
	}
	<-started
	<-started
	// Wait until both calls hold a worker, then close.
	for p.Stats().InFlight < 2 {
		runtimeGosched()
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Fatalf("call in flight at Close: %v", err)
		}
	}
	if _, err := p.Call(context.Background(), "null"); !errors.Is(err, bulkhead.ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  bulkhead.Config
		want string
	}{
		{"no command", bulkhead.Config{}, "Command is required"},
		{"missing command", bulkhead.Config{Command: "/no/such/worker"}, "no such file"},
		{"negative workers", bulkhead.Config{Command: "true", Workers: -1}, "Workers = -1"},
		{"huge workers", bulkhead.Config{Command: "true", Workers: 1 << 20}, "Workers = 1048576"},
		{"negative timeout", bulkhead.Config{Command: "true", StartTimeout: -1}, "StartTimeout"},
		{"tiny frame", bulkhead.Config{Command: "true", MaxFrameSize: 10}, "MaxFrameSize = 10"},
		{"huge frame", bulkhead.Config{Command: "true", MaxFrameSize: 1 << 31}, "MaxFrameSize"},
		{"concurrency", bulkhead.Config{Command: "true", ConcurrencyPerWorker: -2}, "ConcurrencyPerWorker"},
		{"negative pipeline", bulkhead.Config{Command: "true", Pipeline: -1}, "Pipeline = -1"},
		{"huge pipeline", bulkhead.Config{Command: "true", Pipeline: 1 << 20}, "Pipeline = 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bulkhead.New(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestBadArgumentsNotSent(t *testing.T) {
	p := newPool(t, bulkhead.Config{MaxFrameSize: 1024})
	if _, err := p.Call(context.Background(), "echo", make(chan int)); !errors.Is(err, bulkhead.ErrEncoding) {
		t.Fatalf("unencodable argument: %v, want ErrEncoding", err)
	}
	if _, err := p.Call(context.Background(), "echo", make([]byte, 2048)); !errors.Is(err, bulkhead.ErrEncoding) || !strings.Contains(err.Error(), "frame limit") {
		t.Fatalf("oversized argument: %v", err)
	}
	if _, err := p.Call(context.Background(), "null"); err != nil {
		t.Fatalf("pool broken by bad arguments: %v", err)
	}
}

// A hung call's caller gets its error at once: the worker, deaf to SIGTERM
// while stuck, is still alive when Call returns, and Wait then reports how it
// was stopped, stack dump included.
//
// The caller cancels rather than let a deadline pass: an SDK worker cancels a
// call at its deadline itself, so for a deadline the pool skips SIGTERM and
// dumps at once (HELLO "sigterm"), and the worker may be dead by the time
// Call returns.
func TestDeadlineReturnsAtOnce(t *testing.T) {
	p := newPool(t, bulkhead.Config{TermGrace: 2 * time.Second, DumpGrace: 200 * time.Millisecond})
	pid := mustPID(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := p.Call(ctx, "hang")
	var ce *bulkhead.CanceledError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *CanceledError", err)
	}
	alive := false
	for _, c := range proc.Children(os.Getpid()) {
		alive = alive || (c.PID == pid && !c.Zombie())
	}
	if !alive {
		t.Fatal("Call waited for the hung worker to die before returning")
	}
	ce.Wait()
	if !ce.Started || ce.Signal == 0 && ce.ExitCode == 0 || !strings.Contains(ce.Stack, "goroutine ") {
		t.Fatalf("after Wait: %+v, want a started call, how it ended, and the goroutine dump", ce)
	}
	if !strings.Contains(ce.Error(), ce.Reason) {
		t.Fatalf("Error() %q omits the reason after Wait", ce.Error())
	}
}
