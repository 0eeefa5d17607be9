package dispatch

import (
	"context"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Panicked is set by an ERROR panic, before its caller has the answer,
// and by nothing else: a REPLY, or an ERROR of another code.
func TestPanicked(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    wire.Type
		body any
		want bool
	}{
		{"reply", wire.TypeReply, nil, false},
		{"application error", wire.TypeError, wire.ErrorBody{Code: wire.CodeApplication, Message: "no"}, false},
		{"panic", wire.TypeError, wire.ErrorBody{Code: wire.CodePanic, Message: "panic: x"}, true},
		{"malformed error", wire.TypeError, "not a map", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := vecConn(t)
			var f wire.Builder
			if err := f.Call(0, "m", 0, nil, wire.DefaultMaxFrame); err != nil {
				t.Fatal(err)
			}
			pd, err := c.Send(context.Background(), &f)
			if err != nil {
				t.Fatal(err)
			}
			var ans wire.Builder
			if err := ans.Value(tc.t, pd.ID(), tc.body, wire.DefaultMaxFrame); err != nil {
				t.Fatal(err)
			}
			if _, err := peer.Write(ans.Bytes()); err != nil {
				t.Fatal(err)
			}
			r := c.Wait(context.Background(), pd)
			c.Release(pd)
			if !r.Done || r.Err != nil || r.Type != tc.t {
				t.Fatalf("result %+v", r)
			}
			if got := c.Panicked(); got != tc.want {
				t.Fatalf("Panicked = %v, want %v", got, tc.want)
			}
		})
	}
}
