package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
)

// Backend is what a node serves; *daemon.Server is one.
type Backend interface {
	// PoolNames lists the pools to serve.
	PoolNames() []string
	// CallPool runs one call on a pool; bulkhead.ErrClosed once draining.
	CallPool(ctx context.Context, pool, method string, args ...any) (bulkhead.Reply, error)
	// PoolCapacity is the number of a pool's workers serving calls now.
	PoolCapacity(pool string) int
	// PoolLimit is the most calls a pool takes at once (its workers and
	// its queue): a node runs at most that many of the pool's requests,
	// and answers more with *bulkhead.OverloadedError.
	PoolLimit(pool string) int
}

// NodeConfig tunes a Node. Every field's zero value is usable.
type NodeConfig struct {
	// ID names the node in its subjects and heartbeats. Zero value: a
	// random NUID, so that a restarted node is a new node.
	ID string
	// Prefix is the first token of every subject. Zero value: "bulkhead".
	Prefix string
	// Version is the micro services' version (semver). Zero value: "1.0.0".
	Version string
	// Heartbeat is how often the node publishes each pool's free workers.
	// Zero value: 100 ms.
	Heartbeat time.Duration
	// MaxDeadline bounds every call's time. Zero value: 5 minutes.
	MaxDeadline time.Duration
	// Logger receives the node's records. Zero value: slog.Default().
	Logger *slog.Logger
}

// Node serves a Backend's pools over NATS: each pool is a micro service
// (named by its pool) with two endpoints, "call" in the queue group and
// "node" on the node's own subject, and a heartbeat of its free workers.
// A call that finds a free worker runs at once; one that must wait says
// "queued", and is acknowledged as started, flushed to the NATS server,
// before it runs (admit.go; docs/DESIGN.md, "Cluster").
type Node struct {
	nc  *nats.Conn
	b   Backend
	cfg NodeConfig
	log *slog.Logger

	fl    flusher  // the start markers' flushes
	obj   *objects // nil: the backend serves no objects
	alive *nats.Subscription
	svcMu sync.Mutex    // serialises Sync and Drain, which register and stop services (I/O: never under mu)
	stop  chan struct{} // closed by Close: the heartbeat ends
	hbWG  sync.WaitGroup

	base    context.Context // every call's; canceled by Close
	cancelB context.CancelFunc

	mu       sync.Mutex
	pools    map[string]*poolSvc // served now, by name
	draining bool
	closed   bool
	cancels  map[string]context.CancelFunc // running calls by reply subject
	running  map[string]int                // calls taken, running or waiting, by pool
	gates    map[string]*gate              // each pool's admission (admit.go)
	total    int                           // calls taken
	idle     chan struct{}                 // closed once draining with no call running
	calls    sync.WaitGroup                // call goroutines
}

// NewNode registers b's pools on nc and starts the heartbeat. nc stays the
// caller's: close it after Close (closing it first is a partition).
func NewNode(nc *nats.Conn, b Backend, cfg NodeConfig) (*Node, error) {
	if cfg.ID == "" {
		cfg.ID = nuid.Next()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = defaultPrefix
	}
	if cfg.Version == "" {
		cfg.Version = "1.0.0"
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = defaultHeartbeat
	}
	if cfg.MaxDeadline <= 0 {
		cfg.MaxDeadline = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := errors.Join(checkName("node id", cfg.ID), checkName("prefix", cfg.Prefix)); err != nil {
		return nil, err
	}
	n := &Node{nc: nc, b: b, cfg: cfg, log: cfg.Logger.With("node", cfg.ID), stop: make(chan struct{}),
		running: make(map[string]int), gates: make(map[string]*gate), idle: make(chan struct{}), pools: make(map[string]*poolSvc),
		cancels: make(map[string]context.CancelFunc)}
	n.base, n.cancelB = context.WithCancel(context.Background())
	n.fl.nc = nc
	alive := subjects{prefix: cfg.Prefix}.alive(cfg.ID)
	if err := idFree(nc, cfg.ID, alive); err != nil {
		return nil, err
	}
	var err error
	// In a queue group, as the node's own endpoints: two nodes given one
	// id by mistake share its calls, never both run one.
	n.alive, err = nc.QueueSubscribe(alive, cfg.Prefix, n.onProbe)
	if err != nil {
		return nil, err
	}
	err = n.addObjects()
	if err == nil {
		err = n.Sync()
	}
	if err != nil {
		n.stopServices()
		n.closeObjects()
		n.alive.Unsubscribe()
		return nil, err
	}
	// Once NewNode returns, the NATS server has the node's subscriptions:
	// discovery and calls find it.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		n.stopServices()
		n.closeObjects()
		n.alive.Unsubscribe()
		return nil, err
	}
	n.hbWG.Add(1)
	go n.heartbeat()
	return n, nil
}

// ErrNodeIDInUse: NewNode found a live node with the id it was given.
var ErrNodeIDInUse = errors.New("cluster: node id in use")

// idFree asks whether a node answers probes of id: "no responders" says
// none does. Two nodes that start at once with one id may both pass; the
// queue groups of their subjects then keep them from both running a call.
func idFree(nc *nats.Conn, id, alive string) error {
	_, err := nc.Request(alive, nil, 2*time.Second)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil
	case err == nil:
		return fmt.Errorf("%w: a live node answers as %q on %s (a node id must be unique: leave it empty for a random one)", ErrNodeIDInUse, id, alive)
	case errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("%w: something listens on %s, as node %q, and does not answer", ErrNodeIDInUse, alive, id)
	}
	return fmt.Errorf("cluster: checking that node id %q is free: %w", id, err)
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// poolSvc is one pool's micro service on the node.
type poolSvc struct {
	s        subjects
	svc      micro.Service
	limit    int // the most of its requests taken at once (Backend.PoolLimit)
	capacity int // its workers serving calls, as of the last heartbeat (Backend.PoolCapacity)
}

// addPool registers pool p as a micro service.
func (n *Node) addPool(p string) (*poolSvc, error) {
	if err := checkName("pool", p); err != nil {
		return nil, err
	}
	s := subjects{prefix: n.cfg.Prefix, pool: p}
	svc, err := micro.AddService(n.nc, micro.Config{Name: s.service(), Version: n.cfg.Version,
		Description: "bulkhead pool " + p, QueueGroup: s.queueGroup(), Metadata: map[string]string{"node": n.cfg.ID}})
	if err != nil {
		return nil, err
	}
	err = svc.AddEndpoint("call", micro.HandlerFunc(func(r micro.Request) { n.handle(s, r, true) }),
		micro.WithEndpointSubject(s.call()))
	if err == nil {
		err = svc.AddEndpoint("node", micro.HandlerFunc(func(r micro.Request) { n.handle(s, r, false) }),
			micro.WithEndpointSubject(s.node(n.cfg.ID)), micro.WithEndpointQueueGroup(s.queueGroup()))
	}
	if err != nil {
		svc.Stop()
		return nil, err
	}
	return &poolSvc{s: s, svc: svc}, nil
}

// Sync makes the node serve the backend's pools as they are now: after a
// reload (SIGHUP), a new pool is registered on NATS and a removed one
// deregistered (it says draining in a last heartbeat, then leaves its
// subjects; the calls it took run to their end), without a restart. A
// changed pool keeps its subjects: its calls reach the new pool through
// the backend. Each pool's limit is read again. NewNode syncs once.
func (n *Node) Sync() error {
	n.svcMu.Lock()
	defer n.svcMu.Unlock()
	want := map[string]bool{}
	for _, p := range n.b.PoolNames() {
		want[p] = true
	}
	n.mu.Lock()
	if n.draining {
		n.mu.Unlock()
		return nil
	}
	var gone []*poolSvc
	for name, ps := range n.pools {
		if !want[name] {
			gone = append(gone, ps)
			delete(n.pools, name)
		}
	}
	have := maps.Clone(n.pools)
	n.mu.Unlock()
	var errs []error
	for _, ps := range gone {
		n.publishLoadOf(ps.s, load{Node: n.cfg.ID, Draining: true})
		errs = append(errs, ps.svc.Stop())
	}
	added := map[string]*poolSvc{}
	for p := range want {
		if have[p] != nil {
			continue
		}
		ps, err := n.addPool(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("pool %q: %w", p, err))
			continue
		}
		added[p] = ps
	}
	limits, capacities := map[string]int{}, map[string]int{}
	for p := range want {
		limits[p], capacities[p] = max(n.b.PoolLimit(p), 1), n.b.PoolCapacity(p)
	}
	n.mu.Lock()
	maps.Copy(n.pools, added)
	for p, ps := range n.pools {
		ps.limit = limits[p]
		if added[p] != nil {
			ps.capacity = capacities[p]
		}
	}
	n.mu.Unlock()
	// Once Sync returns, the NATS server has the new subscriptions.
	errs = append(errs, n.nc.FlushTimeout(5*time.Second))
	return errors.Join(errs...)
}

// onProbe answers a client that asks whether the node lives.
func (n *Node) onProbe(m *nats.Msg) {
	if m.Reply != "" {
		n.nc.PublishMsg(n.msg(m.Reply, statusAlive, nil))
	}
}

func (n *Node) msg(subject, status string, data []byte) *nats.Msg {
	return &nats.Msg{Subject: subject, Data: data, Header: nats.Header{HeaderStatus: {status}, HeaderNode: {n.cfg.ID}}}
}

// handle takes one request off the service's subscription: it refuses it
// while draining, else runs it on a goroutine of its own, at once if a
// worker is free, else once one is (admit.go). A request from the queue
// group always says started, flushed, before it runs: its client learns
// the node only from the node's answers.
func (n *Node) handle(s subjects, r micro.Request, group bool) {
	reply := r.Reply()
	if c := r.Headers().Get(HeaderCancel); c != "" {
		n.mu.Lock()
		cancel := n.cancels[c]
		n.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		return
	}
	if reply == "" {
		return // nobody to answer: a call must be able to say it started
	}
	req, timeout, err := n.check(s, r.Data(), nats.Header(r.Headers()))
	if err != nil {
		n.answerErr(reply, err)
		return
	}
	n.mu.Lock()
	ps := n.pools[s.pool]
	switch {
	case n.draining || ps == nil: // draining, or a reload removed the pool
		n.mu.Unlock()
		n.nc.PublishMsg(n.msg(reply, statusRefused, nil))
		return
	case n.running[s.pool] >= ps.limit:
		queued := n.running[s.pool]
		n.mu.Unlock()
		n.answerErr(reply, &bulkhead.OverloadedError{Method: req.Method, Queued: queued,
			Reason: fmt.Sprintf("node %s has %d calls of pool %s at once, its pool's workers and queue", n.cfg.ID, queued, s.pool)})
		return
	}
	g := n.gates[s.pool]
	if g == nil {
		g = &gate{}
		n.gates[s.pool] = g
	}
	w := g.enter(ps.capacity)
	n.running[s.pool]++
	n.total++
	n.calls.Add(1)
	n.mu.Unlock()
	var confirm *uint64 // the connection's reconnects when the call came
	if w != nil || group {
		r := n.nc.Stats().Reconnects
		confirm = &r
	}
	if w != nil {
		// Before the goroutine, so that "queued" precedes "started".
		n.nc.PublishMsg(n.msg(reply, statusQueued, nil))
	}
	go n.run(s, reply, req, timeout, w, confirm)
}

// check decodes and checks a call request, which anyone allowed to
// publish on the subject may have sent.
func (n *Node) check(s subjects, data []byte, h nats.Header) (*clientwire.Request, time.Duration, error) {
	var req clientwire.Request
	err := clientwire.Decode(data, &req)
	switch {
	case err != nil:
		err = fmt.Errorf("%w: %v", clientwire.ErrBadRequest, err)
	case req.Op != clientwire.OpCall || req.Pool != s.pool || req.Method == "":
		err = fmt.Errorf("%w: want op call, pool %q and a method", clientwire.ErrBadRequest, s.pool)
	}
	timeout, terr := parseTimeout(h, n.cfg.MaxDeadline)
	return &req, timeout, errors.Join(err, terr)
}

// run runs one call: waits for a worker if w is not nil, says started
// (flushed) if confirm is not nil, calls, answers.
func (n *Node) run(s subjects, reply string, req *clientwire.Request, timeout time.Duration, w *waiter, confirm *uint64) {
	defer func() {
		n.mu.Lock()
		n.running[s.pool]--
		n.total--
		n.idleLocked()
		n.mu.Unlock()
		n.calls.Done()
	}()
	ctx, cancel := context.WithTimeout(n.base, timeout)
	defer cancel()
	n.mu.Lock()
	n.cancels[reply] = cancel
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.cancels, reply)
		n.mu.Unlock()
	}()
	if !n.admit(ctx, s.pool, reply, w) {
		return
	}
	defer n.leave(s.pool)
	if confirm != nil && !n.confirmStart(ctx, reply, *confirm) {
		return
	}
	rep, err := n.b.CallPool(ctx, s.pool, req.Method, rawArgs(req.Args)...)
	if err != nil {
		n.answerErr(reply, err)
		return
	}
	n.answerResult(reply, req.Method, rep)
}

// answerResult answers with a call's result, and releases it.
func (n *Node) answerResult(reply, method string, r bulkhead.Reply) {
	raw := r.Raw()
	if raw == nil {
		raw = []byte{0xf6}
	}
	err := n.nc.PublishMsg(n.msg(reply, statusResult, raw)) // copied into the connection's buffer
	size := len(raw)
	r.Release()
	if errors.Is(err, nats.ErrMaxPayload) {
		// The call ran: an application error, as a worker's result too
		// large for its frame is, not ErrEncoding (nothing sent).
		n.answerErr(reply, &bulkhead.RemoteError{Code: bulkhead.CodeApplication, Method: method,
			Message: fmt.Sprintf("the call ran, but its result is %d bytes, over the NATS server's max_payload (%d bytes with headers)", size, n.nc.MaxPayload())})
	}
}

// rawArgs passes a request's arguments on as they came.
func rawArgs(args []cbor.RawMessage) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = a
	}
	return out
}

// answerErr answers with err as an ERROR map, and micro's error headers.
func (n *Node) answerErr(reply string, err error) {
	// A canceled call's report is complete once its worker is stopped, as
	// the daemon's; the client has returned at its own deadline already.
	var ce *bulkhead.CanceledError
	if errors.As(err, &ce) {
		ce.Wait()
	}
	m := clientwire.EncodeError(err)
	p, merr := wire.Marshal(m)
	if merr != nil {
		p, _ = cbor.Marshal(map[string]any{"kind": "internal", "message": err.Error()})
	}
	msg := n.msg(reply, statusError, p)
	msg.Header.Set(micro.ErrorCodeHeader, fmt.Sprint(m["kind"]))
	msg.Header.Set(micro.ErrorHeader, err.Error())
	n.nc.PublishMsg(msg)
}

// heartbeat publishes every pool's load until Close.
func (n *Node) heartbeat() {
	defer n.hbWG.Done()
	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	for beat := 0; ; beat++ {
		n.publishLoad()
		if beat%3 == 2 {
			n.probeClients()
		}
		select {
		case <-t.C:
		case <-n.stop:
			return
		}
	}
}

func (n *Node) publishLoad() {
	type one struct {
		s subjects
		l load
	}
	var out []one
	n.mu.Lock()
	for _, ps := range n.pools {
		out = append(out, one{ps.s, load{Node: n.cfg.ID, Draining: n.draining, Free: -int64(n.running[ps.s.pool])}})
	}
	n.mu.Unlock()
	if n.obj != nil {
		n.mu.Lock()
		l := load{Node: n.cfg.ID, Draining: n.draining}
		n.mu.Unlock()
		if p, err := wire.Marshal(l); err == nil {
			n.nc.Publish(subjects{prefix: n.cfg.Prefix}.objLoad(), p)
		}
	}
	for _, o := range out {
		c := n.b.PoolCapacity(o.s.pool)
		n.setCapacity(o.s.pool, c)
		o.l.Workers, o.l.Free = int64(c), o.l.Free+int64(c)
		n.publishLoadOf(o.s, o.l)
	}
}

func (n *Node) publishLoadOf(s subjects, l load) {
	if p, err := wire.Marshal(l); err == nil {
		n.nc.Publish(s.load(), p)
	}
}

// Drain takes the node out of service without losing a call: it says
// it drains (heartbeat), leaves the queue group and its own subjects
// (micro's Stop), then waits until ctx for the calls it started. Calls
// that reach it meanwhile are refused as not started, and their clients
// send them to another node. It does not close the backend.
func (n *Node) Drain(ctx context.Context) error {
	n.mu.Lock()
	n.draining = true
	for _, g := range n.gates {
		g.refuseAll() // not started: their clients send them elsewhere
	}
	n.idleLocked()
	n.mu.Unlock()
	n.publishLoad()
	flush(ctx, n.nc)
	err := n.stopServices()
	select {
	case <-n.idle:
		return err
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
}

// idleLocked closes idle once the node drains with no call running.
func (n *Node) idleLocked() {
	if n.draining && n.total == 0 {
		select {
		case <-n.idle:
		default:
			close(n.idle)
		}
	}
}

// stopServices takes the node off every pool's subjects (micro's Stop).
func (n *Node) stopServices() error {
	n.svcMu.Lock()
	defer n.svcMu.Unlock()
	n.mu.Lock()
	svcs := make([]micro.Service, 0, len(n.pools))
	for _, ps := range n.pools {
		svcs = append(svcs, ps.svc)
	}
	n.mu.Unlock()
	if n.obj != nil {
		svcs = append(svcs, n.obj.svc)
	}
	var errs []error
	for _, s := range svcs {
		if !s.Stopped() {
			errs = append(errs, s.Stop())
		}
	}
	return errors.Join(errs...)
}

// Close stops the node: Drain with no grace, then it cancels the calls
// still running and waits for them, and ends the heartbeat and the probe
// subscription. Once closed, a node stays closed.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := n.Drain(ctx)
	n.cancelB()
	n.calls.Wait()
	n.closeObjects()
	n.fl.wg.Wait()
	close(n.stop)
	n.hbWG.Wait()
	if uerr := n.alive.Unsubscribe(); uerr != nil && !errors.Is(uerr, nats.ErrConnectionClosed) {
		err = errors.Join(err, uerr)
	}
	// Once Close returns, the NATS server routes nothing more to the node:
	// a node with its id may start.
	if ferr := n.nc.FlushTimeout(time.Second); ferr != nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
		n.log.Debug("cluster node: the NATS server may not have its unsubscriptions yet", "err", ferr)
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
