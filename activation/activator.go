package activation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Instancing says how a class's objects are spread over server processes.
type Instancing int

const (
	// MultipleUse: one server process hosts every object of the class
	// (REGCLS_MULTIPLEUSE).
	MultipleUse Instancing = iota
	// SingleUse: every object gets a fresh server process of its own, so
	// that clients are isolated from each other (REGCLS_SINGLEUSE).
	SingleUse
	// Pooled: up to PoolSize identical server processes, each started
	// with its own cookie. A new object goes to an empty server while the
	// pool may grow, and to the least loaded one once it is full.
	Pooled
)

func (i Instancing) String() string {
	switch i {
	case MultipleUse:
		return "multiple-use"
	case SingleUse:
		return "single-use"
	case Pooled:
		return "pooled"
	}
	return fmt.Sprintf("Instancing(%d)", int(i))
}

// ClassConfig describes one class in the activator's registry.
type ClassConfig struct {
	// Name is the class name the server registers: 1 to 256 bytes of
	// UTF-8 without control characters, unique across servers. Required.
	Name string

	// Instancing chooses how objects map to processes.
	// Zero value: MultipleUse.
	Instancing Instancing

	// PoolSize bounds the servers of a Pooled class.
	// Zero value: runtime.NumCPU(). At most 1024. Ignored otherwise.
	PoolSize int
}

// ServerConfig describes a server program and the classes it serves.
type ServerConfig struct {
	// Name names the server in logs.
	// Zero value: the base name of Process.Command.
	Name string

	// Process is how to start the program. Its StartTimeout bounds the
	// time from spawn to HELLO, and again from HELLO to RESUME. Class
	// servers always use the socket transport, and the pool's defaults for
	// what Process does not say (MaxFrameSize, KillGrace). Required:
	// Command.
	Process bulkhead.Process

	// Classes are the classes the program registers. At least one.
	Classes []ClassConfig
}

// NoLinger makes a server whose lock count reached zero get QUIT at once.
const NoLinger time.Duration = -1

// ActivatorConfig describes an activator. Every field's zero value is usable
// except Servers. NewActivator copies it.
type ActivatorConfig struct {
	// Servers is the registry: which program serves which classes.
	Servers []ServerConfig

	// Linger is how long a server whose lock count reached zero stays
	// before it is sent QUIT. It is suspended from the moment of the
	// decision either way: lingering never lets a new activation in.
	// Zero value: 100 ms. NoLinger (or any negative value): QUIT at once.
	Linger time.Duration

	// MaxRetries bounds how often in a row one activation is moved to
	// another server after its server died before starting it. An answer
	// "server stopping" is not a failure and is not counted: such an
	// activation goes to another server as often as it takes, until its
	// ctx ends (PROTOCOL.md section 10: the client never sees it).
	// Zero value: 16. At most 1000.
	MaxRetries int

	// MaxObjects bounds the objects alive at once, over all servers.
	// Zero value: 1<<20.
	MaxObjects int

	// MaxROTEntries bounds the running object table.
	// Zero value: 4096.
	MaxROTEntries int

	// EventDelay bounds how long a frame a server sends on its own (an
	// event, REVOKE) can wait to be read while calls keep coming. Calls
	// read such frames themselves; a watcher takes over when they stop,
	// after this long, so that calls do not pay for waking it.
	// Zero value: 1 ms. At most 1 s.
	EventDelay time.Duration

	// Clock is the source of time for leases and linger.
	// Zero value: the system clock.
	Clock Clock

	// Logger receives one record per server launch failure, crash and
	// stop. Zero value: slog.Default().
	Logger *slog.Logger
}

const (
	defaultLinger = 100 * time.Millisecond
	maxPoolSize   = 1024
)

// actHooks let tests stop the activator at exact points, to force each race of
// seeds 001, 002 and 004. Every hook is optional.
type actHooks struct {
	registered   func(s *server, class string)  // a REGISTER was recorded (on the reader)
	waiting      func(class string)             // an activation or handout waits for a server
	decided      func(s *server)                // the zero-lock decision and suspend are done; nothing sent yet
	handout      func(co *ClassObject)          // a class handle locked its server; not yet returned
	activateSent func(s *server, oid uint64)    // an ACTIVATE was written
	callSent     func(s *server, oid uint64)    // an OBJCALL was written
	learned      func(s *server, perServer int) // a server's refusals taught how many activations one takes (under a.mu)
	frame        func(s *server, t wire.Type)   // an object-model frame is about to be handled (on the reader)
	gone         func(s *server)                // a server's exit has been processed
}

// Activator is bulkhead's service control manager: it starts class servers on
// demand, routes activations to them, and is the single authority on every
// server's lock count, so that the decision to shut a server down and its
// suspension are one step. See docs/DESIGN.md, "Objects and server lifetime".
type Activator struct {
	linger     time.Duration
	eventDelay time.Duration
	maxRetries int
	maxObjects int
	maxROT     int
	clock      Clock
	log        *slog.Logger
	spawner    *proc.Spawner
	hooks      actHooks
	classes    map[string]*classEntry // fixed after NewActivator

	mu       sync.Mutex
	servers  map[*server]struct{} // not yet gone
	rot      map[string]*rotEntry
	sessions map[*Session]struct{}
	objects  int // pending and live, over all servers
	closed   bool

	def       *Session
	wg        sync.WaitGroup // launches, watchers, timers, client watchers
	closeOnce sync.Once
	closeErr  error
	stats     actCounters
}

// serverDef is a validated ServerConfig.
type serverDef struct {
	name    string
	spec    processSpec // how to start one
	classes []*classEntry
	// perServer is how many activations a server of this program takes
	// before it revokes its classes by itself, as last learned
	// (learnLocked); 0 until one has refused an activation. Guarded by
	// Activator.mu.
	perServer int
}

// classEntry is a class's routing state, guarded by Activator.mu.
type classEntry struct {
	name     string
	cfg      ClassConfig
	def      *serverDef
	routable []*server    // running servers that registered the class and take activations
	pending  int          // launches under way that will serve it
	waiters  []*actWaiter // activations and handouts waiting for a server
}

// actWaiter is an activation (or class handout) waiting for a server.
type actWaiter struct {
	ch  chan actGrant // cap 1
	cls bool          // a class handout, not an activation
}

// actGrant is what a waiter receives: a server already locked for it (and,
// for an activation, its object), or the reason it gets none.
type actGrant struct {
	s   *server
	obj *object
	err error
}

type actCounters struct {
	launches        atomic.Uint64
	launchFailures  atomic.Uint64
	activations     atomic.Uint64
	stoppingRetries atomic.Uint64
	redispatched    atomic.Uint64
	disconnected    atomic.Uint64
	crashes         atomic.Uint64
	stops           atomic.Uint64
}

// NewActivator validates cfg and returns an activator. No server starts until
// the first activation of one of its classes.
func NewActivator(cfg ActivatorConfig) (*Activator, error) {
	return newActivator(cfg, actHooks{})
}

func newActivator(cfg ActivatorConfig, h actHooks) (*Activator, error) {
	a := &Activator{
		linger:     cfg.Linger,
		eventDelay: cfg.EventDelay,
		maxRetries: cfg.MaxRetries,
		maxObjects: cfg.MaxObjects,
		maxROT:     cfg.MaxROTEntries,
		clock:      cfg.Clock,
		log:        cfg.Logger,
		hooks:      h,
		classes:    make(map[string]*classEntry),
		servers:    make(map[*server]struct{}),
		rot:        make(map[string]*rotEntry),
		sessions:   make(map[*Session]struct{}),
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("bulkhead: ActivatorConfig."+format, args...))
	}
	switch {
	case a.linger == 0:
		a.linger = defaultLinger
	case a.linger < 0:
		a.linger = 0
	}
	if a.eventDelay < 0 || a.eventDelay > time.Second {
		bad("EventDelay = %v: want 0 (1 ms) to 1 s", a.eventDelay)
	} else if a.eventDelay == 0 {
		a.eventDelay = time.Millisecond
	}
	if a.maxRetries < 0 || a.maxRetries > 1000 {
		bad("MaxRetries = %d: want 0 (16) to 1000", a.maxRetries)
	} else if a.maxRetries == 0 {
		a.maxRetries = 16
	}
	if a.maxObjects < 0 {
		bad("MaxObjects = %d: must not be negative", a.maxObjects)
	} else if a.maxObjects == 0 {
		a.maxObjects = 1 << 20
	}
	if a.maxROT < 0 {
		bad("MaxROTEntries = %d: must not be negative", a.maxROT)
	} else if a.maxROT == 0 {
		a.maxROT = 4096
	}
	if a.clock == nil {
		a.clock = systemClock{}
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if len(cfg.Servers) == 0 {
		bad("Servers: at least one server is required")
	}
	for i, sc := range cfg.Servers {
		a.addServer(i, sc, bad)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	a.spawner = proc.NewSpawner()
	a.def = a.newSession(0)
	a.sessions[a.def] = struct{}{}
	return a, nil
}

// addServer validates Servers[i] and enters its classes in the registry,
// reporting each problem to bad.
func (a *Activator) addServer(i int, sc ServerConfig, bad func(format string, args ...any)) {
	invalid := false
	spec := newProcessSpec(sc.Process, func(format string, args ...any) {
		invalid = true
		bad("Servers[%d].Process."+format, append([]any{i}, args...)...)
	})
	if invalid {
		return
	}
	def := &serverDef{name: sc.Name, spec: spec}
	if def.name == "" {
		def.name = filepath.Base(sc.Process.Command)
	}
	if len(sc.Classes) == 0 {
		bad("Servers[%d].Classes: at least one class is required", i)
	}
	if len(sc.Classes) > wire.MaxClasses {
		bad("Servers[%d].Classes: %d classes, more than %d", i, len(sc.Classes), wire.MaxClasses)
		return
	}
	for j, cc := range sc.Classes {
		switch {
		case !wire.ValidName(cc.Name):
			bad("Servers[%d].Classes[%d].Name %q: want 1 to %d bytes of printable UTF-8", i, j, cc.Name, wire.MaxClassBytes)
			continue
		case a.classes[cc.Name] != nil:
			bad("Servers[%d].Classes[%d]: class %q is configured twice", i, j, cc.Name)
			continue
		case cc.Instancing < MultipleUse || cc.Instancing > Pooled:
			bad("Servers[%d].Classes[%d].Instancing = %d: unknown", i, j, cc.Instancing)
			continue
		case cc.PoolSize < 0 || cc.PoolSize > maxPoolSize:
			bad("Servers[%d].Classes[%d].PoolSize = %d: want 0 (NumCPU) to %d", i, j, cc.PoolSize, maxPoolSize)
			continue
		}
		if cc.PoolSize == 0 {
			cc.PoolSize = runtime.NumCPU()
		}
		c := &classEntry{name: cc.Name, cfg: cc, def: def}
		a.classes[cc.Name] = c
		def.classes = append(def.classes, c)
	}
}

// CreateInstance creates an object of class in the activator's own session
// (see Session.CreateInstance).
func (a *Activator) CreateInstance(ctx context.Context, class string, args ...any) (*Object, error) {
	return a.def.CreateInstance(ctx, class, args...)
}

// GetClassObject returns a class handle in the activator's own session (see
// Session.GetClassObject).
func (a *Activator) GetClassObject(ctx context.Context, class string) (*ClassObject, error) {
	return a.def.GetClassObject(ctx, class)
}

// Register enters obj in the running object table, owned by the activator's
// own session (see Session.Register).
func (a *Activator) Register(name string, obj *Object, keepAlive bool) error {
	return a.def.Register(name, obj, keepAlive)
}

// Revoke removes a running object table entry made with Activator.Register.
func (a *Activator) Revoke(name string) error { return a.def.Revoke(name) }

// Lookup returns a new handle, in the activator's own session, to the object
// registered as name.
func (a *Activator) Lookup(name string) (*Object, error) { return a.def.Lookup(name) }

// ActivatorStats is a snapshot of an activator's state and counters.
type ActivatorStats struct {
	Servers    int // servers that said HELLO and have not exited
	Starting   int // servers being started
	Objects    int // objects alive or being activated
	Sessions   int // open sessions, the activator's own included
	ROTEntries int

	Launches        uint64 // servers that said HELLO
	LaunchFailures  uint64
	Activations     uint64 // objects created
	StoppingRetries uint64 // activations answered "server stopping" and retried elsewhere
	Redispatched    uint64 // activations retried because their server died before starting them
	Disconnected    uint64 // calls that failed because their server was gone
	ServerCrashes   uint64 // servers that exited without being asked
	ServerStops     uint64 // servers stopped because their lock count reached zero
}

// Stats returns a snapshot of the activator's state and counters.
func (a *Activator) Stats() ActivatorStats {
	a.mu.Lock()
	st := ActivatorStats{Objects: a.objects, Sessions: len(a.sessions), ROTEntries: len(a.rot)}
	for s := range a.servers {
		if s.state == stateStarting {
			st.Starting++
		} else {
			st.Servers++
		}
	}
	a.mu.Unlock()
	st.Launches = a.stats.launches.Load()
	st.LaunchFailures = a.stats.launchFailures.Load()
	st.Activations = a.stats.activations.Load()
	st.StoppingRetries = a.stats.stoppingRetries.Load()
	st.Redispatched = a.stats.redispatched.Load()
	st.Disconnected = a.stats.disconnected.Load()
	st.ServerCrashes = a.stats.crashes.Load()
	st.ServerStops = a.stats.stops.Load()
	return st
}

// ServerInfo describes one class server process.
type ServerInfo struct {
	Name    string
	PID     int
	Cookie  string // its BULKHEAD_COOKIE, unique per process
	State   string // "registered", "running", "stopping"
	Locks   int    // objects + explicit locks + class handles
	Objects int
	Classes []string // registered
}

// Servers lists the class servers that said HELLO and have not exited.
func (a *Activator) Servers() []ServerInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []ServerInfo
	for s := range a.servers {
		if s.state == stateStarting {
			continue
		}
		info := ServerInfo{Name: s.def.name, PID: s.pid, Cookie: s.w.Hello.Cookie, State: s.state.String(),
			Locks: s.lockCount(), Objects: s.objCount}
		for c := range s.registered {
			info.Classes = append(info.Classes, c)
		}
		slices.Sort(info.Classes)
		out = append(out, info)
	}
	slices.SortFunc(out, func(x, y ServerInfo) int { return x.PID - y.PID })
	return out
}

// Close ends every session (releasing every reference and lock), asks every
// server to QUIT (calls in flight finish first) and waits for them to exit.
// If ctx ends first the rest are killed. Later calls fail with an error that matches ErrClosed.
func (a *Activator) Close(ctx context.Context) error {
	a.closeOnce.Do(func() { a.closeErr = a.close(ctx) })
	return a.closeErr
}

func (a *Activator) close(ctx context.Context) error {
	for _, s := range a.markClosed() {
		s.end(errActivatorClosed)
	}
	a.mu.Lock()
	var live []*server
	var timers []*ownedTimer
	for s := range a.servers {
		if s.state == stateStarting {
			continue // its launch goroutine kills it
		}
		live = append(live, s)
		s.stopInit = true
		timers = append(timers, s.lingerTimer, s.regTimer)
	}
	a.mu.Unlock()
	for _, t := range timers {
		t.Stop()
	}
	for _, s := range live {
		a.quit(s)
	}
	var err error
	for _, s := range live {
		select {
		case <-s.gone:
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			for _, s := range live {
				s.w.Proc.Kill()
			}
			<-s.gone
		}
	}
	a.wg.Wait()
	a.spawner.Close()
	closed := map[*serverDef]bool{}
	for _, c := range a.classes {
		if !closed[c.def] {
			closed[c.def] = true
			if cerr := c.def.spec.plan.Close(); cerr != nil {
				a.log.Warn("class server cgroups left behind", "server", c.def.name, "err", cerr)
			}
		}
	}
	return err
}

// markClosed marks the activator closed, fails the activations waiting and
// cuts short the servers' waits for HELLO (their launch goroutines kill
// them); it returns the sessions to end.
func (a *Activator) markClosed() (sessions []*Session) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for _, c := range a.classes {
		for _, wt := range c.waiters {
			wt.ch <- actGrant{err: errActivatorClosed}
		}
		c.waiters = nil
	}
	for s := range a.servers {
		if s.starting != nil {
			// Under the lock, which keeps its descriptor open: its launch
			// goroutine closes it only after track(false), which takes it.
			s.starting.Conn.Shutdown()
		}
	}
	for s := range a.sessions {
		sessions = append(sessions, s)
	}
	return sessions
}
