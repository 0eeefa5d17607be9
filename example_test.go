package bulkhead_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

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
