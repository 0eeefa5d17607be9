package wire

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"unsafe"
)

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ seed
	}
	return b
}

// concat is what a writer of b.Segments puts on the wire.
func concat(b *Builder) []byte {
	var out []byte
	for _, s := range b.Segments(nil) {
		if len(s) == 0 {
			panic("empty segment")
		}
		out = append(out, s...)
	}
	return out
}

// The frames CallVec and ValueVec write are byte for byte those of Call and
// Value, on either side of MinRef and up to the frame limit.
func TestVecFramesMatchCopied(t *testing.T) {
	const limit = 4 << 20
	// The largest []byte argument of a CALL "m" with no deadline that fits:
	// 0x83, 0x61 'm', 0x00, 0x81, then a 5-byte byte string head.
	maxArg := limit - 4 - 1 - 5
	maxVal := limit - 5 // a REPLY of one byte string
	for _, n := range []int{0, 1, MinRef - 1, MinRef, MinRef + 1, 1 << 20, maxArg, maxArg + 1, maxVal, maxVal + 1} {
		arg := pattern(n, byte(n))
		argsets := map[string][]any{
			"alone":        {arg},
			"among others": {"before", arg, uint64(7), arg, map[string]any{"k": []byte{1}}},
		}
		for name, args := range argsets {
			t.Run(fmt.Sprintf("call/%d/%s", n, name), func(t *testing.T) {
				var want, got Builder
				want.Empty(TypePing, 1)
				got.Empty(TypePing, 1)
				werr := want.Call(9, "m", 0, args, limit)
				gerr := got.CallVec(9, "m", 0, args, limit)
				if (werr == nil) != (gerr == nil) || (gerr != nil && !errors.Is(gerr, ErrTooLarge)) {
					t.Fatalf("Call: %v, CallVec: %v", werr, gerr)
				}
				want.Empty(TypePong, 2)
				got.Empty(TypePong, 2)
				if !bytes.Equal(concat(&got), want.Bytes()) {
					t.Fatal("CallVec frames differ from Call's")
				}
				if got.Len() != want.Len() {
					t.Fatalf("Len %d, want %d", got.Len(), want.Len())
				}
				if refs := got.HasRefs(); refs != (gerr == nil && n >= MinRef) {
					t.Fatalf("HasRefs = %v for %d bytes (err %v)", refs, n, gerr)
				}
			})
		}
		t.Run(fmt.Sprintf("value/%d", n), func(t *testing.T) {
			var want, got Builder
			werr := want.Value(TypeReply, 3, arg, limit)
			gerr := got.ValueVec(TypeReply, 3, arg, limit)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("Value: %v, ValueVec: %v", werr, gerr)
			}
			if !bytes.Equal(concat(&got), want.Bytes()) {
				t.Fatal("ValueVec frame differs from Value's")
			}
		})
	}
}

// Only the exact type []byte is referenced: a named type may encode itself
// differently, and nil encodes as null.
func TestVecRefersOnlyToLargeByteSlices(t *testing.T) {
	type blob []byte
	for _, v := range []any{nil, []byte(nil), make([]byte, MinRef-1), blob(make([]byte, MinRef)), "text", [4]byte{}} {
		var b Builder
		if err := b.ValueVec(TypeReply, 1, v, DefaultMaxFrame); err != nil {
			t.Fatal(err)
		}
		if b.HasRefs() || IsLarge(v) {
			t.Errorf("%T of %v referenced", v, v)
		}
	}
	if !AnyLarge([]any{1, make([]byte, MinRef)}) || AnyLarge([]any{1, "x"}) || AnyLarge(nil) {
		t.Error("AnyLarge wrong")
	}
}

// The Builder lets go of the caller's slices on Reset and when a frame is
// dropped, so that it never keeps them alive or writes them later.
func TestVecReleasesReferences(t *testing.T) {
	big := pattern(MinRef, 1)
	var b Builder
	if err := b.CallVec(1, "m", 0, []any{big}, DefaultMaxFrame); err != nil {
		t.Fatal(err)
	}
	refs := b.refs[:1]
	b.Reset()
	if b.HasRefs() || refs[0].b != nil {
		t.Fatal("Reset kept a reference")
	}
	if err := b.CallVec(2, "m", 0, []any{big, func() {}}, DefaultMaxFrame); err == nil {
		t.Fatal("a function argument encoded")
	}
	if err := b.CallVec(3, "m", 0, []any{big}, MinRef); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	if b.HasRefs() || b.Len() != 0 || refs[0].b != nil {
		t.Fatal("a dropped frame kept a reference")
	}
}

func TestBytesView(t *testing.T) {
	big := pattern(70000, 3)
	for _, tc := range []struct {
		name string
		item []byte
		want []byte // nil with ok: null
		ok   bool
	}{
		{"empty", []byte{0x40}, []byte{}, true},
		{"short", []byte{0x43, 1, 2, 3}, []byte{1, 2, 3}, true},
		{"1-byte length", append([]byte{0x58, 30}, pattern(30, 0)...), pattern(30, 0), true},
		{"4-byte length", mustMarshal(t, big), big, true},
		{"8-byte length", append([]byte{0x5b, 0, 0, 0, 0, 0, 0, 0, 2}, 7, 8), []byte{7, 8}, true},
		{"null", []byte{0xf6}, nil, true},
		{"nothing", nil, nil, false},
		{"text", []byte{0x61, 'a'}, nil, false},
		{"array", []byte{0x80}, nil, false},
		{"indefinite", []byte{0x5f, 0x41, 1, 0xff}, nil, false},
		{"reserved", []byte{0x5c, 1}, nil, false},
		{"truncated head", []byte{0x59, 1}, nil, false},
		{"short body", []byte{0x43, 1, 2}, nil, false},
		{"trailing bytes", []byte{0x41, 1, 2}, nil, false},
		{"huge length", []byte{0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BytesView(tc.item)
			if !tc.ok {
				if !errors.Is(err, ErrNotBytes) {
					t.Fatalf("err = %v, want ErrNotBytes", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Fatalf("BytesView = %v, %v; want %v", got, err, tc.want)
			}
			if len(got) > 0 && !within(got, tc.item) {
				t.Fatal("BytesView copied")
			}
		})
	}
}

// within reports whether sub lies inside b's memory.
func within(sub, b []byte) bool {
	s, e := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))+uintptr(len(b))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	return p >= s && p+uintptr(len(sub)) <= e
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// DecodeCall leaves the arguments in the payload: a 1 MiB argument is not
// copied on its way to the handler.
func TestDecodeCallAliasesPayload(t *testing.T) {
	var b Builder
	big := pattern(1<<20, 5)
	if err := b.Call(1, "m", 0, []any{"x", big}, DefaultMaxFrame); err != nil {
		t.Fatal(err)
	}
	p := b.Bytes()[HeaderSize:]
	var c Call
	for range 2 { // and again, reusing c
		if err := DecodeCall(p, &c); err != nil {
			t.Fatal(err)
		}
		if len(c.Args) != 2 || !within(c.Args[0], p) || !within(c.Args[1], p) {
			t.Fatalf("arguments not views of the payload: %d", len(c.Args))
		}
		v, err := BytesView(c.Args[1])
		if err != nil || !bytes.Equal(v, big) {
			t.Fatalf("argument 1: %d bytes, %v", len(v), err)
		}
	}
}

// CallBytes writes, copied or referenced, exactly the frame of Call or
// CallVec with the one []byte argument, nil and the frame limit included.
func TestCallBytesMatchesCall(t *testing.T) {
	const limit = 4 << 20
	maxArg := limit - 4 - 1 - 5
	for _, arg := range [][]byte{nil, {}, pattern(16, 1), pattern(MinRef-1, 2), pattern(MinRef, 3),
		pattern(maxArg, 4), pattern(maxArg+1, 5)} {
		for _, vec := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/vec=%v", len(arg), vec), func(t *testing.T) {
				var want, got Builder
				want.Empty(TypePing, 1)
				got.Empty(TypePing, 1)
				werr := want.call(9, "method", 12345, []any{arg}, limit, vec)
				gerr := got.CallBytes(9, "method", 12345, arg, limit, vec)
				if (werr == nil) != (gerr == nil) || (gerr != nil && !errors.Is(gerr, ErrTooLarge)) {
					t.Fatalf("call: %v, CallBytes: %v", werr, gerr)
				}
				want.Empty(TypePong, 2)
				got.Empty(TypePong, 2)
				if !bytes.Equal(concat(&got), concat(&want)) {
					t.Fatal("CallBytes frames differ from Call's")
				}
				if got.HasRefs() != want.HasRefs() {
					t.Fatalf("HasRefs = %v, want %v", got.HasRefs(), want.HasRefs())
				}
			})
		}
	}
}
