package wire

import (
	"fmt"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// decodeCallReflect is the CALL decoder DecodeCall replaced: decMode
// decoding into a toarray struct, then the same checks. It is the reference
// that FuzzDecodeCallMatchesReflect holds the hand-written decoder to.
func decodeCallReflect(p []byte, c *Call) error {
	if len(p) == 0 || p[0] != 0x83 && p[0] != 0x84 {
		return &FrameError{Header{Type: TypeCall}, "CALL payload is not an array of 3 or 4 items"}
	}
	var w callView
	c.Traceparent = ""
	if p[0] == 0x84 {
		var t tracedCallView
		if err := decMode.Unmarshal(p, &t); err != nil {
			return fmt.Errorf("%w: CALL payload: %v", ErrProtocol, err)
		}
		if len(t.Traceparent) > MaxTraceparent {
			return fmt.Errorf("%w: CALL payload: traceparent of %d bytes", ErrProtocol, len(t.Traceparent))
		}
		if ValidTraceparent(t.Traceparent) {
			c.Traceparent = t.Traceparent
		}
		w = callView{Method: t.Method, Deadline: t.Deadline, Args: t.Args}
	} else if err := decMode.Unmarshal(p, &w); err != nil {
		return fmt.Errorf("%w: CALL payload: %v", ErrProtocol, err)
	}
	c.Method, c.Deadline = w.Method, w.Deadline
	c.Args = c.Args[:0]
	for _, a := range w.Args {
		c.Args = append(c.Args, cbor.RawMessage(a))
	}
	if len(c.Method) == 0 || len(c.Method) > MaxMethodBytes {
		return fmt.Errorf("%w: CALL method name of %d bytes (want 1 to %d)", ErrProtocol, len(c.Method), MaxMethodBytes)
	}
	if c.Deadline < 0 {
		return fmt.Errorf("%w: CALL deadline is negative", ErrProtocol)
	}
	return checkArgs("CALL", c.Args)
}

// callView is a CALL payload decoded without copying its arguments.
type callView struct {
	_        struct{} `cbor:",toarray"`
	Method   string
	Deadline int64
	Args     []rawView
}

// tracedCallView is a CALL payload with its traceparent.
type tracedCallView struct {
	_           struct{} `cbor:",toarray"`
	Method      string
	Deadline    int64
	Args        []rawView
	Traceparent string
}

// rawView is the encoding of one data item as a slice of the decoder's
// input. cbor.RawMessage copies; for a 1 MiB argument that copy is as
// expensive as the system call that carried it.
type rawView []byte

func (v *rawView) UnmarshalCBOR(data []byte) error {
	*v = data
	return nil
}

// FuzzDecodeCallMatchesReflect: the hand-written CALL decoder accepts
// exactly what the reflective one did, with the same method, deadline and
// argument views.
func FuzzDecodeCallMatchesReflect(f *testing.F) {
	var b Builder
	_ = b.Call(1, "m", 5, []any{1, "x", []byte{1}, map[string]any{"a": nil}, []any{[]any{1.5}}}, DefaultMaxFrame)
	f.Add(b.Bytes()[HeaderSize:])
	for _, s := range [][]byte{
		{0x83, 0x61, 'm', 0x00, 0x80},
		{0x83, 0x61, 'm', 0x20, 0x80},                                                              // deadline -1
		{0x83, 0x61, 'm', 0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x80},                                   // deadline 2^63
		{0x83, 0x61, 'm', 0x00, 0x81, 0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02},                      // duplicate key
		{0x83, 0x61, 'm', 0x00, 0x9f, 0xff},                                                        // indefinite array
		{0x83, 0x60, 0x00, 0x80},                                                                   // empty method
		{0x83, 0x61, 0xff, 0x00, 0x80},                                                             // invalid UTF-8
		{0x83, 0x61, 'm', 0x00, 0x81, 0xf7},                                                        // undefined
		{0x83, 0x61, 'm', 0x00, 0x81, 0xc1, 0x00},                                                  // a tag
		{0x83, 0x61, 'm', 0x00, 0x80, 0x00},                                                        // trailing byte
		{0x83, 0x61, 'm', 0xf6, 0x80},                                                              // null deadline
		{0x83, 0x61, 'm', 0xfb, 0, 0, 0, 0, 0, 0, 0, 0, 0x80},                                      // float deadline
		{0x83, 0x41, 'm', 0x00, 0x80},                                                              // byte-string method
		[]byte("\x84\x61m\x00\x80\x78\x3700-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), // traced
		[]byte("\x84\x61m\x00\x80\x63abc"),                                                         // a traceparent that is not one: dropped
		[]byte("\x84\x61m\x00\x80\x43abc"),                                                         // not text
		[]byte("\x84\x61m\x00\x80\x62\xff\xfe"),                                                    // not UTF-8
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got, want Call
		gerr := DecodeCall(data, &got)
		werr := decodeCallReflect(data, &want)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("% x: hand-written: %v; reflective: %v", data, gerr, werr)
		}
		if gerr != nil {
			return
		}
		if got.Method != want.Method || got.Deadline != want.Deadline || got.Traceparent != want.Traceparent ||
			!slices.EqualFunc(got.Args, want.Args, func(a, b cbor.RawMessage) bool { return string(a) == string(b) }) {
			t.Fatalf("% x: hand-written %+v, reflective %+v", data, got, want)
		}
	})
}

// TestDecodeCallAllocs: a worker decodes a CALL whose method repeats
// without allocating.
func TestDecodeCallAllocs(t *testing.T) {
	var b Builder
	if err := b.Call(1, "echo", 5, []any{[]byte("0123456789abcdef"), 7}, DefaultMaxFrame); err != nil {
		t.Fatal(err)
	}
	p := b.Bytes()[HeaderSize:]
	var c Call
	if err := DecodeCall(p, &c); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = DecodeCall(p, &c) }); n != 0 {
		t.Errorf("DecodeCall: %v allocations per call, want 0", n)
	}
}

// TestFastArgsMatchEncoder: the arguments Builder encodes without the
// encoder come out byte for byte as encMode writes them.
func TestFastArgsMatchEncoder(t *testing.T) {
	for _, v := range []any{nil, []byte(nil), []byte{}, []byte("x"), make([]byte, 23), make([]byte, 24),
		make([]byte, 255), make([]byte, 256), make([]byte, 65535), make([]byte, 65536)} {
		var b Builder
		if err := b.Call(1, "m", 0, []any{v}, DefaultMaxFrame); err != nil {
			t.Fatal(err)
		}
		var c Call
		if err := DecodeCall(b.Bytes()[HeaderSize:], &c); err != nil {
			t.Fatal(err)
		}
		want, err := Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Args) != 1 || string(c.Args[0]) != string(want) {
			t.Errorf("%T of %d bytes: encoded % .16x, encoder writes % .16x", v, len(fmt.Sprint(v)), []byte(c.Args[0]), want)
		}
	}
}
