package bulkhead_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead"
)

// TestCrashForensics segfaults in C and finds in the CrashError, and in the
// pool's crash log, the signal, the request, its fingerprint and the C
// function it died in; an abort() in C names its function too, and a
// worker that died with no report names none.
func TestCrashForensics(t *testing.T) {
	tests := []struct {
		method   string
		signal   syscall.Signal
		function string
	}{
		{"rawsegv", syscall.SIGSEGV, "crashy_raw_segv"},
		{"abort", syscall.SIGABRT, "crashy_raw_abort"},
		{"segv", syscall.SIGSEGV, ""}, // native.Segv dies by the kernel's default action: no report
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			p := newPool(t, bulkhead.Config{QuarantineAfter: 5}, "GOTRACEBACK=")
			_, err := p.Call(context.Background(), tt.method, "some input")
			var ce *bulkhead.CrashError
			if !errors.As(err, &ce) {
				t.Fatalf("%s: %v", tt.method, err)
			}
			if ce.Signal != tt.signal || ce.Function != tt.function || ce.RequestID == 0 ||
				!strings.HasPrefix(ce.Fingerprint, tt.method+" #") {
				t.Errorf("CrashError signal %v function %q request %d fingerprint %q; want %v, %q",
					ce.Signal, ce.Function, ce.RequestID, ce.Fingerprint, tt.signal, tt.function)
			}
			if got, want := bulkhead.SignalName(ce.Signal), map[syscall.Signal]string{syscall.SIGSEGV: "SIGSEGV", syscall.SIGABRT: "SIGABRT"}[tt.signal]; got != want {
				t.Errorf("signal named %q, want %q", got, want)
			}
			var cs []bulkhead.CrashRecord
			for len(cs) == 0 {
				cs = p.Snapshot().Crashes
				runtimeGosched()
			}
			if ce.MaxRSS < 1<<20 || ce.CPU <= 0 {
				t.Errorf("usage: CPU %v, peak RSS %d bytes", ce.CPU, ce.MaxRSS)
			}
			if c := cs[0]; c.Function != tt.function || c.RequestID != ce.RequestID || c.Fingerprint != ce.Fingerprint || c.MaxRSS != ce.MaxRSS {
				t.Errorf("crash record %+v", c)
			}
		})
	}
}
