//go:build cgo

package csdk

import (
	"bytes"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// seeds are values near the rules of PROTOCOL.md section 5.
func seeds() [][]byte {
	deep := func(k int, leaf byte) []byte { return append(bytes.Repeat([]byte{0x81}, k), leaf) }
	return [][]byte{
		{0x01}, {0x80}, {0xa0}, {0xf6}, {0xf5}, {0xf7}, {0xf8, 0x20}, {0xf9, 0x3c, 0x00},
		{0x62, 'h', 'i'}, {0x62, 0xc3, 0x28}, {0x63, 0xed, 0xa0, 0x80}, {0x42, 0, 1},
		{0xa2, 0x01, 0xf5, 0x18, 0x01, 0xf6}, {0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02},
		{0xa1, 0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x01}, {0xa1, 0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		{0xa1, 0x41, 'a', 0x01}, {0xc1, 0x01}, {0x9f, 0xff}, {0x7f, 0xff}, {0x1c}, {0x01, 0x02},
		{0x9b, 0, 0, 0, 1, 0, 0, 0, 0}, {0x5b, 0xff, 0, 0, 0, 0, 0, 0, 0},
		deep(30, 0x01), deep(31, 0x01), deep(32, 0x01), deep(31, 0x80), deep(32, 0x80),
	}
}

// FuzzCheck runs the C SDK's value checker against the dispatcher's
// (wire.CheckValue) and the Go SDK's decoder (wire.Unmarshal):
//   - a result the C SDK lets out (level 2) is one the dispatcher takes;
//   - a value the dispatcher takes, the C SDK takes as an argument (level 1);
//   - an argument the C SDK takes, the Go SDK's decoder takes too.
func FuzzCheck(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		goErr := wire.CheckValue(p)
		arg, res := Check(p, 1), Check(p, 2)
		if res == nil && goErr != nil {
			t.Fatalf("C SDK sends % x as a result; the dispatcher refuses it: %v", p, goErr)
		}
		if goErr == nil && arg != nil {
			t.Fatalf("the dispatcher takes % x; the C SDK refuses it: %v", p, arg)
		}
		if res == nil && arg != nil {
			t.Fatalf("% x passes at level 2 but not at level 1: %v", p, arg)
		}
		var v any
		if err := wire.Unmarshal(p, &v); arg == nil && err != nil {
			t.Fatalf("C SDK takes % x; the Go SDK's decoder refuses it: %v", p, err)
		}
	})
}

// FuzzParseCall runs the C SDK's CALL parser against the Go SDK's
// (wire.DecodeCall): where the C SDK takes a CALL, Go reads the same method,
// deadline and arguments; where Go takes one that keeps the value rules, so
// does C.
func FuzzParseCall(f *testing.F) {
	var b wire.Builder
	for _, args := range [][]any{nil, {1, "x"}, {[]byte{1, 2}, map[string]any{"k": []any{1.5, nil, true}}}} {
		b.Reset()
		if err := b.Call(7, "method", 1234, args, wire.DefaultMaxFrame); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes()[wire.HeaderSize:])
	}
	for _, s := range seeds() {
		f.Add(append([]byte{0x83, 0x61, 'm', 0x00, 0x81}, s...))
	}
	f.Add([]byte{0x83, 0x61, 'm', 0x20, 0x80})                            // negative deadline
	f.Add([]byte{0x83, 0x60, 0x00, 0x80})                                 // empty method
	f.Add([]byte{0x83, 0x61, 'm', 0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x80}) // deadline over int64
	f.Add([]byte{0x83, 0x61, 'm', 0x00, 0x81, 0x01, 0x00})                // trailing byte
	b.Reset()
	_ = b.Call(7, "m", 0, []any{1}, wire.DefaultMaxFrame)
	_ = b.Trace("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", wire.DefaultMaxFrame)
	f.Add(b.Bytes()[wire.HeaderSize:])                    // traced
	f.Add([]byte{0x84, 0x61, 'm', 0x00, 0x80, 0x61, 'x'}) // a traceparent that is not one: ignored
	f.Fuzz(func(t *testing.T, p []byte) {
		var gc wire.Call
		goErr := wire.DecodeCall(p, &gc)
		c, cErr := ParseCall(p)
		if cErr == nil {
			if goErr != nil {
				t.Fatalf("C SDK takes CALL % x; Go refuses it: %v", p, goErr)
			}
			if c.Method != gc.Method || c.Deadline != gc.Deadline || c.NArgs != len(gc.Args) || c.Traceparent != gc.Traceparent {
				t.Fatalf("CALL % x: C read %q %d %d args %q, Go %q %d %d args %q", p, c.Method, c.Deadline, c.NArgs,
					c.Traceparent, gc.Method, gc.Deadline, len(gc.Args), gc.Traceparent)
			}
			for i, a := range c.Args {
				if !bytes.Equal(a, gc.Args[i]) {
					t.Fatalf("CALL % x: argument %d is % x in C, % x in Go", p, i, a, gc.Args[i])
				}
			}
			return
		}
		if goErr == nil && !nullInEnvelope(p) && wire.CheckValue(p) == nil {
			t.Fatalf("Go takes CALL % x and it keeps the value rules; the C SDK refuses it: %v", p, cErr)
		}
	})
}

// nullInEnvelope reports whether a CALL's deadline or args is null: the Go
// SDK reads those as 0 and no arguments; PROTOCOL.md says an integer and an
// array, and the C SDK keeps to that.
func nullInEnvelope(p []byte) bool {
	var env []cbor.RawMessage
	if wire.Unmarshal(p, &env) != nil || len(env) != 3 {
		return false
	}
	return bytes.Equal(env[1], []byte{0xf6}) || bytes.Equal(env[2], []byte{0xf6})
}

// FuzzParseObject runs the C SDK's ACTIVATE and OBJCALL parser against the
// Go SDK's (wire.DecodeActivate, wire.DecodeObjCall): what C takes, Go
// takes and reads alike; what Go takes and keeps the value rules, C takes.
func FuzzParseObject(f *testing.F) {
	var b wire.Builder
	_ = b.Activate(1, "Counter", 7, []any{1, "x"}, wire.DefaultMaxFrame)
	f.Add(true, b.Bytes()[wire.HeaderSize:])
	b.Reset()
	_ = b.ObjCall(2, 7, "add", 99, []any{map[string]any{"k": 1.5}}, wire.DefaultMaxFrame)
	f.Add(false, b.Bytes()[wire.HeaderSize:])
	f.Add(true, []byte{0x83, 0x61, 0x01, 0x01, 0x80})                                  // a control character in the class
	f.Add(true, []byte{0x83, 0x61, 'C', 0x00, 0x80})                                   // object 0
	f.Add(false, []byte{0x84, 0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x61, 'm', 0x00, 0x80}) // object 2^63
	f.Fuzz(func(t *testing.T, activate bool, p []byte) {
		c, cErr := ParseObject(activate, p)
		var goErr error
		var object uint64
		var name string
		var deadline int64
		var nargs int
		if activate {
			var a wire.Activate
			goErr = wire.DecodeActivate(p, &a)
			object, name, nargs = a.Object, a.Class, len(a.Args)
		} else {
			var o wire.ObjCall
			goErr = wire.DecodeObjCall(p, &o)
			object, name, deadline, nargs = o.Object, o.Method, o.Deadline, len(o.Args)
		}
		if cErr == nil {
			if goErr != nil {
				t.Fatalf("C takes % x (activate %v); Go refuses it: %v", p, activate, goErr)
			}
			if c.Object != object || c.Name != name || c.Deadline != deadline || c.NArgs != nargs {
				t.Fatalf("% x: C read %+v, Go %d %q %d %d", p, c, object, name, deadline, nargs)
			}
			return
		}
		if goErr == nil && !nullInObject(p) && wire.CheckValue(p) == nil {
			t.Fatalf("Go takes % x (activate %v) and it keeps the value rules; C refuses it: %v", p, activate, cErr)
		}
	})
}

// nullInObject reports whether an envelope field is null, which the Go
// SDK reads as a zero value and PROTOCOL.md does not allow.
func nullInObject(p []byte) bool {
	var env []cbor.RawMessage
	if wire.Unmarshal(p, &env) != nil {
		return false
	}
	for _, e := range env {
		if bytes.Equal(e, []byte{0xf6}) {
			return true
		}
	}
	return false
}
