package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
	"github.com/nats-io/nats.go"
)

// Options tune a Client. Every field's zero value is usable.
type Options struct {
	// Prefix is the nodes' NodeConfig.Prefix. Zero value: "bulkhead".
	Prefix string
	// Heartbeat is the nodes' NodeConfig.Heartbeat: how often the
	// client looks for silent nodes. Zero value: 100 ms.
	Heartbeat time.Duration
	// LostAfter is how long a node may be silent before it is probed
	// (and, if the NATS server has dropped it, declared lost). Zero
	// value: 3 heartbeats.
	LostAfter time.Duration
	// Random picks a random live node, as NATS's queue group does,
	// instead of the one with the most free workers: for comparison.
	// Zero value: load-aware.
	Random bool
	// OnSend, if set, is called before each send of a call with the
	// node chosen ("" for the queue group), on the caller's goroutine: for
	// accounting (the demo's failover time). It must not block. Zero
	// value: none.
	OnSend func(node string)
}

// Stats are a client's counters.
type Stats struct {
	Retried  uint64 // sends after a node refused a call or was lost before starting it
	NodeLost uint64 // calls failed with *NodeLostError
}

// maxNodes bounds the nodes a client tracks: anyone allowed to publish on
// a load subject could make some up (NATS's permissions decide who may).
const maxNodes = 1024

// Client calls one pool across the nodes that serve it. It satisfies
// bulkhead.Caller. Safe for concurrent use.
type Client struct {
	nc    *nats.Conn
	own   bool // Close closes nc
	s     subjects
	opts  Options
	inbox string // this client's inbox prefix, ending in "."

	retried, nodeLost atomic.Uint64

	subs []*nats.Subscription
	stop chan struct{}
	wg   sync.WaitGroup // the monitor

	mu      sync.Mutex
	nodes   map[string]*nodeState
	gone    map[string]time.Time // lost nodes, whose late heartbeats are ignored
	calls   map[uint64]*pending
	next    uint64
	changed chan struct{} // closed and replaced when a node appears
	closed  bool
}

// nodeState is what the client knows of one node.
type nodeState struct {
	id       string
	free     int64 // as last reported
	workers  int64 // as last reported
	atReport int   // mine when it was reported
	mine     int   // this client's calls on it now
	seen     time.Time
	draining bool      // refused a call, left its subject, or said so
	probed   time.Time // a probe is out since then; zero: none
}

// pending is a call in flight.
type pending struct {
	node    string // "" until known (sent to the queue group)
	started bool
	ev      chan event // never blocks: at most three events per call
}

type eventKind int

const (
	evStarted eventKind = iota
	evFinal             // a result or an error: msg
	evRefused           // not started: send it elsewhere
	evLost              // its node is gone
	evClosed            // the client closed
)

type event struct {
	kind eventKind
	msg  *nats.Msg
}

// Dial connects to the NATS server at url (nats.Options as nats.Connect
// takes them: credentials, TLS, NKeys) and returns a client of pool; Close
// closes the connection.
func Dial(ctx context.Context, url, pool string, opts Options, nopts ...nats.Option) (*Client, error) {
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return nil, err
	}
	c, err := New(nc, pool, opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c.own = true
	if err := flush(ctx, nc); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// New returns a client of pool on nc, which stays the caller's.
func New(nc *nats.Conn, pool string, opts Options) (*Client, error) {
	if opts.Prefix == "" {
		opts.Prefix = defaultPrefix
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = defaultHeartbeat
	}
	if opts.LostAfter <= 0 {
		opts.LostAfter = 3 * opts.Heartbeat
	}
	if err := errors.Join(checkName("pool", pool), checkName("prefix", opts.Prefix)); err != nil {
		return nil, err
	}
	c := &Client{nc: nc, s: subjects{prefix: opts.Prefix, pool: pool}, opts: opts, inbox: nc.NewInbox() + ".",
		stop: make(chan struct{}), nodes: make(map[string]*nodeState), gone: make(map[string]time.Time),
		calls: make(map[uint64]*pending), changed: make(chan struct{})}
	// One subscription takes every answer and probe reply, so that they
	// are handled in the order the NATS server sent them: a node's
	// "started" is always seen before the probe that finds it gone.
	in, err := nc.Subscribe(c.inbox+">", c.onInbox)
	if err != nil {
		return nil, err
	}
	ld, err := nc.Subscribe(c.s.load(), c.onLoad)
	if err != nil {
		in.Unsubscribe()
		return nil, err
	}
	c.subs = []*nats.Subscription{in, ld}
	c.wg.Add(1)
	go c.monitor()
	return c, nil
}

// Close ends the client: calls in flight fail with bulkhead.ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	calls := c.calls
	c.calls = map[uint64]*pending{}
	c.mu.Unlock()
	close(c.stop)
	c.wg.Wait()
	for _, s := range c.subs {
		s.Unsubscribe()
	}
	for _, p := range calls {
		p.ev <- event{kind: evClosed}
	}
	if c.own {
		c.nc.Close()
	}
	return nil
}

// Nodes lists the live nodes the client knows, for status and tests.
func (c *Client) Nodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.nodes))
	for id, n := range c.nodes {
		if !n.draining {
			out = append(out, id)
		}
	}
	return out
}

// onLoad records a node's heartbeat.
func (c *Client) onLoad(m *nats.Msg) {
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
	if n.workers == 0 && l.Workers > 0 {
		close(c.changed) // WaitNodes counts it now
		c.changed = make(chan struct{})
	}
	n.free, n.workers, n.atReport, n.seen = l.Free, l.Workers, n.mine, time.Now()
	n.draining = n.draining || l.Draining
}

// onInbox takes an answer ("c.<id>") or a probe's reply ("p.<node>").
func (c *Client) onInbox(m *nats.Msg) {
	kind, key, _ := strings.Cut(strings.TrimPrefix(m.Subject, c.inbox), ".")
	noResponders := len(m.Data) == 0 && m.Header.Get("Status") == "503" // the NATS server's "no responders"
	switch kind {
	case "p":
		c.onProbe(key, noResponders)
	case "c":
		id, err := strconv.ParseUint(key, 10, 64)
		if err == nil {
			c.onAnswer(id, noResponders, m)
		}
	}
}

func (c *Client) onAnswer(id uint64, noResponders bool, m *nats.Msg) {
	c.mu.Lock()
	p := c.calls[id]
	if p == nil {
		c.mu.Unlock()
		return // late: its call has returned
	}
	var ev event
	switch st := m.Header.Get(HeaderStatus); {
	case noResponders || st == statusRefused:
		delete(c.calls, id)
		ev.kind = evRefused
		if n := c.nodes[p.node]; n != nil {
			n.draining = true
			c.probeLocked(n) // gone, or only draining? the probe tells
		}
	case st == statusStarted:
		if p.started {
			c.mu.Unlock()
			return
		}
		p.started = true
		if p.node == "" {
			p.node = m.Header.Get(HeaderNode)
		}
		ev.kind = evStarted
	default:
		delete(c.calls, id)
		ev = event{kind: evFinal, msg: m}
	}
	c.mu.Unlock()
	p.ev <- ev
}

// onProbe: a node answered a probe, or the NATS server said nobody
// listens on its subject any more. Then it is lost: its calls not started
// go elsewhere, the started ones fail with *NodeLostError.
func (c *Client) onProbe(id string, noResponders bool) {
	c.mu.Lock()
	n := c.nodes[id]
	if n == nil {
		c.mu.Unlock()
		return
	}
	n.probed = time.Time{}
	if !noResponders {
		n.seen = time.Now()
		c.mu.Unlock()
		return
	}
	delete(c.nodes, id)
	c.gone[id] = time.Now()
	var lost []*pending
	for cid, p := range c.calls {
		if p.node == id {
			delete(c.calls, cid)
			lost = append(lost, p)
		}
	}
	c.mu.Unlock()
	for _, p := range lost {
		p.ev <- event{kind: evLost}
	}
}

// probeLocked asks node n whether it lives, unless a probe is out.
func (c *Client) probeLocked(n *nodeState) {
	if !n.probed.IsZero() {
		return
	}
	n.probed = time.Now()
	c.nc.PublishMsg(&nats.Msg{Subject: c.s.alive(n.id), Reply: c.inbox + "p." + n.id}) // buffered, no I/O wait
}

// monitor probes nodes that have been silent for LostAfter, and forgets
// lost nodes after a minute.
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
		for _, n := range c.nodes {
			if !n.probed.IsZero() && now.Sub(n.probed) > c.opts.LostAfter {
				n.probed = time.Time{} // its answer is overdue: ask again
			}
			if now.Sub(n.seen) > c.opts.LostAfter || n.draining {
				c.probeLocked(n)
			}
		}
		for id, at := range c.gone {
			if now.Sub(at) > time.Minute {
				delete(c.gone, id)
			}
		}
		c.mu.Unlock()
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
		if n.draining || exclude[n.id] || now.Sub(n.seen) > c.opts.LostAfter {
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

// Call runs method on a node of the pool, as Pool.Call does in-process.
func (c *Client) Call(ctx context.Context, method string, args ...any) (bulkhead.Reply, error) {
	if err := ctx.Err(); err != nil {
		return bulkhead.Reply{}, &bulkhead.CanceledError{Method: method, Err: err, ExitCode: -1, Reason: "its ctx had ended before it was sent"}
	}
	req := clientwire.Request{Op: clientwire.OpCall, Pool: c.s.pool, Method: method}
	for _, a := range args {
		p, err := wire.Marshal(a)
		if err != nil {
			return bulkhead.Reply{}, fmt.Errorf("%w: %v", bulkhead.ErrEncoding, err)
		}
		req.Args = append(req.Args, cbor.RawMessage(p))
	}
	payload, err := wire.Marshal(&req)
	if err != nil {
		return bulkhead.Reply{}, fmt.Errorf("%w: %v", bulkhead.ErrEncoding, err)
	}
	exclude := map[string]bool{}
	for {
		rep, retry, err := c.try(ctx, method, payload, exclude)
		if !retry {
			if errors.Is(err, ErrNodeLost) {
				c.nodeLost.Add(1)
			}
			return rep, err
		}
		c.retried.Add(1)
	}
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{Retried: c.retried.Load(), NodeLost: c.nodeLost.Load()}
}

// try sends the call once, to the chosen node or, knowing none, to the
// queue group. retry: it was not started there; send it again.
func (c *Client) try(ctx context.Context, method string, payload []byte, exclude map[string]bool) (bulkhead.Reply, bool, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return bulkhead.Reply{}, false, bulkhead.ErrClosed
	}
	n := c.pickLocked(exclude)
	if n == nil && len(exclude) > 0 {
		// Every node it knows refused it: wait for one to appear (a
		// rolling restart) or for the heartbeats to tell again.
		changed := c.changed
		c.mu.Unlock()
		return c.waitNode(ctx, method, changed, exclude)
	}
	c.next++
	id := c.next
	p := &pending{ev: make(chan event, 3)}
	subject := c.s.call()
	if n != nil {
		p.node, subject = n.id, c.s.node(n.id)
		n.mine++
	}
	c.calls[id] = p
	c.mu.Unlock()
	defer c.done(n)
	if c.opts.OnSend != nil {
		c.opts.OnSend(p.node)
	}
	m := &nats.Msg{Subject: subject, Reply: c.inbox + "c." + strconv.FormatUint(id, 10), Data: payload, Header: nats.Header{}}
	if dl, ok := ctx.Deadline(); ok {
		m.Header.Set(HeaderTimeout, timeoutHeader(time.Until(dl)))
	}
	if err := c.nc.PublishMsg(m); err != nil {
		c.forget(id)
		return bulkhead.Reply{}, false, fmt.Errorf("%w: %v", bulkhead.ErrClosed, err)
	}
	return c.wait(ctx, method, id, p, exclude)
}

// waitNode waits for a node to appear, or a heartbeat's time.
func (c *Client) waitNode(ctx context.Context, method string, changed chan struct{}, exclude map[string]bool) (bulkhead.Reply, bool, error) {
	t := time.NewTimer(c.opts.Heartbeat)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
		return bulkhead.Reply{}, false, &bulkhead.CanceledError{Method: method, Err: ctx.Err(), ExitCode: -1,
			Reason: "no node would take it"}
	}
	clear(exclude)
	return bulkhead.Reply{}, true, nil
}

func (c *Client) done(n *nodeState) {
	if n != nil {
		c.mu.Lock()
		n.mine--
		c.mu.Unlock()
	}
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.calls, id)
	c.mu.Unlock()
}

// wait waits for the call's answer, its node's loss, or ctx.
func (c *Client) wait(ctx context.Context, method string, id uint64, p *pending, exclude map[string]bool) (bulkhead.Reply, bool, error) {
	started := false
	for {
		select {
		case ev := <-p.ev:
			switch ev.kind {
			case evStarted:
				started = true
				continue
			case evFinal:
				r, err := decodeAnswer(ev.msg)
				return r, false, err
			case evRefused:
				exclude[p.node] = true
				return bulkhead.Reply{}, true, nil
			case evLost:
				if !started {
					exclude[p.node] = true
					return bulkhead.Reply{}, true, nil
				}
				return bulkhead.Reply{}, false, &NodeLostError{Node: p.node, Method: method,
					Reason: "the NATS server dropped the node while it ran the call"}
			case evClosed:
				return bulkhead.Reply{}, false, bulkhead.ErrClosed
			}
		case <-ctx.Done():
			c.forget(id)
			if started && p.node != "" && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// The deadline travelled; a cancellation is told.
				c.nc.PublishMsg(&nats.Msg{Subject: c.s.node(p.node), Header: nats.Header{HeaderCancel: {c.inbox + "c." + strconv.FormatUint(id, 10)}}})
			}
			return bulkhead.Reply{}, false, &bulkhead.CanceledError{Method: method, Err: ctx.Err(), ExitCode: -1,
				Started: started, Reason: "its ctx ended while a node had it (the deadline travelled with it)"}
		}
	}
}

// decodeAnswer turns a node's final message into a reply or an error.
func decodeAnswer(m *nats.Msg) (bulkhead.Reply, error) {
	switch m.Header.Get(HeaderStatus) {
	case statusResult:
		if err := wire.CheckValue(m.Data); err != nil {
			return bulkhead.Reply{}, fmt.Errorf("%w: result: %v", clientwire.ErrProtocol, err)
		}
		return bulkhead.NewReply(m.Data), nil
	case statusError:
		return bulkhead.Reply{}, clientwire.DecodeError(m.Data)
	}
	return bulkhead.Reply{}, fmt.Errorf("%w: a node's answer of status %q", clientwire.ErrProtocol, m.Header.Get(HeaderStatus))
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
