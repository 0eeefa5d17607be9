package daemon

import (
	"context"
	"fmt"
	"runtime"
	"slices"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
)

// The methods below let a cluster node (package cluster) serve this
// daemon's pools over NATS. Who may call is NATS's business there (its
// accounts, credentials and permissions), so no peer is checked.

// PoolNames lists the pools the configuration has now, sorted: failing
// ones too (their calls get the StartError), so that one that starts
// later needs no Sync.
func (s *Server) PoolNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.pools)+len(s.failing))
	for n := range s.pools {
		names = append(names, n)
	}
	for n := range s.failing {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// CallPool runs method on pool name, as a client's call does, for a
// caller that is not on the socket. A reload does not fail it; a draining
// server refuses it with bulkhead.ErrClosed before it reaches the pool.
func (s *Server) CallPool(ctx context.Context, name, method string, args ...any) (bulkhead.Reply, error) {
	s.mu.Lock()
	e := s.pools[name]
	switch {
	case e == nil && s.failing[name] != nil && !s.draining:
		err := s.failing[name].failingErr()
		s.mu.Unlock()
		return bulkhead.Reply{}, err
	case e == nil:
		s.mu.Unlock()
		return bulkhead.Reply{}, fmt.Errorf("%w: no pool %q", clientwire.ErrNotFound, name)
	case s.draining:
		s.mu.Unlock()
		return bulkhead.Reply{}, bulkhead.ErrClosed
	}
	e.calls.Add(1)
	s.mu.Unlock()
	defer e.calls.Done()
	return e.pool.Call(ctx, method, args...)
}

// PoolCapacity is the number of workers of pool name serving calls now
// (Stats.Workers); 0 for no such pool.
func (s *Server) PoolCapacity(name string) int {
	s.mu.Lock()
	e := s.pools[name]
	s.mu.Unlock()
	if e == nil {
		return 0
	}
	return e.pool.Stats().Workers
}

// PoolLimit is the most calls pool name takes at once: its workers, the
// calls each may hold (Pipeline), and its queue (MaxQueue, defaulted as
// the pool defaults it); 0 for no such pool. A failing pool's is what it
// will take once it runs: a node reads it at Sync, maybe before then.
func (s *Server) PoolLimit(name string) int {
	var c bulkhead.Config
	s.mu.Lock()
	e, f := s.pools[name], s.failing[name]
	switch {
	case e != nil:
		c = e.cfg
	case f != nil:
		c = f.p.Config
	}
	s.mu.Unlock()
	if e == nil && f == nil {
		return 0
	}
	w := max(c.Workers, c.MinWorkers, c.MaxWorkers)
	if w == 0 {
		w = runtime.NumCPU()
	}
	q := c.MaxQueue
	if q <= 0 {
		q = min(1024*w, 1<<20)
	}
	return w*(1+max(c.Pipeline, 0)) + q
}

// Activator is the daemon's activator, which a cluster node serves the
// class servers of; nil when the config has no servers.
func (s *Server) Activator() *activation.Activator { return s.act }
