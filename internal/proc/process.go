package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is a started child in its own process group, watched through a
// pidfd. Exactly one goroutine, started by Start, waits for it; Exited is
// closed when that goroutine has reaped the child.
type Process struct {
	Cmd *exec.Cmd // nil for a forked child (StartForked)
	PID int

	osp *os.Process // a forked child's, to reap it

	pidfd  *os.File // nil where pidfds are unavailable
	exited chan struct{}
	state  *os.ProcessState
	err    error // Wait's error, other than the exit status

	onDied  func()
	onExit  func()
	killAll func()
	out     *output // nil: the Cmd's own stdout and stderr

	// sigMu orders signals against the reaping: once dead is set the pid
	// may be reaped and reused, so nothing is sent to it any more.
	sigMu sync.Mutex
	dead  bool

	stopOnce sync.Once
	stopMu   sync.Mutex
	timer    *time.Timer
}

// Start prepares cmd (own process group, parent-death SIGKILL) and starts it
// through sp. cmd.SysProcAttr is replaced by a copy; the caller's is not
// modified. onExit, if not nil, runs on the watching goroutine once the
// process has been reaped, just before Exited is closed.
func Start(sp *Spawner, cmd *exec.Cmd, onExit func()) (*Process, error) {
	return StartWatched(sp, cmd, nil, onExit)
}

// StartWatched is Start with one more callback: onDied, if not nil, runs
// on the watching goroutine as soon as the pidfd reports the exit, before
// the reaping. The reaping itself may wait up to cmd.WaitDelay for output
// pipes that a surviving descendant holds open; onDied does not.
func StartWatched(sp *Spawner, cmd *exec.Cmd, onDied, onExit func()) (*Process, error) {
	return StartWith(sp, cmd, Options{Died: onDied, Reaped: onExit})
}

// Options are StartWith's callbacks, which run on the watching goroutine;
// any may be nil.
type Options struct {
	// Died runs as soon as the pidfd reports the exit, before the reaping
	// (StartWatched's onDied), after KillAll.
	Died func()
	// Reaped runs once the process has been reaped, just before Exited is
	// closed (Start's onExit).
	Reaped func()
	// KillAll kills every process the child started, wherever it went: a
	// descendant that called setsid(2) has left the process group, but
	// not the child's cgroup. It runs when the child has died, after its
	// group was killed, so that no descendant outlives it or holds its
	// output pipes open and delays the reaping.
	KillAll func()
	// Output, if not nil, gets the child's stdout and stderr (which must
	// be unset in the Cmd), copied until it dies and then drained of what
	// it had written, so that a descendant holding the pipe delays
	// neither the reaping nor the child's crash report.
	Output io.Writer
	// PidNS, if not nil, is the PID namespace the child is born in (an
	// open /proc/PID/ns/pid; Spawner.StartIn).
	PidNS *os.File
}

// StartWith is Start with every callback.
func StartWith(sp *Spawner, cmd *exec.Cmd, o Options) (*Process, error) {
	attr := syscall.SysProcAttr{}
	if cmd.SysProcAttr != nil {
		attr = *cmd.SysProcAttr
	}
	attr.Setpgid = true
	attr.Pgid = 0
	attr.Pdeathsig = syscall.SIGKILL
	if o.PidNS != nil {
		// Go's child checks that getppid(2) is still its parent after
		// setting it, and a parent outside its PID namespace is 0 there:
		// it would kill itself. The namespace's init dies with the
		// dispatcher instead (internal/sandbox), and takes it along.
		attr.Pdeathsig = 0
	}
	cmd.SysProcAttr = &attr
	var out *output
	if o.Output != nil {
		var pw *os.File
		var err error
		if out, pw, err = newOutput(o.Output); err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = pw, pw
		err = sp.StartIn(cmd, o.PidNS)
		pw.Close() // the child's now
		if err != nil {
			out.r.Close()
			return nil, err
		}
		go out.run()
	} else if err := sp.StartIn(cmd, o.PidNS); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, PID: cmd.Process.Pid, exited: make(chan struct{}), onDied: o.Died, onExit: o.Reaped,
		killAll: o.KillAll, out: out}
	// The child cannot be reaped before we Wait, so its pid is still ours.
	if fd, err := unix.PidfdOpen(p.PID, unix.PIDFD_NONBLOCK); err == nil {
		p.pidfd = os.NewFile(uintptr(fd), "pidfd")
	}
	go p.watch()
	return p, nil
}

// watch waits for the child's exit without holding a thread: the pidfd becomes
// readable when the child exits, and the netpoller parks this goroutine until
// then. It then kills what is left of the process group and reaps the child.
func (p *Process) watch() {
	defer close(p.exited)
	if p.pidfd != nil {
		p.waitPidfd()
		p.pidfd.Close()
	}
	// The leader is a zombie (or still running, if pidfd polling failed),
	// so its group id cannot have been reused: clean up its group.
	if p.pidfd != nil {
		_ = unix.Kill(-p.PID, unix.SIGKILL)
	}
	if p.killAll != nil {
		p.killAll()
	}
	if p.out != nil && p.pidfd != nil {
		p.out.stop() // dead: what it wrote is in the pipe
	}
	if p.onDied != nil {
		p.onDied()
	}
	p.sigMu.Lock()
	p.dead = true // from here on the pid may be reaped: no more signals
	p.sigMu.Unlock()
	err := p.wait()
	if p.out != nil && p.pidfd == nil {
		p.out.stop() // without a pidfd: once reaped
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		p.err = err
	}
	if p.onExit != nil {
		p.onExit()
	}
}

// wait reaps the child and keeps its state.
func (p *Process) wait() error {
	if p.Cmd == nil {
		st, err := p.osp.Wait()
		p.state = st
		return err
	}
	err := p.Cmd.Wait()
	p.state = p.Cmd.ProcessState
	return err
}

// StartForked watches a child that fork started some other way than exec:
// a fork server's clone with CLONE_PARENT, so that the child is this
// process's and is reaped here. fork gets the write end of the output pipe
// (nil without o.Output), for the child's stdout and stderr, and returns the
// child's pid; the child must already be in its own process group and have
// its parent-death signal set.
func StartForked(fork func(out *os.File) (int, error), o Options) (*Process, error) {
	var out *output
	var pw *os.File
	if o.Output != nil {
		var err error
		if out, pw, err = newOutput(o.Output); err != nil {
			return nil, err
		}
	}
	pid, err := fork(pw)
	if pw != nil {
		pw.Close() // the child's now
	}
	if err != nil {
		if out != nil {
			out.r.Close()
		}
		return nil, err
	}
	if out != nil {
		go out.run()
	}
	osp, err := os.FindProcess(pid) // never fails on Linux
	if err != nil {
		return nil, err
	}
	p := &Process{PID: pid, osp: osp, exited: make(chan struct{}), onDied: o.Died, onExit: o.Reaped,
		killAll: o.KillAll, out: out}
	if fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK); err == nil {
		p.pidfd = os.NewFile(uintptr(fd), "pidfd")
	}
	go p.watch()
	return p, nil
}

func (p *Process) waitPidfd() {
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err != nil && err != unix.EINTR || n > 0
	})
}

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// State returns the exit state; valid after Exited is closed.
func (p *Process) State() *os.ProcessState { return p.state }

// Alive reports whether Exited is still open.
func (p *Process) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process's whole group. Signalling a process that
// has exited is not an error.
func (p *Process) Signal(sig syscall.Signal) error {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.dead {
		return nil
	}
	if err := unix.Kill(-p.PID, sig); err != nil && err != unix.ESRCH {
		return fmt.Errorf("signal %v to process group %d: %w", sig, p.PID, err)
	}
	return nil
}

// SignalThread sends sig to the process's thread tid alone (tgkill), if
// the process has not been reaped (its PID is still its own).
func (p *Process) SignalThread(tid int, sig syscall.Signal) error {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.dead {
		return nil
	}
	if err := unix.Tgkill(p.PID, tid, sig); err != nil && err != unix.ESRCH {
		return fmt.Errorf("signal %v to thread %d of %d: %w", sig, tid, p.PID, err)
	}
	return nil
}

// Step is one stage of a stop: send Signal, then wait up to Wait for the
// process to exit before the next step.
type Step struct {
	Signal syscall.Signal
	Wait   time.Duration
}

// Stop escalates through steps and finally SIGKILL, without blocking the
// caller. Only the first Stop takes effect. A step with Signal 0 sends
// nothing (for example, a grace period after a QUIT message).
func (p *Process) Stop(steps ...Step) {
	p.stopOnce.Do(func() { p.step(steps) })
}

func (p *Process) step(steps []Step) {
	if !p.Alive() {
		return
	}
	if len(steps) == 0 {
		_ = p.Signal(syscall.SIGKILL)
		return
	}
	s := steps[0]
	if s.Signal != 0 {
		_ = p.Signal(s.Signal)
	}
	if s.Signal == syscall.SIGKILL {
		return
	}
	rest := steps[1:]
	p.stopMu.Lock()
	p.timer = time.AfterFunc(s.Wait, func() { p.step(rest) })
	p.stopMu.Unlock()
}

// Kill sends SIGKILL to the group now, whether or not a Stop is under way.
func (p *Process) Kill() {
	_ = p.Signal(syscall.SIGKILL)
}

// Release cancels pending Stop timers; call it after Exited is closed. A
// timer that has fired already finds the process dead and does nothing.
func (p *Process) Release() {
	p.stopMu.Lock()
	if p.timer != nil {
		p.timer.Stop()
	}
	p.stopMu.Unlock()
}

// Exit describes how a process ended.
type Exit struct {
	Code   int            // exit status, or -1 if killed by a signal
	Signal syscall.Signal // the signal that killed it, or 0
	Core   bool           // a core dump was written
}

func (e Exit) String() string {
	if e.Signal != 0 {
		s := "killed by signal " + e.Signal.String()
		if e.Core {
			s += " (core dumped)"
		}
		return s
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// ExitOf decodes a process state.
func ExitOf(st *os.ProcessState) Exit {
	if st == nil {
		return Exit{Code: -1}
	}
	ws, ok := st.Sys().(syscall.WaitStatus)
	if !ok {
		return Exit{Code: st.ExitCode()}
	}
	if ws.Signaled() {
		return Exit{Code: -1, Signal: ws.Signal(), Core: ws.CoreDump()}
	}
	return Exit{Code: ws.ExitStatus()}
}

// Exiting reports whether the process is exiting or has exited, as opposed to
// running. The kernel sets PF_EXITING before it closes the process's files, so
// a peer that sees end of stream on a socket because the process is dying
// always finds Exiting true; a process that merely closed the socket is not.
func (p *Process) Exiting() bool {
	if !p.Alive() {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/stat")
	if err != nil {
		return true // not reaped yet, so only a vanished /proc makes this fail
	}
	// Fields after the command: state ppid pgrp session tty_nr tpgid flags.
	f := statFields(string(b))
	if len(f) < 7 {
		return false
	}
	if f[0] == "Z" || f[0] == "X" {
		return true
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return err == nil && flags&pfExiting != 0
}

const pfExiting = 0x4 // PF_EXITING in include/linux/sched.h
