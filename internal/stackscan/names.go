package stackscan

import "golang.org/x/sys/unix"

// syscallName names the syscalls a stuck call is usually blocked in (the
// numbers are this architecture's: the worker runs on it), or "".
func syscallName(nr int64) string {
	switch nr {
	case unix.SYS_READ:
		return "read"
	case unix.SYS_WRITE:
		return "write"
	case unix.SYS_READV:
		return "readv"
	case unix.SYS_WRITEV:
		return "writev"
	case unix.SYS_PREAD64:
		return "pread64"
	case unix.SYS_PWRITE64:
		return "pwrite64"
	case unix.SYS_OPENAT:
		return "openat"
	case unix.SYS_FSYNC:
		return "fsync"
	case unix.SYS_FLOCK:
		return "flock"
	case unix.SYS_FCNTL:
		return "fcntl"
	case unix.SYS_FUTEX:
		return "futex"
	case unix.SYS_NANOSLEEP:
		return "nanosleep"
	case unix.SYS_CLOCK_NANOSLEEP:
		return "clock_nanosleep"
	case unix.SYS_PPOLL:
		return "ppoll"
	case unix.SYS_PSELECT6:
		return "pselect6"
	case unix.SYS_EPOLL_PWAIT:
		return "epoll_pwait"
	case unix.SYS_EPOLL_PWAIT2:
		return "epoll_pwait2"
	case unix.SYS_ACCEPT:
		return "accept"
	case unix.SYS_ACCEPT4:
		return "accept4"
	case unix.SYS_CONNECT:
		return "connect"
	case unix.SYS_RECVFROM:
		return "recvfrom"
	case unix.SYS_RECVMSG:
		return "recvmsg"
	case unix.SYS_SENDTO:
		return "sendto"
	case unix.SYS_SENDMSG:
		return "sendmsg"
	case unix.SYS_WAIT4:
		return "wait4"
	case unix.SYS_WAITID:
		return "waitid"
	case unix.SYS_RT_SIGSUSPEND:
		return "rt_sigsuspend"
	case unix.SYS_RT_SIGTIMEDWAIT:
		return "rt_sigtimedwait"
	case unix.SYS_IO_GETEVENTS:
		return "io_getevents"
	case unix.SYS_SEMTIMEDOP:
		return "semtimedop"
	case unix.SYS_MSGRCV:
		return "msgrcv"
	case unix.SYS_IO_URING_ENTER:
		return "io_uring_enter"
	}
	return archSyscallName(nr)
}

// WaitsForSignals reports whether syscall nr waits for signals (sigwait,
// sigsuspend): a thread blocked in it is there to take one.
func WaitsForSignals(nr int64) bool {
	return nr == unix.SYS_RT_SIGTIMEDWAIT || nr == unix.SYS_RT_SIGSUSPEND
}
