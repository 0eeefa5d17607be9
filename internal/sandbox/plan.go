package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"
)

// Settings are bulkhead.Sandbox, field for field, so that one converts to
// the other; bulkhead documents each field.
type Settings struct {
	User          string
	SHA256        string
	Cgroup        bool
	MemoryMax     int64
	PidsMax       int
	CPUMax        float64
	Seccomp       string
	SeccompAllow  []string
	SeccompDeny   []string
	SeccompLog    bool
	ReadOnly      []string
	Writable      []string
	IsolateNet    bool
	IsolateIPC    bool
	PrivateTmp    bool
	UserNamespace bool
	IsolatePID    bool
}

func (s *Settings) namespaces() Namespaces {
	return Namespaces{Network: s.IsolateNet, IPC: s.IsolateIPC, PrivateTmp: s.PrivateTmp, User: s.UserNamespace, PID: s.IsolatePID}
}

func (s *Settings) seccomp() Seccomp {
	return Seccomp{Profile: s.Seccomp, Allow: s.SeccompAllow, Deny: s.SeccompDeny, Log: s.SeccompLog}
}

// cgrouped reports whether workers get a cgroup of their own.
func (s *Settings) cgrouped() bool {
	return s.Cgroup || s.MemoryMax != 0 || s.PidsMax != 0 || s.CPUMax != 0
}

// Plan is validated Settings, shared by every start of a pool's workers or
// of an activator's servers.
type Plan struct {
	s   Settings
	pin *Pin // nil: not pinned

	sweep   sync.Once // stale cgroups are swept once
	abiOnce sync.Once // the Landlock ABI is found, and logged, once
	abi     int
	abiErr  error

	cgMu   sync.Mutex
	spare  []*Cgroup // emptied cgroups of dead workers, for the next starts (cgroup_reuse.go)
	closed bool      // Close ran: no more spares
}

// NewPlan validates s's syntax; whether each protection can be applied is
// known only at a start.
func NewPlan(s Settings) (*Plan, error) {
	var errs []error
	if s.MemoryMax < 0 || (s.MemoryMax > 0 && s.MemoryMax < 4<<20) {
		errs = append(errs, fmt.Errorf("MemoryMax = %d: want 0 (no limit) or at least 4 MiB", s.MemoryMax))
	}
	if s.PidsMax < 0 {
		errs = append(errs, fmt.Errorf("PidsMax = %d: must not be negative", s.PidsMax))
	}
	if s.CPUMax < 0 || math.IsNaN(s.CPUMax) || math.IsInf(s.CPUMax, 0) || (s.CPUMax > 0 && s.CPUMax < 0.01) {
		errs = append(errs, fmt.Errorf("CPUMax = %v: want 0 (no limit) or at least 0.01", s.CPUMax))
	}
	sc := s.seccomp()
	if err := sc.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := validatePaths("ReadOnly", s.ReadOnly); err != nil {
		errs = append(errs, err)
	}
	if err := validatePaths("Writable", s.Writable); err != nil {
		errs = append(errs, err)
	}
	if err := s.privateTmpLandlock(); err != nil {
		errs = append(errs, err)
	}
	p := &Plan{s: s}
	if s.SHA256 != "" {
		var err error
		if p.pin, err = NewPin(s.SHA256); err != nil {
			errs = append(errs, err)
		}
	}
	if s.User != "" {
		if _, _, err := Lookup(s.User); err != nil {
			errs = append(errs, err)
		}
	}
	return p, errors.Join(errs...)
}

// privateTmpLandlock refuses a Landlock path at or under /tmp with
// PrivateTmp: its rule would be on the dispatcher's /tmp, which the
// trampoline's tmpfs hides, and Landlock ignores a hidden mount point, so
// the worker would find its /tmp denied.
func (s *Settings) privateTmpLandlock() error {
	if !s.PrivateTmp {
		return nil
	}
	for _, k := range []struct {
		field, key string
		paths      []string
	}{{"ReadOnly", "read_only", s.ReadOnly}, {"Writable", "writable", s.Writable}} {
		for _, p := range k.paths {
			if c := filepath.Clean(p); c == "/tmp" || strings.HasPrefix(c, "/tmp/") {
				return fmt.Errorf("PrivateTmp (private_tmp) with %s (%s) path %q: Landlock would grant it on the dispatcher's /tmp, "+
					"which the private /tmp hides, and the worker would find its /tmp denied; a private /tmp starts empty: "+
					"leave /tmp out of %s, or drop private_tmp", k.field, k.key, p, k.key)
			}
		}
	}
	return nil
}

// Start is one start's protections: what it opened and created, released
// in two steps (Launched, Reaped).
type Start struct {
	plan  *Plan
	cg    *Cgroup
	cgFD  int         // the cgroup's directory, for CLONE_INTO_CGROUP (v2); -1 if none
	exe   *os.File    // the worker binary, opened
	self  *os.File    // the dispatcher's binary, for the trampoline
	child *os.File    // the trampoline's end of its socket
	sv    *supervisor // the seccomp filter's, if any
	pid   *pidNS      // its PID namespace, if any
	nsOn  bool        // namespaces were asked for
}

// Usage is what a worker's protections recorded about it, once it is dead.
type Usage struct {
	PeakMemory int64  // its cgroup's peak memory, bytes
	OOMKills   uint64 // processes the kernel's OOM killer killed in its cgroup
	// PidsMaxHits counts the forks and thread starts its cgroup refused
	// at pids.max.
	PidsMaxHits uint64
	Violation   *Violation // the system call outside its seccomp profile that killed it
}

// Prepare sets spec's environment (Environ, with env) and protections for
// one start of the binary at path; log gets seccomp's log mode. A failure
// is an *Error.
func (p *Plan) Prepare(path string, env []string, spec *dispatch.Spec, log *slog.Logger) (*Start, error) {
	spec.Env = Environ(os.Environ(), env)
	st := &Start{plan: p, cgFD: -1}
	attr := &syscall.SysProcAttr{}
	ns := p.s.namespaces()
	sc := p.s.seccomp()
	lock := Landlock{ReadOnly: p.s.ReadOnly, Writable: p.s.Writable, Exe: path}
	tramp := sc.on() || lock.on() || ns.PrivateTmp
	switchTo, err := p.credentials(attr, &ns, tramp)
	if err != nil {
		return nil, err
	}
	spec.Attr = attr
	st.nsOn = ns.any()
	switch {
	case p.pin != nil:
		st.exe, err = p.pin.Open(path)
	case p.s.User != "" || sc.on() || lock.on() || ns.any():
		// Executed by the dispatcher's open file, so that the user needs
		// no access to the directories on its path, only the file's x bit.
		if st.exe, err = OpenExec(path); err != nil {
			err = fail("worker binary", err, "open %s", path)
		}
	}
	if err != nil {
		return nil, err
	}
	spec.Exec = st.exe
	if lock.on() {
		if err := p.landlockABI(log); err != nil {
			st.release()
			return nil, err
		}
		lock.Interp = interpreter(st.exe)
	}
	if sc.Profile == ProfileCompute {
		// The Go SDK's lockdown: no file opened once started.
		spec.Env = append(spec.Env, "BULKHEAD_SANDBOX_PROFILE="+ProfileCompute)
	}
	if tramp {
		if err := st.trampoline(spec, &sc, &lock, ns.PrivateTmp, switchTo, log); err != nil {
			st.release()
			return nil, err
		}
	}
	if p.s.cgrouped() {
		st.cg, err = p.takeCgroup(CgroupLimits{MemoryMax: p.s.MemoryMax, PidsMax: int64(p.s.PidsMax), CPUMax: p.s.CPUMax})
		if err == nil {
			st.cgFD, err = st.cg.cloneFD()
		}
		if err != nil {
			st.release()
			return nil, err
		}
		if st.cgFD >= 0 {
			attr.UseCgroupFD, attr.CgroupFD = true, st.cgFD
		}
		spec.KillAll = st.cg.Kill
		p.sweep.Do(st.cg.SweepStale)
	}
	if ns.PID {
		if st.pid, err = newPidNS(); err != nil {
			st.release()
			return nil, err
		}
		spec.PidNS = st.pid.ns
		spec.KillAll = st.killAll
	}
	spec.Confine = st.confine
	// A worker cloned by a fork server (Config.ForkServer) gets the
	// seccomp filter and Landlock from the trampoline's message, applied
	// by the clone itself (sdk/c/bulkhead.h, bh__child), and its cgroup
	// from confine. A user, a binary pin and namespaces are the exec's and
	// the clone flags': such a start execs.
	spec.Forkable = p.s.User == "" && p.pin == nil && !ns.any()
	spec.ForkFile = st.child
	return st, nil
}

// credentials sets attr's user namespace, if ns needs one, and the user
// the worker is cloned as. With a trampoline (tramp) and no user
// namespace, the trampoline switches to the user itself, after its mounts,
// which need the dispatcher's privilege: the user it must switch to is
// returned instead (nil: none).
func (p *Plan) credentials(attr *syscall.SysProcAttr, ns *Namespaces, tramp bool) (*syscall.Credential, error) {
	var user *syscall.Credential
	if p.s.User != "" {
		var err error
		if user, err = Credential(p.s.User); err != nil {
			return nil, err
		}
	}
	userNS, err := ns.attr(attr, user)
	switch {
	case err != nil:
		return nil, err
	case user == nil || userNS:
		// In a user namespace, the worker is root inside and the user
		// outside, by the mapping.
		return nil, nil
	case tramp:
		return user, nil
	}
	attr.Credential = user
	return nil, nil
}

// trampoline has spec start the dispatcher's own binary as the trampoline
// (trampoline.go), with its settings prepared: sc's filter compiled, lock's
// ruleset built, and the user to switch to (nil: none).
func (st *Start) trampoline(spec *dispatch.Spec, sc *Seccomp, lock *Landlock, privTmp bool, user *syscall.Credential, log *slog.Logger) error {
	m := trampolineMsg{argv: append([]string{spec.Command}, spec.Args...)}
	if user != nil {
		m.flags |= flagUser
		m.uid, m.gid = user.Uid, user.Gid
	}
	var err error
	if sc.on() {
		m.flags |= flagSeccomp
		if m.filter, m.patches, err = compileFilter(sc); err != nil {
			return fail("seccomp", err, "building the filter")
		}
	}
	if privTmp {
		m.flags |= flagPrivateTmp
	}
	rights := []int{int(st.exe.Fd())}
	if lock.on() {
		m.flags |= flagLandlock
		fd, err := lock.ruleset()
		if err != nil {
			return fail("landlock", err, "building the worker's ruleset")
		}
		defer unix.Close(fd) // the message holds its own reference
		rights = append(rights, fd)
	}
	msg, err := m.encode()
	if err != nil {
		return fail("sandbox", err, "the trampoline's settings")
	}
	if st.self, err = OpenExec("/proc/self/exe"); err != nil {
		return fail("sandbox", err, "opening the dispatcher's own binary for the trampoline")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail("sandbox", err, "socketpair")
	}
	st.child = os.NewFile(uintptr(fds[1]), "bulkhead-trampoline")
	// The worker binary goes to the trampoline through the socket, queued
	// there now: passed as an inherited descriptor, it made the kernel
	// refuse to execute the trampoline (EACCES, same inode).
	if err := unix.Sendmsg(fds[0], msg, unix.UnixRights(rights...), nil, 0); err != nil {
		unix.Close(fds[0])
		return fail("sandbox", err, "handing the settings to the trampoline")
	}
	if st.sv, err = newSupervisor(os.NewFile(uintptr(fds[0]), "bulkhead-trampoline"), spec.StartTimeout, sc, log); err != nil {
		return err
	}
	spec.Env = append(spec.Env, TrampolineEnv+"=1")
	spec.Exec = st.self
	spec.ExtraFiles = []*os.File{st.child}
	return nil
}

// landlockABI finds the kernel's Landlock ABI, and logs it, once per plan:
// rules of later ABIs than the kernel's are not enforced (best effort); a
// kernel without Landlock fails every start that asks for it.
func (p *Plan) landlockABI(log *slog.Logger) error {
	p.abiOnce.Do(func() {
		p.abi, p.abiErr = LandlockABI()
		switch {
		case p.abiErr != nil:
		case p.abi < 7:
			log.Warn("sandbox: Landlock ABI of the kernel is older than 7: the rights it lacks are not enforced", "abi", p.abi)
		default:
			log.Info("sandbox: Landlock ABI of the kernel", "abi", p.abi, "used", 7)
		}
	})
	if p.abiErr != nil {
		return fail("landlock", p.abiErr, "the kernel has no Landlock (landlock_create_ruleset)")
	}
	return nil
}

// confine runs once the worker's process has started: the trampoline's
// descriptors are its own now, and it goes into its cgroup (an exec'd v2
// worker was cloned into it: the move is a no-op; a worker cloned by a
// fork server was not). Then it waits for the trampoline's answer, or the
// clone's, so that no worker whose filter or Landlock domain is not in
// place says HELLO: a fork server whose C SDK predates the message, which
// would not apply it, fails the start.
func (st *Start) confine(pid int) error {
	st.closeFiles()
	if st.cg != nil {
		if err := st.cg.Add(pid); err != nil {
			return err
		}
	}
	if st.sv != nil {
		if why := st.sv.wait(); why != nil {
			return why
		}
	}
	return nil
}

func (st *Start) closeFiles() {
	for _, f := range []**os.File{&st.exe, &st.self, &st.child} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
	if st.cgFD >= 0 {
		unix.Close(st.cgFD)
		st.cgFD = -1
	}
}

// killAll kills every process the worker started: its PID namespace's,
// its cgroup's.
func (st *Start) killAll() {
	if st.pid != nil {
		st.pid.kill()
	}
	if st.cg != nil {
		st.cg.Kill()
	}
}

// release undoes a start that never ran.
func (st *Start) release() {
	st.closeFiles()
	if st.pid != nil {
		st.pid.end()
		st.pid = nil
	}
	if st.sv != nil {
		st.sv.stop()
	}
	if st.cg != nil {
		_ = st.plan.putCgroup(st.cg)
	}
}

// Launched releases what only the start needed, once dispatch.Launch has
// returned with err; started says whether a process ran (dispatch's reaped
// hook then runs, and must call Reaped). A start that failed because the
// trampoline could not install the filter says so.
func (st *Start) Launched(started bool, err error) error {
	st.closeFiles()
	if !started {
		st.release()
		return err
	}
	var f *dispatch.StartFailure
	if !errors.As(err, &f) {
		return err
	}
	if st.nsOn && f.PID == 0 && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EUSERS)) {
		why := cloneError(f.Err)
		g := *f
		g.Reason, g.Err = why.Error(), why
		return &g
	}
	if st.sv == nil {
		return err
	}
	why := st.sv.wait()
	if v := st.sv.current(); why == nil && v != nil {
		why = fail("seccomp", nil, "the worker made the system call %s (%d), outside its profile, before HELLO; killed", v.Name, v.Nr)
	}
	if why == nil {
		return err
	}
	g := *f
	g.Reason, g.Err = why.Error(), why
	return &g
}

// Reaped reads what the worker's protections recorded and releases them,
// once the worker has been reaped.
func (st *Start) Reaped() (Usage, error) {
	var u Usage
	if st.sv != nil {
		u.Violation = st.sv.stop()
	}
	if st.pid != nil {
		st.pid.end()
		st.pid = nil
	}
	if st.cg == nil {
		return u, nil
	}
	cu := st.cg.Usage()
	u.PeakMemory, u.OOMKills, u.PidsMaxHits = cu.PeakMemory, cu.OOMKills, cu.PidsMaxHits
	return u, st.plan.putCgroup(st.cg)
}
