package wire

import (
	"encoding/binary"
	"fmt"
)

// Trace context (PROTOCOL.md section 3, CALL): a W3C traceparent travels as
// a CALL's optional fourth item, to workers whose HELLO says "trace":
// "traceparent". It is added after the frame is built (Builder.Trace), so
// that the encoder of every call stays as it is.

// TraceW3C is HELLO's "trace" of a worker that takes a traceparent in CALL.
const TraceW3C = "traceparent"

// MaxTraceparent bounds the traceparent item of a CALL: W3C's version 00
// form is 55 bytes; later versions may append fields.
const MaxTraceparent = 256

// Trace appends traceparent tp to the CALL or OBJCALL frame built last, as
// the payload array's last item. It drops the frame and returns an error if
// the frame is neither or would be over maxFrame.
func (b *Builder) Trace(tp string, maxFrame uint32) error {
	data := b.buf.Bytes()
	if b.start+HeaderSize >= len(data) || !untraced(Type(data[b.start+4]), data[b.start+HeaderSize]) {
		b.drop()
		return fmt.Errorf("wire: Trace after a frame that is not an untraced CALL or OBJCALL")
	}
	head := data[b.start+HeaderSize]
	n := uint64(binary.LittleEndian.Uint32(data[b.start:]))
	b.head(3, uint64(len(tp)))
	b.buf.WriteString(tp)
	n += uint64(b.buf.Len() - len(data))
	if n > uint64(maxFrame) {
		b.drop()
		return fmt.Errorf("%w: CALL payload of %d bytes with its traceparent is over the frame limit of %d",
			ErrTooLarge, n, maxFrame)
	}
	data = b.buf.Bytes()
	data[b.start+HeaderSize] = head + 1 // one more array item
	binary.LittleEndian.PutUint32(data[b.start:], uint32(n))
	return nil
}

// untraced reports whether a frame of type t whose payload starts with head
// is a CALL or OBJCALL without a traceparent.
func untraced(t Type, head byte) bool {
	return t == TypeCall && head == 0x83 || t == TypeObjCall && head == 0x84
}

// ValidTraceparent reports whether tp is a W3C traceparent of version 00:
// "00-" 32 lowercase hex digits (the trace id, not all zero) "-" 16 (the
// parent id, not all zero) "-" 2 (the flags).
func ValidTraceparent(tp string) bool {
	if len(tp) != 55 || tp[:3] != "00-" || tp[35] != '-' || tp[52] != '-' {
		return false
	}
	return hexNonZero(tp[3:35]) && hexNonZero(tp[36:52]) && isHex(tp[53:55])
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func hexNonZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return isHex(s)
		}
	}
	return false
}

// traceparent reads a CALL's fourth item into c: a text string of at most
// MaxTraceparent bytes, kept if it is a valid traceparent.
func (k *checker) traceparent(c *Call) error {
	start := k.off
	major, _, n, err := k.head()
	if err == nil && major != 3 {
		err = fmt.Errorf("of major type %d, not a text string", major)
	}
	if err == nil && n > MaxTraceparent {
		err = fmt.Errorf("%d bytes (at most %d)", n, MaxTraceparent)
	}
	if err != nil {
		return err
	}
	k.off = start
	if err := k.item(2); err != nil {
		return err
	}
	if tp := k.p[k.off-int(n) : k.off]; ValidTraceparent(string(tp)) {
		c.Traceparent = string(tp)
	}
	return nil
}

// CopyTo makes c a copy of the frames built in b, referenced byte strings
// included (referenced again, not copied), so that Trace can change c's
// last frame and leave b's as it is.
func (b *Builder) CopyTo(c *Builder) {
	c.Reset()
	c.buf.Write(b.buf.Bytes())
	c.refs = append(c.refs, b.refs...)
	c.start, c.first = b.start, b.first
}
