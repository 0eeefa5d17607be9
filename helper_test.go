package bulkhead_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/bulkhead-go/bulkhead/worker"
	"golang.org/x/sys/unix"
)

// helpers is the registry of the helper processes this test binary can be
// (os/exec's tests do the same): a process started with bulkhead.HelperEnv
// set to a name runs that helper instead of the tests. A worker started
// without a name (a pool with the default environment) is "worker".
func helpers() map[string]func() {
	return map[string]func(){
		"worker":      runHelperWorker,
		"policy":      bulkhead.RunPolicyWorker,
		"crashreport": runCrashReportWorker,
		"orphan":      runOrphan,
		"pingpong":    runPingPong,
		"dispatcher":  runHelperDispatcher,
		"sandboxed":   runSandboxedDispatcher,
		"combos":      runComboDispatcher,
	}
}

// TestMain is the test binary's one entry point: the tests, or a helper.
func TestMain(m *testing.M) { testutil.Main(m, helpers(), "worker", worker.IsWorker) }

// runHelperWorker is the default worker. Its behaviour is chosen with
// environment variables:
//
//	HELPER_START  how it starts: "" (normal), "exit", "silent", "badversion",
//	              "badcookie", "noise", "die_on_call", "die_on_call_nomarker"
//	HELPER_ONCE   a path: only the first worker to create it uses HELPER_START;
//	              its replacements start normally
//	HELPER_CONC   the worker's Concurrency
//	HELPER_NOSTACK if set, the worker does not answer SIGUSR2 with a STACK
func runHelperWorker() {
	mode := os.Getenv("HELPER_START")
	if once := os.Getenv("HELPER_ONCE"); once != "" && mode != "" {
		f, err := os.OpenFile(once, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			mode = "" // a replacement: start normally
		} else {
			f.Close()
		}
	}
	fd, _ := strconv.Atoi(os.Getenv("BULKHEAD_FD"))
	switch mode {
	case "exit":
		fmt.Fprintln(os.Stderr, "helper: cannot load the native library")
		os.Exit(3)
	case "silent":
		bulkhead.BlockForever() // never says HELLO
	case "badversion", "badcookie":
		h := wire.Hello{Protocol: 1, PID: int64(os.Getpid()), Cookie: os.Getenv("BULKHEAD_COOKIE"), Concurrency: 1}
		if mode == "badversion" {
			h.Protocol = 2
		} else {
			h.Cookie = "0000"
		}
		var b wire.Builder
		_ = b.Value(wire.TypeHello, 0, h, wire.MaxHelloSize)
		fdio.FD(fd).Write(b.Bytes())
		// Wait for the refusal, then exit as a worker would.
		r := wire.NewReader(fdio.FD(fd), wire.MaxHelloSize)
		hd, p, err := r.Next()
		if err == nil && hd.Type == wire.TypeError {
			e, _ := wire.DecodeError(p)
			fmt.Fprintf(os.Stderr, "helper: refused: %s\n", e.Message)
		}
		os.Exit(1)
	case "noise":
		fmt.Println("HELLO? a stray line on stdout from a chatty library")
	case "die_on_call", "die_on_call_nomarker":
		// Say HELLO, take one CALL off the socket and die before
		// marking it started: the dispatcher must send it elsewhere
		// (or, without a marker, must fail it).
		h := wire.Hello{Protocol: 1, PID: int64(os.Getpid()), Cookie: os.Getenv("BULKHEAD_COOKIE"),
			Concurrency: 1, Marker: mode == "die_on_call"}
		var b wire.Builder
		_ = b.Value(wire.TypeHello, 0, h, wire.MaxHelloSize)
		fdio.FD(fd).Write(b.Bytes())
		r := wire.NewReader(fdio.FD(fd), wire.DefaultMaxFrame)
		r.Next()
		unix.Kill(os.Getpid(), unix.SIGKILL)
	}
	s := &worker.Server{NoStackSignal: os.Getenv("HELPER_NOSTACK") != ""}
	if c := os.Getenv("HELPER_CONC"); c != "" {
		s.Concurrency, _ = strconv.Atoi(c)
	}
	registerHelperMethods(s, fd)
	if prof := os.Getenv("HELPER_CPUPROFILE"); prof != "" {
		// For investigating the worker's side of a benchmark.
		f, _ := os.Create(prof + "." + strconv.Itoa(os.Getpid()))
		pprof.StartCPUProfile(f)
		s.Serve(context.Background())
		pprof.StopCPUProfile()
		f.Close()
		os.Exit(0)
	}
	s.Run()
}

func registerHelperMethods(s *worker.Server, fd int) {
	s.Handle("null", func(context.Context, worker.Args) (any, error) { return nil, nil })
	s.Handle("echo", func(_ context.Context, a worker.Args) (any, error) {
		var v any
		err := a.Decode(0, &v)
		return v, err
	})
	s.Handle("echobytes", func(_ context.Context, a worker.Args) (any, error) {
		return a.Bytes(0) // a view of the request frame, written back uncopied
	})
	s.Handle("upper", worker.Func(func(_ context.Context, s string) (string, error) {
		b := []byte(s)
		for i, c := range b {
			if 'a' <= c && c <= 'z' {
				b[i] = c - 32
			}
		}
		return string(b), nil
	}))
	s.Handle("pid", func(context.Context, worker.Args) (any, error) { return os.Getpid(), nil })
	s.Handle("traceparent", func(ctx context.Context, _ worker.Args) (any, error) { return worker.Traceparent(ctx), nil })
	s.Handle("gate", worker.Func(func(_ context.Context, a gateArgs) (any, error) {
		// Blocks until the test writes a byte to the fifo, then acts: the
		// test decides when the call ends, without a timer.
		f, err := os.Open(a.Fifo)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if _, err := f.Read(make([]byte, 1)); err != nil {
			return nil, err
		}
		switch a.Then {
		case "segv":
			native.Segv()
		case "panic":
			panic("handler bug behind the gate")
		}
		return os.Getpid(), nil
	}))
	s.Handle("fail", func(context.Context, worker.Args) (any, error) { return nil, errors.New("no such record") })
	s.Handle("environ", func(context.Context, worker.Args) (any, error) { return os.Environ(), nil })
	s.Handle("ids", func(context.Context, worker.Args) (any, error) { return []int{os.Getuid(), os.Getgid()}, nil })
	handleEscapes(s)
	handleNamespaces(s)
	s.Handle("coded", func(context.Context, worker.Args) (any, error) {
		return nil, &worker.Error{Code: 42, Message: "custom", Details: map[string]any{"k": "v"}}
	})
	s.Handle("panic", func(context.Context, worker.Args) (any, error) { panic("handler bug") })
	s.Handle("exit", worker.Func(func(_ context.Context, code int) (any, error) {
		fmt.Fprintf(os.Stderr, "helper: exiting with %d\n", code)
		os.Exit(code)
		return nil, nil
	}))
	s.Handle("kill", func(context.Context, worker.Args) (any, error) {
		fmt.Fprintln(os.Stderr, "helper: killing myself")
		unix.Kill(os.Getpid(), unix.SIGKILL)
		select {}
	})
	s.Handle("abort", func(context.Context, worker.Args) (any, error) {
		// abort() in C, caught by the Go runtime: the SDK makes the
		// worker die by SIGABRT after the runtime's report (goroutines).
		native.RawAbort()
		return nil, nil
	})
	s.Handle("segv", func(context.Context, worker.Args) (any, error) {
		native.Segv() // a NULL dereference in C
		return nil, nil
	})
	s.Handle("rawsegv", func(context.Context, worker.Args) (any, error) {
		native.RawSegv() // a NULL dereference in C, reported by the Go runtime
		return nil, nil
	})
	s.Handle("cabort", func(context.Context, worker.Args) (any, error) {
		native.Abort() // abort() in C
		return nil, nil
	})
	s.Handle("burn", worker.Func(func(_ context.Context, ms int) (any, error) {
		// Spins until this thread has used ms of CPU: CPU time, not wall
		// time, however loaded the machine.
		until := startCPU() + int64(ms)*1e6
		for startCPU() < until {
		}
		return nil, nil
	}))
	s.Handle("grow", worker.Func(func(_ context.Context, mib int) (int, error) {
		b := make([]byte, mib<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // resident
		}
		return int(b[len(b)/2]), nil
	}))
	s.Handle("chang", func(context.Context, worker.Args) (any, error) {
		native.Hang() // an endless loop in C
		return nil, nil
	})
	s.Handle("csleep", worker.Func(func(_ context.Context, seconds uint) (uint, error) {
		return native.Sleep(seconds), nil // blocked in C: a signal on its thread would end it early
	}))
	s.Handle("hang", func(context.Context, worker.Args) (any, error) {
		bulkhead.BlockForever() // stuck as native code would be, deaf to ctx
		return nil, nil
	})
	s.Handle("sleep", worker.Func(func(ctx context.Context, ms int) (any, error) {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return ms, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}))
	s.Handle("garbage", func(context.Context, worker.Args) (any, error) {
		fdio.FD(fd).Write([]byte("Segmentation fault? no, just a library printing to the wrong fd\n"))
		bulkhead.BlockForever()
		return nil, nil
	})
	s.Handle("oversize", func(context.Context, worker.Args) (any, error) {
		var hb [wire.HeaderSize]byte
		wire.PutHeader(hb[:], wire.Header{Length: wire.MaxMaxFrame, Type: wire.TypeReply, ID: 1})
		fdio.FD(fd).Write(hb[:])
		bulkhead.BlockForever()
		return nil, nil
	})
	s.Handle("nap", worker.Func(func(_ context.Context, ms int) (any, error) {
		time.Sleep(time.Duration(ms) * time.Millisecond) // deaf to ctx, as native code is
		return ms, nil
	}))
	s.Handle("lie", worker.Func(func(_ context.Context, a lieArgs) (any, error) {
		var b wire.Builder
		_ = b.Raw(wire.TypeReply, a.ID, lies[a.Kind], wire.MaxMaxFrame)
		fdio.FD(fd).Write(b.Bytes())
		bulkhead.BlockForever()
		return nil, nil
	}))
	s.Handle("pingflood", func(context.Context, worker.Args) (any, error) {
		var b wire.Builder
		for range 1024 {
			b.Empty(wire.TypePing, 0)
		}
		for {
			if _, err := fdio.FD(fd).Write(b.Bytes()); err != nil {
				bulkhead.BlockForever()
			}
		}
	})
	s.Handle("orphanreply", worker.Func(func(_ context.Context, id uint64) (any, error) {
		startOrphan(fd, id)
		os.Exit(0)
		return nil, nil
	}))
	s.Handle("closesock", func(context.Context, worker.Args) (any, error) {
		unix.Close(fd)
		bulkhead.BlockForever() // alive, but deaf
		return nil, nil
	})
}

// gateArgs are the "gate" method's arguments.
type gateArgs struct {
	Fifo string // a named pipe the call waits on
	Then string // "segv" to crash once let through; anything else returns the pid
}

// startCPU is the calling thread's CPU time, in nanoseconds.
func startCPU() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}
