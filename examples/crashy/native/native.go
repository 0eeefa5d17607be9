// Package native wraps crashy, a small C library called through cgo that does
// real work and fails for real: a NULL dereference, abort(), exit() from C, an
// endless loop, and memory that is never freed. bulkhead's examples and tests
// use it to put genuine native faults inside worker processes.
//
// Segv, Abort, Exit and Hang do not return. Segv and Abort kill the process by
// the signal itself (SIGSEGV, SIGABRT), not by a Go runtime crash; see
// crashy.c for why.
package native

/*
#cgo CFLAGS: -O2 -Wall
#include <stdlib.h>
#include "crashy.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Checksum returns the 64-bit FNV-1a hash of b, computed in C.
func Checksum(b []byte) int64 {
	return int64(C.crashy_checksum((*C.uint8_t)(bytesPtr(b)), C.size_t(len(b))))
}

// Segv dereferences a NULL pointer in C. The process dies by SIGSEGV.
func Segv() {
	C.crashy_segv()
	panic("unreachable: crashy_segv returned")
}

// Abort calls abort() in C. The process dies by SIGABRT.
func Abort() {
	C.crashy_abort()
	panic("unreachable: crashy_abort returned")
}

// RawSegv dereferences a NULL pointer in C without the signal-handler reset
// that Segv does, as a C library that knows nothing of Go would. The Go
// runtime catches the SIGSEGV, prints "signal arrived during cgo execution"
// and a traceback, and exits with status 2 (unless it is told otherwise:
// the worker SDK makes a worker die by the signal itself).
func RawSegv() {
	C.crashy_raw_segv()
	panic("unreachable: crashy_raw_segv returned")
}

// RawAbort calls abort() in C without Abort's signal-handler reset; the Go
// runtime catches the SIGABRT, as for RawSegv.
func RawAbort() {
	C.crashy_raw_abort()
	panic("unreachable: crashy_raw_abort returned")
}

// BadFree corrupts the C heap: it frees a pointer into the middle of an
// allocation. glibc prints "free(): invalid pointer" and calls abort(); the
// Go runtime catches the SIGABRT, as for RawSegv.
func BadFree() {
	C.crashy_bad_free()
	panic("unreachable: crashy_bad_free returned")
}

// Exit calls exit(code) in C. Deferred Go functions do not run.
func Exit(code int) {
	C.crashy_exit(C.int(code))
	panic("unreachable: crashy_exit returned")
}

// Hang spins forever in C and never returns. Only a signal ends it.
func Hang() {
	C.crashy_hang()
	panic("unreachable: crashy_hang returned")
}

// Sleep sleeps in C's sleep(3) and returns the seconds left, which are not
// 0 if a signal handler interrupted it.
func Sleep(seconds uint) uint {
	return uint(C.crashy_sleep(C.uint(seconds)))
}

// Leak allocates n bytes in C, writes to every page so that they become
// resident, and never frees them. It panics if the allocation fails.
func Leak(n int) {
	if n < 0 {
		panic(fmt.Sprintf("native.Leak: negative size %d", n))
	}
	if C.crashy_leak(C.size_t(n)) == nil {
		panic(fmt.Sprintf("native.Leak: malloc of %d bytes failed", n))
	}
}

// WriteFD writes all of b to the file descriptor fd with write(2) from C,
// bypassing the Go runtime. It is meant for injecting bytes, such as garbage
// frames, into a descriptor from native code.
func WriteFD(fd int, b []byte) error {
	rc, err := C.crashy_write_fd(C.int(fd), bytesPtr(b), C.size_t(len(b)))
	if rc != 0 {
		return fmt.Errorf("native.WriteFD(%d): %w", fd, err)
	}
	return nil
}

// bytesPtr returns a pointer to b's data, or nil for an empty slice. Passing
// it to C for the duration of a call is allowed by the cgo pointer rules: the
// memory holds no Go pointers and C does not keep it.
func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}
