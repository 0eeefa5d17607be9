//go:build !(linux && amd64)

package worker

// installCrashSignals does nothing here: a worker's fatal signal in native
// code is reported as the Go runtime does it (exit status 2). See
// crashsig_linux_amd64.go.
func installCrashSignals(string) {}
