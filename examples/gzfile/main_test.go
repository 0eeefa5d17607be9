package main

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// The example's checks hold (CI also runs it: go run ./examples/gzfile).
func TestRun(t *testing.T) {
	if _, err := os.Stat("/usr/include/zlib.h"); err != nil {
		t.Skip("no /usr/include/zlib.h: apt-get install zlib1g-dev (CI does)")
	}
	testutil.CheckLeaks(t)
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the worker is compiled afresh
	if err := run(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
}
