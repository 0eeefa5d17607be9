package dispatch

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/shmpipe"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

// The fuzz target's limits: frames beyond fuzzMaxFrame are a violation, and
// the worker's bytes fit one ring of fuzzRing (so a fake worker that never
// reads pipe 0 still has room there for the PONGs it asks for).
const (
	fuzzMaxFrame = 1024
	fuzzRing     = 4096
)

// FuzzConnRead plays a worker that answers one call with the fuzzer's bytes,
// over the socket or the shared-memory pipes, against a real conn. On the
// pipes the fuzzer may also lie about the ring (lie, v): store any head, or
// a head a little past the bytes written, into pipe 1, or scribble the
// dispatcher's own tail of pipe 1 (which must change nothing), or its
// reader's tail of pipe 0. Then the worker "dies": its end of the stream
// closes. The read path must not panic, must end, and must deliver exactly
// what the stream says: the reply to the call, or a protocol error at the
// first frame that breaks the protocol, or the end of the stream.
func FuzzConnRead(f *testing.F) {
	hdr := func(length uint32, t wire.Type, id uint64, p ...byte) []byte {
		return append(wire.AppendHeader(nil, wire.Header{Length: length, Type: t, ID: id}), p...)
	}
	f.Add(false, uint8(0), uint64(0), hdr(1, wire.TypeReply, 1, 0xf6))
	f.Add(true, uint8(0), uint64(0), hdr(1, wire.TypeReply, 1, 0xf6))
	f.Add(true, uint8(1), uint64(1<<64-1), hdr(1, wire.TypeReply, 1, 0xf6))
	f.Add(true, uint8(2), uint64(12345), hdr(1, wire.TypeReply, 1, 0xf6))
	f.Add(true, uint8(3), uint64(7), hdr(1, wire.TypeReply, 1, 0xf6))
	f.Add(true, uint8(4), uint64(99), append(hdr(0, wire.TypePing, 5), hdr(1, wire.TypeReply, 1, 0xf6)...))
	f.Add(false, uint8(0), uint64(0), append(hdr(0, wire.TypePing, 9), hdr(2, wire.TypeReply, 1, 0x81, 0x01)...))
	f.Add(false, uint8(0), uint64(0), hdr(4000, wire.TypeReply, 1, 0xf6))
	f.Add(false, uint8(0), uint64(0), hdr(4, wire.TypePong, 1, 1, 2, 3, 4))
	f.Add(false, uint8(0), uint64(0), append(hdr(1, wire.TypeReply, 7, 0xf6), hdr(1, wire.TypeError, 1, 0xa0)...))
	f.Add(false, uint8(0), uint64(0), hdr(1, wire.TypeCall, 1, 0xf6))
	f.Fuzz(func(t *testing.T, shm bool, lie uint8, v uint64, stream []byte) {
		if len(stream) > fuzzRing {
			stream = stream[:fuzzRing]
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fds[1])
		c := New(fds[0], fuzzMaxFrame)
		defer c.Close()
		var toWorker, fromWorker *shmpipe.Pipe // the worker's ends
		var pipe0, pipe1 []byte                // their memory, for the lies
		if shm {
			l, err := newShmLink(fuzzRing, 0)
			if err != nil {
				t.Fatal(err)
			}
			l.file.Close()
			n := len(l.mem) / 2
			pipe0, pipe1 = l.mem[:n], l.mem[n:]
			toWorker, _ = shmpipe.New(pipe0, fuzzRing, 0)
			fromWorker, _ = shmpipe.New(pipe1, fuzzRing, 0)
			c.useShm(l)
		}
		p, err := sendCall(c, "m", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release(p)

		// The worker reads its call, answers with the stream, and dies.
		honest := true
		if shm {
			call := make([]byte, 64)
			if _, err := toWorker.Read(call); err != nil {
				t.Fatal(err)
			}
			if n, err := fromWorker.TryWrite(stream); n != len(stream) || err != nil {
				t.Fatalf("TryWrite = %d, %v", n, err)
			}
			head := uint64(len(stream))
			switch lie % 5 {
			case 1: // any head
				lieAt(pipe1, 0, v)
				honest = v == head
			case 2: // the dispatcher's own tail: must be ignored
				lieAt(pipe1, 64, v)
			case 3: // a head past what was written: stale ring bytes
				lieAt(pipe1, 0, head+v%(fuzzRing+1))
				honest = v%(fuzzRing+1) == 0
			case 4: // the tail of pipe 0: the PONGs' writer must refuse it
				lieAt(pipe0, 64, v)
				honest = false
			}
			fromWorker.Shut()
		} else {
			if _, err := unix.Write(fds[1], stream); err != nil && len(stream) > 0 {
				t.Fatal(err)
			}
			unix.Shutdown(fds[1], unix.SHUT_WR)
		}

		done := make(chan struct{})
		go func() {
			defer close(done)
			c.wait(p, context.Background())
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.Fail(errors.New("fuzz: timed out"))
			<-done
			t.Fatalf("the read path did not end within 10 s of the end of the stream")
		}
		if !p.done {
			t.Fatal("wait returned with the call not done")
		}
		if p.err == nil && p.typ != wire.TypeReply && p.typ != wire.TypeError {
			t.Fatalf("done with no error and frame type %v", p.typ)
		}
		if honest {
			checkAgainstStream(t, p, stream, 1)
		}
	})
}

// lieAt stores v at offset off of a pipe's header, as a worker may.
func lieAt(mem []byte, off int, v uint64) {
	for i := range 8 {
		mem[off+i] = byte(v >> (8 * i))
	}
}

// checkAgainstStream checks p's outcome against what the stream of frames
// says: the answer to id, a protocol error at the first frame that breaks the
// protocol, or the end of the stream. A REPLY or ERROR for another id is
// dropped today, but may become a protocol error: after one, either is
// accepted. So is a protocol error for an answer whose payload is not valid.
func checkAgainstStream(t *testing.T, p *Pending, stream []byte, id uint64) {
	t.Helper()
	protocol := p.err != nil && errors.Is(p.err, wire.ErrProtocol)
	lenient := false
	for rest := stream; ; {
		if len(rest) < wire.HeaderSize {
			if p.err == nil || protocol && !lenient {
				t.Fatalf("stream ends after %d bytes: got %v (%v %x), want the end of the stream", len(stream)-len(rest), p.err, p.typ, p.payload)
			}
			return
		}
		h, err := wire.ParseHeader(rest, fuzzMaxFrame)
		if err != nil {
			if !protocol {
				t.Fatalf("header %x breaks the protocol (%v): got %v", rest[:wire.HeaderSize], err, p.err)
			}
			return
		}
		if len(rest)-wire.HeaderSize < int(h.Length) {
			if p.err == nil || protocol && !lenient {
				t.Fatalf("stream ends inside a frame: got %v, want the end of the stream", p.err)
			}
			return
		}
		payload := rest[wire.HeaderSize : wire.HeaderSize+int(h.Length)]
		rest = rest[wire.HeaderSize+int(h.Length):]
		switch h.Type {
		case wire.TypeReply, wire.TypeError:
			if h.ID != id {
				lenient = true
				continue
			}
			valid := wire.Unmarshal(payload, new(any)) == nil
			if h.Type == wire.TypeError {
				_, err := wire.DecodeError(payload)
				valid = err == nil
			}
			if protocol && (!valid || lenient) {
				return
			}
			if p.err != nil || p.typ != h.Type || !bytes.Equal(p.payload, payload) {
				t.Fatalf("got %v, %v %x; want %v %x", p.err, p.typ, p.payload, h.Type, payload)
			}
			return
		case wire.TypePing, wire.TypePong:
			if len(payload) != 0 {
				if !protocol {
					t.Fatalf("%v with a payload: got %v, want a protocol error", h.Type, p.err)
				}
				return
			}
		case wire.TypeStack: // section 3: id 0, a text string
			if _, err := wire.DecodeStack(payload); err != nil || h.ID != 0 {
				if !protocol {
					t.Fatalf("STACK id %d %x: got %v, want a protocol error", h.ID, payload, p.err)
				}
				return
			}
		case wire.TypeUsage: // for a request sent (only id is)
			if _, err := wire.DecodeUsage(payload); err != nil || h.ID == 0 || h.ID > id {
				if !protocol {
					t.Fatalf("USAGE id %d %x: got %v, want a protocol error", h.ID, payload, p.err)
				}
				return
			}
		default:
			if !protocol {
				t.Fatalf("%v from a worker: got %v, want a protocol error", h.Type, p.err)
			}
			return
		}
	}
}
