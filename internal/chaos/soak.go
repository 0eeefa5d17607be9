package chaos

import (
	"context"
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

const poisonKinds = 4

type call struct {
	fault    Fault
	poison   int
	deadline time.Duration // the call's ctx timeout
	answers  atomic.Int32
	err      error
	reply    uint64
	decoded  bool
	seen     seen // what err says, taken apart by the audit
}

// Run runs a soak in this process and audits it. The error reports a soak
// that could not run; a run that breaks an invariant returns a Result with
// OK false. RunIsolated runs it in a child process instead.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if o.Sandbox {
		// The service's secret, which FaultEnviron's worker must not see.
		if err := os.Setenv(SecretEnv, "hunter2"); err != nil {
			return nil, err
		}
	}
	dir := o.JournalDir
	if dir == "" {
		d, err := os.MkdirTemp("", "bulkhead-chaos-")
		if err != nil {
			return nil, fmt.Errorf("journal directory: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	// The runtime's poller opens its descriptors once, on first use, and
	// keeps them: open it before the baseline so they do not count.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	baseFDs := countFDs()
	baseG := runtime.NumGoroutine()

	res := newResult(&o)
	calls := plan(&o, res)
	counter := newRecordCounter(o.logger().Handler(), dir)
	cfg, err := poolConfig(&o, dir, counter)
	if err != nil {
		return nil, err
	}
	issued, err := runPool(ctx, &o, cfg, calls, res)
	if err != nil {
		return nil, err
	}
	var recs []crashRecord
	res.CrashRecords, recs = counter.snapshot()
	j, err := readJournals(dir, len(calls))
	if err != nil {
		return nil, err
	}
	res.JournalRecords = j.records
	if issued < len(calls) {
		// Cut short by Timeout: calls never issued are not audited.
		// Issued calls are a prefix, since each caller takes the next.
		res.Truncated = true
		res.Calls = issued
		calls = calls[:issued]
		clear(res.Faults)
		for i := range calls {
			res.Faults[string(calls[i].fault)]++
		}
	}
	audit(res, calls, j, o.Race.Enabled)
	crossCheckCrashes(res, calls, j, recs)
	res.LeakedFDs, res.LeakedGoroutines = settle(baseFDs, baseG)
	res.LeakedProcesses, res.Zombies = children()
	res.OK = res.ok()
	return res, nil
}

// plan draws each call's fault, poison kind and (in a race) deadline.
func plan(o *Options, res *Result) []call {
	calls := make([]call, o.Calls)
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	faults := o.faultSet()
	for i := range calls {
		c := &calls[i]
		c.fault = FaultNone
		if rng.Float64() < o.FaultRate {
			c.fault = faults[rng.IntN(len(faults))]
		}
		c.poison = rng.IntN(poisonKinds)
		c.deadline = deadlineOf(o, c.fault)
		if o.Race.Enabled {
			c.deadline = o.Race.DeadlineMin + time.Duration(rng.Int64N(int64(o.Race.DeadlineMax-o.Race.DeadlineMin)+1))
		}
		res.Faults[string(c.fault)]++
	}
	return calls
}

// deadlineOf is a call's timeout outside a deadline race.
func deadlineOf(o *Options, f Fault) time.Duration {
	switch f {
	case FaultHang:
		return 50 * time.Millisecond
	case FaultRingBack, FaultRingOver, FaultRingTorn:
		// A lie must be seen at once; a dispatcher that misses it would
		// otherwise hold a caller for the default's 30 s.
		return 2 * time.Second
	}
	return 30 * time.Second
}

func poolConfig(o *Options, dir string, counter *recordCounter) (bulkhead.Config, error) {
	cfg := bulkhead.Config{
		Command: o.Command, Args: o.Args, Env: append(os.Environ(), WorkerEnv+"="+dir),
		Workers:      o.Workers,
		Pipeline:     o.Pipeline,
		Spares:       o.Spares,
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
		Logger:   slog.New(counter),
	}
	if o.Transport == TransportShm {
		// A small ring, and little spinning: the machine's cores are
		// shared with the workers and everyone else.
		cfg.Transport, cfg.ShmRingSize, cfg.ShmSpin = bulkhead.TransportShm, 64<<10, 64
	}
	cfg.CancelGrace = o.SoftCancel
	if o.Sandbox {
		cfg.Sandbox = sandbox(dir)
		cfg.Env = []string{WorkerEnv + "=" + dir} // and none of the service's
	}
	return cfg, nil
}

// runPool starts the pool, runs the calls through it, closes it, and fills
// res with the pool's counters. It returns how many calls were issued.
func runPool(ctx context.Context, o *Options, cfg bulkhead.Config, calls []call, res *Result) (int, error) {
	runCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	pool, err := bulkhead.New(runCtx, cfg)
	if err != nil {
		return 0, fmt.Errorf("starting the pool: %w", err)
	}
	issued, finished := drive(ctx, runCtx, pool, o, calls)
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.CallsPerSecond = float64(issued) / res.Seconds
	}
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
		return 0, fmt.Errorf("closing the pool: %w", closeErr)
	}
	// After Close: every worker has been reaped and logged.
	st := pool.Stats()
	res.WorkersStarted, res.Recycled = st.Started, st.Recycled
	for k, v := range st.RecycledByReason {
		res.RecycledByReason[k] = v
	}
	res.MemoryKills, res.Hung, res.Replayed, res.Redispatched = st.MemoryKills, st.Hung, st.Replayed, st.Redispatched
	res.CallCrashes, res.IdleCrashes = st.CallCrashes, st.IdleCrashes
	return issued, nil
}

// drive runs the calls from o.Callers goroutines until every call is
// issued or runCtx ends, and waits for them, at most a minute past runCtx.
// finished is closed once every caller has returned.
func drive(ctx, runCtx context.Context, pool *bulkhead.Pool, o *Options, calls []call) (issued int, finished chan struct{}) {
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
				do1(ctx, pool, o, uint64(i+1), &calls[i])
			}
		})
	}
	finished = make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-runCtx.Done():
		select {
		case <-finished:
		case <-time.After(time.Minute):
		}
	}
	return int(min(next.Load(), int64(len(calls)))), finished
}

// do1 runs call number key.
func do1(ctx context.Context, pool *bulkhead.Pool, o *Options, key uint64, c *call) {
	method, arg, work := "call", int64(0), int64(0)
	switch c.fault {
	case FaultFlaky:
		method = "idem"
	case FaultLeak:
		arg = 2048 // MiB: far past MaxMemory, so only the monitor stops it
	case FaultAlloc:
		arg = 2048 // MiB: far past memory.max, so the kernel or the monitor stops it
	}
	if o.Race.Enabled {
		work = int64(o.Race.Work)
	}
	cctx, cancel := context.WithTimeout(ctx, c.deadline)
	if c.fault == FaultPoison {
		cctx = bulkhead.WithFingerprint(cctx, "poison-"+strconv.Itoa(c.poison))
	}
	r, err := pool.Call(cctx, method, key, string(c.fault), arg, work)
	cancel()
	c.err = err
	if err == nil {
		c.decoded = r.Decode(&c.reply) == nil
	}
	c.answers.Add(1)
}
