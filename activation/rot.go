package activation

import (
	"fmt"
	"slices"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// rotEntry is a running object table entry. A keep-alive entry holds a
// reference to its object, which keeps the object's server alive; a weak one
// disappears with its object. Either disappears with its server.
type rotEntry struct {
	name      string
	o         *object
	keepAlive bool
	sess      *Session
}

// Register enters obj in the running object table as name, owned by this
// session: it is revoked when the session ends. With keepAlive the entry
// holds a reference, so the object (and its server) stays alive until it is
// revoked (ROTFLAGS_REGISTRATIONKEEPSALIVE); without it, the entry vanishes
// when the object's last reference does. Names are 1 to 256 bytes of
// printable UTF-8.
func (s *Session) Register(name string, obj *Object, keepAlive bool) error {
	if !wire.ValidName(name) {
		return fmt.Errorf("%w: %q (want 1 to %d bytes of printable UTF-8)", ErrInvalidName, name, wire.MaxClassBytes)
	}
	if err := s.Err(); err != nil {
		return err
	}
	s.touch()
	if obj.released.Load() {
		return obj.errReleased()
	}
	o := obj.o
	if keepAlive && !o.tryRef() {
		return obj.errReleased()
	}
	e := &rotEntry{name: name, o: o, keepAlive: keepAlive, sess: s}
	a := s.a
	a.mu.Lock()
	var err error
	switch {
	case a.closed:
		err = bulkhead.ErrClosed
	case o.s.state == stateGone:
		err = o.disconnectedErr(nil)
	case a.rot[name] != nil:
		err = fmt.Errorf("%w: %q", ErrNameInUse, name)
	case len(a.rot) >= a.maxROT:
		err = fmt.Errorf("%w: %d entries", ErrROTFull, len(a.rot))
	case !keepAlive && o.refs.Load() <= 0:
		err = ErrReleased
	default:
		a.rot[name] = e
		o.rot = append(o.rot, name)
	}
	a.mu.Unlock()
	if err != nil {
		if keepAlive {
			o.unref()
		}
		return err
	}
	s.mu.Lock()
	if s.err != nil {
		err = s.err
	} else {
		s.regs[name] = e
	}
	s.mu.Unlock()
	if err != nil {
		a.revokeEntry(e)
	}
	return err
}

// Revoke removes an entry this session registered.
func (s *Session) Revoke(name string) error {
	s.touch()
	s.mu.Lock()
	e := s.regs[name]
	if e != nil {
		delete(s.regs, name)
	}
	err := s.err
	s.mu.Unlock()
	if e == nil {
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: %q by this session", ErrNotRegistered, name)
	}
	s.a.revokeEntry(e)
	return nil
}

// revokeEntry removes e from the table, if it is still there, and drops its
// reference.
func (a *Activator) revokeEntry(e *rotEntry) {
	a.mu.Lock()
	if a.rot[e.name] == e {
		delete(a.rot, e.name)
		e.o.rot = slices.DeleteFunc(e.o.rot, func(n string) bool { return n == e.name })
	}
	a.mu.Unlock()
	if e.keepAlive {
		e.o.unref()
	}
}

// Lookup returns a new handle, owned by this session, to the object
// registered as name (IRunningObjectTable::GetObject).
func (s *Session) Lookup(name string) (*Object, error) {
	if err := s.Err(); err != nil {
		return nil, err
	}
	a := s.a
	a.mu.Lock()
	e := a.rot[name]
	ok := e != nil && e.o.disc.Load() == nil && e.o.tryRef()
	a.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotRegistered, name)
	}
	s.touch()
	return s.adopt(e.o)
}

// dropROTLocked removes o's entries: its last reference is gone, or its
// server. Keep-alive entries keep their reference, which their session
// drops when it revokes them.
func (a *Activator) dropROTLocked(o *object) {
	for _, name := range o.rot {
		if e := a.rot[name]; e != nil && e.o == o {
			delete(a.rot, name)
		}
	}
	o.rot = nil
}
