package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/daemon"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

// demoNodeArg is the hidden subcommand of the cluster demo's nodes.
const demoNodeArg = "demo-node"

// maxNodeStartAttempts bounds a node's daemon starts: with one worker
// and --startup-crash-rate 0.5, every one fails one time in a million.
const maxNodeStartAttempts = 20

// startNodeDaemon starts the node's daemon again while its pool could not
// start (every first worker died at start-up, by an injected fault). The
// daemon would retry such a pool itself, but the node registers on NATS
// the pools running when it is made (daemon.Server.PoolNames), and no
// later: the demo would wait for a node that never serves. (Whether the
// daemon's retry won the race with nats.Connect decided it: on a loaded
// machine, often not.)
func startNodeDaemon(ctx context.Context, cfg *daemon.Config) (*daemon.Server, error) {
	for attempt := 1; ; attempt++ {
		s, err := daemon.New(ctx, cfg, slog.New(slog.DiscardHandler))
		var se *bulkhead.StartError
		switch {
		case err == nil && slices.Contains(s.PoolNames(), demoPool):
			return s, nil
		case err == nil:
			err = fmt.Errorf("pool %s: every first worker died at start-up %d times", demoPool, attempt)
			s.Shutdown(ctx)
		case !errors.As(err, &se):
			return nil, err
		}
		if attempt == maxNodeStartAttempts {
			return nil, err
		}
	}
}

// newDemoNodeCmd is one node of `demo --nodes`: a daemon with a pool of
// crashy workers (their options in the environment) made a cluster node.
// It says "ready" on stdout, and drains when its stdin closes.
func newDemoNodeCmd() *cobra.Command {
	var (
		url, id string
		workers int
		grace   time.Duration
	)
	cmd := &cobra.Command{
		Use:    demoNodeArg,
		Short:  "Serve as a node of the cluster demo (started by demo --nodes)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(*cobra.Command, []string) error {
			if url == "" || id == "" || workers < 1 || workers > maxDemoWorkers {
				return usagef("demo-node needs --nats, --node and --workers 1 to %d", maxDemoWorkers)
			}
			return runDemoNode(url, id, workers, grace)
		},
	}
	cmd.Flags().StringVar(&url, "nats", "", "the NATS server")
	cmd.Flags().StringVar(&id, "node", "", "the node's id")
	cmd.Flags().IntVar(&workers, "workers", 1, "crashy workers")
	cmd.Flags().DurationVar(&grace, "kill-grace", 20*time.Millisecond, "the workers' stop steps")
	return cmd
}

func runDemoNode(url, id string, workers int, grace time.Duration) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx := context.Background()
	cfg := &daemon.Config{Pools: []daemon.Pool{{Name: demoPool, Config: bulkhead.Config{Command: exe,
		Args: []string{workerArg}, Env: os.Environ(), Workers: workers,
		KillGrace: grace, TermGrace: grace, DumpGrace: grace}}}}
	s, err := startNodeDaemon(ctx, cfg)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, nats.Name(id))
	if err != nil {
		s.Shutdown(ctx)
		return err
	}
	node, err := cluster.NewNode(nc, s, cluster.NodeConfig{ID: id})
	if err != nil {
		nc.Close()
		s.Shutdown(ctx)
		return err
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	node.Drain(dctx)
	node.Close()
	nc.Close()
	return s.Shutdown(dctx)
}
