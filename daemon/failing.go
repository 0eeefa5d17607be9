package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// A pool whose first workers cannot start (a *bulkhead.StartError: a
// sandbox setting the kernel refuses at run time, a binary that dies at
// once) does not take the daemon down with it: the other pools serve, and
// this one is a failingPool, reported in the log and by status, whose calls
// get its last StartError, and which starts again with the pool's own
// crash-loop backoff (RestartDelay doubling up to MaxRestartDelay) until it
// runs, a reload drops or changes it, or the daemon stops. What `serve
// --check` can see (Config.Validate) is still refused before anything
// starts.
type failingPool struct {
	p      Pool
	ctx    context.Context    // its retries'; ends when they are to stop
	cancel context.CancelFunc // stops its retries
	done   chan struct{}      // closed when its retrier has returned

	// Guarded by Server.mu.
	err      error // the last start's, a *bulkhead.StartError
	attempts int
	since    time.Time // the first failure
}

// startOrFail starts p, or, if its workers cannot start, returns it as
// failing: its retrier starts (retryLater) once it is in s.failing. Any
// other error is returned. Called without s.mu held.
func (s *Server) startOrFail(ctx context.Context, p Pool) (*poolEntry, *failingPool, error) {
	e, err := s.startPool(ctx, p)
	var se *bulkhead.StartError
	if err == nil || !errors.As(err, &se) || ctx.Err() != nil {
		return e, nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	f := &failingPool{p: p, cancel: cancel, done: make(chan struct{}), err: err, attempts: 1, since: time.Now()}
	f.ctx = rctx
	s.log.Error("pool cannot start: serving the others, and retrying it", "pool", p.Name, "err", err)
	return nil, f, nil
}

// retryLater starts the retriers of fs, which are in s.failing now.
func (s *Server) retryLater(fs []*failingPool) {
	for _, f := range fs {
		s.retryWG.Add(1)
		go s.retry(f.ctx, f)
	}
}

// retry starts f's pool again after each backoff until it runs (it then
// joins s.pools, if f is still the configuration's) or ctx ends.
func (s *Server) retry(ctx context.Context, f *failingPool) {
	defer s.retryWG.Done()
	defer close(f.done)
	delay := f.p.Config.RestartDelay
	if delay <= 0 {
		delay = 10 * time.Millisecond // Config.RestartDelay's zero value
	}
	maxDelay := f.p.Config.MaxRestartDelay
	if maxDelay <= 0 {
		maxDelay = 1000 * delay
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e, err := s.startPool(ctx, f.p)
		if err == nil {
			if !s.recovered(f, e) {
				e.pool.Close(context.Background())
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		delay = min(2*delay, maxDelay)
		s.mu.Lock()
		f.err, f.attempts = err, f.attempts+1
		n := f.attempts
		s.mu.Unlock()
		s.log.Warn("pool still cannot start", "pool", f.p.Name, "attempts", n, "retry_in", delay, "err", err)
		t.Reset(delay)
	}
}

// recovered moves f's pool, now running as e, into s.pools, unless a
// reload or Shutdown took f out of the configuration meanwhile.
func (s *Server) recovered(f *failingPool, e *poolEntry) bool {
	s.mu.Lock()
	ok := s.failing[f.p.Name] == f && !s.draining
	if ok {
		delete(s.failing, f.p.Name)
		s.pools[f.p.Name] = e
	}
	n := f.attempts + 1
	s.mu.Unlock()
	if ok {
		s.log.Info("pool started", "pool", f.p.Name, "attempts", n)
	}
	return ok
}

// failingErr is the error of a call to failing pool f: its last start's.
// Called with s.mu held.
func (f *failingPool) failingErr() error {
	return fmt.Errorf("pool %q is not running (%d starts failed since %s; retrying): %w",
		f.p.Name, f.attempts, f.since.Format(time.RFC3339), f.err)
}

// stopRetries stops the retriers of fs and waits for them.
func stopRetries(fs []*failingPool) {
	for _, f := range fs {
		f.cancel()
	}
	for _, f := range fs {
		<-f.done
	}
}

// failingStatus is status's entry for failing pool f. Called with s.mu
// held.
func (f *failingPool) failingStatus() map[string]any {
	return map[string]any{"name": f.p.Name, "workers": []map[string]any{}, "in_flight": 0, "waiting": 0, "crashes": 0,
		"state": "failing", "error": f.err.Error(), "attempts": f.attempts, "since": f.since.UnixNano()}
}
