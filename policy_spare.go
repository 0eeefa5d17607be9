package bulkhead

import (
	"log/slog"
	"time"
)

// Warm spares (Config.Spares): workers that have been started and have said
// HELLO but take no calls. When a serving worker leaves, for any reason,
// fillLocked promotes a spare in O(1) instead of starting a process while
// callers wait, and a new spare is started in the background. Spares are
// kept in Pool.spares, are in Pool.workers (so that Close, onExit and the
// memory check see them) but never in Pool.avail, and do not count toward
// Pool.active: they are processes beyond MaxWorkers. The call path
// (acquire, release, callOn) never sees them.

// spareIdleEnv turns the worker-side idle timeout off in a spare: waiting
// to be promoted is its job, not idleness. It is the last entry of the
// environment, so it overrides a BULKHEAD_IDLE_TIMEOUT_MS of Config.Env.
const spareIdleEnv = "BULKHEAD_IDLE_TIMEOUT_MS=0"

// promoteLocked puts a spare into service, if there is one, and reports
// whether it did. since is when the worker it replaces was lost (zero:
// none), for the respawn statistics.
func (p *Pool) promoteLocked(since time.Time) bool {
	n := len(p.spares)
	if n == 0 {
		return false
	}
	w := p.spares[n-1]
	p.moveLocked(w, serving)
	w.pol.start(&p.cfg, p.now()) // its policy clocks start when it starts serving
	p.stats.promoted.Add(1)
	if !since.IsZero() {
		p.respawns.add(time.Since(since))
	}
	p.logLocked(slog.LevelInfo, "spare worker promoted", "pid", w.PID)
	p.offerLocked(w)
	return true
}

// replenishLocked starts spares until ready spares, spare spawns under way
// and surplus serving spawns (which become spares: see roleLocked) make
// Config.Spares. Not while the pool is closed or unhealthy: the probe
// alone tests the command then. The pause of the crash-loop backoff applies
// to each spawn as to any other.
func (p *Pool) replenishLocked() {
	if p.closed || p.loop.unhealthy {
		return
	}
	for len(p.spares)+p.sparePending+p.surplusLocked() < p.cfg.Spares {
		p.sparePending++
		p.wg.Add(1)
		go p.spawn(spawnReq{spare: true})
	}
}

// surplusLocked is how many serving spawns under way the pool no longer
// needs as serving workers, because spares were promoted in their stead.
func (p *Pool) surplusLocked() int {
	return max(0, p.active+p.pending-p.cfg.max)
}

// roleLocked decides what a worker that has just said HELLO becomes: a
// spare if it was started as one, or if it was started to serve but a
// promoted spare has taken its place meanwhile (the pool is full); then,
// if the spares are full too, it is not needed at all.
func (p *Pool) roleLocked(req *spawnReq) (spare, needed bool) {
	if req.spare {
		return true, len(p.spares) < p.cfg.Spares
	}
	if req.replaces == nil && !req.probe && p.cfg.Spares > 0 && p.active >= p.cfg.max {
		return true, len(p.spares) < p.cfg.Spares
	}
	return false, true
}

// addSpareLocked makes w, which has just said HELLO, a spare, and promotes
// it at once if callers are waiting and the pool has room: a spare that
// is ready serves before a spawn still under way, which then becomes the
// spare in its stead.
func (p *Pool) addSpareLocked(w *workerProc) {
	p.moveLocked(w, spare)
	if p.waiters.n > 0 && p.active < p.cfg.max && !p.loop.unhealthy {
		p.promoteLocked(time.Time{})
	}
}

// workerLost is a worker's lost callback: a caller found its connection
// broken (the worker died or is being killed). The replacement, or the
// promotion of a spare, starts now; onExit does the rest once the process
// has been reaped, starting the next spare then, so that its fork/exec does
// not compete with the reaping the crashed call waits for.
func (p *Pool) workerLost(w *workerProc) {
	p.mu.Lock()
	// A retiring worker is out of service already: nothing to see to.
	if _, ok := p.workers[w]; ok && (w.state == spare || w.state == serving) {
		wasServing := w.state == serving
		p.moveLocked(w, lost)
		p.removeAvailLocked(w)
		if wasServing {
			p.growLocked(time.Now())
		}
	}
	p.unlock()
}
