package activation

import (
	"errors"
	"fmt"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Launching a class server: spawn, HELLO, then its watcher reads the
// registrations (docs/DESIGN.md, "States of a server").

// launchLocked starts a server of def in the background.
func (a *Activator) launchLocked(def *serverDef) {
	s := newServer(a, def)
	a.servers[s] = struct{}{}
	for _, c := range def.classes {
		c.pending++
	}
	a.wg.Add(1)
	go a.launchServer(s)
}

// launchServer starts s's process and waits for its HELLO; its watcher then
// reads its registrations.
func (a *Activator) launchServer(s *server) {
	defer a.wg.Done()
	track := func(w *serverProc, add bool) {
		a.mu.Lock()
		closed := a.closed
		if add {
			s.starting = w
		} else {
			s.starting = nil
		}
		a.mu.Unlock()
		if add && closed {
			// On the goroutine that owns the descriptor; if close came
			// later, close shuts it down.
			w.Conn.Shutdown()
		}
	}
	w, err := launchProcess(s.def.spec, a.spawner, func(w *serverProc) { a.onExit(s, w) }, track)
	a.mu.Lock()
	if err == nil && (a.closed || s.exited) {
		// Closing, or it died just after HELLO: not worth a server.
		a.mu.Unlock()
		w.Proc.Kill()
		<-w.Proc.Exited()
		w.Proc.Release()
		w.Close()
		a.mu.Lock()
		if !a.closed {
			err = &bulkhead.StartError{PID: w.PID, ExitCode: -1, Exited: true, Reason: fmt.Sprintf("server %d exited right after HELLO", w.PID), Stderr: w.Stderr.String()}
		} else {
			err = bulkhead.ErrClosed
		}
	}
	if err != nil {
		if a.closed {
			err = bulkhead.ErrClosed
		} else {
			a.stats.launchFailures.Add(1)
		}
		a.launchFailedLocked(s, err)
		a.mu.Unlock()
		if !errors.Is(err, bulkhead.ErrClosed) {
			a.log.Error("class server failed to start", append([]any{"server", s.def.name}, startAttrs(err)...)...)
		}
		return
	}
	a.stats.launches.Add(1)
	s.w = w
	s.pid = w.PID
	s.state = stateRegistered
	s.connRefs.Store(2) // the process and the watcher
	w.Conn.StartWatch(func(h wire.Header, p []byte) error { return a.onFrame(s, h, p) }, a.eventDelay)
	reg := a.newTimer()
	s.regTimer = reg
	a.wg.Add(1)
	a.mu.Unlock()
	reg.arm(s.def.spec.StartTimeout, func() { a.registrationTimeout(s) })
	go a.watchServer(s)
}

func (a *Activator) watchServer(s *server) {
	defer a.wg.Done()
	s.w.Conn.Watch()
	s.releaseConn()
}

// launchFailedLocked forgets a server that never resumed and tells the
// waiters that counted on it.
func (a *Activator) launchFailedLocked(s *server, err error) {
	a.launchEndedLocked(s)
	delete(a.servers, s)
	s.state = stateGone
	s.crash = err
	close(s.gone)
	for _, c := range s.def.classes {
		a.serveWaitersLocked(c, err)
	}
}

// launchEndedLocked ends s's count as a launch under way, once.
func (a *Activator) launchEndedLocked(s *server) {
	if s.launchEnded {
		return
	}
	s.launchEnded = true
	for _, c := range s.def.classes {
		c.pending--
	}
}
