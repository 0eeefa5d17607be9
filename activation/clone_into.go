package activation

import "errors"

// errOtherActivator: a handle cannot move between activators.
var errOtherActivator = errors.New("bulkhead: CloneInto: the session is another activator's")

// CloneInto returns a new handle to the same object, owned by s (an AddRef
// into another session of the same activator). For a holder whose
// reference must not end with the handle's session: a cluster node's
// event forwarder, shared by the subscriptions of several clients,
// subscribes through a handle of its own session.
func (h *Object) CloneInto(s *Session) (*Object, error) {
	if s.a != h.sess.a {
		return nil, errOtherActivator
	}
	if h.released.Load() || !h.o.tryRef() {
		return nil, h.errReleased()
	}
	h.sess.touch()
	s.touch()
	return s.adopt(h.o)
}
