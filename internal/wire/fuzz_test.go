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
	term, _ := cbor.Marshal(Hello{Protocol: 1, PID: 7, Cookie: "ck", Concurrency: 1, SIGTERM: SigtermCancel})
	f.Add(term)
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
		if h.Protocol != Version || h.Cookie != "ck" || h.Concurrency < 1 || h.Concurrency > MaxConcurrency || h.PID <= 0 ||
			len(h.SIGTERM) > MaxHelloSigtermSize {
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
		// Arguments are views of the payload, each one well-formed data
		// item (not necessarily valid: a handler's decoding checks that).
		for i, a := range c.Args {
			if !within(a, data) || decMode.Wellformed(a) != nil {
				t.Fatalf("argument %d (% x) is not an item of the payload", i, []byte(a))
			}
			checkBytesView(t, a)
		}
	})
}

// FuzzBytesView checks the zero-copy byte string view against the decoder:
// they agree on what is a byte string and on its contents.
func FuzzBytesView(f *testing.F) {
	for _, v := range []any{[]byte{}, []byte{1, 2}, make([]byte, 300), "text", nil, 5} {
		b, _ := Marshal(v)
		f.Add(b)
	}
	f.Add([]byte{0x5f, 0x41, 1, 0xff})
	f.Add([]byte{0x5b, 0, 0, 0, 0, 0, 0, 0, 1, 9})
	f.Fuzz(checkBytesView)
}

func checkBytesView(t *testing.T, item []byte) {
	got, err := BytesView(item)
	var want []byte
	derr := Unmarshal(item, &want)
	isBytes := len(item) > 0 && (item[0]>>5 == 2 || item[0] == 0xf6)
	switch {
	case err != nil && !errors.Is(err, ErrNotBytes):
		t.Fatalf("BytesView(% x): error %v does not wrap ErrNotBytes", item, err)
	case err == nil && derr != nil:
		t.Fatalf("BytesView(% x) accepted what the decoder refuses: %v", item, derr)
	case err == nil && (!bytes.Equal(got, want) || (got == nil) != (want == nil)):
		t.Fatalf("BytesView(% x) = % x, the decoder % x", item, got, want)
	case err == nil && len(got) > 0 && !within(got, item):
		t.Fatalf("BytesView(% x) copied", item)
	case err != nil && derr == nil && isBytes:
		t.Fatalf("BytesView(% x) refused a byte string the decoder takes: %v", item, err)
	}
}

// FuzzCheckValue: CheckValue never panics, and a value it accepts decodes
// (the SDKs and Reply.Decode take what it lets through).
func FuzzCheckValue(f *testing.F) {
	for _, s := range [][]byte{{0x01}, {0xa2, 0x01, 0xf5, 0x61, 'a', 0xf6}, {0x83, 0x01, 0x62, 'h', 'i', 0xf9, 0x3c, 0x00},
		{0x61, 0xff}, {0xf8, 0x20}, {0xbb, 0, 0, 0, 1, 0, 0, 0, 0}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if CheckValue(p) != nil {
			return
		}
		var v any
		if err := Unmarshal(p, &v); err != nil {
			t.Fatalf("CheckValue accepted % x, which does not decode: %v", p, err)
		}
	})
}

// FuzzDecodeStack: a STACK payload either decodes to text of at most
// MaxStackDump bytes or is a protocol error; it never panics.
func FuzzDecodeStack(f *testing.F) {
	var b Builder
	_ = b.Value(TypeStack, 0, "goroutine 1 [running]:\nmain.main()", DefaultMaxFrame)
	f.Add(b.Bytes()[HeaderSize:])
	f.Add([]byte{0x61})       // a text string cut short
	f.Add([]byte{0x01})       // not text
	f.Add([]byte{0x7f, 0xff}) // indefinite length
	f.Fuzz(func(t *testing.T, p []byte) {
		s, err := DecodeStack(p)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if len(s) > MaxStackDump {
			t.Fatalf("%d bytes kept", len(s))
		}
	})
}

// FuzzDecodeUsage: a USAGE payload decodes to two numbers that encode back
// to a payload that decodes the same, or is a protocol error.
func FuzzDecodeUsage(f *testing.F) {
	var b Builder
	_ = b.Usage(7, Usage{CPU: 1500, MaxRSS: 1 << 30}, DefaultMaxFrame)
	f.Add(b.Bytes()[HeaderSize:])
	f.Add([]byte{0x81, 0x01})       // one item
	f.Add([]byte{0x83, 0x01, 2, 3}) // three
	f.Add([]byte{0x82, 0x20, 0x01}) // a negative
	f.Fuzz(func(t *testing.T, p []byte) {
		u, err := DecodeUsage(p)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		var b Builder
		if err := b.Usage(1, u, DefaultMaxFrame); err != nil {
			t.Fatal(err)
		}
		if v, err := DecodeUsage(b.Bytes()[HeaderSize:]); err != nil || v != u {
			t.Fatalf("round trip: %+v, %v; want %+v", v, err, u)
		}
	})
}
