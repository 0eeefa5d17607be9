package bulkhead

import "fmt"

// state is where a worker is in its life, as the pool sees it. It is
// guarded by Pool.mu and changes only through workerProc.to, which checks
// the transition against canGo; docs/DESIGN.md ("One lifecycle per worker")
// draws the diagram. A worker is in Pool.workers from its HELLO until it is
// dead; Pool.active counts the serving ones and Pool.spares lists the spares
// (Pool.moveLocked keeps both in step).
type state uint8

const (
	// starting: spawned, waiting for HELLO; not in Pool.workers yet.
	starting state = iota
	// spare: said HELLO; a warm spare (Config.Spares) that takes no calls.
	spare
	// serving: takes calls.
	serving
	// retiring: out of service on purpose (recycled, surplus, hung, Close,
	// a handler's panic); stopped once its calls are done.
	retiring
	// lost: a caller found its connection broken; it is dying or being
	// killed, and its replacement has been seen to. A lost worker may
	// still be retired (an abandoned call stops it), which names its end.
	lost
	// dead: its process has exited and been reaped (onExit).
	dead
)

func (s state) String() string {
	names := [...]string{starting: "starting", spare: "spare", serving: "serving", retiring: "retiring", lost: "lost", dead: "dead"}
	if int(s) < len(names) {
		return names[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// canGo reports whether a worker in state s may move to next.
func (s state) canGo(next state) bool {
	switch s {
	case starting:
		return next == spare || next == serving || next == retiring || next == dead
	case spare:
		return next == serving || next == retiring || next == lost || next == dead
	case serving:
		return next == retiring || next == lost || next == dead
	case lost:
		return next == retiring || next == dead
	case retiring:
		return next == dead
	}
	return false
}

// to moves w to next and returns the state it left. An illegal transition
// is a bug in the pool, not a condition to handle: it panics.
func (w *workerProc) to(next state) state {
	prev := w.state
	if !prev.canGo(next) {
		panic(fmt.Sprintf("bulkhead: worker %d: illegal transition %v -> %v", w.PID, prev, next))
	}
	w.state = next
	return prev
}

// retired reports whether w was taken out of service on purpose: it is
// retiring, or was when it died. (retireWhy is set exactly when a worker
// enters retiring, and outlives the state.)
func (w *workerProc) retired() bool { return w.retireWhy != "" }

// The socket and the start marker page have several users, and are
// released by the last one: the process, until onExit; each call that
// holds the worker (inflight); each stopHung stopping it (hung). A worker
// enters Pool.workers with the process's hold.

// holdLocked takes one hold on w's socket and marker.
func (w *workerProc) holdLocked() { w.holds++ }

// dropLocked lets one hold go and reports whether it was the last: the
// caller then releases them (Worker.Close) once Pool.mu is released.
func (w *workerProc) dropLocked() (last bool) {
	w.holds--
	if w.holds < 0 {
		panic(fmt.Sprintf("bulkhead: worker %d: socket and marker released more often than held", w.PID))
	}
	return w.holds == 0
}

// moveLocked moves w to next (workerProc.to) and keeps the pool's books in
// step: Pool.active counts the serving workers, Pool.spares lists the
// spares, and a spare that leaves other than by promotion is remembered
// (wasSpare) so that its death is logged as a spare's.
func (p *Pool) moveLocked(w *workerProc, next state) {
	prev := w.to(next)
	switch prev {
	case serving:
		p.active--
	case spare:
		p.spares = removeSpare(p.spares, w)
		w.wasSpare = next != serving
	}
	switch next {
	case serving:
		p.active++
	case spare:
		p.spares = append(p.spares, w)
	}
}

// removeSpare removes w from list. O(Spares); a promotion takes the last.
func removeSpare(list []*workerProc, w *workerProc) []*workerProc {
	last := len(list) - 1
	for i := last; i >= 0; i-- {
		if list[i] == w {
			list[i] = list[last]
			list[last] = nil
			return list[:last]
		}
	}
	return list
}
