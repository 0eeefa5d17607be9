package bulkhead

import (
	"regexp"
	"strings"
	"testing"
)

func TestNativeFunction(t *testing.T) {
	tests := []struct{ stderr, want string }{
		{"SIGSEGV: segmentation violation\nPC=0x1 m=3 sigcode=1 addr=0x0\nsignal arrived during cgo execution\n\ngoroutine 1 gp=0x1 m=3 [syscall, locked to thread]:\nruntime.cgocall(0x1, 0x2)\n\t/go/src/runtime/cgocall.go:167 +0x4b\nexample.com/native._Cfunc_crashy_raw_segv()\n\t_cgo_gotypes.go:160 +0x3a\n", "crashy_raw_segv"},
		{"panic: runtime error: invalid memory address\ngoroutine 1:\nmain._Cfunc_other()\n", ""}, // no cgo line: a fault in Go
		{"", ""},
		{"signal arrived during cgo execution\nno frames at all", ""},
	}
	for _, tt := range tests {
		if got := nativeFunction(tt.stderr); got != tt.want {
			t.Errorf("nativeFunction(%q) = %q, want %q", tt.stderr, got, tt.want)
		}
	}
}

// FuzzNativeFunction: whatever a worker writes to stderr, the function
// found is "" or a C identifier that stderr holds.
func FuzzNativeFunction(f *testing.F) {
	f.Add("signal arrived during cgo execution\nx._Cfunc_f(\n")
	f.Add("signal arrived during cgo execution._Cfunc_(")
	f.Add("._Cfunc_a(signal arrived during cgo execution")
	ident := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	f.Fuzz(func(t *testing.T, s string) {
		got := nativeFunction(s)
		if got != "" && (!ident.MatchString(got) || !strings.Contains(s, "_Cfunc_"+got+"(")) {
			t.Fatalf("nativeFunction(%q) = %q", s, got)
		}
	})
}
