package crashy_test

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/examples/crashy"
	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/worker"
)

// The test binary doubles as the crashy worker: a pool started by a test
// re-executes it, and TestMain runs crashy.Main instead of the tests
// (the module's one helper registry, internal/testutil). Goroutine leaks
// are checked for the whole binary.
func TestMain(m *testing.M) {
	testutil.Main(testutil.VerifyLeaks(m), map[string]func(){"crashy": crashy.Main}, "crashy", worker.IsWorker)
}

// logSink hands the pool's log records to a test as they happen.
type logSink struct{ ch chan slog.Record }

func (l logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l logSink) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l logSink) WithGroup(string) slog.Handler            { return l }
func (l logSink) Handle(_ context.Context, r slog.Record) error {
	select {
	case l.ch <- r:
	default: // a test that does not read logs must not block the pool
	}
	return nil
}

func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// startPool starts a one-worker pool of this binary as a crashy worker with
// o, journalling to a fresh directory, which it returns.
func startPool(t *testing.T, o crashy.Options, logs chan slog.Record) (*bulkhead.Pool, string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o.Journal = t.TempDir()
	if logs == nil {
		logs = make(chan slog.Record)
	}
	p, err := bulkhead.New(context.Background(), bulkhead.Config{
		Command: exe, Workers: 1, KillGrace: 50 * time.Millisecond,
		Env:    append(os.Environ(), o.Environ()...),
		Logger: slog.New(logSink{logs}),
	})
	if p != nil {
		t.Cleanup(func() {
			if err := p.Close(context.Background()); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	return p, o.Journal, err
}

func fnv64a(b []byte) int64 {
	h := fnv.New64a()
	h.Write(b)
	return int64(h.Sum64())
}

func journals(t *testing.T, dir string) [][]crashy.Record {
	t.Helper()
	js, err := crashy.ReadJournals(dir)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Each per-call fault kills the worker the way it says, and the call is in
// the journal once, with its fault, before the worker died.
func TestCallFaults(t *testing.T) {
	data := []byte("the quick brown fox")
	tests := []struct {
		fault native.Fault
		opts  crashy.Options
		check func(t *testing.T, err error)
	}{
		{native.FaultNone, crashy.Options{}, nil},
		{native.FaultSegv, crashy.Options{Segv: 1}, wantSignal(syscall.SIGSEGV, "crashy_raw_segv")},
		{native.FaultAbort, crashy.Options{Abort: 1}, wantSignal(syscall.SIGABRT, "crashy_raw_abort")},
		{native.FaultExit, crashy.Options{Exit: 1}, func(t *testing.T, err error) {
			var ce *bulkhead.CrashError
			if !errors.As(err, &ce) || ce.Signal != 0 || ce.ExitCode != native.FaultExitCode {
				t.Fatalf("got %v, want a CrashError with exit status %d", err, native.FaultExitCode)
			}
		}},
		{native.FaultHang, crashy.Options{Hang: 1}, func(t *testing.T, err error) {
			var ce *bulkhead.CanceledError
			if errors.As(err, &ce) {
				ce.Wait()
			}
			if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) || !ce.Started {
				t.Fatalf("got %v, want a CanceledError for a started call past its deadline", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			p, dir, err := startPool(t, tt.opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tt.fault == native.FaultHang {
				// The hang never returns: only the deadline ends the call.
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
			}
			r, err := p.Call(ctx, crashy.Method, uint64(7), data)
			if tt.check == nil {
				if err != nil {
					t.Fatal(err)
				}
				var sum int64
				if err := r.Decode(&sum); err != nil || sum != fnv64a(data) {
					t.Fatalf("checksum %d, %v; want %d", sum, err, fnv64a(data))
				}
			} else {
				tt.check(t, err)
			}
			if err := p.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			// A replacement worker may have started: its journal is empty.
			var recs []crashy.Record
			for _, j := range journals(t, dir) {
				recs = append(recs, j...)
			}
			if len(recs) != 1 {
				t.Fatalf("journal records %v: want one", recs)
			}
			if got := recs[0]; got.Kind != crashy.KindCall || got.ID != 7 || got.Fault != tt.fault {
				t.Fatalf("record %+v: want a call record for id 7 with fault %v", got, tt.fault)
			}
		})
	}
}

// wantSignal checks for a call's crash by sig, in C function fn where the
// worker SDK reports it (linux/amd64: the demo's --log records name it).
func wantSignal(sig syscall.Signal, fn string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ce *bulkhead.CrashError
		if !errors.As(err, &ce) || ce.Signal != sig || ce.Phase != bulkhead.PhaseCall || ce.Killed {
			t.Fatalf("got %v, want a call-phase CrashError by %v", err, sig)
		}
		if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" && (ce.Function != fn || ce.RequestID == 0) {
			t.Errorf("CrashError.Function %q, RequestID %d; want %q and the call's id", ce.Function, ce.RequestID, fn)
		}
		if ce.CoreDumped {
			t.Errorf("a core was dumped: Main should have turned core dumps off")
		}
	}
}

// A start-up fault kills the worker before HELLO, after journalling it.
func TestStartupFault(t *testing.T) {
	_, dir, err := startPool(t, crashy.Options{Startup: 1}, nil)
	var se *bulkhead.StartError
	if !errors.As(err, &se) || !se.Exited {
		t.Fatalf("New: %v; want a StartError for a worker that died on its own", err)
	}
	js := journals(t, dir)
	if len(js) != 1 || len(js[0]) != 1 || js[0][0].Kind != crashy.KindStartup {
		t.Fatalf("journals %v: want one start-up fault record", js)
	}
	want := map[native.Fault]bool{
		native.FaultSegv:  se.Signal == syscall.SIGSEGV,
		native.FaultAbort: se.Signal == syscall.SIGABRT,
		native.FaultExit:  se.Signal == 0 && se.ExitCode == native.FaultExitCode,
	}
	if f := js[0][0].Fault; !want[f] {
		t.Fatalf("journal says %v, worker ended with signal %v, status %d", f, se.Signal, se.ExitCode)
	}
}

// An idle fault lets the call succeed, then kills the worker between calls.
func TestIdleFault(t *testing.T) {
	logs := make(chan slog.Record, 16)
	p, dir, err := startPool(t, crashy.Options{Idle: 1}, logs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Call(context.Background(), crashy.Method, uint64(1), []byte{1}); err != nil {
		t.Fatal(err)
	}
	var crash slog.Record
	for r := range logs {
		if r.Message == "worker crashed" {
			crash = r
			break
		}
	}
	if ph := attr(crash, "phase"); ph != "idle" {
		t.Fatalf("crash in phase %q, want idle", ph)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var recs []crashy.Record
	for _, j := range journals(t, dir) {
		if len(j) > 0 && j[0].Kind == crashy.KindCall {
			recs = j
		}
	}
	if len(recs) != 2 || recs[0].ID != 1 || recs[1].Kind != crashy.KindIdle || crashy.LastFault(recs) != recs[1].Fault {
		t.Fatalf("journal %v: want the call, then an idle fault", recs)
	}
}

// A call without a usable id is refused, not run.
func TestBadArguments(t *testing.T) {
	p, dir, err := startPool(t, crashy.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []any
		code bulkhead.ErrorCode
	}{
		{"zero id", []any{uint64(0), []byte{1}}, bulkhead.CodeApplication},
		{"missing data", []any{uint64(1)}, bulkhead.CodeBadArguments},
		{"text id", []any{"one", []byte{1}}, bulkhead.CodeBadArguments},
	}
	for _, tt := range tests {
		_, err := p.Call(context.Background(), crashy.Method, tt.args...)
		var re *bulkhead.RemoteError
		if !errors.As(err, &re) || re.Code != tt.code {
			t.Errorf("%s: got %v, want a %v RemoteError", tt.name, err, tt.code)
		}
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if js := journals(t, dir); len(js) != 1 || len(js[0]) != 0 {
		t.Fatalf("journals %v: a refused call must not be recorded", js)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    crashy.Options
		want string // "" if valid
	}{
		{"zero", crashy.Options{}, ""},
		{"all faults", crashy.Options{Segv: 0.25, Abort: 0.25, Exit: 0.25, Hang: 0.25, Idle: 1, Startup: 1, IdleDelay: time.Minute}, ""},
		{"negative", crashy.Options{Segv: -0.1}, "segv rate"},
		{"over one", crashy.Options{Idle: 1.5}, "idle rate"},
		{"NaN", crashy.Options{Hang: math.NaN()}, "hang rate"},
		{"sum over one", crashy.Options{Segv: 0.6, Abort: 0.6}, "add up to"},
		{"startup over one", crashy.Options{Startup: 2}, "startup rate"},
		{"negative delay", crashy.Options{IdleDelay: -time.Second}, "idle delay"},
		{"long delay", crashy.Options{IdleDelay: time.Hour}, "idle delay"},
	}
	for _, tt := range tests {
		err := tt.o.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: Validate() = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestOptionsEnv(t *testing.T) {
	o := crashy.Options{Segv: 0.1, Abort: 0.2, Exit: 0.05, Hang: 1e-3, Idle: 0.5, IdleDelay: 3 * time.Millisecond, Startup: 0.25, Journal: "/tmp/j"}
	env := map[string]string{}
	for _, kv := range o.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	got, err := crashy.OptionsFromEnv(func(k string) string { return env[k] })
	if err != nil || got != o {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, o)
	}
	bad := []map[string]string{
		{crashy.EnvSegv: "lots"},
		{crashy.EnvIdleDelay: "soon"},
		{crashy.EnvStartup: "1.5"},
	}
	for _, env := range bad {
		if _, err := crashy.OptionsFromEnv(func(k string) string { return env[k] }); err == nil {
			t.Errorf("OptionsFromEnv(%v) accepted it", env)
		}
	}
	if got, err := crashy.OptionsFromEnv(func(string) string { return "" }); err != nil || got != (crashy.Options{}) {
		t.Errorf("empty environment: %+v, %v", got, err)
	}
}
