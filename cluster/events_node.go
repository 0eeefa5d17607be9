package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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

// An object's events go out once, on a subject of the object
// (<prefix>.obj.events.<node>.<key>), which NATS fans out to every
// subscriber's client (docs/DESIGN.md, "Cluster", "Events across nodes").

// Headers of the events protocol.
const (
	// HeaderEvents, on a node's answer to a first subscribe request, is
	// the object's events subject; on the second, which the client sends
	// once it listens there, the same subject.
	HeaderEvents = "Bulkhead-Events"
	// HeaderSeq, on a message of an events subject, is "<gen>.<seq>":
	// the forwarder's generation on the node and the message's number in
	// it, from 1, with no gap. On the answer to the second subscribe
	// request it is the last number the forwarder had sent: the
	// subscription's events are those after it.
	HeaderSeq = "Bulkhead-Seq"
)

// maxSubscriptions bounds the event subscriptions a node serves (and so
// the forwarders, one per object with subscribers).
const maxSubscriptions = 4096

// objID names an object on a node: its id is unique within its server.
type objID struct {
	pid int
	id  uint64
}

// forwarder publishes one object's events on its subject, for all its
// subscribers. Its fields but sub and h are under Node.mu.
type forwarder struct {
	id      objID
	subject string
	gen     uint64
	seq     uint64             // the last number published
	h       *activation.Object // the node's own handle: released by forward when it ends
	sub     *activation.Subscription
	subs    map[string]subscriber // by the reply subject of the subscribe request
	gone    bool                  // detached: it publishes nothing more
}

// subscriber is one client subscription: the client session and handle
// it came through, which end it.
type subscriber struct {
	session string
	handle  uint64
}

// newEventsKeyer returns the node's secret for events subjects.
func newEventsKeyer() []byte {
	k := make([]byte, 32)
	rand.Read(k) // never fails (crypto/rand, Go 1.24)
	return k
}

// eventsSubject is o's events subject on this node: the key is an HMAC of
// the object's identity under the node's secret, so that it needs no
// state before a subscription and cannot be guessed without a reference
// to the object. NATS's subject permissions are what really protect it.
func (n *Node) eventsSubject(o *activation.Object) string {
	m := hmac.New(sha256.New, n.obj.secret)
	m.Write(strconv.AppendUint(strconv.AppendInt(nil, int64(o.PID()), 10), o.ID(), 10))
	return n.cfg.Prefix + ".obj.events." + n.cfg.ID + "." + hex.EncodeToString(m.Sum(nil)[:16])
}

// subscribe serves a subscribe request, in two steps. Without
// HeaderEvents it answers with the object's events subject; the client
// subscribes there, flushes, and asks again with it: the node then counts
// it among the object's subscribers (making the object's forwarder if it
// is the first) and answers {subscribed: true} with the forwarder's
// generation and last number (HeaderSeq). A subscriber ends when its
// client cancels it, releases its handle or loses its session; a
// forwarder when its last subscriber ends, or its subscription does (the
// object went, the forwarding fell behind, the node closes), which it
// tells every subscriber.
func (n *Node) subscribe(reply, client, events string, req *clientwire.Request) error {
	o, err := objHandle[*activation.Object](n, client, req.Object)
	if err != nil {
		return err
	}
	subject := n.eventsSubject(o)
	if events == "" {
		return n.answerSubscribe(reply, clientwire.Reply{}, HeaderEvents, subject)
	}
	if events != subject {
		return fmt.Errorf("%w: %s is not this object's events subject", clientwire.ErrBadRequest, HeaderEvents)
	}
	if req.Buffer > activation.MaxSubscriptionBuffer {
		return fmt.Errorf("%w: buffer %d: want 1 to %d", clientwire.ErrBadRequest, req.Buffer, activation.MaxSubscriptionBuffer)
	}
	f, seq, start, err := n.addSubscriber(o, subject, reply, subscriber{session: client, handle: req.Object}, max(64, int(req.Buffer)))
	if err != nil {
		return err
	}
	if start {
		go n.forward(f)
	}
	return n.answerSubscribe(reply, clientwire.Reply{Subscribed: true}, HeaderSeq, seq)
}

// answerSubscribe answers a subscribe request with rep and one header.
func (n *Node) answerSubscribe(reply string, rep clientwire.Reply, key, value string) error {
	p, err := wire.Marshal(rep)
	if err != nil {
		return err
	}
	m := n.msg(reply, statusResult, p)
	m.Header.Set(key, value)
	return n.nc.PublishMsg(m)
}

// addSubscriber counts a subscriber of o, making o's forwarder (start:
// the caller starts it) if it has none; seq is HeaderSeq of the answer.
// The bound and closeSubscriptions are checked where the forwarder is
// counted, under one lock: none starts once closeSubscriptions waits.
func (n *Node) addSubscriber(o *activation.Object, subject, reply string, s subscriber, buffer int) (f *forwarder, seq string, start bool, err error) {
	id := objID{pid: o.PID(), id: o.ID()}
	var drop *activation.Object
	defer func() {
		if drop != nil {
			drop.Release()
		}
	}()
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.obj.closing:
		return nil, "", false, &activation.DisconnectedError{Object: o.ID(), Err: bulkhead.ErrClosed}
	case len(n.obj.subs) >= maxSubscriptions:
		return nil, "", false, fmt.Errorf("%w: node %s serves %d subscriptions", clientwire.ErrLimit, n.cfg.ID, maxSubscriptions)
	case n.obj.subs[reply] != nil:
		return nil, "", false, fmt.Errorf("%w: a subscription answers on that subject already", clientwire.ErrBadRequest)
	}
	f = n.obj.fwds[id]
	if f == nil {
		// Cloning and subscribing take the activator's locks, and do no
		// I/O: a release might (drop, after the lock).
		h, err := o.CloneInto(n.obj.fwdSess)
		if err != nil {
			return nil, "", false, err
		}
		sub, err := h.Subscribe(buffer)
		if err != nil {
			drop = h
			return nil, "", false, err
		}
		n.obj.gen++
		f = &forwarder{id: id, subject: subject, gen: n.obj.gen, h: h, sub: sub, subs: make(map[string]subscriber)}
		n.obj.fwds[id] = f
		n.obj.subWG.Add(1)
		start = true
	}
	f.subs[reply] = s
	n.obj.subs[reply] = f
	return f, strconv.FormatUint(f.gen, 10) + "." + strconv.FormatUint(f.seq, 10), start, nil
}

// forward publishes f's events on its subject until its subscription
// ends, then, unless its last subscriber had left, tells them why.
func (n *Node) forward(f *forwarder) {
	defer n.obj.subWG.Done()
	defer f.h.Release()
	for ev := range f.sub.Events() {
		p, ok := encodeEvent(ev)
		if !ok {
			continue
		}
		n.mu.Lock()
		if f.gone {
			n.mu.Unlock()
			continue
		}
		f.seq++
		seq := f.seq
		n.mu.Unlock()
		m := n.msg(f.subject, statusEvent, p)
		m.Header.Set(HeaderSeq, strconv.FormatUint(f.gen, 10)+"."+strconv.FormatUint(seq, 10))
		n.nc.PublishMsg(m)
	}
	n.mu.Lock()
	if f.gone {
		n.mu.Unlock()
		return
	}
	f.gone = true
	delete(n.obj.fwds, f.id)
	replies := make([]string, 0, len(f.subs))
	for r := range f.subs {
		delete(n.obj.subs, r)
		replies = append(replies, r)
	}
	f.seq++
	seq, closing := f.seq, n.obj.closing
	n.mu.Unlock()
	end := f.sub.Err()
	switch {
	case closing: // the node closes: its objects go with it
		end = &activation.DisconnectedError{Object: f.id.id, Err: bulkhead.ErrClosed}
	case end == nil || errors.Is(end, activation.ErrReleased):
		end = &bulkhead.CanceledError{Method: "subscribe", Err: context.Canceled, Reason: "the subscription ended"}
	}
	// In order after the events, on the subject; and on each reply
	// subject, in case NATS dropped the first for a slow subscriber.
	// The end's number goes on each too: its client waits for the events
	// numbered before it, which come on the subject, before it ends.
	num := strconv.FormatUint(f.gen, 10) + "." + strconv.FormatUint(seq, 10)
	for _, subject := range append(replies, f.subject) {
		m := n.msg(subject, statusError, errorPayload(end))
		m.Header.Set(HeaderSeq, num)
		n.nc.PublishMsg(m)
	}
}

// removeSubscribers ends the subscribers that match, and the forwarders
// left with none; why, if not nil, is told to each (on its reply
// subject).
func (n *Node) removeSubscribers(match func(string, subscriber) bool, why error) {
	var (
		replies []string
		ended   []*activation.Subscription
	)
	n.mu.Lock()
	for r, f := range n.obj.subs {
		s := f.subs[r]
		if !match(r, s) {
			continue
		}
		delete(f.subs, r)
		delete(n.obj.subs, r)
		replies = append(replies, r)
		if len(f.subs) == 0 && !f.gone {
			f.gone = true
			delete(n.obj.fwds, f.id)
			ended = append(ended, f.sub)
		}
	}
	n.mu.Unlock()
	for _, s := range ended {
		s.Close() // its forwarder returns, and releases its handle
	}
	if why != nil {
		for _, r := range replies {
			n.answerErr(r, why)
		}
	}
}

// cancelSubscription ends the subscription whose answers go to reply:
// its client closed it.
func (n *Node) cancelSubscription(reply string) {
	n.removeSubscribers(func(r string, _ subscriber) bool { return r == reply }, nil)
}

// handleReleased ends the subscriptions made through client's handle h,
// which it released: as on one machine, a subscription ends with its
// handle.
func (n *Node) handleReleased(client string, h uint64) {
	n.removeSubscribers(func(_ string, s subscriber) bool { return s.session == client && s.handle == h },
		&bulkhead.CanceledError{Method: "subscribe", Err: context.Canceled, Reason: "the subscription ended with its handle"})
}

// sessionEnded ends the subscriptions of a client session that ended: its
// client is gone, or gave the session up.
func (n *Node) sessionEnded(client string) {
	n.removeSubscribers(func(_ string, s subscriber) bool { return s.session == client }, nil)
}

// closeSubscriptions ends every forwarder and waits for them; no request
// adds one any more.
func (n *Node) closeSubscriptions() {
	n.mu.Lock()
	n.obj.closing = true
	subs := make([]*activation.Subscription, 0, len(n.obj.fwds))
	for _, f := range n.obj.fwds {
		subs = append(subs, f.sub)
	}
	n.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
	n.obj.subWG.Wait()
}

// encodeEvent is an event's [name, args], as on the socket.
func encodeEvent(ev activation.Event) ([]byte, bool) {
	args := make([]cbor.RawMessage, ev.Len())
	for i := range args {
		if ev.Decode(i, &args[i]) != nil {
			return nil, false
		}
	}
	p, err := wire.Marshal([]any{ev.Name, args})
	return p, err == nil
}

// errorPayload is err as an ERROR map.
func errorPayload(err error) []byte {
	p, merr := wire.Marshal(clientwire.EncodeError(err))
	if merr != nil {
		p, _ = cbor.Marshal(map[string]any{"kind": "internal", "message": err.Error()})
	}
	return p
}

// parseSeq reads HeaderSeq: "<gen>.<seq>".
func parseSeq(h nats.Header) (gen, seq uint64, ok bool) {
	v := h.Get(HeaderSeq)
	if len(v) > 41 {
		return 0, 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] == '.' {
			g, err1 := strconv.ParseUint(v[:i], 10, 64)
			s, err2 := strconv.ParseUint(v[i+1:], 10, 64)
			return g, s, err1 == nil && err2 == nil
		}
	}
	return 0, 0, false
}
