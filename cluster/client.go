package cluster

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/nats-io/nuid"
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
	// ReleaseTimeout bounds an object's Release. Zero value: 10 s.
	ReleaseTimeout time.Duration
	// NoNodeWait is how long a call waits while no node serves the pool
	// (none is known, or every one refused it) before it fails with an
	// error matching client.ErrNotFound. Zero value: 5 s. A call's own
	// deadline, if sooner, ends it first.
	NoNodeWait time.Duration
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
	Held     uint64 // calls that waited in the client, every node's workers running its other calls
}

// ReconnectInterval is how long Dial's connection, and a node's in
// bulkhead serve, waits between tries to reach its NATS server again
// (nats.go's default is 2 s): a NATS server's restart stalls calls about
// this long.
const ReconnectInterval = 250 * time.Millisecond

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
	inbox string    // this client's inbox prefix, ending in "."
	id    string    // names the client's sessions on nodes (HeaderClient)
	born  time.Time // when New made it: after two heartbeats it knows every live node

	retried, nodeLost, held atomic.Uint64

	subs []*nats.Subscription
	stop chan struct{}
	wg   sync.WaitGroup // the monitor

	mu         sync.Mutex
	nodes      map[string]*nodeState
	gone       map[string]time.Time // nodes found lost, ignored for LostAfter
	calls      map[uint64]*pending
	ending     map[*Subscription]struct{} // subscriptions whose node's end waits for its last events
	conns      uint64                     // the connection's reconnects, as last looked (connChangedLocked)
	grace      time.Time                  // until then no node is found lost: the connection was remade
	rotNames   map[string]target          // the names this client registered: their objects' node and session
	losses     uint64                     // nodes found lost so far
	lostAt     map[string]uint64          // the losses count when each node was found lost
	next       uint64
	changed    chan struct{}     // closed and replaced when a node appears
	freed      chan struct{}     // nil, or closed when a worker may have freed: a call ended, a heartbeat came
	onHold     func()            // tests: called as a call starts to wait for freed
	onProbeOut func(nats.Status) // tests: called, under mu, as a probe goes out, with the connection's status
	closed     bool
}

// pending is a call in flight.
type pending struct {
	node    string        // "" until known (sent to the queue group)
	group   bool          // sent to the queue group: the node says started before it runs it
	queued  bool          // the node said it waits for a worker: it says started before it runs it
	started bool          // the node said started (or the connection was remade since it said queued)
	conn    uint64        // the client's conns when it was sent
	sub     *Subscription // a subscription's request: its events come on the object's events subject
	acked   bool          // the subscription's answer came: the next message on the reply subject ends it
	ev      chan event    // never blocks: at most three events per call
}

type eventKind int

const (
	evFinal   eventKind = iota // a result or an error: msg
	evRefused                  // not started: send it elsewhere
	evResend                   // not started: send it again, anywhere
	evLost                     // its node is gone
	evClosed                   // the client closed
)

type event struct {
	kind eventKind
	msg  *nats.Msg
}

// Dial connects to the NATS server at url (nats.Options as nats.Connect
// takes them: credentials, TLS, NKeys) and returns a client of pool; Close
// closes the connection. The connection reconnects for as long as the
// client lives, every ReconnectInterval, as a node's does: nats.go's own
// default gives up after 60 tries, two minutes, and a client of a NATS
// server down that long would be closed for good. nopts come after these
// and override them.
func Dial(ctx context.Context, url, pool string, opts Options, nopts ...nats.Option) (*Client, error) {
	nc, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(ReconnectInterval)}, nopts...)...)
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

// New returns a client of pool on nc, which stays the caller's. pool ""
// is a client of objects alone (CreateInstance).
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
	if opts.ReleaseTimeout <= 0 {
		opts.ReleaseTimeout = 10 * time.Second
	}
	if opts.NoNodeWait <= 0 {
		opts.NoNodeWait = 5 * time.Second
	}
	err := checkName("prefix", opts.Prefix)
	if pool != "" {
		err = errors.Join(err, checkName("pool", pool))
	}
	if err != nil {
		return nil, err
	}
	c := &Client{nc: nc, s: subjects{prefix: opts.Prefix, pool: pool}, opts: opts, inbox: nc.NewInbox() + ".",
		id: nuid.Next(), born: time.Now(), stop: make(chan struct{}), nodes: make(map[string]*nodeState), gone: make(map[string]time.Time),
		calls: make(map[uint64]*pending), ending: make(map[*Subscription]struct{}), changed: make(chan struct{}), rotNames: make(map[string]target),
		lostAt: make(map[string]uint64)}
	// One subscription takes every answer and probe reply, so that they
	// are handled in the order the NATS server sent them: a node's
	// "started" is always seen before the probe that finds it gone.
	subs := []struct {
		subject string
		h       nats.MsgHandler
	}{
		{c.inbox + ">", c.onInbox},
		{c.s.objLoad(), func(m *nats.Msg) { c.onLoad(m, false) }},
		{c.s.client(c.id), c.onNodeProbe},
	}
	if pool != "" {
		subs = append(subs, struct {
			subject string
			h       nats.MsgHandler
		}{c.s.load(), func(m *nats.Msg) { c.onLoad(m, true) }})
	}
	for _, sub := range subs {
		s, err := nc.Subscribe(sub.subject, sub.h)
		if err != nil {
			for _, s := range c.subs {
				s.Unsubscribe()
			}
			return nil, err
		}
		c.subs = append(c.subs, s)
	}
	c.wg.Add(1)
	go c.monitor()
	return c, nil
}

// onNodeProbe answers a node that asks whether this client lives, to keep
// the client's objects there.
func (c *Client) onNodeProbe(m *nats.Msg) { c.answerProbe(m) }

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
	c.wakeLocked() // held calls see closed
	ending := c.ending
	c.ending = map[*Subscription]struct{}{}
	c.mu.Unlock()
	for s := range ending {
		s.end(bulkhead.ErrClosed) // a no-op for one its events ended
	}
	close(c.stop)
	c.wg.Wait()
	for _, s := range c.subs {
		s.Unsubscribe()
	}
	for _, p := range calls {
		if p.acked {
			p.sub.end(bulkhead.ErrClosed)
			continue
		}
		p.ev <- event{kind: evClosed}
	}
	if c.own {
		c.nc.Close()
	}
	return nil
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
	case p.acked:
		delete(c.calls, id)
		c.mu.Unlock()
		p.sub.endOnReply(m, noResponders)
		return
	case p.sub != nil && st == statusResult:
		p.acked = true
		ev = event{kind: evFinal, msg: m}
	case st == statusResend:
		delete(c.calls, id)
		ev.kind = evResend
	case noResponders || st == statusRefused:
		delete(c.calls, id)
		ev.kind = evRefused
		if n := c.nodes[p.node]; n != nil {
			n.draining = true
			c.probeLocked(n) // gone, or only draining? the probe tells
		}
	case st == statusStarted || st == statusQueued:
		// Recorded, not sent: the caller reads it when the call ends,
		// which saves waking it up once per call.
		if p.node == "" {
			p.node = m.Header.Get(HeaderNode)
		}
		p.started = p.started || st == statusStarted
		p.queued = p.queued || st == statusQueued
		c.mu.Unlock()
		return
	default:
		delete(c.calls, id)
		ev = event{kind: evFinal, msg: m}
	}
	c.mu.Unlock()
	p.ev <- ev
}

// Call runs method on a node of the pool, as Pool.Call does in-process.
func (c *Client) Call(ctx context.Context, method string, args ...any) (bulkhead.Reply, error) {
	if c.s.pool == "" {
		return bulkhead.Reply{}, fmt.Errorf("%w: this client was dialed with no pool", clientwire.ErrNotFound)
	}
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
	if max := c.nc.MaxPayload(); int64(len(payload)) > max-maxHeaders {
		return bulkhead.Reply{}, fmt.Errorf("%w: %w: the call is %d bytes, over the NATS server's max_payload (%d bytes, less %d for headers)",
			bulkhead.ErrEncoding, wire.ErrTooLarge, len(payload), max, maxHeaders)
	}
	exclude := map[string]bool{}
	var since time.Time // since when no node would take it
	wasHeld := false    // counted in Stats.Held
	for {
		rep, next, err := c.try(ctx, method, payload, exclude, &wasHeld)
		switch {
		case next == finished:
			if errors.Is(err, ErrNodeLost) {
				c.nodeLost.Add(1)
			}
			return rep, err
		case next == resend:
			c.retried.Add(1)
			since = time.Time{}
		case next == held:
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= c.opts.NoNodeWait:
			return bulkhead.Reply{}, fmt.Errorf("%w: no node serves pool %q (none took the call for %v)",
				clientwire.ErrNotFound, c.s.pool, c.opts.NoNodeWait)
		}
	}
}

// maxHeaders is what a request's headers may take of NATS's max_payload
// (a deadline, a reply subject; NATS counts headers in).
const maxHeaders = 512

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{Retried: c.retried.Load(), NodeLost: c.nodeLost.Load(), Held: c.held.Load()}
}

// outcome is what a try left to do.
type outcome int

const (
	finished outcome = iota // the call ended: its reply or error
	resend                  // a node did not start it: send it again
	noNode                  // no node would take it: try again, up to NoNodeWait
	held                    // no node had a worker free: try again
)

// try sends the call once, to the chosen node or, knowing none, to the
// queue group.
func (c *Client) try(ctx context.Context, method string, payload []byte, exclude map[string]bool, wasHeld *bool) (bulkhead.Reply, outcome, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return bulkhead.Reply{}, finished, bulkhead.ErrClosed
	}
	n := c.pickLocked(exclude)
	if n != nil && c.fullLocked(exclude) {
		return c.hold(ctx, method, wasHeld)
	}
	if n == nil && len(exclude) > 0 {
		// Every node it knows refused it: wait for one to appear (a
		// rolling restart) or for the heartbeats to tell again.
		changed := c.changed
		c.mu.Unlock()
		return c.waitNode(ctx, method, changed, exclude)
	}
	node, subject := "", c.s.call()
	if n != nil {
		node, subject = n.id, c.s.node(n.id)
		n.mine++
	}
	id, p := c.registerLocked(node)
	c.mu.Unlock()
	defer c.done(n)
	if c.opts.OnSend != nil {
		c.opts.OnSend(p.node)
	}
	// started: the node may have run the call. One sent to a node's own
	// subject runs at once if it finds a worker, and says nothing first;
	// only one the node said it queued, or one of the queue group, is
	// known not started until the node says started.
	ev, started, err := c.exchange(ctx, id, p, c.message(ctx, subject, id, payload))
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		return bulkhead.Reply{}, finished, fmt.Errorf("%w: %w: %v", bulkhead.ErrEncoding, wire.ErrTooLarge, err)
	case err != nil && ctx.Err() == nil:
		return bulkhead.Reply{}, finished, fmt.Errorf("%w: %v", bulkhead.ErrClosed, err)
	case err != nil:
		if p.node != "" && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The deadline travelled; a cancellation is told.
			c.nc.PublishMsg(&nats.Msg{Subject: c.s.node(p.node), Header: nats.Header{HeaderCancel: {c.reply(id)}}})
		}
		if p.node == "" { // sent to the queue group, and no node said it took it
			return bulkhead.Reply{}, finished, c.unserved(&bulkhead.CanceledError{Method: method, Err: ctx.Err(), ExitCode: -1,
				Reason: c.because("its ctx ended before any node took it", p.conn)})
		}
		return bulkhead.Reply{}, finished, &bulkhead.CanceledError{Method: method, Err: ctx.Err(), ExitCode: -1,
			Started: started, Reason: c.because("its ctx ended while a node had it (the deadline travelled with it)", p.conn)}
	}
	switch ev.kind {
	case evFinal:
		r, err := decodeAnswer(ev.msg)
		return r, finished, err
	case evResend:
		return bulkhead.Reply{}, resend, nil
	case evRefused:
		exclude[p.node] = true
		if p.node == "" { // the queue group: no node serves the pool
			return bulkhead.Reply{}, noNode, nil
		}
		return bulkhead.Reply{}, resend, nil
	case evLost:
		if !started {
			exclude[p.node] = true
			return bulkhead.Reply{}, resend, nil
		}
		return bulkhead.Reply{}, finished, &NodeLostError{Node: p.node, Method: method,
			Reason: "the NATS server dropped the node, which may have run the call"}
	}
	return bulkhead.Reply{}, finished, bulkhead.ErrClosed
}

// fullLocked: every live node's workers run a call of this client's. A
// call then waits in the client for one of them to end (or a heartbeat to
// tell of more workers) rather than in a node's queue: it is not sent
// until a worker is free for it, and a node lost meanwhile costs it
// nothing. Calls of other clients are the nodes' to queue.
func (c *Client) fullLocked(exclude map[string]bool) bool {
	if c.opts.Random {
		return false
	}
	now := time.Now()
	for _, n := range c.nodes {
		if n.pool && !n.draining && !exclude[n.id] && now.Sub(n.seen) <= c.opts.LostAfter &&
			(n.workers == 0 || int64(n.mine) < n.workers) {
			return false
		}
	}
	return true
}

// hold waits, mu held on entry and released, for a call of this client's
// to end or a heartbeat, or ctx's end.
func (c *Client) hold(ctx context.Context, method string, wasHeld *bool) (bulkhead.Reply, outcome, error) {
	if c.freed == nil {
		c.freed = make(chan struct{})
	}
	freed := c.freed
	c.mu.Unlock()
	if !*wasHeld {
		*wasHeld = true
		c.held.Add(1)
	}
	if c.onHold != nil {
		c.onHold()
	}
	select {
	case <-freed:
		return bulkhead.Reply{}, held, nil
	case <-ctx.Done():
		return bulkhead.Reply{}, finished, &bulkhead.CanceledError{Method: method, Err: ctx.Err(), ExitCode: -1,
			Reason: c.because("it waited in the client while every node's workers ran its other calls; nothing was sent", c.conns)}
	}
}

// because is why for a call that ended by its ctx, and that the client's
// connection to NATS was down then, if it was: the likelier cause.
func (c *Client) because(why string, conns uint64) string {
	if st := c.nc.Status(); st != nats.CONNECTED {
		return why + "; the client's connection to NATS was " + strings.ToLower(st.String()) + " then"
	}
	if c.nc.Stats().Reconnects != conns {
		return why + "; the client's connection to NATS was remade meanwhile"
	}
	return why
}

// registerLocked makes a call pending, on node ("": not known yet).
func (c *Client) registerLocked(node string) (uint64, *pending) {
	c.next++
	p := &pending{node: node, group: node == "", conn: c.conns, ev: make(chan event, 1)}
	c.calls[c.next] = p
	return c.next, p
}

func (c *Client) reply(id uint64) string { return c.inbox + "c." + strconv.FormatUint(id, 10) }

// message is a request of call id to subject, with the time ctx has left.
func (c *Client) message(ctx context.Context, subject string, id uint64, payload []byte) *nats.Msg {
	m := &nats.Msg{Subject: subject, Reply: c.reply(id), Data: payload, Header: nats.Header{}}
	if dl, ok := ctx.Deadline(); ok {
		m.Header.Set(HeaderTimeout, timeoutHeader(time.Until(dl)))
	}
	return m
}

// exchange publishes m as call id and waits for its end: the event that
// ended it (a final answer, a refusal, its node's loss, the client's
// Close), or ctx's end (err is ctx's, or the publish's), and whether the
// node may have started it.
func (c *Client) exchange(ctx context.Context, id uint64, p *pending, m *nats.Msg) (ev event, started bool, err error) {
	if err := c.nc.PublishMsg(m); err != nil {
		c.forget(id)
		return event{}, false, err
	}
	select {
	case ev = <-p.ev:
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.mu.Lock()
	if err != nil {
		delete(c.calls, id)
	}
	started = p.started || !p.queued && !p.group // and p.node, written under mu too
	c.mu.Unlock()
	return ev, started, err
}

// waitNode waits for a node to appear, or a heartbeat's time.
func (c *Client) waitNode(ctx context.Context, method string, changed chan struct{}, exclude map[string]bool) (bulkhead.Reply, outcome, error) {
	t := time.NewTimer(c.opts.Heartbeat)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
		return bulkhead.Reply{}, finished, c.unserved(&bulkhead.CanceledError{Method: method, Err: ctx.Err(), ExitCode: -1,
			Reason: "no node would take it (none serves the pool, or every one refused it)"})
	}
	clear(exclude)
	return bulkhead.Reply{}, noNode, nil
}

// unserved is err, a call that ended by its ctx with no node taking it,
// matching ErrNotFound too if the client has heard of no node of the pool
// (a typo of its name, or nothing up yet).
func (c *Client) unserved(err *bulkhead.CanceledError) error {
	if len(c.NodeLoads()) == 0 {
		return fmt.Errorf("%w: no node serves pool %q: %w", clientwire.ErrNotFound, c.s.pool, err)
	}
	return err
}

func (c *Client) done(n *nodeState) {
	if n != nil {
		c.mu.Lock()
		n.mine--
		c.wakeLocked()
		c.mu.Unlock()
	}
}

// wakeLocked wakes the calls waiting for a free worker, if any.
func (c *Client) wakeLocked() {
	if c.freed != nil {
		close(c.freed)
		c.freed = nil
	}
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.calls, id)
	c.mu.Unlock()
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
