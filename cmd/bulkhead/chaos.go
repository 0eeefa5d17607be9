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

// A chaos worker is this same program, re-executed by the soak's pool. It is
// recognised in init, before any command runs, so that it serves the chaos
// methods whatever the root command does with worker processes.
func init() {
	if chaos.IsWorker() {
		chaos.RunWorker() // exits
	}
}

// errSoakFailed reports a soak that ran but broke an invariant (exit 1).
var errSoakFailed = errors.New("chaos soak failed: see the audit above")

func newChaosCmd() *cobra.Command {
	var (
		o       chaos.Options
		asJSON  bool
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run calls through a pool of workers that crash, hang, leak and lie, and audit every call",
		Long: `chaos runs --calls calls through a pool whose worker injects real faults:
SIGSEGV from a C NULL dereference, abort(), exit(), a hang in C past the
deadline, garbage on the socket, a frame claiming an oversized length, a
closed socket in a live process, memory growth past MaxMemory, poison
requests that always crash, and an idempotent call that crashes once.

Each worker journals every call it starts; the soak then checks that every
call was answered exactly once, none was lost or run twice, every error names
the fault that was injected, and nothing leaked (descriptors, goroutines,
processes, zombies). Exit status 1 if any check fails.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Command = exe
			if verbose {
				o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			}
			res, err := chaos.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else {
				chaos.Summary(cmd.OutOrStdout(), res)
			}
			if !res.OK {
				return errSoakFailed
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Calls, "calls", 1000, fmt.Sprintf("calls to run (1 to %d)", chaos.MaxCalls))
	f.IntVar(&o.Workers, "workers", 4, "worker processes")
	f.IntVar(&o.Callers, "callers", 0, "concurrent callers (0: 2 per worker)")
	f.Float64Var(&o.FaultRate, "fault-rate", 0.2, "share of calls that inject a fault (0 to 1)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the fault plan")
	f.IntVar(&o.Pipeline, "pipeline", 0, "calls queued on each busy worker (Config.Pipeline, 0 to 1024)")
	f.DurationVar(&o.Timeout, "timeout", time.Hour, "bound on the whole run; calls unanswered by then count as lost")
	f.BoolVar(&asJSON, "json", false, "print the audit as one JSON object")
	f.BoolVar(&verbose, "verbose", false, "log the pool's records to stderr")
	cmd.PreRunE = func(*cobra.Command, []string) error {
		switch {
		case o.Calls < 1 || o.Calls > chaos.MaxCalls:
			return usagef("--calls %d: want 1 to %d", o.Calls, chaos.MaxCalls)
		case o.Workers < 1 || o.Workers > 256:
			return usagef("--workers %d: want 1 to 256", o.Workers)
		case o.Callers < 0 || o.Callers > 4096:
			return usagef("--callers %d: want 0 to 4096", o.Callers)
		case o.Pipeline < 0 || o.Pipeline > 1024:
			return usagef("--pipeline %d: want 0 to 1024", o.Pipeline)
		case !(o.FaultRate >= 0 && o.FaultRate <= 1):
			return usagef("--fault-rate %v: want 0 to 1", o.FaultRate)
		case o.Timeout <= 0:
			return usagef("--timeout %v: must be positive", o.Timeout)
		}
		return nil
	}
	return cmd
}
