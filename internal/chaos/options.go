package chaos

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Fault is a way a chaos call fails.
type Fault string

const (
	FaultNone      Fault = "none"      // succeeds, after a checksum in C
	FaultSegv      Fault = "segv"      // NULL dereference in C: SIGSEGV
	FaultAbort     Fault = "abort"     // abort() in C: SIGABRT
	FaultExit      Fault = "exit"      // exit(ExitCode) in C
	FaultHang      Fault = "hang"      // spins in C past the call's deadline
	FaultGarbage   Fault = "garbage"   // writes garbage where the dispatcher reads frames
	FaultOversize  Fault = "oversize"  // writes a frame header claiming 1 GiB
	FaultCloseSock Fault = "closesock" // closes its socket and stays alive
	FaultLeak      Fault = "leak"      // grows resident memory past MaxMemory, in C
	FaultPoison    Fault = "poison"    // one of a few requests that always crash
	FaultFlaky     Fault = "flaky"     // an idempotent call that crashes once, then succeeds when replayed
)

// ExitCode is the status of FaultExit.
const ExitCode = 3

// Faults returns every injected fault of the default soak, FaultNone
// excluded.
func Faults() []Fault {
	return []Fault{FaultSegv, FaultAbort, FaultExit, FaultHang, FaultGarbage, FaultOversize,
		FaultCloseSock, FaultLeak, FaultPoison, FaultFlaky}
}

// RaceFaults returns the faults injected in a deadline race: those whose
// outcome stays exact when the call's deadline may pass first. Not hang
// (every call races its deadline already), leak (the memory monitor needs
// tens of milliseconds), nor flaky (a replay cut short by the deadline
// reports Started false for a call whose first attempt ran).
func RaceFaults() []Fault {
	return []Fault{FaultSegv, FaultAbort, FaultExit, FaultGarbage, FaultOversize, FaultCloseSock, FaultPoison}
}

// Transports of Options.Transport.
const (
	TransportSocket = "socket"
	TransportShm    = "shm"
)

// Options configure a soak. Every field's zero value is usable except
// Command.
type Options struct {
	Calls     int     // calls to run; zero: 1000
	Workers   int     // pool size; zero: 4
	Callers   int     // concurrent callers; zero: 2 per worker (1 in a deadline race)
	FaultRate float64 // share of calls that inject a fault; zero: 0.2
	NoFaults  bool    // inject no fault at all (FaultRate is ignored)
	Seed      uint64  // seeds the fault plan; zero: 1
	Pipeline  int     // Config.Pipeline of the pool; zero: no pipelining
	Spares    int     // Config.Spares of the pool; zero: none
	// Transport is TransportSocket (zero: the same) or TransportShm.
	Transport string
	// RingFaults adds the ring faults (RingFaults) to the plan; only with
	// TransportShm.
	RingFaults bool
	// Race, when Enabled, makes every call race its deadline (Race).
	Race Race
	// Sandbox runs the workers sandboxed (a cgroup each, a seccomp
	// profile, no environment of the service's) and adds the sandbox
	// faults (SandboxFaults) to the plan.
	Sandbox bool
	// SoftCancel sets the pool's soft-cancel grace (Config.CancelGrace);
	// zero leaves it unset. Run fails if this build's Config has no such
	// field.
	SoftCancel time.Duration
	// Command and Args start a chaos worker: a program that calls
	// RunWorker when IsWorker reports true. Required.
	Command string
	Args    []string
	// Timeout bounds the whole run; calls unanswered by then are lost.
	// Zero: 1 hour.
	Timeout time.Duration
	// JournalDir is where the workers journal; it must exist and be
	// empty. Zero: a temporary directory of Run's, removed when it returns.
	// RunIsolated sets it, so that a driver that dies leaves nothing behind.
	JournalDir string
	// Verbose logs the pool's records to stderr when Logger is nil.
	Verbose bool
	Logger  *slog.Logger `json:"-"` // the pool's logger; zero: discarded (or stderr, Verbose)
}

// Race is the deadline race: every call's handler works (sleeps, deaf to
// its ctx) for Work, and its deadline is drawn uniformly from DeadlineMin to
// DeadlineMax, around Work, so that answers and deadlines arrive together.
type Race struct {
	Enabled     bool
	Work        time.Duration // zero: 2 ms
	DeadlineMin time.Duration // zero: 3/4 of Work
	DeadlineMax time.Duration // zero: 5/4 of Work
}

// Bounds on Options.
const (
	MaxCalls    = 100_000_000
	maxWorkers  = 256
	maxCallers  = 4096
	maxSpares   = 64
	MaxWork     = time.Second
	MaxDeadline = time.Minute
)

func (o *Options) defaults() error {
	errs := o.sizeDefaults()
	if o.FaultRate < 0 || o.FaultRate > 1 || o.FaultRate != o.FaultRate {
		errs = append(errs, fmt.Errorf("fault-rate = %v: want 0 to 1", o.FaultRate))
	} else if o.FaultRate == 0 && !o.NoFaults {
		o.FaultRate = 0.2
	}
	if o.NoFaults {
		o.FaultRate = 0
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	switch o.Transport {
	case "":
		o.Transport = TransportSocket
	case TransportSocket, TransportShm:
	default:
		errs = append(errs, fmt.Errorf("transport %q: want %s or %s", o.Transport, TransportSocket, TransportShm))
	}
	if o.RingFaults && o.Transport != TransportShm {
		errs = append(errs, errors.New("ring faults need the shm transport"))
	}
	if o.Race.Enabled {
		errs = append(errs, o.Race.defaults()...)
	}
	if o.Sandbox && o.Race.Enabled {
		errs = append(errs, errors.New("the sandbox faults are not in the deadline race"))
	}
	if o.SoftCancel < 0 {
		errs = append(errs, fmt.Errorf("soft-cancel = %v: must not be negative", o.SoftCancel))
	}
	if o.Command == "" {
		errs = append(errs, errors.New("the worker command is required"))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout = %v: must not be negative", o.Timeout))
	} else if o.Timeout == 0 {
		o.Timeout = time.Hour
	}
	return errors.Join(errs...)
}

func (o *Options) sizeDefaults() []error {
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
	if o.Spares < 0 || o.Spares > maxSpares {
		errs = append(errs, fmt.Errorf("spares = %d: want 0 to %d", o.Spares, maxSpares))
	}
	if o.Callers < 0 || o.Callers > maxCallers {
		errs = append(errs, fmt.Errorf("callers = %d: want 1 to %d", o.Callers, maxCallers))
	} else if o.Callers == 0 && o.Race.Enabled {
		o.Callers = o.Workers // more would mostly time out in the queue
	} else if o.Callers == 0 {
		o.Callers = 2 * o.Workers
	}
	return errs
}

func (r *Race) defaults() []error {
	var errs []error
	if r.Work < 0 || r.Work > MaxWork {
		errs = append(errs, fmt.Errorf("race work = %v: want 0 to %v", r.Work, MaxWork))
	} else if r.Work == 0 {
		r.Work = 2 * time.Millisecond
	}
	if r.DeadlineMin == 0 {
		r.DeadlineMin = r.Work * 3 / 4
	}
	if r.DeadlineMax == 0 {
		r.DeadlineMax = r.Work * 5 / 4
	}
	if r.DeadlineMin <= 0 || r.DeadlineMax > MaxDeadline || r.DeadlineMin > r.DeadlineMax {
		errs = append(errs, fmt.Errorf("race deadlines %v to %v: want 0 < min <= max <= %v", r.DeadlineMin, r.DeadlineMax, MaxDeadline))
	}
	return errs
}

// faultSet returns the faults the plan draws from.
func (o *Options) faultSet() []Fault {
	fs := Faults()
	if o.Race.Enabled {
		fs = RaceFaults()
	}
	if o.RingFaults {
		fs = append(fs, RingFaults()...)
	}
	if o.Sandbox {
		fs = append(fs, SandboxFaults()...)
	}
	return fs
}

// logger returns the pool's logger, before the record counter.
func (o *Options) logger() *slog.Logger {
	switch {
	case o.Logger != nil:
		return o.Logger
	case o.Verbose:
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}
