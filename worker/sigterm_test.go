package worker

import (
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// HELLO says "sigterm": "cancel" only when SIGTERM is the SDK's alone: under
// Run (whose SIGTERM cancels the calls), and not with CustomSIGTERM. A
// program that calls Serve itself decides what SIGTERM does, so it says
// nothing.
func TestHelloSigterm(t *testing.T) {
	tests := []struct {
		name   string
		run    bool // as under Run
		custom bool
		want   string
	}{
		{"Serve", false, false, ""},
		{"Run", true, false, wire.SigtermCancel},
		{"Run with CustomSIGTERM", true, true, ""},
		{"Serve with CustomSIGTERM", false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := echoServer()
			s.sigtermCancels, s.CustomSIGTERM = tt.run, tt.custom
			h := newHarness(t, s, false)
			_, p := h.next()
			hello, err := wire.DecodeHello(p, "c00k1e")
			if err != nil || hello.SIGTERM != tt.want {
				t.Fatalf("HELLO sigterm %q, %v; want %q", hello.SIGTERM, err, tt.want)
			}
			var b wire.Builder
			b.Empty(wire.TypeQuit, 0)
			h.send(&b)
			if err := <-h.served; err != nil {
				t.Fatal(err)
			}
		})
	}
}
