//go:build cgo

package csdk

/*
#define _GNU_SOURCE
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

// A thread-bound library, as GL contexts and interpreters are: tl_open makes
// a context current on the calling thread; every other call fails unless it
// runs on that thread with that context current.
typedef struct { long owner; long calls; } tl_ctx;
static __thread tl_ctx *tl_current;

static long tl_gettid(void) { return (long)syscall(SYS_gettid); }

static tl_ctx *tl_open(void) {
	tl_ctx *c = calloc(1, sizeof *c);
	if (c != NULL) {
		c->owner = tl_gettid();
		tl_current = c;
	}
	return c;
}

// tl_use returns the calls made so far, or -1 from a wrong thread.
static long tl_use(tl_ctx *c) {
	if (tl_current != c || c->owner != tl_gettid()) {
		return -1;
	}
	return ++c->calls;
}

static int tl_close(tl_ctx *c) {
	int ok = tl_current == c && c->owner == tl_gettid();
	if (ok) {
		tl_current = NULL;
	}
	free(c);
	return ok ? 0 : -1;
}
*/
import "C"

import (
	"errors"
	"fmt"
)

// ThreadCtx is a context of the thread-bound test library.
type ThreadCtx struct{ c *C.tl_ctx }

// ErrWrongThread is a call of the thread-bound library from a thread other
// than the one that opened the context.
var ErrWrongThread = errors.New("thread-bound library called from another thread")

// OpenThreadCtx opens a context, current on the calling OS thread.
func OpenThreadCtx() (ThreadCtx, error) {
	c := C.tl_open()
	if c == nil {
		return ThreadCtx{}, errors.New("tl_open: out of memory")
	}
	return ThreadCtx{c}, nil
}

// Use counts one call, which must come from the context's thread.
func (t ThreadCtx) Use() (int64, error) {
	n := int64(C.tl_use(t.c))
	if n < 0 {
		return 0, fmt.Errorf("tl_use on thread %d: %w", int64(C.tl_gettid()), ErrWrongThread)
	}
	return n, nil
}

// Close frees the context; it fails (and still frees) from another thread.
func (t ThreadCtx) Close() error {
	if C.tl_close(t.c) != 0 {
		return ErrWrongThread
	}
	return nil
}

// Tid is the calling thread's id.
func Tid() int64 { return int64(C.tl_gettid()) }
