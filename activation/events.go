package activation

import (
	"fmt"
	"sync"

	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
)

// Event is an event an object emitted (worker.Object.Emit).
type Event struct {
	Name string
	args []cbor.RawMessage
}

// NewEvent is an event of name with args, each one CBOR item, which it
// keeps without copying: a client of the daemon builds the events it
// receives with it (client.Event is this type), and so can a test.
func NewEvent(name string, args []cbor.RawMessage) Event { return Event{Name: name, args: args} }

// Len returns the number of arguments.
func (e Event) Len() int { return len(e.args) }

// Decode decodes argument i into v, which must be a pointer.
func (e Event) Decode(i int, v any) error {
	if i < 0 || i >= len(e.args) {
		return fmt.Errorf("bulkhead: event %s has %d arguments, no argument %d", e.Name, len(e.args), i)
	}
	return wire.Unmarshal(e.args[i], v)
}

// MaxSubscriptionBuffer bounds Subscribe's buffer.
const MaxSubscriptionBuffer = 1 << 16

// Subscription delivers an object's events to one subscriber through a
// bounded queue. Delivery never waits: a subscriber whose queue is full when
// an event comes is cut off with a *SlowSubscriberError, so that it can
// stall neither the worker nor the other subscribers.
type Subscription struct {
	h      *Object
	o      *object
	buffer int
	ch     chan Event

	mu   sync.Mutex
	err  error
	once sync.Once
}

// Subscribe subscribes to the object's events with a queue of buffer events
// (1 to MaxSubscriptionBuffer). The subscription ends with the handle.
func (h *Object) Subscribe(buffer int) (*Subscription, error) {
	if buffer < 1 || buffer > MaxSubscriptionBuffer {
		return nil, fmt.Errorf("bulkhead: subscription buffer %d: want 1 to %d", buffer, MaxSubscriptionBuffer)
	}
	if h.released.Load() {
		return nil, h.errReleased()
	}
	o := h.o
	s := &Subscription{h: h, o: o, buffer: buffer, ch: make(chan Event, buffer)}
	o.mu.Lock()
	if d := o.disc.Load(); d != nil {
		o.mu.Unlock()
		return nil, d
	}
	if h.released.Load() {
		o.mu.Unlock()
		return nil, h.errReleased()
	}
	o.subs = append(o.subs, s)
	o.mu.Unlock()
	h.sess.touch()
	return s, nil
}

// Events returns the queue. It is closed when the subscription ends; Err
// then says why.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Err returns nil while the subscription is open, then why it ended:
// ErrSubscriberTooSlow, ErrObjectDisconnected, ErrReleased, or nil after
// Close.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.h.sess.touch()
	o := s.o
	o.mu.Lock()
	o.subs = deleteFunc(o.subs, func(x *Subscription) bool { return x == s })
	o.mu.Unlock()
	s.end(nil)
}

// end closes the queue once, with why. Callers have removed s from o.subs,
// or hold o.mu while deliver cannot send to it any more.
func (s *Subscription) end(why error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = why
		s.mu.Unlock()
		close(s.ch)
	})
}

// event handles an EVENT frame from s's worker, on the reader: it copies the
// event and offers it to each subscriber without waiting.
func (a *Activator) event(s *server, oid uint64, p []byte) error {
	var ev wire.Event
	if err := wire.DecodeEvent(p, &ev); err != nil {
		return err
	}
	s.omu.RLock()
	o := s.objects[oid]
	s.omu.RUnlock()
	if o == nil {
		return nil // released while the event was on its way
	}
	o.deliver(Event{Name: ev.Name, args: ev.Args})
	return nil
}

func (o *object) deliver(ev Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var slow []*Subscription
	for _, s := range o.subs {
		select {
		case s.ch <- ev:
		default:
			slow = append(slow, s)
		}
	}
	if slow == nil {
		return
	}
	o.subs = deleteFunc(o.subs, func(x *Subscription) bool {
		for _, s := range slow {
			if x == s {
				return true
			}
		}
		return false
	})
	for _, s := range slow {
		s.end(&SlowSubscriberError{Object: o.id, Buffer: s.buffer})
	}
}
