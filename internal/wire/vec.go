package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/bulkhead-go/bulkhead/internal/fdio"
)

// MinRef is the smallest byte string that CallVec and ValueVec reference
// instead of copying into the frame buffer. Below it a copy costs less than
// the writer role it forces (a referenced frame is written by its builder,
// not combined with other callers' frames). It equals DefaultReadBuffer, the
// size above which a reader gives a payload its own allocation anyway.
const MinRef = 64 << 10

// ref is a byte string that goes on the wire after buf[:at], uncopied.
type ref struct {
	at int
	b  []byte
}

// CallVec appends a CALL frame like Call, except that a top-level argument
// of type []byte and at least MinRef bytes is referenced, not copied: only
// its CBOR head goes into the buffer. The bytes on the wire are the same as
// Call's. Until the frame is written (Segments) and the Builder Reset, the
// Builder keeps the caller's slices, which must not change.
func (b *Builder) CallVec(id uint64, method string, deadline int64, args []any, maxFrame uint32) error {
	return b.call(id, method, deadline, args, maxFrame, true)
}

// ValueVec appends a frame whose payload is one encoded value, like Value,
// except that a []byte of at least MinRef bytes is referenced as in CallVec.
func (b *Builder) ValueVec(t Type, id uint64, v any, maxFrame uint32) error {
	b.begin()
	if !b.ref(v) {
		if err := b.marshal(v); err != nil {
			b.drop()
			return fmt.Errorf("encoding %v value (%T): %w", t, v, err)
		}
	}
	return b.end(t, id, maxFrame)
}

// IsLarge reports whether CallVec and ValueVec would reference v rather than
// copy it. Only the exact type []byte qualifies: a named type may have its
// own encoding.
func IsLarge(v any) bool {
	p, ok := v.([]byte)
	return ok && len(p) >= MinRef
}

// AnyLarge reports whether CallVec would reference any of args.
func AnyLarge(args []any) bool {
	for _, a := range args {
		if IsLarge(a) {
			return true
		}
	}
	return false
}

// ref appends v as a referenced byte string if it qualifies. A qualifying
// slice is not nil, so its encoding is the byte string head and the bytes
// (a nil []byte would encode as null).
func (b *Builder) ref(v any) bool {
	p, ok := v.([]byte)
	return ok && b.refBytes(p)
}

// refBytes appends p as a referenced byte string if it is large enough.
func (b *Builder) refBytes(p []byte) bool {
	if len(p) < MinRef {
		return false
	}
	b.head(2, uint64(len(p)))
	b.refs = append(b.refs, ref{at: b.buf.Len(), b: p})
	return true
}

// HasRefs reports whether the frames reference byte strings they did not copy.
func (b *Builder) HasRefs() bool { return len(b.refs) > 0 }

// Segments appends to dst the pieces of the frames built so far, in stream
// order: buffer bytes and referenced byte strings, none empty. Writing them
// one after the other (or with one writev) sends exactly the frames.
func (b *Builder) Segments(dst [][]byte) [][]byte {
	data := b.buf.Bytes()
	off := 0
	for _, r := range b.refs {
		if r.at > off {
			dst = append(dst, data[off:r.at])
		}
		if len(r.b) > 0 {
			dst = append(dst, r.b)
		}
		off = r.at
	}
	if off < len(data) {
		dst = append(dst, data[off:])
	}
	return dst
}

// ErrNotBytes is returned by BytesView for an item that is not a byte string.
var ErrNotBytes = errors.New("not a CBOR byte string")

// Flush writes the frames built so far to w and resets the Builder. Without
// references that is one Write of the buffer; with them, one writev of the
// segments when w is a descriptor (fdio.WriteAll), listed in *scratch. When
// Flush returns, nothing holds the referenced slices any more.
func (b *Builder) Flush(w io.Writer, scratch *[][]byte) error {
	var err error
	if b.HasRefs() {
		*scratch = b.Segments((*scratch)[:0])
		_, err = fdio.WriteAll(w, *scratch)
		clear(*scratch)
	} else {
		_, err = w.Write(b.buf.Bytes())
	}
	b.Reset()
	return err
}

// BytesView returns the contents of the CBOR byte string item, which must
// be all of item, as a slice of item: nothing is copied. A null item is a
// nil slice. Anything else, an indefinite length included, is an error
// wrapping ErrNotBytes.
func BytesView(item []byte) ([]byte, error) {
	if len(item) == 1 && item[0] == 0xf6 {
		return nil, nil
	}
	if len(item) == 0 {
		return nil, ErrNotBytes
	}
	if item[0]>>5 != 2 {
		return nil, fmt.Errorf("%w (major type %d)", ErrNotBytes, item[0]>>5)
	}
	var n uint64
	hl := 1
	switch info := item[0] & 0x1f; {
	case info < 24:
		n = uint64(info)
	case info <= 27:
		w := 1 << (info - 24) // 1, 2, 4 or 8 bytes of length
		if len(item) < 1+w {
			return nil, fmt.Errorf("%w: truncated head", ErrNotBytes)
		}
		hl += w
		switch w {
		case 1:
			n = uint64(item[1])
		case 2:
			n = uint64(binary.BigEndian.Uint16(item[1:]))
		case 4:
			n = uint64(binary.BigEndian.Uint32(item[1:]))
		default:
			n = binary.BigEndian.Uint64(item[1:])
		}
	default:
		return nil, fmt.Errorf("%w: indefinite or reserved length", ErrNotBytes)
	}
	if n != uint64(len(item)-hl) {
		return nil, fmt.Errorf("%w: a byte string of %d bytes in an item of %d", ErrNotBytes, n, len(item))
	}
	return item[hl:len(item):len(item)], nil
}

// AppendFrame appends the one frame that src holds (built with any id) to b,
// with its id set to id. References are carried over, not copied, so the
// caller's slices must stay unchanged until b is written. It lets a caller
// encode outside any lock (a panicking MarshalCBOR then holds nothing) and
// only number and queue the frame under one.
func (b *Builder) AppendFrame(src *Builder, id uint64) {
	base := b.buf.Len()
	b.buf.Write(src.buf.Bytes())
	binary.LittleEndian.PutUint64(b.buf.Bytes()[base+8:], id)
	for _, r := range src.refs {
		b.refs = append(b.refs, ref{at: base + r.at, b: r.b})
	}
}

// Discard drops the first n bytes of a Builder that holds no references:
// what a non-blocking write managed to send. The rest stays queued.
func (b *Builder) Discard(n int) {
	if len(b.refs) > 0 {
		panic("wire: Discard on a Builder with references")
	}
	b.buf.Next(n)
	if b.buf.Len() == 0 {
		b.buf.Reset()
	}
}

// Cap returns the capacity of the Builder's buffer, so that a pool of
// Builders can drop one that grew large.
func (b *Builder) Cap() int { return b.buf.Cap() }
