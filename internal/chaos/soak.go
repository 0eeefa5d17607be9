package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-go/bulkhead"
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
