package worker

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// badResult is a result type whose own encoder panics.
type badResult struct{}

func (badResult) MarshalCBOR() ([]byte, error) { panic("MarshalCBOR bug") }

// badErr is an error whose Error method panics.
type badErr struct{}

func (badErr) Error() string { panic("Error bug") }

// A panic while the SDK encodes a handler's answer (the user's MarshalCBOR,
// Error method or error details) is the call's panic: answered ERROR panic
// naming the encoding, with the stack, and the worker stops, unless
// ContinueAfterPanic. It used to kill the worker with half a reply written,
// which the dispatcher could only report as a closed connection.
func TestEncodePanicIsAnsweredAsPanic(t *testing.T) {
	tests := []struct {
		name    string
		handler Handler
		panic   string // the panic value, in the message and in Serve's error
		what    string // the type named in the message
	}{
		{"result", func(context.Context, Args) (any, error) { return badResult{}, nil }, "MarshalCBOR bug", "worker.badResult"},
		{"result inside a value", func(context.Context, Args) (any, error) {
			return map[string]any{"ok": 1, "bad": badResult{}}, nil
		}, "MarshalCBOR bug", "map[string]interface {}"},
		{"error details", func(context.Context, Args) (any, error) {
			return nil, &Error{Code: 42, Message: "m", Details: []any{badResult{}}}
		}, "MarshalCBOR bug", "*worker.Error"},
		{"error text", func(context.Context, Args) (any, error) { return nil, badErr{} }, "Error bug", "worker.badErr"},
	}
	for _, tt := range tests {
		for _, cont := range []bool{false, true} {
			name := tt.name
			if cont {
				name += "/ContinueAfterPanic"
			}
			t.Run(name, func(t *testing.T) {
				s := &Server{ContinueAfterPanic: cont}
				s.Handle("bad", tt.handler)
				s.Handle("echo", func(_ context.Context, a Args) (any, error) {
					var v any
					return v, a.Decode(0, &v)
				})
				h := newHarness(t, s, true)
				h.next() // HELLO
				var b wire.Builder
				_ = b.Call(1, "bad", 0, nil, 65536)
				h.send(&b)
				hd, p := h.next()
				if hd.Type != wire.TypeError || hd.ID != 1 {
					t.Fatalf("got %v id %d, want ERROR for call 1", hd.Type, hd.ID)
				}
				e, err := wire.DecodeError(p)
				if err != nil {
					t.Fatal(err)
				}
				details, _ := e.Details.(map[any]any)
				stack, _ := details["stack"].(string)
				want := "panic while encoding the answer (" + tt.what + "): " + tt.panic
				if e.Code != wire.CodePanic || e.Message != want || !strings.Contains(stack, "encodeResult") {
					t.Fatalf("ERROR %d %q, stack %q; want code %d, %q and the encoder's stack", e.Code, e.Message, stack, wire.CodePanic, want)
				}
				if cont {
					// The stream is intact and the worker serves on.
					_ = b.Call(2, "echo", 0, []any{"still here"}, 65536)
					b.Empty(wire.TypeQuit, 0)
					h.send(&b)
					if hd, _ := h.next(); hd.Type != wire.TypeReply || hd.ID != 2 {
						t.Fatalf("after the panic: %v id %d, want REPLY 2", hd.Type, hd.ID)
					}
				}
				err = <-h.served
				var pe *PanicError
				if !errors.As(err, &pe) || !pe.Encoding || pe.Method != "bad" || pe.Value != tt.panic {
					t.Fatalf("Serve = %v, want a *PanicError of encoding %q", err, tt.panic)
				}
			})
		}
	}
}
