// Package daemontest runs `bulkhead serve` as a child process for the tests
// of clients in other languages (clients/c, clients/python): it builds the
// bulkhead command, starts it on the shipped example config with a socket
// of the test's own, waits for its READY (sd_notify), and stops it and
// checks that none of its workers outlives it when the test ends.
package daemontest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/client"
)

// Root is the module's root directory, found from the working directory
// (a test runs in its package's directory).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// Build builds cmd/bulkhead into a temporary directory and returns its path.
func Build(t testing.TB) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not in PATH; cannot build cmd/bulkhead")
	}
	bin := filepath.Join(t.TempDir(), "bulkhead")
	cmd := exec.Command(goCmd, "build", "-o", bin, "./cmd/bulkhead")
	cmd.Dir = Root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/bulkhead: %v\n%s", err, out)
	}
	return bin
}

// Daemon is a running `bulkhead serve`.
type Daemon struct {
	Bin    string // the bulkhead executable
	Socket string // where clients connect
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned
	werr   error         // cmd.Wait's, once exited is closed
	stderr lockedBuffer
}

// Start runs bin serve on examples/serve/bulkhead.toml with a socket in a
// temporary directory, and returns once the daemon said READY. The test's
// cleanup stops it (SIGTERM, then SIGKILL after 20 s) and waits for it.
func Start(t testing.TB, bin string) *Daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "bhd") // short: a socket path is at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	d := &Daemon{Bin: bin, Socket: filepath.Join(dir, "bulkhead.sock"), exited: make(chan struct{})}
	d.cmd = exec.Command(bin, "serve", "--config", filepath.Join(Root(t), "examples", "serve", "bulkhead.toml"), "--socket", d.Socket)
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(dir, "notify"))
	d.cmd.Stderr = &d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.werr = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() { d.stop(t) })
	ready := make(chan error, 1)
	go func() { ready <- waitReady(notify) }()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("waiting for the daemon's READY: %v\nstderr:\n%s", err, d.Stderr())
		}
	case <-d.exited:
		t.Fatalf("the daemon exited before READY: %v\nstderr:\n%s", d.werr, d.Stderr())
	}
	return d
}

// waitReady reads sd_notify datagrams until READY=1, for 30 s at most.
func waitReady(c *net.UnixConn) error {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if line == "READY=1" {
				return nil
			}
		}
	}
}

// Stderr is what the daemon logged so far.
func (d *Daemon) Stderr() string { return d.stderr.String() }

// pids are the daemon's workers and class servers, from its status.
func (d *Daemon) pids() ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, d.Socket, client.Options{Name: "daemontest"})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, list := range []string{"pools", "servers"} {
		items, _ := st[list].([]any)
		for _, it := range items {
			m, _ := it.(map[any]any)
			if pid, ok := m["pid"].(uint64); ok { // a class server
				pids = append(pids, int(pid))
			}
			ws, _ := m["workers"].([]any)
			for _, w := range ws {
				wm, _ := w.(map[any]any)
				if pid, ok := wm["pid"].(uint64); ok {
					pids = append(pids, int(pid))
				}
			}
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no pids in the status %v", st)
	}
	return pids, nil
}

// stop sends SIGTERM, waits, and checks that the daemon's children went
// with it.
func (d *Daemon) stop(t testing.TB) {
	select {
	case <-d.exited:
		t.Errorf("the daemon exited before the test ended: %v\nstderr:\n%s", d.werr, d.Stderr())
		return
	default:
	}
	pids, perr := d.pids()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("the daemon did not stop within 20 s of SIGTERM\nstderr:\n%s", d.Stderr())
		return
	}
	if d.werr != nil {
		t.Errorf("the daemon exited with %v\nstderr:\n%s", d.werr, d.Stderr())
	}
	if perr != nil {
		t.Errorf("the daemon's status: %v", perr)
	}
	t.Logf("the daemon stopped; %d of its processes checked gone", len(pids))
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d of the daemon's outlived it (kill 0: %v)", pid, err)
		}
	}
}

// lockedBuffer is a bytes.Buffer that the child's stderr copier and the
// test may use at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
