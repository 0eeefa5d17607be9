// Command bulkhead runs bulkhead's demonstrations and its chaos soak.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "bulkhead",
		Short:         "Call crash-prone native code in worker processes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newChaosCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "bulkhead:", err)
		if errors.Is(err, errSoakFailed) {
			os.Exit(1)
		}
		os.Exit(2) // a bad command line
	}
}
