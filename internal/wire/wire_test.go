package wire

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Length: 0, Type: TypeQuit, ID: 0},
		{Length: 12, Type: TypeCall, ID: 1},
		{Length: DefaultMaxFrame, Type: TypeReply, ID: 1<<64 - 1},
		{Length: 3, Type: 17, ID: 5}, // object-model range
	} {
		var b [HeaderSize]byte
		PutHeader(b[:], h)
		got, err := ParseHeader(b[:], DefaultMaxFrame)
		if err != nil || got != h {
			t.Errorf("ParseHeader(PutHeader(%+v)) = %+v, %v", h, got, err)
		}
	}
}

func TestParseHeaderRefuses(t *testing.T) {
	valid := func() []byte {
		var b [HeaderSize]byte
		PutHeader(b[:], Header{Length: 10, Type: TypeCall, ID: 1})
		return b[:]
	}
	tests := []struct {
		name   string
		mutate func(b []byte)
		reason string
	}{
		{"unknown type 0", func(b []byte) { b[4] = 0 }, "unknown message type"},
		{"unknown type 11", func(b []byte) { b[4] = 11 }, "unknown message type"},
		{"unknown type 32", func(b []byte) { b[4] = 32 }, "unknown message type"},
		{"flags", func(b []byte) { b[5] = 1 }, "non-zero flags"},
		{"reserved", func(b []byte) { b[7] = 1 }, "non-zero reserved"},
		{"too long", func(b []byte) { b[0], b[1], b[2], b[3] = 0xff, 0xff, 0xff, 0xff }, "larger than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := valid()
			tt.mutate(b)
			_, err := ParseHeader(b, 1024)
			var fe *FrameError
			if !errors.As(err, &fe) || !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("err = %v, want FrameError containing %q", err, tt.reason)
			}
		})
	}
}

// A header that claims a huge payload is refused before any payload is read
// or allocated: the reader below would fail the test if it were asked for more.
func TestReaderRefusesOversizeBeforeReading(t *testing.T) {
	var b [HeaderSize]byte
	PutHeader(b[:], Header{Length: MaxMaxFrame, Type: TypeReply, ID: 1})
	// TotalAlloc counts the whole process's allocations (a goroutine of the
	// runtime or of an earlier test may allocate meanwhile): the least of a
	// few tries is the reader's.
	least := uint64(1 << 62)
	for range 5 {
		r := NewReader(&strictReader{t: t, data: b[:]}, 1<<20)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, _, err := r.Next(); !errors.Is(err, ErrProtocol) {
			t.Fatalf("err = %v, want ErrProtocol", err)
		}
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	if least > 4096 {
		t.Errorf("refusing an oversized frame allocated %d bytes", least)
	}
}

type strictReader struct {
	t    *testing.T
	data []byte
}

func (s *strictReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		s.t.Fatal("reader asked for bytes beyond the header")
	}
	n := copy(p, s.data)
	s.data = s.data[n:]
	return n, nil
}

func TestReaderFrames(t *testing.T) {
	var b Builder
	if err := b.Call(1, "upper", 0, []any{"hi"}, DefaultMaxFrame); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{7}, 200<<10) // larger than the read buffer
	if err := b.Value(TypeReply, 2, big, DefaultMaxFrame); err != nil {
		t.Fatal(err)
	}
	b.Empty(TypeQuit, 0)

	// Deliver one byte at a time to exercise every partial-read path.
	r := NewReader(io.MultiReader(oneByteReader{bytes.NewReader(b.Bytes())}), DefaultMaxFrame)
	h, p, err := r.Next()
	if err != nil || h.Type != TypeCall || h.ID != 1 {
		t.Fatalf("first frame %+v, %v", h, err)
	}
	var c Call
	if err := DecodeCall(p, &c); err != nil || c.Method != "upper" || len(c.Args) != 1 {
		t.Fatalf("DecodeCall = %+v, %v", c, err)
	}
	var s string
	if err := Unmarshal(c.Args[0], &s); err != nil || s != "hi" {
		t.Fatalf("arg = %q, %v", s, err)
	}
	h, p, err = r.Next()
	if err != nil || h.Type != TypeReply || h.ID != 2 {
		t.Fatalf("second frame %+v, %v", h, err)
	}
	var got []byte
	if err := Unmarshal(p, &got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big payload mismatch: %v", err)
	}
	if h, _, err = r.Next(); err != nil || h.Type != TypeQuit {
		t.Fatalf("third frame %+v, %v", h, err)
	}
	if _, _, err = r.Next(); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func TestReaderTruncated(t *testing.T) {
	var b Builder
	_ = b.Value(TypeReply, 1, "hello", DefaultMaxFrame)
	full := b.Bytes()
	for _, n := range []int{1, HeaderSize - 1, HeaderSize, len(full) - 1} {
		r := NewReader(bytes.NewReader(full[:n]), DefaultMaxFrame)
		if _, _, err := r.Next(); err != io.ErrUnexpectedEOF {
			t.Errorf("truncated at %d: err = %v, want io.ErrUnexpectedEOF", n, err)
		}
	}
}

func TestBuilderFrameLimit(t *testing.T) {
	var b Builder
	err := b.Call(1, "m", 0, []any{make([]byte, 100)}, 50)
	if !errors.Is(err, ErrTooLarge) || b.Len() != 0 {
		t.Fatalf("err = %v, len = %d; want ErrTooLarge and nothing buffered", err, b.Len())
	}
}

func TestValuesRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   any
	}{
		{"null", nil},
		{"bool", true},
		{"int", int64(-42)},
		{"uint", uint64(1 << 63)},
		{"float", 3.5},
		{"text", "héllo"},
		{"bytes", []byte{0, 1, 2}},
		{"array", []any{int64(1), "two", nil}},
		{"map", map[any]any{"a": int64(1), int64(2): "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			var out any
			if err := Unmarshal(enc, &out); err != nil {
				t.Fatal(err)
			}
			re, _ := Marshal(out)
			if !bytes.Equal(enc, re) {
				t.Fatalf("round trip changed encoding: %x -> %x", enc, re)
			}
		})
	}
}

func TestDecodeLimits(t *testing.T) {
	deep := bytes.Repeat([]byte{0x81}, MaxDepth+1)
	deep = append(deep, 0xf6)
	tests := []struct {
		name string
		data []byte
	}{
		{"too deep", deep},
		{"indefinite array", []byte{0x9f, 0xff}},
		{"tag", []byte{0xc1, 0x01}},
		{"duplicate key", []byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02}},
		{"bad utf8", []byte{0x61, 0xff}},
		{"array count beyond data", []byte{0x9b, 0, 0, 0, 1, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			if err := Unmarshal(tt.data, &v); err == nil {
				t.Fatalf("Unmarshal(%x) succeeded, want error", tt.data)
			}
		})
	}
}

func TestDecodeHello(t *testing.T) {
	good := Hello{Protocol: 1, PID: 42, Cookie: "c00k1e", Methods: []string{"a"}, Concurrency: 1, Marker: true}
	enc := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mod := func(f func(h *Hello)) []byte { h := good; f(&h); return enc(h) }
	tests := []struct {
		name string
		data []byte
		code uint64 // 0: valid
	}{
		{"valid", enc(good), 0},
		{"extra keys ignored", enc(map[string]any{"protocol": 1, "pid": 42, "cookie": "c00k1e", "methods": []string{}, "concurrency": 1, "future": "x"}), 0},
		{"version 2", mod(func(h *Hello) { h.Protocol = 2 }), CodeUnsupportedVersion},
		{"version 2 with odd fields", enc(map[string]any{"protocol": 2, "pid": "not a number"}), CodeUnsupportedVersion},
		{"wrong cookie", mod(func(h *Hello) { h.Cookie = "other" }), CodeBadHello},
		{"zero concurrency", mod(func(h *Hello) { h.Concurrency = 0 }), CodeBadHello},
		{"huge concurrency", mod(func(h *Hello) { h.Concurrency = 1 << 40 }), CodeBadHello},
		{"zero pid", mod(func(h *Hello) { h.PID = 0 }), CodeBadHello},
		{"empty method", mod(func(h *Hello) { h.Methods = []string{""} }), CodeBadHello},
		{"sigterm cancel", mod(func(h *Hello) { h.SIGTERM = SigtermCancel }), 0},
		{"sigterm unknown value ignored", mod(func(h *Hello) { h.SIGTERM = "exit-at-once" }), 0},
		{"sigterm too long", mod(func(h *Hello) { h.SIGTERM = strings.Repeat("x", MaxHelloSigtermSize+1) }), CodeBadHello},
		{"sigterm not text", enc(map[string]any{"protocol": 1, "pid": 42, "cookie": "c00k1e", "methods": []string{}, "concurrency": 1, "sigterm": 1}), CodeBadHello},
		{"sigterm bytes", enc(map[string]any{"protocol": 1, "pid": 42, "cookie": "c00k1e", "methods": []string{}, "concurrency": 1, "sigterm": []byte("cancel")}), CodeBadHello},
		{"not a map", []byte{0x01}, CodeBadHello},
		{"garbage", []byte("Hello from a library that prints to stdout\n"), CodeBadHello},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeHello(tt.data, "c00k1e")
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var he *HelloError
			if !errors.As(err, &he) || he.Code != tt.code {
				t.Fatalf("err = %v, want HelloError code %d", err, tt.code)
			}
		})
	}
}

func TestDecodeCallRefuses(t *testing.T) {
	tests := map[string][]byte{
		"empty":          nil,
		"not array":      {0x01},
		"two items":      {0x82, 0x61, 'm', 0x00},
		"empty method":   {0x83, 0x60, 0x00, 0x80},
		"negative dline": {0x83, 0x61, 'm', 0x20, 0x80},
		"args not array": {0x83, 0x61, 'm', 0x00, 0x01},
		"trailing bytes": {0x83, 0x61, 'm', 0x00, 0x80, 0x00},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			var c Call
			if err := DecodeCall(p, &c); !errors.Is(err, ErrProtocol) {
				t.Fatalf("err = %v, want ErrProtocol", err)
			}
		})
	}
}

func BenchmarkBuildCall(b *testing.B) {
	var bl Builder
	args := []any{"0123456789abcdef"}
	b.ReportAllocs()
	for b.Loop() {
		bl.Reset()
		_ = bl.Call(1, "null", 0, args, DefaultMaxFrame)
	}
}

func TestReaderLargePayloadOwnership(t *testing.T) {
	var b Builder
	big := bytes.Repeat([]byte{1}, 2*DefaultReadBuffer)
	for range 2 {
		if err := b.Raw(TypeReply, 1, big, DefaultMaxFrame); err != nil {
			t.Fatal(err)
		}
	}
	_ = b.Raw(TypeReply, 2, []byte{0xf6}, DefaultMaxFrame)
	for _, reuse := range []bool{false, true} {
		r := NewReader(bytes.NewReader(b.Bytes()), DefaultMaxFrame)
		r.ReuseLarge = reuse
		_, p1, _ := r.Next()
		owned1 := r.Owned()
		_, p2, _ := r.Next()
		_, _, _ = r.Next()
		if owned1 == reuse || r.Owned() {
			t.Fatalf("reuse=%v: Owned() = %v then %v", reuse, owned1, r.Owned())
		}
		if same := &p1[0] == &p2[0]; same != reuse {
			t.Fatalf("reuse=%v: large payloads share memory = %v", reuse, same)
		}
	}
}

func TestCheckValue(t *testing.T) {
	deep := append(bytes.Repeat([]byte{0x81}, 10000), 0x00)
	tests := []struct {
		name string
		p    []byte
		ok   bool
	}{
		{"int", []byte{0x01}, true},
		{"empty array", []byte{0x80}, true},
		{"text", []byte{0x62, 'h', 'i'}, true},
		{"nested 10,000 deep", deep, false},
		{"map claiming 2^32 entries", []byte{0xbb, 0, 0, 0, 1, 0, 0, 0, 0}, false},
		{"indefinite string never ending", []byte{0x7f, 0x61, 'a'}, false},
		{"indefinite string", []byte{0x7f, 0x61, 'a', 0xff}, false},
		{"trailing bytes", []byte{0x01, 0x02}, false},
		{"empty", nil, false},
		{"truncated", []byte{0x62, 'h'}, false},
		{"invalid utf-8", []byte{0x61, 0xff}, false},
		{"simple value 32", []byte{0xf8, 0x20}, false},
		{"undefined", []byte{0xf7}, false},
		{"float", []byte{0xf9, 0x3c, 0x00}, true},
		{"map", []byte{0xa2, 0x01, 0xf5, 0x61, 'a', 0xf6}, true},
		{"duplicate int key", []byte{0xa2, 0x01, 0xf5, 0x01, 0xf6}, false},
		{"duplicate int key, longer form", []byte{0xa2, 0x01, 0xf5, 0x18, 0x01, 0xf6}, false},
		{"duplicate text key", []byte{0xa2, 0x61, 'a', 0xf5, 0x61, 'a', 0xf6}, false},
		{"bytes key", []byte{0xa1, 0x41, 'a', 0xf5}, false},
		{"array key", []byte{0xa1, 0x80, 0xf5}, false},
		{"string longer than the payload", []byte{0x5b, 0xff, 0, 0, 0, 0, 0, 0, 0}, false},
		{"nested 32 deep", append(bytes.Repeat([]byte{0x81}, 31), 0x00), true},
		{"nested 33 deep", append(bytes.Repeat([]byte{0x81}, 32), 0x00), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckValue(tt.p)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckValue = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
		})
	}
}

// panicky is a value whose own encoder panics, as a user's MarshalCBOR may.
type panicky struct{}

func (panicky) MarshalCBOR() ([]byte, error) { panic("MarshalCBOR bug") }

// A frame whose encoding panics is dropped before the panic goes on: a
// caller that recovers still has only whole frames in its Builder.
func TestBuilderDropsFrameOnPanic(t *testing.T) {
	tests := []struct {
		name  string
		build func(b *Builder)
	}{
		{"Value", func(b *Builder) { _ = b.Value(TypeReply, 2, []any{1, panicky{}}, DefaultMaxFrame) }},
		{"ValueVec", func(b *Builder) { _ = b.ValueVec(TypeReply, 2, map[string]any{"x": panicky{}}, DefaultMaxFrame) }},
		{"Call", func(b *Builder) { _ = b.Call(2, "m", 0, []any{"a", panicky{}}, DefaultMaxFrame) }},
		{"CallVec", func(b *Builder) {
			_ = b.CallVec(2, "m", 0, []any{make([]byte, MinRef), panicky{}}, DefaultMaxFrame)
		}},
		{"Event", func(b *Builder) { _ = b.Event(2, "ev", []any{panicky{}}, DefaultMaxFrame) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Builder
			_ = b.Value(TypeReply, 1, "before", DefaultMaxFrame)
			before := append([]byte(nil), b.Bytes()...)
			func() {
				defer func() {
					if v := recover(); v != "MarshalCBOR bug" {
						t.Fatalf("recovered %v, want the encoder's panic", v)
					}
				}()
				tt.build(&b)
			}()
			if !bytes.Equal(b.Bytes(), before) || b.HasRefs() {
				t.Fatalf("after the panic the Builder holds %x (refs %v), want only the frame before: %x", b.Bytes(), b.HasRefs(), before)
			}
			_ = b.Value(TypeReply, 3, "after", DefaultMaxFrame)
			r := NewReader(bytes.NewReader(b.Bytes()), DefaultMaxFrame)
			for _, id := range []uint64{1, 3} {
				if h, _, err := r.Next(); err != nil || h.ID != id {
					t.Fatalf("frame %v, %v; want id %d", h, err, id)
				}
			}
		})
	}
}

// The decoder, which the SDKs use for arguments, refuses what CheckValue
// refuses among simple values.
func TestUnmarshalRejectsSimpleValues(t *testing.T) {
	for _, p := range [][]byte{{0xf7}, {0xf8, 0x20}, {0xf0}} {
		var v any
		if err := Unmarshal(p, &v); err == nil {
			t.Errorf("Unmarshal(% x) = %v, nil; want an error", p, v)
		}
	}
	var b bool
	if err := Unmarshal([]byte{0xf5}, &b); err != nil || !b {
		t.Fatalf("true: %v %v", b, err)
	}
}

// A CALL's arguments are held to every value rule, though the decoder takes
// them raw: a handler that echoes one would otherwise lose its worker.
func TestDecodeCallChecksArgs(t *testing.T) {
	tests := []struct {
		name string
		arg  []byte
		ok   bool
	}{
		{"map", []byte{0xa2, 0x61, 'a', 0x01, 0x61, 'b', 0x02}, true},
		{"duplicate text keys", []byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02}, false},
		{"bytes key", []byte{0xa1, 0x41, 'a', 0x01}, false},
		{"nested 30 deep", append(bytes.Repeat([]byte{0x81}, 30), 0x01), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := append([]byte{0x83, 0x61, 'm', 0x00, 0x81}, tt.arg...)
			var c Call
			if err := DecodeCall(p, &c); (err == nil) != tt.ok {
				t.Fatalf("DecodeCall(% x) = %v, want ok=%v", p, err, tt.ok)
			}
		})
	}
}
