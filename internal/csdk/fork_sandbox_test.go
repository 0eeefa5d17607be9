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
)

// buildSandboxed builds testdata/sandboxed.c on the C SDK.
func buildSandboxed(t testing.TB) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	bin := filepath.Join(t.TempDir(), "sandboxed")
	cmd := exec.Command(gcc, "-std=c99", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror",
		"-I", "../../sdk/c", "-o", bin, "testdata/sandboxed.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return bin
}

// forkedPool starts a one-worker pool of bin with a fork server and sb, and
// checks that its worker was cloned, not exec'd.
func forkedPool(t *testing.T, bin string, sb bulkhead.Sandbox) *bulkhead.Pool {
	t.Helper()
	ctx := context.Background()
	p, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 1, ForkServer: true, Sandbox: sb,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(ctx) })
	if got, err := call(p, "add", 2, 3); err != nil || got != uint64(5) {
		t.Fatalf("add: %v, %v", got, err)
	}
	pid := p.Workers()[0].PID
	if !forked(t, pid) {
		t.Fatalf("worker %d was exec'd, not forked", pid)
	}
	if sb.Seccomp != "" {
		if got := seccompMode(t, pid); got != "2" {
			t.Fatalf("worker %d: Seccomp mode %q; want 2 (filter)", pid, got)
		}
		if got := seccompMode(t, forkServerPID(t, p)); got != "0" {
			t.Fatalf("fork server: Seccomp mode %q; want 0 (its clones install the filter)", got)
		}
	}
	return p
}

// seccompMode is the Seccomp line of pid's /proc status.
func seccompMode(t *testing.T, pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func call(p *bulkhead.Pool, method string, args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return bulkhead.CallAs[any](ctx, p, method, args...)
}

// A worker cloned by the fork server is in the seccomp profile: a system
// call outside it kills the worker, with the same verdict as an exec'd
// worker's (LimitSandbox, naming the call); the replacement is a clone in
// the profile too.
func TestForkServerSeccomp(t *testing.T) {
	testutil.CheckLeaks(t)
	p := forkedPool(t, buildSandboxed(t), bulkhead.Sandbox{Seccomp: "compute"})
	for round := 0; round < 2; round++ {
		pid := p.Workers()[0].PID
		_, err := call(p, "socket")
		var ce *bulkhead.CrashError
		if !errors.As(err, &ce) || ce.Limit != bulkhead.LimitSandbox || ce.Syscall != "socket" || ce.PID != pid {
			t.Fatalf("round %d: socket(AF_INET): %v (%+v); want a *CrashError of worker %d, LimitSandbox, socket", round, err, ce, pid)
		}
		if got, err := call(p, "add", 1, 1); err != nil || got != uint64(2) {
			t.Fatalf("after the kill: %v, %v", got, err)
		}
		if next := p.Workers()[0].PID; next == pid || !forked(t, next) {
			t.Fatalf("replacement %d of %d was not forked", next, pid)
		}
	}
	// Log mode lets it through, the call answers.
	q := forkedPool(t, buildSandboxed(t), bulkhead.Sandbox{Seccomp: "compute", SeccompLog: true})
	if got, err := call(q, "socket"); err != nil || got != uint64(0) {
		t.Fatalf("socket with SeccompLog: %v, %v; want 0", got, err)
	}
}

// Landlock holds in a clone: it reads beneath ReadOnly, and nothing else.
func TestForkServerLandlock(t *testing.T) {
	testutil.CheckLeaks(t)
	in, out := t.TempDir(), t.TempDir()
	for _, d := range []string{in, out} {
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := forkedPool(t, buildSandboxed(t), bulkhead.Sandbox{ReadOnly: []string{in}})
	for _, tc := range []struct {
		path string
		want uint64
	}{
		{filepath.Join(in, "f"), 0},
		{filepath.Join(out, "f"), uint64(syscall.EACCES)},
		{"/etc/passwd", uint64(syscall.EACCES)},
	} {
		if got, err := call(p, "read", tc.path); err != nil || got != tc.want {
			t.Errorf("read %s: %v, %v; want errno %d", tc.path, got, err, tc.want)
		}
	}
}

// A clone goes into its own cgroup before HELLO: past MemoryMax the OOM
// killer kills it, with an exec'd worker's verdict (LimitMemory, its peak).
// Without the right to make cgroups, New fails closed.
func TestForkServerMemoryMax(t *testing.T) {
	testutil.CheckLeaks(t)
	bin := buildSandboxed(t)
	sb := bulkhead.Sandbox{MemoryMax: 32 << 20}
	if os.Geteuid() != 0 {
		_, err := bulkhead.New(context.Background(), bulkhead.Config{Command: bin, Workers: 1, ForkServer: true,
			Sandbox: sb, Logger: slog.New(slog.DiscardHandler)})
		var se *bulkhead.StartError
		if !errors.As(err, &se) || se.Protection != "cgroup" {
			t.Fatalf("New as uid %d: %v; want a *StartError, Protection cgroup", os.Geteuid(), err)
		}
		return
	}
	p := forkedPool(t, bin, sb)
	pid := p.Workers()[0].PID
	_, err := call(p, "alloc", 256)
	var ce *bulkhead.CrashError
	if !errors.As(err, &ce) || ce.Limit != bulkhead.LimitMemory || ce.PID != pid || ce.PeakMemory < 16<<20 {
		t.Fatalf("alloc(256 MiB) under 32 MiB: %v (%+v); want a *CrashError of worker %d, LimitMemory, its peak", err, ce, pid)
	}
	if got, err := call(p, "alloc", 4); err != nil || got != uint64(4) {
		t.Fatalf("after the OOM kill: %v, %v", got, err)
	}
	if next := p.Workers()[0].PID; next == pid || !forked(t, next) {
		t.Fatalf("replacement %d of %d was not forked", next, pid)
	}
}
