package chaos

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Fault is a way a chaos call fails.
type Fault string

const (
	FaultNone      Fault = "none"      // succeeds, after a checksum in C
	FaultSegv      Fault = "segv"      // NULL dereference in C: SIGSEGV
	FaultAbort     Fault = "abort"     // abort() in C: SIGABRT
	FaultExit      Fault = "exit"      // exit(ExitCode) in C
	FaultHang      Fault = "hang"      // spins in C past the call's deadline
	FaultGarbage   Fault = "garbage"   // writes garbage onto the protocol socket
	FaultOversize  Fault = "oversize"  // writes a frame header claiming 1 GiB
	FaultCloseSock Fault = "closesock" // closes its socket and stays alive
	FaultLeak      Fault = "leak"      // grows resident memory past MaxMemory, in C
	FaultPoison    Fault = "poison"    // one of a few requests that always crash
	FaultFlaky     Fault = "flaky"     // an idempotent call that crashes once, then succeeds when replayed
)

// ExitCode is the status of FaultExit.
const ExitCode = 3

// Faults returns every injected fault, FaultNone excluded.
func Faults() []Fault {
	return []Fault{FaultSegv, FaultAbort, FaultExit, FaultHang, FaultGarbage, FaultOversize,
		FaultCloseSock, FaultLeak, FaultPoison, FaultFlaky}
}

// Options configure a soak. Every field's zero value is usable except
// Command.
type Options struct {
	Calls     int     // calls to run; zero: 1000
	Workers   int     // pool size; zero: 4
	Callers   int     // concurrent callers; zero: 2 per worker
	FaultRate float64 // share of calls that inject a fault; zero: 0.2
	Seed      uint64  // seeds the fault plan; zero: 1
	Pipeline  int     // Config.Pipeline of the pool; zero: no pipelining
	// Command and Args start a chaos worker: a program that calls
	// RunWorker when IsWorker reports true. Required.
	Command string
	Args    []string
	// Timeout bounds the whole run; calls unanswered by then are lost.
	// Zero: 1 hour.
	Timeout time.Duration
	Logger  *slog.Logger // the pool's logger; zero: discarded
}

// Bounds on Options.
const (
	MaxCalls   = 100_000_000
	maxWorkers = 256
	maxCallers = 4096
)

func (o *Options) defaults() error {
	var errs []error
	if o.Calls < 0 || o.Calls > MaxCalls {
		errs = append(errs, fmt.Errorf("calls = %d: want 1 to %d", o.Calls, MaxCalls))
	} else if o.Calls == 0 {
		o.Calls = 1000
	}
	if o.Workers < 0 || o.Workers > maxWorkers {
		errs = append(errs, fmt.Errorf("workers = %d: want 1 to %d", o.Workers, maxWorkers))
	} else if o.Workers == 0 {
		o.Workers = 4
	}
	if o.Callers < 0 || o.Callers > maxCallers {
		errs = append(errs, fmt.Errorf("callers = %d: want 1 to %d", o.Callers, maxCallers))
	} else if o.Callers == 0 {
		o.Callers = 2 * o.Workers
	}
	if o.FaultRate < 0 || o.FaultRate > 1 || o.FaultRate != o.FaultRate {
		errs = append(errs, fmt.Errorf("fault-rate = %v: want 0 to 1", o.FaultRate))
	} else if o.FaultRate == 0 {
		o.FaultRate = 0.2
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Command == "" {
		errs = append(errs, errors.New("the worker command is required"))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout = %v: must not be negative", o.Timeout))
	} else if o.Timeout == 0 {
		o.Timeout = time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}

// Result is the audit of a soak. The first keys are the invariants: lost,
// duplicated, misclassified and every leak must be 0, and AnsweredOnce must
// equal Calls.
type Result struct {
	Calls            int `json:"calls"`
	AnsweredOnce     int `json:"answered_once"`
	Lost             int `json:"lost"`
	Duplicated       int `json:"duplicated"`
	Misclassified    int `json:"misclassified"`
	LeakedFDs        int `json:"leaked_fds"`
	LeakedGoroutines int `json:"leaked_goroutines"`
	LeakedProcesses  int `json:"leaked_processes"`
	Zombies          int `json:"zombies"`
	// Quarantined counts poison calls refused by quarantine, without
	// reaching a worker.
	Quarantined int  `json:"quarantined"`
	OK          bool `json:"ok"`
	// Planned is the calls asked for; Calls is the calls issued, fewer
	// only if Timeout cut the run short (Truncated).
	Planned   int  `json:"planned"`
	Truncated bool `json:"truncated,omitempty"`

	Faults                  map[string]int    `json:"faults"`
	Outcomes                map[string]int    `json:"outcomes"`
	JournalRecords          int               `json:"journal_records"`
	QuarantinedFingerprints int               `json:"quarantined_fingerprints"`
	WorkersStarted          uint64            `json:"workers_started"`
	Recycled                uint64            `json:"recycled"`
	RecycledByReason        map[string]uint64 `json:"recycled_by_reason"`
	MemoryKills             uint64            `json:"memory_kills"`
	Hung                    uint64            `json:"hung"`
	Replayed                uint64            `json:"replayed"`
	Redispatched            uint64            `json:"redispatched"`
	Workers                 int               `json:"workers"`
	Callers                 int               `json:"callers"`
	FaultRate               float64           `json:"fault_rate"`
	Seed                    uint64            `json:"seed"`
	Seconds                 float64           `json:"seconds"`
	CallsPerSecond          float64           `json:"calls_per_second"`
	Examples                []string          `json:"misclassified_examples,omitempty"`
}

const poisonKinds = 4

type call struct {
	fault   Fault
	poison  int
	answers atomic.Int32
	err     error
	reply   uint64
	decoded bool
}

// Run runs a soak and audits it. The error reports a soak that could not
// run; a run that breaks an invariant returns a Result with OK false.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bulkhead-chaos-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// The runtime's poller opens its descriptors once, on first use, and
	// keeps them: open it before the baseline so they do not count.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	baseFDs := countFDs()
	baseG := runtime.NumGoroutine()

	res := &Result{Calls: o.Calls, Workers: o.Workers, Callers: o.Callers, FaultRate: o.FaultRate, Seed: o.Seed,
		Faults: map[string]int{}, Outcomes: map[string]int{}}
	calls := make([]call, o.Calls)
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	faults := Faults()
	for i := range calls {
		c := &calls[i]
		c.fault = FaultNone
		if rng.Float64() < o.FaultRate {
			c.fault = faults[rng.IntN(len(faults))]
		}
		c.poison = rng.IntN(poisonKinds)
		res.Faults[string(c.fault)]++
	}

	cfg := bulkhead.Config{
		Command: o.Command, Args: o.Args, Env: append(os.Environ(), WorkerEnv+"="+dir),
		Workers:      o.Workers,
		Pipeline:     o.Pipeline,
		StartTimeout: 10 * time.Second, KillGrace: time.Second,
		TermGrace: 20 * time.Millisecond, DumpGrace: 2 * time.Second,
		StderrTail:      16 << 10,
		MaxMemory:       96 << 20,
		MonitorInterval: 5 * time.Millisecond,
		MaxCalls:        100, MaxCallsJitter: 50,
		QuarantineAfter: 3, QuarantineFor: time.Hour,
		Idempotent: []string{"idem"}, MaxReplays: 1,
		MaxQueue: o.Callers + 1,
		Limits:   bulkhead.Limits{CoreSize: -1},
		Logger:   o.Logger,
	}
	runCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	pool, err := bulkhead.New(runCtx, cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the pool: %w", err)
	}

	// Timeout stops the issuing of calls; calls already issued run to
	// their own deadlines (at most 30 s), and are all audited.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range o.Callers {
		wg.Go(func() {
			for runCtx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(calls) {
					return
				}
				do1(ctx, pool, uint64(i+1), &calls[i])
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-runCtx.Done():
		select {
		case <-finished:
		case <-time.After(time.Minute):
		}
	}
	res.Seconds = time.Since(start).Seconds()
	st := pool.Stats()
	res.QuarantinedFingerprints = len(pool.Quarantined())
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 30*time.Second)
	closeErr := pool.Close(closeCtx)
	closeCancel()
	// Close fails every call still waiting, so the callers end; one that
	// does not is counted as lost.
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
	}
	if closeErr != nil {
		return nil, fmt.Errorf("closing the pool: %w", closeErr)
	}
	res.WorkersStarted, res.Recycled, res.RecycledByReason = st.Started, st.Recycled, st.RecycledByReason
	res.MemoryKills, res.Hung, res.Replayed, res.Redispatched = st.MemoryKills, st.Hung, st.Replayed, st.Redispatched
	if res.Seconds > 0 {
		res.CallsPerSecond = float64(min(int(next.Load()), o.Calls)) / res.Seconds
	}

	starts, records, err := readJournals(dir, len(calls))
	if err != nil {
		return nil, err
	}
	res.JournalRecords = records
	res.Planned = o.Calls
	if n := int(min(next.Load(), int64(len(calls)))); n < len(calls) {
		// Cut short by Timeout: calls never issued are not audited.
		// Issued calls are a prefix, since each caller takes the next.
		res.Truncated = true
		res.Calls = n
		calls = calls[:n]
		for f := range res.Faults {
			res.Faults[f] = 0
		}
		for i := range calls {
			res.Faults[string(calls[i].fault)]++
		}
	}
	audit(res, calls, starts)
	res.LeakedFDs, res.LeakedGoroutines = settle(baseFDs, baseG)
	res.LeakedProcesses, res.Zombies = children()
	res.OK = !res.Truncated && res.AnsweredOnce == res.Calls && res.Lost == 0 && res.Duplicated == 0 && res.Misclassified == 0 &&
		res.LeakedFDs == 0 && res.LeakedGoroutines == 0 && res.LeakedProcesses == 0 && res.Zombies == 0
	return res, nil
}

// do1 runs call number key.
func do1(ctx context.Context, pool *bulkhead.Pool, key uint64, c *call) {
	method, deadline, arg := "call", 30*time.Second, int64(0)
	switch c.fault {
	case FaultHang:
		deadline = 50 * time.Millisecond
	case FaultFlaky:
		method = "idem"
	case FaultLeak:
		arg = 2048 // MiB: far past MaxMemory, so only the monitor stops it
	}
	cctx, cancel := context.WithTimeout(ctx, deadline)
	if c.fault == FaultPoison {
		cctx = bulkhead.WithFingerprint(cctx, "poison-"+strconv.Itoa(c.poison))
	}
	r, err := pool.Call(cctx, method, key, string(c.fault), arg)
	cancel()
	c.err = err
	if err == nil {
		c.decoded = r.Decode(&c.reply) == nil
	}
	c.answers.Add(1)
}

// readJournals counts the journaled starts of each call key.
func readJournals(dir string, n int) ([]int, int, error) {
	starts := make([]int, n+1)
	files, err := filepath.Glob(filepath.Join(dir, "journal-*"))
	if err != nil {
		return nil, 0, err
	}
	records := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, 0, err
		}
		if len(b)%recordSize != 0 {
			return nil, 0, fmt.Errorf("journal %s: %d bytes, not whole records", f, len(b))
		}
		for off := 0; off < len(b); off += recordSize {
			key := binary.LittleEndian.Uint64(b[off:])
			if binary.LittleEndian.Uint32(b[off+12:]) != recordMagic || key == 0 || key > uint64(n) {
				return nil, 0, fmt.Errorf("journal %s: bad record at %d", f, off)
			}
			starts[key]++
			records++
		}
	}
	return starts, records, nil
}

// audit compares what each caller was told with the fault it injected and
// with what the workers journaled.
func audit(res *Result, calls []call, starts []int) {
	for i := range calls {
		c := &calls[i]
		key := uint64(i + 1)
		answers := int(c.answers.Load())
		if answers == 0 {
			res.Lost++
			continue
		}
		if answers == 1 {
			res.AnsweredOnce++
		} else {
			res.Duplicated++
		}
		outcome, ok, want := classify(c, key)
		res.Outcomes[string(c.fault)+":"+outcome]++
		if outcome == "quarantined" {
			res.Quarantined++
		}
		got := starts[key]
		note := func(what string) {
			if len(res.Examples) < 10 {
				res.Examples = append(res.Examples, fmt.Sprintf("call %d (%s): %s; journal %d, want %d: %v", key, c.fault, what, got, want, c.err))
			}
		}
		switch {
		case !ok:
			res.Misclassified++
			note("misclassified as " + outcome)
		case got > want:
			res.Duplicated++
			note("run more often than reported")
		case got < want && c.err == nil:
			res.Lost++
			note("answered without running")
		case got < want:
			res.Misclassified++
			note("reported as started but never journaled")
		}
	}
}

// classify names the outcome a caller got, says whether it is the one the
// injected fault must produce, and how many journaled starts it implies.
func classify(c *call, key uint64) (outcome string, ok bool, starts int) {
	err := c.err
	var ce *bulkhead.CrashError
	var ca *bulkhead.CanceledError
	var qe *bulkhead.QuarantinedError
	crash := errors.As(err, &ce) && ce.Phase == bulkhead.PhaseCall
	switch {
	case err == nil:
		outcome = "ok"
	case crash:
		outcome = "crash"
	case errors.As(err, &ca):
		outcome = "canceled"
	case errors.As(err, &qe):
		outcome = "quarantined"
	default:
		outcome = fmt.Sprintf("%T", err)
	}
	replied := err == nil && c.decoded && c.reply == key
	protocol := crash && ce.Killed && errors.Is(err, wire.ErrProtocol)
	switch c.fault {
	case FaultNone:
		return outcome, replied, 1
	case FaultFlaky:
		return outcome, replied, 2
	case FaultSegv:
		return outcome, crash && ce.Signal == syscall.SIGSEGV && !ce.Killed, 1
	case FaultPoison:
		if qe != nil {
			return outcome, true, 0
		}
		return outcome, crash && ce.Signal == syscall.SIGSEGV && !ce.Killed, 1
	case FaultAbort:
		return outcome, crash && ce.Signal == syscall.SIGABRT, 1
	case FaultExit:
		return outcome, crash && ce.Signal == 0 && ce.ExitCode == ExitCode, 1
	case FaultGarbage:
		return outcome, protocol && !strings.Contains(ce.Reason, "larger than"), 1
	case FaultOversize:
		return outcome, protocol && strings.Contains(ce.Reason, "larger than"), 1
	case FaultCloseSock:
		return outcome, crash && ce.Killed && !protocol && strings.Contains(ce.Reason, "closed its connection"), 1
	case FaultLeak:
		return outcome, crash && ce.Limit == bulkhead.LimitMemory && errors.Is(err, bulkhead.ErrLimitExceeded), 1
	case FaultHang:
		if ca == nil || !errors.Is(err, context.DeadlineExceeded) {
			return outcome, false, 1
		}
		ca.Wait()
		if !ca.Started {
			return outcome, true, 0 // its deadline passed before a worker took it
		}
		return outcome, strings.Contains(ca.Stack, "goroutine "), 1
	}
	return outcome, false, 0
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// settle waits, briefly, for descriptors and goroutines to return to their
// baseline (exiting goroutines take a moment to be gone) and reports what
// is left above it.
func settle(fds, gs int) (int, int) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		df, dg := countFDs()-fds, runtime.NumGoroutine()-gs
		if (df <= 0 && dg <= 0) || time.Now().After(deadline) {
			return max(df, 0), max(dg, 0)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// children counts this process's live children and zombies.
func children() (live, zombies int) {
	for _, c := range proc.Children(os.Getpid()) {
		if c.Zombie() {
			zombies++
		} else {
			live++
		}
	}
	return live, zombies
}

// Summary writes a human-readable account of r.
func Summary(w io.Writer, r *Result) {
	verdict := "PASS"
	if !r.OK {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s: %d calls in %.1fs (%.0f/s), %d workers, %d callers, fault rate %.2f, seed %d\n",
		verdict, r.Calls, r.Seconds, r.CallsPerSecond, r.Workers, r.Callers, r.FaultRate, r.Seed)
	fmt.Fprintf(w, "answered once %d, lost %d, duplicated %d, misclassified %d\n", r.AnsweredOnce, r.Lost, r.Duplicated, r.Misclassified)
	fmt.Fprintf(w, "leaked: fds %d, goroutines %d, processes %d, zombies %d\n", r.LeakedFDs, r.LeakedGoroutines, r.LeakedProcesses, r.Zombies)
	fmt.Fprintf(w, "workers started %d, recycled %d %v, memory kills %d, hung %d, replayed %d, quarantined calls %d (%d fingerprints)\n",
		r.WorkersStarted, r.Recycled, r.RecycledByReason, r.MemoryKills, r.Hung, r.Replayed, r.Quarantined, r.QuarantinedFingerprints)
	for _, e := range r.Examples {
		fmt.Fprintln(w, "  ", e)
	}
}
