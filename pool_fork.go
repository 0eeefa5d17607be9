package bulkhead

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/bulkhead-go/bulkhead/internal/forkserver"
	"github.com/bulkhead-go/bulkhead/internal/sandbox"
)

// forkServers owns a pool's fork server (Config.ForkServer): the one that
// serves, and whether another is being started. Its lock guards only those
// fields; starting and stopping a server happen outside it.
type forkServers struct {
	mu         sync.Mutex
	srv        *forkserver.Server // nil: none serving
	restarting bool
	closed     bool
}

// errNoForkServer makes a start exec while the fork server is down.
var errNoForkServer = errors.New("bulkhead: no fork server")

// forkRefusal fails closed on Config.ForkServer with the Config.Sandbox
// protections that a clone of the fork server cannot get: the worker's
// user, its namespaces (all made by the exec's clone flags; a PID
// namespace per worker cannot hold a clone of a fork server outside it)
// and the binary pin (the clone runs the fork server's image, not a file
// opened and checked at its start). The pool refuses them rather than fork
// workers with less protection than asked for (or exec them all behind the
// setting's back). Seccomp and Landlock are applied by each clone itself,
// from the message the trampoline would get, and the cgroup by the
// dispatcher before HELLO (internal/sandbox, Start.confine).
func (s *settings) forkRefusal() error {
	if !s.ForkServer {
		return nil
	}
	var asked []string
	b := &s.Sandbox
	for _, f := range []struct {
		name string
		on   bool
	}{
		{"User", b.User != ""}, {"SHA256", b.SHA256 != ""},
		{"namespaces", b.IsolateNet || b.IsolateIPC || b.PrivateTmp || b.UserNamespace},
		{"IsolatePID", b.IsolatePID},
	} {
		if f.on {
			asked = append(asked, f.name)
		}
	}
	if len(asked) == 0 {
		return nil
	}
	return &StartError{ExitCode: -1, Protection: "fork server",
		Reason: "Config.ForkServer with Config.Sandbox (" + strings.Join(asked, ", ") + "): a worker cloned by the " +
			"fork server would not get that protection (the exec's clone flags or its opened binary apply it; a " +
			"PID namespace per worker cannot hold a clone of a fork server outside it); turn one of them off"}
}

// forkCmd is the fork server's command: the worker program as configured.
func (p *Pool) forkCmd() *exec.Cmd {
	s := &p.cfg
	// The environment an exec'd worker gets (the sandbox's Prepare): the
	// clones inherit it.
	env := sandbox.Environ(os.Environ(), s.Env)
	return &exec.Cmd{Path: s.path, Args: append([]string{s.Command}, s.Args...), Env: env, Dir: s.Dir}
}

// forkWorker is dispatch.Spec.Fork: a clone from the fork server, or an
// error (and a restart of the server) so that the start execs.
func (p *Pool) forkWorker(env []string, files []*os.File) (int, error) {
	p.forks.mu.Lock()
	srv := p.forks.srv
	p.forks.mu.Unlock()
	if srv == nil {
		p.restartForkServer()
		return 0, errNoForkServer
	}
	pid, err := srv.Fork(env, files)
	if err != nil {
		p.forks.mu.Lock()
		if p.forks.srv == srv {
			p.forks.srv = nil
		}
		p.forks.mu.Unlock()
		p.cfg.Logger.Warn("fork server failed; workers are exec'd until it is back", "pid", srv.PID(), "err", err)
		srv.Close()
		p.restartForkServer()
	}
	return pid, err
}

// restartForkServer starts a fork server on a goroutine of the pool's,
// unless one is starting already or the pool is closed.
func (p *Pool) restartForkServer() {
	if !p.claimForkStart(true) {
		return
	}
	go func() {
		defer p.wg.Done()
		p.startForkServer()
	}()
}

// claimForkStart marks a start under way, if none is and the pool is open;
// with goroutine, it counts the goroutine that will start it in the pool's
// WaitGroup, under the lock that closeForkServer takes before the pool
// waits.
func (p *Pool) claimForkStart(goroutine bool) bool {
	p.forks.mu.Lock()
	defer p.forks.mu.Unlock()
	if p.forks.restarting || p.forks.closed || p.forks.srv != nil {
		return false
	}
	p.forks.restarting = true
	if goroutine {
		p.wg.Add(1)
	}
	return true
}

// startForkServer starts one, once claimForkStart has said so, and makes it
// the pool's unless the pool closed meanwhile.
func (p *Pool) startForkServer() {
	srv, err := forkserver.Start(p.spawner, p.forkCmd(), p.cfg.StartTimeout)
	p.forks.mu.Lock()
	p.forks.restarting = false
	keep := err == nil && !p.forks.closed
	if keep {
		p.forks.srv = srv
	}
	p.forks.mu.Unlock()
	if err != nil {
		p.cfg.Logger.Warn("fork server did not start; workers are exec'd", "err", err)
	} else if !keep {
		srv.Close()
	}
}

// closeForkServer stops the fork server; no other starts after it.
func (p *Pool) closeForkServer() {
	p.forks.mu.Lock()
	p.forks.closed = true
	srv := p.forks.srv
	p.forks.srv = nil
	p.forks.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}
