package sandbox

import (
	"fmt"
	"slices"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// The seccomp profiles. A profile is a deny list on top of "allow": what a
// compromised worker would use to get out (a new process, a network
// connection, the kernel's rarer interfaces, a file written), not what a
// worker serving calls needs, which depends on its native library. Every
// denied call is sent to the dispatcher (SECCOMP_RET_USER_NOTIF), which
// kills the worker and names the call, or, in log mode, logs it and lets
// it through.
const (
	ProfileCompute = "compute"
	ProfileFiles   = "files"
)

// kernelOnly are denied by every profile: a worker serving calls has no use
// for them, and each is a known way to attack the kernel or its neighbours.
var kernelOnly = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick",
	"swapon", "swapoff", "reboot", "syslog", "acct", "quotactl",
	"bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
	"unshare", "setns", "personality", "iopl", "ioperm",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"open_by_handle_at", "name_to_handle_at", "fanotify_init", "vhangup", "lookup_dcookie",
	"fork", "vfork", "execve",
}

// writes change the file system: denied by "files" and "compute", whose
// workers only read files.
var writes = []string{
	"creat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir",
	"link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2",
	"chown", "fchown", "lchown", "fchownat", "truncate", "mknod", "mknodat", "utime", "utimes", "utimensat", "futimesat",
	"setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
}

// writeFlags are open(2) flags that write: O_WRONLY, O_RDWR, O_CREAT,
// O_TRUNC, O_APPEND.
const writeFlags = unix.O_WRONLY | unix.O_RDWR | unix.O_CREAT | unix.O_TRUNC | unix.O_APPEND

// Seccomp is a worker's seccomp settings (Settings).
type Seccomp struct {
	Profile string   // "", ProfileCompute or ProfileFiles
	Allow   []string // taken out of the profile
	Deny    []string // added to it
	Log     bool     // log instead of kill
}

func (s *Seccomp) on() bool { return s.Profile != "" || len(s.Deny) > 0 }

// validate checks the profile's name and that every name is a system call
// of this architecture.
func (s *Seccomp) validate() error {
	switch s.Profile {
	case "", ProfileCompute, ProfileFiles:
	default:
		return fmt.Errorf("Seccomp = %q: want %q, %q or empty", s.Profile, ProfileCompute, ProfileFiles)
	}
	info, err := arch.GetInfo("")
	if err != nil {
		return fmt.Errorf("Seccomp: %w", err)
	}
	for _, list := range [][]string{s.Allow, s.Deny} {
		for _, n := range list {
			if _, ok := info.SyscallNames[n]; !ok {
				return fmt.Errorf("Seccomp: no system call %q on %s", n, info.Name)
			}
		}
	}
	if len(s.Allow) > 0 && s.Profile == "" {
		return fmt.Errorf("SeccompAllow without a Seccomp profile: nothing to allow from")
	}
	return nil
}

// policy is s's filter. execPath is the address of the one pathname the
// trampoline passes to execveat(2): the only exec the filter lets through,
// since a worker, in a new address space, cannot know it.
func (s *Seccomp) policy(execPath uintptr) (seccomp.Policy, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return seccomp.Policy{}, err
	}
	deny := map[string]bool{}
	var cond []seccomp.NameWithConditions
	if s.Profile != "" {
		for _, n := range kernelOnly {
			deny[n] = true
		}
		for _, n := range writes {
			deny[n] = true
		}
		cond = append(cond,
			// no exec but the trampoline's own, no process (threads only),
			// no socket but a Unix one, no file opened for writing.
			arg("execveat", 1, seccomp.NotEqual, uint64(execPath)),
			arg("clone", 0, seccomp.BitsNotSet, unix.CLONE_THREAD),
			arg("socket", 0, seccomp.NotEqual, unix.AF_UNIX),
			arg("open", 1, seccomp.BitsSet, writeFlags),
			arg("openat", 2, seccomp.BitsSet, writeFlags),
		)
	}
	for _, n := range s.Allow {
		delete(deny, n)
		cond = slices.DeleteFunc(cond, func(c seccomp.NameWithConditions) bool { return c.Name == n })
	}
	for _, n := range s.Deny {
		deny[n] = true
		cond = slices.DeleteFunc(cond, func(c seccomp.NameWithConditions) bool { return c.Name == n })
	}
	var names []string
	for n := range deny {
		if _, ok := info.SyscallNames[n]; ok { // some are absent on some architectures
			names = append(names, n)
		}
	}
	slices.Sort(names)
	groups := []seccomp.SyscallGroup{{Names: names, NamesWithCondtions: cond, Action: seccomp.ActionUserNotify}}
	if s.Profile != "" && !slices.Contains(s.Allow, "clone3") {
		// clone3's flags are behind a pointer, out of a filter's reach:
		// ENOSYS makes the C library fall back to clone, which is checked.
		groups = append(groups, seccomp.SyscallGroup{Names: []string{"clone3"}, Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)})
		// openat2's flags too; the C library falls back to openat.
		groups = append(groups, seccomp.SyscallGroup{Names: []string{"openat2"}, Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)})
	}
	return seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: groups}, nil
}

func arg(name string, i uint32, op seccomp.Operation, v uint64) seccomp.NameWithConditions {
	return seccomp.NameWithConditions{Name: name, Conditions: seccomp.ArgumentConditions{{Argument: i, Operation: op, Value: v}}}
}

// SyscallName is the name of system call nr on this architecture, or "".
func SyscallName(nr int) string {
	info, err := arch.GetInfo("")
	if err != nil {
		return ""
	}
	return info.SyscallNumbers[nr]
}

// SyscallNumber is the number of system call name on this architecture, or
// -1.
func SyscallNumber(name string) int {
	info, err := arch.GetInfo("")
	if err != nil {
		return -1
	}
	if nr, ok := info.SyscallNames[name]; ok {
		return nr
	}
	return -1
}
