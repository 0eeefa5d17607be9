package activation

import (
	"context"
	"os"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/worker"
)

// helpers is this test binary's registry of helper processes
// (testutil.Main): a class server whose classes the environment chooses
// (activation_helper_test.go), and a plain pool worker for the baselines.
func helpers() map[string]func() {
	return map[string]func(){
		"classes": func() { runClassHelper(os.Getenv(actClassesEnv)) },
		"worker":  runNullWorker,
	}
}

// TestMain is the test binary's one entry point: the tests, or a helper.
func TestMain(m *testing.M) { testutil.Main(m, helpers(), "worker", worker.IsWorker) }

// runNullWorker is a pool worker with one method, "null", for the
// baselines that an object call is compared with.
func runNullWorker() {
	s := &worker.Server{}
	s.Handle("null", func(context.Context, worker.Args) (any, error) { return nil, nil })
	if err := s.Serve(context.Background()); err != nil {
		os.Exit(1)
	}
}

func checkLeaks(t testing.TB) { testutil.CheckLeaks(t) }
