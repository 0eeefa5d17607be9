package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/daemon"
	"github.com/bulkhead-go/bulkhead/internal/natsembed"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/worker"
	"github.com/nats-io/nats.go"
)

// helpers is this test binary's registry (testutil.Main): a pool worker,
// and a node process for the tests that SIGKILL one.
func helpers() map[string]func() {
	return map[string]func(){"worker": runWorker, "node": runNodeProcess, "classes": runClasses}
}

func TestMain(m *testing.M) { testutil.Main(m, helpers(), "worker", worker.IsWorker) }

// runWorker serves who (its node's name), echo, fail, crash, left (the
// milliseconds its ctx has left) and hold (writes a byte to the FIFO its
// argument names, then waits for its ctx).
func runWorker() {
	s := &worker.Server{}
	s.Handle("who", func(context.Context, worker.Args) (any, error) { return os.Getenv("NODE"), nil })
	s.Handle("null", func(context.Context, worker.Args) (any, error) { return nil, nil })
	s.Handle("work", func(context.Context, worker.Args) (any, error) { // 20 ms on a slow node, 1 ms elsewhere
		d := time.Millisecond
		if strings.HasPrefix(os.Getenv("NODE"), "slow") {
			d = 20 * time.Millisecond
		}
		time.Sleep(d)
		return nil, nil
	})
	s.Handle("echo", func(_ context.Context, a worker.Args) (any, error) {
		var v any
		return v, a.Decode(0, &v)
	})
	s.Handle("fail", func(context.Context, worker.Args) (any, error) { return nil, fmt.Errorf("it failed") })
	s.Handle("big", func(_ context.Context, a worker.Args) (any, error) { // a result of n bytes
		var n int
		if err := a.Scan(&n); err != nil || n < 0 || n > 8<<20 {
			return nil, fmt.Errorf("big: want 0 to 8 MiB: %v", err)
		}
		return make([]byte, n), nil
	})
	s.Handle("crash", func(context.Context, worker.Args) (any, error) {
		syscall.Kill(os.Getpid(), syscall.SIGSEGV)
		select {}
	})
	s.Handle("left", func(ctx context.Context, _ worker.Args) (any, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return int64(-1), nil
		}
		return time.Until(dl).Milliseconds(), nil
	})
	s.Handle("hold", func(ctx context.Context, a worker.Args) (any, error) {
		var path string
		if err := a.Scan(&path); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		f.Write([]byte{1})
		f.Close()
		<-ctx.Done()
		return nil, ctx.Err()
	})
	s.Run()
}

// counter is the Counter class's object.
type counter struct {
	self *worker.Object
	n    atomic.Int64
}

// runClasses serves class Counter: add (returns the sum, emits
// "changed"), who (its node), burst (emits k events), hold (as the pool
// worker's) and crash.
func runClasses() {
	s := &worker.Server{}
	c := &worker.Class[*counter]{Name: "Counter", Threading: worker.Free,
		New: func(_ context.Context, self *worker.Object, _ worker.Args) (*counter, error) {
			return &counter{self: self}, nil
		}}
	c.Method("add", func(_ context.Context, o *counter, a worker.Args) (any, error) {
		var d int64
		if err := a.Scan(&d); err != nil {
			return nil, err
		}
		n := o.n.Add(d)
		return n, o.self.Emit("changed", n)
	})
	c.Method("who", func(context.Context, *counter, worker.Args) (any, error) { return os.Getenv("NODE"), nil })
	c.Method("burst", func(_ context.Context, o *counter, a worker.Args) (any, error) { // emits "tick" 0..k-1
		var k int64
		if err := a.Scan(&k); err != nil || k < 0 || k > 1<<16 {
			return nil, fmt.Errorf("burst %d: want 0 to 65536 (%v)", k, err)
		}
		for i := range k {
			if err := o.self.Emit("tick", i); err != nil {
				return nil, err
			}
		}
		return k, nil
	})
	c.Method("hold", func(ctx context.Context, _ *counter, a worker.Args) (any, error) {
		var path string
		if err := a.Scan(&path); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte{1}, 0); err != nil {
			return nil, err
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	c.Method("crash", func(context.Context, *counter, worker.Args) (any, error) {
		syscall.Kill(os.Getpid(), syscall.SIGSEGV)
		select {}
	})
	s.Register(c)
	s.Run()
}

// runNodeProcess is a node in a process of its own: NATS_URL, NODE. It
// says "ready" on stdout once serving, and drains when stdin closes.
func runNodeProcess() {
	ctx := context.Background()
	srv, node, nc, err := newNode(ctx, os.Getenv("NATS_URL"), os.Getenv("NODE"), 1)
	if err != nil {
		fmt.Println("node:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	node.Close()
	nc.Close()
	srv.Shutdown(ctx)
}

// newNode starts a daemon with pool "p" of workers workers named name,
// and makes it a node on the NATS server at url (nopts: nats.go's, after
// the name).
func newNode(ctx context.Context, url, name string, workers int, nopts ...nats.Option) (*daemon.Server, *cluster.Node, *nats.Conn, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	cfg := &daemon.Config{Pools: []daemon.Pool{testPool(exe, "p", name, workers)},
		Activator: activation.ActivatorConfig{Servers: []activation.ServerConfig{{
			Process: bulkhead.Process{Command: exe, Env: []string{testutil.HelperEnv + "=classes", "GORACE=atexit_sleep_ms=0", "NODE=" + name}},
			Classes: []activation.ClassConfig{{Name: "Counter"}}}}}}
	srv, err := daemon.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, nil, nil, err
	}
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name(name)}, nopts...)...)
	if err != nil {
		srv.Shutdown(ctx)
		return nil, nil, nil, err
	}
	node, err := cluster.NewNode(nc, srv, cluster.NodeConfig{ID: name})
	if err != nil {
		nc.Close()
		srv.Shutdown(ctx)
		return nil, nil, nil, err
	}
	return srv, node, nc, nil
}

// testPool is a pool of workers workers of this test binary, on node.
func testPool(exe, pool, node string, workers int) daemon.Pool {
	return daemon.Pool{Name: pool, Config: bulkhead.Config{Command: exe, Workers: workers,
		Env:       []string{testutil.HelperEnv + "=worker", "GORACE=atexit_sleep_ms=0", "NODE=" + node},
		TermGrace: 50 * time.Millisecond, DumpGrace: 50 * time.Millisecond}}
}

// testNode is an in-process node.
type testNode struct {
	name string
	srv  *daemon.Server
	node *cluster.Node
	nc   *nats.Conn
}

// stop closes the node, its connection and its daemon.
func (n *testNode) stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.node.Close(); err != nil {
		t.Errorf("node %s: Close: %v", n.name, err)
	}
	n.nc.Close()
	n.srv.Shutdown(ctx)
}

// startNATS starts an embedded NATS server for the test.
func startNATS(t testing.TB) string {
	t.Helper()
	s, err := natsembed.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s.URL()
}

// startNode starts an in-process node, stopped when the test ends.
func startNode(t testing.TB, url, name string, workers int) *testNode {
	t.Helper()
	srv, node, nc, err := newNode(context.Background(), url, name, workers)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{name: name, srv: srv, node: node, nc: nc}
	t.Cleanup(func() { n.stop(t) })
	return n
}

// startNodeProcess starts a node in a process of its own; the test ends it
// by SIGKILL, or by closing its stdin.
func startNodeProcess(t *testing.T, url, name string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = testutil.HelperEnviron("node", "NATS_URL="+url, "NODE="+name, "GORACE=atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("node process: %q", line)
	}
	return cmd
}

// dial returns a client of pool "p", closed when the test ends, once it
// knows want nodes.
func dial(t testing.TB, url string, opts cluster.Options, want int) *cluster.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cluster.Dial(ctx, url, "p", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WaitNodes(ctx, want); err != nil {
		t.Fatalf("waiting for %d nodes: %v (have %v)", want, err, c.Nodes())
	}
	return c
}

// holdCall makes c call "hold" with ctx and returns once a worker holds
// it; the call's error comes on the channel when ctx ends or its node goes.
func holdCall(t *testing.T, ctx context.Context, c bulkhead.Caller) <-chan error {
	t.Helper()
	path, held := fifo(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, "hold", path)
		errc <- err
	}()
	<-held
	return errc
}

// fifo makes a FIFO and returns its path and a channel that gets a value
// once a worker's hold call has opened and written it.
func fifo(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "held")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	go func() {
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err == nil {
			f.Read(make([]byte, 1))
			f.Close()
		}
		close(ch)
	}()
	return path, ch
}
