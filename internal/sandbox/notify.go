package sandbox

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The dispatcher's side of seccomp: the trampoline hands it the filter's
// listener, and every system call the profile denies waits, in the
// worker, for its answer here (SECCOMP_RET_USER_NOTIF).

// Violation is a system call a worker made outside its profile.
type Violation struct {
	Nr   int    // its number on this architecture
	Name string // its name, "" if unknown
	PID  int    // the thread that made it
}

// seccompNotif and seccompResp are struct seccomp_notif and struct
// seccomp_notif_resp (linux/seccomp.h).
type seccompNotif struct {
	id    uint64
	pid   uint32
	flags uint32
	nr    int32
	arch  uint32
	ip    uint64
	args  [6]uint64
}

type seccompResp struct {
	id    uint64
	val   int64
	error int32
	flags uint32
}

// supervisor receives one worker's listener and answers its filter's
// notifications, on a goroutine that stop waits for.
type supervisor struct {
	log      *slog.Logger
	logMode  bool
	filtered bool // a filter was asked for: its listener must come
	profile  string
	report   *net.UnixConn // the dispatcher's end of the trampoline's socket
	got      chan struct{} // closed once the trampoline answered, or went away
	done     chan struct{} // closed when the goroutine returns

	mu        sync.Mutex
	listener  *os.File // nil until received
	stopped   bool
	failure   *Error       // why the trampoline failed, if it said so
	violation *Violation   // the first violation, in kill mode
	seen      map[int]bool // system calls logged already, in log mode
}

// newSupervisor waits, up to timeout, for the trampoline's answer on
// report, and then supervises the filter. It takes report.
func newSupervisor(report *os.File, timeout time.Duration, s *Seccomp, log *slog.Logger) (*supervisor, error) {
	c, err := net.FileConn(report)
	report.Close()
	if err != nil {
		return nil, fail("seccomp", err, "the trampoline's socket")
	}
	sv := &supervisor{log: log, logMode: s.Log, filtered: s.on(), profile: s.Profile, report: c.(*net.UnixConn),
		got: make(chan struct{}), done: make(chan struct{}), seen: map[int]bool{}}
	_ = sv.report.SetReadDeadline(time.Now().Add(timeout))
	go sv.run()
	return sv, nil
}

func (sv *supervisor) run() {
	defer close(sv.done)
	l := sv.receive()
	close(sv.got)
	if l == nil {
		return
	}
	rc, err := l.SyscallConn()
	if err != nil {
		return
	}
	for {
		var n seccompNotif
		var gone bool
		err := rc.Read(func(fd uintptr) bool {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if k, err := unix.Poll(p, 0); err != nil || k == 0 {
				return false // not yet: wait in the netpoller
			}
			if p[0].Revents&unix.POLLIN == 0 {
				gone = true // POLLHUP: no process uses the filter any more
				return true
			}
			n = seccompNotif{}
			_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&n)))
			if e == unix.ENOENT || e == unix.EINTR {
				n.id = 0 // the thread died before we read its call
			} else if e != 0 {
				gone = true
			}
			return true
		})
		if err != nil || gone {
			return // closed by stop, or nobody left to supervise
		}
		if n.id != 0 || n.pid != 0 {
			sv.answer(rc, &n)
		}
	}
}

// receive reads the trampoline's answer: the listener, or why it failed.
func (sv *supervisor) receive() *os.File {
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := sv.report.ReadMsgUnix(buf, oob)
	sv.report.Close()
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if err != nil || n < 0 {
		sv.failure = fail("seccomp", err, "the trampoline sent no listener")
		return nil
	}
	msg := buf[:n]
	switch {
	case bytes.HasPrefix(msg, []byte("error: ")):
		prot, why, ok := bytes.Cut(msg[len("error: "):], []byte{0})
		if !ok {
			prot, why = []byte("sandbox"), msg[len("error: "):]
		}
		sv.failure = fail(string(prot), nil, "%s", why)
	default:
		fd := -1
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(cms) == 1 {
			if fds, err := unix.ParseUnixRights(&cms[0]); err == nil && len(fds) == 1 {
				fd = fds[0]
			}
		}
		if !bytes.Equal(msg, []byte("ok")) {
			sv.failure = fail("sandbox", nil, "the trampoline sent %q", msg)
			return nil
		}
		if fd < 0 && sv.filtered {
			sv.failure = fail("seccomp", nil, "the sandbox's answer came without the filter's listener")
			return nil
		}
		if fd < 0 {
			return nil // no filter: nothing to supervise
		}
		unix.CloseOnExec(fd)
		if err := unix.SetNonblock(fd, true); err != nil || sv.stopped {
			unix.Close(fd)
			return nil
		}
		sv.listener = os.NewFile(uintptr(fd), "seccomp-listener")
		return sv.listener
	}
	return nil
}

// answer answers one notification: in log mode, logs it (once per system
// call) and lets it through; otherwise kills the worker and fails it.
func (sv *supervisor) answer(rc interface {
	Control(func(uintptr)) error
}, n *seccompNotif) {
	v := Violation{Nr: int(n.nr), Name: SyscallName(int(n.nr)), PID: int(n.pid)}
	resp := seccompResp{id: n.id}
	sv.mu.Lock()
	first := !sv.seen[v.Nr]
	sv.seen[v.Nr] = true
	if !sv.logMode && sv.violation == nil {
		sv.violation = &v
	}
	sv.mu.Unlock()
	if sv.logMode {
		resp.flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
		if first {
			sv.log.Warn("sandbox: system call outside the seccomp profile", "syscall", v.Name, "nr", v.Nr,
				"pid", v.PID, "profile", sv.profile)
		}
	} else {
		// SIGKILL to a thread kills its whole process; it is blocked in
		// this call, so its pid cannot have been reused.
		_ = unix.Kill(v.PID, unix.SIGKILL)
		resp.error = -int32(unix.EPERM)
	}
	_ = rc.Control(func(fd uintptr) {
		_, _, _ = unix.Syscall(unix.SYS_IOCTL, fd, unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
	})
}

// wait waits for the trampoline's answer (or its end) and returns its
// failure, if it reported one.
func (sv *supervisor) wait() *Error {
	<-sv.got
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.failure
}

// current is the violation so far, if any.
func (sv *supervisor) current() *Violation {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.violation
}

// stop ends the supervision once the worker is dead, and returns its
// violation, if any.
func (sv *supervisor) stop() *Violation {
	<-sv.got // prompt: the trampoline is gone, or it answered
	sv.mu.Lock()
	sv.stopped = true
	l := sv.listener
	sv.mu.Unlock()
	if l != nil {
		l.Close()
	}
	<-sv.done
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.violation
}
