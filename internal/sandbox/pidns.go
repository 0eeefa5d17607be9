package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// A worker's PID namespace. The worker must stay the dispatcher's own
// child, whose wait status says how it died (the signal, the core dump,
// its rusage), and must not be PID 1, whose signals without a handler the
// kernel drops (abort(3) and a re-raised fault would not kill it). So the
// namespace's PID 1 is a holder, a small init of ours started first with
// CLONE_NEWPID (the dispatcher's binary, run as PidInitEnv says, by
// trampoline.c's constructor or Go's init); the spawning thread then
// joins the namespace for its children (setns, internal/proc) and the
// worker is born in it as PID 2, a child of the dispatcher. Killing the
// holder kills every process in the namespace: the kernel's, atomic
// against forks, whatever session or process group they moved to.

// PidInitEnv marks the holder: PID 1 of a worker's PID namespace. It reaps
// the orphans that are reparented to it, and exits, and so ends the
// namespace, when its descriptor 3 (a pipe whose other end only the
// dispatcher holds) reports the end: the dispatcher closed it, or died.
const PidInitEnv = "BULKHEAD_SANDBOX_PIDNS_INIT"

// pidNS is one worker's PID namespace, held by its PID 1.
type pidNS struct {
	holder *exec.Cmd
	life   *os.File // the pipe's write end: closing it ends the holder
	ns     *os.File // /proc/PID/ns/pid of the holder
}

// newPidNS starts a holder in a new PID namespace. It needs CAP_SYS_ADMIN
// (for the namespace, and for the spawning thread to join it): a
// dispatcher that is not root fails closed, since the namespace of a
// user namespace of its own could not be joined by a multithreaded
// process.
func newPidNS() (*pidNS, error) {
	if uid := os.Geteuid(); uid != 0 {
		return nil, fail("namespaces", nil, "a PID namespace needs CAP_SYS_ADMIN (to create it and to start the worker in it): the dispatcher runs as uid %d, not root", uid)
	}
	self, err := OpenExec("/proc/self/exe")
	if err != nil {
		return nil, fail("namespaces", err, "opening the dispatcher's own binary for the PID namespace's init")
	}
	defer self.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fail("namespaces", err, "pipe")
	}
	defer r.Close()
	cmd := &exec.Cmd{Path: "/proc/self/fd/" + strconv.Itoa(int(self.Fd())), Args: []string{"bulkhead-pidns-init"},
		Env: []string{PidInitEnv + "=1"}, ExtraFiles: []*os.File{r},
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID, Setpgid: true}}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fail("namespaces", err, "creating the worker's PID namespace (CAP_SYS_ADMIN is needed)")
	}
	p := &pidNS{holder: cmd, life: w}
	// Its namespace exists from the clone on, before its exec.
	if p.ns, err = os.Open(fmt.Sprintf("/proc/%d/ns/pid", cmd.Process.Pid)); err != nil {
		p.end()
		return nil, fail("namespaces", err, "opening the worker's PID namespace")
	}
	return p, nil
}

// kill ends the namespace at once: SIGKILL to its PID 1 kills every
// process in it. The holder is reaped by end.
func (p *pidNS) kill() { _ = p.holder.Process.Kill() }

// end kills the namespace and reaps its holder, once the worker has been
// reaped (the holder's exit waits for every process of its namespace to
// be reaped, the worker too).
func (p *pidNS) end() {
	p.life.Close()
	p.kill()
	_ = p.holder.Wait()
	if p.ns != nil {
		p.ns.Close()
	}
}
