package activation

import (
	"context"
	"errors"
	"fmt"
	"os"
	ossignal "os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/bulkhead-go/bulkhead/worker"
	"golang.org/x/sys/unix"
)

// The test binary doubles as a class server, the helper process "classes"
// (see TestMain in helper_test.go). Its classes are chosen with
// environment variables:
//
//	ACT_CLASSES          comma-separated classes as Name:threading, threading
//	                     one of apartment, free, single
//	ACT_MAX_ACTIVATIONS  worker.ObjectOptions.MaxActivations
const actClassesEnv = "ACT_CLASSES"

// helperObj is every helper class's state.
type helperObj struct {
	self *worker.Object
	mu   sync.Mutex
	n    int
}

// gates are process-wide, so that a call on one object can open a gate a
// call on another waits at.
type gates struct {
	mu    sync.Mutex
	gates map[string]chan struct{}
}

func (g *gates) get(name string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gates[name] == nil {
		g.gates[name] = make(chan struct{})
	}
	return g.gates[name]
}

func runClassHelper(spec string) {
	s := &worker.Server{}
	s.Objects.MaxActivations, _ = strconv.Atoi(os.Getenv("ACT_MAX_ACTIVATIONS"))
	gs := &gates{gates: make(map[string]chan struct{})}
	// A gate the test opens from outside, with SIGUSR1: for a server whose
	// every call waits behind the one blocked.
	usr1 := make(chan os.Signal, 1)
	ossignal.Notify(usr1, syscall.SIGUSR1)
	for _, item := range strings.Split(spec, ",") {
		name, model, _ := strings.Cut(item, ":")
		var th worker.Threading
		switch model {
		case "free":
			th = worker.Free
		case "single":
			th = worker.Single
		}
		c := &worker.Class[*helperObj]{Name: name, Threading: th,
			New: func(_ context.Context, self *worker.Object, a worker.Args) (*helperObj, error) {
				o := &helperObj{self: self}
				if a.Len() > 0 {
					if err := a.Decode(0, &o.n); err != nil {
						return nil, err
					}
				}
				if o.n < 0 {
					return nil, errors.New("negative start")
				}
				return o, nil
			}}
		c.Method("add", func(_ context.Context, o *helperObj, a worker.Args) (any, error) {
			var d int
			if err := a.Scan(&d); err != nil {
				return nil, err
			}
			o.mu.Lock()
			defer o.mu.Unlock()
			o.n += d
			return o.n, nil
		})
		c.Method("null", func(context.Context, *helperObj, worker.Args) (any, error) { return nil, nil })
		c.Method("pid", func(context.Context, *helperObj, worker.Args) (any, error) { return os.Getpid(), nil })
		c.Method("traceparent", func(ctx context.Context, _ *helperObj, _ worker.Args) (any, error) {
			return worker.Traceparent(ctx), nil
		})
		c.Method("revoke", func(context.Context, *helperObj, worker.Args) (any, error) {
			return nil, s.RevokeClasses()
		})
		c.Method("emit", func(_ context.Context, o *helperObj, a worker.Args) (any, error) {
			var n int
			if err := a.Scan(&n); err != nil {
				return nil, err
			}
			for i := range n {
				if err := o.self.Emit("tick", i); err != nil {
					return nil, err
				}
			}
			return n, nil
		})
		c.Method("emitLater", func(_ context.Context, o *helperObj, a worker.Args) (any, error) {
			var gate string
			var n int
			if err := a.Scan(&gate, &n); err != nil {
				return nil, err
			}
			// After the reply: nobody is waiting for a reply when these
			// arrive, so only the dispatcher's watcher can read them.
			go func() {
				<-gs.get(gate)
				for i := range n {
					o.self.Emit("later", i)
				}
			}()
			return nil, nil
		})
		c.Method("kill", func(context.Context, *helperObj, worker.Args) (any, error) {
			fmt.Fprintln(os.Stderr, "helper: class server killing itself")
			unix.Kill(os.Getpid(), unix.SIGKILL)
			select {}
		})
		// A C SDK class server's death: its crash handler's report
		// (sdk/c/bulkhead.h) on stderr, then the end.
		c.Method("cfault", func(context.Context, *helperObj, worker.Args) (any, error) {
			fmt.Fprint(os.Stderr, "bulkhead: fatal signal 11 (SIGSEGV), code 1, address 0x0, in call 7 \"parse\"\n"+
				"libexpat.so.1(XML_Parse+0x125) [0x7f3a12345125]\n./expatsrv(bh_serve+0x91) [0x55d0c0a1c2a1]\n")
			unix.Kill(os.Getpid(), unix.SIGKILL)
			select {}
		})
		// What a compromised server would try, for the sandbox tests:
		// a TCP socket, memory past its cgroup's limit, threads past
		// its pids.max (the runtime dies when it cannot start one).
		c.Method("connect", func(context.Context, *helperObj, worker.Args) (any, error) {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
			if err == nil {
				unix.Close(fd)
			}
			return fmt.Sprint(err), nil
		})
		c.Method("alloc", func(_ context.Context, _ *helperObj, a worker.Args) (any, error) {
			var mib int
			if err := a.Scan(&mib); err != nil {
				return nil, err
			}
			var keep [][]byte
			for range mib {
				b := make([]byte, 1<<20)
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1
				}
				keep = append(keep, b)
			}
			return len(keep), nil
		})
		c.Method("threads", func(_ context.Context, _ *helperObj, a worker.Args) (any, error) {
			var n int
			if err := a.Scan(&n); err != nil {
				return nil, err
			}
			hold := make(chan struct{})
			for range n {
				go func() {
					runtime.LockOSThread() // each parks its own thread
					<-hold
				}()
			}
			select {} // the runtime dies first, at pids.max
		})
		c.Method("wait", func(_ context.Context, _ *helperObj, a worker.Args) (any, error) {
			var gate string
			if err := a.Scan(&gate); err != nil {
				return nil, err
			}
			<-gs.get(gate)
			return gate, nil
		})
		c.Method("block", func(_ context.Context, o *helperObj, _ worker.Args) (any, error) {
			if err := o.self.Emit("blocked"); err != nil {
				return nil, err
			}
			<-usr1
			return "unblocked", nil
		})
		c.Method("open", func(_ context.Context, _ *helperObj, a worker.Args) (any, error) {
			var gate string
			if err := a.Scan(&gate); err != nil {
				return nil, err
			}
			close(gs.get(gate))
			return nil, nil
		})
		s.Register(c)
	}
	s.Run()
}
