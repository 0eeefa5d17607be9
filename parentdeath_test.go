package bulkhead_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"golang.org/x/sys/unix"
)

// runHelperDispatcher is a dispatcher process for TestDispatcherKilled: it
// starts a pool, prints its workers' pids and waits to be killed.
func runHelperDispatcher() {
	exe, _ := os.Executable()
	env := bulkhead.HelperEnviron("worker")
	p, err := bulkhead.New(context.Background(), bulkhead.Config{Command: exe, Env: env, Workers: 3})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for len(p.Workers()) < 3 {
		p.Call(context.Background(), "null")
	}
	for _, w := range p.Workers() {
		fmt.Println(w.PID)
	}
	fmt.Println("ready")
	select {}
}

// When the dispatcher is SIGKILLed, its workers die with it.
func TestDispatcherKilled(t *testing.T) {
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	cmd.Env = bulkhead.HelperEnviron("dispatcher")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
		pid, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("dispatcher said %q", sc.Text())
		}
		pids = append(pids, pid)
	}
	if len(pids) != 3 {
		t.Fatalf("got worker pids %v", pids)
	}
	// Hold pidfds before the kill, so the checks cannot hit a reused pid.
	var fds []int
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("worker %d: %v", pid, err)
		}
		defer unix.Close(fd)
		fds = append(fds, fd)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for i, fd := range fds {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(pfd, 10_000); n != 1 {
			t.Errorf("worker %d outlived its dispatcher", pids[i])
		}
	}
}
