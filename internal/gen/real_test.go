package gen

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// examples/turbojpeg/tjbh is what gen writes from libjpeg-turbo's turbojpeg.h.
func TestGoldenTurboJPEG(t *testing.T) {
	if _, err := os.Stat("/usr/include/turbojpeg.h"); err != nil {
		t.Skip("no /usr/include/turbojpeg.h: apt-get install libturbojpeg0-dev (CI does)")
	}
	golden(t, "../../examples/turbojpeg/tjbh", generate(t, "../../examples/turbojpeg/turbojpeg.toml"), "")
}

// gen parses Debian's real libxml2 and libjpeg-turbo headers, and the worker
// it writes builds against them and answers as the libraries do.
func TestRealHeaders(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	tests := []struct {
		spec, header string
		calls        []realCall
	}{
		{"testdata/real/libxml2.toml", "/usr/include/libxml2/libxml/xmlstring.h", []realCall{
			{"xmlUTF8Strlen", "héllo", int64(5)}, {"xmlCheckUTF8", "héllo", int64(1)},
		}},
		{"testdata/real/jpeglib.toml", "/usr/include/jpeglib.h", []realCall{
			{"jpeg_quality_scaling", int32(75), int64(50)}, {"jpeg_quality_scaling", int32(25), int64(200)},
		}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.spec), func(t *testing.T) {
			if _, err := os.Stat(tt.header); err != nil {
				t.Skipf("no %s (CI installs libxml2-dev and libjpeg62-turbo-dev)", tt.header)
			}
			testutil.CheckLeaks(t)
			data, err := os.ReadFile(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseSpec(tt.spec, data)
			if err != nil {
				t.Fatal(err)
			}
			files, err := Generate(s)
			if err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(t.TempDir(), WorkerFile)
			if err := os.WriteFile(src, files[WorkerFile], 0o644); err != nil {
				t.Fatal(err)
			}
			bin := src + ".bin"
			args := append([]string{"-std=c99", "-O2", "-Wall", "-Werror", "-I", "../../sdk/c", "-o", bin, src}, s.Flags...)
			if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
				t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			runRealCalls(t, bin, tt.calls)
		})
	}
}

// realCall is one call of a generated worker and its expected result.
type realCall struct {
	method string
	arg    any
	want   int64
}

func runRealCalls(t *testing.T, bin string, calls []realCall) {
	ctx := context.Background()
	p, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	for _, c := range calls {
		got, err := bulkhead.CallAs[int64](ctx, p, c.method, c.arg)
		if err != nil || got != c.want {
			t.Errorf("%s(%v) = %d, %v; want %d", c.method, c.arg, got, err, c.want)
		}
	}
}
