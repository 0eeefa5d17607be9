package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// natsStatus prints the live nodes of a cluster's pool: those whose
// heartbeat a client of it hears within wait (a node heartbeats every
// 100 ms unless its [nats] heartbeat says otherwise), draining ones left
// out.
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
	nodes := c.nodes()
	slices.Sort(nodes)
	if asJSON {
		b, err := json.MarshalIndent(map[string]any{"pool": pool, "nodes": nodes}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(out, string(b))
		return nil
	}
	if len(nodes) == 0 {
		fmt.Fprintf(out, "pool %s: no live node (none heartbeat within %v)\n", pool, wait)
		return nil
	}
	noun := "nodes"
	if len(nodes) == 1 {
		noun = "node"
	}
	fmt.Fprintf(out, "pool %s: %d live %s: %s\n", pool, len(nodes), noun, strings.Join(nodes, " "))
	return nil
}
