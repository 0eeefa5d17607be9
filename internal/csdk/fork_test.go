//go:build cgo

package csdk

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// forked reports whether pid was cloned by a fork server: its environment
// block is the fork server's, which names BULKHEAD_FORKSERVER_FD (the child
// unsets it, which /proc does not show).
func forked(t *testing.T, pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false // gone meanwhile
	}
	return strings.Contains(string(b), "BULKHEAD_FORKSERVER_FD=")
}

// A pool with Config.ForkServer forks its workers from a fork server of the
// C SDK worker: they serve, crash alone, are replaced by clones, and when the
// fork server is killed the pool execs and starts another.
func TestForkServer(t *testing.T) {
	testutil.CheckLeaks(t)
	bin := buildCWorker(t)
	ctx := context.Background()
	p, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 1, ForkServer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	call := func(method string, args ...any) (any, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return bulkhead.CallAs[any](ctx, p, method, args...)
	}
	if got, err := call("upper", "forked"); err != nil || got != "FORKED" {
		t.Fatalf("upper: %v, %v", got, err)
	}
	pid := p.Workers()[0].PID
	if !forked(t, pid) {
		t.Fatalf("worker %d was exec'd, not forked", pid)
	}
	var ce *bulkhead.CrashError
	if _, err := call("crash", "segv"); !errors.As(err, &ce) || ce.Signal != syscall.SIGSEGV || ce.PID != pid {
		t.Fatalf("crash: %v; want a *CrashError by SIGSEGV of worker %d", err, pid)
	}
	if got, err := call("upper", "again"); err != nil || got != "AGAIN" {
		t.Fatalf("after the crash: %v, %v", got, err)
	}
	next := p.Workers()[0].PID
	if next == pid || !forked(t, next) {
		t.Fatalf("replacement %d (crashed %d) was not forked", next, pid)
	}
	// Kill the fork server: the next replacement is exec'd, and a new
	// fork server comes up for the one after.
	zygote := forkServerPID(t, p)
	if zygote == 0 {
		t.Fatal("no fork server")
	}
	if err := syscall.Kill(zygote, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Until(t, "a new fork server", func() bool {
		if _, err := call("crash", "exit"); !errors.As(err, &ce) {
			t.Fatalf("crash(exit): %v", err)
		}
		if _, err := call("upper", "x"); err != nil {
			t.Fatalf("after the crash: %v", err)
		}
		now := forkServerPID(t, p)
		return now != 0 && now != zygote && forked(t, p.Workers()[0].PID)
	})
}

// forkServerPID finds the pool's fork server among this process's children:
// the one with BULKHEAD_FORKSERVER_FD in its environment that is no worker.
func forkServerPID(t *testing.T, p *bulkhead.Pool) int {
	workers := map[int]bool{}
	for _, w := range p.Workers() {
		workers[w.PID] = true
	}
	for _, c := range proc.Children(os.Getpid()) {
		if !workers[c.PID] && c.State != "Z" && forked(t, c.PID) {
			return c.PID
		}
	}
	return 0
}

// BenchmarkRespawn: a worker crashes (exit) and the next call waits for its
// replacement: exec'd, or cloned by a fork server (Config.ForkServer), in one
// run; with no initialisation, and with 20 ms of it (CWORKER_INIT_MS, as a
// library's own set-up), which the fork server pays once; bare, and in a
// sandbox (seccomp "compute", Landlock, a cgroup with memory.max: as root
// only), which an exec'd worker gets from the trampoline and a clone from
// its own bh__child. Pin it for ratios:
//
//	taskset -c 0,1 go test -run '^$' -bench Respawn -benchtime 200x -count 3 ./internal/csdk
func BenchmarkRespawn(b *testing.B) {
	bin := buildCWorker(b)
	sandboxes := map[string]bulkhead.Sandbox{"bare": {}}
	if os.Geteuid() == 0 {
		sandboxes["sandboxed"] = bulkhead.Sandbox{Seccomp: "compute", ReadOnly: []string{"/usr"}, MemoryMax: 256 << 20}
	}
	for _, init := range []string{"0", "20"} {
		for _, sbName := range []string{"bare", "sandboxed"} {
			sb, ok := sandboxes[sbName]
			if !ok {
				continue
			}
			for _, fork := range []bool{false, true} {
				name := "exec"
				if fork {
					name = "fork"
				}
				b.Run("init"+init+"ms/"+sbName+"/"+name, func(b *testing.B) {
					benchRespawn(b, bulkhead.Config{Command: bin, Workers: 1, ForkServer: fork, Sandbox: sb,
						Env: []string{"CWORKER_INIT_MS=" + init}, Logger: slog.New(slog.DiscardHandler)})
				})
			}
		}
	}
}

func benchRespawn(b *testing.B, cfg bulkhead.Config) {
	ctx := context.Background()
	p, err := bulkhead.New(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(ctx)
	for b.Loop() {
		if _, err := p.Call(ctx, "crash", "exit"); err == nil {
			b.Fatal("crash(exit) answered")
		}
		if _, err := p.Call(ctx, "add", 1, 2); err != nil {
			b.Fatal(err)
		}
	}
}
