package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// ObjectBackend is a Backend that also serves objects of class servers
// (activation); *daemon.Server is one when its config has servers.
type ObjectBackend interface {
	// Activator is the backend's activator; nil: no class servers.
	Activator() *activation.Activator
}

// Bounds of what one client may hold on one node, and of the object
// requests a node runs at once: anyone allowed to publish on the subjects
// may send them.
const (
	maxSessions   = 4096
	maxHandles    = 65536
	maxObjectOps  = 4096
	sessionLeases = 50 // a session's lease, in heartbeats: it ends if its client stops answering probes (a partition); a client gone ends it at once
)

// HeaderEpoch, on an object request, is the epoch of the client's
// session it is about: the count of nodes the client had found lost when
// it asked for the object (0 if absent). A client's objects of different
// epochs live in different sessions on a node, so that the client can
// say, of one, that it is gone (it found the node lost since) while
// keeping the other (made after the node came back).
const HeaderEpoch = "Bulkhead-Epoch"

// statusGone answers a node's probe of a session the client has given up:
// it found the node lost since the session's epoch began.
const statusGone = "gone"

// sessionKey names client's session of epoch on a node: one subject
// token (client is checkName's, epoch digits, so the split at the last
// '-' is unique).
func sessionKey(client string, epoch uint64) string {
	return client + "-" + strconv.FormatUint(epoch, 10)
}

// parseEpoch reads HeaderEpoch: absent is 0.
func parseEpoch(h nats.Header) (uint64, error) {
	v := h.Get(HeaderEpoch)
	if v == "" {
		return 0, nil
	}
	e, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q", clientwire.ErrBadRequest, HeaderEpoch, v)
	}
	return e, nil
}

// objSession is one client's activation session (of one epoch) on a
// node, with the handles it holds.
type objSession struct {
	id      string // sessionKey(client, epoch)
	client  string
	epoch   string
	swept   bool // ended (by its lease), and its subscriptions removed; under Node.mu
	sess    *activation.Session
	handles map[uint64]any // *activation.Object or *activation.ClassObject
	next    uint64
}

// objects serves a node's class servers: the "objects" micro service,
// with "activate" in the queue group and "object" on the node's subject.
type objects struct {
	act      *activation.Activator
	svc      micro.Service
	probes   *nats.Subscription // the clients' answers to the node's probes
	inbox    string             // their subjects' prefix, ending in "."
	sessions map[string]*objSession
	running  int                   // object requests running now
	subs     map[string]*forwarder // event subscriptions, by their requests' reply subjects
	fwds     map[objID]*forwarder  // the objects' forwarders, of the objects with subscribers
	gen      uint64                // the last forwarder's generation
	subWG    sync.WaitGroup        // the forwarders
	closing  bool                  // the node closes: subscriptions end disconnected
	secret   []byte                // keys the events subjects
	fwdSess  *activation.Session   // the forwarders' own handles
}

// addObjects registers the objects service when the backend has class
// servers.
func (n *Node) addObjects() error {
	ob, ok := n.b.(ObjectBackend)
	if !ok || ob.Activator() == nil {
		return nil
	}
	s := subjects{prefix: n.cfg.Prefix}
	o := &objects{act: ob.Activator(), sessions: make(map[string]*objSession), inbox: n.nc.NewInbox() + ".",
		subs: make(map[string]*forwarder), fwds: make(map[objID]*forwarder), secret: newEventsKeyer()}
	var err error
	if o.fwdSess, err = o.act.NewSession(activation.SessionConfig{}); err != nil {
		return err
	}
	if o.probes, err = n.nc.Subscribe(o.inbox+"*", n.onClientProbe); err != nil {
		o.fwdSess.Close()
		return err
	}
	o.svc, err = micro.AddService(n.nc, micro.Config{Name: "bulkhead-objects", Version: n.cfg.Version,
		Description: "bulkhead class servers", QueueGroup: s.queueGroup(), Metadata: map[string]string{"node": n.cfg.ID}})
	if err == nil {
		h := micro.HandlerFunc(n.handleObject)
		err = o.svc.AddEndpoint("activate", h, micro.WithEndpointSubject(s.activate()))
		if err == nil {
			err = o.svc.AddEndpoint("object", h, micro.WithEndpointSubject(s.object(n.cfg.ID)), micro.WithEndpointQueueGroup(s.queueGroup()))
		}
		if err == nil {
			err = o.svc.AddEndpoint("rot", micro.HandlerFunc(n.onHas), micro.WithEndpointSubject(s.rot()), micro.WithEndpointQueueGroupDisabled())
		}
		if err != nil {
			o.svc.Stop()
		}
	}
	if err != nil {
		o.probes.Unsubscribe()
		o.fwdSess.Close()
		return err
	}
	n.obj = o
	return nil
}

// handleObject takes one object request off the subscription: checks it,
// then runs it on a goroutine of its own, within maxObjectOps.
func (n *Node) handleObject(r micro.Request) {
	reply := r.Reply()
	if c := r.Headers().Get(HeaderCancel); c != "" {
		n.cancelSubscription(c)
		return
	}
	if reply == "" {
		return
	}
	var req clientwire.Request
	err := clientwire.Decode(r.Data(), &req)
	client := r.Headers().Get(HeaderClient)
	timeout, terr := parseTimeout(nats.Header(r.Headers()), n.cfg.MaxDeadline)
	epoch, eerr := parseEpoch(nats.Header(r.Headers()))
	events := r.Headers().Get(HeaderEvents)
	if len(events) > 256 {
		eerr = errors.Join(eerr, fmt.Errorf("%w: %s of %d bytes", clientwire.ErrBadRequest, HeaderEvents, len(events)))
	}
	if err == nil {
		err = checkName("client", client)
	}
	if err == nil {
		err = errors.Join(terr, eerr)
	}
	if err != nil {
		n.answerErr(reply, fmt.Errorf("%w: %v", clientwire.ErrBadRequest, err))
		return
	}
	n.mu.Lock()
	switch {
	case n.draining:
		n.mu.Unlock()
		n.nc.PublishMsg(n.msg(reply, statusRefused, nil))
		return
	case n.obj.running >= maxObjectOps:
		n.mu.Unlock()
		n.answerErr(reply, &bulkhead.OverloadedError{Method: req.Op, Queued: maxObjectOps,
			Reason: fmt.Sprintf("node %s runs %d object requests at once", n.cfg.ID, maxObjectOps)})
		return
	}
	n.obj.running++
	n.total++
	n.calls.Add(1)
	n.mu.Unlock()
	if r.Subject() == (subjects{prefix: n.cfg.Prefix}).activate() {
		// Tells the client which node has it, so that the node's loss ends
		// its wait; nothing runs twice because of it (an activation on a
		// lost node is orphaned there, and released with the session).
		n.nc.PublishMsg(n.msg(reply, statusStarted, nil))
	}
	go n.runObject(reply, sessionKey(client, epoch), events, &req, timeout)
}

// runObject carries out one object request and answers it.
func (n *Node) runObject(reply, client, events string, req *clientwire.Request, timeout time.Duration) {
	defer func() {
		n.mu.Lock()
		n.obj.running--
		n.total--
		n.idleLocked()
		n.mu.Unlock()
		n.calls.Done()
	}()
	if req.Op == clientwire.OpSubscribe {
		if err := n.subscribe(reply, client, events, req); err != nil {
			n.answerErr(reply, err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(n.base, timeout)
	defer cancel()
	rep, err := n.objectOp(ctx, client, req)
	if err != nil {
		n.answerErr(reply, err)
		return
	}
	if r, ok := rep.(bulkhead.Reply); ok {
		n.answerResult(reply, req.Method, r)
		return
	}
	p, err := wire.Marshal(rep)
	if err != nil {
		n.answerErr(reply, err)
		return
	}
	n.nc.PublishMsg(n.msg(reply, statusResult, p))
}

// objectOp is one op: a bulkhead.Reply for object_call, else a
// clientwire.Reply.
func (n *Node) objectOp(ctx context.Context, client string, req *clientwire.Request) (any, error) {
	args := rawArgs(req.Args)
	switch req.Op {
	case clientwire.OpCreateInstance, clientwire.OpGetClassObject:
		if req.Class == "" {
			return nil, fmt.Errorf("%w: %s needs class", clientwire.ErrBadRequest, req.Op)
		}
		s, err := n.session(client, true)
		if err != nil {
			return nil, err
		}
		if req.Op == clientwire.OpCreateInstance {
			o, err := s.sess.CreateInstance(ctx, req.Class, args...)
			return n.hold(s, o, err)
		}
		co, err := s.sess.GetClassObject(ctx, req.Class)
		return n.hold(s, co, err)
	case clientwire.OpObjectCall:
		o, err := objHandle[*activation.Object](n, client, req.Object)
		if err != nil {
			return nil, err
		}
		if req.Method == "" {
			return nil, fmt.Errorf("%w: object_call needs method", clientwire.ErrBadRequest)
		}
		return o.Call(ctx, req.Method, args...)
	case clientwire.OpClone:
		o, err := objHandle[*activation.Object](n, client, req.Object)
		if err != nil {
			return nil, err
		}
		s, err := n.session(client, false)
		if err != nil {
			return nil, err
		}
		c, err := o.Clone()
		return n.hold(s, c, err)
	case clientwire.OpClassCreateInstance:
		co, err := objHandle[*activation.ClassObject](n, client, req.ClassObject)
		if err != nil {
			return nil, err
		}
		s, err := n.session(client, false)
		if err != nil {
			return nil, err
		}
		o, err := co.CreateInstance(ctx, args...)
		return n.hold(s, o, err)
	case clientwire.OpLockServer:
		co, err := objHandle[*activation.ClassObject](n, client, req.ClassObject)
		if err != nil {
			return nil, err
		}
		return clientwire.Reply{}, co.LockServer(req.Lock)
	case clientwire.OpRelease:
		return clientwire.Reply{}, n.release(client, req.Handle)
	case clientwire.OpROTRegister, clientwire.OpROTLookup, clientwire.OpROTRevoke:
		return n.rot(client, req)
	}
	return nil, fmt.Errorf("%w: op %q is not served over NATS", clientwire.ErrBadRequest, req.Op)
}

// rot is the running object table's ops, on this node's table.
func (n *Node) rot(client string, req *clientwire.Request) (any, error) {
	if req.Name == "" {
		return nil, fmt.Errorf("%w: %s needs name", clientwire.ErrBadRequest, req.Op)
	}
	s, err := n.session(client, req.Op == clientwire.OpROTLookup)
	if err != nil {
		return nil, err
	}
	switch req.Op {
	case clientwire.OpROTRegister:
		o, err := objHandle[*activation.Object](n, client, req.Object)
		if err != nil {
			return nil, err
		}
		return clientwire.Reply{}, s.sess.Register(req.Name, o, req.KeepAlive)
	case clientwire.OpROTRevoke:
		return clientwire.Reply{}, s.sess.Revoke(req.Name)
	}
	o, err := s.sess.Lookup(req.Name)
	if errors.Is(err, activation.ErrNotRegistered) {
		return nil, fmt.Errorf("%w: %q is not registered on node %s", clientwire.ErrNotFound, req.Name, n.cfg.ID)
	}
	return n.hold(s, o, err)
}

// onHas answers whether a name is in this node's running object table,
// to a client looking for the node that has it: true or false, in CBOR.
func (n *Node) onHas(r micro.Request) {
	var req clientwire.Request
	if r.Reply() == "" || clientwire.Decode(r.Data(), &req) != nil || req.Name == "" {
		return
	}
	has := []byte{0xf4}
	if o, err := n.obj.act.Lookup(req.Name); err == nil {
		o.Release()
		has = []byte{0xf5}
	}
	n.nc.PublishMsg(n.msg(r.Reply(), statusResult, has))
}

// session is client's session, made on its first activation (again if
// its lease had ended it).
func (n *Node) session(client string, create bool) (*objSession, error) {
	n.mu.Lock()
	s := n.obj.sessions[client]
	n.mu.Unlock()
	if s != nil && (!create || s.sess.Err() == nil) {
		return s, nil
	}
	if !create {
		return nil, fmt.Errorf("%w: client %s holds nothing on node %s", clientwire.ErrNotFound, client, n.cfg.ID)
	}
	if s != nil { // its lease ended it: so did its subscriptions
		n.sessionEnded(client)
	}
	sess, err := n.obj.act.NewSession(activation.SessionConfig{Lease: sessionLeases * n.cfg.Heartbeat})
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	cur := n.obj.sessions[client]
	switch {
	case cur != nil && cur != s: // another activation made one meanwhile
		n.mu.Unlock()
		sess.Close()
		return cur, nil
	case cur == nil && len(n.obj.sessions) >= maxSessions:
		n.mu.Unlock()
		sess.Close()
		return nil, fmt.Errorf("%w: node %s has %d client sessions", clientwire.ErrLimit, n.cfg.ID, maxSessions)
	}
	i := strings.LastIndexByte(client, '-') // client is a sessionKey
	s = &objSession{id: client, client: client[:i], epoch: client[i+1:], sess: sess, handles: make(map[uint64]any)}
	n.obj.sessions[client] = s
	n.mu.Unlock()
	return s, nil
}

// hold gives x (an *activation.Object or *activation.ClassObject) a
// handle in s, within maxHandles.
func (n *Node) hold(s *objSession, x interface {
	PID() int
	Release() error
}, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	if len(s.handles) >= maxHandles || n.obj.sessions[s.id] != s {
		n.mu.Unlock()
		x.Release()
		return nil, fmt.Errorf("%w: %d handles held, or the session ended", clientwire.ErrLimit, maxHandles)
	}
	s.next++
	h := s.next
	s.handles[h] = x
	n.mu.Unlock()
	if _, ok := x.(*activation.ClassObject); ok {
		return clientwire.Reply{ClassObject: h, PID: x.PID()}, nil
	}
	return clientwire.Reply{Object: h, PID: x.PID()}, nil
}

// objHandle looks up client's handle h of type T.
func objHandle[T any](n *Node, client string, h uint64) (T, error) {
	n.mu.Lock()
	var x any
	if s := n.obj.sessions[client]; s != nil {
		x = s.handles[h]
	}
	n.mu.Unlock()
	t, ok := x.(T)
	if !ok {
		return t, fmt.Errorf("%w: no such handle %d of client %s on node %s", clientwire.ErrNotFound, h, client, n.cfg.ID)
	}
	return t, nil
}

// release gives up client's handle h.
func (n *Node) release(client string, h uint64) error {
	n.mu.Lock()
	var x any
	if s := n.obj.sessions[client]; s != nil {
		x = s.handles[h]
		delete(s.handles, h)
	}
	n.mu.Unlock()
	r, ok := x.(interface{ Release() error })
	if !ok {
		return fmt.Errorf("%w: no such handle %d of client %s on node %s", clientwire.ErrNotFound, h, client, n.cfg.ID)
	}
	if _, ok := x.(*activation.Object); ok {
		n.handleReleased(client, h)
	}
	return r.Release()
}

// probeClients asks every client with a session whether it lives, naming
// this node and the session's epoch: the answer renews the session's
// lease; "no responders" (the client exited), or "gone" (it found this
// node lost since the session began, a partition that healed), ends the
// session, releasing what the client held, as a socket client's exit
// does.
func (n *Node) probeClients() {
	if n.obj == nil {
		return
	}
	n.mu.Lock()
	probes := make([]*nats.Msg, 0, len(n.obj.sessions))
	var ended []string // by their leases since the last probes: their subscriptions go too
	s := subjects{prefix: n.cfg.Prefix}
	for id, sess := range n.obj.sessions {
		if !sess.swept && sess.sess.Err() != nil {
			sess.swept = true // kept, so that its client's requests get its error
			ended = append(ended, id)
		}
		probes = append(probes, &nats.Msg{Subject: s.client(sess.client), Reply: n.obj.inbox + id,
			Header: nats.Header{HeaderNode: {n.cfg.ID}, HeaderEpoch: {sess.epoch}}})
	}
	n.mu.Unlock()
	for _, id := range ended {
		n.sessionEnded(id)
	}
	for _, m := range probes {
		n.nc.PublishMsg(m)
	}
}

// onClientProbe is a client's answer to a probe.
func (n *Node) onClientProbe(m *nats.Msg) {
	id := m.Subject[len(n.obj.inbox):]
	noResponders := len(m.Data) == 0 && m.Header.Get("Status") == "503"
	gone := noResponders || m.Header.Get(HeaderStatus) == statusGone
	n.mu.Lock()
	s := n.obj.sessions[id]
	if s != nil && gone {
		delete(n.obj.sessions, id)
	}
	n.mu.Unlock()
	switch {
	case s == nil:
	case gone:
		n.sessionEnded(id)
		s.sess.Close()
	default:
		s.sess.Renew()
	}
}

// closeObjects ends the objects service and every client's session.
func (n *Node) closeObjects() {
	if n.obj == nil {
		return
	}
	n.obj.probes.Unsubscribe()
	n.closeSubscriptions()
	n.mu.Lock()
	sessions := n.obj.sessions
	n.obj.sessions = map[string]*objSession{}
	n.mu.Unlock()
	for _, s := range sessions {
		s.sess.Close()
	}
	n.obj.fwdSess.Close()
}
