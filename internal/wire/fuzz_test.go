package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// FuzzReader feeds arbitrary bytes to the frame reader: it must never panic,
// never return a payload over the limit, and fail only with a protocol error
// or an end-of-stream error.
func FuzzReader(f *testing.F) {
	var b Builder
	_ = b.Call(1, "upper", 0, []any{"hi"}, DefaultMaxFrame)
	f.Add(b.Bytes())
	b.Reset()
	b.Empty(TypePing, 9)
	_ = b.Value(TypeReply, 2, map[string]any{"k": []any{1, 2}}, DefaultMaxFrame)
	f.Add(b.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("garbage that a broken worker writes\n"))
	const limit = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), limit)
		for {
			h, p, err := r.Next()
			if err != nil {
				if !errors.Is(err, ErrProtocol) && err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if len(p) != int(h.Length) || h.Length > limit || !h.Type.Known() {
				t.Fatalf("bad frame %+v with %d payload bytes", h, len(p))
			}
			if h.Type == TypeCall {
				var c Call
				_ = DecodeCall(p, &c)
			}
			if h.Type == TypeError {
				_, _ = DecodeError(p)
			}
		}
	})
}

// FuzzDecodeHello checks that no HELLO payload panics the decoder and that
// anything accepted satisfies the documented bounds.
func FuzzDecodeHello(f *testing.F) {
	good, _ := cbor.Marshal(Hello{Protocol: 1, PID: 7, Cookie: "ck", Methods: []string{"a", "b"}, Concurrency: 4, Marker: true})
	f.Add(good)
	v2, _ := cbor.Marshal(map[string]any{"protocol": 2})
	f.Add(v2)
	f.Add([]byte{0xa0})
	f.Add([]byte("not cbor at all"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHello(data, "ck")
		if err != nil {
			var he *HelloError
			if !errors.As(err, &he) {
				t.Fatalf("error is not a HelloError: %v", err)
			}
			return
		}
		if h.Protocol != Version || h.Cookie != "ck" || h.Concurrency < 1 || h.Concurrency > MaxConcurrency || h.PID <= 0 {
			t.Fatalf("accepted invalid hello %+v", h)
		}
	})
}

// FuzzDecodeCall checks the CALL decoder, as a worker runs it on input from
// the dispatcher.
func FuzzDecodeCall(f *testing.F) {
	var b Builder
	_ = b.Call(1, "m", 5, []any{1, "x", []byte{1}, map[string]any{"a": nil}}, DefaultMaxFrame)
	f.Add(b.Bytes()[HeaderSize:])
	f.Add([]byte{0x83, 0x61, 'm', 0x00, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Call
		if err := DecodeCall(data, &c); err != nil {
			return
		}
		if c.Method == "" || len(c.Method) > MaxMethodBytes || c.Deadline < 0 {
			t.Fatalf("accepted invalid call %+v", c)
		}
	})
}
