package daemon

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/worker"
)

// helpers is this test binary's registry of helper processes
// (testutil.Main): a pool worker, a class server, and a client process.
func helpers() map[string]func() {
	return map[string]func(){
		"worker":  runWorker,
		"classes": runClasses,
		"client":  runClient,
		"gated":   runGated,
	}
}

func TestMain(m *testing.M) { testutil.Main(m, helpers(), "worker", worker.IsWorker) }

// runGated is runWorker once the file $GATE exists; before, it exits at
// start-up, as a worker its sandbox kills does.
func runGated() {
	if _, err := os.Stat(os.Getenv("GATE")); err != nil {
		os.Exit(3)
	}
	runWorker()
}

// runWorker serves echo, crash (a segfault), block (until killed) and
// traceparent (the call's).
func runWorker() {
	s := &worker.Server{}
	s.Handle("echo", func(_ context.Context, a worker.Args) (any, error) {
		var v any
		if err := a.Decode(0, &v); err != nil {
			return nil, err
		}
		return v, nil
	})
	s.Handle("crash", func(context.Context, worker.Args) (any, error) {
		syscall.Kill(os.Getpid(), syscall.SIGSEGV)
		select {}
	})
	s.Handle("block", func(ctx context.Context, _ worker.Args) (any, error) {
		<-ctx.Done()
		select {}
	})
	s.Handle("null", func(context.Context, worker.Args) (any, error) { return nil, nil })
	s.Handle("traceparent", func(ctx context.Context, _ worker.Args) (any, error) { return worker.Traceparent(ctx), nil })
	s.Handle("fail", func(context.Context, worker.Args) (any, error) { return nil, fmt.Errorf("it failed") })
	s.Run()
}

// counterObj is a Counter: add changes it and emits "changed".
type counterObj struct {
	self *worker.Object
	mu   sync.Mutex
	n    int64
}

func runClasses() {
	s := &worker.Server{}
	c := &worker.Class[*counterObj]{Name: "Counter", Threading: worker.Free,
		New: func(_ context.Context, self *worker.Object, _ worker.Args) (*counterObj, error) {
			return &counterObj{self: self}, nil
		}}
	c.Method("add", func(_ context.Context, o *counterObj, a worker.Args) (any, error) {
		var d int64
		if err := a.Scan(&d); err != nil {
			return nil, err
		}
		o.mu.Lock()
		o.n += d
		n := o.n
		o.mu.Unlock()
		return n, o.self.Emit("changed", n)
	})
	c.Method("null", func(context.Context, *counterObj, worker.Args) (any, error) { return nil, nil })
	c.Method("traceparent", func(ctx context.Context, _ *counterObj, _ worker.Args) (any, error) {
		return worker.Traceparent(ctx), nil
	})
	c.Method("crash", func(context.Context, *counterObj, worker.Args) (any, error) {
		syscall.Kill(os.Getpid(), syscall.SIGSEGV)
		select {}
	})
	s.Register(c)
	c2 := &worker.Class[*counterObj]{Name: "Secret",
		New: func(_ context.Context, self *worker.Object, _ worker.Args) (*counterObj, error) {
			return &counterObj{self: self}, nil
		}}
	c2.Method("add", func(context.Context, *counterObj, worker.Args) (any, error) { return 0, nil })
	s.Register(c2)
	s.Run()
}

// runClient is a client process: it activates OBJECTS objects through the
// daemon at SOCKET, says "ready", and waits to be killed.
func runClient() {
	ctx := context.Background()
	c, err := client.Dial(ctx, os.Getenv("SOCKET"), client.Options{Name: "helper"})
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	n := 0
	fmt.Sscan(os.Getenv("OBJECTS"), &n)
	for range n {
		if _, err := c.CreateInstance(ctx, "Counter"); err != nil {
			fmt.Println("create:", err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	var b [1]byte
	os.Stdin.Read(b[:]) // until killed, or stdin closes
	_ = strings.TrimSpace
}
