// Package bench holds the benchmark comparison module of bulkhead. Its
// command is ./cmd/compare; this package only carries the C sources of the
// floor, which cmd/compare builds at run time with the machine's compiler.
package bench

import _ "embed"

// PingPongC is the source of csrc/pingpong.c, the socketpair ping-pong floor.
// (csrc/ holds no Go files: a Go package directory with .c files would need cgo.)
//
//go:embed csrc/pingpong.c
var PingPongC []byte
