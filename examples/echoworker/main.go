// Command echoworker is a worker on the Go SDK (package worker) that serves
// the two methods `bulkhead conform` can use, so that CI runs the Go SDK
// through the conformance kit as it runs the C SDK:
//
//	go build -o echoworker ./examples/echoworker
//	go run ./cmd/bulkhead conform --echo echo --sleep sleep -- ./echoworker
//
// echo(x) returns x's encoding unchanged; sleep(ms) waits ms milliseconds,
// or until its call is cancelled or passes its deadline.
package main

import (
	"fmt"
	"os"

	"github.com/bulkhead-go/bulkhead/internal/conform"
	"github.com/bulkhead-go/bulkhead/worker"
)

func main() {
	if !worker.IsWorker() {
		fmt.Fprintln(os.Stderr, "echoworker: a bulkhead worker; run it through a pool or `bulkhead conform`")
		os.Exit(78)
	}
	var s worker.Server
	conform.HandleEcho(&s)
	s.Run()
}
