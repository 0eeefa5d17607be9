package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// rawClient is a client that writes whatever it is told.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	r  *wire.Reader
}

func (d *testDaemon) raw(t *testing.T, hello bool) *rawClient {
	t.Helper()
	nc, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second)) // a bound, not a synchronisation
	rc := &rawClient{t: t, nc: nc, r: wire.NewReader(nc, wire.MaxMaxFrame)}
	if hello {
		rc.send(clientwire.TypeHello, 0, clientwire.Hello{Protocol: 1})
		if h, _ := rc.next(); h.Type != clientwire.TypeHello {
			t.Fatalf("handshake answered with %v", h.Type)
		}
	}
	return rc
}

func (rc *rawClient) send(t wire.Type, id uint64, v any) {
	f, err := clientwire.Frame(nil, t, id, v)
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.write(f)
}

func (rc *rawClient) write(b []byte) { rc.nc.Write(b) }

// next reads a frame; a closed connection is a zero header and io.EOF.
func (rc *rawClient) next() (wire.Header, []byte) {
	h, p, err := rc.r.Next()
	if err != nil {
		return wire.Header{}, nil
	}
	return h, bytes.Clone(p)
}

// closed reads until the daemon closes the connection, returning the
// kinds of the ERRORs with id 0 it sent first.
func (rc *rawClient) closed() []string {
	var kinds []string
	for {
		h, p, err := rc.r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) {
				rc.t.Logf("read: %v", err)
			}
			return kinds
		}
		if h.Type == clientwire.TypeError && h.ID == 0 {
			kinds = append(kinds, kindOf(p))
		}
	}
}

// A hostile client costs itself its connection, and nothing else: the
// daemon serves the next client as before.
func TestHostileClients(t *testing.T) {
	d := startDaemon(t, `
[limits]
max_pending = 8
max_handles = 3
`)
	hdr := func(length uint32, typ wire.Type, id uint64) []byte {
		return wire.AppendHeader(nil, wire.Header{Length: length, Type: typ, ID: id})
	}
	tests := []struct {
		name  string
		hello bool
		write func(rc *rawClient)
		want  string // the kind of the ERROR id 0 before the close
	}{
		{"garbage before HELLO", false, func(rc *rawClient) { rc.write([]byte("GET / HTTP/1.1\r\n\r\n")) }, ""},
		{"REQUEST before HELLO", false, func(rc *rawClient) { rc.send(clientwire.TypeRequest, 1, map[string]any{"op": "status"}) }, "protocol"},
		{"a HELLO of version 2", false, func(rc *rawClient) { rc.send(clientwire.TypeHello, 0, clientwire.Hello{Protocol: 2}) }, "unsupported_version"},
		{"a lying length", true, func(rc *rawClient) { rc.write(hdr(1<<30, clientwire.TypeRequest, 1)) }, "protocol"},
		{"a type no client sends", true, func(rc *rawClient) { rc.send(clientwire.TypeReply, 1, map[string]any{}) }, "protocol"},
		{"not CBOR", true, func(rc *rawClient) { rc.write(append(hdr(3, clientwire.TypeRequest, 1), 0xff, 0xff, 0xff)) }, "protocol"},
		{"request id 0", true, func(rc *rawClient) { rc.send(clientwire.TypeRequest, 0, map[string]any{"op": "status"}) }, "protocol"},
		{"a flood past max_pending", true, func(rc *rawClient) {
			for id := uint64(1); id <= 9; id++ {
				rc.send(clientwire.TypeRequest, id, map[string]any{"op": "call", "pool": "p", "method": "block"})
			}
		}, "protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := d.raw(t, tt.hello)
			tt.write(rc)
			kinds := rc.closed()
			if tt.want != "" && (len(kinds) != 1 || kinds[0] != tt.want) {
				t.Fatalf("ERRORs before the close: %v, want [%s]", kinds, tt.want)
			}
			good := d.dial(t)
			if v, err := bulkhead.CallAs[int](context.Background(), good.Pool("p"), "echo", 1); err != nil || v != 1 {
				t.Fatalf("the next client: %v, %v", v, err)
			}
		})
	}
}

// A malformed request, an unknown op or key, or a handle not held, is
// refused alone: the connection goes on.
func TestBadRequests(t *testing.T) {
	d := startDaemon(t, `
[limits]
max_handles = 3
`)
	rc := d.raw(t, true)
	bad := []map[string]any{
		{"op": "teleport"},
		{"op": "call", "pool": "p", "method": "echo", "colour": "red"},
		{"op": "call", "pool": "p"},
		{"op": "object_call", "object": 99, "method": "add"},
		{"op": "release", "handle": 12345},
		{"op": "call", "pool": 7, "method": "echo"},
	}
	wantKinds := []string{"bad_request", "bad_request", "bad_request", "not_found", "not_found", "bad_request"}
	for i, req := range bad {
		rc.send(clientwire.TypeRequest, uint64(i+1), req)
		h, p := rc.next()
		if h.Type != clientwire.TypeError || h.ID != uint64(i+1) {
			t.Fatalf("request %v: answered %v id %d", req, h.Type, h.ID)
		}
		if k := kindOf(p); k != wantKinds[i] {
			t.Errorf("request %v: kind %s, want %s", req, k, wantKinds[i])
		}
	}
	c := d.dial(t)
	ctx := context.Background()
	for range 3 {
		if _, err := c.CreateInstance(ctx, "Counter"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateInstance(ctx, "Counter"); !errors.Is(err, client.ErrLimit) {
		t.Fatalf("a reference past max_handles: %v", err)
	}
	if n := d.objects(); n != 3 {
		t.Fatalf("%d objects alive, want 3 (the refused one released)", n)
	}
}

// A client may hold 10,000 references; closing it releases them all.
func TestTenThousandReferences(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 activations")
	}
	d := startDaemon(t, "")
	c, err := client.Dial(context.Background(), d.sock, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 10000 {
		if _, err := c.CreateInstance(ctx, "Counter"); err != nil {
			t.Fatalf("activation %d: %v", i, err)
		}
	}
	if n := d.objects(); n != 10000 {
		t.Fatalf("%d objects", n)
	}
	c.Close()
	waitObjects(t, d, 0)
}

// kindOf is an ERROR payload's kind, as it came.
func kindOf(p []byte) string {
	var m map[string]any
	if err := wire.Unmarshal(p, &m); err != nil {
		return "(malformed: " + err.Error() + ")"
	}
	k, _ := m["kind"].(string)
	return k
}

// Connections past max_connections are closed at accept; the others go on.
func TestMaxConnections(t *testing.T) {
	d := startDaemon(t, `
[limits]
max_connections = 2
`)
	d.dial(t)
	d.dial(t)
	if _, err := client.Dial(context.Background(), d.sock, client.Options{}); err == nil {
		t.Fatal("a third connection was served")
	}
}

// Running out of descriptors stops accepting for a while, not serving:
// those accept errors are retried, a closed listener's is not.
func TestAcceptRetry(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}, true},
		{net.ErrClosed, false},
		{errors.New("other"), false},
	} {
		if got := acceptRetry(tt.err); got != tt.want {
			t.Errorf("acceptRetry(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
