//go:build !(linux && amd64)

package worker

// The crash-signal helper exists on linux/amd64 only (crashsig_test.go).
func helpers() map[string]func() { return nil }
