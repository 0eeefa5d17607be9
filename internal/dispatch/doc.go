// Package dispatch is the dispatcher's end of one worker: launching it
// (Launch: socketpair, start marker, optional shared-memory rings, cookie,
// HELLO, its exit or the start timeout, whichever comes first) and the
// connection to it (Conn: combined writes, leader/follower reads with no
// reader goroutine, the cancellation of a caller's ctx, the idle watcher
// of an object server). It knows nothing of pools or activators: their
// policies are given to it as Options and Hooks, and it reports through
// Result, StartFailure and errors. Frames are internal/wire's; processes
// are internal/proc's.
package dispatch
