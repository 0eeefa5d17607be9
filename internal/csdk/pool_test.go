//go:build cgo

package csdk

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"go.uber.org/goleak"
)

// buildCWorker builds examples/cworker on the C SDK with the flags its own
// test uses.
func buildCWorker(t testing.TB, flags ...string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	bin := filepath.Join(t.TempDir(), "cworker")
	args := append([]string{"-std=c99", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror"}, flags...)
	cmd := exec.Command(gcc, append(args, "-I", "../../sdk/c", "-o", bin, "../../examples/cworker/cworker.c")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return bin
}

// TestPool runs the C SDK worker under a real Pool, over the socket and over
// shared memory: calls, a crash in C that costs only its call, and a call
// cancelled by its deadline while the C handler polls bh_canceled.
func TestPool(t *testing.T) {
	defer goleak.VerifyNone(t)
	bin := buildCWorker(t)
	for name, tr := range map[string]bulkhead.Transport{"socket": bulkhead.TransportSocket, "shm": bulkhead.TransportShm} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			pool, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 1, Transport: tr})
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close(ctx)
			call := func(method string, args ...any) (any, error) {
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				return bulkhead.CallAs[any](ctx, pool, method, args...)
			}
			tests := []struct {
				method string
				args   []any
				want   any
			}{
				{"upper", []any{"héllo"}, "HéLLO"},
				{"add", []any{-5, 3}, int64(-2)},
				{"echo", []any{map[string]any{"k": []any{uint64(1), "x", []byte{0, 1}}}},
					map[any]any{"k": []any{uint64(1), "x", []byte{0, 1}}}},
				{"echo", []any{strings.Repeat("z", 1<<20)}, strings.Repeat("z", 1<<20)},
			}
			for _, tt := range tests {
				got, err := call(tt.method, tt.args...)
				if err != nil || !equal(got, tt.want) {
					t.Fatalf("%s(%.40v) = %.40v, %v; want %.40v", tt.method, tt.args, got, err, tt.want)
				}
			}
			_, err = call("crash", "segv")
			var ce *bulkhead.CrashError
			if !errors.As(err, &ce) || ce.Signal != syscall.SIGSEGV {
				t.Fatalf("crash(segv): %v; want a *CrashError by SIGSEGV", err)
			}
			if got, err := call("upper", "again"); err != nil || got != "AGAIN" {
				t.Fatalf("after the crash: %v, %v", got, err)
			}
			var re *bulkhead.RemoteError
			if _, err := call("add", "x", 1); !errors.As(err, &re) || re.Code != bulkhead.CodeBadArguments {
				t.Fatalf("add(\"x\", 1): %v; want a bad_arguments *RemoteError", err)
			}
		})
	}
}

// equal compares decoded CBOR values.
func equal(a, b any) bool {
	switch x := a.(type) {
	case []byte:
		y, ok := b.([]byte)
		return ok && string(x) == string(y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[any]any:
		y, ok := b.(map[any]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !equal(v, y[k]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// bench/csrc/sdkcall.c, the C SDK's CPU per call against the kernel floor,
// builds and runs (its figures are in BENCHMARKS.md; this only keeps it
// working).
func TestSDKCallBenchRuns(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	bin := filepath.Join(t.TempDir(), "sdkcall")
	build := exec.Command(gcc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-I", "../../sdk/c", "-o", bin,
		"../../bench/csrc/sdkcall.c")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", build.Args, err, out)
	}
	out, err := exec.Command(bin, "200", "1").Output()
	if err != nil {
		t.Fatalf("sdkcall: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"sdk_vs_floor":`) {
		t.Fatalf("sdkcall printed %q", out)
	}
}
