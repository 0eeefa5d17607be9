package dispatch

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

// Spec says how to start one worker.
type Spec struct {
	Path    string   // the executable, resolved
	Command string   // argv[0]
	Args    []string // the rest of argv
	Env     []string // nil: this process's environment
	Dir     string
	// ExtraEnv is added after Env and the protocol's variables, so that
	// it overrides them.
	ExtraEnv     []string
	StderrTail   int           // bytes of stdout and stderr kept (proc.NewTail)
	KillGrace    time.Duration // exec.Cmd.WaitDelay; stdout and stderr are never waited for past the death (proc.Options.Output)
	StartTimeout time.Duration // for HELLO
	MaxFrame     uint32
	// Shm offers the shared-memory transport (PROTOCOL.md section 9)
	// with rings of ShmRingSize bytes that spin ShmSpin rounds.
	Shm         bool
	ShmRingSize int
	ShmSpin     int
	// Limit, if not nil, applies resource limits to the started process
	// before HELLO is awaited.
	Limit func(pid int) error
	// Options, if not nil, tunes the connection from the worker's HELLO.
	Options func(hello wire.Hello) Options
	// Exec, if not nil, is the opened executable to run instead of Path
	// (its pinned binary): the open file itself is executed, so that a
	// file swapped in at Path is not. Launch does not close it.
	Exec *os.File
	// Attr, if not nil, holds the worker's credential and namespaces
	// (internal/sandbox); proc.Start sets its own fields on a copy.
	Attr *syscall.SysProcAttr
	// Confine, if not nil, puts the started process in its sandbox (its
	// cgroup) before Limit and before HELLO is awaited: no call runs
	// outside it.
	Confine func(pid int) error
	// KillAll, if not nil, kills every process the worker started, once
	// it has died (proc.Options.KillAll).
	KillAll func()
	// PidNS, if not nil, is the PID namespace the worker is born in
	// (proc.Options.PidNS). Its pid there is not the dispatcher's to
	// name, nor the dispatcher's its: BULKHEAD_PARENT_PID is not set.
	PidNS *os.File
	// Fork, if not nil, asks a fork server for the worker instead of an
	// exec (internal/forkserver): env is the protocol's variables, files
	// the socket, the start marker, the output and the shm region. It
	// returns the pid of a child of this process. A failure falls back to
	// exec. Launch forks only a worker that needs no exec: no Exec, Attr,
	// ExtraFiles or ExtraEnv, and an Attr that sets nothing.
	Fork func(env []string, files []*os.File) (int, error)
	// Forkable, set by Prepare, says that the protections it applied hold
	// for a worker cloned by Fork too: its Exec, Attr and ExtraFiles are
	// then the exec's way to apply them, and a clone gets them from
	// ForkFile and Confine instead.
	Forkable bool
	// ForkFile, if not nil, is sent to a cloned worker after its other
	// descriptors, with ForkSandboxEnv set: the trampoline's socket
	// (internal/sandbox), whose message the clone applies itself before
	// HELLO.
	ForkFile *os.File
	// ExtraFiles are passed after the protocol's descriptors, the first
	// as the descriptor that ExtraFDEnv names. Launch does not close them.
	ExtraFiles []*os.File
	// Prepare, if not nil, runs first at each start and applies the
	// worker's protections to Launch's copy of the spec (internal/sandbox):
	// Env, Path, Exec, ExtraFiles, Attr, Confine, KillAll. A failure
	// ends the start. launched runs once the start has ended, told whether
	// a process ran and how the start went, and may replace that error
	// (with a better reason); reaped runs once that process has been
	// reaped, before Hooks.Reaped.
	Prepare func(s *Spec) (launched func(started bool, err error) error, reaped func(), err error)
}

// ExtraFDEnv is the variable that names the first of Spec.ExtraFiles in the
// worker.
const ExtraFDEnv = "BULKHEAD_EXTRA_FD"

// ForkSandboxEnv tells a cloned worker that its last descriptor is
// Spec.ForkFile (sdk/c/bulkhead.h, bh__child).
const ForkSandboxEnv = "BULKHEAD_FORK_SANDBOX"

// Hooks are the owner's callbacks, which run on the process's watching
// goroutine (proc.StartWatched) or on Launch's caller. Any may be nil.
type Hooks struct {
	// Died runs as soon as the pidfd reports the exit, after Exited is
	// set and the connection shut down, so that nothing a descendant
	// that kept the socket writes after the death is read.
	Died func()
	// Reaped runs once the process has been reaped, whatever happened,
	// start failures included; Proc.Exited is closed after it.
	Reaped func()
	// Starting is told true when Launch starts waiting for HELLO and
	// false when it stops, so that an owner closing down can cut the
	// wait short with Conn.Shutdown.
	Starting func(waiting bool)
}

// Worker is one started worker process: its connection, its start marker
// and its output. Launch fills it; its fields are not written afterwards,
// except Exited.
type Worker struct {
	Proc   *proc.Process
	PID    int
	Conn   *Conn
	Hello  wire.Hello
	Stderr *proc.Tail // stdout and stderr, the first bytes and the last
	// Exited is set when the pidfd reports the exit; the process may not
	// be reaped yet.
	Exited atomic.Bool

	marker  []byte         // the shared start-marker page
	started *atomic.Uint64 // its "started" word
}

const (
	markerSize    = 4096
	markerMagic   = 0x4b4d4842 // "BHMK"
	markerVersion = 1
)

// HasStarted reports whether the worker had begun call id, by the start
// marker. Without a marker every call in flight counts as started.
func (w *Worker) HasStarted(id uint64) bool {
	return !w.Hello.Marker || w.started.Load() >= id
}

// StartedWord is the start marker's "started" word: the highest id the
// worker has begun.
func (w *Worker) StartedWord() *atomic.Uint64 { return w.started }

// Close releases the socket and the marker; the process must have exited
// and nothing may be using the connection.
func (w *Worker) Close() {
	w.Conn.Close()
	if w.marker != nil {
		_ = unix.Munmap(w.marker)
		w.marker = nil
	}
}

// StartFailure says why a worker did not start; the owner turns it into
// its own error (bulkhead.StartError).
type StartFailure struct {
	PID    int       // 0 if it never ran
	Exit   proc.Exit // Code -1 if it was killed, still running when killed, or never ran
	Exited bool      // the process ended on its own before HELLO
	Reason string
	Stderr string
	Err    error
}

func (e *StartFailure) Error() string { return "worker failed to start: " + e.Reason }

func (e *StartFailure) Unwrap() error { return e.Err }

// socketBuffer is the send and receive buffer asked for on each socket.
const socketBuffer = 4 << 20

// Launch spawns one worker of s through sp into w and waits for its HELLO,
// its exit, or the start timeout, whichever comes first. w is filled before
// the process starts as far as h's callbacks may need it (Conn, Stderr,
// the marker), so that they may run before Launch returns. A failure is a
// *StartFailure; the process has then been reaped, and its resources
// released.
func Launch(w *Worker, s Spec, sp *proc.Spawner, h Hooks) error {
	if s.Prepare == nil {
		return launch(w, s, sp, h)
	}
	launched, reaped, err := s.Prepare(&s)
	if err != nil {
		return &StartFailure{Exit: proc.Exit{Code: -1}, Reason: err.Error(), Err: err}
	}
	if after := h.Reaped; after != nil {
		h.Reaped = func() { reaped(); after() }
	} else {
		h.Reaped = reaped
	}
	return launched(w.Proc != nil, launch(w, s, sp, h))
}

func launch(w *Worker, s Spec, sp *proc.Spawner, h Hooks) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return &StartFailure{Exit: proc.Exit{Code: -1}, Reason: "socketpair: " + err.Error(), Err: err}
	}
	parentFD, childFD := fds[0], fds[1]
	for _, fd := range fds {
		// Larger buffers let a big frame cross in a few system calls
		// rather than many 200 KiB hand-offs; the kernel caps the value
		// at net.core.wmem_max, which is fine.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
	}
	childSock := os.NewFile(uintptr(childFD), "bulkhead-socket")
	defer childSock.Close()

	markerFile, page, err := newMarker()
	if err != nil {
		unix.Close(parentFD)
		return &StartFailure{Exit: proc.Exit{Code: -1}, Reason: "start marker: " + err.Error(), Err: err}
	}
	defer markerFile.Close()

	var shm *shmLink
	if s.Shm {
		if shm, err = newShmLink(s.ShmRingSize, s.ShmSpin); err != nil {
			unix.Close(parentFD)
			unix.Munmap(page)
			return &StartFailure{Exit: proc.Exit{Code: -1}, Reason: "shared-memory transport: " + err.Error(), Err: err}
		}
		defer shm.file.Close()
	}

	var cookieBytes [16]byte
	_, _ = rand.Read(cookieBytes[:])
	cookie := hex.EncodeToString(cookieBytes[:])

	w.marker, w.started = page, (*atomic.Uint64)(unsafe.Pointer(&page[8]))
	w.Stderr = proc.NewTail(s.StderrTail)
	w.Conn = New(parentFD, s.MaxFrame)
	died := func() {
		w.Exited.Store(true)
		w.Conn.Shutdown()
		if h.Died != nil {
			h.Died()
		}
	}
	pr, err := start(s, sp, cookie, childSock, markerFile, shm,
		proc.Options{Died: died, Reaped: h.Reaped, KillAll: s.KillAll, PidNS: s.PidNS,
			Output: w.Stderr}) // never parsed: a library's stray prints cannot break the protocol
	if err != nil {
		w.Conn.Close()
		unix.Munmap(page)
		if shm != nil {
			shm.unmap()
		}
		return &StartFailure{Exit: proc.Exit{Code: -1}, Reason: "exec " + s.Command + ": " + err.Error(), Err: err}
	}
	w.Proc, w.PID = pr, pr.PID
	childSock.Close()
	markerFile.Close()
	if s.Confine != nil {
		if err := s.Confine(w.PID); err != nil {
			w.Proc.Kill()
			<-w.Proc.Exited()
			w.Close()
			return &StartFailure{PID: w.PID, Exit: proc.Exit{Code: -1}, Reason: err.Error(), Err: err}
		}
	}
	if s.Limit != nil {
		if err := s.Limit(w.PID); err != nil {
			w.Proc.Kill()
			<-w.Proc.Exited()
			w.Close()
			return &StartFailure{PID: w.PID, Exit: proc.Exit{Code: -1}, Reason: "resource limits: " + err.Error(), Err: err}
		}
	}
	return w.handshake(s, cookie, shm, h)
}

// forkable reports whether s's worker may be cloned by s.Fork: no
// protections, extra descriptors or variables that need an exec, or only
// protections that Prepare says a clone gets too (Spec.Forkable).
func (s *Spec) forkable() bool {
	if s.Fork == nil || s.PidNS != nil || len(s.ExtraEnv) != 0 {
		return false
	}
	return s.Forkable || (s.Exec == nil && len(s.ExtraFiles) == 0 && (s.Attr == nil || reflect.ValueOf(*s.Attr).IsZero()))
}

// start forks the worker from s.Fork's fork server when the spec allows it
// (forkable), or when that fails, execs it.
func start(s Spec, sp *proc.Spawner, cookie string, sock, marker *os.File, shm *shmLink, o proc.Options) (*proc.Process, error) {
	if s.forkable() {
		pr, err := proc.StartForked(func(out *os.File) (int, error) {
			files := []*os.File{sock, marker, out}
			if shm != nil {
				files = append(files, shm.file)
			}
			env := protocolEnv(s, cookie, shm)
			if s.ForkFile != nil {
				files = append(files, s.ForkFile)
				env = append(env, ForkSandboxEnv+"=1")
			}
			return s.Fork(env, files)
		}, o)
		if err == nil {
			return pr, nil
		}
		// The fork server is gone: its owner starts another; this worker execs.
	}
	return proc.StartWith(sp, command(s, cookie, sock, marker, shm), o)
}

// protocolEnv is the protocol's variables for a worker of s (PROTOCOL.md
// section 1), with the socket, the marker and the shm region as
// descriptors 3, 4 and 5.
func protocolEnv(s Spec, cookie string, shm *shmLink) []string {
	env := []string{
		"BULKHEAD_PROTOCOL=" + strconv.Itoa(wire.Version),
		"BULKHEAD_FD=3",
		"BULKHEAD_MARKER_FD=4",
		"BULKHEAD_COOKIE=" + cookie,
		"BULKHEAD_MAX_FRAME=" + strconv.FormatUint(uint64(s.MaxFrame), 10),
	}
	if s.PidNS == nil {
		// In a PID namespace of its own, the worker's parent is outside:
		// getppid(2) says 0 there.
		env = append(env, "BULKHEAD_PARENT_PID="+strconv.Itoa(os.Getpid()))
	}
	if shm != nil {
		env = append(env,
			"BULKHEAD_SHM_FD=5",
			"BULKHEAD_SHM_SIZE="+strconv.Itoa(s.ShmRingSize),
			"BULKHEAD_SHM_SPIN="+strconv.Itoa(s.ShmSpin))
	}
	return env
}

// command is the exec.Cmd of a worker of s: the protocol's variables, and
// the socket, the marker and the shm region as descriptors 3, 4 and 5.
func command(s Spec, cookie string, sock, marker *os.File, shm *shmLink) *exec.Cmd {
	env := s.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(env[:len(env):len(env)], protocolEnv(s, cookie, shm)...)
	extra := []*os.File{sock, marker}
	if shm != nil {
		extra = append(extra, shm.file)
	}
	if len(s.ExtraFiles) > 0 {
		env = append(env, ExtraFDEnv+"="+strconv.Itoa(3+len(extra)))
		extra = append(extra, s.ExtraFiles...)
	}
	env = append(env, s.ExtraEnv...)
	path := s.Path
	if s.Exec != nil {
		path = "/proc/self/fd/" + strconv.Itoa(int(s.Exec.Fd()))
	}
	attr := s.Attr
	return &exec.Cmd{
		Path:        path,
		SysProcAttr: attr,
		Args:        append([]string{s.Command}, s.Args...),
		Env:         env,
		Dir:         s.Dir,
		ExtraFiles:  extra,
		WaitDelay:   s.KillGrace,
	}
}

// handshake waits for the started worker's HELLO and moves the connection
// onto the shm link if the worker took it.
func (w *Worker) handshake(s Spec, cookie string, shm *shmLink, h Hooks) error {
	if h.Starting != nil {
		h.Starting(true)
	}
	hello, err := w.Conn.readHello(cookie, s.StartTimeout)
	if h.Starting != nil {
		h.Starting(false)
	}
	if err == nil && hello.Transport == "shm" && shm == nil {
		err = &wire.HelloError{Code: wire.CodeBadHello, Reason: "worker chose the shared-memory transport, which was not offered"}
	}
	if err != nil {
		if shm != nil {
			shm.unmap()
		}
		err := w.startFailure(err, s.StartTimeout)
		w.Close()
		return err
	}
	w.Hello = hello
	switch {
	case hello.Transport == "shm" && shm != nil:
		w.Conn.useShm(shm)
	case shm != nil:
		shm.unmap() // the worker stays on the socket
	}
	if s.Options != nil {
		w.Conn.configure(s.Options(hello), w.started) // before any call: nobody uses it yet
	}
	return nil
}

func newMarker() (*os.File, []byte, error) {
	fd, err := unix.MemfdCreate("bulkhead-marker", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), "bulkhead-marker")
	if err := f.Truncate(markerSize); err != nil {
		f.Close()
		return nil, nil, err
	}
	page, err := unix.Mmap(fd, 0, markerSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	binary.LittleEndian.PutUint32(page[0:], markerMagic)
	binary.LittleEndian.PutUint32(page[4:], markerVersion)
	return f, page, nil
}

// startFailure stops a worker that failed its start and describes why.
func (w *Worker) startFailure(cause error, timeout time.Duration) *StartFailure {
	// A worker we refused may exit by itself on reading the refusal; that
	// is not a crash. Otherwise PF_EXITING tells a death from a hang-up.
	var refused *wire.HelloError
	exitedOnItsOwn := !errors.As(cause, &refused) && w.Proc.Exiting()
	w.Proc.Kill()
	<-w.Proc.Exited()
	ex := proc.ExitOf(w.Proc.State())
	e := &StartFailure{
		PID: w.PID, Exit: ex, Exited: exitedOnItsOwn,
		Stderr: w.Stderr.String(), Err: cause,
	}
	switch {
	case exitedOnItsOwn:
		e.Reason = fmt.Sprintf("worker %d exited before HELLO: %v", w.PID, ex)
	case errors.Is(cause, errStartTimeout):
		e.Reason = fmt.Sprintf("worker %d sent no HELLO within %v; killed", w.PID, timeout)
	default:
		e.Reason = fmt.Sprintf("worker %d: %v; killed", w.PID, cause)
	}
	return e
}

// CrashReason says in words how a worker whose connection broke ended: ex
// is its exit, cause what broke the connection, and killed whether its
// owner killed it for that (it had closed its connection while alive, or
// broken the protocol).
func CrashReason(ex proc.Exit, cause error, killed bool) string {
	switch {
	case errors.Is(cause, wire.ErrProtocol):
		return "broke the protocol (" + cause.Error() + "); killed"
	case killed:
		return "closed its connection while alive; killed"
	}
	return ex.String()
}
