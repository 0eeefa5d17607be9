package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
	"github.com/nats-io/nats.go"
)

// Event is an event an object emitted: the same type as in-process
// (activation.Event) and as client.Event.
type Event = activation.Event

// Subscription delivers an object's events from its node, over NATS: the
// node publishes them once on the object's events subject, and NATS fans
// them out to every subscriber's client. A subscriber that lets buffer
// events pile up is cut off (activation.ErrSubscriberTooSlow), here, or
// by the node if its forwarding falls behind, or when NATS dropped some
// of its events (a gap in their numbers); the object's node lost ends it
// with activation.ErrObjectDisconnected.
type Subscription struct {
	c      *Client
	id     uint64
	node   string
	object uint64
	ch     chan Event
	events string             // the object's events subject
	ns     *nats.Subscription // on it

	ended chan struct{} // closed when it ends

	mu    sync.Mutex
	err   error
	done  bool
	acked bool        // the node counts it: events after (gen, last) are its
	gen   uint64      // the node's forwarder's generation
	last  uint64      // the number of the last event delivered, or before the subscription
	early []*nats.Msg // events that came before the node's answer, at most cap(ch)
	// The newest event early dropped, for room: a gap if it was the
	// subscription's (most are from before it, the forwarder's for others).
	droppedGen, droppedSeq uint64
	// The node's end, come on the reply subject before the events it
	// numbered before it (they come on the events subject, handled on
	// another goroutine); zero endAt: none.
	endErr error
	endAt  time.Time
}

// Subscribe subscribes to the object's events with a queue of buffer
// events (0: 64), as client.Object.Subscribe does. It asks the node for
// the object's events subject, listens there, then asks the node to count
// it: three round trips, so that it misses none of the events after.
func (o *Object) Subscribe(ctx context.Context, buffer int) (*Subscription, error) {
	if buffer <= 0 {
		buffer = 64
	}
	if buffer > activation.MaxSubscriptionBuffer {
		return nil, fmt.Errorf("%w: buffer %d: want 1 to %d", clientwire.ErrBadRequest, buffer, activation.MaxSubscriptionBuffer)
	}
	t := o.target()
	req := clientwire.Request{Op: clientwire.OpSubscribe, Object: o.h, Buffer: uint64(buffer)}
	ans, err := o.c.pinned(ctx, t, &req, nil, nil)
	if err != nil {
		return nil, err
	}
	if _, err := decodeReply(ans); err != nil {
		return nil, err
	}
	s := &Subscription{c: o.c, node: o.node, object: o.h, ch: make(chan Event, buffer), ended: make(chan struct{}),
		events: ans.Header.Get(HeaderEvents)}
	if !o.c.isEventsSubject(o.node, s.events) {
		return nil, fmt.Errorf("%w: node %s named events subject %q", clientwire.ErrProtocol, o.node, s.events)
	}
	ns, err := o.c.nc.Subscribe(s.events, s.onEvent)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.ns = ns
	s.mu.Unlock()
	if err := flush(ctx, o.c.nc); err != nil {
		ns.Unsubscribe()
		return nil, o.c.objectErr(ctx, req.Op, err)
	}
	req.Args = nil
	var gen, last uint64
	ans, err = o.c.pinned(ctx, t, &req, nil, s)
	if err == nil {
		_, err = decodeReply(ans)
	}
	if err == nil {
		var ok bool
		if gen, last, ok = parseSeq(ans.Header); !ok {
			err = fmt.Errorf("%w: node %s answered a subscription with %s %q", clientwire.ErrProtocol, o.node, HeaderSeq, ans.Header.Get(HeaderSeq))
		}
	}
	if err != nil {
		if s.c.forgetSub(s.id) || ctx.Err() != nil {
			s.cancel() // its answer may be on the way: the node ends it
		}
		s.end(err)
		return nil, err
	}
	s.ack(gen, last)
	return s, nil
}

// isEventsSubject says whether subject is one a node may name for its
// objects' events: <prefix>.obj.events.<node>.<key>.
func (c *Client) isEventsSubject(node, subject string) bool {
	key, ok := strings.CutPrefix(subject, c.s.prefix+".obj.events."+node+".")
	return ok && checkName("events key", key) == nil
}

// Events delivers the events; it is closed when the subscription ends.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Err says why the subscription ended, once Events is closed.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription: here at once, and on the node.
func (s *Subscription) Close() {
	if s.c.forgetSub(s.id) {
		s.cancel()
	}
	s.end(&bulkhead.CanceledError{Method: "subscribe", Err: context.Canceled, Reason: "the subscriber closed it"})
}

// cancel tells the node to end the subscription.
func (s *Subscription) cancel() {
	s.c.nc.PublishMsg(&nats.Msg{Subject: s.c.s.object(s.node), Header: nats.Header{HeaderCancel: {s.c.reply(s.id)}}})
}

// ack starts the delivery: the node counts the subscription from event
// last of forwarder gen on. It delivers the events that came before.
func (s *Subscription) ack(gen, last uint64) {
	s.mu.Lock()
	s.acked, s.gen, s.last = true, gen, last
	early := s.early
	s.early = nil
	var err error
	if s.droppedGen == gen && s.droppedSeq > last {
		err = &activation.SlowSubscriberError{Object: s.object, Buffer: cap(s.ch)}
		early = nil
	}
	for _, m := range early {
		if err = s.deliverLocked(m); err != nil {
			break
		}
	}
	s.mu.Unlock()
	s.stop(err)
}

// onEvent takes a message of the events subject, on its subscription.
func (s *Subscription) onEvent(m *nats.Msg) {
	s.mu.Lock()
	var err error
	switch {
	case s.done:
	case !s.acked:
		if len(s.early) == cap(s.ch) {
			if gen, seq, ok := parseSeq(s.early[0].Header); ok && (gen > s.droppedGen || gen == s.droppedGen && seq > s.droppedSeq) {
				s.droppedGen, s.droppedSeq = gen, seq
			}
			s.early = append(s.early[:0], s.early[1:]...)
		}
		s.early = append(s.early, m)
	default:
		err = s.deliverLocked(m)
	}
	s.mu.Unlock()
	s.stop(err)
}

// deliverLocked queues the event m, if it is the next of the
// subscription's forwarder; non-nil: the subscription ends so (a gap, a
// full queue, or the node's end of it).
func (s *Subscription) deliverLocked(m *nats.Msg) error {
	gen, seq, ok := parseSeq(m.Header)
	if !ok || gen != s.gen || seq <= s.last {
		return nil // not the node's, another forwarder's, or before the subscription
	}
	if m.Header.Get(HeaderStatus) == statusError {
		if seq != s.last+1 {
			return &activation.SlowSubscriberError{Object: s.object, Buffer: cap(s.ch)}
		}
		return clientwire.DecodeError(m.Data)
	}
	ev, ok := decodeEvent(m.Data)
	if !ok || m.Header.Get(HeaderStatus) != statusEvent {
		return nil // not a node's: dropped
	}
	if seq != s.last+1 { // NATS dropped some: a slow consumer
		return &activation.SlowSubscriberError{Object: s.object, Buffer: cap(s.ch)}
	}
	s.last = seq
	select {
	case s.ch <- ev:
		return nil
	default:
		return &activation.SlowSubscriberError{Object: s.object, Buffer: cap(s.ch)}
	}
}

// stop ends the subscription with err, if not nil, here and on the node.
func (s *Subscription) stop(err error) {
	if err == nil {
		return
	}
	if s.c.forgetSub(s.id) {
		s.cancel()
	}
	s.end(err)
}

// end ends the subscription with err, once, and stops listening on the
// events subject.
func (s *Subscription) end(err error) {
	s.mu.Lock()
	ns := s.ns
	if !s.done {
		s.done, s.err = true, err
		close(s.ch)
		close(s.ended)
	}
	s.ns = nil
	s.mu.Unlock()
	if ns != nil {
		ns.Unsubscribe()
	}
}

// endOnReply ends the subscription as the node's answer m on its reply
// subject says, once the events the node numbered before that end are
// delivered: they come on the events subject, which another goroutine
// handles, and the end numbered there ends it. If they never come (NATS
// dropped them), the client's monitor ends it after LostAfter.
func (s *Subscription) endOnReply(m *nats.Msg, noResponders bool) {
	err := subscriptionEnd(m, noResponders)
	gen, seq, ok := parseSeq(m.Header)
	s.mu.Lock()
	wait := ok && s.acked && !s.done && gen == s.gen && seq > s.last+1
	if wait {
		s.endErr, s.endAt = err, time.Now()
	}
	s.mu.Unlock()
	if !wait {
		s.end(err)
		return
	}
	s.c.mu.Lock()
	s.c.ending[s] = struct{}{}
	s.c.mu.Unlock()
}

// endOverdueLocked ends the subscriptions whose node's end came longer
// than after ago without the events before it. Called by the monitor.
func (c *Client) endOverdueLocked(now time.Time, after time.Duration) []*Subscription {
	var due []*Subscription
	for s := range c.ending {
		s.mu.Lock()
		if s.done || now.Sub(s.endAt) > after {
			due = append(due, s)
			delete(c.ending, s)
		}
		s.mu.Unlock()
	}
	return due
}

// forgetSub drops subscription id from the calls in flight; false if it
// was gone already.
func (c *Client) forgetSub(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.calls[id]
	delete(c.calls, id)
	return ok
}

// subscriptionEnd is why a node ended a subscription: its ERROR, or its
// subject left (the node no longer serves objects).
func subscriptionEnd(m *nats.Msg, noResponders bool) error {
	if m.Header.Get(HeaderStatus) == statusError {
		return clientwire.DecodeError(m.Data)
	}
	return &activation.DisconnectedError{Err: &NodeLostError{Node: m.Header.Get(HeaderNode), Method: "subscribe",
		Reason: fmt.Sprintf("the node's subscription ended with status %q (no responders: %v)", m.Header.Get(HeaderStatus), noResponders)}}
}

// decodeEvent decodes an event's [name, args], which a node sent, or
// anyone allowed to publish on the events subject.
func decodeEvent(p []byte) (Event, bool) {
	var raw []cbor.RawMessage
	if err := wire.Unmarshal(p, &raw); err != nil || len(raw) != 2 {
		return Event{}, false
	}
	var name string
	var args []cbor.RawMessage
	if wire.Unmarshal(raw[0], &name) != nil || wire.Unmarshal(raw[1], &args) != nil {
		return Event{}, false
	}
	return activation.NewEvent(name, args), true
}
