package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/conform"
	"github.com/spf13/cobra"
)

func newConformCmd() *cobra.Command {
	var o conform.Options
	var activateArgs string
	cmd := &cobra.Command{
		Use:   "conform [flags] -- WORKER-COMMAND [ARGS...]",
		Short: "Run a worker, in any language, against the wire protocol and print a pass/fail table",
		Long: `conform starts the worker program many times, once per check, and speaks the
protocol of docs/PROTOCOL.md to it as a dispatcher would, and as a broken one
might: the handshake, every message type, the frame and value limits (the
vectors of testdata/protocol/vectors.txt), deadlines, cancellation, the start
marker, quitting, the end of the stream, the idle timeout, a bad environment,
and the shared-memory transport when the worker takes it. With --classes, the
worker is a class server: its REGISTERs and RESUME, activation, object calls,
release, SUSPEND and the object frames' rules are checked too.

It knows nothing of the worker's methods unless told: --echo names a method
that returns its first argument, --sleep one that runs for its first argument
in milliseconds and stops when cancelled; the checks that need them are
skipped without them. The command exits 1 if any check fails.`,
		Example: `  bulkhead conform --echo echo --sleep sleep -- ./cworker`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 || len(args) == 0 {
				return usagef("want the worker's command after --: bulkhead conform [flags] -- WORKER-COMMAND [ARGS...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Timeout <= 0 {
				return usagef("--timeout must be positive, got %v", o.Timeout)
			}
			if activateArgs != "" {
				var err error
				if o.ActivateArgs, err = jsonArgs(activateArgs); err != nil {
					return usagef("--activate-args: %v", err)
				}
			}
			o.Command, o.Args = args[0], args[1:]
			rep, err := conform.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if err := rep.Print(cmd.OutOrStdout()); err != nil {
				return err
			}
			if n := rep.Failed(); n > 0 {
				return exitError{1, fmt.Errorf("%d checks failed", n)}
			}
			if len(rep.Results) == 0 {
				return exitError{1, errors.New("no check matched --only")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Echo, "echo", "", "a method that returns its first argument unchanged")
	f.StringVar(&o.Sleep, "sleep", "", "a method that runs for its first argument in milliseconds, stopping when cancelled")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Second, "how long to wait for the worker at each step")
	f.StringVar(&o.Only, "only", "", "run only the checks whose names contain this")
	f.BoolVar(&o.Service, "service", false, "the program is also the service when started without BULKHEAD_FD (one binary, service and worker): skip the check that it refuses to run then")
	f.BoolVar(&o.Classes, "classes", false, "the worker is a class server (PROTOCOL.md section 10): check its objects too")
	f.StringVar(&activateArgs, "activate-args", "", `the ACTIVATE arguments, a JSON array (integers stay integers; {"base64": "..."} is a byte string): '["gzopen", "/dev/null", "rb"]'`)
	return cmd
}

// jsonArgs decodes a JSON array of arguments, with integers as int64 (CBOR
// integers) rather than float64, and {"base64": "..."} as a byte string.
func jsonArgs(s string) ([]any, error) {
	d := json.NewDecoder(bytes.NewReader([]byte(s)))
	d.UseNumber()
	var args []any
	if err := d.Decode(&args); err != nil {
		return nil, fmt.Errorf("want a JSON array: %w", err)
	}
	if d.More() {
		return nil, errors.New("want one JSON array, got more after it")
	}
	for i, a := range args {
		if m, ok := a.(map[string]any); ok {
			s, ok := m["base64"].(string)
			if !ok || len(m) != 1 {
				return nil, fmt.Errorf("argument %d: an object must be {\"base64\": \"...\"}", i)
			}
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("argument %d: %w", i, err)
			}
			args[i] = b
			continue
		}
		n, ok := a.(json.Number)
		if !ok {
			continue
		}
		if v, err := n.Int64(); err == nil {
			args[i] = v
		} else if f, err := n.Float64(); err == nil {
			args[i] = f
		} else {
			return nil, fmt.Errorf("argument %d: %w", i, err)
		}
	}
	return args, nil
}
