package sandbox

import (
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Namespaces are the namespaces a worker gets of its own.
type Namespaces struct {
	Network    bool // no network: a loopback interface, down
	IPC        bool // no System V IPC or POSIX message queues of the service's
	PrivateTmp bool // a mount namespace with an empty tmpfs on /tmp
	User       bool // a user namespace, even for a root dispatcher
	PID        bool // a PID namespace, whose PID 1 is a holder of ours (pidns.go)
}

func (n *Namespaces) any() bool { return n.Network || n.IPC || n.PrivateTmp || n.User || n.PID }

// nobody is the uid and gid a root dispatcher maps a worker's root to.
const nobody = 65534

// attr sets n's clone flags on a, with a user namespace when the
// dispatcher is not root (the unprivileged fallback: the worker is root in
// its namespaces, the dispatcher's user outside) or when n.User asks for
// one (the worker is root inside, outside as user's uid and gid, or nobody
// if user is nil); it reports whether it made one. A setting that cannot
// be had is an *Error naming the missing privilege.
func (n *Namespaces) attr(a *syscall.SysProcAttr, user *syscall.Credential) (userNS bool, err error) {
	if n.Network {
		a.Cloneflags |= unix.CLONE_NEWNET
	}
	if n.IPC {
		a.Cloneflags |= unix.CLONE_NEWIPC
	}
	if n.PrivateTmp {
		a.Cloneflags |= unix.CLONE_NEWNS
	}
	euid, egid := os.Geteuid(), os.Getegid()
	if euid == 0 && !n.User {
		return false, nil // CAP_SYS_ADMIN: no user namespace needed
	}
	if !n.any() {
		return false, nil
	}
	if err := userNamespacesAllowed(); err != nil {
		return false, err
	}
	outUID, outGID := euid, egid
	if euid == 0 {
		outUID, outGID = nobody, nobody
		if user != nil {
			outUID, outGID = int(user.Uid), int(user.Gid)
		}
	}
	// Root inside (setuid(0) once the maps are written: a root dispatcher's
	// child is otherwise the unmapped overflow uid there); who it is
	// outside is the mapping's.
	a.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true}
	a.Cloneflags |= unix.CLONE_NEWUSER
	a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: outUID, Size: 1}}
	a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: outGID, Size: 1}}
	a.GidMappingsEnableSetgroups = false
	return true, nil
}

// userNamespacesAllowed reports, as an *Error naming the setting, why this
// kernel refuses a user namespace to this dispatcher, if it does.
func userNamespacesAllowed() error {
	read := func(f string) (int, bool) {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, false
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return n, err == nil
	}
	if n, ok := read("/proc/sys/user/max_user_namespaces"); ok && n == 0 {
		return fail("namespaces", nil, "a worker's namespaces need CAP_SYS_ADMIN, or a user namespace, "+
			"and user namespaces are off (user.max_user_namespaces = 0)")
	}
	if n, ok := read("/proc/sys/kernel/unprivileged_userns_clone"); ok && n == 0 && os.Geteuid() != 0 {
		return fail("namespaces", nil, "a worker's namespaces need CAP_SYS_ADMIN, or a user namespace, "+
			"and unprivileged user namespaces are off (kernel.unprivileged_userns_clone = 0)")
	}
	return nil
}

// privateTmp, in the trampoline (in its new mount namespace, before any
// other protection), stops mounts from propagating back to the service's
// namespace and mounts an empty tmpfs on /tmp.
func privateTmp() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return mountError("making the worker's mounts private", err)
	}
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=64m"); err != nil {
		return mountError("mounting a private /tmp", err)
	}
	return nil
}

// mountError names, as trampoline.c's bh_fail_mount does, what the kernel
// looked at when it refused a PrivateTmp mount: the trampoline's uid and
// whether it had CAP_SYS_ADMIN (over its mount namespace, made with it at
// the clone).
func mountError(what string, err error) *Error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	cause := "without CAP_SYS_ADMIN over its mount namespace"
	if unix.Capget(&hdr, &data[0]) == nil && data[0].Effective&(1<<unix.CAP_SYS_ADMIN) != 0 {
		cause = "with CAP_SYS_ADMIN: a security module or the host's mount policy refused it"
	}
	return fail("namespaces", nil, "private_tmp (PrivateTmp): %s: %v (the trampoline runs as uid %d %s)", what, err, os.Geteuid(), cause)
}

// cloneError names what a start refused for its namespaces lacked.
func cloneError(err error) *Error {
	return fail("namespaces", err, "creating the worker's namespaces (CAP_SYS_ADMIN, or a user namespace, is needed)")
}
