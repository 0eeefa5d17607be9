package bulkhead

import (
	"log/slog"
	"syscall"

	"github.com/bulkhead-go/bulkhead/internal/sandbox"
)

// Sandbox is what a worker is kept from doing, so that native code
// compromised by its input gains little (docs/SANDBOX.md). Every field's
// zero value leaves that protection off. A protection that is asked for
// and cannot be applied stops the worker from starting: New (or the call
// that needed the worker) returns a *StartError whose Protection names it.
// Nothing is silently skipped.
//
// Whatever the Sandbox, a worker's environment is PATH, the dispatcher's
// BULKHEAD_* variables and Config.Env (Config.Env).
type Sandbox struct {
	// User runs the worker as this user: a user name, or "uid", or either
	// followed by ":group" (a group name or gid); without a group, the
	// user's own group. Supplementary groups are dropped. Only a
	// dispatcher running as root may do this. With a trampoline (see
	// Seccomp) the trampoline switches, after mounting PrivateTmp's /tmp.
	// Zero value: the worker runs as the dispatcher's user.
	User string

	// SHA256 pins the worker binary: the SHA-256 of the file Command names,
	// in hex. At every start the file is opened and checked, and the
	// opened file itself is executed, so that a file swapped in at the
	// path between the check and the start is never run. A file that does
	// not match does not start (Protection "binary pin").
	// Zero value: not pinned.
	SHA256 string

	// Cgroup puts each worker in a cgroup of its own, nested under the
	// dispatcher's, even with no limit below: every process the worker
	// starts is in it whatever session it moves to, and all of them are
	// killed when the worker dies, so that none outlives it or holds its
	// stderr and delays its *CrashError. cgroup v2 is used where the
	// unified hierarchy has the controllers, else the v1 controllers
	// memory, pids (and cpu, for CPUMax). Creating cgroups needs root, or a
	// delegated cgroup (Protection "cgroup").
	// Zero value: no cgroup of its own unless a limit below is set.
	Cgroup bool

	// MemoryMax is the most memory the worker's cgroup may use, in bytes
	// (memory.max): past it the kernel's OOM killer kills the worker, and
	// its call fails with a *CrashError whose Limit is LimitMemory and
	// PeakMemory the cgroup's peak. Unlike Config.MaxMemory, which the
	// pool checks now and then, it holds at every allocation and counts
	// the worker's children too. Implies Cgroup.
	// Zero value: no limit.
	MemoryMax int64

	// PidsMax bounds the processes and threads in the worker's cgroup
	// (pids.max), so that a fork bomb stops there. A Go worker needs a
	// dozen threads or more. Implies Cgroup.
	// Zero value: no limit.
	PidsMax int

	// CPUMax bounds the CPU time of the worker's cgroup, in CPUs: 0.5 is
	// half of one CPU (cpu.max). Implies Cgroup.
	// Zero value: no limit.
	CPUMax float64

	// Seccomp is a seccomp-bpf profile (docs/SANDBOX.md): "files" denies
	// new processes (threads are fine), exec, sockets other than Unix
	// ones, files opened for writing or changed by name, and the kernel's
	// rarer interfaces (ptrace, mount, bpf, keyctl, ...); "compute" denies
	// the same. A denied system call kills the worker: its call fails with
	// a *CrashError whose Limit is LimitSandbox and Syscall names it. The
	// filter is installed, with no_new_privs, by a trampoline: the
	// dispatcher's own binary, started first, which then executes the
	// worker binary (so package bulkhead's init checks one variable at
	// every program start).
	// Zero value: no filter, unless SeccompDeny is set.
	Seccomp string

	// SeccompAllow takes system calls out of the profile, by name
	// ("socket" lets every socket through, for instance).
	// Zero value: the profile as it is.
	SeccompAllow []string

	// SeccompDeny adds system calls to the profile, by name; without a
	// profile, it is the whole filter.
	// Zero value: the profile as it is.
	SeccompDeny []string

	// SeccompLog lets every denied system call through and logs it
	// instead, once per worker and call, at Warn ("sandbox: system call
	// outside the seccomp profile"): run a workload with it, then turn the
	// log into a profile with `bulkhead sandbox suggest`.
	// Zero value: a denied call kills the worker.
	SeccompLog bool

	// ReadOnly are the absolute paths (directories, or files) beneath
	// which the worker may read and execute files; with Writable, they
	// turn Landlock on, and the worker may then touch nothing else on the
	// file system: not /etc/shadow, not the service's files. Its own
	// binary is added, and, if it is dynamically linked, its ELF
	// interpreter and the system's library directories (/lib, /lib64,
	// /usr/lib, /usr/lib64, /usr/local/lib, /etc/ld.so.cache). A Go
	// worker built with -race reads /proc too. Landlock is applied by the
	// trampoline (see Seccomp), on the best ABI the kernel has, up to 7:
	// the ABI is logged once per pool; a kernel without Landlock fails
	// every start (Protection "landlock").
	// Zero value: no Landlock, unless Writable is set.
	ReadOnly []string

	// Writable are the absolute paths beneath which the worker may also
	// create, write, rename and remove files (Landlock, as ReadOnly).
	// Zero value: none.
	Writable []string

	// IsolateNet gives the worker a network namespace of its own, with no
	// interface but a loopback that is down: no network at all, not even
	// the service's localhost.
	// Zero value: the dispatcher's network.
	IsolateNet bool

	// IsolateIPC gives the worker an IPC namespace of its own: no System V
	// IPC objects or POSIX message queues of the service's.
	// Zero value: the dispatcher's.
	IsolateIPC bool

	// PrivateTmp gives the worker a mount namespace of its own with an
	// empty tmpfs (64 MiB) on /tmp, mounted by the trampoline (see
	// Seccomp): files other workers and the service keep in /tmp are out
	// of its sight. A ReadOnly or Writable path at or under /tmp is then
	// refused (Landlock would grant it on the hidden /tmp).
	// Zero value: the dispatcher's mounts and /tmp.
	PrivateTmp bool

	// UserNamespace runs the worker in a user namespace of its own, as
	// root inside and as nobody outside (as User, if set), even when the
	// dispatcher is root. A dispatcher that is not root gets one anyway
	// when it asks for IsolateNet, IsolateIPC or PrivateTmp, which need
	// CAP_SYS_ADMIN otherwise: the worker is then root inside its
	// namespaces and the dispatcher's user outside (use a seccomp profile
	// too, which denies mount and unshare). Where the kernel refuses user
	// namespaces the start fails (Protection "namespaces", naming the
	// setting).
	// Zero value: no user namespace, unless the dispatcher is not root and
	// asks for another namespace.
	UserNamespace bool

	// IsolatePID gives the worker a PID namespace of its own, whose PID 1
	// is a small init of bulkhead's (the worker is PID 2 there, and still
	// the dispatcher's child, so that its crash reports do not change):
	// it sees no other process of the machine's by pid, cannot signal
	// them, and every process it starts, in whatever session, dies with
	// its namespace when it dies. Needs a dispatcher running as root
	// (Protection "namespaces" otherwise). BULKHEAD_PARENT_PID is not set
	// for it: its parent is outside its namespace.
	// Zero value: the dispatcher's PID namespace.
	IsolatePID bool
}

// init runs the seccomp trampoline, if this process was started as one
// (Sandbox.Seccomp): it then never returns.
func init() { sandbox.Trampoline() }

// plan validates b's syntax; whether each protection can be applied is
// known only at a start.
func (b *Sandbox) plan() (*sandbox.Plan, error) { return sandbox.NewPlan(sandbox.Settings(*b)) }

// any reports whether any protection is asked for.
func (b *Sandbox) any() bool {
	return b.User != "" || b.SHA256 != "" || b.Cgroup || b.MemoryMax != 0 || b.PidsMax != 0 || b.CPUMax != 0 ||
		b.Seccomp != "" || len(b.SeccompAllow) > 0 || len(b.SeccompDeny) > 0 || b.SeccompLog ||
		len(b.ReadOnly) > 0 || len(b.Writable) > 0 || b.IsolateNet || b.IsolateIPC || b.PrivateTmp || b.UserNamespace ||
		b.IsolatePID
}

// reaped reads and removes w's cgroup, once w has been reaped: what it
// recorded says whether the kernel's OOM killer killed it.
func (w *workerProc) reaped(st *sandbox.Start, log *slog.Logger) {
	var err error
	if w.usage, err = st.Reaped(); err != nil {
		log.Warn("worker cgroup left behind", "pid", w.PID, "err", err)
	}
}

// SandboxLimit is the Limit of a process that its sandbox killed, as u (its
// usage, read once it was reaped) tells: LimitSandbox for a system call
// outside its seccomp profile or a death at pids.max, LimitMemory for the
// kernel's OOM killer at memory.max; LimitNone if the sandbox did not.
// Package activation maps its class servers' the same way.
func sandboxLimit(u *sandbox.Usage, sig syscall.Signal) Limit {
	switch c, _ := u.Verdict(sig, 0); c {
	case sandbox.CauseSeccomp, sandbox.CausePids:
		return LimitSandbox
	case sandbox.CauseOOM:
		return LimitMemory
	}
	return LimitNone
}

// sandboxVerdict sets e's Limit, Reason and what goes with them if its
// worker's sandbox killed it (u), and reports whether it did.
func sandboxVerdict(e *CrashError, u *sandbox.Usage, memoryMax int64) bool {
	c, why := u.Verdict(e.Signal, memoryMax)
	if c == sandbox.CauseNone {
		return false
	}
	e.Limit, e.Reason = sandboxLimit(u, e.Signal), why
	switch c {
	case sandbox.CauseSeccomp:
		e.Killed, e.Syscall, e.SyscallNumber = true, u.Violation.Name, u.Violation.Nr
	case sandbox.CauseOOM:
		e.PeakMemory = u.PeakMemory
	}
	return true
}
