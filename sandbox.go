package bulkhead

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"
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
	// dispatcher running as root may do this.
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
}

// cgrouped reports whether workers get a cgroup of their own.
func (b *Sandbox) cgrouped() bool {
	return b.Cgroup || b.MemoryMax != 0 || b.PidsMax != 0 || b.CPUMax != 0
}

// validate checks the fields' syntax; whether they can be applied is known
// only at a start.
func (b *Sandbox) validate() error {
	var errs []error
	if b.MemoryMax < 0 || (b.MemoryMax > 0 && b.MemoryMax < 4<<20) {
		errs = append(errs, fmt.Errorf("MemoryMax = %d: want 0 (no limit) or at least 4 MiB", b.MemoryMax))
	}
	if b.PidsMax < 0 {
		errs = append(errs, fmt.Errorf("PidsMax = %d: must not be negative", b.PidsMax))
	}
	if b.CPUMax < 0 || math.IsNaN(b.CPUMax) || math.IsInf(b.CPUMax, 0) || (b.CPUMax > 0 && b.CPUMax < 0.01) {
		errs = append(errs, fmt.Errorf("CPUMax = %v: want 0 (no limit) or at least 0.01", b.CPUMax))
	}
	if b.SHA256 != "" {
		if _, err := sandbox.NewPin(b.SHA256); err != nil {
			errs = append(errs, err)
		}
	}
	if b.User != "" {
		if _, _, err := sandbox.Lookup(b.User); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sandboxing is a validated Sandbox, shared by every start of a pool's
// workers or an activator's servers.
type sandboxing struct {
	pin *sandbox.Pin // nil: not pinned
}

func newSandboxing(b *Sandbox) sandboxing {
	var s sandboxing
	if b.SHA256 != "" {
		s.pin, _ = sandbox.NewPin(b.SHA256) // validated
	}
	return s
}

// applySandbox sets up spec's protections for one start of w. The returned
// release runs once the start has ended, either way; a failure is a
// *StartError. A cgroup is w's until its reaping (reaped).
func (s *settings) applySandbox(spec *dispatch.Spec, w *workerProc) (release func(), err error) {
	spec.Env = sandbox.Environ(os.Environ(), s.Env)
	release = func() {}
	if s.Sandbox.cgrouped() {
		b := &s.Sandbox
		cg, err := sandbox.NewCgroup(sandbox.CgroupLimits{MemoryMax: b.MemoryMax, PidsMax: int64(b.PidsMax), CPUMax: b.CPUMax})
		if err != nil {
			return release, protectionError(err)
		}
		w.cgroup = cg
		spec.Confine, spec.KillAll = cg.Add, cg.Kill
		release = func() {
			if w.Proc == nil { // it never started: nobody else deletes the cgroup
				w.reaped(s.Logger)
			}
		}
	}
	if s.Sandbox.User != "" {
		if spec.Credential, err = sandbox.Credential(s.Sandbox.User); err != nil {
			return release, protectionError(err)
		}
	}
	var f *os.File
	switch {
	case s.sandboxing.pin != nil:
		f, err = s.sandboxing.pin.Open(s.path)
	case s.Sandbox.User != "":
		// Executed by the dispatcher's open file, so that the user needs
		// no access to the directories on its path, only the file's x bit.
		f, err = sandbox.OpenExec(s.path)
	}
	if err != nil {
		return release, protectionError(err)
	}
	if f != nil {
		spec.Exec = f
		cgRelease := release
		release = func() { f.Close(); cgRelease() }
	}
	return release, nil
}

// reaped reads and removes w's cgroup, once w has been reaped: what it
// recorded says whether the kernel's OOM killer killed it.
func (w *workerProc) reaped(log *slog.Logger) {
	if w.cgroup == nil {
		return
	}
	w.usage = w.cgroup.Usage()
	if err := w.cgroup.Delete(); err != nil {
		log.Warn("worker cgroup left behind", "pid", w.PID, "err", err)
	}
}

// protectionError is a protection that could not be applied, as the
// *StartError that stops the worker from starting.
func protectionError(err error) *StartError {
	var e *sandbox.Error
	if !errors.As(err, &e) {
		return &StartError{ExitCode: -1, Reason: err.Error(), Err: err}
	}
	return &StartError{ExitCode: -1, Protection: e.Protection, Reason: "sandbox: " + e.Protection + ": " + e.Reason, Err: err}
}
