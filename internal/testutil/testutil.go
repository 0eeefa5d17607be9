// Package testutil holds what the tests of several packages share.
package testutil

import (
	"runtime"
	"testing"
	"time"
)

// Until waits until cond holds, yielding the processor in between. It fails
// the test after 20 seconds: a bound, not a synchronisation.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// Patterned is n bytes that differ from their neighbours, by seed: a
// payload whose corruption or misplacement a comparison sees.
func Patterned(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}
