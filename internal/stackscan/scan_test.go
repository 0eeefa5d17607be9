package stackscan

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// buildStuck compiles testdata/stuck.c.
func buildStuck(t testing.TB) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	bin := filepath.Join(t.TempDir(), "stuck")
	if out, err := exec.Command(gcc, "-O2", "-o", bin, "testdata/stuck.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// startStuck runs the program and waits until its main thread is in the
// state want says (blocked or running), as the kernel reports it.
func startStuck(t *testing.T, bin, mode string, blocked bool) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, mode)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r := Scan(cmd.Process.Pid)
		if len(r.Threads) == 1 && r.Threads[0].State.Running != blocked &&
			(!blocked || slices.Contains(r.Funcs(), "stuck_wait")) {
			return cmd
		}
		runtime.Gosched()
	}
	t.Fatalf("%s %s never got there: %v", bin, mode, Scan(cmd.Process.Pid))
	return nil
}

// TestScanBlocked: a thread blocked in sleep(3) shows the syscall, libc's
// function and the program's own caller, by scanning alone.
func TestScanBlocked(t *testing.T) {
	cmd := startStuck(t, buildStuck(t), "wait", true)
	r := Scan(cmd.Process.Pid)
	s := r.String()
	if !strings.HasPrefix(s, Header) || !strings.Contains(s, "blocked in clock_nanosleep") {
		t.Errorf("report:\n%s", s)
	}
	fs := r.Funcs()
	i, j := slices.Index(fs, "sleep"), slices.Index(fs, "stuck_wait")
	if i < 0 || j < i || !slices.Contains(fs[:max(i, 1)], "clock_nanosleep") && !slices.Contains(fs[:max(i, 1)], "__clock_nanosleep") {
		t.Errorf("frames %q; want clock_nanosleep, sleep, stuck_wait in that order\n%s", fs, s)
	}
	t.Log(s)
}

// TestScanRunning: a spinning thread is reported running, with no frames.
func TestScanRunning(t *testing.T) {
	cmd := startStuck(t, buildStuck(t), "spin", false)
	r := Scan(cmd.Process.Pid)
	if len(r.Threads) != 1 || len(r.Threads[0].Frames) != 0 || !strings.Contains(r.String(), "running in user code") {
		t.Errorf("report:\n%s", r)
	}
}

// A process that is gone is an error, not a panic.
func TestScanGone(t *testing.T) {
	if r := Scan(1 << 30); r.Err == nil || len(r.Threads) != 0 {
		t.Errorf("scan of no process: %+v", r)
	}
}

// BenchmarkScan: what one slow call's scan costs the dispatcher, for a
// one-thread C program blocked in sleep(3) (its maps, syscall file, 64 KiB
// of stack, and the symbols of the program and libc, read anew each time).
func BenchmarkScan(b *testing.B) {
	bin := buildStuck(b)
	cmd := exec.Command(bin, "wait")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	for b.Loop() {
		if r := Scan(cmd.Process.Pid); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkScanGo: the same for a Go program, this test binary itself (its
// threads; go test strips it, so its names come from .gopclntab).
func BenchmarkScanGo(b *testing.B) {
	for b.Loop() {
		if r := Scan(os.Getpid()); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}
