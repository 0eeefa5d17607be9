// Package daemon is `bulkhead serve`: COM's service control manager on
// Linux. It runs the pools and class servers of a configuration (Load) on
// behalf of client processes in any language, which reach it over a Unix
// socket with the client protocol of docs/CLIENT-PROTOCOL.md. Every
// reference a client holds belongs to its connection and is released when
// the connection ends, however it ends.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"reflect"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
)

// Server serves one configuration's pools and classes. Reload replaces its
// pools without failing a call; Shutdown drains it.
type Server struct {
	log *slog.Logger
	act *activation.Activator // nil without [[server]]

	mu       sync.Mutex // guards the fields below; no I/O under it
	cfg      *Config
	pools    map[string]*poolEntry
	failing  map[string]*failingPool // pools whose workers cannot start (failing.go)
	conns    map[*conn]struct{}
	draining bool
	ln       *net.UnixListener

	connWG  sync.WaitGroup // connections
	drainWG sync.WaitGroup // pools being drained after a reload
	runners runners        // the connections' requests run on them
	retryWG sync.WaitGroup // failing pools' retriers
}

// poolEntry is a pool as the server routes to it. calls counts the requests
// that took it, so that a pool replaced by a reload is closed only after
// them: a call queued in the old pool would otherwise get ErrClosed.
type poolEntry struct {
	name   string
	cfg    bulkhead.Config
	access Access
	pool   *bulkhead.Pool
	calls  sync.WaitGroup
}

// New starts cfg's pools and its activator. log receives the daemon's
// records, JSON in `bulkhead serve`; nil: slog.Default(). cfg is usually
// Load's; one built in code has its zero values defaulted as Load does
// (the caller's is not written).
func New(ctx context.Context, cfg *Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	cfg = cfg.withDefaults()
	s := &Server{log: log, cfg: cfg, pools: make(map[string]*poolEntry), failing: make(map[string]*failingPool),
		conns: make(map[*conn]struct{})}
	for _, p := range cfg.Pools {
		e, f, err := s.startOrFail(ctx, p)
		if err != nil {
			s.closePools(context.Background())
			return nil, err
		}
		if f != nil {
			s.failing[p.Name] = f
			s.retryLater([]*failingPool{f})
			continue
		}
		s.pools[p.Name] = e
	}
	if len(cfg.Activator.Servers) > 0 {
		ac := cfg.Activator
		ac.Logger = log
		a, err := activation.NewActivator(ac)
		if err != nil {
			s.closePools(context.Background())
			return nil, err
		}
		s.act = a
	}
	return s, nil
}

func (s *Server) startPool(ctx context.Context, p Pool) (*poolEntry, error) {
	c := p.Config
	c.Logger = s.log.With("pool", p.Name)
	pool, err := bulkhead.New(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", p.Name, err)
	}
	return &poolEntry{name: p.Name, cfg: p.Config, access: p.Access, pool: pool}, nil
}

// Listen creates the socket of cfg (path overrides cfg.Socket if not
// empty), with its mode and group, replacing a stale socket file.
func Listen(cfg *Config, path string) (*net.UnixListener, error) {
	if path == "" {
		path = cfg.Socket
	}
	if path == "" {
		return nil, errors.New("no socket: set socket in the config or pass --socket")
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another daemon is serving it", path)
		}
		os.Remove(path)
	}
	old := syscall.Umask(0o177) // no window in which others could connect
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, os.FileMode(cfg.SocketMode)); err != nil {
		ln.Close()
		return nil, err
	}
	if cfg.SocketGID > 0 {
		if err := os.Chown(path, -1, cfg.SocketGID); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// Serve accepts clients on ln until Shutdown. It returns nil after
// Shutdown, or the accept error that ended it.
func (s *Server) Serve(ln *net.UnixListener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return bulkhead.ErrClosed
	}
	s.ln = ln
	s.mu.Unlock()
	backoff := time.Duration(0)
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			draining := s.draining
			s.mu.Unlock()
			if draining {
				return nil
			}
			if !acceptRetry(err) {
				return err
			}
			// Out of descriptors, say: the clients being served go on,
			// and accepting resumes when some close.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "in", backoff.String())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.accept(c)
	}
}

// acceptRetry reports whether an accept error passes: the process or the
// system is out of descriptors or memory, or the peer left first.
func acceptRetry(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED)
}

// accept starts serving one client, unless the server is draining.
func (s *Server) accept(uc *net.UnixConn) {
	c, err := newConn(s, uc)
	if err != nil {
		s.log.Warn("client refused", "err", err)
		uc.Close()
		return
	}
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		uc.Close()
		return
	}
	if len(s.conns) >= s.cfg.Limits.MaxConnections {
		s.mu.Unlock()
		s.log.Warn("client refused: max_connections reached", "client_pid", c.peer.PID, "client_uid", c.peer.UID)
		uc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.connWG.Done()
		c.serve()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
}

// Sources are the pools the daemon serves now, by name, and its activator
// (nil without class servers): for a status page or metrics of the
// daemon's own (bulkhead serve --listen). A pool that a reload replaces is
// closed once its calls are over; a caller that keeps one sees ErrClosed.
func (s *Server) Sources() (map[string]*bulkhead.Pool, *activation.Activator) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pools := make(map[string]*bulkhead.Pool, len(s.pools))
	for name, e := range s.pools {
		pools[name] = e.pool
	}
	return pools, s.act
}

// pool takes the pool named name for one call, if p may use it; done must
// be called when the call is over.
func (s *Server) pool(name string, p Peer) (e *poolEntry, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e = s.pools[name]
	if f := s.failing[name]; e == nil && f != nil && f.p.Access.allows(p) && !s.draining {
		return nil, f.failingErr()
	}
	switch {
	case e == nil || !e.access.allows(p):
		// The same answer whether the pool exists or not: a refused peer
		// learns no names (CLIENT-PROTOCOL.md section 6).
		return nil, fmt.Errorf("%w: no pool %q that uid %d may use", errPermission, clip(name), p.UID)
	case s.draining:
		return nil, bulkhead.ErrClosed
	}
	e.calls.Add(1)
	return e, nil
}

// classAllowed reports whether p may use class.
func (s *Server) classAllowed(class string, p Peer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.cfg.ClassAllow[class]
	return ok && a.allows(p) && s.act != nil
}

// anyAllowed reports whether p may use anything here.
func (s *Server) anyAllowed(p Peer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.pools {
		if e.access.allows(p) {
			return true
		}
	}
	for _, f := range s.failing {
		if f.p.Access.allows(p) {
			return true
		}
	}
	for _, a := range s.cfg.ClassAllow {
		if a.allows(p) {
			return true
		}
	}
	return false
}

// Reload replaces the configuration with cfg: new pools start, pools whose
// configuration changed are replaced, and removed or replaced pools are
// closed once the calls that took them are over, so that no call fails
// because of the reload. Class servers and the socket keep the
// configuration they started with (a restart applies changes to them); a
// change is logged. If a new pool cannot start, nothing changes, but for
// a pool that was not running (new, or failing): it is failing, as at
// start-up (failing.go).
func (s *Server) Reload(ctx context.Context, cfg *Config) error {
	s.mu.Lock()
	old, oldFailing := s.pools, s.failing
	s.mu.Unlock()
	next, nextFailing := make(map[string]*poolEntry), make(map[string]*failingPool)
	var started []*poolEntry
	var fresh []*failingPool
	undo := func() {
		for _, e := range started {
			e.pool.Close(context.Background())
		}
		for _, f := range fresh {
			f.cancel() // no retrier yet
		}
	}
	for _, p := range cfg.Pools {
		if e := old[p.Name]; e != nil && reflect.DeepEqual(e.cfg, p.Config) {
			next[p.Name] = &poolEntry{name: e.name, cfg: e.cfg, access: p.Access, pool: e.pool}
			continue
		}
		if f := oldFailing[p.Name]; f != nil && reflect.DeepEqual(f.p, p) {
			nextFailing[p.Name] = f // its retries go on
			continue
		}
		e, f, err := s.startOrFail(ctx, p)
		if f != nil && old[p.Name] != nil {
			// A running pool is not replaced by one that cannot start.
			f.cancel()
			f, err = nil, fmt.Errorf("pool %q: the new configuration's workers cannot start, the old one's serve on: %w", p.Name, f.err)
		}
		if err != nil {
			undo()
			return err
		}
		if f != nil {
			nextFailing[p.Name] = f
			fresh = append(fresh, f)
			continue
		}
		started = append(started, e)
		next[p.Name] = e
	}
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		undo()
		return bulkhead.ErrClosed
	}
	prev := s.cfg
	dropped := s.swapFailingLocked(next, nextFailing, oldFailing)
	retired := s.swapLocked(next, cfg)
	s.mu.Unlock()
	stopRetries(dropped)
	s.retryLater(fresh)
	for _, e := range retired {
		s.drainWG.Add(1)
		go s.drainPool(e, cfg.DrainGrace)
	}
	s.log.Info("configuration reloaded", "path", cfg.Path, "pools", len(next), "replaced", len(retired), "failing", len(nextFailing))
	if !reflect.DeepEqual(prev.Activator.Servers, cfg.Activator.Servers) || prev.Socket != cfg.Socket {
		s.log.Warn("class server or socket configuration changed: it takes effect at the next restart")
	}
	return nil
}

// swapFailingLocked installs nextFailing and returns the failing pools
// whose retries must stop. A failing pool kept by the reload that started
// meanwhile joins next instead.
func (s *Server) swapFailingLocked(next map[string]*poolEntry, nextFailing, oldFailing map[string]*failingPool) []*failingPool {
	for name, f := range nextFailing {
		if oldFailing[name] == f && s.failing[name] != f && s.pools[name] != nil {
			e := s.pools[name]
			next[name] = &poolEntry{name: name, cfg: e.cfg, access: f.p.Access, pool: e.pool}
			delete(nextFailing, name)
		}
	}
	var dropped []*failingPool
	for name, f := range s.failing {
		if nextFailing[name] != f {
			dropped = append(dropped, f)
		}
	}
	s.failing = nextFailing
	return dropped
}

// swapLocked installs next and cfg, and returns the entries whose pools
// leave. The class permissions and limits of cfg apply at once.
func (s *Server) swapLocked(next map[string]*poolEntry, cfg *Config) []*poolEntry {
	var retired []*poolEntry
	for name, e := range s.pools {
		if n := next[name]; n == nil || n.pool != e.pool {
			retired = append(retired, e)
		}
	}
	keep := *cfg
	keep.Activator = s.cfg.Activator // the running activator's
	keep.Socket = s.cfg.Socket
	s.pools, s.cfg = next, &keep
	return retired
}

// drainPool closes a pool that a reload retired, once the calls that took
// it are over, giving its workers grace to quit.
func (s *Server) drainPool(e *poolEntry, grace time.Duration) {
	defer s.drainWG.Done()
	e.calls.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := e.pool.Close(ctx); err != nil {
		s.log.Warn("retired pool closed with an error", "pool", e.name, "err", err)
	}
}

// Shutdown drains the server: it stops accepting clients and refuses new
// requests, waits for the requests in flight until ctx ends, then closes
// every connection (releasing what the clients held), the pools and the
// activator.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	ln := s.ln
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, c := range conns {
		c.drain(ctx)
	}
	for _, c := range conns {
		c.close()
	}
	s.connWG.Wait()
	s.drainWG.Wait()
	s.runners.close()
	err := s.closePools(ctx)
	if s.act != nil {
		err = errors.Join(err, s.act.Close(ctx))
	}
	return err
}

// closePools closes every current pool, and stops the retries of the
// failing ones.
func (s *Server) closePools(ctx context.Context) error {
	s.mu.Lock()
	pools, failing := s.pools, s.failing
	s.pools, s.failing = map[string]*poolEntry{}, map[string]*failingPool{}
	s.mu.Unlock()
	stopRetries(slices.Collect(maps.Values(failing)))
	s.retryWG.Wait()
	var errs []error
	for _, e := range pools {
		e.calls.Wait()
		errs = append(errs, e.pool.Close(ctx))
	}
	return errors.Join(errs...)
}

// clip is a name a peer sent, short enough to quote back in an error.
func clip(name string) string {
	const max = 128
	if len(name) > max {
		return name[:max] + "..."
	}
	return name
}
