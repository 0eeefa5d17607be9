package main

import (
	"context"
	"sync"

	"github.com/bulkhead-go/bulkhead/worker"
	"github.com/spf13/cobra"
)

// counterServerArg is the hidden subcommand that serves the Counter class:
// the class server of examples/serve/bulkhead.toml, so that the example
// needs nothing built.
const counterServerArg = "counter-server"

// counter is one Counter object: a number that add changes.
type counter struct {
	mu sync.Mutex
	n  int64
}

// newCounterServerCmd serves class Counter (methods add and get, event
// "changed") as a class server, started by an activator.
func newCounterServerCmd() *cobra.Command {
	return &cobra.Command{
		Use:                counterServerArg,
		Short:              "Serve the Counter class (started by an activator)",
		Hidden:             true,
		DisableFlagParsing: true,
		Args:               noArgs,
		Run: func(*cobra.Command, []string) {
			s := &worker.Server{}
			c := &worker.Class[*counter]{Name: "Counter",
				New: func(_ context.Context, _ *worker.Object, a worker.Args) (*counter, error) {
					o := &counter{}
					if a.Len() > 0 {
						if err := a.Decode(0, &o.n); err != nil {
							return nil, err
						}
					}
					return o, nil
				}}
			c.Method("add", func(_ context.Context, o *counter, a worker.Args) (any, error) {
				var d int64
				if err := a.Scan(&d); err != nil {
					return nil, err
				}
				o.mu.Lock()
				defer o.mu.Unlock()
				o.n += d
				return o.n, nil
			})
			c.Method("get", func(_ context.Context, o *counter, _ worker.Args) (any, error) {
				o.mu.Lock()
				defer o.mu.Unlock()
				return o.n, nil
			})
			s.Register(c)
			s.Run()
		},
	}
}
