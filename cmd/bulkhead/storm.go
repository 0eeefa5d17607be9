package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/worker"
	"github.com/spf13/cobra"
)

// The storm is the most brutal client of COM's server-lifetime literature made
// into a command: many goroutines create, call and release objects as fast as
// they can, while servers shut down at zero with zero linger, recycle
// themselves (answering late activations "server stopping"), and cold
// launches interleave. Any failure or disconnected object is a lifetime bug.

// stormOptions are the storm's parameters.
type stormOptions struct {
	Activations int
	Goroutines  int
	Calls       int
	Recycle     int
	SingleEvery int
	Linger      time.Duration
	Timeout     time.Duration
	JSON        bool
	// Clients runs the storm from this many client processes through a
	// daemon (package daemon) that the storm starts, instead of from
	// goroutines in this process; Goroutines are shared among them.
	Clients int
	// Nodes runs the storm across this many cluster nodes (daemons on an
	// embedded NATS server), the goroutines as cluster clients.
	Nodes int

	offset int // a client process's first activation number, less one

	// serverCmd and serverArgs start a class server (serveStormClasses).
	serverCmd  string
	serverArgs []string
	serverEnv  []string
}

// stormResult is what the storm prints.
type stormResult struct {
	Activations     uint64  `json:"activations"`
	Calls           uint64  `json:"calls"`
	Failures        uint64  `json:"failures"`
	Disconnected    uint64  `json:"disconnected"`
	Launches        uint64  `json:"launches"`
	StoppingRetries uint64  `json:"stopping_retries"`
	Redispatched    uint64  `json:"redispatched"`
	ServerStops     uint64  `json:"server_stops"`
	ServerCrashes   uint64  `json:"server_crashes"`
	Goroutines      int     `json:"goroutines"`
	Seconds         float64 `json:"seconds"`
	PerSecond       float64 `json:"activations_per_second"`
	FirstFailure    string  `json:"first_failure,omitempty"`
}

const stormServeEnv = "BULKHEAD_STORM_SERVER"

func newStormCmd() *cobra.Command {
	var o stormOptions
	var serve bool
	cmd := &cobra.Command{
		Use:   "storm",
		Short: "Stress the object activator: activations, calls and releases racing server shutdowns",
		Long: `storm runs many goroutines that create, call and release objects as fast as
they can, through every path (class handles with LockServer, clones, the
running object table, sessions closed with references held), while class
servers stop the moment their lock count reaches zero, recycle themselves
after --recycle activations, and cold launches interleave. It prints one
result; failures and disconnected must be 0, and the command exits 1 if not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if serve || os.Getenv(stormServeEnv) != "" {
				serveStormClasses()
				return nil
			}
			if sock := os.Getenv(stormClientEnv); sock != "" {
				return runStormChild(cmd.Context(), cmd.OutOrStdout(), o, sock)
			}
			if err := o.validate(); err != nil {
				return badUsage{err}
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.serverCmd, o.serverArgs = exe, []string{"storm"}
			o.serverEnv = []string{stormServeEnv + "=1"}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := runStorm(ctx, o)
			if err != nil {
				return err
			}
			if err := res.print(cmd.OutOrStdout(), o.JSON); err != nil {
				return err
			}
			if res.Failures > 0 || res.Disconnected > 0 {
				return fmt.Errorf("storm: %d failures, %d disconnected (first: %s)", res.Failures, res.Disconnected, res.FirstFailure)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Activations, "activations", 10000, "objects to create in all (1 to 1e9)")
	f.IntVar(&o.Goroutines, "goroutines", 32, "concurrent clients (1 to 4096)")
	f.IntVar(&o.Calls, "calls", 2, "calls on each object (0 to 1000)")
	f.IntVar(&o.Recycle, "recycle", 200, "servers revoke their classes after this many activations (0: never)")
	f.IntVar(&o.SingleEvery, "single-every", 50, "every n-th activation is of a single-use class (0: never)")
	f.DurationVar(&o.Linger, "linger", 0, "how long a server whose lock count reached zero lingers before QUIT (0: none)")
	f.DurationVar(&o.Timeout, "timeout", 0, "stop creating objects after this long (0: no limit)")
	f.BoolVar(&o.JSON, "json", false, "print one JSON object")
	f.IntVar(&o.Clients, "clients", 0, "run from this many client processes through a daemon (0: goroutines in this process)")
	f.IntVar(&o.Nodes, "nodes", 0, "run across this many cluster nodes on an embedded NATS server (0: none)")
	f.BoolVar(&serve, "serve", false, "run as the storm's class server")
	_ = f.MarkHidden("serve")
	return cmd
}

func (o *stormOptions) validate() error {
	var errs []error
	check := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("--%s=%d: want %d to %d", name, v, lo, hi))
		}
	}
	check("activations", o.Activations, 1, 1_000_000_000)
	check("goroutines", o.Goroutines, 1, 4096)
	check("calls", o.Calls, 0, 1000)
	check("recycle", o.Recycle, 0, 1<<30)
	check("single-every", o.SingleEvery, 0, 1<<30)
	check("clients", o.Clients, 0, 256)
	check("nodes", o.Nodes, 0, 16)
	if o.Nodes > 0 && o.Clients > 0 {
		errs = append(errs, fmt.Errorf("--nodes=%d with --clients=%d: choose one", o.Nodes, o.Clients))
	}
	if o.Clients > o.Goroutines {
		errs = append(errs, fmt.Errorf("--clients=%d: more than --goroutines=%d", o.Clients, o.Goroutines))
	}
	if o.Linger < 0 || o.Linger > time.Minute {
		errs = append(errs, fmt.Errorf("--linger=%v: want 0 to 1m", o.Linger))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("--timeout=%v: must not be negative", o.Timeout))
	}
	return errors.Join(errs...)
}

func (r *stormResult) print(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	_, err := fmt.Fprintf(w, "activations %d, calls %d, failures %d, disconnected %d\n"+
		"launches %d, stopping retries %d, redispatched %d, server stops %d, server crashes %d\n"+
		"%d goroutines, %.1f s, %.0f activations/s\n",
		r.Activations, r.Calls, r.Failures, r.Disconnected,
		r.Launches, r.StoppingRetries, r.Redispatched, r.ServerStops, r.ServerCrashes,
		r.Goroutines, r.Seconds, r.PerSecond)
	return err
}

// The storm's classes: two in one multiple-use server (a multi-class
// server, registered suspended and resumed at once), a single-use class,
// and a pooled one.
var stormClasses = []string{"Counter", "Gauge", "Pooled"}

func stormConfig(o stormOptions) activation.ActivatorConfig {
	proc := func() bulkhead.Process {
		env := append(os.Environ(), o.serverEnv...)
		env = append(env, "STORM_RECYCLE="+strconv.Itoa(o.Recycle), "GORACE=atexit_sleep_ms=0")
		return bulkhead.Process{Command: o.serverCmd, Args: o.serverArgs, Env: env}
	}
	linger := o.Linger
	if linger == 0 {
		linger = activation.NoLinger
	}
	return activation.ActivatorConfig{
		Linger: linger,
		Logger: slog.New(slog.DiscardHandler),
		Servers: []activation.ServerConfig{
			{Name: "storm-multi", Process: proc(), Classes: []activation.ClassConfig{{Name: "Counter"}, {Name: "Gauge"}}},
			{Name: "storm-iso", Process: proc(), Classes: []activation.ClassConfig{{Name: "Iso", Instancing: activation.SingleUse}}},
			{Name: "storm-pool", Process: proc(), Classes: []activation.ClassConfig{{Name: "Pooled", Instancing: activation.Pooled, PoolSize: 3}}},
		},
	}
}

// serveStormClasses runs this process as the storm's class server.
func serveStormClasses() {
	s := &worker.Server{}
	s.Objects.MaxActivations, _ = strconv.Atoi(os.Getenv("STORM_RECYCLE"))
	for _, c := range []struct {
		name string
		th   worker.Threading
	}{{"Counter", worker.Apartment}, {"Gauge", worker.Free}, {"Iso", worker.Single}, {"Pooled", worker.Free}} {
		cl := &worker.Class[*stormObj]{Name: c.name, Threading: c.th,
			New: func(_ context.Context, _ *worker.Object, a worker.Args) (*stormObj, error) {
				o := &stormObj{}
				return o, a.Scan(&o.n)
			}}
		cl.Method("add", func(_ context.Context, o *stormObj, a worker.Args) (any, error) {
			var d int
			if err := a.Scan(&d); err != nil {
				return nil, err
			}
			o.mu.Lock()
			defer o.mu.Unlock()
			o.n += d
			return o.n, nil
		})
		s.Register(cl)
	}
	s.Run()
}

type stormObj struct {
	mu sync.Mutex
	n  int
}
