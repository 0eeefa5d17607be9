package stackscan

import "golang.org/x/sys/unix"

// archSyscallName names the blocking syscalls that only amd64 has.
func archSyscallName(nr int64) string {
	switch nr {
	case unix.SYS_POLL:
		return "poll"
	case unix.SYS_SELECT:
		return "select"
	case unix.SYS_EPOLL_WAIT:
		return "epoll_wait"
	case unix.SYS_PAUSE:
		return "pause"
	}
	return ""
}
