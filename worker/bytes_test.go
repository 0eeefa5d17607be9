package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
)

func patterned(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*3) ^ seed
	}
	return b
}

func sameMemory(a, b []byte) bool {
	return len(a) > 0 && len(b) > 0 && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// Args.Bytes is a view of the argument's encoding; Decode is a copy.
func TestArgsBytes(t *testing.T) {
	enc := func(v any) cbor.RawMessage {
		b, err := wire.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	big := patterned(1<<20, 1)
	a := Args{raw: []cbor.RawMessage{enc(big), enc([]byte{}), enc(nil), enc("text"), enc(7)}}
	for _, tc := range []struct {
		i    int
		want []byte
		code uint64 // 0: no error
	}{
		{0, big, 0}, {1, []byte{}, 0}, {2, nil, 0},
		{3, nil, wire.CodeBadArguments}, {4, nil, wire.CodeBadArguments},
		{5, nil, wire.CodeBadArguments}, {-1, nil, wire.CodeBadArguments},
	} {
		t.Run(fmt.Sprint(tc.i), func(t *testing.T) {
			got, err := a.Bytes(tc.i)
			var we *Error
			if tc.code != 0 {
				if !errors.As(err, &we) || we.Code != tc.code {
					t.Fatalf("err = %v, want code %d", err, tc.code)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Fatalf("Bytes(%d) = %d bytes, %v", tc.i, len(got), err)
			}
			if len(got) > 0 && unsafe.SliceData(got) != &a.raw[tc.i][5] {
				t.Fatal("Bytes copied")
			}
		})
	}
	var dec []byte
	if err := a.Decode(0, &dec); err != nil || !bytes.Equal(dec, big) || sameMemory(dec, a.raw[0][5:]) {
		t.Fatalf("Decode into *[]byte: %d bytes, %v, or not a copy", len(dec), err)
	}
}

// A handler returning Args.Bytes echoes the argument byte for byte, serial
// or concurrent, from empty to the frame limit; the reply is the one the
// copying encoder makes.
func TestServeBytesView(t *testing.T) {
	const limit = 4 << 20
	// CALL "view": 0x83, 0x64 "view", 0x00, 0x81 and a 5-byte head.
	maxArg := limit - 8 - 5
	for _, conc := range []int{1, 2} {
		t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
			s := &Server{Name: "test", Concurrency: conc}
			s.Handle("view", func(_ context.Context, a Args) (any, error) { return a.Bytes(0) })
			h := newHarnessFrame(t, s, limit, false)
			h.next() // HELLO
			var b wire.Builder
			for i, n := range []int{0, 1, wire.MinRef - 1, wire.MinRef, 1 << 20, 1 << 20, maxArg} {
				arg := patterned(n, byte(i))
				if err := b.Call(uint64(i+1), "view", 0, []any{arg}, limit); err != nil {
					t.Fatal(err)
				}
				h.send(&b)
				hd, p := h.next()
				want, _ := wire.Marshal(arg)
				if hd.Type != wire.TypeReply || hd.ID != uint64(i+1) || !bytes.Equal(p, want) {
					t.Fatalf("%d bytes: got %v %d of %d bytes", n, hd.Type, hd.ID, len(p))
				}
			}
			b.Empty(wire.TypeQuit, 0)
			h.send(&b)
			if err := <-h.served; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The lifetime rule of Args.Bytes: a serial worker reads the next large
// call into the memory of the last, so a view kept past its handler shows
// another call's bytes.
func TestBytesViewLifetime(t *testing.T) {
	var kept []byte
	s := &Server{Name: "test"}
	s.Handle("keep", func(_ context.Context, a Args) (any, error) {
		cur, err := a.Bytes(0)
		if err != nil {
			return nil, err
		}
		overwritten := kept != nil && sameMemory(kept, cur) && bytes.Equal(kept, cur)
		kept = cur // wrong outside a test: cur is dead once we return
		return overwritten, nil
	})
	h := newHarnessFrame(t, s, 2<<20, false)
	h.next() // HELLO
	var b wire.Builder
	for i, want := range []bool{false, true} {
		if err := b.Call(uint64(i+1), "keep", 0, []any{patterned(1<<20, byte(i+1))}, 2<<20); err != nil {
			t.Fatal(err)
		}
		h.send(&b)
		_, p := h.next()
		var got bool
		if err := wire.Unmarshal(p, &got); err != nil || got != want {
			t.Fatalf("call %d: kept view overwritten = %v (%v), want %v", i+1, got, err, want)
		}
	}
}
