package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/chaos"
	"github.com/spf13/cobra"
)

// A chaos worker is this same program, re-executed by the soak's pool, and
// so is a soak driver, the process that runs the pool when the soak is
// isolated. Both are recognised in init, before any command runs, so that
// they do their part whatever the root command does with worker processes.
func init() {
	switch {
	case chaos.IsWorker():
		chaos.RunWorker() // exits
	case chaos.IsDriver():
		chaos.RunDriver() // exits
	}
}

// errSoakFailed reports a soak that ran but broke an invariant (exit 1).
var errSoakFailed = errors.New("chaos soak failed: see the audit above")

// chaosFlags are the chaos command's settings beyond chaos.Options.
type chaosFlags struct {
	o       chaos.Options
	iso     chaos.Isolation
	isolate bool
	asJSON  bool
}

func newChaosCmd() *cobra.Command {
	var cf chaosFlags
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run calls through a pool of workers that crash, hang, leak and lie, and audit every call",
		Long: `chaos runs --calls calls through a pool whose worker injects real faults:
SIGSEGV from a C NULL dereference, abort(), exit(), a hang in C past the
deadline, garbage on the socket, a frame claiming an oversized length, a
closed socket in a live process, memory growth past MaxMemory, poison
requests that always crash, and an idempotent call that crashes once.

--deadline-race makes every call race its deadline: each handler works for
--race-work (2ms), each deadline is drawn uniformly from --deadline-min to
--deadline-max (1.5ms to 2.5ms), and the faults are those whose outcome stays
exact when the deadline may win (segv, abort, exit, garbage, oversize,
closesock, poison).

--transport shm runs the frames over shared-memory rings, and adds ring
faults (--ring-faults): a worker that stores head = tail-1, a head beyond
tail+size, or a torn frame, each of which must be a protocol crash.

Each worker journals every call it starts and every fault it fires; the soak
then checks that every call was answered exactly once, none was lost or run
twice, every error names the fault that was injected (a crash only for a
fault that fired; Started exact), the pool's crash counters and log records
agree with what callers saw, and nothing leaked (descriptors, goroutines,
processes, zombies). The pool runs in a child process (--isolate, the
default): a dispatcher that crashes or hangs is a reported failure with its
stderr. Exit status 1 if any check fails.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cf.run(cmd) },
	}
	cf.define(cmd)
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error { return cf.validate(cmd) }
	return cmd
}

func (cf *chaosFlags) define(cmd *cobra.Command) {
	o := &cf.o
	f := cmd.Flags()
	f.IntVar(&o.Calls, "calls", 1000, fmt.Sprintf("calls to run (1 to %d)", chaos.MaxCalls))
	f.IntVar(&o.Workers, "workers", 4, "worker processes")
	f.IntVar(&o.Callers, "callers", 0, "concurrent callers (0: 2 per worker; 1 with --deadline-race)")
	f.Float64Var(&o.FaultRate, "fault-rate", 0.2, "share of calls that inject a fault (0 to 1)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the fault plan")
	f.IntVar(&o.Pipeline, "pipeline", 0, "calls queued on each busy worker (Config.Pipeline, 0 to 1024)")
	f.IntVar(&o.Spares, "spares", 0, "warm spare workers (Config.Spares, 0 to 64)")
	f.StringVar(&o.Transport, "transport", chaos.TransportSocket, "how frames travel: socket or shm")
	f.BoolVar(&o.RingFaults, "ring-faults", false, "with --transport shm: inject ring faults too (default true with shm)")
	f.BoolVar(&o.Race.Enabled, "deadline-race", false, "race every call's deadline against its reply")
	f.DurationVar(&o.Race.Work, "race-work", 2*time.Millisecond, "with --deadline-race: how long each handler works")
	f.DurationVar(&o.Race.DeadlineMin, "deadline-min", 1500*time.Microsecond, "with --deadline-race: the shortest deadline")
	f.DurationVar(&o.Race.DeadlineMax, "deadline-max", 2500*time.Microsecond, "with --deadline-race: the longest deadline")
	f.DurationVar(&o.SoftCancel, "soft-cancel", 0, "the pool's soft-cancel grace (Config.CancelGrace)")
	f.BoolVar(&o.Sandbox, "sandbox", false, "sandboxed workers (a cgroup each, the seccomp profile \"files\", no environment of the service's; needs root) and the sandbox faults: connect, execsh, setsid, ptrace, alloc past memory.max, environ")
	f.DurationVar(&o.Timeout, "timeout", time.Hour, "bound on the whole run; calls unanswered by then count as lost")
	f.BoolVar(&cf.isolate, "isolate", true, "run the pool in a child process, so that a dispatcher crash is reported")
	f.IntVar(&cf.iso.SegmentCalls, "segment-calls", 0, "with --isolate: calls per child process (0: all in one); a crash costs one segment")
	f.BoolVar(&cf.asJSON, "json", false, "print the audit as one JSON object")
	f.BoolVar(&o.Verbose, "verbose", false, "log the pool's records to stderr")
}

// validate refuses bad flag values (exit 2) and settles the defaults that
// depend on other flags.
func (cf *chaosFlags) validate(cmd *cobra.Command) error {
	o, f := &cf.o, cmd.Flags()
	switch {
	case o.Calls < 1 || o.Calls > chaos.MaxCalls:
		return usagef("--calls %d: want 1 to %d", o.Calls, chaos.MaxCalls)
	case o.Workers < 1 || o.Workers > 256:
		return usagef("--workers %d: want 1 to 256", o.Workers)
	case o.Callers < 0 || o.Callers > 4096:
		return usagef("--callers %d: want 0 to 4096", o.Callers)
	case o.Pipeline < 0 || o.Pipeline > 1024:
		return usagef("--pipeline %d: want 0 to 1024", o.Pipeline)
	case o.Spares < 0 || o.Spares > 64:
		return usagef("--spares %d: want 0 to 64", o.Spares)
	case !(o.FaultRate >= 0 && o.FaultRate <= 1):
		return usagef("--fault-rate %v: want 0 to 1", o.FaultRate)
	case o.Timeout <= 0:
		return usagef("--timeout %v: must be positive", o.Timeout)
	case o.Transport != chaos.TransportSocket && o.Transport != chaos.TransportShm:
		return usagef("--transport %q: want %s or %s", o.Transport, chaos.TransportSocket, chaos.TransportShm)
	case o.RingFaults && o.Transport != chaos.TransportShm:
		return usagef("--ring-faults needs --transport %s", chaos.TransportShm)
	case cf.iso.SegmentCalls < 0:
		return usagef("--segment-calls %d: must not be negative", cf.iso.SegmentCalls)
	case f.Changed("segment-calls") && !cf.isolate:
		return usagef("--segment-calls needs --isolate")
	case o.SoftCancel < 0:
		return usagef("--soft-cancel %v: must not be negative", o.SoftCancel)
	case o.Sandbox && f.Changed("deadline-race"):
		return usagef("--sandbox: the sandbox faults are not in the deadline race")
	}
	if err := cf.validateRace(cmd); err != nil {
		return err
	}
	o.NoFaults = o.FaultRate == 0
	if o.Transport == chaos.TransportShm && !f.Changed("ring-faults") {
		o.RingFaults = true
	}
	return nil
}

func (cf *chaosFlags) validateRace(cmd *cobra.Command) error {
	r, f := &cf.o.Race, cmd.Flags()
	if !r.Enabled {
		for _, name := range []string{"race-work", "deadline-min", "deadline-max"} {
			if f.Changed(name) {
				return usagef("--%s needs --deadline-race", name)
			}
		}
		return nil
	}
	switch {
	case r.Work < 0 || r.Work > chaos.MaxWork:
		return usagef("--race-work %v: want 0 to %v", r.Work, chaos.MaxWork)
	case r.DeadlineMin <= 0:
		return usagef("--deadline-min %v: must be positive", r.DeadlineMin)
	case r.DeadlineMax < r.DeadlineMin || r.DeadlineMax > chaos.MaxDeadline:
		return usagef("--deadline-max %v: want --deadline-min (%v) to %v", r.DeadlineMax, r.DeadlineMin, chaos.MaxDeadline)
	}
	return nil
}

func (cf *chaosFlags) run(cmd *cobra.Command) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cf.o.Command = exe
	var res *chaos.Result
	if cf.isolate {
		if cf.o.Verbose {
			cf.iso.Stderr = cmd.ErrOrStderr()
		}
		res, err = chaos.RunIsolated(cmd.Context(), cf.o, cf.iso)
	} else {
		if cf.o.Verbose {
			cf.o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
		}
		res, err = chaos.Run(cmd.Context(), cf.o)
	}
	if err != nil {
		return err
	}
	if cf.asJSON {
		if err := json.NewEncoder(cmd.OutOrStdout()).Encode(res); err != nil {
			return err
		}
	} else {
		chaos.Summary(cmd.OutOrStdout(), res)
	}
	if !res.OK {
		return errSoakFailed
	}
	return nil
}
