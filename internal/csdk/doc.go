// Package csdk drives the C SDK (sdk/c/bulkhead.h) from Go, for its tests:
// its value checker and CALL parser are fuzzed against the Go decoder
// (internal/wire), and a worker built on it is run under a real Pool, over
// the socket and over shared memory. Nothing but tests imports it, so the
// core library does not need cgo; without cgo it is empty.
package csdk
