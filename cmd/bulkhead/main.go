// Command bulkhead is the bulkhead command line.
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
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr{err} })
	root.AddCommand(newStormCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "bulkhead:", err)
		var u usageErr
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
