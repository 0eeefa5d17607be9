package dispatch

import (
	"bytes"
	"context"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// vecConn is a conn on one end of a socketpair whose other end the test
// plays; the socket buffer is small, so that a large frame blocks in writev
// until the peer reads. Everything is closed when the test ends.
func vecConn(t *testing.T) (*Conn, fdio.FD) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 16<<10); err != nil {
		t.Fatal(err)
	}
	c := New(fds[0], wire.DefaultMaxFrame)
	t.Cleanup(func() {
		c.Close()
		unix.Close(fds[1])
		goleak.VerifyNone(t, opt)
	})
	return c, fdio.FD(fds[1])
}

// readAll collects what the peer end receives until end of stream.
func readAll(fd fdio.FD) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		var all []byte
		buf := make([]byte, 64<<10)
		for {
			n, err := fd.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				got <- all
				return
			}
		}
	}()
	return got
}

// underWmu reads the writer's state under its lock, for until.
func underWmu(c *Conn, f func() bool) func() bool {
	return func() bool {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		return f()
	}
}

// The bytes a conn sends with large arguments referenced are those of the
// copying encoder, mixed with small calls.
func TestConnSendVecWireBytes(t *testing.T) {
	c, peer := vecConn(t)
	got := readAll(peer)
	var want wire.Builder
	id := uint64(0)
	for _, n := range []int{0, 1, wire.MinRef - 1, wire.MinRef, wire.MinRef + 1, 1 << 20} {
		for _, args := range [][]any{{testutil.Patterned(n, byte(n))}, {"s", testutil.Patterned(n, 1), testutil.Patterned(n, 2)}} {
			id++
			if _, err := sendCall(c, "m", 5, args); err != nil {
				t.Fatal(err)
			}
			if err := want.Call(id, "m", 5, args, wire.DefaultMaxFrame); err != nil {
				t.Fatal(err)
			}
		}
	}
	unix.Shutdown(int(c.fd), unix.SHUT_WR)
	if g := <-got; !bytes.Equal(g, want.Bytes()) {
		t.Fatalf("stream of %d bytes differs from the %d the copying encoder makes", len(g), want.Len())
	}
}

type blob []byte // a []byte the encoder copies: not referenced

// A call with a large argument waits for the writer role rather than hand
// its slice to the goroutine writing, takes its id only then (frames leave
// in id order), and returns only when its bytes are in the kernel: changing
// the slice after send returns changes nothing on the wire.
func TestConnSendVecWaitsForWriter(t *testing.T) {
	c, peer := vecConn(t)
	first := blob(testutil.Patterned(512<<10, 1))
	big := testutil.Patterned(1<<20, 2)
	orig := bytes.Clone(big)

	firstDone := make(chan struct{})
	go func() { // becomes the writer and blocks: nobody reads yet
		defer close(firstDone)
		sendCall(c, "first", 0, []any{first})
	}()
	testutil.Until(t, "the first writer", underWmu(c, func() bool { return c.writing }))
	vecDone := make(chan *Pending)
	go func() {
		p, err := sendCall(c, "big", 0, []any{big})
		if err != nil {
			t.Error(err)
		}
		vecDone <- p
	}()
	testutil.Until(t, "the large call waiting", underWmu(c, func() bool { return c.vecWaiting == 1 }))
	if _, err := sendCall(c, "small", 0, []any{"x"}); err != nil { // queued behind first
		t.Fatal(err)
	}

	got := readAll(peer)
	p := <-vecDone
	clear(big) // the caller's slice is the caller's again
	<-firstDone
	unix.Shutdown(int(c.fd), unix.SHUT_WR)

	var want wire.Builder
	want.Call(1, "first", 0, []any{first}, wire.DefaultMaxFrame)
	want.Call(2, "small", 0, []any{"x"}, wire.DefaultMaxFrame)
	want.Call(3, "big", 0, []any{orig}, wire.DefaultMaxFrame)
	if g := <-got; !bytes.Equal(g, want.Bytes()) {
		t.Fatalf("stream of %d bytes is not frames 1, 2, 3 with the slice as it was sent", len(g))
	}
	if p.id != 3 {
		t.Fatalf("large call got id %d, want 3", p.id)
	}
}

// A connection that breaks while a large frame is in writev (the worker
// died, or a cancelled call shut the socket down) fails the call; send
// returns only after the write has ended, and a later large call fails at
// once instead of waiting.
func TestConnSendVecBroken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(c *Conn, peer fdio.FD)
	}{
		{"peer closed", func(_ *Conn, peer fdio.FD) { unix.Shutdown(int(peer), unix.SHUT_RDWR) }},
		{"shut down by a cancellation", func(c *Conn, _ fdio.FD) { c.Shutdown() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := vecConn(t)
			big := testutil.Patterned(1<<20, 3)
			done := make(chan *Pending)
			go func() {
				p, err := sendCall(c, "big", 0, []any{big})
				if err != nil {
					t.Error(err)
				}
				done <- p
			}()
			testutil.Until(t, "the large write", underWmu(c, func() bool { return c.writing }))
			tc.break_(c, peer)
			p := <-done
			clear(big) // under -race: no write may still read it
			// A failed write leaves the reader to deliver what the worker
			// had answered, then to meet the end of the stream.
			c.wait(p, context.Background())
			c.mu.Lock()
			failed, broken := p.done && p.err != nil, c.broken
			c.mu.Unlock()
			if !failed || broken == nil {
				t.Fatalf("call not failed by the broken connection: done %v, err %v, broken %v", p.done, p.err, broken)
			}
			c.Release(p)
			p2, err := sendCall(c, "again", 0, []any{big})
			if err != nil || !p2.done || p2.err == nil {
				t.Fatalf("a call on the broken connection: %v, %+v", err, p2)
			}
			c.Release(p2)
		})
	}
}

// With calls queued behind others (Config.Pipeline), register holds small
// frames for the reader to write in one batch; a frame that references its
// caller's slice is never held: send writes it, and what was held before
// it, before returning.
func TestConnSendVecNeverHeld(t *testing.T) {
	c, peer := vecConn(t)
	c.holdAfter = 2 // a serial worker with Config.Pipeline
	got := readAll(peer)
	var want wire.Builder
	for id := uint64(1); id <= 3; id++ {
		if _, err := sendCall(c, "small", 0, []any{id}); err != nil {
			t.Fatal(err)
		}
		want.Call(id, "small", 0, []any{id}, wire.DefaultMaxFrame)
	}
	if !c.held.Load() {
		t.Fatal("the third call in flight was not held: the test does not test anything")
	}
	big := testutil.Patterned(1<<20, 5)
	want.Call(4, "big", 0, []any{bytes.Clone(big)}, wire.DefaultMaxFrame)
	if _, err := sendCall(c, "big", 0, []any{big}); err != nil {
		t.Fatal(err)
	}
	clear(big)
	unix.Shutdown(int(c.fd), unix.SHUT_WR) // nobody reads replies: nothing else writes
	if g := <-got; !bytes.Equal(g, want.Bytes()) {
		t.Fatalf("stream of %d bytes is not the 4 frames as sent (%d bytes)", len(g), want.Len())
	}
}

// register holds a call back for the reader only once more calls are
// pending than the worker runs at once, plus one (Config.Pipeline): a
// concurrent worker gets every call it can run at once, and a pool
// without pipelining never holds one.
func TestRegisterHolds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		holdAfter int
		firstHeld int // the first call held, 0: none of 8
	}{
		{"no pipelining", 0, 0},
		{"serial worker", 2, 3},
		{"four at once", 5, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := vecConn(t)
			got := readAll(peer)
			c.holdAfter = tc.holdAfter
			firstHeld := 0
			for id := 1; id <= 8; id++ {
				if _, err := sendCall(c, "small", 0, []any{id}); err != nil {
					t.Fatal(err)
				}
				if c.held.Load() && firstHeld == 0 {
					firstHeld = id
				}
			}
			if firstHeld != tc.firstHeld {
				t.Errorf("first call held: %d, want %d", firstHeld, tc.firstHeld)
			}
			if c.held.Load() {
				c.flushHeld(nil) // what the reader does before it blocks
			}
			unix.Shutdown(int(c.fd), unix.SHUT_WR)
			if g := <-got; len(g) == 0 {
				t.Error("nothing written")
			}
		})
	}
}

// sendCall encodes and sends a CALL as Pool.Call does, with no ctx.
func sendCall(c *Conn, method string, deadline int64, args []any) (*Pending, error) {
	f := new(wire.Builder)
	var err error
	if wire.AnyLarge(args) {
		err = f.CallVec(0, method, deadline, args, c.maxFrame)
	} else {
		err = f.Call(0, method, deadline, args, c.maxFrame)
	}
	if err != nil {
		return nil, err
	}
	return c.Send(context.Background(), f)
}
