package bulkhead

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	ossignal "os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/bulkhead-go/bulkhead/worker"
	"golang.org/x/sys/unix"
)

// runPolicyWorker is the policy tests' worker, the helper process "policy"
// (see TestMain in helper_test.go). Its behaviour is chosen with
// environment variables:
//
//	POLICY_START  "exit": exit 3 before HELLO, unless the file POLICY_HEAL names exists
//	POLICY_CONC   the worker's Concurrency
func runPolicyWorker() {
	if os.Getenv("POLICY_START") == "late_start" {
		lateStartWorker()
	}
	if os.Getenv("POLICY_START") == "exit" {
		if _, err := os.Stat(os.Getenv("POLICY_HEAL")); err != nil {
			fmt.Fprintln(os.Stderr, "policy helper: cannot start")
			os.Exit(3)
		}
	}
	// "termexit" reacts to SIGTERM by itself, so SIGTERM is not only the
	// SDK's cancellation here, unless a test asks for the SDK's default.
	s := &worker.Server{CustomSIGTERM: os.Getenv("POLICY_SDK_SIGTERM") == ""}
	s.Concurrency, _ = strconv.Atoi(os.Getenv("POLICY_CONC"))
	pid := func(context.Context, worker.Args) (any, error) { return os.Getpid(), nil }
	s.Handle("null", func(context.Context, worker.Args) (any, error) { return nil, nil })
	s.Handle("pid", pid)
	s.Handle("getenv", worker.Func(func(_ context.Context, key string) (string, error) { return os.Getenv(key), nil }))
	s.Handle("gate", worker.Func(func(_ context.Context, path string) (int, error) {
		f, err := os.Open(path) // blocks until the test opens the writing end
		if err != nil {
			return 0, err
		}
		defer f.Close()
		_, err = f.Read(make([]byte, 1))
		return os.Getpid(), err
	}))
	s.Handle("hang", func(context.Context, worker.Args) (any, error) { blockForever(); return nil, nil })
	s.Handle("termexit", func(context.Context, worker.Args) (any, error) {
		ch := make(chan os.Signal, 1)
		ossignal.Notify(ch, syscall.SIGTERM)
		<-ch
		os.Exit(0)
		return nil, nil
	})
	crash := func(context.Context, worker.Args) (any, error) { os.Exit(3); return nil, nil }
	// orphan dies leaving a process in another session that holds its
	// stderr open, which delays the dispatcher's reaping; the orphan's pid
	// goes to the file named by the argument.
	s.Handle("orphan", worker.Func(func(_ context.Context, path string) (int, error) {
		cmd := exec.Command("sleep", "3600")
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		if err := os.WriteFile(path, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
			return 0, err
		}
		os.Exit(3)
		return 0, nil
	}))
	s.Handle("crash", crash)
	flaky := worker.Func(func(_ context.Context, path string) (string, error) {
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
			f.Close()
			os.Exit(3)
		}
		return "ok", nil
	})
	s.Handle("flaky", flaky)
	s.Handle("flaky-unsafe", flaky)
	s.Handle("grow", func(context.Context, worker.Args) (any, error) {
		var keep [][]byte
		for range 256 { // at most 2 GiB: the monitor kills us long before
			b := make([]byte, 8<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
			time.Sleep(time.Millisecond)
		}
		blockForever()
		return len(keep), nil
	})
	s.Handle("burn", func(context.Context, worker.Args) (any, error) {
		for x := 0; ; x++ {
			if x < 0 {
				return x, nil
			}
		}
	})
	s.Handle("fds", func(context.Context, worker.Args) (any, error) {
		for {
			if _, err := os.Open("/dev/null"); err != nil {
				fmt.Fprintln(os.Stderr, "policy helper:", err)
				os.Exit(1)
			}
		}
	})
	s.Handle("limits", func(context.Context, worker.Args) (any, error) {
		b, err := os.ReadFile("/proc/self/limits")
		return string(b), err
	})
	s.Run()
}

// lateStartWorker speaks the protocol by hand: it takes one CALL off the
// socket but marks it started only when SIGTERM arrives, that is after the
// dispatcher has seen the call's deadline pass and begun to stop it. Then
// it hangs (ignoring SIGTERM) until the dump signal.
func lateStartWorker() {
	fd, _ := strconv.Atoi(os.Getenv("BULKHEAD_FD"))
	mfd, _ := strconv.Atoi(os.Getenv("BULKHEAD_MARKER_FD"))
	page, err := unix.Mmap(mfd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		os.Exit(5)
	}
	term := make(chan os.Signal, 1)
	ossignal.Notify(term, syscall.SIGTERM)
	h := wire.Hello{Protocol: wire.Version, PID: int64(os.Getpid()), Cookie: os.Getenv("BULKHEAD_COOKIE"),
		Concurrency: 1, Marker: true}
	var b wire.Builder
	_ = b.Value(wire.TypeHello, 0, h, wire.MaxHelloSize)
	fdio.FD(fd).Write(b.Bytes())
	hd, _, err := wire.NewReader(fdio.FD(fd), wire.DefaultMaxFrame).Next()
	if err != nil {
		os.Exit(6)
	}
	<-term
	(*atomic.Uint64)(unsafe.Pointer(&page[8])).Store(hd.ID)
	blockForever()
}

// testPool starts a pool of policy helper workers with hooks, and checks when
// the test ends that closing it left no process, zombie, descriptor or
// goroutine behind.
func testPool(t *testing.T, cfg Config, h hooks, env ...string) (*Pool, *records) {
	t.Helper()
	p, logs, err := tryPool(t, cfg, h, env...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, logs
}

func tryPool(t *testing.T, cfg Config, h hooks, env ...string) (*Pool, *records, error) {
	t.Helper()
	checkLeaks(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Command = exe
	cfg.Env = HelperEnviron("policy", env...)
	logs := &records{}
	cfg.Logger = slog.New(logs)
	p, err := newPool(context.Background(), cfg, h)
	if p != nil {
		t.Cleanup(func() {
			if err := p.Close(context.Background()); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	return p, logs, err
}

// records is a slog.Handler that lets a test wait for log records.
type records struct {
	mu   sync.Mutex
	cond *sync.Cond
	recs []map[string]any
}

func (l *records) Enabled(context.Context, slog.Level) bool { return true }
func (l *records) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *records) WithGroup(string) slog.Handler            { return l }

func (l *records) Handle(_ context.Context, r slog.Record) error {
	m := map[string]any{"msg": r.Message, "level": r.Level}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cond == nil {
		l.cond = sync.NewCond(&l.mu)
	}
	l.recs = append(l.recs, m)
	l.cond.Broadcast()
	return nil
}

// wait returns the records with message msg once there are n of them. It
// fails the test after 20 seconds: a bound, not a synchronisation.
func (l *records) wait(t *testing.T, msg string, n int) []map[string]any {
	t.Helper()
	stop := time.AfterFunc(20*time.Second, func() {
		l.mu.Lock()
		if l.cond != nil {
			l.cond.Broadcast()
		}
		l.mu.Unlock()
	})
	defer stop.Stop()
	deadline := time.Now().Add(20 * time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cond == nil {
		l.cond = sync.NewCond(&l.mu)
	}
	for {
		var got []map[string]any
		for _, r := range l.recs {
			if r["msg"] == msg {
				got = append(got, r)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d %q log records; have %v", len(got), n, msg, l.recs)
		}
		l.cond.Wait()
	}
}

// gate blocks a "gate" call inside its worker until the test opens it.
type gate struct {
	path    string
	started chan struct{} // closed once the worker is inside the call
	w       *os.File
}

func newGate(t *testing.T) *gate {
	t.Helper()
	g := &gate{path: filepath.Join(t.TempDir(), "gate"), started: make(chan struct{})}
	if err := unix.Mkfifo(g.path, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Opening a FIFO for writing blocks until the worker opens it
		// for reading, from inside the call.
		f, err := os.OpenFile(g.path, os.O_WRONLY, 0)
		if err == nil {
			g.w = f
		}
		close(g.started)
	}()
	return g
}

// open lets the call return.
func (g *gate) open(t *testing.T) {
	t.Helper()
	<-g.started
	if g.w == nil {
		t.Fatal("gate: the worker never entered the call")
	}
	g.w.Write([]byte{1})
	g.w.Close()
}

type result struct {
	pid int
	err error
}

// callAsync runs a call on its own goroutine; its result arrives on the
// channel.
func callAsync(p *Pool, method string, args ...any) <-chan result {
	ch := make(chan result, 1)
	go func() {
		r, err := p.Call(context.Background(), method, args...)
		var pid int
		if err == nil {
			err = r.Decode(&pid)
		}
		ch <- result{pid, err}
	}()
	return ch
}

func pidOf(t *testing.T, p *Pool) int {
	t.Helper()
	r, err := p.Call(context.Background(), "pid")
	if err != nil {
		t.Fatalf("pid: %v", err)
	}
	var pid int
	if err := r.Decode(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// fakeClock is the policies' clock in tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// until polls cond, yielding, for state that no event announces (pool
// counters). Bounded; not a sleep.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Until(t, what, cond)
}

func isCrash(err error) (*CrashError, bool) {
	var ce *CrashError
	return ce, errors.As(err, &ce)
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
