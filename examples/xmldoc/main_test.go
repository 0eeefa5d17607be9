package main

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// The example's checks hold (CI also runs it: go run ./examples/xmldoc).
func TestRun(t *testing.T) {
	if _, err := os.Stat("/usr/include/libxml2/libxml/tree.h"); err != nil {
		t.Skip("no /usr/include/libxml2/libxml/tree.h: apt-get install libxml2-dev (CI does)")
	}
	testutil.CheckLeaks(t)
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the worker is compiled afresh
	if err := run(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
}
