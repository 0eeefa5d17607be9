// Package proc starts worker processes and watches them die.
//
// It owns the Linux details: a spawning thread that outlives its children so
// the parent-death signal means "the dispatcher is gone", process groups,
// pidfds polled by the Go netpoller (no thread per idle worker), and stopping
// a process step by step.
package proc

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
)

// ErrSpawnerClosed is returned by Start after Close.
var ErrSpawnerClosed = errors.New("proc: spawner closed")

// Spawner starts processes from one locked OS thread.
//
// Linux delivers the parent-death signal when the *thread* that forked the
// child exits, not the process. Go may retire any thread, so a child forked
// from an arbitrary goroutine could be killed at a random moment. A Spawner
// forks from a single locked thread that lives until Close; Close lets that
// thread exit, which also kills any child that is somehow still alive.
type Spawner struct {
	reqs chan spawnReq
	done chan struct{}
	once sync.Once
	mu   sync.RWMutex // guards closed against Start
	shut bool
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

// NewSpawner starts the spawning thread.
func NewSpawner() *Spawner {
	s := &Spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
	go s.loop()
	return s
}

func (s *Spawner) loop() {
	// Never unlocked: when this goroutine returns, the runtime terminates
	// the thread instead of reusing it, and the kernel delivers each
	// remaining child's parent-death signal.
	runtime.LockOSThread()
	defer close(s.done)
	for r := range s.reqs {
		r.reply <- r.cmd.Start()
	}
}

// Start runs cmd.Start on the spawning thread.
func (s *Spawner) Start(cmd *exec.Cmd) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.shut {
		return ErrSpawnerClosed
	}
	r := spawnReq{cmd: cmd, reply: make(chan error, 1)}
	s.reqs <- r
	return <-r.reply
}

// Close stops the spawning thread and waits for it to exit.
func (s *Spawner) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		s.shut = true
		close(s.reqs)
		s.mu.Unlock()
	})
	<-s.done
}
