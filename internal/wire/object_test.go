package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestObjectFramesRoundTrip(t *testing.T) {
	var b Builder
	if err := b.Activate(7, "Counter", 3, []any{"x", 1}, DefaultMaxFrame); err != nil {
		t.Fatal(err)
	}
	if err := b.ObjCall(8, 3, "add", 99, []any{2}, DefaultMaxFrame); err != nil {
		t.Fatal(err)
	}
	if err := b.Event(3, "changed", []any{5}, DefaultMaxFrame); err != nil {
		t.Fatal(err)
	}
	if err := b.Value(TypeRegister, 0, Register{Class: "Counter", Threading: ThreadingFree, Methods: []string{"add"}}, DefaultMaxFrame); err != nil {
		t.Fatal(err)
	}
	b.Empty(TypeResume, 0)
	b.Empty(TypeRelease, 3)
	r := NewReader(bytes.NewReader(b.Bytes()), DefaultMaxFrame)

	h, p, err := r.Next()
	var a Activate
	if err != nil || h.Type != TypeActivate || h.ID != 7 || DecodeActivate(p, &a) != nil {
		t.Fatalf("ACTIVATE: %+v %v", h, err)
	}
	if a.Class != "Counter" || a.Object != 3 || len(a.Args) != 2 {
		t.Fatalf("ACTIVATE decoded %+v", a)
	}
	h, p, err = r.Next()
	var c ObjCall
	if err != nil || h.Type != TypeObjCall || DecodeObjCall(p, &c) != nil || c.Object != 3 || c.Method != "add" || c.Deadline != 99 || len(c.Args) != 1 {
		t.Fatalf("OBJCALL: %+v %+v %v", h, c, err)
	}
	h, p, err = r.Next()
	var e Event
	if err != nil || h.Type != TypeEvent || h.ID != 3 || DecodeEvent(p, &e) != nil || e.Name != "changed" || len(e.Args) != 1 {
		t.Fatalf("EVENT: %+v %+v %v", h, e, err)
	}
	h, p, err = r.Next()
	if err != nil || h.Type != TypeRegister {
		t.Fatalf("REGISTER: %+v %v", h, err)
	}
	reg, err := DecodeRegister(p)
	if err != nil || reg.Class != "Counter" || reg.Threading != ThreadingFree || len(reg.Methods) != 1 {
		t.Fatalf("REGISTER decoded %+v %v", reg, err)
	}
	if h, _, err = r.Next(); err != nil || h.Type != TypeResume || h.Type.String() != "RESUME" {
		t.Fatalf("RESUME: %+v %v", h, err)
	}
	if h, _, err = r.Next(); err != nil || h.Type != TypeRelease || h.ID != 3 {
		t.Fatalf("RELEASE: %+v %v", h, err)
	}
}

func TestObjectDecodersRefuse(t *testing.T) {
	enc := func(v any) []byte { b, _ := cbor.Marshal(v); return b }
	tests := []struct {
		name   string
		decode func([]byte) error
		in     []byte
	}{
		{"register empty class", func(p []byte) error { _, err := DecodeRegister(p); return err }, enc(Register{})},
		{"register control char", func(p []byte) error { _, err := DecodeRegister(p); return err }, enc(Register{Class: "a\nb"})},
		{"register threading", func(p []byte) error { _, err := DecodeRegister(p); return err }, enc(Register{Class: "a", Threading: 9})},
		{"register bad method", func(p []byte) error { _, err := DecodeRegister(p); return err }, enc(Register{Class: "a", Methods: []string{""}})},
		{"activate object 0", func(p []byte) error { return DecodeActivate(p, &Activate{}) }, enc([]any{"a", 0, []any{}})},
		{"activate long class", func(p []byte) error { return DecodeActivate(p, &Activate{}) }, enc([]any{string(make([]byte, 300)), 1, []any{}})},
		{"activate not array", func(p []byte) error { return DecodeActivate(p, &Activate{}) }, enc(map[string]int{"a": 1})},
		{"objcall negative deadline", func(p []byte) error { return DecodeObjCall(p, &ObjCall{}) }, enc([]any{1, "m", -1, []any{}})},
		{"objcall empty method", func(p []byte) error { return DecodeObjCall(p, &ObjCall{}) }, enc([]any{1, "", 0, []any{}})},
		{"objcall huge object", func(p []byte) error { return DecodeObjCall(p, &ObjCall{}) }, enc([]any{uint64(1 << 63), "m", 0, []any{}})},
		{"event bad name", func(p []byte) error { return DecodeEvent(p, &Event{}) }, enc([]any{"", []any{}})},
		{"event args not array", func(p []byte) error { return DecodeEvent(p, &Event{}) }, enc([]any{"e", 1})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.decode(tt.in); !errors.Is(err, ErrProtocol) {
				t.Fatalf("err = %v, want a protocol error", err)
			}
		})
	}
	if !ValidName("Ünïcode.Class-1") || ValidName("tab\there") || ValidName(string([]byte{0xff})) {
		t.Fatal("ValidName")
	}
}

func FuzzDecodeRegister(f *testing.F) {
	good, _ := cbor.Marshal(Register{Class: "C", Threading: 1, Methods: []string{"m"}})
	f.Add(good)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRegister(data)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error kind: %v", err)
			}
			return
		}
		if !ValidName(r.Class) || r.Threading > maxThreading || len(r.Methods) > MaxHelloMethods {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func FuzzDecodeActivate(f *testing.F) {
	var b Builder
	_ = b.Activate(1, "C", 5, []any{1, "x"}, DefaultMaxFrame)
	f.Add(b.Bytes()[HeaderSize:])
	f.Add([]byte{0x83, 0x61, 'C', 0x01, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Activate
		if err := DecodeActivate(data, &a); err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error kind: %v", err)
			}
			return
		}
		if !ValidName(a.Class) || a.Object == 0 || a.Object > MaxObjectID {
			t.Fatalf("accepted %+v", a)
		}
	})
}

func FuzzDecodeObjCall(f *testing.F) {
	var b Builder
	_ = b.ObjCall(1, 5, "m", 7, []any{[]byte{1}, nil}, DefaultMaxFrame)
	f.Add(b.Bytes()[HeaderSize:])
	f.Add([]byte{0x84, 0x01, 0x61, 'm', 0x00, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		var c ObjCall
		if err := DecodeObjCall(data, &c); err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error kind: %v", err)
			}
			return
		}
		if c.Object == 0 || c.Object > MaxObjectID || c.Method == "" || len(c.Method) > MaxMethodBytes || c.Deadline < 0 {
			t.Fatalf("accepted %+v", c)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	var b Builder
	_ = b.Event(5, "tick", []any{1}, DefaultMaxFrame)
	f.Add(b.Bytes()[HeaderSize:])
	f.Add([]byte{0x82, 0x60, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Event
		if err := DecodeEvent(data, &e); err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error kind: %v", err)
			}
			return
		}
		if !ValidName(e.Name) {
			t.Fatalf("accepted %+v", e)
		}
	})
}
