//go:build !cgo

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"golang.org/x/sys/unix"
)

// Trampoline runs the trampoline if this process was started as one, and
// never returns then; otherwise it returns at once. Without cgo it runs in
// Go, from package bulkhead's init, on its one locked thread (the others
// vanish with the execveat); with cgo, trampoline.c ran before the runtime.
func Trampoline() {
	if _, ok := os.LookupEnv(PidInitEnv); ok {
		pidInit()
	}
	if _, ok := os.LookupEnv(TrampolineEnv); !ok {
		return
	}
	runtime.LockOSThread() // never unlocked: this thread is the one that execs
	report, _ := strconv.Atoi(os.Getenv(dispatch.ExtraFDEnv))
	err := trampoline(report)
	// Reached only on failure: say why, and exit as a worker that refuses
	// its environment does (docs/PROTOCOL.md).
	msg := "error: sandbox\x00" + err.Error()
	var e *Error
	if errors.As(err, &e) {
		msg = "error: " + e.Protection + "\x00" + e.Reason + errSuffix(e.Err)
	}
	_ = unix.Sendmsg(report, []byte(msg), nil, nil, 0)
	fmt.Fprintln(os.Stderr, "bulkhead sandbox:", err)
	os.Exit(78)
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

func trampoline(report int) error {
	m, exe, ruleset, err := receiveMsg(report)
	if err != nil {
		return &Error{Protection: "sandbox", Reason: "receiving the trampoline's settings", Err: err}
	}
	// The pathname execveat is given lives on a page of its own, at an
	// address the kernel chose at random: the filter lets through only an
	// execveat with that pointer.
	page, err := unix.Mmap(-1, 0, unix.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return &Error{Protection: "sandbox", Reason: "mmap", Err: err}
	}
	path := unsafe.Pointer(&page[0]) // page[0] is 0: the empty pathname of AT_EMPTY_PATH
	m.patch(uintptr(path))
	argv, err := syscall.SlicePtrFromStrings(m.argv)
	if err != nil {
		return &Error{Protection: "sandbox", Reason: "worker arguments", Err: err}
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, TrampolineEnv+"=") && !strings.HasPrefix(kv, dispatch.ExtraFDEnv+"=") {
			env = append(env, kv)
		}
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return &Error{Protection: "sandbox", Reason: "worker environment", Err: err}
	}
	if _, err := unix.FcntlInt(uintptr(report), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return &Error{Protection: "sandbox", Reason: "marking the trampoline's socket close-on-exec", Err: err}
	}
	// The privileged steps first, then the switch to the user, which
	// drops the privilege they need.
	if m.flags&flagPrivateTmp != 0 {
		if err := privateTmp(); err != nil {
			return err
		}
	}
	if m.flags&flagUser != 0 {
		if err := switchUser(int(m.uid), int(m.gid)); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return &Error{Protection: "no_new_privs", Reason: "prctl(PR_SET_NO_NEW_PRIVS)", Err: err}
	}
	if ruleset >= 0 {
		if _, _, errno := unix.RawSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), 0, 0); errno != 0 {
			return &Error{Protection: "landlock", Reason: "restricting the worker's file access", Err: errno}
		}
		unix.Close(ruleset)
	}
	var rights []byte // the listener, if there is a filter
	if m.flags&flagSeccomp != 0 {
		if len(m.filter) == 0 {
			return &Error{Protection: "seccomp", Reason: "an empty filter"}
		}
		listener, err := installFilter(m.filter)
		if err != nil {
			return err
		}
		defer unix.Close(listener)
		rights = unix.UnixRights(listener)
	}
	if err := unix.Sendmsg(report, []byte("ok"), rights, nil, 0); err != nil {
		return &Error{Protection: "sandbox", Reason: "answering the dispatcher", Err: err}
	}
	_, _, errno := unix.RawSyscall6(unix.SYS_EXECVEAT, uintptr(exe), uintptr(path),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	runtime.KeepAlive(argv)
	runtime.KeepAlive(envp)
	runtime.KeepAlive(page)
	return &Error{Protection: "sandbox", Reason: "execveat of the worker binary", Err: errno}
}

// receiveMsg receives the dispatcher's message and its descriptors: the
// worker binary and, with flagLandlock, the ruleset (else -1).
func receiveMsg(report int) (m *trampolineMsg, exe, ruleset int, err error) {
	if report < 3 {
		return nil, -1, -1, fmt.Errorf("no socket (%s)", dispatch.ExtraFDEnv)
	}
	buf, oob := make([]byte, hdrSize+8*(maxFilter+maxPatches)+maxArgvBytes+1), make([]byte, unix.CmsgSpace(8))
	n, oobn, flags, _, err := unix.Recvmsg(report, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, -1, -1, err
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return nil, -1, -1, fmt.Errorf("a truncated message")
	}
	var fds []int
	if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(cms) == 1 {
		fds, _ = unix.ParseUnixRights(&cms[0])
	}
	if m, err = decodeTrampolineMsg(buf[:n]); err != nil {
		return nil, -1, -1, err
	}
	want := 1
	if m.flags&flagLandlock != 0 {
		want = 2
	}
	if len(fds) != want {
		return nil, -1, -1, fmt.Errorf("%d descriptors, want %d", len(fds), want)
	}
	ruleset = -1
	if want == 2 {
		ruleset = fds[1]
	}
	return m, fds[0], ruleset, nil
}

// pidInit is PID 1 of a worker's PID namespace (pidns.go), in Go: it
// reaps orphans until descriptor 3 reports the end, and never returns.
func pidInit() {
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	end := make(chan struct{})
	go func() {
		var b [1]byte
		_, _ = unix.Read(3, b[:]) // blocks until the dispatcher closes it, or dies
		close(end)
	}()
	for {
		for {
			if pid, _ := unix.Wait4(-1, nil, unix.WNOHANG, nil); pid <= 0 {
				break
			}
		}
		select {
		case <-chld:
		case <-end:
			os.Exit(0)
		}
	}
}

// switchUser makes this process, and so the worker, uid:gid with no
// supplementary groups (User), once the privileged steps are done; as
// trampoline.c's bh_switch_user, each step and the result are checked,
// and the parent-death signal, which the switch clears, is set again.
// syscall's Set* apply to every thread of the runtime.
func switchUser(uid, gid int) error {
	var pdeath int32
	if err := unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&pdeath)), 0, 0, 0); err != nil {
		return &Error{Protection: "user", Reason: "prctl(PR_GET_PDEATHSIG)", Err: err}
	}
	ppid := unix.Getppid()
	if err := syscall.Setgroups(nil); err != nil {
		return &Error{Protection: "user", Reason: "dropping the supplementary groups (setgroups)", Err: err}
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return &Error{Protection: "user", Reason: "setresgid", Err: err}
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return &Error{Protection: "user", Reason: "setresuid", Err: err}
	}
	r, e, s := unix.Getresuid()
	rg, eg, sg := unix.Getresgid()
	groups, err := unix.Getgroups()
	if err != nil || r != uid || e != uid || s != uid || rg != gid || eg != gid || sg != gid || len(groups) != 0 {
		return &Error{Protection: "user", Reason: "after the switch, the worker's ids are not the ones asked for"}
	}
	if uid != 0 {
		if _, _, errno := unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0); errno == 0 {
			return &Error{Protection: "user", Reason: "after the switch, the worker could become root again"}
		}
	}
	if pdeath != 0 {
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(pdeath), 0, 0, 0); err != nil {
			return &Error{Protection: "user", Reason: "prctl(PR_SET_PDEATHSIG) after the switch", Err: err}
		}
		if unix.Getppid() != ppid {
			return &Error{Protection: "sandbox", Reason: "the dispatcher died during the start"}
		}
	}
	return nil
}
