package cluster

import (
	"context"
	"fmt"
	"sync"

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

// Subscription delivers an object's events from its node, over NATS. A
// subscriber that lets buffer events pile up is cut off
// (activation.ErrSubscriberTooSlow), by the node or here; the object's
// node lost ends it with activation.ErrObjectDisconnected.
type Subscription struct {
	c      *Client
	id     uint64
	node   string
	object uint64
	ch     chan Event

	mu   sync.Mutex
	err  error
	done bool
}

// Subscribe subscribes to the object's events with a queue of buffer
// events (0: 64), as client.Object.Subscribe does.
func (o *Object) Subscribe(ctx context.Context, buffer int) (*Subscription, error) {
	if buffer <= 0 {
		buffer = 64
	}
	if buffer > activation.MaxSubscriptionBuffer {
		return nil, fmt.Errorf("%w: buffer %d: want 1 to %d", clientwire.ErrBadRequest, buffer, activation.MaxSubscriptionBuffer)
	}
	s := &Subscription{c: o.c, node: o.node, object: o.h, ch: make(chan Event, buffer)}
	req := &clientwire.Request{Op: clientwire.OpSubscribe, Object: o.h, Buffer: uint64(buffer)}
	if _, err := o.c.pinnedReply(ctx, o.target(), req, nil, s); err != nil {
		if s.c.forgetSub(s.id) || ctx.Err() != nil {
			s.cancel() // its answer may be on the way: the node ends it
		}
		return nil, err
	}
	return s, nil
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

// event queues an event, cutting the subscriber off if its queue is full.
// It runs on the client's inbox subscription.
func (s *Subscription) event(p []byte) {
	ev, ok := decodeEvent(p)
	if !ok {
		return // not a node's: dropped
	}
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	select {
	case s.ch <- ev:
		s.mu.Unlock()
		return
	default:
	}
	s.mu.Unlock()
	if s.c.forgetSub(s.id) {
		s.cancel()
	}
	s.end(&activation.SlowSubscriberError{Object: s.object, Buffer: cap(s.ch)})
}

// end ends the subscription with err, once.
func (s *Subscription) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done, s.err = true, err
		close(s.ch)
	}
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
// anyone who learned the subscriber's inbox.
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
