//go:build cgo

package csdk

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"go.uber.org/goleak"
)

// TestCrashReport: a C SDK worker that faults in C, or calls abort(), dies
// by that signal, and the pool's CrashError names the signal, the request
// and the C function (from the SDK's crash handler's report on stderr,
// named from the program's symbol table: cworker's functions are static).
func TestCrashReport(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx := context.Background()
	pool := crashPool(t, buildCWorker(t))
	defer pool.Close(ctx)
	tests := []struct {
		kind     string
		signal   syscall.Signal
		function string
	}{
		{"segv", syscall.SIGSEGV, "cworker_null_write"},
		{"abort", syscall.SIGABRT, "crash"}, // abort's caller: libc's frames are skipped
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			_, err := pool.Call(ctx, "crash", tt.kind)
			var ce *bulkhead.CrashError
			if !errors.As(err, &ce) {
				t.Fatalf("crash(%s): %v; want a *CrashError", tt.kind, err)
			}
			if ce.Signal != tt.signal || ce.RequestID == 0 || ce.Function != tt.function {
				t.Errorf("crash(%s): signal %v, request %d, function %q; want %v, non-zero, %q\nstderr:\n%s",
					tt.kind, ce.Signal, ce.RequestID, ce.Function, tt.signal, tt.function, ce.Stderr)
			}
			head := "bulkhead: fatal signal " + strconv.Itoa(int(tt.signal)) + " ("
			if !strings.Contains(ce.Stderr, head) || !strings.Contains(ce.Stderr, `in call `+strconv.FormatUint(ce.RequestID, 10)+` "crash"`) {
				t.Errorf("crash(%s): stderr has no report of signal %d in call %d:\n%s", tt.kind, tt.signal, ce.RequestID, ce.Stderr)
			}
		})
	}
}

// TestSlowCallStack: a C call that runs past Config.SlowCall is logged with
// its worker's STACK, the SDK's SIGUSR2 answer (opted in with
// BH_STACK_ON_SIGUSR2), which shows the C function the call is in; the
// call, which retries its sleeps, goes on until its ctx ends. Over the
// socket and over shared memory (the handler writes the frame to the ring).
func TestSlowCallStack(t *testing.T) {
	defer goleak.VerifyNone(t)
	bin := buildCWorker(t, "-DBH_STACK_ON_SIGUSR2")
	for name, tr := range map[string]bulkhead.Transport{"socket": bulkhead.TransportSocket, "shm": bulkhead.TransportShm} {
		t.Run(name, func(t *testing.T) {
			log := &testutil.Records{Message: "slow call", Recs: make(chan map[string]any, 4)}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pool, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 1, Transport: tr,
				SlowCall: 100 * time.Millisecond, Logger: slog.New(log)})
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := pool.Call(ctx, "sleep", 60_000)
				done <- err
			}()
			rec := <-log.Recs
			stack, _ := rec["stack"].(string)
			if rec["method"] != "sleep" || !strings.Contains(stack, "bulkhead: stack of pid") ||
				!strings.Contains(stack, `in call `) || !strings.Contains(stack, " sleep_ms+0x") {
				t.Errorf("slow call record %v", rec)
			}
			select {
			case err := <-done:
				t.Fatalf("the slow call ended: %v", err)
			default:
			}
			cancel()
			var ce *bulkhead.CanceledError
			if err := <-done; !errors.As(err, &ce) {
				t.Fatalf("sleep: %v", err)
			}
			ce.Wait()
		})
	}
}

// TestSlowCallScanned: a C SDK worker built without BH_STACK_ON_SIGUSR2
// offers no STACK, and its slow call is left alone: no signal reaches it
// (SIGUSR2's default action would kill it), a sleep(3) is not cut short
// (it would answer the seconds left), and the call ends by its deadline,
// canceled. The log shows where it is, scanned from the worker's memory:
// the syscall and the C callers (nap is static: named from the program's
// symbol table), or for a spinning call that it is running.
func TestSlowCallScanned(t *testing.T) {
	defer goleak.VerifyNone(t)
	bin := buildCWorker(t)
	tests := []struct {
		method string
		args   []any
		want   []string
	}{
		{"nap", []any{30}, []string{"blocked in clock_nanosleep", "clock_nanosleep+", "sleep+", "nap+0x", "bh__on_call+"}},
		{"spin", nil, []string{"running in user code"}},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			log := &testutil.Records{Message: "slow call", Recs: make(chan map[string]any, 4)}
			pool, err := bulkhead.New(context.Background(), bulkhead.Config{Command: bin, Workers: 1,
				SlowCall: 100 * time.Millisecond, Logger: slog.New(log)})
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				left, err := bulkhead.CallAs[uint64](ctx, pool, tt.method, tt.args...)
				if err == nil {
					err = errors.New("it returned " + strconv.FormatUint(left, 10) + ": cut short")
				}
				done <- err
			}()
			rec := <-log.Recs
			scanned, _ := rec["scanned_stack"].(string)
			if rec["stack"] != nil || !strings.Contains(rec["no_stack"].(string), "offers no stacks") {
				t.Errorf("a worker without BH_STACK_ON_SIGUSR2 offered a STACK: %v", rec)
			}
			for _, w := range tt.want {
				if !strings.Contains(scanned, w) {
					t.Errorf("scanned stack has no %q:\n%s", w, scanned)
				}
			}
			// nap ends as the pool stops the worker at the deadline; spin
			// answers canceled itself, seeing the deadline pass.
			err = <-done
			var ce *bulkhead.CanceledError
			var re *bulkhead.RemoteError
			switch {
			case errors.As(err, &ce) && errors.Is(err, context.DeadlineExceeded):
				ce.Wait()
			case tt.method == "spin" && errors.As(err, &re) && re.Code == bulkhead.CodeCanceled:
			default:
				t.Fatalf("%s: %v; want canceled by its deadline", tt.method, err)
			}
		})
	}
}

// TestTraceparent: a traced call reaches a C SDK handler's call->traceparent;
// to a worker built with BH_NO_TRACE, whose HELLO does not offer it, the
// call goes without it (a fourth CALL item would be a bad envelope there).
func TestTraceparent(t *testing.T) {
	defer goleak.VerifyNone(t)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ctx := context.Background()
	traced, err := bulkhead.WithTraceparent(ctx, tp)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		defines []string
		want    any
	}{{nil, tp}, {[]string{"-DBH_NO_TRACE"}, nil}} {
		pool, err := bulkhead.New(ctx, bulkhead.Config{Command: buildCWorker(t, tt.defines...), Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		got, err := bulkhead.CallAs[any](traced, pool, "traceparent")
		if err != nil || got != tt.want {
			t.Errorf("%v: the handler saw %v, %v; want %v", tt.defines, got, err, tt.want)
		}
		if got, err := bulkhead.CallAs[any](ctx, pool, "traceparent"); err != nil || got != nil {
			t.Errorf("%v: an untraced call's handler saw %v, %v", tt.defines, got, err)
		}
		pool.Close(ctx)
	}
}

// crashPool starts a pool of one worker of bin.
func crashPool(t *testing.T, bin string) *bulkhead.Pool {
	pool, err := bulkhead.New(context.Background(), bulkhead.Config{Command: bin, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// buildCrashLib builds testdata/crashlib.c, linked with zlib and with
// testdata/libcrash.c built as a shared library of its own (unstripped).
func buildCrashLib(t *testing.T) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	if _, err := os.Stat("/usr/include/zlib.h"); err != nil {
		t.Skip("no zlib.h: apt-get install zlib1g-dev (.ci/run does)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "crashlib")
	worker := []string{"-pedantic", "-I", "../../sdk/c", "-o", bin, "testdata/crashlib.c",
		"-L", dir, "-Wl,-rpath," + dir, "-lcrash", "-lz"}
	if _, err := os.Stat("/usr/include/zstd.h"); err == nil {
		worker = append(worker, "-DCRASHLIB_ZSTD", "-D_DEFAULT_SOURCE", "-lzstd")
	}
	for _, args := range [][]string{
		{"-shared", "-fPIC", "-o", filepath.Join(dir, "libcrash.so"), "testdata/libcrash.c"},
		worker,
	} {
		cmd := exec.Command(gcc, append([]string{"-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
	}
	return bin
}

// TestCrashInLibrary: a fault in a function a shared library does not
// export. zlib's inflate_fast is hidden, and the system's zlib is
// stripped: no symbol table names it, and Function is the innermost frame
// that has a name, inflate, the exported function the call entered.
// libcrash.so's libcrash_store is static but the library is not stripped:
// the dispatcher names it from the library's .symtab.
func TestCrashInLibrary(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx := context.Background()
	pool := crashPool(t, buildCrashLib(t))
	defer pool.Close(ctx)
	tests := []struct {
		method, function string
		unnamed          string // the faulting frame's module, which the report shows without a name
	}{
		{"inflate", "inflate", "libz.so"},
		{"libcrash", "libcrash_store", "libcrash.so"},
		// The new user's case: which exported function of libzstd is the
		// innermost named frame depends on libzstd's version.
		{"zstd", "ZSTD_*", "libzstd.so"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			_, err := pool.Call(ctx, tt.method)
			var re *bulkhead.RemoteError
			if errors.As(err, &re) && re.Code == bulkhead.CodeUnknownMethod {
				t.Skip("crashlib was built without libzstd (apt-get install libzstd-dev; .ci/run does)")
			}
			var ce *bulkhead.CrashError
			if !errors.As(err, &ce) {
				t.Fatalf("%s: %v; want a *CrashError", tt.method, err)
			}
			want, wild := strings.CutSuffix(tt.function, "*")
			if ce.Signal != syscall.SIGSEGV || ce.Function != tt.function && !(wild && strings.HasPrefix(ce.Function, want)) {
				t.Errorf("%s: signal %v, function %q; want SIGSEGV, %q\nstderr:\n%s",
					tt.method, ce.Signal, ce.Function, tt.function, ce.Stderr)
			}
			// The report's faulting frame has no name: the name came from
			// the dispatcher, or from a caller's frame.
			lines := strings.Split(ce.Stderr, "\n")
			for i, l := range lines {
				if strings.HasPrefix(l, "bulkhead: program ") && i+1 < len(lines) {
					if f := lines[i+1]; !strings.Contains(f, tt.unnamed) || !strings.Contains(f, "(+0x") {
						t.Errorf("%s: faulting frame %q; want an unnamed frame of %s", tt.method, f, tt.unnamed)
					}
				}
			}
		})
	}
}
