// Package sandbox applies a worker's protections: its environment, the
// user it runs as and its pinned binary. Each step that cannot be applied
// is an *Error naming the protection, so that the worker does not start
// (fail closed); nothing is silently skipped.
package sandbox

import "fmt"

// Error is a protection that was asked for and could not be applied.
type Error struct {
	Protection string // "user", "binary pin", ...
	Reason     string // why, in words
	Err        error  // the underlying error, if any
}

func (e *Error) Error() string {
	s := "sandbox: " + e.Protection + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func fail(protection string, err error, format string, a ...any) *Error {
	return &Error{Protection: protection, Reason: fmt.Sprintf(format, a...), Err: err}
}
