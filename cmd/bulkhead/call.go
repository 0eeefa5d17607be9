package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/spf13/cobra"
)

// newCallCmd is `bulkhead call`: one call of a daemon's pool, or calls of
// an object of one of its classes (--class, call_object.go).
func newCallCmd() *cobra.Command {
	var (
		class, ctor string
		timeout     time.Duration
		to          = target{clientID: "bulkhead call"}
	)
	cmd := &cobra.Command{
		Use: "call (--socket S | --nats URL [--nats-prefix P] [--nats-creds F]) [--timeout D] POOL METHOD [JSON-ARGS...]\n" +
			"  call (--socket S | --nats URL) --class CLASS [--new JSON-ARRAY] METHOD [JSON-ARGS...] [, METHOD [JSON-ARGS...]]...",
		Short: "Call a method of a daemon's or a cluster's pool or of an object, and print the result as JSON",
		Long: "call sends one call to a pool of `bulkhead serve` and prints its result as JSON. Each\n" +
			"argument is a JSON value: a number without a fraction or exponent is an integer (int64, or\n" +
			"uint64 above that; larger ones are refused), others are floats, strings are text. Flags go\n" +
			"before POOL: what follows POOL is arguments, so -5 needs no --. @FILE is the file's\n" +
			"contents as a byte string (@- reads stdin). A byte string in the result prints as base64.\n" +
			"A remote failure prints the typed error as JSON and exits 1.\n\n" +
			"--socket calls one daemon; --nats calls a cluster (`bulkhead serve --nats`) through its NATS\n" +
			"server, as client.DialNATS does: the call goes to a node with a free worker, and elsewhere if\n" +
			"that node is lost before it starts the call. Over NATS the arguments and the result must\n" +
			"each fit the NATS server's max_payload (1 MiB by default).\n\n" +
			"With --class, call creates an object of CLASS (create_instance, with the elements of --new\n" +
			"as the constructor's arguments: a generated handle class takes the constructor's C name\n" +
			"first, --new '[\"gzopen\", \"/tmp/x.gz\", \"wb\"]'), calls its methods in order (a lone \",\"\n" +
			"separates the calls), prints each result on a line, and releases the object.",
		Args: func(_ *cobra.Command, args []string) error {
			if class != "" && len(args) < 1 {
				return usagef("want METHOD [JSON-ARGS...] after --class, got no arguments")
			}
			if class == "" && len(args) < 2 {
				return usagef("want POOL METHOD [JSON-ARGS...], got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if err := to.check(); err != nil {
				return err
			}
			if class != "" {
				return objectCmd(c, to, timeout, class, ctor, args)
			}
			if ctor != "" {
				return usagef("--new goes with --class")
			}
			vals, err := callArgs(args[2:], c.InOrStdin())
			if err != nil {
				return err
			}
			err = runCall(c.Context(), c.OutOrStdout(), to, timeout, args[0], args[1], vals)
			if errors.Is(err, client.ErrPermission) {
				return hinted{err, fmt.Sprintf("pool %q does not exist, or your uid %d is not in its allow_uids, allow_gids or allow_users;\n"+
					"  %s lists the pools you may use", args[0], os.Getuid(), to.where())}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&to.socket, "socket", "", "the daemon's socket")
	to.natsFlags(cmd, "call a cluster through this NATS server instead (nats://host:port, comma-separated for several)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "the call's deadline (with --class: all of them)")
	cmd.Flags().StringVar(&class, "class", "", "call an object of this class instead of a pool")
	cmd.Flags().StringVar(&ctor, "new", "", "with --class: the constructor's arguments, a JSON array")
	// Flags end at POOL, so that a negative number is an argument: call
	// --socket S demo echo -5.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// callArgs are a call's command-line arguments as its values.
func callArgs(rest []string, stdin io.Reader) ([]any, error) {
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:] // the old way to pass -5; flags end at POOL now
	}
	var vals []any
	for i, a := range rest {
		v, err := callArg(a, stdin)
		if err != nil {
			if strings.HasPrefix(a, "--") {
				return nil, usagef("argument %d, %q: %v (call's flags go before POOL)", i+1, a, err)
			}
			return nil, usagef("argument %d, %q: %v", i+1, a, err)
		}
		vals = append(vals, v)
	}
	return vals, nil
}

func runCall(ctx context.Context, out io.Writer, to target, timeout time.Duration, pool, method string, args []any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := to.dial(ctx, pool)
	if err != nil {
		return err
	}
	defer c.close()
	r, err := c.pool.Call(ctx, method, args...)
	return printReply(out, r, err)
}

// printReply prints a call's result as JSON, or its typed error as JSON
// (then the exit status is 1).
func printReply(out io.Writer, r bulkhead.Reply, err error) error {
	if err != nil {
		b, _ := json.Marshal(jsonable(clientwire.EncodeError(err)))
		fmt.Fprintln(out, string(b))
		return exitError{1, err}
	}
	v, err := r.Value()
	if err != nil {
		return err
	}
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return err
	}
	fmt.Fprintln(out, string(b))
	return nil
}

// callArg is one command-line argument as a call's value: @FILE's bytes,
// or JSON with integers kept integers.
func callArg(a string, stdin io.Reader) (any, error) {
	if name, ok := strings.CutPrefix(a, "@"); ok {
		if name == "-" {
			return io.ReadAll(stdin)
		}
		return os.ReadFile(name)
	}
	d := json.NewDecoder(strings.NewReader(a))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if d.More() {
		return nil, errors.New("not JSON: more than one value")
	}
	return numbers(v)
}

// numbers replaces JSON numbers by CBOR's kinds (CBOR keeps the
// difference; a worker's int argument refuses a float): an integer that
// fits int64 or uint64 stays an integer, one that fits neither is an error
// rather than a silently rounded float, and a number with a fraction or an
// exponent is a float64.
func numbers(v any) (any, error) {
	var err error
	switch v := v.(type) {
	case json.Number:
		return number(v)
	case map[string]any:
		for k, x := range v {
			if v[k], err = numbers(x); err != nil {
				return nil, err
			}
		}
	case []any:
		for i, x := range v {
			if v[i], err = numbers(x); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

func number(n json.Number) (any, error) {
	s := n.String()
	if strings.ContainsAny(s, ".eE") {
		return n.Float64()
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return u, nil
	}
	return nil, fmt.Errorf("integer %s is out of range: an argument's integer is at least %d and at most %d (write %s.0 for a float, or \"%s\" for text)",
		s, int64(math.MinInt64), uint64(math.MaxUint64), s, s)
}

// jsonable turns a CBOR value into one encoding/json takes: maps with
// non-text keys get text keys, byte strings stay base64 ([]byte).
func jsonable(v any) any {
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[fmt.Sprint(k)] = jsonable(x)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = jsonable(x)
		}
		return m
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = jsonable(x)
		}
		return out
	}
	return v
}

// newStatusCmd is `bulkhead status`: a daemon's pools, then their
// workers; or, with --nats, the live nodes of a cluster's pool
// (status_nats.go).
func newStatusCmd() *cobra.Command {
	var (
		asJSON  bool
		timeout time.Duration
		wait    time.Duration
		to      = target{clientID: "bulkhead status"}
	)
	cmd := &cobra.Command{
		Use:   "status --socket S [--json]\n  status --nats URL [--nats-prefix P] [--nats-creds F] [--wait D] [--json] [POOL]",
		Short: "Show a daemon's pools and workers, and its class servers; or a cluster pool's nodes",
		Long: "status --socket shows a daemon's pools and workers, and its class servers.\n" +
			"status --nats shows the live nodes of a cluster's POOL: those whose heartbeat it hears\n" +
			"within --wait. When no live node serves POOL it says so and exits 1 (--json too), so\n" +
			"it works as a health check in scripts. Without POOL, it lists the pools (and objects\n" +
			"services) the cluster's nodes serve, and their nodes, by NATS micro's discovery\n" +
			"($SRV.INFO), exiting 1 if none answers within --wait.",
		Args: func(_ *cobra.Command, args []string) error {
			if to.natsURL != "" && len(args) > 1 {
				return usagef("with --nats, want one POOL or none, got %d arguments", len(args))
			}
			if to.natsURL == "" && len(args) > 0 {
				return usagef("status --socket takes no arguments, got %q (POOL goes with --nats)", args)
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if err := to.check(); err != nil {
				return err
			}
			if to.natsURL != "" {
				if wait <= 0 {
					return usagef("--wait must be positive")
				}
				if len(args) == 0 {
					return natsServices(c.Context(), c.OutOrStdout(), to, timeout, wait, asJSON)
				}
				return natsStatus(c.Context(), c.OutOrStdout(), to, timeout, wait, args[0], asJSON)
			}
			ctx, cancel := context.WithTimeout(c.Context(), timeout)
			defer cancel()
			cl, err := client.Dial(ctx, to.socket, client.Options{Name: "bulkhead status"})
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.Status(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				b, err := json.MarshalIndent(jsonable(st), "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(c.OutOrStdout(), string(b))
				return nil
			}
			printStatus(c.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().StringVar(&to.socket, "socket", "", "the daemon's socket")
	to.natsFlags(cmd, "list the live nodes of a cluster's POOL on this NATS server instead")
	cmd.Flags().DurationVar(&wait, "wait", time.Second, "with --nats: how long to listen to the nodes' heartbeats")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the daemon or the NATS server")
	return cmd
}

// printStatus prints a status as PHP-FPM's status page does: per pool,
// then per process.
func printStatus(w io.Writer, st map[string]any) {
	pools, _ := st["pools"].([]any)
	for _, p := range pools {
		pm, _ := p.(map[any]any)
		if pm["state"] == "failing" {
			fmt.Fprintf(w, "pool %v: FAILING, %v starts failed, retrying: %v\n", pm["name"], pm["attempts"], pm["error"])
			continue
		}
		fmt.Fprintf(w, "pool %v: in flight %v, waiting %v, crashes %v\n", pm["name"], pm["in_flight"], pm["waiting"], pm["crashes"])
		ws, _ := pm["workers"].([]any)
		rows := make([]string, 0, len(ws))
		for _, x := range ws {
			wm, _ := x.(map[any]any)
			since := ""
			if ns, ok := wm["since"].(uint64); ok {
				since = time.Since(time.Unix(0, int64(ns))).Round(time.Second).String()
			}
			rows = append(rows, fmt.Sprintf("  pid %-8v %-9v in flight %v/%v  up %s", wm["pid"], wm["state"], wm["in_flight"], wm["capacity"], since))
		}
		sort.Strings(rows)
		for _, r := range rows {
			fmt.Fprintln(w, r)
		}
	}
	classes, _ := st["classes"].([]any)
	for _, c := range classes {
		cm, _ := c.(map[any]any)
		fmt.Fprintf(w, "class %v: server %v, %v\n", cm["name"], cm["server"], cm["instancing"])
	}
	servers, _ := st["servers"].([]any)
	for _, s := range servers {
		sm, _ := s.(map[any]any)
		fmt.Fprintf(w, "server %v: pid %v %v, objects %v, locks %v, classes %v\n", sm["name"], sm["pid"], sm["state"], sm["objects"], sm["locks"], sm["classes"])
	}
}
