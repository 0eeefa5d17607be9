package bulkhead

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RecycleReason is the reason code of a recycle: why a healthy worker was
// drained and replaced on purpose, as COM+ records it.
type RecycleReason int

const (
	RecycleNone     RecycleReason = iota
	RecycleCalls                  // it served MaxCalls calls (plus jitter)
	RecycleLifetime               // it reached MaxLifetime
	RecycleMemory                 // its resident memory exceeded MaxMemory
	RecycleIdle                   // it was idle for IdleTimeout above MinWorkers
	recycleReasons
)

func (r RecycleReason) String() string {
	switch r {
	case RecycleNone:
		return "none"
	case RecycleCalls:
		return "calls"
	case RecycleLifetime:
		return "lifetime"
	case RecycleMemory:
		return "memory"
	case RecycleIdle:
		return "idle"
	}
	return fmt.Sprintf("RecycleReason(%d)", int(r))
}

// workerPolicy is a worker's state for the pool's policies. Fields other
// than the atomics are guarded by Pool.mu.
type workerPolicy struct {
	born      time.Time // by the pool's clock
	lastUsed  time.Time // when its last call ended (IdleTimeout, MaxLifetime set only)
	calls     uint64    // calls it has finished
	callLimit uint64    // MaxCalls plus jitter; 0: none
	due       RecycleReason
	replacing bool // a replacement is starting; it serves on until then

	limitKill atomic.Int32 // a Limit: the pool killed it for exceeding it
	rss       atomic.Int64 // the resident size that got it killed
}

func (wp *workerPolicy) start(s *settings, now time.Time) {
	wp.born, wp.lastUsed = now, now
	if s.MaxCalls > 0 {
		wp.callLimit = uint64(s.MaxCalls)
		if s.MaxCallsJitter > 0 {
			wp.callLimit += rand.Uint64N(uint64(s.MaxCallsJitter) + 1)
		}
	}
}

// timed reports whether release needs the clock.
func (s *settings) timed() bool { return s.IdleTimeout > 0 || s.MaxLifetime > 0 }

// dueLocked says whether w should be recycled now that a call on it ended.
// O(1): a counter compare, and a clock compare if MaxLifetime is set.
func (p *Pool) dueLocked(w *workerProc, now time.Time) RecycleReason {
	switch {
	case w.pol.replacing:
		return RecycleNone
	case w.pol.callLimit > 0 && w.pol.calls >= w.pol.callLimit:
		return RecycleCalls
	case p.cfg.MaxLifetime > 0 && now.Sub(w.pol.born) >= p.cfg.MaxLifetime:
		return RecycleLifetime
	}
	return RecycleNone
}

// recycleLocked drains and replaces w: a replacement is started first and w
// keeps serving until it is ready, so that throughput does not dip; then w
// finishes its calls in flight and quits. A worker the pool can do without
// (idle, above MinWorkers, nobody waiting) is simply retired. With a warm
// spare there is nothing to wait for: the spare is promoted and w retired.
func (p *Pool) recycleLocked(w *workerProc, reason RecycleReason) {
	if w.pol.replacing || (w.state != serving && w.state != spare) || p.closed {
		return
	}
	w.pol.due = reason
	if p.loop.unhealthy || (w.inflight == 0 && p.active > p.cfg.min && p.waiters.empty()) {
		p.retireLocked(w, "recycled: "+reason.String(), reason)
		return
	}
	if p.promoteLocked(time.Time{}) {
		p.retireLocked(w, "recycled: "+reason.String(), reason)
		return
	}
	w.pol.replacing = true
	p.spawnLocked(spawnReq{replaces: w})
}

// every runs f every d until the pool closes: the monitor (sweep, for
// MaxMemory, MaxLifetime and IdleTimeout) and the slow-call watcher
// (findSlow). It is a goroutine of p.wg, which Close waits for.
func (p *Pool) every(d time.Duration, f func()) {
	defer p.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			f()
		}
	}
}

// sweep is one round of the monitor: it retires idle workers above
// MinWorkers, recycles idle workers past MaxLifetime, and reads the resident
// memory of every worker, busy ones included, killing a busy worker over
// MaxMemory and recycling an idle one.
func (p *Pool) sweep() {
	now := p.now()
	p.mu.Lock()
	if p.closed {
		p.unlock()
		return
	}
	check := p.sweepBuf[:0]
	for w := range p.workers {
		if w.state != serving && w.state != spare {
			continue
		}
		if w.inflight == 0 && !w.pol.replacing && w.state != spare { // a spare's clocks start at promotion
			if p.cfg.MaxLifetime > 0 && now.Sub(w.pol.born) >= p.cfg.MaxLifetime {
				p.recycleLocked(w, RecycleLifetime)
				continue
			}
			if p.cfg.IdleTimeout > 0 && p.active > p.cfg.min && now.Sub(w.pol.lastUsed) >= p.cfg.IdleTimeout {
				p.retireLocked(w, "recycled: idle", RecycleIdle)
				continue
			}
		}
		if p.cfg.MaxMemory > 0 {
			check = append(check, w)
		}
	}
	p.unlock()
	for _, w := range check {
		rss, err := p.rssOf(w.PID)
		if err != nil || rss <= p.cfg.MaxMemory {
			continue
		}
		if p.hooks.overMemory != nil {
			p.hooks.overMemory(w.PID)
		}
		p.mu.Lock()
		if w.state != retiring && w.state != dead && !p.closed {
			if w.inflight > 0 {
				p.memoryKillLocked(w, rss)
			} else {
				p.retireLocked(w, fmt.Sprintf("recycled: memory (%d bytes resident)", rss), RecycleMemory)
			}
		}
		p.unlock()
	}
	clear(check) // drop the references until the next round
	p.mu.Lock()
	p.sweepBuf = check[:0]
	p.unlock()
}

// memoryKillLocked kills a worker over MaxMemory in mid-call. The call
// fails with a *CrashError whose Limit is LimitMemory (see crashed), and the
// worker's exit is logged as a crash, not a recycle: a kill that fails a
// call is a crash record (onExit).
func (p *Pool) memoryKillLocked(w *workerProc, rss int64) {
	w.pol.rss.Store(rss)
	w.pol.limitKill.Store(int32(LimitMemory))
	p.stats.memoryKills.Add(1)
	p.stats.recycled[RecycleMemory].Add(1)
	p.retireLocked(w, fmt.Sprintf("killed: resident memory %d bytes over MaxMemory %d", rss, p.cfg.MaxMemory), RecycleNone)
	p.afterLocked(w.Proc.Kill)
}

// rssOf returns the resident memory of process pid in bytes.
func (p *Pool) rssOf(pid int) (int64, error) {
	if p.hooks.rss != nil {
		return p.hooks.rss(pid)
	}
	return readRSS(pid)
}

// readRSS reads /proc/<pid>/statm: its second field is the resident size in
// pages.
func readRSS(pid int) (int64, error) {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/statm", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	var buf [128]byte
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	if err != nil {
		return 0, err
	}
	b := buf[:n]
	i := 0
	for i < len(b) && b[i] != ' ' {
		i++
	}
	var pages int64
	digits := 0
	for i++; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		pages = pages*10 + int64(b[i]-'0')
		digits++
	}
	if digits == 0 || digits > 15 {
		return 0, fmt.Errorf("bulkhead: cannot parse /proc/%d/statm: %q", pid, b)
	}
	return pages * int64(unix.Getpagesize()), nil
}

// rusage returns a reaped worker's resource usage, or nil.
func rusage(w *workerProc) *syscall.Rusage {
	if st := w.Proc.State(); st != nil {
		ru, _ := st.SysUsage().(*syscall.Rusage)
		return ru
	}
	return nil
}
