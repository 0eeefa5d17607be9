// Command crashy-worker is the crashy worker as a program of its own, for a
// dispatcher that is not the bulkhead CLI. It is configured by the CRASHY_*
// environment variables (see crashy.Options.Environ):
//
//	go build -o crashy-worker ./examples/crashy/cmd/crashy-worker
//	// then, in Go: bulkhead.New(ctx, bulkhead.Config{Command: "./crashy-worker",
//	//	Env: append(os.Environ(), crashy.Options{Segv: 0.01}.Environ()...)})
package main

import "github.com/bulkhead-go/bulkhead/examples/crashy"

func main() { crashy.Main() }
