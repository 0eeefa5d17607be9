package activation

import (
	"context"
	"fmt"
	"slices"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Routing: where an activation or a class handout goes, and who waits for a
// server (docs/DESIGN.md, rules 2 to 4). Everything here runs under
// Activator.mu unless its name says otherwise.

// placeObject finds a server for one object of c and takes a lock on it
// for the object, launching a server if the class needs one. via, if not
// nil, is a class handle whose server is preferred. retry says that a
// server refused the activation ("server stopping"): it is spread (pickLocked).
func (a *Activator) placeObject(ctx context.Context, c *classEntry, via *ClassObject, retry bool) (*object, error) {
	g, err := a.place(ctx, c, via, false, retry)
	return g.obj, err
}

// place is placeObject and the class handout: cls asks for a class lock
// instead of an object.
func (a *Activator) place(ctx context.Context, c *classEntry, via *ClassObject, cls, retry bool) (actGrant, error) {
	if err := ctx.Err(); err != nil {
		// Before anything is routed, or launched.
		return actGrant{}, &bulkhead.CanceledError{Method: "activate " + c.name, Err: err}
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return actGrant{}, bulkhead.ErrClosed
	}
	if !cls && a.objects >= a.maxObjects {
		a.mu.Unlock()
		return actGrant{}, fmt.Errorf("%w: %d alive", ErrTooManyObjects, a.objects)
	}
	if via != nil && a.routableLocked(via.s, c) {
		g := a.takeLocked(via.s, c, cls)
		a.mu.Unlock()
		return g, nil
	}
	if s, launch := a.pickLocked(c, len(c.waiters)+1, retry && !cls); s != nil {
		g := a.takeLocked(s, c, cls)
		a.mu.Unlock()
		return g, nil
	} else if launch {
		a.launchLocked(c.def)
	}
	wt := &actWaiter{ch: make(chan actGrant, 1), cls: cls}
	c.waiters = append(c.waiters, wt)
	a.mu.Unlock()
	if h := a.hooks.waiting; h != nil {
		h(c.name)
	}
	select {
	case g := <-wt.ch:
		return g, g.err
	case <-ctx.Done():
		a.mu.Lock()
		i := slices.Index(c.waiters, wt)
		if i >= 0 {
			c.waiters = slices.Delete(c.waiters, i, i+1)
		}
		a.mu.Unlock()
		if i < 0 {
			// Granted as ctx ended: give it back.
			if g := <-wt.ch; g.err == nil {
				a.giveBack(g)
			}
		}
		return actGrant{}, &bulkhead.CanceledError{Method: "activate " + c.name, Err: ctx.Err()}
	}
}

// giveBack undoes a grant its waiter no longer wants.
func (a *Activator) giveBack(g actGrant) {
	if g.obj != nil {
		a.dropObject(g.obj)
		return
	}
	a.mu.Lock()
	g.s.classRefs--
	stop := a.maybeStopLocked(g.s)
	a.mu.Unlock()
	if stop {
		a.stop(g.s)
	}
}

// routableLocked reports whether s takes activations of c now.
func (a *Activator) routableLocked(s *server, c *classEntry) bool {
	return slices.Contains(c.routable, s)
}

// pickLocked chooses a routable server for one more object of c, or says
// whether a server must be launched for it. n counts the waiters that need a
// server, this one included.
//
// spread is set for waiting activations and for ones a server refused. A
// multiple-use class's servers take every activation, unless they revoke
// their classes by themselves after some number (recycling). Once that
// number is known (serverDef.perServer), a spread activation goes only to a
// server that has taken fewer, and enough servers are launched for all that
// wait: handed to the one fresh server, the activations beyond its number
// would be refused again, round after round.
func (a *Activator) pickLocked(c *classEntry, n int, spread bool) (s *server, launch bool) {
	switch c.cfg.Instancing {
	case SingleUse:
		if len(c.routable) > 0 {
			return c.routable[0], false // resumed for a waiter that gave up
		}
		return nil, c.pending < n
	case Pooled:
		var best *server
		for _, s := range c.routable {
			if best == nil || s.objCount < best.objCount {
				best = s
			}
		}
		if best != nil && best.objCount == 0 {
			return best, false
		}
		if c.pending >= n {
			return nil, false
		}
		if len(c.routable)+c.pending < c.cfg.PoolSize {
			return nil, true
		}
		return best, best == nil && c.pending == 0
	default: // MultipleUse
		per := c.def.perServer
		if !spread || per == 0 {
			if len(c.routable) > 0 {
				return c.routable[len(c.routable)-1], false
			}
			return nil, c.pending == 0
		}
		for i := len(c.routable) - 1; i >= 0; i-- {
			if s := c.routable[i]; s.taken < per {
				return s, false
			}
		}
		return nil, c.pending*per < n
	}
}

// takeLocked takes a lock on s for an activation of c (creating its object
// record) or for a class handout. This is the step that makes a handout
// lock the server atomically (as the NT4 service control manager did, with its implicit LockServer).
func (a *Activator) takeLocked(s *server, c *classEntry, cls bool) actGrant {
	if cls {
		s.classRefs++
		return actGrant{s: s}
	}
	obj := a.newObjectLocked(s, c)
	if c.cfg.Instancing == SingleUse {
		s.singleUsed = true
		a.unrouteClassLocked(s, c)
	}
	return actGrant{s: s, obj: obj}
}

// serveWaitersLocked hands servers to c's waiters after a change: a server
// resumed, a launch failed, a server stopped. Waiters that a launch under way
// will serve keep waiting; the rest get a new launch, or failErr if set.
func (a *Activator) serveWaitersLocked(c *classEntry, failErr error) {
	for i := 0; i < len(c.waiters); {
		wt := c.waiters[i]
		s, launch := a.pickLocked(c, i+1, !wt.cls)
		switch {
		case s != nil:
			c.waiters = slices.Delete(c.waiters, i, i+1)
			wt.ch <- a.takeLocked(s, c, wt.cls)
		case launch && failErr != nil:
			c.waiters = slices.Delete(c.waiters, i, i+1)
			wt.ch <- actGrant{err: failErr}
		case launch:
			a.launchLocked(c.def)
			i++
		default:
			i++
		}
	}
}

// actOutcome is what became of an activation, as far as its server's
// count of activations is concerned.
type actOutcome int

const (
	actNotTaken actOutcome = iota // not sent, never answered, or refused for another reason
	actTaken                      // the worker took it: it made the object, or the constructor failed
	actRefused                    // the worker answered "server stopping"
)

// outcomeOf classifies a worker's answer to an ACTIVATE.
func outcomeOf(ans answer) actOutcome {
	if ans.err != nil {
		return actNotTaken
	}
	if ans.typ == wire.TypeReply {
		return actTaken
	}
	body, err := wire.DecodeError(ans.payload)
	switch {
	case err != nil, body.Code == wire.CodeUnknownClass, body.Code == wire.CodeBadArguments:
		return actNotTaken
	case body.Code == wire.CodeServerStopping:
		return actRefused
	}
	return actTaken
}

// settleLocked records, once, what became of the activation that created o.
func (a *Activator) settleLocked(o *object, out actOutcome) {
	if o.settled {
		return
	}
	o.settled = true
	s := o.s
	if s.state == stateGone {
		return
	}
	s.inflight--
	switch out {
	case actTaken:
		s.accepted++
	case actRefused:
		s.refused = true
	}
	a.learnLocked(s)
}

// learnLocked learns how many activations a server of s's program takes
// before it revokes its classes by itself (worker.ObjectOptions.MaxActivations):
// as many as s took, once s has refused one and every activation sent to it
// has been answered, when that count is exact. The activations waiting are
// then spread over as many servers as they need.
func (a *Activator) learnLocked(s *server) {
	if !s.refused || s.inflight > 0 || s.learned {
		return
	}
	s.learned = true
	s.def.perServer = max(1, s.accepted)
	if h := a.hooks.learned; h != nil {
		h(s, s.def.perServer)
	}
	for _, c := range s.def.classes {
		a.serveWaitersLocked(c, nil)
	}
}
