// Package forkserver starts a worker program once as a fork server and asks
// it for workers: the program initialises once (its library loaded and set
// up), and each worker then costs a clone(2), not an exec(2) and the
// initialisation again. The C SDK serves it (BULKHEAD_FORKSERVER_FD,
// sdk/c/bulkhead.h).
//
// The fork server clones each child with CLONE_PARENT: the child is this
// process's own, so it is watched through a pidfd and reaped here, exactly
// as an exec'd worker is (proc.StartForked), and its crash is reported the
// same way. It gets its own process group, its parent-death signal (on this
// process), its own socket, start marker and output pipe, sent over a
// SOCK_SEQPACKET control socket with SCM_RIGHTS.
package forkserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"golang.org/x/sys/unix"
)

// ErrDead is returned by Fork once the fork server has died or been closed.
var ErrDead = errors.New("forkserver: the fork server is gone")

// Server is a running fork server.
type Server struct {
	proc *proc.Process
	ctl  *os.File // our end of the control socket, non-blocking
	reqs chan request
	quit chan struct{}
	done chan struct{} // closed when the loop has ended
	wait time.Duration // bound on one reply
}

type request struct {
	env   []string
	files []*os.File
	reply chan result
}

type result struct {
	pid int
	err error
}

// Start runs cmd as a fork server through sp and waits up to timeout for it
// to say it is ready. cmd's ExtraFiles must be empty: the control socket is
// descriptor 3.
func Start(sp *proc.Spawner, cmd *exec.Cmd, timeout time.Duration) (*Server, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("forkserver: socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, err
	}
	s := &Server{ctl: os.NewFile(uintptr(fds[0]), "forkserver"), reqs: make(chan request),
		quit: make(chan struct{}), done: make(chan struct{}), wait: timeout}
	child := os.NewFile(uintptr(fds[1]), "forkserver-child")
	cmd.ExtraFiles = []*os.File{child}
	cmd.Env = append(cmd.Env[:len(cmd.Env):len(cmd.Env)], "BULKHEAD_FORKSERVER_FD=3",
		"BULKHEAD_PARENT_PID="+strconv.Itoa(os.Getpid()))
	s.proc, err = proc.Start(sp, cmd, nil)
	child.Close()
	if err != nil {
		s.ctl.Close()
		return nil, fmt.Errorf("forkserver: %w", err)
	}
	var ready [1]byte
	_ = s.ctl.SetReadDeadline(time.Now().Add(timeout))
	if n, err := s.ctl.Read(ready[:]); n != 1 || ready[0] != 'R' {
		s.proc.Kill()
		<-s.proc.Exited()
		s.ctl.Close()
		return nil, fmt.Errorf("forkserver: %s did not become ready: %v (%s)", cmd.Path, err, proc.ExitOf(s.proc.State()))
	}
	go s.loop()
	return s, nil
}

// PID is the fork server's process id.
func (s *Server) PID() int { return s.proc.PID }

// Exited is closed once the fork server has exited and been reaped.
func (s *Server) Exited() <-chan struct{} { return s.proc.Exited() }

// Fork asks for a child whose BULKHEAD_* environment is env and whose
// descriptors are files: the socket, the start marker, the output, and the
// shared memory if any (3, 4, 1 and 2, 5), then, if env sets
// BULKHEAD_FORK_SANDBOX, the sandbox's socket (dispatch.Spec.ForkFile). It
// returns the child's pid; the child is this process's (proc.StartForked
// adopts it).
func (s *Server) Fork(env []string, files []*os.File) (int, error) {
	if len(files) < 3 || len(files) > 5 {
		return 0, fmt.Errorf("forkserver: %d descriptors, want 3 to 5", len(files))
	}
	for _, kv := range env {
		if !strings.HasPrefix(kv, "BULKHEAD_") || strings.IndexByte(kv, 0) >= 0 {
			return 0, fmt.Errorf("forkserver: %q is not a BULKHEAD_ variable", kv)
		}
	}
	r := request{env: env, files: files, reply: make(chan result, 1)}
	select {
	case s.reqs <- r:
	case <-s.done:
		return 0, ErrDead
	}
	res := <-r.reply
	return res.pid, res.err
}

// loop owns the control socket: one request and its reply at a time.
func (s *Server) loop() {
	defer close(s.done)
	defer s.ctl.Close()
	for {
		select {
		case r := <-s.reqs:
			pid, err := s.exchange(r)
			r.reply <- result{pid, err}
			if err != nil {
				s.proc.Kill() // a fork server that failed once is not trusted again
				return
			}
		case <-s.quit:
			return
		case <-s.proc.Exited():
			return
		}
	}
}

// exchange sends one request and reads its reply.
func (s *Server) exchange(r request) (int, error) {
	var env []byte
	for _, kv := range r.env {
		env = append(append(env, kv...), 0)
	}
	fds := make([]int, len(r.files))
	for i, f := range r.files {
		fds[i] = int(f.Fd())
	}
	rc, err := s.ctl.SyscallConn()
	if err != nil {
		return 0, err
	}
	var serr error
	_ = s.ctl.SetWriteDeadline(time.Now().Add(s.wait))
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), env, unix.UnixRights(fds...), nil, unix.MSG_NOSIGNAL)
		return serr != unix.EAGAIN
	})
	runtime.KeepAlive(r.files) // their descriptors went by number: no finalizer may close them first
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("forkserver: sending a request: %w", err)
	}
	var reply [8]byte
	_ = s.ctl.SetReadDeadline(time.Now().Add(s.wait))
	n, err := s.ctl.Read(reply[:])
	if err != nil || n != len(reply) {
		return 0, fmt.Errorf("forkserver: no reply (%d bytes): %w", n, errors.Join(err, ErrDead))
	}
	pid := int64(binary.LittleEndian.Uint64(reply[:]))
	if pid <= 0 {
		return 0, fmt.Errorf("forkserver: clone: %w", syscall.Errno(-pid))
	}
	return int(pid), nil
}

// Close stops the fork server and waits for it; the children it made live on.
func (s *Server) Close() {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	<-s.done
	s.proc.Stop(proc.Step{Wait: time.Second}) // it exits at the end of its control socket
	<-s.proc.Exited()
	s.proc.Release()
}
