package conform

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/shmpipe"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

const (
	markerSize  = 4096
	markerMagic = 0x4b4d4842
	shmSize     = 4096 // the smallest ring: a 10 KiB frame wraps it
	maxHello    = 64 << 10
)

// launch says how to start one worker.
type launch struct {
	env     map[string]string // overrides of the standard variables
	unset   []string          // standard variables left out
	shm     bool              // offer the shared-memory transport
	noHello bool              // the worker is expected to exit before HELLO
}

// session is one worker process and the dispatcher's end of its connection.
type session struct {
	k        *kit
	cmd      *exec.Cmd
	conn     *os.File // the socket; non-blocking, so that deadlines work
	marker   []byte   // the start-marker page
	shmMem   []byte
	to, from *shmpipe.Pipe // pipe 0 (to the worker), pipe 1 (from it), once HELLO said shm
	reader   *wire.Reader
	cookie   string
	hello    wire.Hello
	classes  []wire.Register // what a class server registered
	stderr   syncBuffer
	done     chan struct{} // closed when the process has been waited for
	ws       syscall.WaitStatus
	deadline time.Time // of the current read
}

// syncBuffer is the worker's stderr: written by exec's copier, read by the
// report.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 64<<10 {
		return len(p), nil // enough for a report
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start launches the worker as PROTOCOL.md section 1 says and, unless
// l.noHello, reads and checks its HELLO. The caller must close the session.
func (k *kit) start(l launch) (*session, error) {
	s := &session{k: k, done: make(chan struct{})}
	files, env, err := s.prepare(l)
	// The worker's ends are closed here once it has them (or has failed to
	// start): held here, they would hide its exit from our reads.
	closeFiles := func() {
		for _, f := range files {
			f.Close()
		}
	}
	if err != nil {
		closeFiles()
		s.release()
		return nil, err
	}
	s.cmd = exec.Command(k.opts.Command, k.opts.Args...)
	for key, v := range env {
		s.cmd.Env = append(s.cmd.Env, key+"="+v)
	}
	if path, ok := os.LookupEnv("PATH"); ok {
		s.cmd.Env = append(s.cmd.Env, "PATH="+path)
	}
	s.cmd.Env = append(s.cmd.Env, k.opts.Env...)
	s.cmd.ExtraFiles = files // descriptors 3, 4 and perhaps 5
	s.cmd.Stderr = &s.stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = s.cmd.Start()
	closeFiles()
	if err != nil {
		s.release()
		return nil, fmt.Errorf("starting the worker: %w", err)
	}
	go func() {
		err := s.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			s.ws = ee.Sys().(syscall.WaitStatus)
		}
		close(s.done)
	}()
	if l.noHello {
		s.reader = wire.NewReader(s, maxHello)
		return s, nil
	}
	if err := s.readHello(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// prepare makes the socket pair, the marker page and the shared memory, and
// the environment naming them. The files are the worker's ends.
func (s *session) prepare(l launch) ([]*os.File, map[string]string, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, err
	}
	s.conn = os.NewFile(uintptr(fds[0]), "dispatcher")
	files := []*os.File{os.NewFile(uintptr(fds[1]), "worker")}
	cookie := make([]byte, 16)
	_, _ = rand.Read(cookie)
	s.cookie = hex.EncodeToString(cookie)
	env := map[string]string{
		"BULKHEAD_PROTOCOL":   "1",
		"BULKHEAD_FD":         "3",
		"BULKHEAD_MARKER_FD":  "4",
		"BULKHEAD_COOKIE":     s.cookie,
		"BULKHEAD_PARENT_PID": strconv.Itoa(os.Getpid()),
		"BULKHEAD_MAX_FRAME":  strconv.Itoa(wire.DefaultMaxFrame),
	}
	mf, mem, err := memfd("bulkhead-marker", markerSize)
	if err != nil {
		return files, nil, err
	}
	files = append(files, mf)
	s.marker = mem
	binary.LittleEndian.PutUint32(s.marker[0:], markerMagic)
	binary.LittleEndian.PutUint32(s.marker[4:], 1)
	if l.shm {
		sf, mem, err := memfd("bulkhead-shm", 2*shmpipe.Region(shmSize))
		if err != nil {
			return files, nil, err
		}
		files = append(files, sf)
		s.shmMem = mem
		env["BULKHEAD_SHM_FD"] = "5"
		env["BULKHEAD_SHM_SIZE"] = strconv.Itoa(shmSize)
		env["BULKHEAD_SHM_SPIN"] = "100"
	}
	for key, v := range l.env {
		env[key] = v
	}
	for _, key := range l.unset {
		delete(env, key)
	}
	return files, env, nil
}

// memfd returns a shared memory file of n bytes and its mapping.
func memfd(name string, n int) (*os.File, []byte, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if err := f.Truncate(int64(n)); err != nil {
		f.Close()
		return nil, nil, err
	}
	mem, err := unix.Mmap(fd, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	return f, mem, nil
}

// readHello reads the first frame and checks it as a dispatcher does.
func (s *session) readHello() error {
	s.reader = wire.NewReader(s, maxHello)
	h, p, err := s.recv()
	if err != nil {
		return fmt.Errorf("no HELLO: %w", err)
	}
	if h.Type != wire.TypeHello || h.ID != 0 {
		return fmt.Errorf("first frame is %v with id %d, want HELLO with id 0", h.Type, h.ID)
	}
	if s.hello, err = wire.DecodeHello(p, s.cookie); err != nil {
		return fmt.Errorf("HELLO refused: %w", err)
	}
	if s.hello.PID != int64(s.cmd.Process.Pid) {
		return fmt.Errorf("HELLO says pid %d; the worker is %d", s.hello.PID, s.cmd.Process.Pid)
	}
	if s.hello.Transport == "shm" {
		if s.shmMem == nil {
			return errors.New("HELLO says transport shm, which was not offered")
		}
		if s.to, err = shmpipe.New(s.shmMem, shmSize, 100); err != nil {
			return err
		}
		if s.from, err = shmpipe.New(s.shmMem[shmpipe.Region(shmSize):], shmSize, 100); err != nil {
			return err
		}
	}
	s.reader.SetMaxFrame(wire.DefaultMaxFrame)
	if s.k.opts.Classes {
		return s.readClasses()
	}
	return nil
}

// readClasses reads a class server's REGISTERs up to its RESUME.
func (s *session) readClasses() error {
	for {
		h, p, err := s.recv()
		if err != nil {
			return fmt.Errorf("waiting for REGISTER or RESUME: %w", err)
		}
		switch h.Type {
		case wire.TypeRegister:
			r, err := wire.DecodeRegister(p)
			if err != nil {
				return err
			}
			for _, c := range s.classes {
				if c.Class == r.Class {
					return fmt.Errorf("class %q registered twice", r.Class)
				}
			}
			if len(s.classes) == 256 {
				return errors.New("more than 256 classes registered")
			}
			s.classes = append(s.classes, r)
		case wire.TypeResume:
			if len(p) != 0 {
				return errors.New("RESUME with a payload")
			}
			if len(s.classes) == 0 {
				return errors.New("RESUME without any REGISTER")
			}
			return nil
		default:
			return fmt.Errorf("%v before RESUME; want REGISTER or RESUME", h.Type)
		}
	}
}

// errTimeout is a read that waited out the kit's timeout.
var errTimeout = errors.New("timed out waiting for the worker")

// Read is the byte stream from the worker, for wire.Reader: the socket, or
// pipe 1 after a HELLO that chose shm. It fails with errTimeout at s.deadline.
func (s *session) Read(p []byte) (int, error) {
	if s.from == nil {
		if err := s.conn.SetReadDeadline(s.deadline); err != nil {
			return 0, err
		}
		n, err := s.conn.Read(p)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n, errTimeout
		}
		if errors.Is(err, syscall.ECONNRESET) {
			return n, io.EOF
		}
		return n, err
	}
	for {
		if s.from.Unread() {
			return s.from.Read(p)
		}
		left := time.Until(s.deadline)
		if left <= 0 {
			return 0, errTimeout
		}
		select {
		case <-s.done: // the worker died: nothing more will come
			if !s.from.Unread() {
				return 0, io.EOF
			}
		default:
		}
		s.from.WaitReadable(min(left, 20*time.Millisecond))
	}
}

// recv reads one frame within the kit's timeout.
func (s *session) recv() (wire.Header, []byte, error) {
	s.deadline = time.Now().Add(s.k.opts.Timeout)
	return s.reader.Next()
}

// write sends raw bytes: frames, whole or not.
func (s *session) write(b []byte) error {
	if s.to != nil {
		_, err := s.to.Write(b)
		return err
	}
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.k.opts.Timeout)); err != nil {
		return err
	}
	_, err := s.conn.Write(b)
	return err
}

// send writes one well-formed frame.
func (s *session) send(t wire.Type, id uint64, payload []byte) error {
	return s.write(frame(t, 0, 0, id, payload))
}

// frame encodes one frame with the given header fields.
func frame(t wire.Type, flags uint8, reserved uint16, id uint64, payload []byte) []byte {
	b := make([]byte, wire.HeaderSize, wire.HeaderSize+len(payload))
	binary.LittleEndian.PutUint32(b, uint32(len(payload)))
	b[4], b[5] = byte(t), flags
	binary.LittleEndian.PutUint16(b[6:], reserved)
	binary.LittleEndian.PutUint64(b[8:], id)
	return append(b, payload...)
}

// started reads the start marker.
func (s *session) started() uint64 {
	return binary.LittleEndian.Uint64(s.marker[8:])
}

// exited waits up to the kit's timeout for the worker to end, and describes
// how it did.
func (s *session) exited() (syscall.WaitStatus, error) {
	select {
	case <-s.done:
		return s.ws, nil
	case <-time.After(s.k.opts.Timeout):
		return 0, fmt.Errorf("the worker is still running after %v", s.k.opts.Timeout)
	}
}

// expectExit checks that the worker exits with status code.
func (s *session) expectExit(code int) error {
	ws, err := s.exited()
	if err != nil {
		return err
	}
	if !ws.Exited() || ws.ExitStatus() != code {
		return fmt.Errorf("the worker %s, want exit status %d", describe(ws), code)
	}
	return nil
}

// expectNoHello checks that the worker closes the connection without
// sending anything.
func (s *session) expectNoHello() error {
	h, _, err := s.recv()
	switch {
	case err == nil:
		return fmt.Errorf("the worker sent %v; want it to exit without HELLO", h.Type)
	case errors.Is(err, io.EOF):
		return nil
	}
	return fmt.Errorf("want the worker to exit without HELLO: %w", err)
}

// expectDrop checks that the worker closes the connection (reading to end of
// file, whatever comes before) and exits.
func (s *session) expectDrop() error {
	for {
		_, _, err := s.recv()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if errors.Is(err, errTimeout) {
			return errors.New("the worker kept the connection open")
		}
		if err != nil { // garbage, then the end: still a drop
			break
		}
	}
	_, err := s.exited()
	return err
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "was killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exited with status %d", ws.ExitStatus())
}

// close kills the worker's process group, waits for it and releases
// everything the session holds.
func (s *session) close() {
	if s.cmd != nil && s.cmd.Process != nil {
		select {
		case <-s.done:
		default:
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		}
		<-s.done
	}
	s.release()
}

func (s *session) release() {
	if s.conn != nil {
		s.conn.Close()
	}
	if s.marker != nil {
		_ = unix.Munmap(s.marker)
	}
	if s.shmMem != nil {
		_ = unix.Munmap(s.shmMem)
	}
}
