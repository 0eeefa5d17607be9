package sandbox

import (
	"slices"
	"testing"
)

func TestEnviron(t *testing.T) {
	got := Environ([]string{"HOME=/root", "PATH=/bin", "TOKEN=secret", "BULKHEAD_TEST_HELPER=x", "BULKHEAD_FD=3",
		"BULKHEAD_SHM_FD=5", "BULKHEAD_SANDBOX_TRAMPOLINE={}", "BULKHEAD_CHAOS_JOURNAL=/j"}, []string{"A=1", "PATH=/usr/bin"})
	want := []string{"PATH=/bin", "BULKHEAD_TEST_HELPER=x", "BULKHEAD_CHAOS_JOURNAL=/j", "A=1", "PATH=/usr/bin"}
	if !slices.Equal(got, want) {
		t.Fatalf("Environ = %q, want %q", got, want)
	}
}
