package cluster

import "context"

// A node's admission of a pool's calls (docs/DESIGN.md, "The start marker
// across nodes"). A call sent to the node's own subject that finds a free
// worker runs at once, with no marker: its client counts it as possibly
// started from the moment it sent it. A call that must wait says "queued"
// and waits here, in arrival order, for a worker; it says "started", and
// has the NATS server acknowledge it, before it runs. So only a call that
// waited pays the flush, and a call that waited on a node lost meanwhile
// is one its client knows was not started: it is sent to another node.

// gate is one pool's admission: the calls handed to the backend, and those
// waiting for a worker. Guarded by Node.mu.
type gate struct {
	active  int       // calls handed to the backend
	waiting []*waiter // in arrival order
}

// waiter is a call waiting for a worker. ready is closed once it is
// admitted (it holds a slot: it must leave) or refused (the node drains).
type waiter struct {
	ready    chan struct{}
	admitted bool
	refused  bool
}

// slots is how many calls a pool may have handed to the backend at once:
// its workers serving now, and at least one, so that a pool whose workers
// are all down still lets one call wait in it for a replacement, and a
// waiter always has an active call whose end admits it.
func slots(capacity int) int { return max(capacity, 1) }

// enter admits a call at once if no call waits and a slot is free; else it
// returns a waiter, queued.
func (g *gate) enter(capacity int) *waiter {
	if len(g.waiting) == 0 && g.active < slots(capacity) {
		g.active++
		return nil
	}
	w := &waiter{ready: make(chan struct{})}
	g.waiting = append(g.waiting, w)
	return w
}

// leave gives a slot back, and admits waiters while slots are free.
func (g *gate) leave(capacity int) {
	g.active--
	g.admitWaiting(capacity)
}

// admitWaiting admits waiters while slots are free: after a leave, or
// when the pool's workers grew.
func (g *gate) admitWaiting(capacity int) {
	for len(g.waiting) > 0 && g.active < slots(capacity) {
		w := g.waiting[0]
		g.waiting[0] = nil
		g.waiting = g.waiting[1:]
		w.admitted = true
		g.active++
		close(w.ready)
	}
}

// abandon takes w out of the queue (its call's ctx ended). False if it
// was admitted meanwhile: its call holds a slot, and must leave.
func (g *gate) abandon(w *waiter) bool {
	if w.admitted {
		return false
	}
	for i, x := range g.waiting {
		if x == w {
			g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
			break
		}
	}
	return true
}

// refuseAll refuses every waiter: the node drains, and a call that was
// never started may go to another node.
func (g *gate) refuseAll() {
	for _, w := range g.waiting {
		if !w.admitted {
			w.refused = true
			close(w.ready)
		}
	}
	g.waiting = nil
}

// confirmStart says started, and has the NATS server acknowledge it,
// before the call runs: once the server has it, the client sees it before
// it could learn that this node is gone, so it never sends elsewhere a
// call this node started. The acknowledgement must come on the connection
// the call came on: across a reconnect, the client may have found this
// node lost meanwhile and sent the call elsewhere, so it is refused, not
// run. False: not started.
func (n *Node) confirmStart(ctx context.Context, reply string, reconnects uint64) bool {
	if n.nc.PublishMsg(n.msg(reply, statusStarted, nil)) != nil || n.fl.flush(ctx) != nil {
		return false // the client times out, or sends it elsewhere
	}
	if n.nc.Stats().Reconnects != reconnects {
		n.nc.PublishMsg(n.msg(reply, statusResend, nil))
		return false
	}
	return true
}

// admit waits until w's call may run (w nil: it may now). False: it may
// not, and holds no slot; a call refused as the node drains is answered
// refused, one whose ctx ended is not answered (its client has returned).
func (n *Node) admit(ctx context.Context, pool, reply string, w *waiter) bool {
	if w == nil {
		return true
	}
	select {
	case <-w.ready:
	case <-ctx.Done():
	}
	n.mu.Lock()
	refused, abandoned := w.refused, n.gates[pool].abandon(w)
	n.mu.Unlock()
	if refused {
		n.nc.PublishMsg(n.msg(reply, statusRefused, nil))
	}
	return !abandoned
}

// leave gives a call's slot back, admitting the next waiter.
func (n *Node) leave(pool string) {
	n.mu.Lock()
	capacity := 0
	if ps := n.pools[pool]; ps != nil {
		capacity = ps.capacity
	}
	n.gates[pool].leave(capacity)
	n.mu.Unlock()
}

// setCapacity records a pool's workers serving now; more of them admit
// waiting calls.
func (n *Node) setCapacity(pool string, c int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps, g := n.pools[pool], n.gates[pool]
	if ps == nil || ps.capacity == c {
		return
	}
	ps.capacity = c
	if g != nil {
		g.admitWaiting(c)
	}
}
