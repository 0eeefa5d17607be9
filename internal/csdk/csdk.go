//go:build cgo

package csdk

/*
#cgo CFLAGS: -I${SRCDIR}/../../sdk/c -std=c99 -O1
#define BULKHEAD_IMPLEMENTATION
#include "bulkhead.h"
#include <string.h>

static const char *csdk_check(const uint8_t *p, size_t n, int level) {
	bh_checker c;
	memset(&c, 0, sizeof c);
	const char *err = bh_check(&c, p, n, level) == 0 ? NULL : c.err;
	bh_checker_free(&c);
	return err;
}

// csdk_call parses a CALL payload; on success spans[2*i], spans[2*i+1] are the
// offsets of argument i (for i < max), each found with bh_arg and bh_skip.
static const char *csdk_call(const uint8_t *p, size_t n, size_t *mstart, size_t *mlen,
                             int64_t *deadline, size_t *nargs, size_t *spans, size_t max) {
	bh_checker c;
	bh_call call;
	memset(&c, 0, sizeof c);
	memset(&call, 0, sizeof call);
	const char *err = bh_parse_call(&c, p, n, &call) == 0 ? NULL : c.err;
	bh_checker_free(&c);
	if (err != NULL) {
		return err;
	}
	*mstart = (size_t)((const uint8_t *)call.method - p);
	*mlen = call.method_len;
	*deadline = call.deadline;
	*nargs = call.nargs;
	for (size_t i = 0; i < call.nargs && i < max; i++) {
		bh_cur a;
		if (bh_arg(&call, i, &a) != 0) {
			return "bh_arg failed on a checked call";
		}
		spans[2 * i] = (size_t)(a.p - p);
		if (bh_skip(&a) != 0) {
			return "bh_skip failed on a checked argument";
		}
		spans[2 * i + 1] = (size_t)(a.p - p);
	}
	return NULL;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// maxSpans is how many arguments' positions ParseCall reports.
const maxSpans = 64

// ptr returns p's first byte for C, or nil for an empty p.
func ptr(p []byte) *C.uint8_t {
	if len(p) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&p[0]))
}

// Check runs bh_check on p at nesting level `level`.
func Check(p []byte, level int) error {
	if e := C.csdk_check(ptr(p), C.size_t(len(p)), C.int(level)); e != nil {
		return errors.New(C.GoString(e))
	}
	return nil
}

// Call is what bh_parse_call found in a CALL payload.
type Call struct {
	Method   string
	Deadline int64
	NArgs    int
	Args     [][]byte // the first 64 arguments' encodings, slices of the payload
}

// ParseCall runs bh_parse_call on p, then reads each argument back with
// bh_arg and bh_skip.
func ParseCall(p []byte) (Call, error) {
	var mstart, mlen, nargs C.size_t
	var deadline C.int64_t
	var spans [2 * maxSpans]C.size_t
	if e := C.csdk_call(ptr(p), C.size_t(len(p)), &mstart, &mlen, &deadline, &nargs, &spans[0], maxSpans); e != nil {
		return Call{}, errors.New(C.GoString(e))
	}
	c := Call{Method: string(p[mstart : mstart+mlen]), Deadline: int64(deadline), NArgs: int(nargs)}
	for i := 0; i < c.NArgs && i < maxSpans; i++ {
		c.Args = append(c.Args, p[spans[2*i]:spans[2*i+1]])
	}
	return c, nil
}
