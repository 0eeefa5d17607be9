package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/daemon"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

// demoNodeArg is the hidden subcommand of the cluster demo's nodes.
const demoNodeArg = "demo-node"

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
	// A pool whose first workers all die at start-up (an injected fault)
	// is retried by the daemon, and served from then on (PoolNames).
	s, err := daemon.New(ctx, cfg, slog.New(slog.DiscardHandler))
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
	// The demo's summary shows the counters of the nodes that drained.
	pools, _ := s.Sources()
	err = s.Shutdown(dctx)
	if pool := pools[demoPool]; pool != nil { // nil if it never started
		if jerr := json.NewEncoder(os.Stdout).Encode(nodeReport{Stats: pool.Stats()}); err == nil {
			err = jerr
		}
	}
	return err
}

// nodeReport is the line a node prints when it has drained: its pool's
// counters.
type nodeReport struct {
	Stats bulkhead.Stats `json:"stats"`
}
