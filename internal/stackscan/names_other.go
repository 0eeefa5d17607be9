//go:build !amd64

package stackscan

// archSyscallName: the other architectures have only the common ones.
func archSyscallName(int64) string { return "" }
