package bulkhead

import (
	"sync/atomic"
	"time"
)

// counters are the pool's cumulative statistics.
type counters struct {
	started           atomic.Uint64
	startFailures     atomic.Uint64
	crashes           [PhaseIdle + 1]atomic.Uint64
	redispatched      atomic.Uint64
	abandoned         atomic.Uint64
	hung              atomic.Uint64
	replayed          atomic.Uint64
	recycled          [recycleReasons]atomic.Uint64
	memoryKills       atomic.Uint64
	overloaded        atomic.Uint64
	unhealthyRefused  atomic.Uint64
	quarantineRefused atomic.Uint64
	quarantines       atomic.Uint64
	promoted          atomic.Uint64
	slowCalls         atomic.Uint64
}

// Stats is a snapshot of a pool's state and counters.
type Stats struct {
	Workers       int    // workers serving calls: ready, not spares, not being stopped
	Busy          int    // of Workers, those holding at least one call
	Stopping      int    // workers taken out of service (recycled, lost, hung) whose process has not been reaped yet
	Spares        int    // warm spares, ready and taking no calls (Config.Spares)
	Starting      int    // workers being started, spares included
	InFlight      int    // calls holding a worker
	Waiting       int    // calls waiting for a worker
	Started       uint64 // workers that said HELLO, in all
	StartFailures uint64
	CallCrashes   uint64 // workers that died during a call
	IdleCrashes   uint64 // workers that died between calls
	Redispatched  uint64 // calls sent again because their worker died before starting them
	Abandoned     uint64 // calls whose ctx ended after a worker had them (those that end waiting for one are not counted)
	// RespawnP50 is the median time from losing a worker to its
	// replacement's HELLO, over recent replacements.
	RespawnP50 time.Duration
	Respawns   int // replacements measured for RespawnP50

	Hung     uint64 // started calls abandoned at their deadline; the worker was stopped step by step
	Replayed uint64 // idempotent calls run again after a crash

	// Recycled counts workers drained and replaced on purpose, in all and
	// by reason code (RecycleCalls, RecycleLifetime, RecycleMemory,
	// RecycleIdle).
	Recycled         uint64
	RecycledByReason map[string]uint64
	MemoryKills      uint64 // workers killed mid-call for MaxMemory (also counted as recycled, reason memory)

	Overloaded uint64 // calls refused by MaxQueue or QueueTimeout

	Unhealthy        bool   // calls fail fast with *UnhealthyError now
	UnhealthyRefused uint64 // calls refused while unhealthy
	FailureStreak    int    // start-up failures and idle crashes since the last completed call

	Quarantined       int    // fingerprints in quarantine now
	Quarantines       uint64 // fingerprints put in quarantine, in all
	QuarantineRefused uint64 // calls refused by quarantine

	// Promoted counts spares put into service in place of a lost or
	// recycled worker. Started counts every worker that said HELLO,
	// spares included.
	Promoted uint64

	// SlowCalls counts calls that ran longer than Config.SlowCall (each
	// logged once, with its worker's stack).
	SlowCalls uint64
}

// Stats returns a snapshot of the pool's state and counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.unlock()
	p50, n := p.respawns.median()
	s := Stats{
		Workers: p.active, Stopping: len(p.workers) - len(p.spares) - p.active,
		Spares: len(p.spares), Starting: p.pending + p.sparePending,
		InFlight: p.inflight, Waiting: p.waiters.n,
		Started:       p.stats.started.Load(),
		StartFailures: p.stats.startFailures.Load(),
		CallCrashes:   p.stats.crashes[PhaseCall].Load(),
		IdleCrashes:   p.stats.crashes[PhaseIdle].Load(),
		Redispatched:  p.stats.redispatched.Load(),
		Abandoned:     p.stats.abandoned.Load(),
		RespawnP50:    p50, Respawns: n,
		Hung:              p.stats.hung.Load(),
		Replayed:          p.stats.replayed.Load(),
		RecycledByReason:  make(map[string]uint64, recycleReasons-1),
		MemoryKills:       p.stats.memoryKills.Load(),
		Overloaded:        p.stats.overloaded.Load(),
		Unhealthy:         p.loop.unhealthy,
		UnhealthyRefused:  p.stats.unhealthyRefused.Load(),
		FailureStreak:     p.loop.streak,
		Quarantines:       p.stats.quarantines.Load(),
		QuarantineRefused: p.stats.quarantineRefused.Load(),
		Promoted:          p.stats.promoted.Load(),
		SlowCalls:         p.stats.slowCalls.Load(),
	}
	for w := range p.workers {
		if w.state == serving && w.inflight > 0 {
			s.Busy++
		}
	}
	for r := RecycleCalls; r < recycleReasons; r++ {
		v := p.stats.recycled[r].Load()
		s.Recycled += v
		s.RecycledByReason[r.String()] = v
	}
	if p.quar != nil {
		s.Quarantined = p.quar.countLocked(p.now())
	}
	return s
}
