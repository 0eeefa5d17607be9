package wire

import (
	"errors"
	"strings"
	"testing"
)

const testTP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func TestValidTraceparent(t *testing.T) {
	tests := []struct {
		tp   string
		want bool
	}{
		{testTP, true},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", true},
		{"", false},
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false}, // another version
		{"00-00000000000000000000000000000000-b7ad6b7169203331-01", false}, // zero trace id
		{"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", false}, // zero parent
		{"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", false}, // upper case
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g", false},
		{"00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01", false},
		{testTP + "-", false},
	}
	for _, tt := range tests {
		if got := ValidTraceparent(tt.tp); got != tt.want {
			t.Errorf("ValidTraceparent(%q) = %v", tt.tp, got)
		}
	}
}

// TestTrace: a traceparent added to a CALL, large arguments referenced or
// not, decodes back with the call, and a frame over the limit is dropped.
func TestTrace(t *testing.T) {
	big := make([]byte, MinRef)
	for _, args := range [][]any{nil, {1, "x"}, {big, 2}} {
		var b Builder
		if err := b.CallVec(9, "m", 5, args, DefaultMaxFrame); err != nil {
			t.Fatal(err)
		}
		if err := b.Trace(testTP, DefaultMaxFrame); err != nil {
			t.Fatal(err)
		}
		var stream []byte
		for _, s := range b.Segments(nil) {
			stream = append(stream, s...)
		}
		h, err := ParseHeader(stream[:HeaderSize], DefaultMaxFrame)
		if err != nil || int(h.Length) != len(stream)-HeaderSize || h.Type != TypeCall || h.ID != 9 {
			t.Fatalf("header %+v, %v; %d bytes of payload", h, err, len(stream)-HeaderSize)
		}
		var c Call
		if err := DecodeCall(stream[HeaderSize:], &c); err != nil || c.Traceparent != testTP || c.Method != "m" || len(c.Args) != len(args) {
			t.Fatalf("DecodeCall: %+v, %v", c, err)
		}
	}
	var b Builder
	_ = b.Call(1, "m", 0, []any{strings.Repeat("x", 1000)}, 1100)
	if err := b.Trace(testTP, 1024); !errors.Is(err, ErrTooLarge) || b.Len() != 0 {
		t.Errorf("over the limit: %v, %d bytes left", err, b.Len())
	}
	b.Empty(TypeQuit, 0)
	if err := b.Trace(testTP, DefaultMaxFrame); err == nil || b.Len() != 0 {
		t.Errorf("Trace after QUIT: %v, %d bytes left", err, b.Len())
	}
}

// TestTraceObjCall: an OBJCALL with a traceparent decodes back with it; one
// without, or with a value that is not one, decodes without.
func TestTraceObjCall(t *testing.T) {
	for _, tp := range []string{testTP, "", "not-a-traceparent"} {
		var b Builder
		if err := b.ObjCall(3, 7, "m", 5, []any{1}, DefaultMaxFrame); err != nil {
			t.Fatal(err)
		}
		if tp != "" {
			if err := b.Trace(tp, DefaultMaxFrame); err != nil {
				t.Fatal(err)
			}
		}
		var c ObjCall
		c.Traceparent = "stale"
		if err := DecodeObjCall(b.Bytes()[HeaderSize:], &c); err != nil {
			t.Fatal(err)
		}
		want := tp
		if tp != testTP {
			want = ""
		}
		if c.Traceparent != want || c.Object != 7 || c.Method != "m" || len(c.Args) != 1 {
			t.Errorf("traceparent %q: decoded %+v", tp, c)
		}
	}
}
