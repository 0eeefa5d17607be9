package bulkhead

import (
	"fmt"
	"log/slog"
	"time"
)

// crashLoop grades the pool's health from its start-up failures and idle
// crashes (deaths no call caused). Guarded by Pool.mu.
//
//   - Each failure in a row doubles the pause before the next spawn, from
//     RestartDelay up to MaxRestartDelay (exponential backoff).
//   - UnhealthyAfter failures in a row within CrashLoopWindow make the pool
//     unhealthy: calls fail fast with *UnhealthyError carrying the last
//     failure, and only one spawn, the probe, keeps trying, at the capped
//     backoff.
//   - When the probe's worker says HELLO the pool is half-open: calls are
//     admitted again, and one more failure makes it unhealthy at once.
//   - A completed call resets it all: the pool is healthy.
//
// It never halts the process, never gives up, and never breaks the pool for
// good: the probe keeps trying until the cause goes away or Close.
type crashLoop struct {
	fails     []time.Time // the times of the latest UnhealthyAfter failures, a ring
	next      int         // the ring's oldest entry, where the next one goes
	streak    int         // failures since the last completed call
	unhealthy bool
	halfOpen  bool // a probe started while unhealthy; no call has completed since
	probing   bool // the probe spawn is under way
	since     time.Time
	last      error
}

func (l *crashLoop) init(n int) { l.fails = make([]time.Time, n) }

// delay is the pause before the next spawn.
func (l *crashLoop) delay(s *settings) time.Duration {
	if l.streak == 0 {
		return 0
	}
	d := s.RestartDelay
	for i := 1; i < l.streak && d < s.MaxRestartDelay; i++ {
		d *= 2
	}
	return min(d, s.MaxRestartDelay)
}

// failureLocked records a start-up failure or idle crash and returns the
// pause before the next spawn.
func (p *Pool) failureLocked(err error) time.Duration {
	l := &p.loop
	now := p.now()
	l.streak++
	l.last = err
	l.fails[l.next] = now
	l.next = (l.next + 1) % len(l.fails)
	oldest := l.fails[l.next]
	trip := l.halfOpen || (l.streak >= len(l.fails) && now.Sub(oldest) <= p.cfg.CrashLoopWindow)
	if trip && !l.unhealthy {
		l.unhealthy, l.halfOpen, l.since = true, false, now
		p.logLocked(slog.LevelError, "pool unhealthy: calls fail fast while one worker at a time is probed",
			"failures", l.streak, "window", p.cfg.CrashLoopWindow.String(), "last", err.Error())
		for wt := p.waiters.pop(); wt != nil; wt = p.waiters.pop() {
			wt.ch <- grant{err: p.unhealthyErrorLocked("")}
		}
	}
	return l.delay(&p.cfg)
}

// halfOpenLocked admits calls again when a worker starts while unhealthy.
func (p *Pool) halfOpenLocked(w *workerProc) {
	if p.loop.unhealthy {
		p.loop.unhealthy, p.loop.halfOpen = false, true
		p.logLocked(slog.LevelWarn, "pool half-open: a probe worker started; calls are admitted again", "pid", w.PID)
	}
}

// healedLocked resets the crash loop after a completed call.
func (p *Pool) healedLocked() {
	l := &p.loop
	if l.halfOpen {
		p.logLocked(slog.LevelInfo, "pool healthy again", "after_failures", l.streak)
	}
	l.streak, l.halfOpen, l.last = 0, false, nil
}

// unhealthyErrorLocked builds the fail-fast error and counts the refusal.
func (p *Pool) unhealthyErrorLocked(method string) *UnhealthyError {
	p.stats.unhealthyRefused.Add(1)
	l := &p.loop
	return &UnhealthyError{Method: method, Failures: l.streak, Since: l.since, Last: l.last,
		Reason: fmt.Sprintf("%d start-up failures or idle crashes in a row; probing one worker", l.streak)}
}
