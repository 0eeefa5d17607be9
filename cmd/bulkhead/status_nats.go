package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/bulkhead-go/bulkhead/cluster"
)

// natsStatus prints the live nodes of a cluster's pool: those whose
// heartbeat a client of it hears within wait (a node heartbeats every
// 100 ms unless its [nats] heartbeat says otherwise), draining ones left
// out. With none, it prints so and exits 1, a health check for scripts.
func natsStatus(ctx context.Context, out io.Writer, to target, timeout, wait time.Duration, pool string, asJSON bool) error {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := to.dial(dctx, pool)
	if err != nil {
		return err
	}
	defer c.close()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	var nodes []cluster.NodeLoad
	for _, n := range c.nodes() {
		if !n.Draining {
			nodes = append(nodes, n)
		}
	}
	if asJSON {
		type node struct {
			ID      string `json:"id"`
			Free    int64  `json:"free"`
			Workers int64  `json:"workers"`
			AgeMS   int64  `json:"heartbeat_age_ms"`
		}
		js := []node{}
		for _, n := range nodes {
			js = append(js, node{n.ID, n.Free, n.Workers, n.Age.Milliseconds()})
		}
		b, err := json.MarshalIndent(map[string]any{"pool": pool, "nodes": js}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(out, string(b))
		return noLiveNode(pool, wait, len(nodes))
	}
	if len(nodes) == 0 {
		fmt.Fprintf(out, "pool %s: no live node (none heartbeat within %v)\n", pool, wait)
		return noLiveNode(pool, wait, 0)
	}
	noun := "nodes"
	if len(nodes) == 1 {
		noun = "node"
	}
	fmt.Fprintf(out, "pool %s: %d live %s\n", pool, len(nodes), noun)
	for _, n := range nodes {
		fmt.Fprintf(out, "  %-24s %d of %d workers free  (heartbeat %v ago)\n", n.ID, max(n.Free, 0), n.Workers, n.Age.Round(time.Millisecond))
	}
	return nil
}

// noLiveNode is exit status 1 when a pool has no live node: `status
// --nats` is then a health check that fails.
func noLiveNode(pool string, wait time.Duration, n int) error {
	if n > 0 {
		return nil
	}
	return exitError{1, fmt.Errorf("pool %s: no live node (none heartbeat within %v)", pool, wait)}
}
