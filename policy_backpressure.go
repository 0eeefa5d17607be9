package bulkhead

import (
	"context"
	"fmt"
	"time"
)

// wait blocks a queued caller until it is granted a worker (or an error),
// its ctx ends, or QueueTimeout passes. MaxQueue, checked before queueing
// (see acquire), bounds how many callers wait, so an overloaded pool refuses
// calls at once with *OverloadedError rather than grow its queue without
// bound.
func (p *Pool) wait(ctx context.Context, method string, wt *waiter) (*workerProc, error) {
	var expire <-chan time.Time
	if p.cfg.QueueTimeout > 0 {
		if p.hooks.queueTimer != nil {
			expire = p.hooks.queueTimer()
		} else {
			t := time.NewTimer(p.cfg.QueueTimeout)
			defer t.Stop()
			expire = t.C
		}
	}
	select {
	case g := <-wt.ch:
		putWaiter(wt)
		return g.w, withMethod(g.err, method)
	case <-ctx.Done():
		p.mu.Lock()
		removed := p.waiters.remove(wt)
		p.unlock()
		if !removed {
			// A worker (or error) was granted as ctx ended: give it back.
			g := <-wt.ch
			if g.w != nil {
				p.release(g.w, false)
			}
		}
		putWaiter(wt)
		e := notSent(method, ctx.Err())
		e.Reason = "its ctx ended while it waited for a worker; nothing was sent"
		return nil, e
	case <-expire:
		if p.hooks.timedOut != nil {
			p.hooks.timedOut()
		}
		p.mu.Lock()
		removed := p.waiters.remove(wt)
		n := p.waiters.n
		p.unlock()
		if !removed {
			// Granted just as the timer fired: the worker is ours, use it.
			g := <-wt.ch
			putWaiter(wt)
			return g.w, withMethod(g.err, method)
		}
		putWaiter(wt)
		p.stats.overloaded.Add(1)
		return nil, &OverloadedError{Method: method, Queued: n, Waited: p.cfg.QueueTimeout,
			Reason: fmt.Sprintf("no worker free within QueueTimeout (%v)", p.cfg.QueueTimeout)}
	}
}

// withMethod names the call in an error granted to a waiter by someone who
// did not know its method.
func withMethod(err error, method string) error {
	if ue, ok := err.(*UnhealthyError); ok && ue.Method == "" {
		ue.Method = method
	}
	return err
}
