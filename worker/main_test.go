package worker

import (
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// The test binary's helper processes come from the module's one registry
// (internal/testutil); none is a pool worker.
func TestMain(m *testing.M) {
	testutil.Main(m, helpers(), "", func() bool { return false })
}
