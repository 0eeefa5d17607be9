// Package worker is the Go SDK for bulkhead worker processes.
//
// A worker registers handlers and serves the calls a dispatcher sends it:
//
//	var s worker.Server
//	s.Handle("upper", worker.Func(func(ctx context.Context, s string) (string, error) {
//		return strings.ToUpper(s), nil
//	}))
//	s.Run() // serves, then exits the process
//
// Large byte strings need not be copied: Args.Bytes is a view of an argument,
// valid until the handler returns, and a []byte result is written straight
// from the slice, so an echo of 1 MiB is
//
//	s.Handle("echo", func(ctx context.Context, a worker.Args) (any, error) {
//		return a.Bytes(0)
//	})
//
// The worker finds its socket and cookie in the environment the dispatcher
// gives it, and stops when the dispatcher says QUIT, closes the socket, or
// dies (parent-death signal), or after an idle timeout.
//
// A worker whose C code crashes dies by the signal that killed the C code
// (SIGSEGV, SIGABRT, ...), after the Go runtime has printed its report, so
// that the dispatcher's CrashError names it as it would for a C worker; Go
// itself would exit with status 2. Go panics are reported as Go reports
// them. This holds on linux/amd64 for programs that use cgo, unless
// GOTRACEBACK is set. It also means core dumps where the system allows
// them, and the Go runtime's longer report ("crash" traceback level), in
// the worker's stderr that CrashError.Stderr keeps.
package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"github.com/bulkhead-go/bulkhead/internal/shmpipe"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

// Handler serves one method. The result is encoded as CBOR; return a *Error
// to choose the error code the caller sees. A []byte result of 64 KiB or
// more is not copied: the reply is written from the slice itself after the
// handler returns, so no other goroutine may still be changing it then.
type Handler func(ctx context.Context, args Args) (any, error)

// Server serves calls from a dispatcher. The zero value is ready to use once
// handlers are registered. A Server serves once.
type Server struct {
	// Name is sent in HELLO, for the dispatcher's logs.
	// Zero value: the program's base name.
	Name string

	// Concurrency is how many calls may run at once.
	// Zero value: 1. Calls then run one at a time on a single locked OS
	// thread, like a single-threaded COM apartment, which suits native
	// libraries that are not thread-safe.
	Concurrency int

	// ContinueAfterPanic keeps serving after a handler panics.
	// Zero value: the panic is reported to the caller with its stack and
	// the worker exits (Serve returns a *PanicError), because a panic may
	// leave native state corrupt.
	ContinueAfterPanic bool

	// IdleTimeout ends Serve after this long with no call in flight.
	// Zero value: BULKHEAD_IDLE_TIMEOUT_MS if the dispatcher set it,
	// otherwise none.
	IdleTimeout time.Duration

	// Logger receives the worker's own diagnostics.
	// Zero value: a text logger on stderr, which the dispatcher keeps.
	Logger *slog.Logger

	// BeforeCall, if set, runs after a call has been marked started and
	// before its handler. Tests use it to crash at exact points.
	BeforeCall func(method string, id uint64)

	// Objects configures how registered classes (Register) are served.
	// Zero value: see ObjectOptions.
	Objects ObjectOptions

	// CustomSIGTERM says that code in this worker reacts to SIGTERM in its
	// own way: a signal.Notify of its own, a C library's handler.
	// Zero value: under Run, SIGTERM only cancels the calls in flight, and
	// the worker exits once they have returned; HELLO says so ("sigterm":
	// "cancel", PROTOCOL.md section 4). A dispatcher stopping a worker
	// whose call outlived its deadline then skips SIGTERM: the handler's
	// context was cancelled at that deadline already, so a handler that has
	// not returned (stuck in C, say) will not return for SIGTERM either, and
	// the dispatcher goes straight to the stack dump. Set it if SIGTERM can
	// end this worker in some other way, so that the dispatcher tries it.
	CustomSIGTERM bool

	// NoStackSignal leaves SIGUSR2 to the program.
	// Zero value: under Run, SIGUSR2 makes the worker send the dispatcher
	// a dump of every goroutine's stack (a STACK frame, PROTOCOL.md
	// section 3), written by a goroutine of its own, so that a call stuck
	// in C shows the frames it is stuck in; HELLO says so ("stack"). The
	// dispatcher asks for it when a call outlives Config.SlowCall.
	NoStackSignal bool

	// sigtermCancels is set by Run, whose SIGTERM cancels Serve's context.
	sigtermCancels bool
	// stackSignal is set by Run, which owns the process's signals: SIGUSR2
	// asks for a STACK (unless NoStackSignal).
	stackSignal bool

	mu       sync.Mutex
	objsrv   objectServer // registered classes (class.go)
	handlers map[string]Handler
	serving  atomic.Bool
}

// PanicError is returned by Serve after a handler panicked, or encoding its
// answer did (a MarshalCBOR method of its result), unless ContinueAfterPanic
// is set.
type PanicError struct {
	Method   string
	Value    any
	Stack    string
	Encoding bool // the panic was in encoding the answer, after the handler returned
}

func (e *PanicError) Error() string {
	if e.Encoding {
		return fmt.Sprintf("worker: encoding the answer of %q panicked: %v", e.Method, e.Value)
	}
	return fmt.Sprintf("worker: handler for %q panicked: %v", e.Method, e.Value)
}

// Handle registers h for method. It panics if called during Serve, or on an
// empty or duplicate method name, like http.ServeMux.
func (s *Server) Handle(method string, h Handler) {
	if len(method) == 0 || len(method) > wire.MaxMethodBytes {
		panic(fmt.Sprintf("worker: method name of %d bytes", len(method)))
	}
	if h == nil {
		panic("worker: nil handler for " + method)
	}
	if s.serving.Load() {
		panic("worker: Handle called during Serve")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handlers == nil {
		s.handlers = make(map[string]Handler)
	}
	if _, dup := s.handlers[method]; dup {
		panic("worker: duplicate handler for " + method)
	}
	s.handlers[method] = h
}

// Run serves until the dispatcher is done with this worker, then exits the
// process: status 0 after QUIT, end of stream or idle timeout, 70 after a
// handler panic, 78 when not started by a dispatcher, with a bad environment
// or when refused, 1 on other errors.
func (s *Server) Run() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	s.sigtermCancels = true
	s.stackSignal = !s.NoStackSignal
	err := s.Serve(ctx)
	stop()
	var pe *PanicError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &pe):
		os.Exit(70)
	case errors.Is(err, ErrNotWorker) || errors.Is(err, errBadEnv):
		fmt.Fprintln(os.Stderr, err)
		os.Exit(78)
	case errors.Is(err, ErrRefused):
		os.Exit(78)
	default:
		s.logger().Error("worker stopped", "err", err)
		os.Exit(1)
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// conn is one serving session.
type conn struct {
	s        *Server
	env      env
	fd       fdio.FD   // the socket
	rd       io.Reader // where frames come from: the socket, or a shared-memory pipe
	wr       io.Writer
	in       *shmpipe.Pipe // the shared-memory pipes, when in use
	out      *shmpipe.Pipe
	reader   *wire.Reader
	started  *atomic.Uint64 // in the shared start-marker page, or a private word
	handlers map[string]Handler

	usage usageFiles // the /proc files of BULKHEAD_CALL_USAGE (usage.go)

	wmu  sync.Mutex // serialises writes: of calls' answers when Concurrency > 1, and of STACK frames
	outb wire.Builder
	segs [][]byte // flush's scratch for frames with referenced results

	quit    atomic.Bool
	lastID  uint64 // the last CALL id read: ids must increase
	panicMu sync.Mutex
	panic   *PanicError
}

// Serve runs the protocol on the socket the dispatcher handed over. It
// returns nil after QUIT, end of stream or the idle timeout; ctx ending also
// stops it (calls in flight are cancelled).
func (s *Server) Serve(ctx context.Context) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("worker: Serve called twice")
	}
	e, err := readEnv()
	if err != nil {
		return err
	}
	c, err := s.open(e)
	if err != nil {
		return err
	}
	defer unix.Close(int(c.fd))
	if e.callUsage {
		c.usage = openUsage()
		defer c.usage.close()
	}
	// The serving loop blocks in read(2), which cannot select on ctx:
	// shutting the read side down is what makes it see the end.
	stop := context.AfterFunc(ctx, c.wakeReader)
	defer stop()
	if s.stackSignal {
		// Before HELLO says so: SIGUSR2's default action is to die.
		defer c.answerStacks()()
	}
	if err := c.hello(); err != nil {
		return err
	}
	if c.in != nil {
		// From here on, frames travel through shared memory.
		c.rd, c.wr = c.in, c.out
		c.reader = wire.NewReader(c.rd, e.maxFrame)
		c.reader.ReuseLarge = true
	}
	idle := s.IdleTimeout
	if idle == 0 {
		idle = e.idleTimeout
	}
	if len(s.objsrv.classes) > 0 {
		err = c.serveObjects(ctx)
	} else if s.Concurrency <= 1 {
		err = c.serveSerial(ctx, idle)
	} else {
		err = c.serveConcurrent(ctx, idle, s.Concurrency)
	}
	if err == nil && c.panic != nil {
		return c.panic
	}
	return err
}

func (s *Server) open(e env) (*conn, error) {
	// Processes this worker starts must not keep the connection open after
	// it dies, or the dispatcher would not see end of stream.
	unix.CloseOnExec(e.fd)
	if err := unix.SetNonblock(e.fd, false); err != nil {
		return nil, fmt.Errorf("worker: socket fd %d: %w", e.fd, err)
	}
	if e.parentPID != 0 {
		// The dispatcher set this at spawn; setting it again covers
		// wrappers that re-exec, and the check covers a parent that died
		// before it took effect.
		_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
		if os.Getppid() != e.parentPID {
			return nil, errors.New("worker: dispatcher is already gone")
		}
	}
	c := &conn{s: s, env: e, fd: fdio.FD(e.fd), started: new(atomic.Uint64)}
	c.rd, c.wr = c.fd, c.fd
	c.reader = wire.NewReader(c.rd, e.maxFrame)
	// A serial worker is done with a payload before it reads the next
	// frame; a concurrent one clones each CALL it hands to a goroutine.
	c.reader.ReuseLarge = true
	if e.markerFD >= 0 {
		unix.CloseOnExec(e.markerFD)
		page, err := unix.Mmap(e.markerFD, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("worker: mapping the start marker: %w", err)
		}
		unix.Close(e.markerFD)
		// The page stays mapped for the life of the process: the
		// dispatcher reads it after we die.
		if binary.LittleEndian.Uint32(page[0:]) == markerMagic && binary.LittleEndian.Uint32(page[4:]) == markerVersion {
			c.started = (*atomic.Uint64)(unsafe.Pointer(&page[8]))
		} else {
			e.markerFD = -1 // not a marker we understand: say marker=false
			c.env.markerFD = -1
		}
	}
	if e.shmFD >= 0 {
		if err := c.mapShm(); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	c.handlers = s.handlers
	s.mu.Unlock()
	return c, nil
}

// mapShm maps the shared-memory transport the dispatcher offered
// (PROTOCOL.md section 9): pipe 0 carries frames to us, pipe 1 from us.
func (c *conn) mapShm() error {
	e := c.env
	unix.CloseOnExec(e.shmFD)
	n := 2 * shmpipe.Region(e.shmSize)
	mem, err := unix.Mmap(e.shmFD, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("worker: mapping the shared-memory transport: %w", err)
	}
	unix.Close(e.shmFD)
	if c.in, err = shmpipe.New(mem[:n/2], e.shmSize, e.shmSpin); err != nil {
		return err
	}
	c.out, err = shmpipe.New(mem[n/2:], e.shmSize, e.shmSpin)
	return err
}

// wakeReader ends a read blocked on the connection, to stop serving.
func (c *conn) wakeReader() {
	_ = unix.Shutdown(int(c.fd), unix.SHUT_RD)
	if c.in != nil {
		c.in.Shut()
	}
}

func (c *conn) hello() error {
	name := c.s.Name
	if name == "" {
		name = filepath.Base(os.Args[0])
	}
	methods := make([]string, 0, len(c.handlers))
	for m := range c.handlers {
		methods = append(methods, m)
	}
	slices.Sort(methods)
	conc := max(c.s.Concurrency, 1)
	h := wire.Hello{
		Protocol: wire.Version, PID: int64(os.Getpid()), Cookie: c.env.cookie,
		Methods: methods, Concurrency: uint64(conc), Marker: c.env.markerFD >= 0, Name: name,
	}
	if c.in != nil {
		h.Transport = "shm"
	}
	if c.s.sigtermCancels && !c.s.CustomSIGTERM {
		// Serve alone says nothing: SIGTERM is then the program's.
		h.SIGTERM = wire.SigtermCancel
	}
	if c.s.stackSignal {
		h.Stack = wire.StackSIGUSR2
	}
	h.Trace = wire.TraceW3C // Traceparent
	if err := lockDown(); err != nil {
		return err
	}
	if err := c.outb.Value(wire.TypeHello, 0, h, wire.MaxHelloSize); err != nil {
		return err
	}
	return c.flush()
}

// flush writes the frames built so far. A large []byte result was only
// referenced by encodeResult: it goes out by one writev with its frame
// header, uncopied, before flush returns.
func (c *conn) flush() error {
	return c.outb.Flush(c.wr, &c.segs)
}

// next reads the next frame, honouring the idle timeout and ctx. ok is false
// when the worker should stop serving cleanly.
func (c *conn) next(ctx context.Context, idle time.Duration) (h wire.Header, p []byte, ok bool, err error) {
	if idle > 0 && !c.reader.Buffered() {
		readable, err := true, error(nil)
		if c.in != nil {
			readable = c.in.WaitReadable(idle)
		} else {
			readable, err = c.fd.WaitReadable(int(idle / time.Millisecond))
		}
		if err != nil {
			return h, nil, false, err
		}
		if !readable {
			c.s.logger().Info("worker idle timeout", "idle", idle)
			return h, nil, false, nil
		}
	}
	if ctx.Err() != nil {
		return h, nil, false, nil
	}
	h, p, err = c.reader.Next()
	if err == io.EOF {
		return h, nil, false, nil // the dispatcher closed the connection
	}
	if err != nil {
		return h, nil, false, fmt.Errorf("worker: reading from dispatcher: %w", err)
	}
	if err := c.check(h, p); err != nil {
		return h, nil, false, err
	}
	return h, p, true, nil
}

// ErrRefused is returned by Serve when the dispatcher refused the HELLO.
var ErrRefused = errors.New("worker: the dispatcher refused this worker")

// check enforces the rules of PROTOCOL.md section 3 that the frame header
// alone cannot.
func (c *conn) check(h wire.Header, p []byte) error {
	switch h.Type {
	case wire.TypeCall:
		if h.ID == 0 || h.ID <= c.lastID {
			return fmt.Errorf("%w: CALL id %d after %d", wire.ErrProtocol, h.ID, c.lastID)
		}
		c.lastID = h.ID
	case wire.TypeCancel, wire.TypeQuit, wire.TypePing, wire.TypePong:
		if len(p) != 0 {
			return fmt.Errorf("%w: %v frame with a payload", wire.ErrProtocol, h.Type)
		}
	case wire.TypeError:
		if h.ID == 0 {
			e, _ := wire.DecodeError(p)
			fmt.Fprintf(os.Stderr, "worker: refused by the dispatcher: %s\n", e.Message)
			return ErrRefused
		}
		return fmt.Errorf("%w: ERROR frame sent to a worker", wire.ErrProtocol)
	case wire.TypeActivate, wire.TypeObjCall, wire.TypeRelease, wire.TypeSuspend:
		return c.checkObject(h, p) // class.go
	default:
		return fmt.Errorf("%w: unexpected %v frame from the dispatcher", wire.ErrProtocol, h.Type)
	}
	return nil
}
