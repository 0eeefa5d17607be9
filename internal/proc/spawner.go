// Package proc starts worker processes and watches them die.
//
// It owns the Linux details: a spawning thread that outlives its children so
// the parent-death signal means "the dispatcher is gone", process groups,
// pidfds polled by the Go netpoller (no thread per idle worker), and stopping
// a process step by step.
package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
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
	pidns *os.File // a PID namespace to start cmd in, or nil
	reply chan error
	tid   *int // tests: report the serving thread instead of starting cmd
	nnp   bool // set no_new_privs on the spawning thread instead of starting cmd
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
	if unix.Gettid() == unix.Getpid() {
		// The main thread is the one thread the runtime never
		// terminates (it parks it instead), so children forked here
		// would outlive Close. Move to another thread: while this
		// goroutine holds the main thread, the new one cannot get it.
		moved := make(chan struct{})
		go s.serveLocked(moved)
		<-moved
		runtime.UnlockOSThread()
		return
	}
	s.serveLocked(nil)
}

func (s *Spawner) serveLocked(moved chan<- struct{}) {
	runtime.LockOSThread()
	if moved != nil {
		close(moved)
	}
	defer close(s.done)
	// The thread's own PID namespace, to come back to after a start in
	// another (StartIn).
	self, selfErr := unix.Open("/proc/thread-self/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if selfErr == nil {
		defer unix.Close(self)
	}
	var stuck error // set if the thread could not come back: it starts nothing more
	for r := range s.reqs {
		if r.pidns != nil {
			switch {
			case stuck != nil:
				r.reply <- stuck
			case selfErr != nil:
				r.reply <- fmt.Errorf("proc: the spawning thread's own PID namespace: %w", selfErr)
			default:
				stuck = s.startIn(r, self)
			}
			continue
		}
		if stuck != nil && r.cmd != nil {
			r.reply <- stuck
			continue
		}
		if r.nnp {
			r.reply <- unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
			continue
		}
		if r.tid != nil {
			*r.tid = unix.Gettid()
			r.reply <- nil
			continue
		}
		r.reply <- r.cmd.Start()
	}
}

// startIn starts r.cmd in the PID namespace r.pidns: the spawning thread
// joins it for its children (setns(2) changes only the namespace the
// thread's next children are born in), forks, and comes back to self. The
// child is this process's own child, as any other. A thread that cannot
// come back is stuck: the error it returns makes every later start fail.
func (s *Spawner) startIn(r spawnReq, self int) (stuck error) {
	if err := unix.Setns(int(r.pidns.Fd()), unix.CLONE_NEWPID); err != nil {
		r.reply <- fmt.Errorf("proc: joining the worker's PID namespace (setns needs CAP_SYS_ADMIN): %w", err)
		return nil
	}
	err := r.cmd.Start()
	if berr := unix.Setns(self, unix.CLONE_NEWPID); berr != nil {
		stuck = fmt.Errorf("proc: the spawning thread could not leave a worker's PID namespace: %w", berr)
	}
	r.reply <- err
	return stuck
}

// Start runs cmd.Start on the spawning thread.
func (s *Spawner) Start(cmd *exec.Cmd) error { return s.StartIn(cmd, nil) }

// StartIn runs cmd.Start on the spawning thread, with cmd born in the PID
// namespace pidns (an open /proc/PID/ns/pid) if not nil.
func (s *Spawner) StartIn(cmd *exec.Cmd, pidns *os.File) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.shut {
		return ErrSpawnerClosed
	}
	r := spawnReq{cmd: cmd, pidns: pidns, reply: make(chan error, 1)}
	s.reqs <- r
	return <-r.reply
}

// NoNewPrivs sets no_new_privs on the spawning thread, for good: every
// process started from then on inherits it, so that no execve it makes
// gains privileges (a setuid binary runs without them). Only that thread is
// affected; it does nothing but fork.
func (s *Spawner) NoNewPrivs() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.shut {
		return ErrSpawnerClosed
	}
	r := spawnReq{nnp: true, reply: make(chan error, 1)}
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
