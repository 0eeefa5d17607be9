package main

import (
	"github.com/bulkhead-go/bulkhead/examples/crashy"
	"github.com/spf13/cobra"
)

// workerArg is the hidden subcommand with which the CLI re-executes itself
// as a crashy worker; see workerConfig in demo.go.
const workerArg = "worker"

// newWorkerCmd is the worker side of the demo. It is hidden: a pool starts
// it, with its socket and options in the environment (crashy.Options), and
// it refuses to run otherwise (exit status 78). It never returns.
func newWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:                workerArg,
		Short:              "Serve as a crashy worker (started by the demo's pool)",
		Hidden:             true,
		DisableFlagParsing: true,
		Args:               noArgs,
		Run:                func(*cobra.Command, []string) { crashy.Main() },
	}
}
