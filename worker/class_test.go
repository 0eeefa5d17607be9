package worker

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

// peer plays the dispatcher on the other end of a socketpair from a Server
// running in this process.
type peer struct {
	t    *testing.T
	fd   fdio.FD
	r    *wire.Reader
	b    wire.Builder
	next uint64
	done chan error
}

func startPeer(t *testing.T, s *Server) *peer {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("BULKHEAD_FD", strconv.Itoa(fds[1]))
	t.Setenv("BULKHEAD_COOKIE", "c00k1e")
	t.Setenv("BULKHEAD_MARKER_FD", "")
	t.Setenv("BULKHEAD_PARENT_PID", "")
	t.Setenv("BULKHEAD_IDLE_TIMEOUT_MS", "")
	p := &peer{t: t, fd: fdio.FD(fds[0]), r: wire.NewReader(fdio.FD(fds[0]), wire.DefaultMaxFrame), done: make(chan error, 1)}
	go func() { p.done <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		unix.Shutdown(fds[0], unix.SHUT_RDWR)
		<-p.done
		unix.Close(fds[0])
	})
	h, _ := p.read()
	if h.Type != wire.TypeHello {
		t.Fatalf("first frame %v", h.Type)
	}
	return p
}

func (p *peer) read() (wire.Header, []byte) {
	p.t.Helper()
	h, b, err := p.r.Next()
	if err != nil {
		p.t.Fatalf("reading from worker: %v", err)
	}
	return h, append([]byte(nil), b...)
}

func (p *peer) flush() {
	p.t.Helper()
	if _, err := p.fd.Write(p.b.Bytes()); err != nil {
		p.t.Fatal(err)
	}
	p.b.Reset()
}

func (p *peer) activate(class string, oid uint64, args ...any) uint64 {
	p.next++
	if err := p.b.Activate(p.next, class, oid, args, wire.DefaultMaxFrame); err != nil {
		p.t.Fatal(err)
	}
	p.flush()
	return p.next
}

func (p *peer) call(oid uint64, method string, args ...any) uint64 {
	p.next++
	if err := p.b.ObjCall(p.next, oid, method, 0, args, wire.DefaultMaxFrame); err != nil {
		p.t.Fatal(err)
	}
	p.flush()
	return p.next
}

func (p *peer) control(t wire.Type, id uint64) {
	p.b.Empty(t, id)
	p.flush()
}

// expect reads the next frame and checks it is a REPLY (code 0) or an ERROR
// with code for request id; it returns the reply's value.
func (p *peer) expect(id uint64, code uint64) any {
	p.t.Helper()
	h, b := p.read()
	if h.ID != id {
		p.t.Fatalf("frame %v for id %d, want id %d", h.Type, h.ID, id)
	}
	if code == 0 {
		if h.Type != wire.TypeReply {
			e, _ := wire.DecodeError(b)
			p.t.Fatalf("id %d: %v %+v, want REPLY", id, h.Type, e)
		}
		var v any
		if err := wire.Unmarshal(b, &v); err != nil {
			p.t.Fatal(err)
		}
		return v
	}
	e, err := wire.DecodeError(b)
	if h.Type != wire.TypeError || err != nil || e.Code != code {
		p.t.Fatalf("id %d: %v %+v, want ERROR code %d", id, h.Type, e, code)
	}
	return nil
}

type counter struct {
	mu sync.Mutex
	n  int
}

// testClasses registers Counter (Apartment), Probe (Free) and Solo (Single).
// gate blocks the "wait" method until closed; entered is told when it runs.
func testServer(destroyed chan<- int, gate <-chan struct{}, entered chan<- string) *Server {
	s := &Server{}
	mk := func(name string, th Threading) *Class[*counter] {
		c := &Class[*counter]{Name: name, Threading: th,
			New: func(_ context.Context, self *Object, a Args) (*counter, error) {
				var start int
				if a.Len() > 0 {
					if err := a.Decode(0, &start); err != nil {
						return nil, err
					}
				}
				if start < 0 {
					return nil, errors.New("negative start")
				}
				return &counter{n: start}, nil
			},
			Destroy: func(c *counter) { destroyed <- c.n },
		}
		c.Method("add", func(_ context.Context, c *counter, a Args) (any, error) {
			var d int
			if err := a.Scan(&d); err != nil {
				return nil, err
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			c.n += d
			return c.n, nil
		})
		c.Method("wait", func(_ context.Context, c *counter, a Args) (any, error) {
			var tag string
			_ = a.Scan(&tag)
			entered <- tag
			<-gate
			return tag, nil
		})
		return c
	}
	s.Register(mk("Counter", Apartment))
	s.Register(mk("Probe", Free))
	s.Register(mk("Solo", Single))
	emitter := &Class[*Object]{Name: "Emitter", Threading: Free,
		New: func(_ context.Context, self *Object, _ Args) (*Object, error) { return self, nil }}
	emitter.Method("emit", func(_ context.Context, self *Object, a Args) (any, error) {
		var n int
		if err := a.Scan(&n); err != nil {
			return nil, err
		}
		for i := range n {
			if err := self.Emit("tick", i); err != nil {
				return nil, err
			}
		}
		return n, nil
	})
	s.Register(emitter)
	return s
}

func TestRegistrationIsSuspendedThenResumed(t *testing.T) {
	p := startPeer(t, testServer(make(chan int, 10), nil, nil))
	var got []string
	for {
		h, b := p.read()
		if h.Type == wire.TypeResume {
			break
		}
		if h.Type != wire.TypeRegister {
			t.Fatalf("frame %v before RESUME", h.Type)
		}
		r, err := wire.DecodeRegister(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Class+"/"+Threading(r.Threading).String())
	}
	want := []string{"Counter/apartment", "Probe/free", "Solo/single", "Emitter/free"}
	if len(got) != len(want) {
		t.Fatalf("registered %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("registered %v, want %v", got, want)
		}
	}
}

func skipRegistration(p *peer) {
	for {
		if h, _ := p.read(); h.Type == wire.TypeResume {
			return
		}
	}
}

func TestObjectLifecycle(t *testing.T) {
	destroyed := make(chan int, 10)
	p := startPeer(t, testServer(destroyed, nil, nil))
	skipRegistration(p)

	p.expect(p.activate("Counter", 1, 10), 0)
	if v := p.expect(p.call(1, "add", 5), 0); v != uint64(15) {
		t.Fatalf("add = %v", v)
	}
	p.expect(p.activate("Counter", 2, -1), wire.CodeApplication) // constructor error
	p.expect(p.call(2, "add", 1), wire.CodeUnknownObject)        // it was never created
	p.expect(p.activate("Nope", 3), wire.CodeUnknownClass)
	p.expect(p.call(1, "nope"), wire.CodeUnknownMethod)
	p.expect(p.call(1, "add", "x"), wire.CodeBadArguments)

	p.control(wire.TypeRelease, 1)
	if n := <-destroyed; n != 15 {
		t.Fatalf("Destroy saw %d", n)
	}
	p.expect(p.call(1, "add", 1), wire.CodeUnknownObject)

	// After SUSPEND, activations are refused, objects keep working.
	p.expect(p.activate("Probe", 4, 1), 0)
	p.control(wire.TypeSuspend, 0)
	p.expect(p.activate("Probe", 5), wire.CodeServerStopping)
	p.expect(p.call(4, "add", 1), 0)

	// QUIT destroys what is left and ends Serve cleanly.
	p.control(wire.TypeQuit, 0)
	if n := <-destroyed; n != 2 {
		t.Fatalf("Destroy at QUIT saw %d", n)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	p.done <- nil // for the cleanup
}

func TestMaxActivationsRevokes(t *testing.T) {
	s := testServer(make(chan int, 10), nil, nil)
	s.Objects.MaxActivations = 2
	p := startPeer(t, s)
	skipRegistration(p)
	p.expect(p.activate("Probe", 1), 0)
	id := p.activate("Probe", 2)
	// The second activation is accepted and revokes the classes: REVOKE is
	// written by the reader before the constructor's reply.
	if h, _ := p.read(); h.Type != wire.TypeRevoke {
		t.Fatalf("got %v, want REVOKE", h.Type)
	}
	p.expect(id, 0)
	p.expect(p.activate("Probe", 3), wire.CodeServerStopping)
	p.expect(p.call(2, "add", 3), 0)
}

func TestEmitEvents(t *testing.T) {
	p := startPeer(t, testServer(make(chan int, 10), nil, nil))
	skipRegistration(p)
	p.expect(p.activate("Emitter", 9), 0)
	id := p.call(9, "emit", 3)
	for i := range 3 {
		h, b := p.read()
		var e wire.Event
		if h.Type != wire.TypeEvent || h.ID != 9 || wire.DecodeEvent(b, &e) != nil || e.Name != "tick" {
			t.Fatalf("event %d: %v %+v", i, h.Type, e)
		}
		var n int
		if err := wire.Unmarshal(e.Args[0], &n); err != nil || n != i {
			t.Fatalf("event %d carries %d", i, n)
		}
	}
	p.expect(id, 0)
}

// The threading models, forced: a call blocks on a gate, a second call is
// sent to the same object (or, for Single, another object of the class), and
// a third call on a Free object proves the worker has read the second before
// the gate opens. Only Free may answer the second call while the first waits.
func TestThreadingModels(t *testing.T) {
	for _, tt := range []struct {
		class       string
		sameObject  bool
		concurrency bool
	}{
		{"Counter", true, false},
		{"Probe", true, true},
		{"Solo", false, false},
	} {
		t.Run(tt.class, func(t *testing.T) {
			gate := make(chan struct{})
			entered := make(chan string, 4)
			p := startPeer(t, testServer(make(chan int, 10), gate, entered))
			skipRegistration(p)
			p.expect(p.activate(tt.class, 1), 0)
			p.expect(p.activate(tt.class, 2), 0)
			p.expect(p.activate("Probe", 3), 0)
			first := p.call(1, "wait", "first")
			if tag := <-entered; tag != "first" {
				t.Fatalf("entered %q", tag)
			}
			target := uint64(2)
			if tt.sameObject {
				target = 1
			}
			second := p.call(target, "add", 1)
			if tt.concurrency {
				p.expect(second, 0)
				close(gate)
				p.expect(first, 0)
				return
			}
			p.expect(p.call(3, "add", 1), 0) // the reader is past the second call
			close(gate)
			p.expect(first, 0)
			p.expect(second, 0)
		})
	}
}

// Object requests continue the CALL id sequence; a dispatcher that reuses
// an id breaks the protocol and the worker stops.
func TestObjectFrameChecks(t *testing.T) {
	p := startPeer(t, testServer(make(chan int, 10), nil, nil))
	skipRegistration(p)
	p.expect(p.activate("Probe", 1), 0)
	p.next-- // reuse the last id
	p.activate("Probe", 2)
	if err := <-p.done; !errors.Is(err, wire.ErrProtocol) {
		t.Fatalf("Serve = %v, want a protocol error", err)
	}
	p.done <- nil // for the cleanup
}

func TestObjectFramesToPlainWorker(t *testing.T) {
	s := &Server{}
	s.Handle("null", func(context.Context, Args) (any, error) { return nil, nil })
	p := startPeer(t, s)
	p.activate("Probe", 1)
	if err := <-p.done; !errors.Is(err, wire.ErrProtocol) {
		t.Fatalf("Serve = %v, want a protocol error", err)
	}
	p.done <- nil
}
