// Command bulkhead shows bulkhead at work.
//
//	go run ./cmd/bulkhead demo            # a pool of crashing workers under load
//	go run ./cmd/bulkhead demo --help     # its flags
//
// The binary is also its own worker program: the demo starts a pool whose
// workers are this same executable, re-executed with the hidden "worker"
// subcommand, so that nothing needs building first. Only those worker
// processes ever call the crash-prone C code.
//
// Exit status: 0 on success, 1 when a run failed its checks or could not
// run, 2 on a bad command line.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// newRootCmd builds the command tree. Each subcommand is one AddCommand
// line, built by its own file's newXCmd.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "bulkhead",
		Short: "Call crash-prone native code from Go in worker processes",
		Long: "bulkhead runs native code that may segfault, abort, exit or hang in worker processes,\n" +
			"so that a crash costs one call, never the service. This command demonstrates it.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE:          func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return badUsage{err} })
	root.AddCommand(newDemoCmd())
	root.AddCommand(newChaosCmd())
	root.AddCommand(newWorkerCmd())
	root.AddCommand(newDemoNodeCmd())
	root.AddCommand(newStormCmd())
	root.AddCommand(newServeCmd())
	root.AddCommand(newCounterServerCmd())
	root.AddCommand(newCallCmd())
	root.AddCommand(newStatusCmd())
	root.AddCommand(newConformCmd())
	root.AddCommand(newTopCmd())
	root.AddCommand(newGenCmd())
	root.AddCommand(newSandboxCmd())
	argsAreUsage(root)
	return root
}

// argsAreUsage makes every command's positional-argument errors usage
// errors (exit status 2), whatever validator the command chose.
func argsAreUsage(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				var bu badUsage
				if errors.As(err, &bu) {
					return err
				}
				return badUsage{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		argsAreUsage(sub)
	}
}

// execute runs the command line args and returns the exit status.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	for _, line := range errorLines(err) {
		fmt.Fprintf(stderr, "bulkhead: %s\n", line)
	}
	var h hinted
	if errors.As(err, &h) {
		fmt.Fprintf(stderr, "hint: %s\n", h.hint)
	}
	var bu badUsage
	if errors.As(err, &bu) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return 2
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// errorText is err's message without the "bulkhead: " prefixes of the
// library's errors: the CLI prints its own once, and a wrapped chain would
// otherwise say "bulkhead: bulkhead: ..." or "pool "u": bulkhead: ...".
func errorText(err error) string {
	msg := strings.TrimPrefix(err.Error(), libPrefix)
	return strings.ReplaceAll(msg, ": "+libPrefix, ": ")
}

// errorLines are err's messages, one per error that errors.Join joined
// (a config's report of several): each line, prefixed, reads on its own.
func errorLines(err error) []string {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []string{errorText(err)}
	}
	var lines []string
	for _, e := range j.Unwrap() {
		lines = append(lines, errorLines(e)...)
	}
	return lines
}

// libPrefix starts every error message of the bulkhead packages.
const libPrefix = "bulkhead: "

// badUsage is a bad command line: exit status 2. Every subcommand returns
// its flag-value errors as one (usagef).
type badUsage struct{ err error }

func (e badUsage) Error() string { return e.err.Error() }
func (e badUsage) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return badUsage{fmt.Errorf(format, a...)} }

// exitError carries a specific exit status for an error already explained
// to the user; any other error returned by a command exits 1.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// hinted is an error with advice, printed after it.
type hinted struct {
	err  error
	hint string
}

func (e hinted) Error() string { return e.err.Error() }
func (e hinted) Unwrap() error { return e.err }

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return usagef("%q takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}
