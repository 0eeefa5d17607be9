// Package wire implements the framing and value encoding of docs/PROTOCOL.md.
//
// It knows nothing about processes or pools: it turns bytes into frames and
// frames into bytes, and refuses anything the protocol does not allow before
// allocating memory for it.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the protocol version this package speaks.
const Version = 1

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 16

// Frame size limits. DefaultMaxFrame applies when a peer states none.
const (
	DefaultMaxFrame = 16 << 20
	MaxMaxFrame     = 1 << 30
	// MaxHelloSize bounds the first frame of a connection, whatever the
	// frame limit, so that an unauthenticated peer cannot make us allocate.
	MaxHelloSize = 64 << 10
)

// Type is a frame's message type.
type Type uint8

// Message types (PROTOCOL.md section 3).
const (
	TypeHello  Type = 1
	TypeCall   Type = 2
	TypeReply  Type = 3
	TypeError  Type = 4
	TypeCancel Type = 5
	TypeQuit   Type = 6
	TypePing   Type = 7
	TypePong   Type = 8
	// TypeStack is a worker's dump of its threads' stacks, sent when the
	// dispatcher asks by the signal the HELLO named ("stack").
	TypeStack Type = 9
	// TypeUsage is a worker's resource usage during a call, sent just
	// before its answer when the dispatcher asked (BULKHEAD_CALL_USAGE).
	TypeUsage Type = 10

	// Types 16-31 are reserved for the object model.
	typeObjectFirst Type = 16
	typeObjectLast  Type = 31
)

var typeNames = [...]string{
	TypeHello: "HELLO", TypeCall: "CALL", TypeReply: "REPLY", TypeError: "ERROR",
	TypeCancel: "CANCEL", TypeQuit: "QUIT", TypePing: "PING", TypePong: "PONG", TypeStack: "STACK",
	TypeUsage: "USAGE",
}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	if n := objectTypeName(t); n != "" {
		return n
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Known reports whether t is a type of protocol version 1.
func (t Type) Known() bool {
	return (t >= TypeHello && t <= TypeUsage) || (t >= typeObjectFirst && t <= typeObjectLast)
}

// Header is a decoded frame header.
type Header struct {
	Length uint32 // payload bytes after the header
	Type   Type
	Flags  uint8
	ID     uint64
}

// ErrProtocol is wrapped by every framing and decoding error: the peer broke
// the protocol and the connection must be dropped.
var ErrProtocol = errors.New("bulkhead protocol error")

// FrameError describes a frame that was refused.
type FrameError struct {
	Header Header
	Reason string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("bulkhead protocol error: %s (type %v, id %d, length %d)",
		e.Reason, e.Header.Type, e.Header.ID, e.Header.Length)
}

func (e *FrameError) Unwrap() error { return ErrProtocol }

// PutHeader writes h into b[:HeaderSize].
func PutHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	binary.LittleEndian.PutUint32(b[0:], h.Length)
	b[4] = byte(h.Type)
	b[5] = h.Flags
	b[6], b[7] = 0, 0
	binary.LittleEndian.PutUint64(b[8:], h.ID)
}

// AppendHeader appends h to b.
func AppendHeader(b []byte, h Header) []byte {
	var hb [HeaderSize]byte
	PutHeader(hb[:], h)
	return append(b, hb[:]...)
}

// ParseHeader decodes and validates a header. maxFrame bounds the payload.
// It never allocates, so that a hostile length costs nothing.
func ParseHeader(b []byte, maxFrame uint32) (Header, error) {
	_ = b[HeaderSize-1]
	h := Header{
		Length: binary.LittleEndian.Uint32(b[0:]),
		Type:   Type(b[4]),
		Flags:  b[5],
		ID:     binary.LittleEndian.Uint64(b[8:]),
	}
	switch {
	case !h.Type.Known():
		return h, &FrameError{h, "unknown message type"}
	case h.Flags != 0:
		return h, &FrameError{h, "non-zero flags"}
	case b[6] != 0 || b[7] != 0:
		return h, &FrameError{h, "non-zero reserved bytes"}
	case h.Length > maxFrame:
		return h, &FrameError{h, fmt.Sprintf("frame larger than the limit of %d bytes", maxFrame)}
	}
	return h, nil
}

// Reader reads frames from a byte stream. It keeps one buffer and hands out
// payloads that point into it, so a reader of small frames does not allocate;
// a payload is valid until the next call to Next.
type Reader struct {
	r        io.Reader
	buf      []byte
	start    int // first unread byte
	end      int // end of buffered data
	maxFrame uint32
	big      []byte // payload of a frame larger than buf
	owned    bool   // the last payload is not in buf: the caller may keep it

	// ReuseLarge keeps the allocation for frames larger than the read
	// buffer and reuses it for the next large frame, for a reader that
	// never keeps a payload past the next call to Next. By default each
	// large payload is a fresh allocation that the caller may keep.
	ReuseLarge bool

	// Alloc, if set, provides the allocation for a frame larger than the
	// read buffer: n bytes, whose contents Next overwrites. By default it
	// is make([]byte, n).
	Alloc func(n int) []byte
}

// DefaultReadBuffer is the read buffer size: large enough that a batch of
// small frames arrives in one read system call.
const DefaultReadBuffer = 64 << 10

// NewReader returns a Reader of frames of at most maxFrame payload bytes.
func NewReader(r io.Reader, maxFrame uint32) *Reader {
	return NewReaderSize(r, maxFrame, DefaultReadBuffer)
}

// NewReaderSize is NewReader with a read buffer of size bytes (at least
// HeaderSize), for a reader of which there are many and which is mostly
// idle: the daemon's client connections.
func NewReaderSize(r io.Reader, maxFrame uint32, size int) *Reader {
	if maxFrame == 0 || maxFrame > MaxMaxFrame {
		maxFrame = DefaultMaxFrame
	}
	return &Reader{r: r, buf: make([]byte, max(size, HeaderSize)), maxFrame: maxFrame}
}

// SetMaxFrame changes the payload limit for the frames that follow.
func (r *Reader) SetMaxFrame(n uint32) { r.maxFrame = n }

// Buffered reports whether a whole frame header is already buffered, so that
// the next Next will not block in a read before returning a frame or error.
func (r *Reader) Buffered() bool { return r.end-r.start >= HeaderSize }

// fill reads until at least n bytes are buffered. n <= len(r.buf).
func (r *Reader) fill(n int) error {
	if r.end-r.start >= n {
		return nil
	}
	if r.start+n > len(r.buf) {
		copy(r.buf, r.buf[r.start:r.end])
		r.end -= r.start
		r.start = 0
	}
	for r.end-r.start < n {
		m, err := r.r.Read(r.buf[r.end:])
		r.end += m
		if err != nil {
			if r.end-r.start >= n {
				return nil
			}
			if errors.Is(err, io.EOF) && r.end != r.start {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if m == 0 {
			return io.ErrNoProgress
		}
	}
	return nil
}

// Next returns the next frame. The payload aliases the reader's buffer and is
// valid until the next call. A frame that breaks the protocol returns an error
// wrapping ErrProtocol before its payload is read; the stream is then unusable.
// A clean end of stream between frames returns io.EOF.
func (r *Reader) Next() (Header, []byte, error) {
	if err := r.fill(HeaderSize); err != nil {
		return Header{}, nil, err
	}
	h, err := ParseHeader(r.buf[r.start:r.start+HeaderSize], r.maxFrame)
	if err != nil {
		return h, nil, err
	}
	r.start += HeaderSize
	n := int(h.Length)
	if n <= len(r.buf) {
		if err := r.fill(n); err != nil {
			return h, nil, noEOF(err)
		}
		p := r.buf[r.start : r.start+n : r.start+n]
		r.start += n
		r.owned = false
		return h, p, nil
	}
	// Larger than the buffer: read it into its own allocation, which the
	// header has already bounded.
	if cap(r.big) < n {
		if r.Alloc != nil {
			r.big = r.Alloc(n)
		} else {
			r.big = make([]byte, n)
		}
	}
	p := r.big[:n]
	c := copy(p, r.buf[r.start:r.end])
	r.start += c
	if _, err := io.ReadFull(r.r, p[c:]); err != nil {
		return h, nil, noEOF(err)
	}
	r.owned = !r.ReuseLarge
	if r.owned {
		r.big = nil // the caller owns it now; do not hand it out twice
	}
	return h, p, nil
}

// Owned reports whether the payload last returned by Next is the caller's
// to keep (it was read into its own allocation) rather than a view of the
// reader's buffer that the next call overwrites.
func (r *Reader) Owned() bool { return r.owned }

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
