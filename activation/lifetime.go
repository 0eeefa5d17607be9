package activation

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// A class server's life (docs/DESIGN.md, "States of a server"):
//
//	starting ──HELLO──▶ registered ──RESUME──▶ running ──locks reach 0──▶ stopping ──exit──▶ gone
//	   │                (suspended)              │        or REVOKE            │
//	   └──── exit / timeout ──▶ gone             └────────── exit ─────────────┴──▶ gone
//
// Every transition happens under Activator.mu, and only running servers are
// routable. The lock count is the server's objects (live, and activations
// on their way), plus LockServer locks, plus class handles. When it reaches
// zero, the decision to stop and the suspension are the same critical
// section (maybeStopLocked): no activation can be routed to the server after
// the decision. Activations that were already on the wire cannot exist then,
// because each counts as a lock from the moment it is routed. The worker's
// own "server stopping" answer covers the one remaining case, a worker that
// decides to stop by itself (REVOKE) while activations are on their way.
type srvState int

const (
	stateStarting   srvState = iota // launched, no HELLO yet
	stateRegistered                 // said HELLO; registering classes, all suspended
	stateRunning                    // resumed: routable
	stateStopping                   // decided or revoked: never routable again
	stateGone                       // exited
)

func (s srvState) String() string {
	return [...]string{"starting", "registered", "running", "stopping", "gone"}[s]
}

// server is one class server process. Fields are guarded by Activator.mu
// unless said otherwise.
type server struct {
	a    *Activator
	def  *serverDef
	w    *serverProc // set at HELLO
	pid  int
	gone chan struct{} // closed once it has exited and been cleaned up

	state      srvState
	registered map[string]wire.Register
	objCount   int // objects alive or being activated
	// For learning how many activations a server takes (routing.go):
	taken       int  // activations ever routed to it
	inflight    int  // of those, not yet answered (settleLocked)
	accepted    int  // of those, taken by the worker
	refused     bool // one was answered "server stopping"
	learned     bool
	classRefs   int // class handles held by clients
	explicit    int // LockServer(true) locks
	singleUsed  bool
	launchEnded bool
	stopInit    bool // SUSPEND and QUIT are under way
	exited      bool // exited while starting: the launch goroutine cleans up
	starting    *serverProc
	lingerTimer *ownedTimer
	regTimer    *ownedTimer
	crash       error // why it is gone, for disconnected handles; set before gone closes

	// objects is read by the reader for EVENT frames, so it has its own
	// lock; it is written under Activator.mu too.
	omu     sync.RWMutex
	objects map[uint64]*object
	nextOID uint64

	// connRefs counts the connection's users: the live process, the
	// watcher and each call in flight. The last one closes it.
	connRefs atomic.Int64
	quitOnce sync.Once
}

func newServer(a *Activator, def *serverDef) *server {
	return &server{
		a: a, def: def, gone: make(chan struct{}),
		registered: make(map[string]wire.Register),
		objects:    make(map[uint64]*object),
	}
}

// lockCount is the server's lock count (COM's server lock): objects, explicit locks
// and class handles.
func (s *server) lockCount() int { return s.objCount + s.classRefs + s.explicit }

// acquireConn pins the connection for one use; false if it is closed.
func (s *server) acquireConn() bool {
	for {
		n := s.connRefs.Load()
		if n <= 0 {
			return false
		}
		if s.connRefs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *server) releaseConn() {
	if s.connRefs.Add(-1) == 0 {
		s.w.Close()
	}
}

// sendControl sends a frame without reply, if the connection is still open.
func (s *server) sendControl(t wire.Type, id uint64) {
	if s.acquireConn() {
		s.w.Conn.SendControl(t, id)
		s.releaseConn()
	}
}

// onFrame handles an object-model frame from s's worker, on whichever
// goroutine is reading. An error breaks the connection and kills the worker.
func (a *Activator) onFrame(s *server, h wire.Header, p []byte) error {
	if hk := a.hooks.frame; hk != nil {
		hk(s, h.Type)
	}
	var err error
	switch h.Type {
	case wire.TypeRegister:
		err = a.register(s, p)
	case wire.TypeResume:
		err = a.resume(s)
	case wire.TypeRevoke:
		a.revoke(s)
	case wire.TypeEvent:
		err = a.event(s, h.ID, p)
	default:
		err = &wire.FrameError{Header: h, Reason: "dispatcher-only message from worker"}
	}
	if err != nil {
		s.w.kill()
	}
	return err
}

func (a *Activator) register(s *server, p []byte) error {
	reg, err := wire.DecodeRegister(p)
	if err != nil {
		return err
	}
	a.mu.Lock()
	switch {
	case s.state != stateRegistered:
		err = fmt.Errorf("%w: REGISTER of %q while %v", wire.ErrProtocol, reg.Class, s.state)
	case s.registered[reg.Class].Class != "":
		err = fmt.Errorf("%w: class %q registered twice", wire.ErrProtocol, reg.Class)
	case len(s.registered) >= wire.MaxClasses:
		err = fmt.Errorf("%w: more than %d classes", wire.ErrProtocol, wire.MaxClasses)
	default:
		s.registered[reg.Class] = reg
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if c := a.classes[reg.Class]; c == nil || c.def != s.def {
		a.log.Warn("class server registered a class it is not configured for; ignored",
			"server", s.def.name, "pid", s.pid, "class", reg.Class)
	}
	if h := a.hooks.registered; h != nil {
		h(s, reg.Class)
	}
	return nil
}

// resume makes every class s registered routable at once
// (CoResumeClassObjects), and hands s to the activations waiting for it.
func (a *Activator) resume(s *server) error {
	a.mu.Lock()
	if s.state != stateRegistered {
		st := s.state
		a.mu.Unlock()
		if st == stateStopping || st == stateGone {
			return nil // revoked before resuming, or being torn down
		}
		return fmt.Errorf("%w: RESUME while %v", wire.ErrProtocol, st)
	}
	s.state = stateRunning
	reg := s.regTimer
	a.launchEndedLocked(s)
	for _, c := range s.def.classes {
		if _, ok := s.registered[c.name]; ok {
			c.routable = append(c.routable, s)
		}
	}
	for _, c := range s.def.classes {
		var failErr error
		if _, ok := s.registered[c.name]; !ok {
			failErr = fmt.Errorf("%w: %s did not register %q", ErrClassNotRegistered, s.def.name, c.name)
		}
		a.serveWaitersLocked(c, failErr)
	}
	stop := a.maybeStopLocked(s)
	a.mu.Unlock()
	reg.Stop()
	if stop {
		a.stop(s)
	}
	return nil
}

// revoke is the worker's own decision to stop: it is no longer routable,
// and is told to quit once its lock count reaches zero.
func (a *Activator) revoke(s *server) {
	a.mu.Lock()
	var stop bool
	reg := s.regTimer
	switch s.state {
	case stateRegistered, stateRunning:
		prev := s.state
		s.state = stateStopping
		a.unrouteLocked(s)
		if prev == stateRegistered {
			// It gave up before resuming: whoever waited for it needs
			// another server.
			a.launchEndedLocked(s)
			for _, c := range s.def.classes {
				a.serveWaitersLocked(c, nil)
			}
		}
		stop = a.maybeStopLocked(s)
	}
	a.mu.Unlock()
	reg.Stop()
	if stop {
		a.stop(s)
	}
}

// registrationTimeout kills a server that said HELLO but did not RESUME
// within StartTimeout.
func (a *Activator) registrationTimeout(s *server) {
	a.mu.Lock()
	late := s.state == stateRegistered
	a.mu.Unlock()
	if late {
		a.log.Error("class server did not resume its classes in time; killed",
			"server", s.def.name, "pid", s.pid, "timeout", s.def.spec.StartTimeout)
		s.w.Proc.Kill()
	}
}

func (a *Activator) unrouteLocked(s *server) {
	for _, c := range s.def.classes {
		a.unrouteClassLocked(s, c)
	}
}

func (a *Activator) unrouteClassLocked(s *server, c *classEntry) {
	if i := slices.Index(c.routable, s); i >= 0 {
		c.routable = slices.Delete(c.routable, i, i+1)
	}
}

// maybeStopLocked is CoReleaseServerProcess: called after any lock on s was
// dropped, it decides, and suspends s in the same step, when the lock count
// has reached zero. When it returns true s is already unroutable and the
// caller must call stop after unlocking.
func (a *Activator) maybeStopLocked(s *server) bool {
	if s.lockCount() > 0 || s.stopInit {
		return false
	}
	switch s.state {
	case stateRunning:
		s.state = stateStopping
		a.unrouteLocked(s)
	case stateStopping: // revoked earlier, drained now
	default:
		return false
	}
	s.stopInit = true
	a.stats.stops.Add(1)
	return true
}

// stop carries out a decision to stop s: SUSPEND now, QUIT after the linger.
func (a *Activator) stop(s *server) {
	if h := a.hooks.decided; h != nil {
		h(s)
	}
	s.sendControl(wire.TypeSuspend, 0)
	if a.linger <= 0 {
		a.quit(s)
		return
	}
	a.mu.Lock()
	var t *ownedTimer
	if s.state != stateGone && !a.closed {
		t = a.newTimer()
		s.lingerTimer = t
	}
	a.mu.Unlock()
	if t != nil {
		t.arm(a.linger, func() { a.quit(s) })
	}
}

// quit sends QUIT and escalates to SIGTERM and SIGKILL if s lingers.
func (a *Activator) quit(s *server) {
	s.quitOnce.Do(func() {
		s.sendControl(wire.TypeQuit, 0)
		g := s.def.spec.KillGrace
		s.w.Proc.Stop(proc.Step{Wait: g}, proc.Step{Signal: syscall.SIGTERM, Wait: g})
	})
}

// onExit runs once s's process has exited and been reaped: every object in
// it is disconnected, its running object table entries and locks are
// dropped, and the next activation of its classes launches a fresh server.
func (a *Activator) onExit(s *server, w *serverProc) {
	w.Conn.Shutdown()  // wake any caller blocked reading, and a watcher in poll
	w.nativeFunction() // may read the program's symbols: before the lock, for idleCrash
	a.mu.Lock()
	if s.state == stateStarting {
		s.exited = true
		a.mu.Unlock()
		return // the launch goroutine cleans up
	}
	w.Conn.KickWatcher() // set up under a.mu by launchServer; c.mu nests inside a.mu
	// A server killed because a request's ctx ended while it had it is
	// stopped by the activator, as a pool's hung worker is: no crash.
	abandonedBy := w.Conn.AbandonedBy()
	expected := s.stopInit || a.closed || abandonedBy != 0
	ex := proc.ExitOf(w.Proc.State())
	var cause error
	if a.closed && !s.stopInit {
		cause = errActivatorClosed
	} else {
		cause = idleCrash(w)
	}
	s.crash = cause
	s.state = stateGone
	delete(a.servers, s)
	a.unrouteLocked(s)
	timers := []*ownedTimer{s.lingerTimer, s.regTimer}
	if !s.launchEnded {
		a.launchEndedLocked(s)
		for _, c := range s.def.classes {
			a.serveWaitersLocked(c, &bulkhead.StartError{PID: s.pid, ExitCode: ex.Code, Signal: ex.Signal, Exited: true,
				Reason: fmt.Sprintf("server %d exited before resuming its classes: %v", s.pid, ex), Stderr: w.Stderr.String(), Err: cause})
		}
	}
	s.omu.Lock()
	objs := make([]*object, 0, len(s.objects))
	for id, o := range s.objects {
		objs = append(objs, o)
		delete(s.objects, id)
	}
	s.omu.Unlock()
	for _, o := range objs {
		a.dropROTLocked(o)
	}
	a.objects -= s.objCount
	s.objCount, s.classRefs, s.explicit = 0, 0, 0
	close(s.gone)
	a.mu.Unlock()

	// Their callbacks use the process, which is released below.
	for _, t := range timers {
		t.stopWait()
	}
	disc := &DisconnectedError{PID: s.pid, Err: cause}
	for _, o := range objs {
		o.disconnect(disc)
	}
	if expected {
		a.log.Info("class server stopped", "server", s.def.name, "pid", s.pid, "exit", ex.String(), "abandoned_by", abandonedBy)
	} else {
		a.stats.crashes.Add(1)
		a.log.Error("class server crashed", "server", s.def.name, "pid", s.pid, "objects", len(objs),
			"exit", ex.String(), "stderr_tail", w.Stderr.String())
	}
	w.Proc.Release()
	if h := a.hooks.gone; h != nil {
		h(s)
	}
	s.releaseConn()
}
