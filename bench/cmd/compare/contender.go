package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Sample is one measurement of one contender in one round.
type Sample struct {
	P50, P99    time.Duration // per-call latency (zero for throughput samples)
	CallsPerSec float64
	CPUPerCall  time.Duration // CPU of both sides (caller and server processes) per call
	Calls       int
	Callers     int // concurrent callers
	Servers     int // server processes
	Round       int // the round it was measured in (set by run)
}

// Contender is one way of calling a helper process.
type Contender interface {
	// Name is the stable key used in JSON ("c_floor", "grpc", ...).
	Name() string
	// Label is the human-readable name for the table.
	Label() string
	// Setup starts whatever child processes the contender keeps for the run.
	Setup(ctx context.Context) error
	// Latency makes null calls from one caller for about d and reports
	// per-call percentiles, calls/s and CPU per call.
	Latency(ctx context.Context, d time.Duration) (Sample, error)
	// Throughput makes null calls from many callers (cfg.callers against
	// cfg.servers processes) for about d.
	Throughput(ctx context.Context, d time.Duration) (Sample, error)
	// Close stops and reaps every child process and goroutine it started.
	Close() error
}

// Echoer is implemented by contenders that measure a large echo round trip.
type Echoer interface {
	Echo(ctx context.Context, size int, d time.Duration) (Sample, error)
}

// Extraer is implemented by contenders with extra per-round scalars
// (start-up times and the like); the report takes their median over rounds.
type Extraer interface {
	Extras(ctx context.Context) (map[string]float64, error)
}

// Finisher is implemented by contenders that run a last phase alone, after
// every other contender is closed (e.g. one that starts hundreds of workers).
// Each value is the list of that scalar's per-round values, in round order.
type Finisher interface {
	Finish(ctx context.Context, rounds int, d time.Duration) (map[string][]float64, error)
}

// errUnavailable marks a contender that cannot run on this machine.
var errUnavailable = errors.New("unavailable")

// errNoAggregate, from Throughput, says the contender has no aggregate
// measurement (a floor for the latency phase only); it is not a failure.
var errNoAggregate = errors.New("no aggregate measurement")

// measureLatency calls call from the current goroutine for about d after a
// short warm-up and times every call. pids are the server processes whose CPU
// is charged to the calls, besides this process's own.
func measureLatency(ctx context.Context, d time.Duration, pids func() []int, call func() error) (Sample, error) {
	warmEnd := time.Now().Add(d / 10)
	for i := 0; i < 5 || time.Now().Before(warmEnd); i++ {
		if err := call(); err != nil {
			return Sample{}, fmt.Errorf("warm-up call: %w", err)
		}
	}
	lat := make([]time.Duration, 0, 1<<15)
	ps := pids()
	cpu0 := cpuOf(ps)
	start := time.Now()
	end := start
	for i := 0; ; i++ {
		t0 := time.Now()
		if err := call(); err != nil {
			return Sample{}, err
		}
		end = time.Now()
		lat = append(lat, end.Sub(t0))
		if end.Sub(start) >= d {
			break
		}
		if i&255 == 0 && ctx.Err() != nil {
			return Sample{}, ctx.Err()
		}
	}
	cpu := cpuOf(ps) - cpu0
	p50, p99 := latencySummary(lat)
	return Sample{
		P50: p50, P99: p99,
		CallsPerSec: float64(len(lat)) / end.Sub(start).Seconds(),
		CPUPerCall:  cpu / time.Duration(len(lat)),
		Calls:       len(lat), Callers: 1, Servers: 1,
	}, nil
}

// measureParallel runs callers goroutines, each calling call(i) in a loop for
// about d after a warm-up, and reports the aggregate rate. With lockThread
// each caller goroutine is wired to its own OS thread.
func measureParallel(ctx context.Context, d time.Duration, callers, servers int, lockThread bool, pids func() []int, call func(i int) error) (Sample, error) {
	var ready, done sync.WaitGroup
	startCh := make(chan struct{})
	var start time.Time
	counts := make([]int, callers)
	ends := make([]time.Time, callers)
	errs := make([]error, callers)
	for i := range callers {
		ready.Add(1)
		done.Go(func() {
			if lockThread {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
			}
			var err error
			for range 20 {
				if err = call(i); err != nil {
					break
				}
			}
			ready.Done()
			<-startCh
			if err != nil {
				errs[i] = fmt.Errorf("warm-up call: %w", err)
				return
			}
			n := 0
			for {
				if err := call(i); err != nil {
					errs[i] = err
					break
				}
				n++
				if now := time.Now(); now.Sub(start) >= d || (n&255 == 0 && ctx.Err() != nil) {
					ends[i] = now
					break
				}
			}
			counts[i] = n
		})
	}
	ready.Wait()
	ps := pids()
	cpu0 := cpuOf(ps)
	start = time.Now()
	close(startCh)
	done.Wait()
	cpu := cpuOf(ps) - cpu0
	if err := errors.Join(errs...); err != nil {
		return Sample{}, err
	}
	if err := ctx.Err(); err != nil {
		return Sample{}, err
	}
	total, last := 0, start
	for i := range callers {
		total += counts[i]
		if ends[i].After(last) {
			last = ends[i]
		}
	}
	return Sample{
		CallsPerSec: float64(total) / last.Sub(start).Seconds(),
		CPUPerCall:  cpu / time.Duration(max(total, 1)),
		Calls:       total, Callers: callers, Servers: servers,
	}, nil
}

// goChild is a re-executed copy of this binary running one child mode.
type goChild struct {
	kind     string
	cmd      *exec.Cmd
	lifeline *os.File // closing it tells the child to exit
	done     chan error
}

// startGoChild re-executes this binary with BENCH_CHILD=kind. extra files
// become fds 3, 4, ... in the child. The child's stdin is a lifeline pipe and
// its stdout goes to our stderr, so --json output stays clean.
func startGoChild(kind string, extra []*os.File, env ...string) (*goChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), "BENCH_CHILD="+kind), env...)
	cmd.Stdin = pr
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	pr.Close()
	if err != nil {
		pw.Close()
		return nil, err
	}
	c := &goChild{kind: kind, cmd: cmd, lifeline: pw, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

func (c *goChild) pid() int { return c.cmd.Process.Pid }

// stop closes the lifeline, waits up to 3 s for an orderly exit, then kills.
// In every case the child is reaped when stop returns.
func (c *goChild) stop() error {
	c.lifeline.Close()
	t := time.NewTimer(3 * time.Second)
	defer t.Stop()
	select {
	case err := <-c.done:
		return err
	case <-t.C:
		c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("child %d (%s) ignored its lifeline and was killed", c.pid(), c.kind)
	}
}

// watchLifeline, in a child, exits the process when the parent closes stdin.
func watchLifeline() {
	go func() {
		var b [1]byte
		for {
			if _, err := os.Stdin.Read(b[:]); err != nil {
				os.Exit(0)
			}
		}
	}()
}

func pidsOf(cs []*goChild) func() []int {
	return func() []int {
		ps := make([]int, len(cs))
		for i, c := range cs {
			ps[i] = c.pid()
		}
		return ps
	}
}
