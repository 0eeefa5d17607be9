package surrogate

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
)

func TestBuild(t *testing.T) {
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no cc in PATH")
	}
	ctx := context.Background()
	o := Options{Dir: t.TempDir()}
	src := Source{Name: "w", C: "#define BULKHEAD_IMPLEMENTATION\n#include \"bulkhead.h\"\nint main(void) { return bh_serve(\"w\", NULL, 0); }\n"}
	bin, err := Build(ctx, src, o)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(bin)
	if err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("%s: %v, mode %v", bin, err, st.Mode())
	}
	// Another compiler is another cache entry: this one cannot build it.
	if _, err := Build(ctx, src, Options{Dir: o.Dir, CC: "/nonexistent/cc"}); err == nil {
		t.Fatal("a build with another compiler reused the cached program")
	}
	// The same compiler: the cached program.
	if again, err := Build(ctx, src, o); err != nil || again != bin {
		t.Fatalf("second build: %s, %v; want the cached %s", again, err, bin)
	}
	var be *BuildError
	_, err = Build(ctx, Source{Name: "bad", C: "this is not C"}, o)
	if !errors.As(err, &be) || be.Output == "" {
		t.Fatalf("a source that does not compile: %v; want a *BuildError with the compiler's output", err)
	}
	if _, err := Build(ctx, Source{Name: "a/b", C: "x"}, o); err == nil {
		t.Fatal("a name with a slash was accepted")
	}
}
