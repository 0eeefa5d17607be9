package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/bulkhead-go/bulkhead/internal/sandbox"
	"github.com/spf13/cobra"
)

// newSandboxCmd is "bulkhead sandbox": tools for Config.Sandbox.
func newSandboxCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Tools for sandboxed workers (docs/SANDBOX.md)",
		Args:  noArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	cmd.AddCommand(newSuggestCmd())
	return cmd
}

// newSuggestCmd turns a log written in seccomp's log mode into a profile.
func newSuggestCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "suggest [LOG...]",
		Short: "Turn a seccomp log-mode run's log into a profile",
		Long: "suggest reads the dispatcher's log of a run with Sandbox.SeccompLog (slog's JSON or text\n" +
			"lines; from the files named, or stdin) and prints the profile that would have let the run\n" +
			"through: the profile it ran with and the system calls to allow on top of it.",
		RunE: func(c *cobra.Command, args []string) error {
			in, err := openLogs(args)
			if err != nil {
				return err
			}
			defer in.Close()
			s, err := sandbox.Suggest(in)
			if err != nil {
				return err
			}
			if asJSON {
				b, _ := json.Marshal(s)
				fmt.Fprintln(c.OutOrStdout(), string(b))
				return nil
			}
			printSuggestion(c.OutOrStdout(), s)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: profile, allow, records")
	return cmd
}

// openLogs is the files named, one after the other, or stdin.
func openLogs(names []string) (io.ReadCloser, error) {
	if len(names) == 0 {
		return io.NopCloser(os.Stdin), nil
	}
	var rs []io.Reader
	var fs []*os.File
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			for _, f := range fs {
				f.Close()
			}
			return nil, err
		}
		fs = append(fs, f)
		rs = append(rs, f, strings.NewReader("\n"))
	}
	return multiCloser{io.MultiReader(rs...), fs}, nil
}

type multiCloser struct {
	io.Reader
	fs []*os.File
}

func (m multiCloser) Close() error {
	for _, f := range m.fs {
		f.Close()
	}
	return nil
}

func printSuggestion(w io.Writer, s sandbox.Suggestion) {
	if s.Records == 0 {
		fmt.Fprintln(w, "no system call outside a seccomp profile in the log: the profile as it is lets the run through")
		return
	}
	quoted := make([]string, len(s.Allow))
	for i, n := range s.Allow {
		quoted[i] = strconv.Quote(n)
	}
	list := strings.Join(quoted, ", ")
	fmt.Fprintf(w, "%d system calls outside profile %q, from %d log records.\n\n", len(s.Allow), s.Profile, s.Records)
	fmt.Fprintf(w, "Go:\n\tbulkhead.Sandbox{Seccomp: %q, SeccompAllow: []string{%s}}\n\n", s.Profile, list)
	fmt.Fprintf(w, "daemon config ([pool.sandbox]):\n\tseccomp = %q\n\tseccomp_allow = [%s]\n", s.Profile, list)
}
