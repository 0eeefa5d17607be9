package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

// harness runs a Server in this process against a socketpair, playing the
// dispatcher's side by hand.
type harness struct {
	t      *testing.T
	fd     fdio.FD
	r      *wire.Reader
	page   []byte
	served chan error
}

func newHarness(t *testing.T, s *Server, marker bool, magic ...uint32) *harness {
	return newHarnessFrame(t, s, 65536, marker, magic...)
}

// newHarnessFrame is newHarness with a frame limit of maxFrame bytes.
func newHarnessFrame(t *testing.T, s *Server, maxFrame int, marker bool, magic ...uint32) *harness {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("BULKHEAD_FD", strconv.Itoa(fds[1]))
	t.Setenv("BULKHEAD_COOKIE", "c00k1e")
	t.Setenv("BULKHEAD_PARENT_PID", strconv.Itoa(os.Getppid()))
	t.Setenv("BULKHEAD_MAX_FRAME", strconv.Itoa(maxFrame))
	h := &harness{t: t, fd: fdio.FD(fds[0]), served: make(chan error, 1)}
	if marker {
		mfd, _ := unix.MemfdCreate("m", 0)
		unix.Ftruncate(mfd, 4096)
		h.page, _ = unix.Mmap(mfd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		binary.LittleEndian.PutUint32(h.page[0:], append(magic, markerMagic)[0])
		binary.LittleEndian.PutUint32(h.page[4:], markerVersion)
		t.Setenv("BULKHEAD_MARKER_FD", strconv.Itoa(mfd))
	} else {
		t.Setenv("BULKHEAD_MARKER_FD", "")
		os.Unsetenv("BULKHEAD_MARKER_FD")
	}
	h.r = wire.NewReader(h.fd, uint32(max(maxFrame, 1<<20)))
	go func() { h.served <- s.Serve(context.Background()) }()
	t.Cleanup(func() { unix.Close(fds[0]) })
	return h
}

func (h *harness) send(b *wire.Builder) {
	if _, err := h.fd.Write(b.Bytes()); err != nil {
		h.t.Fatal(err)
	}
	b.Reset()
}

func (h *harness) next() (wire.Header, []byte) {
	hd, p, err := h.r.Next()
	if err != nil {
		h.t.Fatalf("reading from worker: %v", err)
	}
	return hd, append([]byte(nil), p...)
}

func echoServer() *Server {
	s := &Server{Name: "test"}
	s.Handle("echo", func(_ context.Context, a Args) (any, error) {
		var v any
		return v, a.Decode(0, &v)
	})
	return s
}

func TestServeHelloAndCalls(t *testing.T) {
	h := newHarness(t, echoServer(), true)
	hd, p := h.next()
	hello, err := wire.DecodeHello(p, "c00k1e")
	if hd.Type != wire.TypeHello || err != nil || !hello.Marker || hello.Name != "test" || hello.Methods[0] != "echo" {
		t.Fatalf("hello %+v %+v %v", hd, hello, err)
	}
	var b wire.Builder
	_ = b.Call(5, "echo", 0, []any{"x"}, 65536)
	_ = b.Call(6, "nope", 0, nil, 65536)
	b.Empty(wire.TypePing, 77)
	h.send(&b)
	want := []struct {
		t  wire.Type
		id uint64
	}{{wire.TypeReply, 5}, {wire.TypeError, 6}, {wire.TypePong, 77}}
	for _, w := range want {
		if hd, _ := h.next(); hd.Type != w.t || hd.ID != w.id {
			t.Fatalf("got %v %d, want %v %d", hd.Type, hd.ID, w.t, w.id)
		}
	}
	if got := binary.LittleEndian.Uint64(h.page[8:]); got != 6 {
		t.Fatalf("start marker = %d, want 6", got)
	}
	b.Empty(wire.TypeQuit, 0)
	h.send(&b)
	if err := <-h.served; err != nil {
		t.Fatalf("Serve after QUIT: %v", err)
	}
}

func TestServeRejectsProtocolViolations(t *testing.T) {
	tests := []struct {
		name  string
		build func(b *wire.Builder)
		want  error
	}{
		{"id not increasing", func(b *wire.Builder) {
			_ = b.Call(3, "echo", 0, []any{1}, 65536)
			_ = b.Call(3, "echo", 0, []any{1}, 65536)
		}, wire.ErrProtocol},
		{"id zero", func(b *wire.Builder) { _ = b.Call(0, "echo", 0, []any{1}, 65536) }, wire.ErrProtocol},
		{"ping with payload", func(b *wire.Builder) { _ = b.Raw(wire.TypePing, 1, []byte{1}, 65536) }, wire.ErrProtocol},
		{"reply to a worker", func(b *wire.Builder) { _ = b.Raw(wire.TypeReply, 1, []byte{0xf6}, 65536) }, wire.ErrProtocol},
		{"refused", func(b *wire.Builder) {
			_ = b.Value(wire.TypeError, 0, wire.ErrorBody{Code: wire.CodeBadHello, Message: "no"}, 65536)
		}, ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, echoServer(), false)
			h.next() // HELLO
			var b wire.Builder
			tt.build(&b)
			h.send(&b)
			for {
				select {
				case err := <-h.served:
					if !errors.Is(err, tt.want) {
						t.Fatalf("Serve = %v, want %v", err, tt.want)
					}
					return
				default:
				}
				if _, _, err := h.r.Next(); err != nil { // drain replies until it hangs up
					if err := <-h.served; !errors.Is(err, tt.want) {
						t.Fatalf("Serve = %v, want %v", err, tt.want)
					}
					return
				}
			}
		})
	}
}

func TestServeBadMarkerFallsBack(t *testing.T) {
	h := newHarness(t, echoServer(), true, 0xdeadbeef)
	_, p := h.next()
	hello, err := wire.DecodeHello(p, "c00k1e")
	if err != nil || hello.Marker {
		t.Fatalf("hello %+v, %v: want marker=false for a page with the wrong magic", hello, err)
	}
	var b wire.Builder
	_ = b.Call(1, "echo", 0, []any{1}, 65536)
	h.send(&b)
	h.next()
	if got := binary.LittleEndian.Uint64(h.page[8:]); got != 0 {
		t.Fatalf("worker wrote %d into a page it should not use", got)
	}
}

// An idle worker blocked in read(2) must still stop when its ctx ends (the
// SDK's Run cancels it on SIGTERM).
func TestServeStopsOnContext(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	t.Setenv("BULKHEAD_FD", strconv.Itoa(fds[1]))
	t.Setenv("BULKHEAD_COOKIE", "c")
	os.Unsetenv("BULKHEAD_MARKER_FD")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- echoServer().Serve(ctx) }()
	r := wire.NewReader(fdio.FD(fds[0]), 1<<20)
	if _, _, err := r.Next(); err != nil { // HELLO: it is now idle in read(2)
		t.Fatal(err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve after cancel = %v, want nil", err)
	}
}
