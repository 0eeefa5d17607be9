package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
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

// natsServices prints the pools (and objects services) the cluster's
// nodes serve, and their nodes, as NATS micro's discovery finds them
// within wait; none is an error (exit 1).
func natsServices(ctx context.Context, out io.Writer, to target, timeout, wait time.Duration, asJSON bool) error {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := to.dial(dctx, "")
	if err != nil {
		return err
	}
	defer c.close()
	svcs, err := c.discover(ctx, wait)
	if err != nil {
		return err
	}
	if asJSON {
		type svc struct {
			Name     string   `json:"name"`
			Versions []string `json:"versions"`
			Nodes    []string `json:"nodes"`
		}
		js := []svc{}
		for _, s := range svcs {
			js = append(js, svc(s))
		}
		b, err := json.MarshalIndent(map[string]any{"services": js}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(out, string(b))
	} else {
		for _, s := range svcs {
			fmt.Fprintf(out, "%-24s %d node(s): %s  (version %s)\n", s.Name, len(s.Nodes), strings.Join(s.Nodes, " "), strings.Join(s.Versions, ", "))
		}
	}
	if len(svcs) == 0 {
		return fmt.Errorf("no node of the cluster answered within %v", wait)
	}
	return nil
}
