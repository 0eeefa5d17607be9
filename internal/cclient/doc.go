// Package cclient drives the C client (clients/c/bulkhead_client.c) from
// Go, for its tests: its value checker is fuzzed against the daemon's
// (internal/wire), and its frame reader and error decoder against arbitrary
// bytes from a daemon. Nothing but tests imports it, so the core library
// does not need cgo; without cgo it is empty.
//
// The go command's cache does not see the C file, which is outside this
// directory: after changing it, test with -a (or edit this package) so that
// the test does not run a stale build.
package cclient
