package bulkhead_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/bulkhead-go/bulkhead"
)

// workerCommand returns a worker program for the examples: this test binary,
// which serves the helper methods when a pool starts it.
func workerCommand() string {
	exe, _ := os.Executable()
	return exe
}

func Example() {
	ctx := context.Background()
	pool, err := bulkhead.New(ctx, bulkhead.Config{
		Command: workerCommand(), // a program that serves calls with package worker
		Workers: 2,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close(ctx)

	s, err := bulkhead.CallAs[string](ctx, pool, "upper", "hello from a worker")
	fmt.Println(s, err)
	// Output: HELLO FROM A WORKER <nil>
}

// A crash in the native code fails only the call that caused it; the pool
// replaces the worker and keeps serving.
func Example_crash() {
	ctx := context.Background()
	pool, err := bulkhead.New(ctx, bulkhead.Config{
		Command: workerCommand(),
		Workers: 1,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close(ctx)

	_, err = pool.Call(ctx, "segv") // a NULL dereference in C
	var crash *bulkhead.CrashError
	if errors.As(err, &crash) {
		fmt.Println("crashed:", errors.Is(err, bulkhead.ErrWorkerCrashed), crash.Phase, crash.Signal)
	}

	s, err := bulkhead.CallAs[string](ctx, pool, "upper", "still serving")
	fmt.Println(s, err)
	// Output:
	// crashed: true call segmentation fault
	// STILL SERVING <nil>
}

// Handler errors come back as *RemoteError, and the worker keeps serving.
func ExampleRemoteError() {
	ctx := context.Background()
	pool, err := bulkhead.New(ctx, bulkhead.Config{Command: workerCommand(), Workers: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close(ctx)

	_, err = pool.Call(ctx, "fail")
	var remote *bulkhead.RemoteError
	if errors.As(err, &remote) {
		fmt.Println(remote.Code, remote.Message)
	}
	// Output: application no such record
}

// With Config.Pipeline, a saturated pool queues calls on its busy workers,
// so that each finds its next call waiting: many callers, few workers.
func ExampleConfig_pipeline() {
	ctx := context.Background()
	pool, err := bulkhead.New(ctx, bulkhead.Config{
		Command:  workerCommand(),
		Workers:  2,
		Pipeline: 8, // up to 8 calls wait in each busy worker's socket
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close(ctx)

	var wg sync.WaitGroup
	results := make([]string, 16)
	for i := range results {
		wg.Go(func() {
			s, err := bulkhead.CallAs[string](ctx, pool, "upper", fmt.Sprint("caller ", i))
			if err != nil {
				s = err.Error()
			}
			results[i] = s
		})
	}
	wg.Wait()
	fmt.Println(results[0], results[15], pool.Stats().Redispatched)
	// Output: CALLER 0 CALLER 15 0
}
