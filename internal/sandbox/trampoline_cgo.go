//go:build cgo

package sandbox

import "C" // trampoline.c's constructor is the trampoline, before the Go runtime starts

// Trampoline does nothing in a build with cgo: trampoline.c's constructor
// ran first, and a trampoline never gets here.
func Trampoline() {}
