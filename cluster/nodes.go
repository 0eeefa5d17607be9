package cluster

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/nats-io/nats.go"
)

// What a client knows of the nodes: their heartbeats, probes of the
// silent ones, and the choice of a node for a call.

// nodeState is what the client knows of one node.
type nodeState struct {
	id       string
	free     int64 // as last reported
	workers  int64 // as last reported
	atReport int   // mine when it was reported
	mine     int   // this client's calls on it now
	seen     time.Time
	pool     bool      // it serves the pool (it sent the pool's heartbeat)
	objects  bool      // it serves objects (it sent their heartbeat)
	draining bool      // refused a call, left its subject, or said so
	probed   time.Time // a probe is out since then; zero: none
	probedOn uint64    // the client's conns when the probe went out
}

// Nodes lists the live nodes the client knows, for status and tests.
func (c *Client) Nodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.nodes))
	for id, n := range c.nodes {
		if n.pool && !n.draining {
			out = append(out, id)
		}
	}
	return out
}

// NodeLoad is what a client knows of one node of its pool, from the
// node's last heartbeat: for status pages and tools.
type NodeLoad struct {
	ID       string
	Free     int64         // its workers not running a call, as it last said
	Workers  int64         // its workers serving calls, as it last said
	Mine     int           // this client's calls on it now
	Draining bool          // it refused a call, left its subject, or said so
	Age      time.Duration // since its last heartbeat
}

// NodeLoads lists the nodes of the client's pool that it knows, live or
// draining, sorted by id.
func (c *Client) NodeLoads() []NodeLoad {
	now := time.Now()
	c.mu.Lock()
	out := make([]NodeLoad, 0, len(c.nodes))
	for id, n := range c.nodes {
		if n.pool {
			out = append(out, NodeLoad{ID: id, Free: n.free, Workers: n.workers, Mine: n.mine, Draining: n.draining, Age: now.Sub(n.seen)})
		}
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b NodeLoad) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// onLoad records a node's heartbeat: of the pool, or of its objects.
func (c *Client) onLoad(m *nats.Msg, pool bool) {
	l, err := decodeLoad(m.Data)
	if err != nil {
		return // not a node's: ignored
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, lost := c.gone[l.Node]; lost || c.closed {
		return
	}
	n := c.nodes[l.Node]
	if n == nil {
		if len(c.nodes) >= maxNodes {
			return // a flood of made-up nodes costs no memory
		}
		n = &nodeState{id: l.Node}
		c.nodes[l.Node] = n
		close(c.changed)
		c.changed = make(chan struct{})
	}
	n.seen = time.Now()
	if !pool {
		n.objects = true
		return
	}
	c.wakeLocked()
	if n.workers == 0 && l.Workers > 0 {
		close(c.changed) // WaitNodes counts it now
		c.changed = make(chan struct{})
	}
	n.free, n.workers, n.atReport, n.pool = l.Free, l.Workers, n.mine, true
	n.draining = n.draining || l.Draining
}

// onProbe: a node answered a probe, or the NATS server said nobody
// listens on its subject any more. Then it is lost: its calls not started
// go elsewhere, the started ones fail with *NodeLostError.
func (c *Client) onProbe(id string, noResponders bool) {
	c.mu.Lock()
	now := time.Now()
	conns := c.connChangedLocked(now)
	n := c.nodes[id]
	if n == nil {
		c.mu.Unlock()
		return
	}
	n.probed = time.Time{}
	if !noResponders || n.probedOn != conns || now.Before(c.grace) {
		// Alive; or the probe went out before the connection was remade,
		// or too soon after: its "no responders" may be a new NATS server's
		// that the node has not reached yet. Asked again if still silent.
		if !noResponders {
			n.seen = now
		}
		c.mu.Unlock()
		return
	}
	delete(c.nodes, id)
	c.gone[id] = time.Now()
	c.losses++
	if len(c.lostAt) >= 4*maxNodes {
		for k := range c.lostAt { // bounded: an old loss forgotten (its objects' calls then reach the node, if it came back)
			delete(c.lostAt, k)
			break
		}
	}
	c.lostAt[id] = c.losses
	var lost []*pending
	for cid, p := range c.calls {
		if p.node == id {
			delete(c.calls, cid)
			lost = append(lost, p)
		}
	}
	c.mu.Unlock()
	for _, p := range lost {
		if p.acked {
			p.sub.end(&activation.DisconnectedError{Object: p.sub.object,
				Err: &NodeLostError{Node: id, Method: "subscribe", Reason: "the NATS server dropped the node"}})
			continue
		}
		p.ev <- event{kind: evLost}
	}
}

// reconnectGrace is how long after its connection to NATS was remade a
// client finds no node lost: a NATS server that restarted knows no node
// until each reconnects (a node of bulkhead serve tries every 250 ms;
// nats.go's default is every 2 s).
const reconnectGrace = 3 * time.Second

// connChangedLocked looks whether the connection to NATS was remade since
// it last did, and returns its count of reconnects. When it was, the NATS
// server may be a new one, which knows no node until they reconnect too
// and has lost what the old one had not delivered: the nodes get a grace
// to be heard again, and a call a node had said it queued may have said
// started to the old server, so it is counted as started (never sent
// again: at most once holds over a NATS server's restart too).
func (c *Client) connChangedLocked(now time.Time) uint64 {
	rc := c.nc.Stats().Reconnects
	if rc == c.conns {
		return rc
	}
	c.conns = rc
	c.grace = now.Add(max(c.opts.LostAfter, reconnectGrace))
	for _, p := range c.calls {
		if p.sub == nil && (p.queued || p.group) {
			p.started = true
		}
	}
	for _, n := range c.nodes {
		n.seen, n.probed = now, time.Time{}
	}
	return rc
}

// probeLocked asks node n whether it lives, unless a probe is out.
func (c *Client) probeLocked(n *nodeState) {
	if !n.probed.IsZero() {
		return
	}
	n.probed, n.probedOn = time.Now(), c.connChangedLocked(time.Now())
	c.nc.PublishMsg(&nats.Msg{Subject: c.s.alive(n.id), Reply: c.inbox + "p." + n.id}) // buffered, no I/O wait
	if c.onProbeOut != nil {
		c.onProbeOut(c.nc.Status())
	}
}

// monitor probes nodes that have been silent for LostAfter, and forgets
// lost nodes after LostAfter: a node of that id heard from later is back
// (restarted with its id, or reconnected after a partition; its objects
// stay disconnected). Its heartbeats sent before its loss were delivered
// before the "no responders" that found it lost.
func (c *Client) monitor() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.Heartbeat / 2)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		c.mu.Lock()
		c.connChangedLocked(now)
		for _, n := range c.nodes {
			if !n.probed.IsZero() && now.Sub(n.probed) > c.opts.LostAfter {
				n.probed = time.Time{} // its answer is overdue: ask again
			}
			if now.Sub(n.seen) > c.opts.LostAfter || n.draining {
				c.probeLocked(n)
			}
		}
		overdue := c.endOverdueLocked(now, c.opts.LostAfter)
		for id, at := range c.gone {
			if now.Sub(at) > c.opts.LostAfter {
				delete(c.gone, id)
			}
		}
		c.mu.Unlock()
		for _, s := range overdue {
			s.mu.Lock()
			err := s.endErr
			s.mu.Unlock()
			s.end(err) // a no-op if the events subject ended it first
		}
	}
}

// pickLocked chooses the node for a call: the live node with the most
// free workers by its last heartbeat, less the calls this client sent it
// since, ties broken at random (Options.Random: any live node). nil when
// none is known.
func (c *Client) pickLocked(exclude map[string]bool) *nodeState {
	var (
		best *nodeState
		top  int64
		ties int
	)
	now := time.Now()
	for _, n := range c.nodes {
		if !n.pool || n.draining || exclude[n.id] || now.Sub(n.seen) > c.opts.LostAfter {
			continue
		}
		var est int64
		if !c.opts.Random {
			// Its last report, less the calls sent since; and never more
			// than its workers less this client's calls on it, which a
			// report that crossed a call on the way cannot overstate.
			est = min(n.free-int64(n.mine-n.atReport), n.workers-int64(n.mine))
		}
		switch {
		case best == nil || est > top:
			best, top, ties = n, est, 1
		case est == top:
			ties++
			if rand.IntN(ties) == 0 {
				best = n
			}
		}
	}
	return best
}

// WaitNodes waits until the client knows at least n live nodes with a
// worker up, or ctx ends: for a caller that wants the load-aware choice
// to have every node from its first call.
func (c *Client) WaitNodes(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		live := 0
		for _, s := range c.nodes {
			if !s.draining && s.workers > 0 {
				live++
			}
		}
		changed := c.changed
		c.mu.Unlock()
		if live >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
