package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/examples/crashy"
	"github.com/bulkhead-go/bulkhead/internal/natsembed"
)

// The cluster demo (`demo --nodes N`): an embedded NATS server, N node
// processes (this program as `demo-node`, each a daemon of crashy
// workers made a cluster node), the demo's calls through a cluster
// client, and node 0 SIGKILLed once a third of the calls are done.

const (
	maxDemoNodes = 16
	demoPool     = "crashy"
)

// demoNode is one node process.
type demoNode struct {
	id      string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  *bufio.Reader
	journal string
	report  *nodeReport // its last line, once drained; nil for the killed node
}

// clusterSummary is the cluster demo's result: the demo's summary and
// the cluster's own keys.
type clusterSummary struct {
	*summary
	Nodes         int            `json:"nodes"`
	NodeLostCalls int            `json:"node_lost_calls"` // *cluster.NodeLostError: started on the killed node
	NodesUsed     int            `json:"nodes_used"`      // nodes whose workers journalled a call
	CallsPerNode  map[string]int `json:"calls_per_node"`  // calls started, by node, from the journals
	Retried       uint64         `json:"retried"`         // calls tried again after a node refused them or was lost before starting them
	KilledNode    string         `json:"killed_node"`
	// NodePools are the pool counters of the nodes that drained, by node:
	// the killed node's went with it.
	NodePools     map[string]*PoolCounts `json:"node_pools"`
	NodePoolsNote string                 `json:"node_pools_note"`
	FailoverMs    float64                `json:"failover_ms"` // from the SIGKILL to the last call sent to the dead node
}

func runClusterDemo(ctx context.Context, cfg demoConfig, stdout, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bulkhead-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ns, err := natsembed.Start()
	if err != nil {
		return err
	}
	defer ns.Close()
	nodes, err := startDemoNodes(cfg, exe, dir, ns.URL(), stderr)
	defer stopDemoNodes(nodes)
	if err != nil {
		return err
	}
	victim := nodes[0]
	var killedAt, lastToDead atomic.Int64
	cl, err := cluster.Dial(ctx, ns.URL(), demoPool, cluster.Options{OnSend: func(node string) {
		if node == victim.id && killedAt.Load() != 0 {
			lastToDead.Store(time.Now().UnixNano())
		}
	}})
	if err != nil {
		return err
	}
	defer cl.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = cl.WaitNodes(wctx, len(nodes))
	cancel()
	if err != nil {
		return fmt.Errorf("waiting for the nodes' heartbeats: %w", err)
	}
	r := &demoRun{cfg: cfg, call: cl, status: make([]atomic.Uint32, cfg.calls+1), result: make([]callResult, cfg.calls+1)}
	third := int64(max(1, cfg.calls/3))
	r.onCount = func(done int64) {
		if done == third {
			killedAt.Store(time.Now().UnixNano())
			victim.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	lat, elapsed, stalled := r.runCallers(ctx, stderr)
	stopDemoNodes(nodes)
	cs := &clusterSummary{Nodes: len(nodes), CallsPerNode: map[string]int{}, KilledNode: victim.id, Retried: cl.Stats().Retried}
	var all [][]crashy.Record
	for _, n := range nodes {
		js, err := crashy.ReadJournals(n.journal)
		if err != nil {
			return fmt.Errorf("reading node %s's journals: %w", n.id, err)
		}
		for _, recs := range js {
			for _, rec := range recs {
				if rec.Kind == crashy.KindCall {
					cs.CallsPerNode[n.id]++
				}
			}
		}
		if cs.CallsPerNode[n.id] > 0 {
			cs.NodesUsed++
		}
		all = append(all, js...)
	}
	cs.summary = r.tally(all, lat, bulkhead.Stats{}, elapsed)
	cs.summary.PoolCounts = nil // no pool here: the nodes' are in NodePools
	cs.NodePools = map[string]*PoolCounts{}
	for _, n := range nodes {
		if n.report != nil {
			cs.NodePools[n.id] = poolCounts(n.report.Stats)
		}
	}
	cs.NodePoolsNote = fmt.Sprintf("each node's pool counts its own workers; %s's counters went with it when it was SIGKILLed", victim.id)
	cs.NodeLostCalls = cs.NodeLost
	cs.Interrupted, cs.Stalled = ctx.Err() != nil, stalled
	if k, l := killedAt.Load(), lastToDead.Load(); k != 0 && l > k {
		cs.FailoverMs = float64(l-k) / 1e6
	}
	if cfg.json {
		if err := json.NewEncoder(stdout).Encode(cs); err != nil {
			return err
		}
	} else {
		cs.writeText(stdout)
	}
	switch {
	case !cs.Clean || cs.NodesUsed != len(nodes):
		return exitError{1, fmt.Errorf("checks failed: %d lost, %d duplicated, %d wrong results, %d of %d nodes used",
			cs.Lost, cs.Duplicated, cs.Wrong, cs.NodesUsed, len(nodes))}
	case cs.Interrupted:
		return exitError{130, errors.New("interrupted")}
	}
	return nil
}

// startDemoNodes starts cfg.nodes node processes on the NATS server at
// url, each with its own journal directory, and waits until each serves.
func startDemoNodes(cfg demoConfig, exe, dir, url string, stderr io.Writer) ([]*demoNode, error) {
	var nodes []*demoNode
	for i := range cfg.nodes {
		n := &demoNode{id: fmt.Sprintf("node%d", i), journal: filepath.Join(dir, fmt.Sprintf("node%d", i))}
		if err := os.Mkdir(n.journal, 0o700); err != nil {
			return nodes, err
		}
		n.cmd = exec.Command(exe, demoNodeArg, "--nats", url, "--node", n.id, "--workers", fmt.Sprint(cfg.workers),
			"--kill-grace", cfg.killGrace.String())
		n.cmd.Env = append(os.Environ(), cfg.workerOptions(n.journal).Environ()...)
		if cfg.log {
			n.cmd.Stderr = stderr
		}
		n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var err error
		if n.stdin, err = n.cmd.StdinPipe(); err != nil {
			return nodes, err
		}
		out, err := n.cmd.StdoutPipe()
		if err != nil {
			return nodes, err
		}
		if err := n.cmd.Start(); err != nil {
			return nodes, err
		}
		nodes = append(nodes, n)
		n.stdout = bufio.NewReader(out)
		line, _ := n.stdout.ReadString('\n')
		if strings.TrimSpace(line) != "ready" {
			return nodes, fmt.Errorf("node %s did not start: %q", n.id, strings.TrimSpace(line))
		}
	}
	return nodes, nil
}

// stopDemoNodes asks every node to drain (stdin closes), reads its
// report and reaps it; one that takes more than 10 s is killed. Twice is
// harmless.
func stopDemoNodes(nodes []*demoNode) {
	for _, n := range nodes {
		n.stdin.Close()
	}
	for _, n := range nodes {
		if n.cmd.ProcessState != nil {
			continue
		}
		t := time.AfterFunc(10*time.Second, func() { n.cmd.Process.Kill() })
		var rep nodeReport
		if line, err := n.stdout.ReadBytes('\n'); err == nil && json.Unmarshal(line, &rep) == nil {
			n.report = &rep
		}
		n.cmd.Wait()
		t.Stop()
	}
}

// clusterLine is the progress line of a cluster run.
func (r *demoRun) clusterLine(start time.Time) string {
	el := time.Since(start)
	done := r.done.Load()
	return fmt.Sprintf("%d/%d calls  %s  %.0f calls/s  %.1fs",
		done, r.cfg.calls, r.outcomes(), float64(done)/max(el.Seconds(), 1e-9), el.Seconds())
}

func (cs *clusterSummary) writeText(w io.Writer) {
	s := cs.summary
	fmt.Fprintf(w, "\nbulkhead demo --nodes %d: %d calls from %d callers on %d nodes of %d crashy workers, over NATS, in %.1fs (%.0f calls/s)\n",
		cs.Nodes, s.Calls, s.Concurrency, cs.Nodes, s.Workers, float64(s.ElapsedMs)/1000, s.CallsPerSec)
	fmt.Fprintf(w, "%s was SIGKILLed after a third of the calls; deadline %gms per call\n\n", cs.KilledNode, s.TimeoutMs)
	fmt.Fprintf(w, "ok             %-10d right checksum, checked in Go\n", s.OK)
	fmt.Fprintf(w, "crashed        %-10d *CrashError\n", s.Crashed)
	fmt.Fprintf(w, "timeouts       %-10d *CanceledError\n", s.Timeouts)
	fmt.Fprintf(w, "no worker      %-10d *StartError: every worker of its node was down and a replacement died at start-up\n", s.NoWorker)
	fmt.Fprintf(w, "refused        %-10d failed fast, nothing sent: overloaded %d, unhealthy %d, quarantined %d\n",
		s.Refused.total(), s.Refused.Overloaded, s.Refused.Unhealthy, s.Refused.Quarantined)
	fmt.Fprintf(w, "node lost      %-10d *cluster.NodeLostError: started on the killed node\n", cs.NodeLostCalls)
	fmt.Fprintf(w, "other errors   %-10d any other error%s\n", s.Errors, s.FirstError)
	fmt.Fprintf(w, "wrong results  %-10d must be 0\n", s.Wrong)
	fmt.Fprintf(w, "lost           %-10d must be 0: %d never answered, %d answered ok but started by no worker\n", s.Lost, s.LostNoAnswer, s.LostUnstarted)
	fmt.Fprintf(w, "retried        %-10d sent again: not started on a node that refused or was lost\n", cs.Retried)
	fmt.Fprintf(w, "duplicated     %-10d must be 0 (from the workers' journals, across nodes)\n", s.Duplicated)
	fmt.Fprintf(w, "nodes used     %d of %d; calls started per node: %s\n", cs.NodesUsed, cs.Nodes, perNode(cs.CallsPerNode))
	fmt.Fprintf(w, "failover       %.1f ms from the SIGKILL to the last call sent to the dead node\n", cs.FailoverMs)
	fmt.Fprintf(w, "latency        p50 %v  p99 %v\n", time.Duration(s.P50us)*time.Microsecond, time.Duration(s.P99us)*time.Microsecond)
	fmt.Fprintf(w, "\nworker deaths as each node's pool saw them (%s):\n", cs.NodePoolsNote)
	for _, id := range slices.Sorted(maps.Keys(cs.NodePools)) {
		p := cs.NodePools[id]
		fmt.Fprintf(w, "  %-12s %d at start-up, %d during a call, %d between calls; %d workers started, %d redispatched, respawn p50 %v\n",
			id, p.WorkerDeaths.Startup, p.WorkerDeaths.Call, p.WorkerDeaths.Idle, p.WorkersStarted, p.Redispatch,
			time.Duration(p.RespawnP50)*time.Microsecond)
	}
}

// perNode is a count by node for people: "node0 322, node1 780", sorted.
func perNode(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for _, id := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", id, m[id]))
	}
	return strings.Join(parts, ", ")
}
