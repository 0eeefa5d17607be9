package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
)

// maxSubscriptions bounds the event subscriptions a node forwards.
const maxSubscriptions = 4096

// subscribe subscribes to an object's events for a client: it answers
// {subscribed: true}, then forwards every event to reply (status
// "event", [name, args] as on the socket) until the subscription ends,
// which it answers with an ERROR. The activation's subscription cuts off
// a subscriber its forwarding cannot keep up with, and the client cuts
// off its own slow reader: the same cut-off as on one machine.
func (n *Node) subscribe(reply, client string, req *clientwire.Request) error {
	o, err := objHandle[*activation.Object](n, client, req.Object)
	if err != nil {
		return err
	}
	buf := int(req.Buffer)
	if req.Buffer == 0 {
		buf = 64
	}
	if req.Buffer > activation.MaxSubscriptionBuffer {
		return fmt.Errorf("%w: buffer %d: want 1 to %d", clientwire.ErrBadRequest, req.Buffer, activation.MaxSubscriptionBuffer)
	}
	sub, err := o.Subscribe(buf)
	if err != nil {
		return err
	}
	// The bound and closeSubscriptions are checked where the forwarder is
	// counted, under one lock: none starts once closeSubscriptions waits.
	n.mu.Lock()
	full, closing := len(n.obj.subs) >= maxSubscriptions, n.obj.closing
	if !full && !closing {
		n.obj.subs[reply] = sub
		n.obj.subWG.Add(1)
	}
	n.mu.Unlock()
	switch {
	case closing:
		sub.Close()
		return &activation.DisconnectedError{Object: o.ID(), Err: bulkhead.ErrClosed}
	case full:
		sub.Close()
		return fmt.Errorf("%w: node %s forwards %d subscriptions", clientwire.ErrLimit, n.cfg.ID, maxSubscriptions)
	}
	if p, err := wire.Marshal(clientwire.Reply{Subscribed: true}); err == nil {
		n.nc.PublishMsg(n.msg(reply, statusResult, p))
	}
	go n.forward(reply, o.ID(), sub)
	return nil
}

// forward publishes sub's events to reply until it ends.
func (n *Node) forward(reply string, object uint64, sub *activation.Subscription) {
	defer n.obj.subWG.Done()
	for ev := range sub.Events() {
		args := make([]cbor.RawMessage, ev.Len())
		ok := true
		for i := range args {
			ok = ok && ev.Decode(i, &args[i]) == nil
		}
		if p, err := wire.Marshal([]any{ev.Name, args}); ok && err == nil {
			n.nc.PublishMsg(n.msg(reply, statusEvent, p))
		}
	}
	n.mu.Lock()
	delete(n.obj.subs, reply)
	closing := n.obj.closing
	n.mu.Unlock()
	end := sub.Err()
	switch {
	case closing: // the node closes: its objects go with it
		end = &activation.DisconnectedError{Object: object, Err: bulkhead.ErrClosed}
	case end == nil || errors.Is(end, activation.ErrReleased):
		end = &bulkhead.CanceledError{Method: "subscribe", Err: context.Canceled, Reason: "the subscription ended"}
	}
	n.answerErr(reply, end)
}

// cancelSubscription ends the subscription whose events go to reply: its
// client closed it.
func (n *Node) cancelSubscription(reply string) {
	n.mu.Lock()
	sub := n.obj.subs[reply]
	n.mu.Unlock()
	if sub != nil {
		sub.Close()
	}
}

// closeSubscriptions ends every subscription and waits for their
// forwarders; no request adds one any more.
func (n *Node) closeSubscriptions() {
	n.mu.Lock()
	n.obj.closing = true
	subs := make([]*activation.Subscription, 0, len(n.obj.subs))
	for _, s := range n.obj.subs {
		subs = append(subs, s)
	}
	n.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
	n.obj.subWG.Wait()
}
