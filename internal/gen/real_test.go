package gen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
			runRealCalls(t, buildGenerated(t, gcc, loadSpec(t, tt.spec)), tt.calls)
		})
	}
}

// realCall is one call of a generated worker and its expected result.
type realCall struct {
	method string
	arg    any
	want   int64
}

// buildGenerated generates s's worker and builds it with gcc.
func buildGenerated(t *testing.T, gcc string, s *Spec) string {
	t.Helper()
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
	return bin
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

// The C types of testdata/real/libc.toml, as the generated package declares
// them: structs as CBOR arrays of their fields, nested ones nested.
type (
	divT struct {
		_         struct{} `cbor:",toarray"`
		Quot, Rem int32
	}
	lldivT struct {
		_         struct{} `cbor:",toarray"`
		Quot, Rem int64
	}
	timeval struct {
		_         struct{} `cbor:",toarray"`
		Sec, Usec int64
	}
	itimerval struct {
		_               struct{} `cbor:",toarray"`
		Interval, Value timeval
	}
)

// gen takes glibc's real structs: div_t and lldiv_t returned by value, and
// struct itimerval (two struct timeval) in and out, through a worker; and
// errno, as strerror's words, when glibc refuses.
func TestRealStructs(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	testutil.CheckLeaks(t)
	files := generate(t, "testdata/real/libc.toml")
	src := filepath.Join(t.TempDir(), WorkerFile)
	if err := os.WriteFile(src, files[WorkerFile], 0o644); err != nil {
		t.Fatal(err)
	}
	bin := src + ".bin"
	if out, err := exec.Command(gcc, "-std=c99", "-O2", "-Wall", "-Werror", "-I", "../../sdk/c", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	ctx := context.Background()
	p, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	for _, c := range []struct {
		a, b int32
		want divT
	}{{7, 2, divT{Quot: 3, Rem: 1}}, {-7, 2, divT{Quot: -3, Rem: -1}}} {
		if got, err := bulkhead.CallAs[divT](ctx, p, "div", c.a, c.b); err != nil || got != c.want {
			t.Errorf("div(%d, %d) = %+v, %v; want %+v", c.a, c.b, got, err, c.want)
		}
	}
	if got, err := bulkhead.CallAs[lldivT](ctx, p, "lldiv", int64(1<<40+5), int64(1<<20)); err != nil || got != (lldivT{Quot: 1 << 20, Rem: 5}) {
		t.Errorf("lldiv = %+v, %v", got, err)
	}
	const virtual = 1 // ITIMER_VIRTUAL: the worker's CPU time, which 100 s of never runs out here
	arm := itimerval{Value: timeval{Sec: 100, Usec: 250000}}
	if old, err := bulkhead.CallAs[itimerval](ctx, p, "setitimer", virtual, arm); err != nil || old != (itimerval{}) {
		t.Fatalf("setitimer = %+v, %v; want the zero timer back", old, err)
	}
	now, err := bulkhead.CallAs[itimerval](ctx, p, "getitimer", virtual)
	if err != nil || now.Interval != (timeval{}) || now.Value.Sec < 99 || now.Value.Sec > 100 {
		t.Fatalf("getitimer = %+v, %v; want about 100 s left, no interval", now, err)
	}
	old, err := bulkhead.CallAs[itimerval](ctx, p, "setitimer", virtual, itimerval{}) // disarmed
	if err != nil || old.Value.Sec < 99 || old.Value.Sec > 100 {
		t.Fatalf("setitimer(0) = %+v, %v; want the armed timer back", old, err)
	}
	// glibc's own refusal (EINVAL: a microsecond field of 2 s) is the call's
	// error, with strerror(errno) (the annotation's error) in its message.
	_, err = bulkhead.CallAs[itimerval](ctx, p, "setitimer", virtual, itimerval{Value: timeval{Usec: 2000000}})
	var re *bulkhead.RemoteError
	if !errors.As(err, &re) || re.Code != bulkhead.CodeApplication || re.Message != "setitimer: setitimer returned -1: Invalid argument" {
		t.Fatalf("setitimer with 2,000,000 µs: %v; want a *bulkhead.RemoteError with EINVAL's words", err)
	}
}

// TestGeneratedSlowCall: a generated worker over unistd.h's sleep, in a pool
// with a slow-call log. Generated workers offer no STACK (the C SDK's
// SIGUSR2 answer is opt-in, and a signal would cut the sleep short: the
// call would succeed early with the seconds left), so the slow call runs on
// to its deadline and ends canceled; the log shows it, scanned from the
// worker's memory, in sleep under the generated handler h_sleep.
func TestGeneratedSlowCall(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	testutil.CheckLeaks(t)
	spec := "header = \"unistd.h\"\npackage = \"unistdbh\"\n\n[[func]]\nname = \"sleep\"\n"
	s, err := ParseSpec("unistd.toml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	bin := buildGenerated(t, gcc, s)
	log := &testutil.Records{Message: "slow call", Recs: make(chan map[string]any, 4)}
	p, err := bulkhead.New(context.Background(), bulkhead.Config{Command: bin, Workers: 1,
		SlowCall: 100 * time.Millisecond, Logger: slog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		left, err := bulkhead.CallAs[uint64](ctx, p, "sleep", 30)
		if err == nil {
			err = fmt.Errorf("sleep(30) returned %d: cut short", left)
		}
		done <- err
	}()
	rec := <-log.Recs
	scanned, _ := rec["scanned_stack"].(string)
	for _, w := range []string{"blocked in clock_nanosleep", "sleep+", "h_sleep+0x"} {
		if !strings.Contains(scanned, w) {
			t.Errorf("scanned stack has no %q:\n%s", w, scanned)
		}
	}
	if rec["stack"] != nil {
		t.Errorf("a generated worker offered a STACK: %v", rec)
	}
	err = <-done
	var ce *bulkhead.CanceledError
	if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sleep(30): %v; want canceled by its deadline", err)
	}
	ce.Wait()
}

// libzstd's ZSTD_decompress, as the new user of trial 3 ran it: a failure
// names its code in ZSTD_getErrorName's words, not as the raw -70.
func TestRealZstd(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found in PATH")
	}
	if _, err := os.Stat("/usr/include/zstd.h"); err != nil {
		t.Skip("no /usr/include/zstd.h: apt-get install libzstd-dev (CI does)")
	}
	testutil.CheckLeaks(t)
	bin := buildGenerated(t, gcc, loadSpec(t, "testdata/real/zstd.toml"))
	ctx := context.Background()
	p, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	in := []byte(strings.Repeat("bulkhead gen ", 100))
	z, err := bulkhead.CallAs[[]byte](ctx, p, "ZSTD_compress", 1024, in, 3)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := bulkhead.CallAs[[]byte](ctx, p, "ZSTD_decompress", len(in), z); err != nil || string(out) != string(in) {
		t.Fatalf("ZSTD_decompress = %d bytes, %v; want the %d compressed", len(out), err, len(in))
	}
	for _, c := range []struct {
		src  []byte
		cap  int
		want string
	}{
		{z, 10, "ZSTD_decompress: ZSTD_decompress returned -70: Destination buffer is too small"},
		{[]byte("not zstd at all"), 100, "ZSTD_decompress: ZSTD_decompress returned -10: Unknown frame descriptor"},
	} {
		_, err := bulkhead.CallAs[[]byte](ctx, p, "ZSTD_decompress", c.cap, c.src)
		var re *bulkhead.RemoteError
		if !errors.As(err, &re) || re.Code != bulkhead.CodeApplication || re.Message != c.want {
			t.Errorf("ZSTD_decompress into %d bytes: %v; want %q", c.cap, err, c.want)
		}
	}
}
