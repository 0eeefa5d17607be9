package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The trampoline. Go's os/exec runs nothing in the child between fork and
// execve that we could use, and a seccomp filter must be installed by the
// process it confines. So a sandboxed worker is started as the dispatcher's
// own binary with TrampolineEnv set: before main, Trampoline, called by
// package bulkhead's init, installs the filter on its one locked thread and
// then execveat(2)s the worker binary from the descriptor the dispatcher
// opened (and checked, if pinned). A filter, no_new_privs and the thread's
// other attributes are what an execve keeps; the rest of the trampoline's
// threads vanish with it.

// TrampolineEnv names the trampoline's settings, as JSON. Its descriptor
// (dispatch.Spec.ExtraFiles; dispatch.ExtraFDEnv names it) is a datagram
// socket on which the dispatcher has queued the worker binary's descriptor,
// and the trampoline hands the filter's listener to the dispatcher, or says
// why it could not.
const TrampolineEnv = "BULKHEAD_SANDBOX_TRAMPOLINE"

// trampolineSpec is what the dispatcher tells the trampoline.
type trampolineSpec struct {
	Seccomp    Seccomp
	Landlock   Landlock
	PrivateTmp bool
}

// Trampoline runs the trampoline if this process was started as one, and
// never returns then; otherwise it returns at once.
func Trampoline() {
	cfg, ok := os.LookupEnv(TrampolineEnv)
	if !ok {
		return
	}
	runtime.LockOSThread() // never unlocked: this thread is the one that execs
	report, _ := strconv.Atoi(os.Getenv(dispatch.ExtraFDEnv))
	err := trampoline(cfg, report)
	// Reached only on failure: say why, and exit as a worker that refuses
	// its environment does (docs/PROTOCOL.md).
	msg := "error: " + err.Error()
	var e *Error
	if errors.As(err, &e) {
		msg = "error: " + e.Protection + "\x00" + e.Reason + errSuffix(e.Err)
	}
	_ = unix.Sendmsg(report, []byte(msg), nil, nil, 0)
	fmt.Fprintln(os.Stderr, "bulkhead sandbox:", err)
	os.Exit(78)
}

func trampoline(cfg string, report int) error {
	var spec trampolineSpec
	if err := json.Unmarshal([]byte(cfg), &spec); err != nil {
		return &Error{Protection: "sandbox", Reason: "bad trampoline settings", Err: err}
	}
	exe, err := receiveExe(report)
	if err != nil {
		return &Error{Protection: "sandbox", Reason: "receiving the worker binary", Err: err}
	}
	// The pathname execveat is given lives on a page of its own, at an
	// address the kernel chose at random: the filter lets through only an
	// execveat with that pointer.
	page, err := unix.Mmap(-1, 0, unix.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return &Error{Protection: "sandbox", Reason: "mmap", Err: err}
	}
	path := unsafe.Pointer(&page[0]) // page[0] is 0: the empty pathname of AT_EMPTY_PATH
	argv, envp, err := execArgs()
	if err != nil {
		return &Error{Protection: "sandbox", Reason: "worker arguments", Err: err}
	}
	for _, fd := range []int{exe, report} {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return &Error{Protection: "sandbox", Reason: "marking the trampoline's descriptors close-on-exec", Err: err}
		}
	}
	if spec.PrivateTmp {
		if err := privateTmp(); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return &Error{Protection: "no_new_privs", Reason: "prctl(PR_SET_NO_NEW_PRIVS)", Err: err}
	}
	if spec.Landlock.on() {
		if err := spec.Landlock.restrictThread(); err != nil {
			return &Error{Protection: "landlock", Reason: "restricting the worker's file access", Err: err}
		}
	}
	var rights []byte // the listener, if there is a filter
	if spec.Seccomp.on() {
		listener, err := installFilter(&spec.Seccomp, uintptr(path))
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

// installFilter installs sc's filter on the calling thread and returns its
// listener. From then on the thread is filtered: only system calls the
// profile allows go through, or those the dispatcher answers once it has
// the listener.
func installFilter(sc *Seccomp, execPath uintptr) (int, error) {
	pol, err := sc.policy(execPath)
	if err != nil {
		return -1, &Error{Protection: "seccomp", Reason: "building the filter", Err: err}
	}
	insts, err := pol.Assemble()
	if err != nil {
		return -1, &Error{Protection: "seccomp", Reason: "assembling the filter", Err: err}
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return -1, &Error{Protection: "seccomp", Reason: "assembling the filter", Err: err}
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	listener, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return -1, &Error{Protection: "seccomp", Reason: "seccomp(SECCOMP_SET_MODE_FILTER)", Err: errno}
	}
	return int(listener), nil
}

// receiveExe receives the worker binary's descriptor, which the dispatcher
// queued on the socket before starting the trampoline.
func receiveExe(report int) (int, error) {
	if report < 3 {
		return -1, fmt.Errorf("no socket (%s)", dispatch.ExtraFDEnv)
	}
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(report, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, err
	}
	cms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cms) != 1 || string(buf[:n]) != "exe" {
		return -1, fmt.Errorf("got %q and no descriptor", buf[:n])
	}
	fds, err := unix.ParseUnixRights(&cms[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("got %q and no descriptor", buf[:n])
	}
	return fds[0], nil
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

// execArgs are the worker's argv (the trampoline's own) and environment
// (the trampoline's, less its own variables), as execve wants them.
func execArgs() (argv, envp []*byte, err error) {
	argv, err = syscall.SlicePtrFromStrings(os.Args)
	if err != nil {
		return nil, nil, err
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, TrampolineEnv+"=") && !strings.HasPrefix(kv, dispatch.ExtraFDEnv+"=") {
			env = append(env, kv)
		}
	}
	envp, err = syscall.SlicePtrFromStrings(env)
	return argv, envp, err
}
