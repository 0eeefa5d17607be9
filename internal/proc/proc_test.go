package proc

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func start(t *testing.T, sp *Spawner, name string, args ...string) *Process {
	t.Helper()
	p, err := Start(sp, exec.Command(name, args...), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExitClassification(t *testing.T) {
	sp := NewSpawner()
	defer sp.Close()
	tests := []struct {
		script string
		want   Exit
	}{
		{"exit 0", Exit{Code: 0}},
		{"exit 3", Exit{Code: 3}},
		{"kill -SEGV $$", Exit{Code: -1, Signal: syscall.SIGSEGV}},
		{"kill -ABRT $$", Exit{Code: -1, Signal: syscall.SIGABRT}},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			p := start(t, sp, "sh", "-c", "ulimit -c 0; "+tt.script)
			<-p.Exited()
			if got := ExitOf(p.State()); got != tt.want {
				t.Fatalf("exit = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStopEscalates(t *testing.T) {
	sp := NewSpawner()
	defer sp.Close()
	// The shell ignores SIGTERM, so only the final SIGKILL ends it.
	cmd := exec.Command("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done")
	r, _ := cmd.StdoutPipe()
	p, err := Start(sp, cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 6)); err != nil { // the trap is set
		t.Fatal(err)
	}
	p.Stop(Step{syscall.SIGTERM, 20 * time.Millisecond})
	<-p.Exited()
	p.Release()
	if got := ExitOf(p.State()); got.Signal != syscall.SIGKILL {
		t.Fatalf("exit = %v, want killed by SIGKILL", got)
	}
}

// The whole process group goes when the leader exits: no orphans.
func TestGroupCleanedUp(t *testing.T) {
	sp := NewSpawner()
	defer sp.Close()
	cmd := exec.Command("sh", "-c", "sleep 300 & echo $!; exit 0")
	var out strings.Builder
	cmd.Stdout = &out
	p, err := Start(sp, cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	var pid int
	if _, err := fmtSscan(out.String(), &pid); err != nil {
		t.Fatalf("no grandchild pid in %q", out.String())
	}
	waitGone(t, pid)
}

// Closing the spawner ends its thread, and the kernel kills the children.
func TestSpawnerCloseKillsChildren(t *testing.T) {
	sp := NewSpawner()
	p := start(t, sp, "sleep", "300")
	sp.Close()
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		p.Kill()
		<-p.Exited()
		t.Fatal("the child outlived the spawner's thread: no parent-death signal")
	}
	if got := ExitOf(p.State()); got.Signal != syscall.SIGKILL {
		t.Fatalf("exit = %v, want SIGKILL from the parent-death signal", got)
	}
	if _, err := Start(sp, exec.Command("true"), nil); err != ErrSpawnerClosed {
		t.Fatalf("Start after Close: %v", err)
	}
}

// waitGone polls (with a pidfd, not a sleep loop) until pid no longer exists.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // already gone
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, _ := unix.Poll(fds, 10_000); n != 1 {
		t.Fatalf("process %d still alive", pid)
	}
}

// The spawner must never serve from the main thread, which the runtime never
// terminates: start many from this test goroutine and check each.
func TestSpawnerAvoidsMainThread(t *testing.T) {
	for range 50 {
		sp := NewSpawner()
		var tid int
		r := spawnReq{reply: make(chan error, 1), tid: &tid}
		sp.reqs <- r
		<-r.reply
		sp.Close()
		if tid == unix.Getpid() {
			t.Fatal("spawner served from the main thread")
		}
	}
}

func TestChildren(t *testing.T) {
	sp := NewSpawner()
	defer sp.Close()
	p := start(t, sp, "sleep", "300")
	found := false
	for _, c := range Children(os.Getpid()) {
		found = found || (c.PID == p.PID && !c.Zombie())
	}
	if !found {
		t.Fatalf("Children does not list the running child %d", p.PID)
	}
	p.Kill()
	<-p.Exited()
	for _, c := range Children(os.Getpid()) {
		if c.PID == p.PID {
			t.Fatalf("reaped child %d still listed as %v", p.PID, c)
		}
	}
}
