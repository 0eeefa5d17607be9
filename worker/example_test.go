package worker_test

import (
	"context"
	"strings"

	"github.com/bulkhead-go/bulkhead/worker"
)

// A worker program: register handlers, then Run. Run serves the dispatcher
// that started this process and exits when it is done with it.
func ExampleServer() {
	var s worker.Server
	s.Handle("upper", worker.Func(func(ctx context.Context, in string) (string, error) {
		return strings.ToUpper(in), nil
	}))
	s.Handle("add", func(ctx context.Context, args worker.Args) (any, error) {
		var a, b int64
		if err := args.Scan(&a, &b); err != nil {
			return nil, err
		}
		return a + b, nil
	})
	if worker.IsWorker() { // started by a bulkhead dispatcher
		s.Run()
	}
}
