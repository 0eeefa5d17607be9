package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
	"github.com/nats-io/nats.go"
)

// Object is a reference to an object in a class server of one node, as
// client.Object is of the local daemon's: every call and its Release go
// to that node. When the node is lost, the object is disconnected
// (activation.ErrObjectDisconnected, wrapping a *NodeLostError), as when
// its server crashes.
type Object struct {
	c     *Client
	node  string
	h     uint64
	pid   int
	class string
	born  uint64 // the client's losses count when it was asked for: a later loss of its node disconnects it for good
}

// ClassObject is a class handle in one node's class server.
type ClassObject struct {
	c     *Client
	node  string
	h     uint64
	pid   int
	class string
	born  uint64
}

// CreateInstance creates an object of class on a node that serves it
// (NATS's queue group chooses), as client.Client.CreateInstance does on
// the local daemon. An activation on a node lost meanwhile is made again
// on another; what it made there is released with the client's session.
func (c *Client) CreateInstance(ctx context.Context, class string, args ...any) (*Object, error) {
	born := c.epoch()
	node, rep, err := c.activate(ctx, born, &clientwire.Request{Op: clientwire.OpCreateInstance, Class: class}, args)
	if err != nil {
		return nil, err
	}
	return &Object{c: c, node: node, h: rep.Object, pid: rep.PID, class: class, born: born}, nil
}

// GetClassObject returns a handle to class in a running server of a node.
func (c *Client) GetClassObject(ctx context.Context, class string) (*ClassObject, error) {
	born := c.epoch()
	node, rep, err := c.activate(ctx, born, &clientwire.Request{Op: clientwire.OpGetClassObject, Class: class}, nil)
	if err != nil {
		return nil, err
	}
	return &ClassObject{c: c, node: node, h: rep.ClassObject, pid: rep.PID, class: class, born: born}, nil
}

// Call calls a method of the object on its node.
func (o *Object) Call(ctx context.Context, method string, args ...any) (bulkhead.Reply, error) {
	ans, err := o.c.pinned(ctx, o.target(), &clientwire.Request{Op: clientwire.OpObjectCall, Object: o.h, Method: method}, args, nil)
	if err != nil {
		return bulkhead.Reply{}, err
	}
	return decodeAnswer(ans)
}

// Clone returns a second reference to the same object.
func (o *Object) Clone(ctx context.Context) (*Object, error) {
	rep, err := o.c.pinnedReply(ctx, o.target(), &clientwire.Request{Op: clientwire.OpClone, Object: o.h}, nil, nil)
	if err != nil {
		return nil, err
	}
	return &Object{c: o.c, node: o.node, h: rep.Object, pid: o.pid, class: o.class, born: o.born}, nil
}

// Release gives up the reference, within Options.ReleaseTimeout. An
// object on a lost node is released already.
func (o *Object) Release() error { return o.c.release(o.target()) }

func (o *Object) target() target {
	return target{node: o.node, class: o.class, h: o.h, pid: o.pid, born: o.born}
}

// PID is the object's server process, on its node.
func (o *Object) PID() int { return o.pid }

// Class is the object's class.
func (o *Object) Class() string { return o.class }

// Node is the node that has the object.
func (o *Object) Node() string { return o.node }

// CreateInstance creates an object in the class handle's server.
func (co *ClassObject) CreateInstance(ctx context.Context, args ...any) (*Object, error) {
	rep, err := co.c.pinnedReply(ctx, co.target(), &clientwire.Request{Op: clientwire.OpClassCreateInstance, ClassObject: co.h}, args, nil)
	if err != nil {
		return nil, err
	}
	return &Object{c: co.c, node: co.node, h: rep.Object, pid: rep.PID, class: co.class, born: co.born}, nil
}

// LockServer adds or removes an explicit lock on the handle's server.
func (co *ClassObject) LockServer(ctx context.Context, lock bool) error {
	_, err := co.c.pinnedReply(ctx, co.target(), &clientwire.Request{Op: clientwire.OpLockServer, ClassObject: co.h, Lock: lock}, nil, nil)
	return err
}

// Release gives up the class handle.
func (co *ClassObject) Release() error { return co.c.release(co.target()) }

func (co *ClassObject) target() target {
	return target{node: co.node, class: co.class, h: co.h, pid: co.pid, born: co.born}
}

// PID is the handle's server process, on its node.
func (co *ClassObject) PID() int { return co.pid }

// Node is the node that has the handle.
func (co *ClassObject) Node() string { return co.node }

func (c *Client) release(t target) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.ReleaseTimeout)
	defer cancel()
	_, err := c.pinnedReply(ctx, t, &clientwire.Request{Op: clientwire.OpRelease, Handle: t.h}, nil, nil)
	if errors.Is(err, ErrNodeLost) {
		return nil // released with the node
	}
	return err
}

// objectPayload encodes an object request with its arguments.
func objectPayload(req *clientwire.Request, args []any) ([]byte, error) {
	for _, a := range args {
		p, err := wire.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", bulkhead.ErrEncoding, err)
		}
		req.Args = append(req.Args, cbor.RawMessage(p))
	}
	p, err := wire.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", bulkhead.ErrEncoding, err)
	}
	return p, nil
}

// activate sends an activation to the objects' queue group until a node
// answers it, and returns that node and its reply. The handle is made in
// the client's session of epoch born on that node.
func (c *Client) activate(ctx context.Context, born uint64, req *clientwire.Request, args []any) (string, clientwire.Reply, error) {
	payload, err := objectPayload(req, args)
	if err != nil {
		return "", clientwire.Reply{}, err
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return "", clientwire.Reply{}, bulkhead.ErrClosed
		}
		id, p := c.registerLocked("")
		c.mu.Unlock()
		m := c.message(ctx, c.s.activate(), id, payload)
		m.Header.Set(HeaderClient, c.id)
		m.Header.Set(HeaderEpoch, strconv.FormatUint(born, 10))
		ev, _, err := c.exchange(ctx, id, p, m)
		if err != nil {
			return "", clientwire.Reply{}, c.objectErr(ctx, req.Op, err)
		}
		switch ev.kind {
		case evFinal:
			rep, err := decodeReply(ev.msg)
			return ev.msg.Header.Get(HeaderNode), rep, err
		case evClosed:
			return "", clientwire.Reply{}, bulkhead.ErrClosed
		}
		// Refused (draining), no node, or lost: made again elsewhere.
		c.retried.Add(1)
		if err := c.waitObjectNode(ctx, req.Op); err != nil {
			return "", clientwire.Reply{}, err
		}
	}
}

// waitObjectNode waits a heartbeat, or for a node to appear, before an
// activation is sent again.
func (c *Client) waitObjectNode(ctx context.Context, op string) error {
	c.mu.Lock()
	changed := c.changed
	c.mu.Unlock()
	_, _, err := c.waitNode(ctx, op, changed, map[string]bool{})
	return err
}

// target is what an object request is about: a handle on a node.
type target struct {
	node, class string
	h           uint64
	pid         int
	born        uint64 // Object.born; a name's lookup: now
}

// pinned sends an object request to t's node and returns its final
// answer. A node lost, gone or not serving disconnects the object. sub,
// if not nil, is the subscription the request makes: it stays in flight
// once answered, and gets the events.
func (c *Client) pinned(ctx context.Context, t target, req *clientwire.Request, args []any, sub *Subscription) (*nats.Msg, error) {
	node := t.node
	payload, err := objectPayload(req, args)
	if err != nil {
		return nil, err
	}
	disc := func(reason string) error {
		return &activation.DisconnectedError{Class: t.class, Object: t.h, PID: t.pid,
			Err: &NodeLostError{Node: node, Method: req.Op, Reason: reason}}
	}
	c.mu.Lock()
	// Lost since the object was made: disconnected for good, even if the
	// node came back (a partition that healed). One made after the loss,
	// on the node come back, is not.
	at, lost := c.lostAt[node]
	_, gone := c.gone[node]
	gone = lost && at > t.born || !lost && gone
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil, bulkhead.ErrClosed
	case gone:
		c.mu.Unlock()
		return nil, disc("the node was lost")
	}
	id, p := c.registerLocked(node)
	if sub != nil {
		p.sub, sub.id = sub, id
	}
	c.mu.Unlock()
	m := c.message(ctx, c.s.object(node), id, payload)
	m.Header.Set(HeaderClient, c.id)
	m.Header.Set(HeaderEpoch, strconv.FormatUint(t.born, 10))
	if sub != nil {
		m.Header.Set(HeaderEvents, sub.events)
	}
	ev, _, err := c.exchange(ctx, id, p, m)
	if err != nil {
		return nil, c.objectErr(ctx, req.Op, err)
	}
	switch ev.kind {
	case evFinal:
		return ev.msg, nil
	case evRefused:
		return nil, disc("the node no longer serves objects")
	case evLost:
		return nil, disc("the NATS server dropped the node")
	}
	return nil, bulkhead.ErrClosed
}

// pinnedReply is pinned for the ops that answer with a clientwire.Reply.
func (c *Client) pinnedReply(ctx context.Context, t target, req *clientwire.Request, args []any, sub *Subscription) (clientwire.Reply, error) {
	m, err := c.pinned(ctx, t, req, args, sub)
	if err != nil {
		return clientwire.Reply{}, err
	}
	return decodeReply(m)
}

// objectErr is an object request's error when ctx ended (or the publish
// failed): the deadline travelled with it.
func (c *Client) objectErr(ctx context.Context, op string, err error) error {
	if ctx.Err() == nil {
		return fmt.Errorf("%w: %v", bulkhead.ErrClosed, err)
	}
	return &bulkhead.CanceledError{Method: op, Err: ctx.Err(), ExitCode: -1, Started: true,
		Reason: "its ctx ended while a node had it (the deadline travelled with it)"}
}

// decodeReply decodes a node's answer to an op other than a call.
func decodeReply(m *nats.Msg) (clientwire.Reply, error) {
	var rep clientwire.Reply
	switch m.Header.Get(HeaderStatus) {
	case statusResult:
		if err := clientwire.Decode(m.Data, &rep); err != nil {
			return rep, fmt.Errorf("%w: reply: %v", clientwire.ErrProtocol, err)
		}
		return rep, nil
	case statusError:
		return rep, clientwire.DecodeError(m.Data)
	}
	return rep, fmt.Errorf("%w: a node's answer of status %q", clientwire.ErrProtocol, m.Header.Get(HeaderStatus))
}

// epoch is the count of nodes found lost so far, which an object made
// from now on keeps.
func (c *Client) epoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.losses
}

// answerProbe answers a node that asks whether this client lives, to keep
// its session of one epoch there: alive, or "gone" when the client found
// that node lost since the session's epoch began. Those objects are
// disconnected for good here, so the node must release them now (a
// partition that healed) rather than keep them until the client exits.
// The probe's headers are anyone's: a node id or epoch out of bounds is
// answered alive, which keeps nothing a lease would not keep.
func (c *Client) answerProbe(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	node, gone := m.Header.Get(HeaderNode), false
	epoch, err := strconv.ParseUint(m.Header.Get(HeaderEpoch), 10, 64)
	if checkName("node", node) == nil && err == nil {
		c.mu.Lock()
		at, lost := c.lostAt[node]
		gone = lost && at > epoch
		c.mu.Unlock()
	}
	if !gone {
		m.Respond(nil)
		return
	}
	m.RespondMsg(&nats.Msg{Header: nats.Header{HeaderStatus: {statusGone}}})
}
