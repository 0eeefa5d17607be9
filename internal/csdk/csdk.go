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
                             int64_t *deadline, size_t *nargs, size_t *spans, size_t max, size_t *tpstart, size_t *tplen) {
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
	*tpstart = call.traceparent ? (size_t)((const uint8_t *)call.traceparent - p) : 0;
	*tplen = call.traceparent_len;
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

// csdk_object parses an ACTIVATE (type 19) or OBJCALL (type 20) payload with
// the SDK's own parser; name is the class or the method.
static const char *csdk_object(unsigned type, const uint8_t *p, size_t n, uint64_t *object, size_t *nstart,
                               size_t *nlen, int64_t *deadline, size_t *nargs) {
	bh_call call;
	memset(&call, 0, sizeof call);
	const char *err = bh__parse_object(type, p, n, &call) == 0 ? NULL : bh__w.chk.err;
	bh_checker_free(&bh__w.chk);
	if (err != NULL) {
		return err;
	}
	*object = call.object;
	*nstart = (size_t)((const uint8_t *)call.method - p);
	*nlen = call.method_len;
	*deadline = call.deadline;
	*nargs = call.nargs;
	return NULL;
}
*/
import "C"

import (
	"errors"
	"sync"
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
	// Traceparent is the call's traceparent, or "" (none, or not valid).
	Traceparent string
}

// ParseCall runs bh_parse_call on p, then reads each argument back with
// bh_arg and bh_skip.
func ParseCall(p []byte) (Call, error) {
	var mstart, mlen, nargs, tpstart, tplen C.size_t
	var deadline C.int64_t
	var spans [2 * maxSpans]C.size_t
	if e := C.csdk_call(ptr(p), C.size_t(len(p)), &mstart, &mlen, &deadline, &nargs, &spans[0], maxSpans, &tpstart, &tplen); e != nil {
		return Call{}, errors.New(C.GoString(e))
	}
	c := Call{Method: string(p[mstart : mstart+mlen]), Deadline: int64(deadline), NArgs: int(nargs),
		Traceparent: string(p[tpstart : tpstart+tplen])}
	for i := 0; i < c.NArgs && i < maxSpans; i++ {
		c.Args = append(c.Args, p[spans[2*i]:spans[2*i+1]])
	}
	return c, nil
}

// Object is what the SDK's parser found in an ACTIVATE or OBJCALL payload.
type Object struct {
	Object   uint64
	Name     string // the class of an ACTIVATE, the method of an OBJCALL
	Deadline int64
	NArgs    int
}

// objectMu serialises ParseObject: the SDK's parser keeps its scratch in
// the worker's one state.
var objectMu sync.Mutex

// ParseObject runs the SDK's ACTIVATE (activate true) or OBJCALL parser on p.
func ParseObject(activate bool, p []byte) (Object, error) {
	objectMu.Lock()
	defer objectMu.Unlock()
	typ := C.uint(20)
	if activate {
		typ = 19
	}
	var object C.uint64_t
	var nstart, nlen, nargs C.size_t
	var deadline C.int64_t
	if e := C.csdk_object(typ, ptr(p), C.size_t(len(p)), &object, &nstart, &nlen, &deadline, &nargs); e != nil {
		return Object{}, errors.New(C.GoString(e))
	}
	return Object{Object: uint64(object), Name: string(p[nstart : nstart+nlen]), Deadline: int64(deadline), NArgs: int(nargs)}, nil
}
