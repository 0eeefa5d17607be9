// Package cworker_test builds the C worker in cworker.c with gcc and drives it
// over a socket pair exactly as docs/PROTOCOL.md describes, using only the
// standard library, a CBOR codec and x/sys/unix: no bulkhead package.
package cworker_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/sys/unix"
)

// Frame types (PROTOCOL.md section 3).
const (
	tHello  = 1
	tCall   = 2
	tReply  = 3
	tError  = 4
	tCancel = 5
	tQuit   = 6
	tPing   = 7
	tPong   = 8
)

// Error codes.
const (
	eApplication   = 1
	eUnknownMethod = 2
	eBadArguments  = 3
	eCanceled      = 5
	eBadHello      = 8
)

const (
	headerSize  = 16
	markerSize  = 4096
	markerMagic = 0x4b4d4842
	// ioTimeout bounds every read and write and every wait for an exit,
	// so that a broken worker fails the test instead of hanging it.
	ioTimeout = 30 * time.Second
)

// strict decodes what the worker sends with the protocol's limits.
var strict = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:       cbor.DupMapKeyEnforcedAPF,
		IndefLength:     cbor.IndefLengthForbidden,
		TagsMd:          cbor.TagsForbidden,
		MaxNestedLevels: 32,
		UTF8:            cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// TestCWorker builds the worker once and runs every scenario against it.
func TestCWorker(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH; cannot build the C worker (install gcc to run this test)")
	}
	bin := filepath.Join(t.TempDir(), "cworker")
	build := exec.Command(gcc, "-std=c99", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror", "-I", "../../sdk/c", "-o", bin, "cworker.c")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(build.Args, " "), err, out)
	}
	t.Run("Hello", func(t *testing.T) { testHello(t, bin) })
	t.Run("Calls", func(t *testing.T) { testCalls(t, bin) })
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, bin) })
	t.Run("Pipelined", func(t *testing.T) { testPipelined(t, bin) })
}

// testPipelined sends many CALLs in one write, as a pipelining dispatcher
// may (PROTOCOL.md section 3): the worker answers each, in order, and its
// start marker ends at the last.
func testPipelined(t *testing.T, bin string) {
	w := start(t, bin, config{})
	const n = 64
	var batch []byte
	for i := uint64(1); i <= n; i++ {
		batch = append(batch, frame(tCall, 0, 0, i, callPayload("add", 0, enc(i), enc(1000)))...)
	}
	w.write(batch)
	for i := uint64(1); i <= n; i++ {
		typ, id, payload := w.recv()
		if typ != tReply || id != i || !bytes.Equal(payload, enc(i+1000)) {
			t.Fatalf("answer %d: type %d id %d payload %x; want REPLY %d with %d", i, typ, id, payload, i, i+1000)
		}
	}
	if got := w.started(); got != n {
		t.Errorf("start marker %d, want %d", got, n)
	}
	w.send(tQuit, 0, nil)
	w.expectEOF()
	if ws := w.wait(); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("after QUIT: %s", w.status())
	}
}

// config describes how to start one worker.
type config struct {
	noMarker bool              // do not pass BULKHEAD_MARKER_FD
	badMagic bool              // pass a marker page without the magic
	env      map[string]string // environment overrides
	unset    []string          // environment variables to leave out
	noHello  bool              // the worker is expected to exit before HELLO
}

type worker struct {
	t      *testing.T
	cmd    *exec.Cmd
	conn   *os.File // the dispatcher's end of the socket pair
	marker []byte   // the shared start-marker page, or nil
	stderr bytes.Buffer
	cookie string
	hello  hello
	waited bool
	ws     syscall.WaitStatus
}

type hello struct {
	Protocol    uint64   `cbor:"protocol"`
	Pid         uint64   `cbor:"pid"`
	Cookie      string   `cbor:"cookie"`
	Methods     []string `cbor:"methods"`
	Concurrency uint64   `cbor:"concurrency"`
	Marker      *bool    `cbor:"marker"`
	Name        string   `cbor:"name"`
}

type errorPayload struct {
	Code    uint64          `cbor:"code"`
	Message string          `cbor:"message"`
	Details cbor.RawMessage `cbor:"details"`
}

// start launches the worker as PROTOCOL.md section 1 says and, unless
// cfg.noHello, reads and checks its HELLO.
func start(t *testing.T, bin string, cfg config) *worker {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Our end is non-blocking so that os.File supports deadlines; the
	// worker's end stays blocking.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	w := &worker{t: t, conn: os.NewFile(uintptr(fds[0]), "dispatcher")}
	child := os.NewFile(uintptr(fds[1]), "worker")
	defer child.Close()
	t.Cleanup(func() { w.conn.Close() })

	cookie := make([]byte, 16)
	rand.Read(cookie)
	w.cookie = hex.EncodeToString(cookie)
	env := map[string]string{
		"BULKHEAD_PROTOCOL":   "1",
		"BULKHEAD_FD":         "3",
		"BULKHEAD_MARKER_FD":  "4",
		"BULKHEAD_COOKIE":     w.cookie,
		"BULKHEAD_PARENT_PID": strconv.Itoa(os.Getpid()),
		"BULKHEAD_MAX_FRAME":  strconv.Itoa(16 << 20),
	}
	files := []*os.File{child}
	if cfg.noMarker {
		delete(env, "BULKHEAD_MARKER_FD")
	} else {
		mfd, err := unix.MemfdCreate("bulkhead-marker", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		mf := os.NewFile(uintptr(mfd), "marker")
		defer mf.Close()
		if err := mf.Truncate(markerSize); err != nil {
			t.Fatal(err)
		}
		w.marker, err = unix.Mmap(mfd, 0, markerSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Munmap(w.marker) })
		if !cfg.badMagic {
			binary.LittleEndian.PutUint32(w.marker[0:], markerMagic)
		}
		binary.LittleEndian.PutUint32(w.marker[4:], 1)
		files = append(files, mf)
	}
	for k, v := range cfg.env {
		env[k] = v
	}
	for _, k := range cfg.unset {
		delete(env, k)
	}

	w.cmd = exec.Command(bin)
	for k, v := range env {
		w.cmd.Env = append(w.cmd.Env, k+"="+v)
	}
	w.cmd.ExtraFiles = files // fds 3 and 4
	w.cmd.Stderr = &w.stderr
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !w.waited {
			w.cmd.Process.Kill()
			w.cmd.Wait()
		}
	})
	if cfg.noHello {
		return w
	}

	typ, id, payload := w.recv()
	if typ != tHello || id != 0 {
		t.Fatalf("first frame: type %d id %d, want HELLO (1) with id 0", typ, id)
	}
	if len(payload) > 64<<10 {
		t.Fatalf("HELLO of %d bytes, over 64 KiB", len(payload))
	}
	if err := strict.Unmarshal(payload, &w.hello); err != nil {
		t.Fatalf("decoding HELLO % x: %v", payload, err)
	}
	return w
}

// frame encodes one frame with the given header fields.
func frame(typ, flags uint8, reserved uint16, id uint64, payload []byte) []byte {
	b := make([]byte, headerSize, headerSize+len(payload))
	binary.LittleEndian.PutUint32(b[0:], uint32(len(payload)))
	b[4] = typ
	b[5] = flags
	binary.LittleEndian.PutUint16(b[6:], reserved)
	binary.LittleEndian.PutUint64(b[8:], id)
	return append(b, payload...)
}

func (w *worker) write(b []byte) {
	w.t.Helper()
	w.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := w.conn.Write(b); err != nil {
		w.t.Fatalf("writing to the worker: %v", err)
	}
}

func (w *worker) send(typ uint8, id uint64, payload []byte) {
	w.t.Helper()
	w.write(frame(typ, 0, 0, id, payload))
}

// recv reads one frame and checks its header.
func (w *worker) recv() (typ uint8, id uint64, payload []byte) {
	w.t.Helper()
	w.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	var h [headerSize]byte
	if _, err := io.ReadFull(w.conn, h[:]); err != nil {
		w.t.Fatalf("reading a frame header: %v (worker %s)", err, w.status())
	}
	n := binary.LittleEndian.Uint32(h[0:])
	if h[5] != 0 || binary.LittleEndian.Uint16(h[6:]) != 0 {
		w.t.Fatalf("frame with flags %#x reserved %#x", h[5], h[6:8])
	}
	if n > 16<<20 {
		w.t.Fatalf("frame of %d bytes, over the limit", n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(w.conn, payload); err != nil {
		w.t.Fatalf("reading a %d-byte payload: %v", n, err)
	}
	return h[4], binary.LittleEndian.Uint64(h[8:]), payload
}

// expectEOF reads until the worker closes its end (it exited).
func (w *worker) expectEOF() {
	w.t.Helper()
	w.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := io.ReadAll(w.conn)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		w.t.Fatalf("waiting for end of file: %v", err)
	}
	if len(b) != 0 {
		w.t.Fatalf("unexpected %d bytes before end of file: % x", len(b), b)
	}
}

// wait reaps the worker, killing it if it has not exited within ioTimeout.
func (w *worker) wait() syscall.WaitStatus {
	w.t.Helper()
	if w.waited {
		return w.ws
	}
	var killed atomic.Bool
	timer := time.AfterFunc(ioTimeout, func() {
		killed.Store(true)
		w.cmd.Process.Kill()
	})
	err := w.cmd.Wait()
	timer.Stop()
	w.waited = true
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		w.t.Fatal(err)
	}
	w.ws = w.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if killed.Load() {
		w.t.Fatalf("worker did not exit within %v; stderr:\n%s", ioTimeout, w.stderr.String())
	}
	return w.ws
}

func (w *worker) status() string {
	if !w.waited {
		return "running"
	}
	return describe(w.ws)
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exited with status " + strconv.Itoa(ws.ExitStatus())
}

// started reads the start marker's started field.
func (w *worker) started() uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&w.marker[8])))
}

// enc encodes v as CBOR.
func enc(v any) []byte {
	b, err := cbor.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// head encodes a CBOR head with the shortest argument.
func head(major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return []byte{m | byte(n)}
	case n <= math.MaxUint8:
		return []byte{m | 24, byte(n)}
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16([]byte{m | 25}, uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32([]byte{m | 26}, uint32(n))
	}
	return binary.BigEndian.AppendUint64([]byte{m | 27}, n)
}

// callPayload builds [method, deadline, [args...]] from raw CBOR arguments.
func callPayload(method string, deadline int64, args ...[]byte) []byte {
	b := append([]byte{0x83}, enc(method)...)
	b = append(b, enc(deadline)...)
	b = append(b, head(4, uint64(len(args)))...)
	for _, a := range args {
		b = append(b, a...)
	}
	return b
}

// nested returns an integer inside k nested one-item arrays.
func nested(k int) []byte {
	return append(bytes.Repeat([]byte{0x81}, k), 0x01)
}

var (
	minus2p64 = []byte{0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff} // -2^64
	maxUint64 = enc(uint64(math.MaxUint64))
)

func testHello(t *testing.T, bin string) {
	tests := []struct {
		name   string
		cfg    config
		marker bool
	}{
		{"with marker", config{}, true},
		{"without marker", config{noMarker: true}, false},
		{"marker without magic", config{badMagic: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := start(t, bin, tt.cfg)
			h := w.hello
			if h.Protocol != 1 || h.Pid != uint64(w.cmd.Process.Pid) || h.Cookie != w.cookie ||
				h.Concurrency != 1 || h.Name != "cworker" ||
				!slices.Equal(h.Methods, []string{"echo", "add", "upper", "crash", "sleep", "nap", "spin", "traceparent"}) {
				t.Errorf("HELLO = %+v; want protocol 1, pid %d, cookie %s, methods [echo add upper crash sleep nap spin traceparent], concurrency 1, name cworker",
					h, w.cmd.Process.Pid, w.cookie)
			}
			if h.Marker == nil || *h.Marker != tt.marker {
				t.Errorf("HELLO marker = %v, want %v", h.Marker, tt.marker)
			}
			w.send(tQuit, 0, nil)
			w.expectEOF()
			if ws := w.wait(); !ws.Exited() || ws.ExitStatus() != 0 {
				t.Errorf("after QUIT the worker %s, want exit 0", describe(ws))
			}
		})
	}
}

func testCalls(t *testing.T, bin string) {
	future := time.Now().Add(time.Hour).UnixNano()
	dupInts := []byte{0xa2, 0x01, 0x00, 0x18, 0x01, 0x00}     // {1: 0, 1: 0}, second key not minimal
	dupText := []byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02} // {"a": 1, "a": 2}
	bigArr := append(head(4, 131072), bytes.Repeat([]byte{0xf6}, 131072)...)
	tests := []struct {
		name    string
		payload []byte // the CALL payload
		reply   []byte // the expected REPLY payload; nil means an ERROR
		code    uint64 // the expected ERROR code
	}{
		{"echo int", callPayload("echo", 0, enc(42)), enc(42), 0},
		{"echo negative", callPayload("echo", 0, enc(-1000000)), enc(-1000000), 0},
		{"echo text", callPayload("echo", 0, enc("héllo")), enc("héllo"), 0},
		{"echo bytes", callPayload("echo", 0, enc([]byte{0, 1, 2, 0xff})), enc([]byte{0, 1, 2, 0xff}), 0},
		{"echo float64", callPayload("echo", 0, enc(1.5)), enc(1.5), 0},
		{"echo float16", callPayload("echo", 0, []byte{0xf9, 0x3c, 0x00}), []byte{0xf9, 0x3c, 0x00}, 0},
		{"echo null bool", callPayload("echo", 0, enc([]any{nil, true, false})), enc([]any{nil, true, false}), 0},
		{"echo map", callPayload("echo", 0, enc(map[string]any{"a": []any{1, "x", map[int]any{-3: nil}}})),
			enc(map[string]any{"a": []any{1, "x", map[int]any{-3: nil}}}), 0},
		{"echo max uint64", callPayload("echo", 0, maxUint64), maxUint64, 0},
		{"echo -2^64", callPayload("echo", 0, minus2p64), minus2p64, 0},
		{"echo non-minimal int", callPayload("echo", 0, []byte{0x19, 0x00, 0x01}), []byte{0x19, 0x00, 0x01}, 0},
		{"echo first of several", callPayload("echo", 0, enc("a"), enc("b")), enc("a"), 0},
		{"echo depth 32", callPayload("echo", 0, nested(30)), nested(30), 0},
		{"echo 131072 items", callPayload("echo", 0, bigArr), bigArr, 0},
		{"echo no args", callPayload("echo", 0), nil, eBadArguments},

		{"add", callPayload("add", 0, enc(2), enc(3)), enc(5), 0},
		{"add mixed signs", callPayload("add", 0, enc(-5), enc(3)), enc(-2), 0},
		{"add mixed signs positive", callPayload("add", 0, enc(10), enc(-3)), enc(7), 0},
		{"add to zero", callPayload("add", 0, enc(3), enc(-3)), enc(0), 0},
		{"add negatives", callPayload("add", 0, enc(-1), enc(-1)), enc(-2), 0},
		{"add beyond int64", callPayload("add", 0, enc(int64(math.MaxInt64)), enc(int64(math.MaxInt64))), enc(uint64(math.MaxUint64 - 1)), 0},
		{"add to -2^64", callPayload("add", 0, enc(int64(math.MinInt64)), enc(int64(math.MinInt64))), minus2p64, 0},
		{"add extremes", callPayload("add", 0, minus2p64, maxUint64), enc(-1), 0},
		{"add overflow", callPayload("add", 0, maxUint64, enc(1)), nil, eApplication},
		{"add underflow", callPayload("add", 0, minus2p64, enc(-1)), nil, eApplication},
		{"add one arg", callPayload("add", 0, enc(1)), nil, eBadArguments},
		{"add three args", callPayload("add", 0, enc(1), enc(2), enc(3)), nil, eBadArguments},
		{"add text", callPayload("add", 0, enc("1"), enc(2)), nil, eBadArguments},
		{"add float", callPayload("add", 0, enc(1.0), enc(2)), nil, eBadArguments},

		{"upper", callPayload("upper", 0, enc("hi")), enc("HI"), 0},
		{"upper utf8", callPayload("upper", 0, enc("héllo wörld 1")), enc("HéLLO WöRLD 1"), 0},
		{"upper empty", callPayload("upper", 0, enc("")), enc(""), 0},
		{"upper int", callPayload("upper", 0, enc(1)), nil, eBadArguments},
		{"upper bytes", callPayload("upper", 0, enc([]byte("hi"))), nil, eBadArguments},

		{"crash unknown kind", callPayload("crash", 0, enc("bogus")), nil, eBadArguments},
		{"crash int kind", callPayload("crash", 0, enc(5)), nil, eBadArguments},
		{"crash bad status", callPayload("crash", 0, enc("exit"), enc(300)), nil, eBadArguments},

		{"unknown method", callPayload("nope", 0), nil, eUnknownMethod},
		{"method of 256 bytes", callPayload(strings.Repeat("m", 256), 0), nil, eUnknownMethod},
		{"method of 257 bytes", callPayload(strings.Repeat("m", 257), 0), nil, eBadArguments},
		{"empty method", callPayload("", 0), nil, eBadArguments},

		{"deadline passed", callPayload("upper", 1, enc("x")), nil, eCanceled},
		{"negative deadline", callPayload("upper", -1, enc("x")), nil, eBadArguments},
		{"deadline ahead", callPayload("upper", future, enc("x")), enc("X"), 0},

		{"payload not an array", enc(map[string]int{"a": 1}), nil, eBadArguments},
		{"array of 2", append([]byte{0x82}, append(enc("echo"), 0x00)...), nil, eBadArguments},
		{"method not text", append([]byte{0x83, 0x01, 0x00}, 0x80), nil, eBadArguments},
		{"deadline not int", append(append([]byte{0x83}, enc("echo")...), 0x60, 0x80), nil, eBadArguments},
		{"args not array", append(append([]byte{0x83}, enc("echo")...), 0x00, 0x01), nil, eBadArguments},
		{"trailing byte", append(callPayload("echo", 0, enc(1)), 0x00), nil, eBadArguments},
		{"truncated", callPayload("echo", 0, enc("hello"))[:12], nil, eBadArguments},
		{"depth 33", callPayload("echo", 0, nested(31)), nil, eBadArguments},
		{"131073 items", callPayload("echo", 0, append(head(4, 131073), bytes.Repeat([]byte{0xf6}, 131073)...)), nil, eBadArguments},
		{"indefinite array", callPayload("echo", 0, []byte{0x9f, 0x01, 0xff}), nil, eBadArguments},
		{"indefinite text", callPayload("echo", 0, []byte{0x7f, 0x61, 'a', 0xff}), nil, eBadArguments},
		{"lone break", callPayload("echo", 0, []byte{0xff}), nil, eBadArguments},
		{"reserved additional info", callPayload("echo", 0, []byte{0x1c}), nil, eBadArguments},
		{"duplicate text keys", callPayload("echo", 0, dupText), nil, eBadArguments},
		{"duplicate int keys", callPayload("echo", 0, dupInts), nil, eBadArguments},
		{"bytes key", callPayload("echo", 0, []byte{0xa1, 0x41, 'a', 0x01}), nil, eBadArguments},
		{"invalid utf8", callPayload("echo", 0, []byte{0x62, 0xc3, 0x28}), nil, eBadArguments},
		{"utf8 surrogate", callPayload("echo", 0, []byte{0x63, 0xed, 0xa0, 0x80}), nil, eBadArguments},
		{"tag 2", callPayload("echo", 0, []byte{0xc2, 0x41, 0x01}), nil, eBadArguments},
		{"tag 1 over text", callPayload("echo", 0, []byte{0xc1, 0x61, 'a'}), nil, eBadArguments},
		{"tag 1 over an integer", callPayload("echo", 0, []byte{0xc1, 0x1a, 0x5f, 0x5e, 0x10, 0x00}), nil, eBadArguments},
		{"undefined", callPayload("echo", 0, []byte{0xf7}), nil, eBadArguments},
		{"simple value", callPayload("echo", 0, []byte{0xf0}), nil, eBadArguments},
	}

	// The nesting limit means what the Go CBOR library means by it: a CALL
	// payload is an array holding the args array, so an argument keeps 30
	// levels of its own.
	var v any
	if err := strict.Unmarshal(callPayload("echo", 0, nested(30)), &v); err != nil {
		t.Fatalf("reference decoder rejects depth 32: %v", err)
	}
	if err := strict.Unmarshal(callPayload("echo", 0, nested(31)), &v); err == nil {
		t.Fatal("reference decoder accepts depth 33")
	}

	w := start(t, bin, config{})
	if w.started() != 0 {
		t.Fatalf("marker started = %d before any call", w.started())
	}
	// One worker serves every case in turn, so ids keep increasing.
	for i, tt := range tests {
		id := uint64(i + 1)
		t.Run(tt.name, func(t *testing.T) {
			w.t = t
			before := w.started()
			w.send(tCall, id, tt.payload)
			typ, gotID, payload := w.recv()
			if gotID != id {
				t.Fatalf("answer has id %d, want %d", gotID, id)
			}
			// A call skipped for its deadline had no effect: unmarked.
			if want := id; tt.code != eCanceled && w.started() != want {
				t.Errorf("marker started = %d after call %d", w.started(), id)
			} else if tt.code == eCanceled && w.started() != before {
				t.Errorf("marker started = %d after skipped call %d, want %d", w.started(), id, before)
			}
			switch {
			case tt.reply != nil && typ == tReply:
				if !bytes.Equal(payload, tt.reply) {
					t.Errorf("REPLY % x, want % x", payload, tt.reply)
				}
			case tt.reply == nil && typ == tError:
				var e errorPayload
				if err := strict.Unmarshal(payload, &e); err != nil {
					t.Errorf("decoding ERROR % x: %v", payload, err)
				} else if e.Code != tt.code || e.Message == "" {
					t.Errorf("ERROR code %d %q, want code %d", e.Code, e.Message, tt.code)
				}
			default:
				t.Errorf("got frame type %d, payload % x", typ, payload)
			}
			if typ == tReply {
				if err := cbor.Wellformed(payload); err != nil {
					t.Errorf("REPLY is not well-formed CBOR: %v", err)
				}
			}
		})
	}
	w.t = t
	// Still serving after all the errors.
	w.send(tPing, 99, nil)
	if typ, id, _ := w.recv(); typ != tPong || id != 99 {
		t.Fatalf("PING 99 answered with type %d id %d", typ, id)
	}
	w.send(tQuit, 0, nil)
	w.expectEOF()
	if ws := w.wait(); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("worker %s after QUIT, want exit 0; stderr:\n%s", describe(ws), w.stderr.String())
	}
}

func testLifecycle(t *testing.T, bin string) {
	tests := []struct {
		name   string
		cfg    config
		run    func(t *testing.T, w *worker)
		status int            // expected exit status when signal is 0
		signal syscall.Signal // expected death by signal
		stderr string         // expected in stderr
	}{
		{name: "QUIT exits 0", run: func(t *testing.T, w *worker) {
			w.send(tQuit, 0, nil)
			w.expectEOF()
		}},
		{name: "end of file exits 0", run: func(t *testing.T, w *worker) {
			w.conn.Close()
		}},
		{name: "PING answered with PONG", run: func(t *testing.T, w *worker) {
			for _, id := range []uint64{0, 1, 12345, math.MaxUint64} {
				w.send(tPing, id, nil)
				if typ, got, p := w.recv(); typ != tPong || got != id || len(p) != 0 {
					t.Errorf("PING %d answered with type %d id %d payload % x", id, typ, got, p)
				}
			}
			w.send(tQuit, 0, nil)
			w.expectEOF()
		}},
		{name: "batched frames in one write", run: func(t *testing.T, w *worker) {
			var b []byte
			b = append(b, frame(tPing, 0, 0, 1, nil)...)
			b = append(b, frame(tCall, 0, 0, 2, callPayload("upper", 0, enc("a")))...)
			b = append(b, frame(tCancel, 0, 0, 2, nil)...)
			b = append(b, frame(tPong, 0, 0, 7, nil)...)
			b = append(b, frame(tPing, 0, 0, 3, nil)...)
			b = append(b, frame(tCall, 0, 0, 4, callPayload("add", 0, enc(1), enc(2)))...)
			b = append(b, frame(tQuit, 0, 0, 0, nil)...)
			w.write(b)
			want := []struct {
				typ     uint8
				id      uint64
				payload []byte
			}{{tPong, 1, nil}, {tReply, 2, enc("A")}, {tPong, 3, nil}, {tReply, 4, enc(3)}}
			for _, f := range want {
				typ, id, p := w.recv()
				if typ != f.typ || id != f.id || !bytes.Equal(p, f.payload) {
					t.Errorf("got type %d id %d % x, want type %d id %d % x", typ, id, p, f.typ, f.id, f.payload)
				}
			}
			w.expectEOF()
			if s := w.started(); s != 4 {
				t.Errorf("marker started = %d, want 4", s)
			}
		}},
		{name: "frame at the limit accepted, one byte over rejected",
			cfg: config{env: map[string]string{"BULKHEAD_MAX_FRAME": "1024"}},
			run: func(t *testing.T, w *worker) {
				base := len(callPayload("echo", 0, enc(make([]byte, 1000))))
				p := callPayload("echo", 0, enc(make([]byte, 1000+1024-base)))
				if len(p) != 1024 {
					t.Fatalf("built a %d-byte payload", len(p))
				}
				w.send(tCall, 1, p)
				if typ, id, _ := w.recv(); typ != tReply || id != 1 {
					t.Fatalf("1024-byte CALL answered with type %d id %d", typ, id)
				}
				w.send(tCall, 2, append(p, 0))
				w.expectEOF()
			}, status: 1, stderr: "exceeds BULKHEAD_MAX_FRAME"},
		{name: "oversized header rejected before the payload", run: func(t *testing.T, w *worker) {
			h := frame(tCall, 0, 0, 1, nil)
			binary.LittleEndian.PutUint32(h, 16<<20+1)
			w.write(h) // no payload follows: the worker must not wait for it
			w.expectEOF()
		}, status: 1, stderr: "exceeds BULKHEAD_MAX_FRAME"},
		{name: "huge length", run: func(t *testing.T, w *worker) {
			h := frame(tPing, 0, 0, 1, nil)
			binary.LittleEndian.PutUint32(h, math.MaxUint32)
			w.write(h)
			w.expectEOF()
		}, status: 1, stderr: "exceeds"},
		{name: "non-zero flags", run: func(t *testing.T, w *worker) {
			w.write(frame(tPing, 1, 0, 1, nil))
			w.expectEOF()
		}, status: 1, stderr: "flags"},
		{name: "non-zero reserved", run: func(t *testing.T, w *worker) {
			w.write(frame(tPing, 0, 0x100, 1, nil))
			w.expectEOF()
		}, status: 1, stderr: "reserved"},
		{name: "unknown type 9", run: func(t *testing.T, w *worker) {
			w.send(9, 0, nil)
			w.expectEOF()
		}, status: 1, stderr: "unknown frame type 9"},
		{name: "unknown type 0", run: func(t *testing.T, w *worker) {
			w.send(0, 0, nil)
			w.expectEOF()
		}, status: 1, stderr: "unknown frame type 0"},
		{name: "object-model type 16", run: func(t *testing.T, w *worker) {
			w.send(16, 1, nil)
			w.expectEOF()
		}, status: 1, stderr: "object-model"},
		{name: "REPLY sent to the worker", run: func(t *testing.T, w *worker) {
			w.send(tReply, 1, []byte{0xf6})
			w.expectEOF()
		}, status: 1, stderr: "never sent to a worker"},
		{name: "CALL id 0", run: func(t *testing.T, w *worker) {
			w.send(tCall, 0, callPayload("echo", 0, enc(1)))
			w.expectEOF()
		}, status: 1, stderr: "ids must be non-zero and increasing"},
		{name: "CALL id repeated", run: func(t *testing.T, w *worker) {
			w.send(tCall, 5, callPayload("echo", 0, enc(1)))
			if typ, id, _ := w.recv(); typ != tReply || id != 5 {
				t.Fatalf("CALL 5 answered with type %d id %d", typ, id)
			}
			w.send(tCall, 5, callPayload("echo", 0, enc(1)))
			w.expectEOF()
		}, status: 1, stderr: "ids must be non-zero and increasing"},
		{name: "HELLO refused", run: func(t *testing.T, w *worker) {
			w.send(tError, 0, enc(map[string]any{"code": eBadHello, "message": "wrong cookie"}))
			w.expectEOF()
		}, status: 78, stderr: "code 8: wrong cookie"},
		{name: "idle timeout",
			cfg: config{env: map[string]string{"BULKHEAD_IDLE_TIMEOUT_MS": "50"}},
			run: func(t *testing.T, w *worker) {
				w.expectEOF() // the worker leaves on its own
			}, stderr: "idle for 50 ms"},
		{name: "missing BULKHEAD_FD", cfg: config{unset: []string{"BULKHEAD_FD"}, noHello: true},
			run: func(t *testing.T, w *worker) {}, status: 78, stderr: "BULKHEAD_FD is not set"},
		{name: "bad BULKHEAD_MAX_FRAME", cfg: config{env: map[string]string{"BULKHEAD_MAX_FRAME": "0"}, noHello: true},
			run: func(t *testing.T, w *worker) { w.expectEOF() }, status: 78, stderr: "BULKHEAD_MAX_FRAME"},
		{name: "parent already gone", cfg: config{env: map[string]string{"BULKHEAD_PARENT_PID": "1"}, noHello: true},
			run: func(t *testing.T, w *worker) { w.expectEOF() }, status: 1, stderr: "already gone"},
		{name: "crash segv", run: crashCall(callPayload("crash", 0, enc("segv"))), signal: syscall.SIGSEGV},
		{name: "crash abort", run: crashCall(callPayload("crash", 0, enc("abort"))), signal: syscall.SIGABRT},
		{name: "crash exit", run: crashCall(callPayload("crash", 0, enc("exit"))), status: 3},
		{name: "crash exit 42", run: crashCall(callPayload("crash", 0, enc("exit"), enc(42))), status: 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := start(t, bin, tt.cfg)
			tt.run(t, w)
			ws := w.wait()
			want := fmt.Sprintf("exited with status %d", tt.status)
			if tt.signal != 0 {
				want = "killed by " + tt.signal.String()
			}
			if got := describe(ws); got != want {
				t.Errorf("worker %s, want %s; stderr:\n%s", got, want, w.stderr.String())
			}
			if !strings.Contains(w.stderr.String(), tt.stderr) {
				t.Errorf("stderr does not mention %q:\n%s", tt.stderr, w.stderr.String())
			}
		})
	}
}

// crashCall runs a few calls and then one that kills the worker, and checks
// that the start marker says the fatal call had started.
func crashCall(payload []byte) func(t *testing.T, w *worker) {
	return func(t *testing.T, w *worker) {
		for id := uint64(1); id <= 3; id++ {
			w.send(tCall, id, callPayload("add", 0, enc(id), enc(id)))
			if typ, got, p := w.recv(); typ != tReply || got != id || !bytes.Equal(p, enc(2*id)) {
				t.Fatalf("call %d answered with type %d id %d % x", id, typ, got, p)
			}
		}
		w.send(tCall, 10, payload)
		w.expectEOF() // no REPLY: the worker died in the call
		if s := w.started(); s != 10 {
			t.Errorf("marker started = %d after the worker died in call 10", s)
		}
	}
}
