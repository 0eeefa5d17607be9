package bulkhead

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

// workerProc is the dispatcher's view of one worker process. Fields below mu
// are guarded by Pool.mu.
type workerProc struct {
	proc     *proc.Process
	pid      int
	conn     *dispatch.Conn
	hello    wire.Hello
	marker   []byte         // the shared start-marker page
	started  *atomic.Uint64 // its "started" word
	stderr   *proc.Tail
	capacity int       // calls it may have in flight
	born     time.Time // when it said HELLO

	// lost, if set, is told at once when a caller finds the connection
	// broken, before the process is reaped, so that its owner can start
	// a replacement without waiting for the reaping (see crashOf). Set
	// before the worker takes its first call.
	lost func(*workerProc)

	// guarded by Pool.mu
	state     state  // where it is in its life (worker_state.go)
	inflight  int    // calls that hold it
	hung      int    // abandoned calls whose stopHung is stopping it
	holds     int    // users of conn and marker: the process, inflight, hung (dropLocked)
	available bool   // in Pool.avail
	queueable bool   // in Pool.queueable
	wasSpare  bool   // it left Pool.spares without being promoted (its death is logged as a spare's)
	retireWhy string // why it was retired, for the log; set on entering retiring (retired)

	broken atomic.Bool // its connection failed under a call; being killed
	exited atomic.Bool // the pidfd reported its exit; it may not be reaped yet
	// killedByClose: Close's ctx ended with the worker still running.
	killedByClose atomic.Bool
	current       atomic.Uint64 // request id of the latest call, for the crash log

	pol workerPolicy // recycling and limit state (policy_recycle.go)
}

const (
	markerSize    = 4096
	markerMagic   = 0x4b4d4842 // "BHMK"
	markerVersion = 1
)

// hasStarted reports whether the worker had begun call id, by the start
// marker. Without a marker every call in flight counts as started.
func (w *workerProc) hasStarted(id uint64) bool {
	return !w.hello.Marker || w.started.Load() >= id
}

// launch spawns one worker of s.Command through sp and waits for its HELLO,
// its exit, or the start timeout, whichever comes first. onExit runs once the
// process has exited and been reaped, whatever happened. track, if not nil,
// is told when the worker starts and stops waiting for HELLO, so that an
// owner closing down can cut the wait short with w.conn.Shutdown.
// extraEnv is added to the worker's environment.
func launch(s *settings, sp *proc.Spawner, onExit func(*workerProc), track func(*workerProc, bool), extraEnv ...string) (*workerProc, error) {
	return launchWatched(s, sp, nil, onExit, track, extraEnv...)
}

// launchWatched is launch with onDied, which runs as soon as the pidfd
// reports the worker's exit, before the reaping (which a descendant holding
// its stderr can delay): the connection is shut down first, so that nothing
// written after the death, by a descendant that kept the socket, is read.
func launchWatched(s *settings, sp *proc.Spawner, onDied, onExit func(*workerProc), track func(*workerProc, bool), extraEnv ...string) (*workerProc, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &StartError{ExitCode: -1, Reason: "socketpair: " + err.Error(), Err: err}
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
		return nil, &StartError{ExitCode: -1, Reason: "start marker: " + err.Error(), Err: err}
	}
	defer markerFile.Close()

	var shm *dispatch.ShmLink
	if s.Transport == TransportShm {
		if shm, err = dispatch.NewShmLink(s.ShmRingSize, s.ShmSpin); err != nil {
			unix.Close(parentFD)
			unix.Munmap(page)
			return nil, &StartError{ExitCode: -1, Reason: "shared-memory transport: " + err.Error(), Err: err}
		}
		defer shm.File().Close()
	}

	var cookieBytes [16]byte
	_, _ = rand.Read(cookieBytes[:])
	cookie := hex.EncodeToString(cookieBytes[:])

	env := s.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(env[:len(env):len(env)],
		"BULKHEAD_PROTOCOL="+strconv.Itoa(wire.Version),
		"BULKHEAD_FD=3",
		"BULKHEAD_MARKER_FD=4",
		"BULKHEAD_COOKIE="+cookie,
		"BULKHEAD_PARENT_PID="+strconv.Itoa(os.Getpid()),
		"BULKHEAD_MAX_FRAME="+strconv.FormatUint(uint64(s.maxFrame), 10),
	)
	extra := []*os.File{childSock, markerFile}
	if shm != nil {
		env = append(env,
			"BULKHEAD_SHM_FD=5",
			"BULKHEAD_SHM_SIZE="+strconv.Itoa(s.ShmRingSize),
			"BULKHEAD_SHM_SPIN="+strconv.Itoa(s.ShmSpin))
		extra = append(extra, shm.File())
	}
	env = append(env, extraEnv...)
	stderr := proc.NewTail(s.StderrTail)
	cmd := &exec.Cmd{
		Path:       s.path,
		Args:       append([]string{s.Command}, s.Args...),
		Env:        env,
		Dir:        s.Dir,
		Stdout:     stderr, // never parsed: a library's stray prints cannot break the protocol
		Stderr:     stderr,
		ExtraFiles: extra,
		WaitDelay:  s.KillGrace,
	}
	w := &workerProc{
		marker:  page,
		started: (*atomic.Uint64)(unsafe.Pointer(&page[8])),
		stderr:  stderr,
		conn:    dispatch.New(parentFD, s.maxFrame),
	}
	died := func() {
		w.exited.Store(true)
		w.conn.Shutdown()
		if onDied != nil {
			onDied(w)
		}
	}
	pr, err := proc.StartWatched(sp, cmd, died, func() { onExit(w) })
	if err != nil {
		w.conn.Close()
		unix.Munmap(page)
		if shm != nil {
			shm.Unmap()
		}
		return nil, &StartError{ExitCode: -1, Reason: "exec " + s.Command + ": " + err.Error(), Err: err}
	}
	w.proc, w.pid = pr, pr.PID
	childSock.Close()
	markerFile.Close()
	if s.Limits.set() {
		if err := s.Limits.apply(w.pid); err != nil {
			w.proc.Kill()
			<-w.proc.Exited()
			w.closeResources()
			return nil, &StartError{PID: w.pid, ExitCode: -1, Reason: "resource limits: " + err.Error(), Err: err}
		}
	}

	if track != nil {
		track(w, true)
	}
	hello, err := w.conn.ReadHello(cookie, s.StartTimeout)
	if track != nil {
		track(w, false)
	}
	if err == nil && hello.Transport == "shm" && shm == nil {
		err = &wire.HelloError{Code: wire.CodeBadHello, Reason: "worker chose the shared-memory transport, which was not offered"}
	}
	if err != nil {
		if shm != nil {
			shm.Unmap()
		}
		err := w.startFailure(err, s.StartTimeout)
		w.closeResources()
		return nil, err
	}
	w.hello = hello
	switch {
	case hello.Transport == "shm" && shm != nil:
		w.conn.UseShm(shm)
	case shm != nil:
		shm.Unmap() // the worker stays on the socket
	}
	w.capacity = min(s.ConcurrencyPerWorker, int(hello.Concurrency))
	w.born = time.Now()
	if int(hello.PID) != w.pid {
		s.Logger.Warn("worker HELLO names another pid", "pid", w.pid, "hello_pid", hello.PID)
	}
	return w, nil
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

// socketBuffer is the send and receive buffer asked for on each socket.
const socketBuffer = 4 << 20

// startFailure stops a worker that failed its start and describes why.
func (w *workerProc) startFailure(cause error, timeout time.Duration) *StartError {
	// A worker we refused may exit by itself on reading the refusal; that
	// is not a crash. Otherwise PF_EXITING tells a death from a hang-up.
	var refused *wire.HelloError
	exitedOnItsOwn := !errors.As(cause, &refused) && w.proc.Exiting()
	w.proc.Kill()
	<-w.proc.Exited()
	ex := proc.ExitOf(w.proc.State())
	e := &StartError{
		PID: w.pid, ExitCode: ex.Code, Signal: ex.Signal, Exited: exitedOnItsOwn,
		Stderr: w.stderr.String(), Err: cause,
	}
	switch {
	case exitedOnItsOwn:
		e.Reason = fmt.Sprintf("worker %d exited before HELLO: %v", w.pid, ex)
	case errors.Is(cause, dispatch.ErrStartTimeout):
		e.Reason = fmt.Sprintf("worker %d sent no HELLO within %v; killed", w.pid, timeout)
	default:
		e.Reason = fmt.Sprintf("worker %d: %v; killed", w.pid, cause)
	}
	return e
}

// closeResources releases the socket and marker; the process must have
// exited and no call may be using the connection.
func (w *workerProc) closeResources() {
	w.conn.Close()
	if w.marker != nil {
		_ = unix.Munmap(w.marker)
		w.marker = nil
	}
}

// transport reports which transport w's frames use.
func (w *workerProc) transport() Transport {
	if w.conn.OnShm() {
		return TransportShm
	}
	return TransportSocket
}

// crashOf describes a worker whose connection broke under request id: it
// died, closed its socket, or broke the protocol. A live worker is of no
// further use and cannot be trusted to exit, so it is killed first; either
// way crashOf returns once the process has been reaped.
func crashOf(w *workerProc, id uint64, method string, cause error) *CrashError {
	w.finish()
	<-w.proc.Exited() // prompt: it is dead or SIGKILLed, or being stopped
	return describeCrash(w, id, method, cause)
}

// finish takes a worker whose connection broke out of service and has it
// killed, unless it is dying already or being stopped step by step.
func (w *workerProc) finish() {
	if w.lost != nil {
		w.lost(w) // the worker is finished either way: replace it now
	}
	// A connection shut down to abandon a call is not the worker's fault,
	// and the pool is stopping the worker already (stopHung, abandon).
	// Several calls may see the same broken connection (Config.Pipeline,
	// ConcurrencyPerWorker): the first kills, and all say so.
	if !w.proc.Exiting() && w.conn.AbandonedBy() == 0 && w.broken.CompareAndSwap(false, true) {
		w.proc.Kill()
	}
}

// describeCrash describes a worker that has exited, whose connection broke
// under request id.
func describeCrash(w *workerProc, id uint64, method string, cause error) *CrashError {
	ex := proc.ExitOf(w.proc.State())
	e := &CrashError{
		Phase: PhaseCall, PID: w.pid, RequestID: id, Method: method,
		ExitCode: ex.Code, Signal: ex.Signal, CoreDumped: ex.Core,
		Killed: w.broken.Load() && ex.Signal == syscall.SIGKILL,
		Stderr: w.stderr.String(), Err: cause,
	}
	switch {
	case w.killedByClose.Load():
		e.Killed = true
		e.Reason = "killed by the pool's Close, whose ctx ended before this call (" + ex.String() + ")"
	case errors.Is(cause, wire.ErrProtocol):
		e.Reason = "broke the protocol (" + cause.Error() + "); killed"
	case e.Killed:
		e.Reason = "closed its connection while alive; killed"
	default:
		e.Reason = ex.String()
	}
	return e
}
