package activation

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// SessionConfig describes a client session. Its zero value is a session that
// lives until Close.
type SessionConfig struct {
	// Lease ends the session when it has not been renewed for this long:
	// for clients that cannot be watched (DCOM pinging). Every operation
	// through the session or one of its handles renews it: creating,
	// calling, cloning and releasing objects, subscribing, registering in,
	// revoking from and looking up the running object table, class handles
	// and their locks, and Renew.
	// Zero value: no lease. At most 24 hours.
	Lease time.Duration

	// PID ends the session the moment that process exits: for a local
	// client process, watched through a pidfd, so its death is noticed
	// exactly and at once.
	// Zero value: no process is watched.
	PID int
}

const maxLease = 24 * time.Hour

// Session is one client's view of the activator: every reference, class
// handle, lock and running object table entry belongs to a session, and all
// of them are released when it ends, by Close, by its lease expiring, or by
// its client process dying. It is safe for concurrent use.
type Session struct {
	a     *Activator
	lease time.Duration
	last  atomic.Int64 // last renewal, Unix nanoseconds on the activator's clock
	done  chan struct{}

	mu      sync.Mutex
	err     error // why it ended; nil while open
	handles map[*Object]struct{}
	classes map[*ClassObject]struct{}
	regs    map[string]*rotEntry
	timer   *ownedTimer
	pidfd   *os.File
}

// NewSession opens a client session.
func (a *Activator) NewSession(cfg SessionConfig) (*Session, error) {
	if cfg.Lease < 0 || cfg.Lease > maxLease {
		return nil, fmt.Errorf("bulkhead: SessionConfig.Lease = %v: want 0 (none) to %v", cfg.Lease, maxLease)
	}
	if cfg.PID < 0 {
		return nil, fmt.Errorf("bulkhead: SessionConfig.PID = %d: must not be negative", cfg.PID)
	}
	var pidfd *os.File
	if cfg.PID > 0 {
		fd, err := unix.PidfdOpen(cfg.PID, unix.PIDFD_NONBLOCK)
		if err != nil {
			return nil, fmt.Errorf("bulkhead: watching client process %d: %w", cfg.PID, err)
		}
		pidfd = os.NewFile(uintptr(fd), "client-pidfd")
	}
	s := a.newSession(cfg.Lease)
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		if pidfd != nil {
			pidfd.Close()
		}
		return nil, errActivatorClosed
	}
	// Whatever ends the session (its lease, its client's exit, Close) must
	// find its timer and its watch, to stop them: both are recorded before
	// the session is published, and started only after.
	var lease *ownedTimer
	if cfg.Lease > 0 {
		lease = a.newTimer()
	}
	if pidfd != nil {
		a.wg.Add(1) // watchClient
	}
	s.mu.Lock()
	s.timer, s.pidfd = lease, pidfd
	s.mu.Unlock()
	a.sessions[s] = struct{}{}
	a.mu.Unlock()
	if pidfd != nil {
		go s.watchClient(cfg.PID, pidfd)
	}
	if lease != nil {
		lease.arm(cfg.Lease, s.checkLease)
	}
	return s, nil
}

func (a *Activator) newSession(lease time.Duration) *Session {
	s := &Session{
		a: a, lease: lease, done: make(chan struct{}),
		handles: make(map[*Object]struct{}),
		classes: make(map[*ClassObject]struct{}),
		regs:    make(map[string]*rotEntry),
	}
	s.last.Store(a.clock.Now().UnixNano())
	return s
}

// Renew renews the session's lease.
func (s *Session) Renew() error {
	if err := s.Err(); err != nil {
		return err
	}
	s.touch()
	return nil
}

// touch renews the lease, if there is one.
func (s *Session) touch() {
	if s.lease > 0 {
		s.last.Store(s.a.clock.Now().UnixNano())
	}
}

// checkLease ends the session if its lease ran out, or waits for the rest.
func (s *Session) checkLease() {
	idle := time.Duration(s.a.clock.Now().UnixNano() - s.last.Load())
	if idle >= s.lease {
		s.end(&SessionEndedError{Reason: fmt.Sprintf("lease of %v expired", s.lease), Lease: s.lease})
		return
	}
	a := s.a
	a.mu.Lock() // orders the timer's reservation against Activator.Close
	s.mu.Lock()
	var t *ownedTimer
	if s.err == nil && !a.closed {
		t = a.newTimer()
		s.timer = t
	}
	s.mu.Unlock()
	a.mu.Unlock()
	if t != nil {
		t.arm(s.lease-idle, s.checkLease)
	}
}

// watchClient ends the session when the client process exits. The pidfd
// becomes readable then; closing it (the session ended first) wakes the
// wait with an error.
func (s *Session) watchClient(pid int, f *os.File) {
	defer s.a.wg.Done()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	exited := false
	_ = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if err != nil && err != unix.EINTR {
			return true
		}
		exited = n > 0
		return exited
	})
	if exited {
		s.end(&SessionEndedError{Reason: fmt.Sprintf("client process %d exited", pid), PID: pid})
	}
}

// Done is closed when the session has ended and released everything.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns nil while the session is open, then why it ended: it matches
// ErrSessionClosed (or ErrClosed, when the activator closed).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the session: every reference, class handle, lock and running
// object table entry it holds is released. Closing twice is harmless.
func (s *Session) Close() error {
	s.end(&SessionEndedError{Reason: "closed"})
	return nil
}

// end releases everything the session holds, once. A second caller waits
// until the first has released it all.
func (s *Session) end(why error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.err = why
	handles, classes, regs := s.handles, s.classes, s.regs
	s.handles, s.classes, s.regs = nil, nil, nil
	timer, pidfd := s.timer, s.pidfd
	s.mu.Unlock()

	timer.Stop()
	if pidfd != nil {
		pidfd.Close()
	}
	for _, e := range regs {
		s.a.revokeEntry(e)
	}
	for co := range classes {
		co.drop()
	}
	for h := range handles {
		if h.released.CompareAndSwap(false, true) {
			h.drop(why)
		}
	}
	s.a.mu.Lock()
	delete(s.a.sessions, s)
	s.a.mu.Unlock()
	close(s.done)
}

// adopt makes a handle for a reference to o already taken; if the session
// has ended the reference is dropped.
func (s *Session) adopt(o *object) (*Object, error) {
	h := &Object{o: o, sess: s}
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		o.unref()
		return nil, err
	}
	s.handles[h] = struct{}{}
	s.mu.Unlock()
	return h, nil
}

// forget removes a released handle from the session.
func (s *Session) forget(h *Object) {
	s.mu.Lock()
	if s.handles != nil {
		delete(s.handles, h)
	}
	s.mu.Unlock()
}

func (s *Session) class(name string) (*classEntry, error) {
	if err := s.Err(); err != nil {
		return nil, err
	}
	c := s.a.classes[name]
	if c == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownClass, name)
	}
	s.touch()
	return c, nil
}

// CreateInstance creates an object of class with args for its constructor
// and returns a handle to it (CoCreateInstance). A server is launched on
// demand; activations refused with "server stopping" by a server that is
// shutting down are retried on another, invisibly.
func (s *Session) CreateInstance(ctx context.Context, class string, args ...any) (*Object, error) {
	c, err := s.class(class)
	if err != nil {
		return nil, err
	}
	return s.a.activate(ctx, s, c, nil, args)
}

// GetClassObject returns a handle to class's class object in a server,
// launching one if needed (CoGetClassObject). The handle locks the server
// in the same step as it is handed out, as the Windows NT 4.0 SCM does, so
// that no other client's last release can stop the server before this one
// calls LockServer.
func (s *Session) GetClassObject(ctx context.Context, class string) (*ClassObject, error) {
	c, err := s.class(class)
	if err != nil {
		return nil, err
	}
	g, err := s.a.place(ctx, c, nil, true, false)
	if err != nil {
		return nil, err
	}
	co := &ClassObject{a: s.a, s: g.s, c: c, sess: s}
	if h := s.a.hooks.handout; h != nil {
		h(co)
	}
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		co.drop()
		return nil, err
	}
	s.classes[co] = struct{}{}
	s.mu.Unlock()
	return co, nil
}

// ClassObject is a handle to a class in one server process (an
// IClassFactory). While it is held the server stays alive; LockServer adds
// explicit locks, which Release drops along with the handle's own.
type ClassObject struct {
	a    *Activator
	s    *server
	c    *classEntry
	sess *Session

	mu       sync.Mutex
	released bool
	locks    int // LockServer(true) calls not yet undone
}

// Class returns the class name.
func (co *ClassObject) Class() string { return co.c.name }

// PID returns the process id of the server the handle locks.
func (co *ClassObject) PID() int { return co.s.pid }

// CreateInstance creates an object in this handle's server, if it still
// takes activations of the class, and elsewhere otherwise (a single-use
// server that is used, or a server that revoked its classes).
func (co *ClassObject) CreateInstance(ctx context.Context, args ...any) (*Object, error) {
	co.mu.Lock()
	released := co.released
	co.mu.Unlock()
	if released {
		return nil, ErrReleased
	}
	if err := co.sess.Err(); err != nil {
		return nil, err
	}
	co.sess.touch()
	return co.a.activate(ctx, co.sess, co.c, co, args)
}

// LockServer adds (true) or removes (false) an explicit lock on the server
// (IClassFactory::LockServer). Unlocking more than was locked through this
// handle returns ErrNotLocked.
func (co *ClassObject) LockServer(lock bool) error {
	co.sess.touch()
	stop, err := co.lockServer(lock)
	if stop {
		co.a.stop(co.s)
	}
	return err
}

func (co *ClassObject) lockServer(lock bool) (stop bool, err error) {
	co.mu.Lock()
	defer co.mu.Unlock()
	if co.released {
		return false, ErrReleased
	}
	a, s := co.a, co.s
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case s.state == stateGone:
		return false, &DisconnectedError{Class: co.c.name, PID: s.pid, Err: s.crash}
	case lock:
		s.explicit++
		co.locks++
		return false, nil
	case co.locks == 0:
		return false, ErrNotLocked
	}
	s.explicit--
	co.locks--
	return a.maybeStopLocked(s), nil
}

// Release drops the handle and the locks it holds. A second Release
// returns ErrReleased.
func (co *ClassObject) Release() error {
	co.sess.touch()
	co.sess.mu.Lock()
	if co.sess.classes != nil {
		delete(co.sess.classes, co)
	}
	co.sess.mu.Unlock()
	if !co.drop() {
		return ErrReleased
	}
	return nil
}

// drop releases the handle's locks once; false if already released.
func (co *ClassObject) drop() bool {
	co.mu.Lock()
	if co.released {
		co.mu.Unlock()
		return false
	}
	co.released = true
	a, s := co.a, co.s
	a.mu.Lock()
	var stop bool
	if s.state != stateGone {
		s.explicit -= co.locks
		s.classRefs--
		stop = a.maybeStopLocked(s)
	}
	co.locks = 0
	a.mu.Unlock()
	co.mu.Unlock()
	if stop {
		a.stop(s)
	}
	return true
}
