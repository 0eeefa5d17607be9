package client

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"go.uber.org/goleak"
)

// fakeDaemon accepts one client, answers its HELLO, reads its first
// REQUEST, and then writes reply (the frames to answer with), whatever
// they are.
func fakeDaemon(t testing.TB, reply func(id uint64) []byte) string {
	sock := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := wire.NewReader(nc, wire.MaxHelloSize)
		if _, _, err := r.Next(); err != nil {
			return
		}
		f, _ := clientwire.Frame(nil, clientwire.TypeHello, 0, clientwire.Hello{Protocol: 1, MaxFrame: 1 << 20})
		nc.Write(f)
		h, _, err := r.Next()
		if err != nil {
			return
		}
		b0 := reply(h.ID)
		if b0 == nil {
			return // hang up
		}
		nc.Write(b0)
		var b [1]byte
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		nc.Read(b[:]) // until the client hangs up
	}()
	return sock
}

func encFrame(t wire.Type, id uint64, v any) []byte {
	f, _ := clientwire.Frame(nil, t, id, v)
	return f
}

// A daemon's answer is hostile input too: a lie costs the connection, and
// the call returns at once with an error, never a panic or a hang.
func TestHostileDaemon(t *testing.T) {
	defer goleak.VerifyNone(t)
	tests := []struct {
		name  string
		reply func(id uint64) []byte
		want  error
	}{
		{"a lying length", func(id uint64) []byte {
			return wire.AppendHeader(nil, wire.Header{Length: 1 << 30, Type: clientwire.TypeReply, ID: id})
		}, ErrProtocol},
		{"a type no daemon sends", func(id uint64) []byte { return encFrame(clientwire.TypeRequest, id, map[string]any{}) }, ErrProtocol},
		{"a reply without a result", func(id uint64) []byte { return encFrame(clientwire.TypeReply, id, map[string]any{}) }, ErrProtocol},
		{"a result that is not CBOR", func(id uint64) []byte {
			return clientwire.RawFrame(nil, clientwire.TypeReply, id, []byte{0xa1, 0x66, 'r', 'e', 's', 'u', 'l', 't', 0xff})
		}, ErrProtocol},
		{"an ERROR of no known kind", func(id uint64) []byte {
			return encFrame(clientwire.TypeError, id, map[string]any{"kind": "gremlins", "message": "m"})
		}, nil},
		{"the connection closed", func(uint64) []byte { return nil }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := fakeDaemon(t, tt.reply)
			c, err := Dial(context.Background(), sock, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a bound
			defer cancel()
			_, err = c.Pool("p").Call(ctx, "m")
			var unknown *Error
			switch {
			case err == nil || ctx.Err() != nil:
				t.Fatalf("call: %v (ctx %v)", err, ctx.Err())
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("call: %v, want %v", err, tt.want)
			case tt.name == "an ERROR of no known kind" && !errors.As(err, &unknown):
				t.Fatalf("call: %v (%T), want a *client.Error", err, err)
			case tt.name == "the connection closed" && !errors.Is(err, ErrConnection):
				t.Fatalf("call: %v, want ErrConnection", err)
			}
		})
	}
}

// A caller whose ctx ends gets a *CanceledError at once, whatever the
// daemon does, and the daemon is sent CANCEL.
func TestCallerDeadline(t *testing.T) {
	defer goleak.VerifyNone(t)
	sock := fakeDaemon(t, func(uint64) []byte { return []byte{} }) // never answers
	c, err := Dial(context.Background(), sock, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Pool("p").Call(ctx, "m")
	var ce *bulkhead.CanceledError
	if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call: %v", err)
	}
}
