package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/examples/crashy"
	"github.com/spf13/cobra"
)

// demoConfig is the demo's validated command line.
type demoConfig struct {
	calls       int
	workers     int
	concurrency int
	crashRate   float64 // per call, split evenly over segv, abort, exit and hang
	idleRate    float64 // per call: the worker dies just after replying
	startupRate float64 // per worker start: it dies before HELLO
	recycle     int     // Config.MaxCalls; 0: off
	timeout     time.Duration
	killGrace   time.Duration
	stall       time.Duration
	progress    time.Duration // 0: no progress
	transport   bulkhead.Transport
	sandbox     bulkhead.Sandbox // --sandbox strict
	json        bool
	log         bool
	listen      string        // --listen: serve metrics and status there; "" for no
	slowCall    time.Duration // Config.SlowCall; 0: off
	nodes       int           // --nodes: 0 for one pool in-process, else a cluster of node processes

	// listening and finished, when set (by tests), are called with the
	// --listen address once it serves, before any call, and once the calls
	// are done, before it stops.
	listening, finished func(addr string)
}

// strictSandbox is --sandbox strict, less its Landlock paths (the journal's
// directory, set per run). The workers' journals are files they create and
// append to, so the profile lets open and openat write, and Landlock
// confines that to the journal's directory.
var strictSandbox = bulkhead.Sandbox{MemoryMax: 256 << 20, PidsMax: 256, Seccomp: "files",
	SeccompAllow: []string{"open", "openat"}, ReadOnly: []string{"/proc"}}

// Bounds on the demo's flags.
const (
	maxDemoCalls       = 1_000_000
	maxDemoWorkers     = 1024
	maxDemoConcurrency = 10_000
	maxStartupRate     = 0.5
	maxStartAttempts   = 5 // New fails only if every first worker dies at start-up
	payloadBytes       = 64
)

func newDemoCmd() *cobra.Command {
	cfg := demoConfig{}
	var progress time.Duration
	var quiet bool
	var transport, sandbox string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a pool of crashing native workers under load and check that no call is lost",
		Long: `demo starts a pool of crashy workers (this program, re-executed) and sends them many
concurrent calls. Each call hashes bytes in C; at the rates given, the C code instead
dereferences NULL, calls abort() or exit(), or loops forever. Workers also die just
after a call (--idle-crash-rate) and at start-up (--startup-crash-rate).

Progress goes to stderr; the summary to stdout. Every worker journals each call it
starts, so that the summary can prove that no call was lost or run twice.
Exit status: 0 if every check holds, 1 if a call was lost, run twice or answered
wrongly, 2 on bad flags.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			f := c.Flags()
			if !f.Changed("idle-crash-rate") {
				cfg.idleRate = cfg.crashRate / 4
			}
			if !f.Changed("startup-crash-rate") {
				cfg.startupRate = min(2*cfg.crashRate, maxStartupRate)
			}
			switch transport {
			case "socket":
				cfg.transport = bulkhead.TransportSocket
			case "shm":
				cfg.transport = bulkhead.TransportShm
			default:
				return usagef("--transport %q: want socket or shm", transport)
			}
			switch sandbox {
			case "none":
			case "strict":
				cfg.sandbox = strictSandbox
			default:
				return usagef("--sandbox %q: want none or strict", sandbox)
			}
			if !f.Changed("timeout") {
				cfg.timeout = defaultTimeout(cfg.nodes)
			}
			cfg.progress = progress
			if progress == 0 {
				cfg.progress = time.Second
				if isTerminal(c.ErrOrStderr()) {
					cfg.progress = 250 * time.Millisecond
				}
			}
			if err := cfg.validate(); err != nil {
				return badUsage{err}
			}
			if quiet {
				cfg.progress = 0
			}
			if cfg.nodes > 0 {
				return runClusterDemo(c.Context(), cfg, c.OutOrStdout(), c.ErrOrStderr())
			}
			return runDemo(c.Context(), cfg, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.calls, "calls", 2000, "number of calls, 1 to 1000000")
	f.IntVar(&cfg.workers, "workers", min(runtime.NumCPU(), maxDemoWorkers), "worker processes, 1 to 1024")
	f.IntVar(&cfg.concurrency, "concurrency", 16, "concurrent callers, 1 to 10000")
	f.Float64Var(&cfg.crashRate, "crash-rate", 0.02, "chance per call that it dies in C: segv, abort, exit and hang alike, 0 to 1")
	f.Float64Var(&cfg.idleRate, "idle-crash-rate", 0, "chance per call that the worker dies 1ms after replying, 0 to 1 (default: crash-rate/4)")
	f.Float64Var(&cfg.startupRate, "startup-crash-rate", 0, "chance per worker start that it dies before HELLO, 0 to 0.5 (default: 2×crash-rate, at most 0.5)")
	f.IntVar(&cfg.recycle, "recycle-after", 0, "recycle a worker (drain and replace) after this many calls (Config.MaxCalls), 0 (never) to 1000000")
	f.DurationVar(&cfg.timeout, "timeout", 0, "deadline of each call, waiting for a worker included; a hung call ends by it, 1ms to 10m (default 100ms; 1s with --nodes, where a call that reaches the killed node needs about 400ms to learn its node was lost)")
	f.DurationVar(&cfg.killGrace, "kill-grace", 20*time.Millisecond, "time a worker being stopped gets at each step (QUIT or SIGTERM, then SIGQUIT for a hung one) before the next, harsher one (Config.KillGrace, TermGrace, DumpGrace), 1ms to 1m")
	f.DurationVar(&cfg.stall, "stall", 30*time.Second, "give up when no call has returned for this long, counting the calls still out as lost; more than --timeout, at most 1h")
	f.DurationVar(&progress, "progress-every", 0, "progress interval on stderr (default: 250ms on a terminal, 1s otherwise)")
	f.StringVar(&transport, "transport", "socket", "how calls travel to workers: socket, or shm (shared-memory rings; see docs/DESIGN.md)")
	f.StringVar(&sandbox, "sandbox", "none", "none, or strict: each worker in its own cgroup (256 MiB, 256 tasks), under the seccomp profile \"files\" and Landlock (writes only to its journal's directory, reads only there, /proc and its libraries), with no environment but its options (docs/SANDBOX.md; needs root for the cgroup)")
	f.IntVar(&cfg.nodes, "nodes", 0, "run a cluster: an embedded NATS server and this many node processes (2 to 16), one SIGKILLed mid-run; 0: one pool in-process (docs/DESIGN.md, \"Cluster\")")
	f.BoolVar(&quiet, "quiet", false, "no progress output")
	f.BoolVar(&cfg.json, "json", false, "print the summary as one JSON object")
	f.BoolVar(&cfg.log, "log", false, "print the pool's log records (crashes, failed starts, stopped workers) on stderr")
	f.DurationVar(&cfg.slowCall, "slow-call", 0, "log a call running longer than this once, with its worker's stacks (Config.SlowCall; see --log), 0 (off) to 10m")
	f.StringVar(&cfg.listen, "listen", "", "serve /metrics (Prometheus), /status (a live page) and /status.json at this host:port while the demo runs, such as 127.0.0.1:9090")
	return cmd
}

// defaultTimeout is --timeout when not given: longer in a cluster, where
// a call sent to the killed node waits until its loss is seen (about 400
// ms) before it is answered or tried again.
func defaultTimeout(nodes int) time.Duration {
	if nodes > 0 {
		return time.Second
	}
	return 100 * time.Millisecond
}

func (c *demoConfig) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.calls < 1 || c.calls > maxDemoCalls {
		bad("--calls %d: want 1 to %d", c.calls, maxDemoCalls)
	}
	if c.workers < 1 || c.workers > maxDemoWorkers {
		bad("--workers %d: want 1 to %d", c.workers, maxDemoWorkers)
	}
	if c.concurrency < 1 || c.concurrency > maxDemoConcurrency {
		bad("--concurrency %d: want 1 to %d", c.concurrency, maxDemoConcurrency)
	}
	if c.recycle < 0 || c.recycle > maxDemoCalls {
		bad("--recycle-after %d: want 0 (never) to %d", c.recycle, maxDemoCalls)
	}
	rate := func(name string, v, hi float64) {
		if math.IsNaN(v) || v < 0 || v > hi {
			bad("--%s %v: want 0 to %v", name, v, hi)
		}
	}
	rate("crash-rate", c.crashRate, 1)
	rate("idle-crash-rate", c.idleRate, 1)
	rate("startup-crash-rate", c.startupRate, maxStartupRate)
	dur := func(name string, v, lo, hi time.Duration) {
		if v < lo || v > hi {
			bad("--%s %v: want %v to %v", name, v, lo, hi)
		}
	}
	dur("timeout", c.timeout, time.Millisecond, 10*time.Minute)
	dur("kill-grace", c.killGrace, time.Millisecond, time.Minute)
	dur("stall", c.stall, time.Millisecond, time.Hour)
	dur("slow-call", c.slowCall, 0, 10*time.Minute)
	if c.stall <= c.timeout {
		bad("--stall %v: want more than --timeout %v", c.stall, c.timeout)
	}
	if c.nodes != 0 && (c.nodes < 2 || c.nodes > maxDemoNodes) {
		bad("--nodes %d: want 0 (no cluster) or 2 to %d", c.nodes, maxDemoNodes)
	}
	if c.nodes != 0 && (c.listen != "" || c.sandbox.Seccomp != "" || c.transport != bulkhead.TransportSocket) {
		bad("--nodes: --listen, --sandbox and --transport are for the in-process pool")
	}
	if c.progress < 0 {
		bad("--progress-every %v: must not be negative", c.progress)
	}
	if c.listen != "" {
		if err := checkListen(c.listen); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// workerOptions are the crashy workers' fault rates for cfg.
func (c *demoConfig) workerOptions(journal string) crashy.Options {
	q := c.crashRate / 4
	return crashy.Options{Segv: q, Abort: q, Exit: q, Hang: q, Idle: c.idleRate, Startup: c.startupRate, Journal: journal}
}

// callStatus tracks one call id.
const (
	statusNotSent uint32 = iota
	statusOut            // Call has not returned
	statusDone           // Call returned; its result is in results
)

// outcome is what one call came back with.
type outcome uint8

const (
	outNone     outcome = iota
	outOK               // the right checksum
	outWrong            // a result, but not the right checksum
	outCrash            // *CrashError
	outTimeout          // *CanceledError past the deadline
	outNoWorker         // *StartError: no worker was up and a start failed
	outRefused          // failed fast, nothing sent: overloaded, unhealthy or quarantined
	outError            // any other error
	outNodeLost         // *cluster.NodeLostError: its node was lost with the call started
	numOutcomes
)

// demoRun is one run's state, shared by the callers.
type demoRun struct {
	cfg    demoConfig
	pool   *bulkhead.Pool  // nil for a cluster
	call   bulkhead.Caller // pool, or the cluster's client
	next   atomic.Int64
	status []atomic.Uint32 // by call id; index 0 unused
	result []callResult    // by call id; written by its caller before status becomes statusDone

	done     atomic.Int64
	counts   [numOutcomes]atomic.Int64 // calls returned, by outcome: the progress line's categories
	firstErr atomic.Pointer[string]
	onCount  func(done int64) // if set, after each call (the cluster demo's kill)
}

// callResult is what the summary needs to know about one call.
type callResult struct {
	out     outcome
	kind    crashKind // for outCrash
	idle    bool      // for outCrash: the worker died before starting it (after every redispatch)
	started bool      // for outTimeout: the worker had started it
	refusal refusal   // for outRefused
}

// refusal is why a call failed fast.
type refusal uint8

const (
	refusedOverloaded refusal = iota
	refusedUnhealthy
	refusedQuarantined
)

func runDemo(ctx context.Context, cfg demoConfig, stdout, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program to run it as the worker: %w", err)
	}
	dir, err := os.MkdirTemp("", "bulkhead-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	logger := slog.New(slog.DiscardHandler)
	if cfg.log {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	pool, journal, attempts, err := startDemoPool(ctx, cfg, exe, dir, logger, stderr)
	if err != nil {
		return err
	}

	var obs *obsServer
	if cfg.listen != "" {
		if obs, err = listenObs(cfg.listen, pool, stderr); err != nil {
			pool.Close(context.Background())
			return err
		}
		fmt.Fprintf(stderr, "serving http://%[1]s/metrics, http://%[1]s/status and http://%[1]s/status.json\n", obs.Addr())
		if cfg.listening != nil {
			cfg.listening(obs.Addr())
		}
	}

	r := &demoRun{cfg: cfg, pool: pool, call: pool, status: make([]atomic.Uint32, cfg.calls+1), result: make([]callResult, cfg.calls+1)}
	all, elapsed, stalled := r.runCallers(ctx, stderr)
	if obs != nil {
		if cfg.finished != nil {
			cfg.finished(obs.Addr())
		}
		obs.Close()
	}

	closeCtx := context.Background()
	if stalled {
		c, cancel := context.WithCancel(closeCtx)
		cancel() // kill the workers at once
		closeCtx = c
	}
	closeErr := pool.Close(closeCtx)
	if stalled {
		closeErr = nil // expected: the stuck calls were still in flight
	}
	stats := pool.Stats()

	js, jerr := crashy.ReadJournals(journal)
	if jerr != nil {
		return fmt.Errorf("reading the workers' journals: %w", jerr)
	}
	sum := r.tally(js, all, stats, elapsed)
	sum.PoolStartAttempts = attempts
	sum.Interrupted = ctx.Err() != nil
	sum.Stalled = stalled

	if cfg.json {
		if err := sum.writeJSON(stdout); err != nil {
			return err
		}
	} else {
		sum.writeText(stdout)
	}
	switch {
	case !sum.Clean:
		return exitError{1, fmt.Errorf("checks failed: %d lost, %d duplicated, %d wrong results", sum.Lost, sum.Duplicated, sum.Wrong)}
	case closeErr != nil:
		return fmt.Errorf("closing the pool: %w", closeErr)
	case sum.Interrupted:
		return exitError{130, errors.New("interrupted")}
	}
	return nil
}

// runCallers runs the demo's callers until they are done or stall, and
// returns their latencies, the time they took, and whether they stalled.
func (r *demoRun) runCallers(ctx context.Context, stderr io.Writer) (lat []time.Duration, elapsed time.Duration, stalled bool) {
	start := time.Now()
	lats := make([][]time.Duration, r.cfg.concurrency)
	var wg sync.WaitGroup
	for i := range r.cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lats[i] = r.caller(ctx)
		}()
	}
	// The callers are waited for here; if they stall (a Call that never
	// returns, which must not happen), this goroutine and they are left to
	// the process's exit.
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()
	stalled = r.watch(allDone, start, stderr)
	elapsed = time.Since(start)
	for _, l := range lats {
		lat = append(lat, l...)
	}
	return lat, elapsed, stalled
}

// startDemoPool starts the pool, retrying when every first worker died at
// start-up (by an injected fault, a few percent of the time with one worker).
// Each attempt journals to a directory of its own; the last one's is returned.
func startDemoPool(ctx context.Context, cfg demoConfig, exe, dir string, logger *slog.Logger, stderr io.Writer) (*bulkhead.Pool, string, int, error) {
	for attempt := 1; ; attempt++ {
		journal := filepath.Join(dir, "attempt-"+strconv.Itoa(attempt))
		if err := os.Mkdir(journal, 0o700); err != nil {
			return nil, "", attempt, err
		}
		env := append(os.Environ(), cfg.workerOptions(journal).Environ()...)
		sb := cfg.sandbox
		if sb.Seccomp != "" {
			env = cfg.workerOptions(journal).Environ() // not even the demo's environment
			sb.Writable = []string{journal}
		}
		pool, err := bulkhead.New(ctx, bulkhead.Config{
			Command:   exe,
			Args:      []string{workerArg},
			Env:       env,
			Sandbox:   sb,
			Workers:   cfg.workers,
			MaxCalls:  cfg.recycle,
			KillGrace: cfg.killGrace,
			TermGrace: cfg.killGrace,
			DumpGrace: cfg.killGrace,
			Transport: cfg.transport,
			SlowCall:  cfg.slowCall,
			Logger:    logger,
		})
		var se *bulkhead.StartError
		if err == nil {
			return pool, journal, attempt, nil
		}
		if !errors.As(err, &se) || !se.Exited || attempt == maxStartAttempts || ctx.Err() != nil {
			return nil, "", attempt, fmt.Errorf("starting the pool: %w", err)
		}
		fmt.Fprintf(stderr, "every first worker died at start-up (%s); starting the pool again\n", se.Reason)
	}
}

// caller makes calls until the ids run out or ctx ends, and returns the
// latencies of its successful calls.
func (r *demoRun) caller(ctx context.Context) []time.Duration {
	var lat []time.Duration
	data := make([]byte, payloadBytes)
	// A call's own deadline, not ctx, bounds it: an interrupted demo lets
	// the calls in flight finish.
	callCtx := context.WithoutCancel(ctx)
	for ctx.Err() == nil {
		id := r.next.Add(1)
		if id > int64(r.cfg.calls) {
			return lat
		}
		fillPayload(data, uint64(id))
		want := fnv64a(data)
		r.status[id].Store(statusOut)
		t0 := time.Now()
		cctx, cancel := context.WithTimeout(callCtx, r.cfg.timeout)
		var got int64
		rep, err := r.call.Call(cctx, crashy.Method, uint64(id), data)
		if err == nil {
			err = rep.Decode(&got)
		}
		d := time.Since(t0)
		cancel()
		res := classify(err, got == want)
		if res.out == outError {
			msg := err.Error()
			r.firstErr.CompareAndSwap(nil, &msg)
		}
		if res.out == outOK {
			lat = append(lat, d)
		}
		r.result[id] = res
		r.status[id].Store(statusDone)
		r.count(res.out)
	}
	return lat
}

func (r *demoRun) count(o outcome) {
	r.counts[o].Add(1)
	d := r.done.Add(1)
	if r.onCount != nil {
		r.onCount(d)
	}
}

func classify(err error, right bool) callResult {
	var ce *bulkhead.CrashError
	var cancel *bulkhead.CanceledError
	switch {
	case err == nil && right:
		return callResult{out: outOK}
	case err == nil:
		return callResult{out: outWrong}
	case errors.As(err, &ce):
		return callResult{out: outCrash, kind: kindOf(ce), idle: ce.Phase == bulkhead.PhaseIdle}
	case errors.As(err, &cancel) && errors.Is(err, context.DeadlineExceeded):
		cancel.Wait() // how the worker was stopped, and whether it had started
		return callResult{out: outTimeout, started: cancel.Started}
	case errors.Is(err, bulkhead.ErrStartFailed):
		return callResult{out: outNoWorker}
	case errors.Is(err, bulkhead.ErrOverloaded):
		return callResult{out: outRefused, refusal: refusedOverloaded}
	case errors.Is(err, bulkhead.ErrUnhealthy):
		return callResult{out: outRefused, refusal: refusedUnhealthy}
	case errors.Is(err, bulkhead.ErrQuarantined):
		return callResult{out: outRefused, refusal: refusedQuarantined}
	case errors.Is(err, cluster.ErrNodeLost):
		return callResult{out: outNodeLost}
	}
	return callResult{out: outError}
}

// watch shows progress until allDone is closed, and reports true if no call
// returned for cfg.stall while calls were still out.
func (r *demoRun) watch(allDone <-chan struct{}, start time.Time, stderr io.Writer) bool {
	every := r.cfg.progress
	if every == 0 || every > r.cfg.stall {
		every = r.cfg.stall / 10
	}
	p := newProgress(stderr, r.cfg.progress > 0)
	defer func() { p.finish(r.line(start)) }()
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastChange := r.done.Load(), time.Now()
	for {
		select {
		case <-allDone:
			return false
		case now := <-t.C:
			p.show(r.line(start))
			if d := r.done.Load(); d != last {
				last, lastChange = d, now
			} else if now.Sub(lastChange) >= r.cfg.stall {
				return true
			}
		}
	}
}

// line is one progress line.
func (r *demoRun) line(start time.Time) string {
	if r.pool == nil {
		return r.clusterLine(start)
	}
	st := r.pool.Stats()
	el := time.Since(start)
	done := r.done.Load()
	return fmt.Sprintf("%d/%d calls  %s  %.0f calls/s  workers %d (+%d starting, %d started)  %.1fs",
		done, r.cfg.calls, r.outcomes(), float64(done)/max(el.Seconds(), 1e-9), st.Workers, st.Starting, st.Started, el.Seconds())
}

// outcomes are the progress line's counts, in the summary's categories
// (tallyCall), so that the last line and the summary agree: node lost
// in a cluster, wrong only when there is one.
func (r *demoRun) outcomes() string {
	c := func(o outcome) int64 { return r.counts[o].Load() }
	s := fmt.Sprintf("ok %d  crashed %d  timeouts %d  no worker %d  refused %d",
		c(outOK), c(outCrash), c(outTimeout), c(outNoWorker), c(outRefused))
	if n := c(outNodeLost); r.cfg.nodes > 0 || n > 0 {
		s += fmt.Sprintf("  node lost %d", n)
	}
	s += fmt.Sprintf("  errors %d", c(outError)+c(outNone))
	if n := c(outWrong); n > 0 {
		s += fmt.Sprintf("  wrong %d", n)
	}
	return s
}

// fillPayload fills b with bytes derived from id (splitmix64), so that each
// call hashes something different and its answer can be checked.
func fillPayload(b []byte, id uint64) {
	x := id
	for i := range b {
		if i%8 == 0 {
			x += 0x9e3779b97f4a7c15
			z := x
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
			z = (z ^ (z >> 27)) * 0x94d049bb133111eb
			x = z ^ (z >> 31)
		}
		b[i] = byte(x >> (8 * (i % 8)))
	}
}

// fnv64a is the checksum the worker computes in C, computed here in Go: the
// dispatcher never calls the C library.
func fnv64a(b []byte) int64 {
	h := fnv.New64a()
	h.Write(b)
	return int64(h.Sum64())
}
