package bulkhead

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/proc"
)

// Starting workers: the spawn goroutines, their retries with the crash-loop
// backoff, and taking a worker that said HELLO into the pool.

// spawnReq says why a spawn goroutine runs.
type spawnReq struct {
	since    time.Time    // when the worker it replaces was lost (zero: none)
	first    chan<- error // receives the first attempt's result, if not nil
	replaces *workerProc  // a worker being recycled: retired once this one is ready
	probe    bool         // the half-open probe of an unhealthy pool
	spare    bool         // a warm spare (counted in sparePending, not pending)
}

// spawnLocked starts one spawn goroutine. Called with p.mu held.
func (p *Pool) spawnLocked(req spawnReq) {
	p.pending++
	p.wg.Add(1)
	go p.spawn(req)
}

// fillLocked starts workers while the pool is below MinWorkers, or calls
// are queued with no spawn under way to serve them, up to MaxWorkers,
// promoting a warm spare in place of a spawn where there is one; then it
// tops the spares up. An unhealthy pool starts only its one probe. since is
// when a worker was lost, for the respawn statistics (zero if none was).
func (p *Pool) fillLocked(since time.Time) {
	p.growLocked(since)
	p.replenishLocked()
}

// growLocked is fillLocked without topping the spares up.
func (p *Pool) growLocked(since time.Time) {
	if p.closed {
		return
	}
	if p.loop.unhealthy {
		if !p.loop.probing {
			p.loop.probing = true
			p.spawnLocked(spawnReq{since: since, probe: true})
		}
		return
	}
	for p.active+p.pending < p.cfg.max &&
		(p.active+p.pending < p.cfg.min || p.waiters.n > p.pending*p.cfg.ConcurrencyPerWorker) {
		if !p.promoteLocked(since) {
			p.spawnLocked(spawnReq{since: since})
		}
	}
}

// spawn starts a worker, retrying start failures with the crash-loop
// backoff until one starts, the pool closes, or it is no longer needed.
func (p *Pool) spawn(req spawnReq) {
	defer p.wg.Done()
	first := req.first
	p.mu.Lock()
	delay := p.loop.delay(&p.cfg)
	p.unlock()
	for {
		if delay > 0 && !p.pause(delay) {
			p.mu.Lock()
			p.spawnDoneLocked(&req)
			p.dropReqLocked(&req)
			p.unlock()
			if first != nil {
				first <- ErrClosed
			}
			return
		}
		if p.hooks.spawning != nil {
			p.hooks.spawning(req.spare)
		}
		var extraEnv []string
		if req.spare {
			extraEnv = []string{spareIdleEnv}
		}
		w, err := launchWatched(&p.cfg, p.spawner, p.workerLost, p.onExit, p.trackStarting, p.connOptions, extraEnv...)
		if err == nil && p.hooks.launched != nil {
			p.hooks.launched(w)
		}
		p.mu.Lock()
		if err == nil {
			// Before New returns: its caller's first call finds the
			// methods counted apart.
			p.metrics.learnLocked(w.Hello.Methods)
		}
		if err == nil && w.state == dead {
			err = diedAfterHello(w)
			stale := w
			w = nil
			p.afterLocked(stale.Close) // onExit is done with it
		}
		if first != nil {
			first <- err
			first = nil
		}
		if p.closed {
			p.spawnDoneLocked(&req)
			p.dropReqLocked(&req)
			p.unlock()
			if w != nil {
				w.Proc.Kill()
				<-w.Proc.Exited()
				w.Close()
			}
			return
		}
		if err != nil {
			if !p.startFailedLocked(&req, err, &delay) {
				p.unlock()
				return
			}
			p.unlock()
			continue
		}
		p.takeInLocked(w, &req)
		p.unlock()
		return
	}
}

// startFailedLocked records a failed start, tells the oldest caller when no
// worker can serve it, and reports whether the spawn tries again (after
// *delay, the crash-loop backoff).
func (p *Pool) startFailedLocked(req *spawnReq, err error, delay *time.Duration) bool {
	p.stats.startFailures.Add(1)
	var se *StartError
	if errors.As(err, &se) && se.Exited {
		p.metrics.crashed(PhaseStartup, se.Signal)
		p.crashes.addLocked(CrashRecord{Time: time.Now(), PID: se.PID, Phase: PhaseStartup, Signal: se.Signal,
			ExitCode: se.ExitCode, Reason: se.Reason, Stderr: se.Stderr})
	}
	p.logLocked(slog.LevelError, "worker failed to start", startAttrs(err)...)
	*delay = p.failureLocked(err)
	if !p.loop.unhealthy && len(p.workers) == 0 {
		// No worker can serve the oldest caller: tell it why, rather than
		// leave it waiting on a broken command.
		if wt := p.waiters.pop(); wt != nil {
			wt.ch <- grant{err: err}
		}
	}
	if !p.keepTryingLocked(req) {
		p.spawnDoneLocked(req)
		p.replenishLocked() // a dropped surplus spawn was counted as a spare
		return false
	}
	return true
}

// takeInLocked puts a worker that said HELLO in the pool: as a spare, as a
// surplus spare to stop, or serving (in place of the worker it replaces).
func (p *Pool) takeInLocked(w *workerProc, req *spawnReq) {
	p.spawnDoneLocked(req)
	if req.probe {
		p.loop.probing = false
	}
	p.halfOpenLocked(w)
	w.lost = p.workerLost
	p.workers[w] = struct{}{}
	w.holdLocked() // the process's hold on conn and marker, dropped by onExit
	p.stats.started.Add(1)
	if spare, needed := p.roleLocked(req); spare {
		if needed {
			p.addSpareLocked(w)
		} else {
			p.moveLocked(w, retiring)
			w.retireWhy = "surplus spare"
			p.stopLocked(w)
		}
		p.fillLocked(time.Time{})
		return
	}
	p.moveLocked(w, serving)
	w.pol.start(&p.cfg, p.now())
	if !req.since.IsZero() {
		p.respawns.add(time.Since(req.since))
	}
	if r := req.replaces; r != nil {
		r.pol.replacing = false
		if r.state != retiring && r.state != dead {
			p.retireLocked(r, "recycled: "+r.pol.due.String(), r.pol.due)
		}
	}
	p.offerLocked(w)
	p.fillLocked(time.Time{})
}

// diedAfterHello describes a worker that exited after its HELLO and before
// spawn took it in: a start failure, since it never served.
func diedAfterHello(w *workerProc) *StartError {
	ex := proc.ExitOf(w.Proc.State())
	return &StartError{PID: w.PID, ExitCode: ex.Code, Signal: ex.Signal, Exited: true, Stderr: w.Stderr.String(),
		Reason: fmt.Sprintf("worker %d exited right after HELLO: %v", w.PID, ex)}
}

// pause waits d, or until the pool closes; it reports false if it closed.
func (p *Pool) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.done:
		return false
	}
}

// spawnDoneLocked counts a spawn as no longer under way.
func (p *Pool) spawnDoneLocked(req *spawnReq) {
	if req.spare {
		p.sparePending--
	} else {
		p.pending--
	}
}

// keepTryingLocked decides whether a spawn whose attempt failed tries again.
// While the pool is unhealthy only the probe does (a spare spawn may become
// the probe, and then serves); otherwise a spawn goes on while its worker is
// still needed.
func (p *Pool) keepTryingLocked(req *spawnReq) bool {
	if p.loop.unhealthy {
		if req.probe {
			return true
		}
		if !p.loop.probing {
			if req.spare {
				req.spare = false
				p.sparePending--
				p.pending++
			}
			p.loop.probing, req.probe = true, true
			return true
		}
		p.dropReqLocked(req)
		return false
	}
	if r := req.replaces; r != nil && r.state != retiring && r.state != dead {
		return true
	}
	if req.spare {
		if len(p.spares)+p.sparePending-1 < p.cfg.Spares {
			return true
		}
		p.dropReqLocked(req)
		return false
	}
	if p.active+p.pending-1 < p.cfg.min || p.waiters.n > 0 {
		return true
	}
	p.dropReqLocked(req)
	return false
}

// dropReqLocked undoes what a spawn that gives up had claimed.
func (p *Pool) dropReqLocked(req *spawnReq) {
	if req.probe {
		p.loop.probing = false
		req.probe = false
	}
	if r := req.replaces; r != nil {
		r.pol.replacing = false
		req.replaces = nil
	}
}

// trackStarting records a worker between spawn and HELLO, so that Close can
// cut its handshake short.
func (p *Pool) trackStarting(w *workerProc, add bool) {
	p.mu.Lock()
	defer p.unlock()
	if add {
		p.starting[w] = struct{}{}
		if p.closed {
			w.Conn.Shutdown()
		}
	} else {
		delete(p.starting, w)
	}
}

// startAttrs are a start failure's log attributes.
func startAttrs(err error) []any {
	var se *StartError
	if errors.As(err, &se) {
		return []any{"pid", se.PID, "reason", se.Reason, "stderr_tail", se.Stderr}
	}
	return []any{"err", err}
}
