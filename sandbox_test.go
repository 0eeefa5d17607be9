package bulkhead_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// sandboxPool starts a pool of the helper worker with the default
// environment (nothing of the test's but what env adds) and sb.
func sandboxPool(t *testing.T, cmd string, sb bulkhead.Sandbox, env ...string) (*bulkhead.Pool, error) {
	t.Helper()
	bulkhead.CheckLeaks(t)
	p, err := bulkhead.New(context.Background(), bulkhead.Config{
		Command: cmd, Workers: 1, Sandbox: sb, Env: append([]string{"GORACE=atexit_sleep_ms=0"}, env...),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err == nil {
		t.Cleanup(func() { p.Close(context.Background()) })
	}
	return p, err
}

func callWithin[T any](t *testing.T, p *bulkhead.Pool, method string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := bulkhead.CallAs[T](ctx, p, method, nil)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return v
}

// A worker gets PATH, the BULKHEAD_* variables and Config.Env, not the
// service's environment.
func TestWorkerEnvironmentIsMinimal(t *testing.T) {
	t.Setenv("SERVICE_SECRET", "hunter2")
	t.Setenv("BULKHEAD_TEST_PASSED", "yes")
	exe, _ := os.Executable()
	p, err := sandboxPool(t, exe, bulkhead.Sandbox{}, "ADDED=1")
	if err != nil {
		t.Fatal(err)
	}
	env := callWithin[[]string](t, p, "environ")
	has := func(prefix string) bool {
		return slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, prefix) })
	}
	for _, want := range []string{"PATH=", "BULKHEAD_TEST_PASSED=yes", "ADDED=1", "BULKHEAD_FD=", "BULKHEAD_COOKIE="} {
		if !has(want) {
			t.Errorf("worker's environment lacks %s: %q", want, env)
		}
	}
	for _, leak := range []string{"SERVICE_SECRET=", "HOME="} {
		if has(leak) {
			t.Errorf("worker's environment has the service's %s", leak)
		}
	}
}

// copyBinary copies the test binary into a directory anyone may enter, and
// returns its path and SHA-256.
func copyBinary(t *testing.T) (string, string) {
	t.Helper()
	exe, _ := os.Executable()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	path := filepath.Join(dir, "worker.test")
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}

// A pinned binary starts when it matches, and a file swapped in at its
// path does not.
func TestPinnedBinary(t *testing.T) {
	path, sum := copyBinary(t)
	p, err := sandboxPool(t, path, bulkhead.Sandbox{SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	callWithin[any](t, p, "null")
	p.Close(context.Background())

	// Swap another file in at the path: one byte differs.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	_, err = sandboxPool(t, path, bulkhead.Sandbox{SHA256: sum})
	var se *bulkhead.StartError
	if !errors.As(err, &se) || se.Protection != "binary pin" || se.PID != 0 || !strings.Contains(se.Reason, sum) {
		t.Fatalf("New with a swapped binary: %v, want a *StartError for the binary pin that names the sum", err)
	}
}

func TestSandboxConfigErrors(t *testing.T) {
	exe, _ := os.Executable()
	for _, tt := range []struct {
		sb   bulkhead.Sandbox
		want string
	}{
		{bulkhead.Sandbox{SHA256: "abc"}, "SHA256"},
		{bulkhead.Sandbox{User: "no-such-user-here"}, "no user"},
		{bulkhead.Sandbox{User: "nobody:no-such-group"}, "no group"},
	} {
		_, err := bulkhead.New(context.Background(), bulkhead.Config{Command: exe, Workers: 1, Sandbox: tt.sb})
		if err == nil || !strings.Contains(err.Error(), "Config.Sandbox") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want a Config.Sandbox error about %s", tt.sb, err, tt.want)
		}
	}
}

// As root, a worker runs as the user asked for.
func TestSandboxUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root; TestSandboxUnprivileged covers the other side")
	}
	exe, _ := os.Executable()
	p, err := sandboxPool(t, exe, bulkhead.Sandbox{User: "65534:65534"})
	if err != nil {
		t.Fatal(err)
	}
	if ids := callWithin[[]int](t, p, "ids"); !slices.Equal(ids, []int{65534, 65534}) {
		t.Fatalf("worker runs as uid, gid %v, want 65534", ids)
	}
}

// sandboxReport is what the "sandboxed" helper dispatcher prints: one
// line of JSON per case.
type sandboxReport struct {
	Case       string
	OK         bool
	Protection string
	Error      string
}

// runSandboxedDispatcher is a dispatcher (run as nobody by
// TestSandboxUnprivileged) that tries each case and reports.
func runSandboxedDispatcher() {
	os.Unsetenv(bulkhead.HelperEnv) // its workers pass BULKHEAD_* on: they are workers, not this
	exe, _ := os.Executable()
	enc := json.NewEncoder(os.Stdout)
	for _, c := range []struct {
		name string
		sb   bulkhead.Sandbox
	}{
		{"user", bulkhead.Sandbox{User: "0"}},
		{"seccomp", bulkhead.Sandbox{Seccomp: "files"}},
		{"cgroup", bulkhead.Sandbox{PidsMax: 100}},
		{"pidns", bulkhead.Sandbox{IsolatePID: true}},
		{"landlock", bulkhead.Sandbox{ReadOnly: []string{"/proc"}}},
		{"namespaces", bulkhead.Sandbox{IsolateNet: true, IsolateIPC: true, PrivateTmp: true}},
	} {
		r := sandboxReport{Case: c.name}
		p, err := bulkhead.New(context.Background(), bulkhead.Config{Command: exe, Workers: 1, Sandbox: c.sb,
			Env: []string{"GORACE=atexit_sleep_ms=0"}, Logger: slog.New(slog.DiscardHandler)})
		var se *bulkhead.StartError
		switch {
		case err == nil:
			r.OK = true
			p.Close(context.Background())
		case errors.As(err, &se):
			r.Protection, r.Error = se.Protection, se.Error()
		default:
			r.Error = err.Error()
		}
		enc.Encode(r)
	}
	os.Exit(0)
}

// As an unprivileged user (a dispatcher that setpriv dropped to nobody), a
// protection that needs privilege fails closed and says which privilege.
func TestSandboxUnprivileged(t *testing.T) {
	sc, wait := nobodyDispatcher(t, "sandboxed")
	got := map[string]sandboxReport{}
	for sc.Scan() {
		var r sandboxReport
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("dispatcher said %q", sc.Text())
		}
		got[r.Case] = r
	}
	wait()
	if r := got["user"]; r.OK || r.Protection != "user" || !strings.Contains(r.Error, "CAP_SETUID") {
		t.Errorf("User as nobody: %+v, want a StartError for the user protection naming CAP_SETUID", r)
	}
	if r := got["seccomp"]; !r.OK {
		t.Errorf("Seccomp as nobody: %+v, want it to work: no_new_privs needs no privilege", r)
	}
	if r := got["landlock"]; !r.OK {
		t.Errorf("Landlock as nobody: %+v, want it to work: no_new_privs is enough", r)
	}
	if r := got["namespaces"]; !r.OK {
		t.Errorf("namespaces as nobody: %+v, want them through a user namespace", r)
	}
	if r := got["cgroup"]; r.OK || r.Protection != "cgroup" {
		t.Errorf("PidsMax as nobody: %+v, want a StartError for the cgroup protection", r)
	}
	if r := got["pidns"]; r.OK || r.Protection != "namespaces" || !strings.Contains(r.Error, "CAP_SYS_ADMIN") {
		t.Errorf("IsolatePID as nobody: %+v, want a StartError for the namespaces protection naming CAP_SYS_ADMIN", r)
	}
}

// nobodyDispatcher runs the helper dispatcher named (a copy of this test
// binary) as nobody, dropped by setpriv, and returns its output's lines
// and a function that waits for it to exit; it skips t unless root.
func nobodyDispatcher(t *testing.T, helper string) (*bufio.Scanner, func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop to nobody")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv")
	}
	bulkhead.CheckLeaks(t)
	path, _ := copyBinary(t)
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--", path)
	cmd.Env = bulkhead.HelperEnviron(helper)
	cmd.Dir = filepath.Dir(path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	return sc, func() {
		t.Helper()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("dispatcher as nobody: %v; stderr:\n%s", err, stderr.String())
		}
	}
}

// cgroupPool is sandboxPool with the pool's KillGrace at a minute: were the
// reaping to wait for a descendant holding the worker's stderr, the test's
// calls would run out of time.
func cgroupPool(t *testing.T, sb bulkhead.Sandbox) *bulkhead.Pool {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root here")
	}
	exe, _ := os.Executable()
	bulkhead.CheckLeaks(t)
	p, err := bulkhead.New(context.Background(), bulkhead.Config{
		Command: exe, Workers: 1, Sandbox: sb, KillGrace: time.Minute,
		Env: []string{"GORACE=atexit_sleep_ms=0"}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// gone reports whether pid has exited (a zombie counts: it holds nothing).
func gone(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// A child that left the worker's session dies with the worker, and its
// hold on the worker's stderr does not delay the *CrashError.
func TestSandboxSetsidChildDies(t *testing.T) {
	p := cgroupPool(t, bulkhead.Sandbox{Cgroup: true})
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := p.Call(ctx, "setsid", pidFile)
	var ce *bulkhead.CrashError
	if !errors.As(err, &ce) || ce.Signal != syscall.SIGSEGV {
		t.Fatalf("setsid then segv: %v, want a *CrashError for SIGSEGV", err)
	}
	pid, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if !gone(string(pid)) {
		t.Errorf("the worker's setsid child %s outlived it", pid)
	}
}

// Without a cgroup, the setsid child outlives the worker, but its hold on
// the worker's stderr does not delay the *CrashError: the pidfd says when
// the worker died, and what it wrote is drained then, not waited for.
func TestSetsidChildDoesNotDelayCrash(t *testing.T) {
	exe, _ := os.Executable()
	bulkhead.CheckLeaks(t)
	p, err := bulkhead.New(context.Background(), bulkhead.Config{
		Command: exe, Workers: 1, KillGrace: time.Minute,
		Env: []string{"GORACE=atexit_sleep_ms=0"}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = p.Call(ctx, "setsid", pidFile)
	if pid, rerr := os.ReadFile(pidFile); rerr == nil {
		if n, _ := strconv.Atoi(string(pid)); n > 0 {
			syscall.Kill(n, syscall.SIGKILL) // it escaped: no cgroup here
		}
	}
	var ce *bulkhead.CrashError
	if !errors.As(err, &ce) || ce.Signal != syscall.SIGSEGV || !strings.Contains(ce.Stderr, "setsid child started") {
		t.Fatalf("setsid then segv: %v (stderr %q), want a *CrashError for SIGSEGV with what the worker wrote", err, ce.Stderr)
	}
}

// pids.max stops a fork bomb; the children it started die with the worker.
func TestSandboxForkBomb(t *testing.T) {
	p := cgroupPool(t, bulkhead.Sandbox{PidsMax: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := bulkhead.CallAs[[]string](ctx, p, "forkbomb", 10000)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := strconv.Atoi(out[0]); n >= 64 || !strings.Contains(out[1], "resource temporarily unavailable") {
		t.Fatalf("fork bomb under pids.max 64: started %s, then %q; want fewer than 64, then EAGAIN", out[0], out[1])
	}
}

// Past memory.max the kernel kills the worker: a *CrashError with
// LimitMemory and the cgroup's peak.
func TestSandboxMemoryMax(t *testing.T) {
	const max = 64 << 20
	p := cgroupPool(t, bulkhead.Sandbox{MemoryMax: max})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := p.Call(ctx, "alloc", 256)
	var ce *bulkhead.CrashError
	if !errors.As(err, &ce) || ce.Limit != bulkhead.LimitMemory || !errors.Is(err, bulkhead.ErrLimitExceeded) ||
		ce.Signal != syscall.SIGKILL || ce.PeakMemory < max*3/4 {
		t.Fatalf("alloc 256 MiB under memory.max 64 MiB: %v (%+v), want a *CrashError with LimitMemory and a peak near 64 MiB", err, ce)
	}
}

// Each escape a seccomp profile denies kills the worker, and its call gets
// a *CrashError naming the system call, with Limit == LimitSandbox.
func TestSandboxSeccomp(t *testing.T) {
	exe, _ := os.Executable()
	for _, tt := range []struct {
		method  string
		arg     any
		syscall string
	}{
		{"connect", nil, "socket"},
		{"exec", nil, "execve"},
		{"fork", nil, "clone"},
		{"ptrace", nil, "ptrace"},
		{"write", filepath.Join(t.TempDir(), "out"), "openat"},
	} {
		t.Run(tt.method, func(t *testing.T) {
			p, err := sandboxPool(t, exe, bulkhead.Sandbox{Seccomp: "files"})
			if err != nil {
				t.Fatal(err)
			}
			callWithin[any](t, p, "null") // it serves under the filter
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := p.Call(ctx, tt.method, tt.arg)
			var ce *bulkhead.CrashError
			if !errors.As(err, &ce) || ce.Limit != bulkhead.LimitSandbox || ce.Syscall != tt.syscall ||
				ce.SyscallNumber <= 0 || !errors.Is(err, bulkhead.ErrLimitExceeded) {
				t.Fatalf("%s under seccomp: %v, %v; want a *CrashError with LimitSandbox for %s", tt.method, out, err, tt.syscall)
			}
		})
	}
}

// A protection that cannot be applied stops the start: here the profile
// denies the very execveat that starts the worker.
func TestSandboxSeccompFailsClosed(t *testing.T) {
	exe, _ := os.Executable()
	_, err := sandboxPool(t, exe, bulkhead.Sandbox{Seccomp: "files", SeccompDeny: []string{"execveat"}})
	var se *bulkhead.StartError
	if !errors.As(err, &se) || se.Protection != "seccomp" || !strings.Contains(se.Reason, "execveat") {
		t.Fatalf("New with a profile that denies its own start: %v, want a StartError for seccomp naming execveat", err)
	}
}

// In log mode a denied system call goes through, and is logged once.
func TestSandboxSeccompLog(t *testing.T) {
	exe, _ := os.Executable()
	logs := &bulkhead.LogRecords{}
	bulkhead.CheckLeaks(t)
	p, err := bulkhead.New(context.Background(), bulkhead.Config{
		Command: exe, Workers: 1, Sandbox: bulkhead.Sandbox{Seccomp: "files", SeccompLog: true},
		Env: []string{"GORACE=atexit_sleep_ms=0"}, Logger: slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	for range 2 {
		if out := callWithin[string](t, p, "connect"); !strings.Contains(out, "connection refused") {
			t.Fatalf("connect in log mode: %q, want it let through (connection refused)", out)
		}
	}
	r := logs.First(t, "sandbox: system call outside the seccomp profile")
	if r["syscall"] != "socket" {
		t.Fatalf("log record %v, want syscall socket", r)
	}
	n := 0
	for _, r := range logs.All() {
		if r["msg"] == "sandbox: system call outside the seccomp profile" && r["syscall"] == "socket" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("socket logged %d times, want once per worker", n)
	}
}

// Under Landlock a worker reads only what it was given, and writes only
// beneath its writable paths: /etc/shadow and a file outside are denied
// (EACCES, to the worker), a file inside is written.
func TestSandboxLandlock(t *testing.T) {
	exe, _ := os.Executable()
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "escaped")
	logs := &bulkhead.LogRecords{}
	bulkhead.CheckLeaks(t)
	p, err := bulkhead.New(context.Background(), bulkhead.Config{
		Command: exe, Workers: 1, Env: []string{"GORACE=atexit_sleep_ms=0"}, Logger: slog.New(logs),
		Sandbox: bulkhead.Sandbox{ReadOnly: []string{"/proc"}, Writable: []string{dir}}, // the race runtime reads /proc
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	for _, tt := range []struct {
		method, path, want string
	}{
		{"read", "/etc/shadow", "permission denied"},
		{"read", "/etc/passwd", "permission denied"},
		{"write", outside, "permission denied"},
		{"write", filepath.Join(dir, "ok"), "<nil>"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := bulkhead.CallAs[string](ctx, p, tt.method, tt.path)
		cancel()
		if err != nil || !strings.Contains(got, tt.want) {
			t.Errorf("%s %s: %q, %v; want %q", tt.method, tt.path, got, err, tt.want)
		}
	}
	if _, err := os.Stat(outside); err == nil {
		t.Error("the worker wrote outside its writable paths")
	}
	if r := logs.First(t, "sandbox: Landlock ABI of the kernel"); r["abi"] == nil {
		t.Errorf("ABI record %v", r)
	}
}

// nsOf is this process's namespace n, as /proc/self/ns names it.
func nsOf(t *testing.T, n string) string {
	t.Helper()
	l, err := os.Readlink("/proc/self/ns/" + n)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A worker gets the namespaces asked for: no network (connect fails), an
// IPC namespace, a mount namespace with an empty /tmp, and, asked for, a
// user namespace.
func TestSandboxNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("as root; TestSandboxUnprivileged covers the user-namespace fallback")
	}
	exe, _ := os.Executable()
	if err := os.WriteFile(filepath.Join(os.TempDir(), "bulkhead-ns-test"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, userNS := range []bool{false, true} {
		t.Run(fmt.Sprint("user namespace ", userNS), func(t *testing.T) { testNamespaces(t, exe, userNS) })
	}
}

func testNamespaces(t *testing.T, exe string, userNS bool) {
	p, err := sandboxPool(t, exe, bulkhead.Sandbox{IsolateNet: true, IsolateIPC: true, PrivateTmp: true, UserNamespace: userNS})
	if err != nil {
		t.Fatal(err)
	}
	ns := callWithin[map[string]string](t, p, "ns")
	for _, n := range []string{"net", "ipc", "mnt", "user"} {
		if own := ns[n] != "" && ns[n] != nsOf(t, n); own != (n != "user" || userNS) {
			t.Errorf("worker's %s namespace %q, the dispatcher's %q: want one of its own: %v", n, ns[n], nsOf(t, n), !own)
		}
	}
	if ns["tmp"] != "0 <nil>" {
		t.Errorf("worker's /tmp: %s entries, want an empty tmpfs", ns["tmp"])
	}
	if out := callWithin[string](t, p, "connect"); !strings.Contains(out, "network is unreachable") {
		t.Errorf("connect to 127.0.0.1 in a network namespace: %q, want network is unreachable", out)
	}
	if ids := callWithin[[]int](t, p, "ids"); !slices.Equal(ids, []int{0, 0}) {
		t.Errorf("worker's ids in its user namespace %v, want root inside", ids)
	}
}

// "compute" is "files" and, in a Go worker, no file opened once started:
// the SDK's own second filter, engaged before HELLO, fails every open.
func TestSandboxComputeNoFiles(t *testing.T) {
	exe, _ := os.Executable()
	for _, tt := range []struct{ profile, want string }{{"files", "<nil>"}, {"compute", "permission denied"}} {
		p, err := sandboxPool(t, exe, bulkhead.Sandbox{Seccomp: tt.profile})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := bulkhead.CallAs[string](ctx, p, "read", "/etc/hostname")
		cancel()
		if err != nil || !strings.Contains(got, tt.want) {
			t.Errorf("%s: read /etc/hostname: %q, %v; want %q", tt.profile, got, err, tt.want)
		}
		p.Close(context.Background())
	}
}

// Any sandbox gives the worker no_new_privs, even one that needs no
// trampoline (a pinned binary alone); no sandbox leaves it off.
func TestSandboxNoNewPrivs(t *testing.T) {
	path, sum := copyBinary(t)
	for _, tt := range []struct {
		sb   bulkhead.Sandbox
		want string
	}{{bulkhead.Sandbox{}, "0"}, {bulkhead.Sandbox{SHA256: sum}, "1"}, {bulkhead.Sandbox{Seccomp: "files"}, "1"}} {
		p, err := sandboxPool(t, path, tt.sb)
		if err != nil {
			t.Fatal(err)
		}
		if got := callWithin[string](t, p, "nnp"); got != tt.want {
			t.Errorf("%+v: NoNewPrivs %s, want %s", tt.sb, got, tt.want)
		}
		p.Close(context.Background())
	}
}
