package bulkhead

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/sandbox"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Config describes a pool of worker processes. Every field's zero value is
// usable, except Command. New copies the Config; the caller's is never
// modified.
type Config struct {
	// Command is the worker program: a path, or a name looked up in PATH.
	// Required.
	Command string

	// Args are the worker's arguments, not including the program name.
	// Zero value: none.
	Args []string

	// Env is added to the worker's environment, as "KEY=value" strings.
	// A worker does not inherit the dispatcher's environment, which may
	// hold a service's secrets: it gets PATH and the dispatcher's
	// BULKHEAD_* variables, then Env, whose entries override them, then the
	// BULKHEAD_* variables of docs/PROTOCOL.md. Pass os.Environ() (and
	// more) to hand it everything, as before this default changed.
	// Zero value: PATH and the BULKHEAD_* variables only.
	Env []string

	// Dir is the worker's working directory.
	// Zero value: the dispatcher's.
	Dir string

	// Workers is the shorthand for a fixed-size pool: it sets both
	// MinWorkers and MaxWorkers, and may not be combined with them.
	// Zero value: MinWorkers and MaxWorkers decide; if all three are zero,
	// runtime.NumCPU() workers, fixed.
	Workers int

	// MinWorkers is how many workers are kept running even when idle.
	// Zero value: none, if MaxWorkers is set: the pool then starts lazily,
	// with its first call.
	MinWorkers int

	// MaxWorkers bounds the workers running at once. Workers beyond
	// MinWorkers are started on demand, when calls queue, and stopped after
	// IdleTimeout. A worker being recycled may briefly overlap its
	// replacement.
	// Zero value: MinWorkers (or runtime.NumCPU() if that is zero too).
	MaxWorkers int

	// Spares is how many warm spares the pool keeps: workers started and
	// handshaken that take no calls. When a serving worker is lost (a
	// crash, a hang, a memory kill) or recycled, a spare is promoted at
	// once, so that no caller waits for a process to start, and a new
	// spare is started in the background (subject to the crash-loop
	// backoff; none while the pool is unhealthy). Spares are processes
	// beyond MaxWorkers; they are exempt from IdleTimeout and MaxLifetime
	// until promoted, and are started with BULKHEAD_IDLE_TIMEOUT_MS=0. A
	// spare that dies while waiting counts as an idle crash. New does not
	// wait for spares.
	// Zero value: no spare; a lost worker is replaced by starting a new
	// process while callers wait. At most 64.
	Spares int

	// IdleTimeout stops a worker that has had no call for this long, while
	// more than MinWorkers run.
	// Zero value: workers are never stopped for idleness.
	IdleTimeout time.Duration

	// ConcurrencyPerWorker caps the calls in flight on one worker. The
	// worker's own HELLO may lower it further.
	// Zero value: 1, one call at a time: native code that is not thread-safe
	// needs nothing more.
	ConcurrencyPerWorker int

	// Pipeline lets up to this many more calls wait in each busy worker's
	// socket, beyond ConcurrencyPerWorker, once the pool is at MaxWorkers
	// and calls are queueing. The worker then finds its next call already
	// there when it finishes one, and a saturated pool stops paying a
	// wake-up and a round trip between calls: aggregate throughput roughly
	// doubles (BENCHMARKS.md). The price: a queued call runs after the calls
	// ahead of it on its worker, even if another worker frees up first, so
	// it suits calls of similar, short duration. A queued call whose ctx
	// ends before it starts returns a *CanceledError at once and leaves the
	// worker running; the worker is sent CANCEL, and a worker built with
	// package worker skips a call whose deadline has passed. Only workers
	// that keep the start marker are pipelined, so that the calls queued on
	// a worker that dies are dispatched again: they never started.
	// Zero value: no pipelining; a worker is sent a call only when it has
	// room to run it.
	Pipeline int

	// StartTimeout bounds the time from spawn to HELLO.
	// Zero value: 10 seconds.
	StartTimeout time.Duration

	// KillGrace is how long a worker has to exit after QUIT, and again
	// after SIGTERM, before the next step (SIGKILL).
	// Zero value: 2 seconds.
	KillGrace time.Duration

	// TermGrace is how long a worker whose call passed its deadline (or
	// was canceled) has to exit after SIGTERM, before DumpSignal.
	// Zero value: 200 milliseconds.
	TermGrace time.Duration

	// CancelGrace is the soft cancel: how long a worker may go on with a
	// call whose caller's ctx ended before it is stopped. Call returns the
	// *CanceledError at once either way; with a grace, the worker is sent
	// CANCEL and keeps the call's slot until it answers (the answer is
	// dropped, and CanceledError.Wait reports it) or the grace runs out,
	// and only then is stopped as a hung worker is (TermGrace, DumpSignal,
	// DumpGrace). It suits callers that hang up for reasons of their own,
	// as an HTTP client does: they need not cost a worker each.
	//
	// Zero value: no grace. The worker is stopped at once, because a call
	// that outlives its caller is most often stuck in native code, which
	// CANCEL cannot reach, and a worker held for a grace is one the next
	// calls wait for. A grace also costs every call a goroutine switch: the
	// caller cannot read its own reply, since a caller blocked in read(2)
	// could not return at once.
	CancelGrace time.Duration

	// DumpSignal is sent to a hung worker that ignored SIGTERM, so that it
	// prints its stacks before it is killed: SIGQUIT makes a Go worker
	// print every goroutine's stack and exit. The tail of what it prints
	// is attached to the call's *CanceledError and to the log.
	// Zero value: SIGQUIT.
	DumpSignal syscall.Signal

	// DumpGrace is how long a worker has, after DumpSignal, to print its
	// stacks and exit before SIGKILL.
	// Zero value: 1 second.
	DumpGrace time.Duration

	// MaxFrameSize bounds every message in both directions, in bytes.
	// Zero value: 16 MiB. At most 1 GiB.
	MaxFrameSize int

	// StderrTail is how many bytes of each worker's stderr (and stdout)
	// are kept for crash reports, in all: the first half of the budget
	// keeps the first bytes the worker wrote, the second half the latest,
	// and a line "... [N bytes elided] ..." stands for what was dropped
	// between them. Both ends matter: a Go runtime crash report starts with
	// the signal and the goroutine that was in C and goes on for kilobytes
	// of other stacks, while a program that exits with a message ends with
	// it. A worker that writes much before it crashes pushes the start of
	// its crash report out of the head: give it more.
	// Zero value: 4 KiB. At most 1 MiB.
	StderrTail int

	// MaxRedispatch bounds how many times one call that never started is
	// sent to another worker after its worker died under it. A call that
	// was queued behind another that had started (Config.Pipeline) is a
	// bystander of that crash and does not count.
	// Zero value: 3.
	MaxRedispatch int

	// Transport is how frames travel once a worker has said HELLO:
	// TransportSocket (the zero value), or TransportShm, shared-memory
	// pipes with futex doorbells, for callers who will spend CPU on
	// spinning to cut latency. A worker that does not support shared
	// memory stays on the socket.
	Transport Transport

	// ForkServer starts the worker program once more, as a fork server
	// (BULKHEAD_FORKSERVER_FD, served by the C SDK), and replaces workers
	// by asking it for a clone instead of an exec: the program's
	// initialisation (a library loaded and set up) is paid once. A forked
	// worker keeps every guarantee of an exec'd one: it is this process's
	// child, in its own process group, with its own parent-death signal,
	// start marker and output. Any start while the fork server is down is
	// exec'd; a fork server that dies is restarted. A clone gets the
	// Sandbox's seccomp filter, Landlock and cgroup (it applies the first
	// two itself before HELLO; docs/SANDBOX.md); with User, SHA256 or a
	// namespace, which only an exec applies, New fails closed with a
	// *StartError whose Protection is "fork server". The program must
	// serve it: a Go SDK worker does not.
	// Zero value: every worker is exec'd.
	ForkServer bool

	// ShmRingSize is the bytes of each direction's ring with TransportShm.
	// Zero value: 1 MiB. A power of two from 4 KiB to 64 MiB.
	ShmRingSize int

	// SlowCall is how long a call may run before the pool logs it as slow,
	// once, with where the worker's threads are: their stacks scanned from
	// /proc and the worker's memory (no signal, no ptrace), and the worker's
	// own STACK frame if its HELLO offers one (the Go SDK's Run does). The
	// call is left running, unchanged. Zero value: no slow-call log.
	SlowCall time.Duration

	// CallUsage asks each worker for its resource usage during every call:
	// Reply.Usage then gives the CPU time of the thread that ran the call
	// and the worker's peak resident memory during it (a USAGE frame,
	// PROTOCOL.md section 3, from workers that support it, as the Go SDK
	// does). It costs the worker a few system calls and a /proc read per
	// call (BenchmarkNullCallUsage). Zero value: not asked.
	CallUsage bool

	// NoCallTimings skips timing each call for Pool.Metrics' duration
	// histograms: two clock reads, about 60 ns a call (BenchmarkCallMetrics),
	// under 1% of a null call on the socket but a larger share of one on
	// shared memory. Calls are still counted by outcome.
	// Zero value: every call is timed.
	NoCallTimings bool

	// ShmSpin is how many times a side polls an empty ring before it
	// sleeps in futex(2), with TransportShm.
	// Zero value: 20000 (tens of microseconds on current hardware).
	ShmSpin int

	// RestartDelay is the first pause before starting a worker after a
	// start-up failure or an idle crash; it doubles with each further
	// failure in a row (crash-loop backoff), up to MaxRestartDelay. A call
	// that completes resets it.
	// Zero value: 10 milliseconds.
	RestartDelay time.Duration

	// MaxRestartDelay caps the crash-loop backoff; it is also the pause
	// between half-open probes of an unhealthy pool.
	// Zero value: 1000 times RestartDelay.
	MaxRestartDelay time.Duration

	// UnhealthyAfter is how many start-up failures and idle crashes, with
	// no completed call between them and all within CrashLoopWindow, make
	// the pool unhealthy: calls then fail at once with *UnhealthyError
	// while one probe worker at a time is tried; the pool heals by itself
	// when one starts. Crashes during calls do not count: they are the
	// calls' own (see QuarantineAfter).
	// Zero value: 5. At most 1000.
	UnhealthyAfter int

	// CrashLoopWindow is the window of UnhealthyAfter.
	// Zero value: 1 minute.
	CrashLoopWindow time.Duration

	// MaxQueue bounds the calls waiting for a worker. A call beyond it
	// fails at once with *OverloadedError, so that an overloaded pool
	// sheds load instead of growing memory without bound.
	// Zero value: 1024 per MaxWorkers. At most 1<<20.
	MaxQueue int

	// QueueTimeout bounds the time a call waits for a worker; it then fails
	// with *OverloadedError.
	// Zero value: only the call's ctx bounds the wait.
	QueueTimeout time.Duration

	// MaxCalls recycles a worker after it has served this many calls
	// (drain and replace: a replacement is started first, and the worker
	// finishes its calls in flight, so recycling never fails a call).
	// Zero value: never recycled for its call count.
	MaxCalls int

	// MaxCallsJitter adds a random 0 to MaxCallsJitter calls to each
	// worker's MaxCalls, so that workers started together are not all
	// recycled together.
	// Zero value: no jitter.
	MaxCallsJitter int

	// MaxLifetime recycles a worker this long after it started.
	// Zero value: never recycled for age.
	MaxLifetime time.Duration

	// MaxMemory is the most resident memory (RSS, bytes) a worker may use.
	// A worker found above it while running a call is killed, and the call
	// fails with a *CrashError whose Limit is LimitMemory; an idle worker
	// above it is recycled. Checked every MonitorInterval, also while calls
	// run.
	// Zero value: no limit.
	MaxMemory int64

	// MonitorInterval is how often the pool's monitor checks MaxMemory,
	// MaxLifetime and IdleTimeout. The monitor runs only if one is set.
	// Zero value: 100 milliseconds.
	MonitorInterval time.Duration

	// QuarantineAfter enables poison-request quarantine: after this many
	// worker deaths attributed to calls with one fingerprint within
	// QuarantineWindow, calls with that fingerprint fail at once with
	// *QuarantinedError for QuarantineFor. A call's fingerprint is its
	// method and a hash of its arguments, or method and the key given with
	// WithFingerprint.
	// Zero value: no quarantine, and no fingerprinting cost.
	QuarantineAfter int

	// QuarantineWindow is the window of QuarantineAfter.
	// Zero value: 10 minutes.
	QuarantineWindow time.Duration

	// QuarantineFor is how long a fingerprint stays quarantined.
	// Zero value: 10 minutes.
	QuarantineFor time.Duration

	// QuarantineMax bounds the fingerprints tracked (dead or quarantined).
	// Zero value: 1024. At most 1<<20.
	QuarantineMax int

	// Idempotent lists the methods that are safe to run more than once. A
	// call to one of them whose worker crashed under it is replayed on
	// another worker, up to MaxReplays times. Other methods are never
	// replayed once started.
	// Zero value: none.
	Idempotent []string

	// MaxReplays bounds the replays of one idempotent call.
	// Zero value: 1. At most 100.
	MaxReplays int

	// Limits are resource limits set on each worker at spawn.
	// Zero value: the dispatcher's own limits are inherited.
	Limits Limits

	// Sandbox is what each worker is kept from doing (docs/SANDBOX.md);
	// a protection that cannot be applied stops the worker from starting.
	// Zero value: no protection beyond the minimal environment (Env).
	Sandbox Sandbox

	// Logger receives one structured record per worker start failure,
	// crash and replacement.
	// Zero value: slog.Default().
	Logger *slog.Logger
}

// Transport selects how frames travel between dispatcher and worker.
type Transport int

const (
	TransportSocket Transport = iota // a Unix stream socket
	TransportShm                     // shared-memory pipes (PROTOCOL.md section 9)
)

func (t Transport) String() string {
	switch t {
	case TransportSocket:
		return "socket"
	case TransportShm:
		return "shm"
	}
	return fmt.Sprintf("Transport(%d)", int(t))
}

// Bounds on Config values, so that a typo cannot ask for a million workers.
const (
	maxWorkers     = 4096
	maxQueueBound  = 1 << 20
	maxConcurrency = wire.MaxConcurrency
	maxPipeline    = 1024
	maxStderrTail  = 1 << 20
	maxSpares      = 64
)

// settings is a validated Config with defaults filled in.
type settings struct {
	Config
	path       string
	maxFrame   uint32
	min, max   int                 // worker counts
	idempotent map[string]struct{} // from Idempotent
	sandbox    *sandbox.Plan       // from Sandbox
	// fork is the pool's fork server's Fork (Config.ForkServer), or nil.
	fork func(env []string, files []*os.File) (int, error)
	// syms is the program's function symbols, read when a C SDK
	// worker's report first needs them (forensics_c.go).
	syms *elfSymbols
}

// Validate reports every field of c that New would refuse, without
// starting anything: for a configuration checked ahead of use (bulkhead
// serve --check).
func (c Config) Validate() error {
	s, err := c.settings()
	if err != nil {
		return err
	}
	return s.forkRefusal()
}

func (c *Config) settings() (settings, error) {
	s := settings{Config: *c}
	// Copy the slices, so that later changes by the caller do not reach us.
	s.Args = append([]string(nil), c.Args...)
	if c.Env != nil {
		s.Env = append([]string(nil), c.Env...)
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("bulkhead: Config."+format, a...)) }
	if c.Command == "" {
		bad("Command is required")
	} else if p, err := exec.LookPath(c.Command); err != nil {
		bad("Command: %w", err)
	} else {
		s.path = p
		s.syms = &elfSymbols{path: p, privateTmp: c.Sandbox.PrivateTmp}
	}
	s.sizes(bad)
	if c.Spares < 0 || c.Spares > maxSpares {
		bad("Spares = %d: want 0 to %d", c.Spares, maxSpares)
	}
	if c.ConcurrencyPerWorker < 0 || c.ConcurrencyPerWorker > maxConcurrency {
		bad("ConcurrencyPerWorker = %d: want 0 (1) to %d", c.ConcurrencyPerWorker, maxConcurrency)
	} else if c.ConcurrencyPerWorker == 0 {
		s.ConcurrencyPerWorker = 1
	}
	if c.Pipeline < 0 || c.Pipeline > maxPipeline {
		bad("Pipeline = %d: want 0 (off) to %d", c.Pipeline, maxPipeline)
	}
	s.durations(bad)
	s.transport(bad)
	s.policies(bad)
	if err := s.Limits.validate(); err != nil {
		bad("Limits: %w", err)
	}
	if plan, err := s.Sandbox.plan(); err != nil {
		bad("Sandbox: %w", err)
	} else {
		s.sandbox = plan
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return s, errors.Join(errs...)
}

// durations resolves every duration to its default, and refuses negative
// ones.
func (s *settings) durations(bad func(string, ...any)) {
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"StartTimeout", &s.StartTimeout, 10 * time.Second},
		{"KillGrace", &s.KillGrace, 2 * time.Second},
		{"RestartDelay", &s.RestartDelay, 10 * time.Millisecond},
		{"TermGrace", &s.TermGrace, 200 * time.Millisecond},
		{"DumpGrace", &s.DumpGrace, time.Second},
		{"CrashLoopWindow", &s.CrashLoopWindow, time.Minute},
		{"MonitorInterval", &s.MonitorInterval, 100 * time.Millisecond},
		{"QuarantineWindow", &s.QuarantineWindow, 10 * time.Minute},
		{"QuarantineFor", &s.QuarantineFor, 10 * time.Minute},
		{"IdleTimeout", &s.IdleTimeout, 0},
		{"QueueTimeout", &s.QueueTimeout, 0},
		{"CancelGrace", &s.CancelGrace, 0},
		{"SlowCall", &s.SlowCall, 0},
		{"MaxLifetime", &s.MaxLifetime, 0},
		{"MaxRestartDelay", &s.MaxRestartDelay, 0},
	}
	for _, d := range durations {
		if *d.v < 0 {
			bad("%s = %v: must not be negative", d.name, *d.v)
		} else if *d.v == 0 {
			*d.v = d.def
		}
	}
}

// transport resolves the frame limit, the stderr budget, the redispatch
// budget and the transport's settings.
func (s *settings) transport(bad func(string, ...any)) {
	c := &s.Config
	switch {
	case c.MaxFrameSize < 0 || c.MaxFrameSize > wire.MaxMaxFrame:
		bad("MaxFrameSize = %d: want 0 (16 MiB) to %d", c.MaxFrameSize, wire.MaxMaxFrame)
	case c.MaxFrameSize > 0 && c.MaxFrameSize < 1024:
		bad("MaxFrameSize = %d: want at least 1024", c.MaxFrameSize)
	case c.MaxFrameSize == 0:
		s.maxFrame = wire.DefaultMaxFrame
	default:
		s.maxFrame = uint32(c.MaxFrameSize)
	}
	if c.StderrTail < 0 || c.StderrTail > maxStderrTail {
		bad("StderrTail = %d: want 0 (4 KiB) to %d", c.StderrTail, maxStderrTail)
	} else if c.StderrTail == 0 {
		s.StderrTail = 4 << 10
	}
	if c.MaxRedispatch < 0 || c.MaxRedispatch > 100 {
		bad("MaxRedispatch = %d: want 0 (3) to 100", c.MaxRedispatch)
	} else if c.MaxRedispatch == 0 {
		s.MaxRedispatch = 3
	}
	switch {
	case c.Transport != TransportSocket && c.Transport != TransportShm:
		bad("Transport = %d: want TransportSocket or TransportShm", c.Transport)
	case c.ShmRingSize < 0 || c.ShmRingSize > 64<<20 || (c.ShmRingSize != 0 && (c.ShmRingSize < 4096 || c.ShmRingSize&(c.ShmRingSize-1) != 0)):
		bad("ShmRingSize = %d: want 0 (1 MiB) or a power of two from 4096 to %d", c.ShmRingSize, 64<<20)
	case c.ShmSpin < 0 || c.ShmSpin > 1<<30:
		bad("ShmSpin = %d: want 0 (20000) to %d", c.ShmSpin, 1<<30)
	}
	if s.ShmRingSize == 0 {
		s.ShmRingSize = 1 << 20
	}
	if s.ShmSpin == 0 {
		s.ShmSpin = 20000
	}
	if s.MaxRestartDelay == 0 {
		s.MaxRestartDelay = 1000 * s.RestartDelay
	} else if s.MaxRestartDelay < s.RestartDelay {
		bad("MaxRestartDelay = %v: want at least RestartDelay (%v)", s.MaxRestartDelay, s.RestartDelay)
	}
}

// sizes resolves Workers, MinWorkers and MaxWorkers into s.min and s.max.
func (s *settings) sizes(bad func(string, ...any)) {
	inRange := func(name string, v int) bool {
		if v < 0 || v > maxWorkers {
			bad("%s = %d: want 0 to %d", name, v, maxWorkers)
			return false
		}
		return true
	}
	if !inRange("Workers", s.Workers) || !inRange("MinWorkers", s.MinWorkers) || !inRange("MaxWorkers", s.MaxWorkers) {
		return
	}
	switch {
	case s.Workers > 0 && (s.MinWorkers > 0 || s.MaxWorkers > 0):
		bad("Workers = %d: set either Workers or MinWorkers/MaxWorkers, not both", s.Workers)
	case s.Workers > 0:
		s.min, s.max = s.Workers, s.Workers
	case s.MaxWorkers > 0:
		s.min, s.max = s.MinWorkers, s.MaxWorkers
		if s.min > s.max {
			bad("MinWorkers = %d: more than MaxWorkers (%d)", s.min, s.max)
		}
	case s.MinWorkers > 0:
		s.min, s.max = s.MinWorkers, s.MinWorkers
	default:
		s.min, s.max = runtime.NumCPU(), runtime.NumCPU()
	}
	s.Workers = s.max
}

// policies validates the recycling, backpressure, crash-loop, quarantine
// and replay settings.
func (s *settings) policies(bad func(string, ...any)) {
	ints := []struct {
		name    string
		v       *int
		def, hi int
	}{
		{"UnhealthyAfter", &s.UnhealthyAfter, 5, 1000},
		{"MaxQueue", &s.MaxQueue, min(1024*max(s.max, 1), maxQueueBound), maxQueueBound},
		{"MaxCalls", &s.MaxCalls, 0, 1 << 40},
		{"MaxCallsJitter", &s.MaxCallsJitter, 0, 1 << 40},
		{"QuarantineAfter", &s.QuarantineAfter, 0, 1000},
		{"QuarantineMax", &s.QuarantineMax, 1024, 1 << 20},
		{"MaxReplays", &s.MaxReplays, 1, 100},
	}
	for _, n := range ints {
		if *n.v < 0 || *n.v > n.hi {
			bad("%s = %d: want 0 to %d", n.name, *n.v, n.hi)
		} else if *n.v == 0 {
			*n.v = n.def
		}
	}
	if s.MaxMemory < 0 {
		bad("MaxMemory = %d: must not be negative", s.MaxMemory)
	}
	if s.DumpSignal < 0 || s.DumpSignal > 64 {
		bad("DumpSignal = %d: not a signal", int(s.DumpSignal))
	} else if s.DumpSignal == 0 {
		s.DumpSignal = syscall.SIGQUIT
	}
	if len(s.Idempotent) > 0 {
		s.idempotent = make(map[string]struct{}, len(s.Idempotent))
		for _, m := range s.Idempotent {
			if len(m) == 0 || len(m) > wire.MaxMethodBytes {
				bad("Idempotent: method name of %d bytes", len(m))
			}
			s.idempotent[m] = struct{}{}
		}
		s.Idempotent = append([]string(nil), s.Idempotent...)
	}
}

// monitored reports whether the pool needs its monitor goroutine.
func (s *settings) monitored() bool {
	return s.MaxMemory > 0 || s.MaxLifetime > 0 || s.IdleTimeout > 0
}
