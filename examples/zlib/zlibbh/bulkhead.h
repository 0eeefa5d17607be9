/* bulkhead.h: write a bulkhead worker in C. One header, stb style, libc only.
 *
 * In exactly one C file of the worker:
 *
 *     #define BULKHEAD_IMPLEMENTATION
 *     #include "bulkhead.h"
 *
 * Every other file includes it without the define. The worker then names its
 * methods and hands control to bh_serve, which reads the launch environment,
 * sends HELLO, and serves calls until QUIT, end of file, the idle timeout or
 * its parent's death (docs/PROTOCOL.md, sections 1 to 9):
 *
 *     static int upper(bh_call *c, void *arg) {
 *         const char *s; size_t n;
 *         if (bh_arg_text(c, 0, &s, &n) != 0)
 *             return bh_fail(c, BH_BAD_ARGUMENTS, "upper takes a text string");
 *         ... bh_put_text(c->result, ...); return 0;
 *     }
 *     int main(void) {
 *         static const bh_method m[] = {{"upper", upper, NULL}};
 *         return bh_serve("myworker", m, 1);
 *     }
 *
 * What the SDK does for the worker: the environment (exit 78 when it is bad),
 * FD_CLOEXEC, the parent-death signal, HELLO, framing with the frame limit
 * checked before anything is allocated, the value rules of section 5 checked
 * on every CALL before a handler sees it and on every result before it is
 * sent, the start marker (section 6), calls whose deadline passed answered
 * `canceled` without running, PING, CANCEL (bh_canceled), QUIT, the idle
 * timeout, the shared-memory transport (section 9) when offered, and, with
 * bh_serve_objects, the object protocol of section 10: classes registered
 * and resumed, activation, object calls, release, SUSPEND, REVOKE
 * (bh_revoke) and events (bh_emit). Started as a fork server
 * (BULKHEAD_FORKSERVER_FD, PROTOCOL.md section 11), bh_serve clones a ready
 * worker per request of the dispatcher, after the program's own
 * initialisation has run once. With glibc, a fatal signal (SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL, SIGABRT) writes a crash report to stderr (the signal, the
 * call, the crashing frames) before the worker dies by it, where the
 * program left the signal's default action; SIGUSR2 is answered with a
 * STACK frame of the running call's frames only if the program defines
 * BH_STACK_ON_SIGUSR2 (see "crash reports and stacks": the signal ends the
 * call's sleeps and waits early). A caller's W3C traceparent, when it sends
 * one, is in call->traceparent (define BH_NO_TRACE to not take it).
 *
 * The worker is single-threaded: one call at a time, on the main thread,
 * which is what a thread-bound library needs (HELLO says concurrency 1).
 * Memory: the payload buffer and the result buffer grow to the largest frame
 * seen and are reused; the value checker keeps one scratch array of map keys,
 * also reused. Nothing else is allocated per call (an activation grows the
 * object table, at most to 2^20 objects).
 *
 * Build with -std=c99 (or later) on Linux. The implementation needs
 * _GNU_SOURCE, which it defines itself when this header is the first include
 * of the implementation file (or define it before any include).
 */
#ifndef BULKHEAD_H
#define BULKHEAD_H

#if defined(BULKHEAD_IMPLEMENTATION) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* syscall, clock_gettime, MSG_NOSIGNAL under -std=c99 */
#endif
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BH_PROTOCOL 1
#define BH_MAX_DEPTH 32       /* nesting levels of one payload */
#define BH_MAX_ITEMS 131072   /* items of an array, pairs of a map */
#define BH_MAX_METHOD 256     /* bytes of a method name */
#define BH_MAX_METHODS 4096   /* methods one worker serves */

/* ERROR codes (PROTOCOL.md section 3). */
enum {
	BH_APPLICATION = 1,
	BH_UNKNOWN_METHOD = 2,
	BH_BAD_ARGUMENTS = 3,
	BH_PANIC = 4,
	BH_CANCELED = 5,
	BH_SERVER_STOPPING = 6
};

/* Kinds of CBOR value, as bh_kind reports them. */
enum {
	BH_K_INVALID = 0,
	BH_K_UINT,   /* major type 0 */
	BH_K_NEGINT, /* major type 1: the value is -1 - argument */
	BH_K_BYTES,
	BH_K_TEXT,
	BH_K_ARRAY,
	BH_K_MAP,
	BH_K_FALSE,
	BH_K_TRUE,
	BH_K_NULL,
	BH_K_FLOAT
};

/* ---- checking values (section 5) ---------------------------------------- */

/* bh_checker validates CBOR against the protocol's value rules. Its scratch
 * array (for duplicate map keys) grows once and is reused; a zero value is
 * ready to use. */
typedef struct {
	void *keys;      /* scratch: the keys of the maps being checked */
	size_t cap, top; /* its capacity and use, in keys */
	const char *err; /* why the last check failed */
} bh_checker;

/* bh_check reports whether p[0:n] is exactly one data item that keeps every
 * rule of section 5, the item being at nesting level `level` (1 for a whole
 * payload). Levels count arrays and maps, as the Go SDK's decoder does: a
 * payload holds at most 32 nested containers. It returns 0, or -1 with the
 * reason in c->err. */
int bh_check(bh_checker *c, const uint8_t *p, size_t n, int level);
void bh_checker_free(bh_checker *c);

/* ---- reading values ----------------------------------------------------- */

/* bh_cur reads CBOR items in sequence. Every read checks the bytes left; a
 * read that fails (wrong kind, truncated) returns -1 and leaves the cursor
 * where it was. */
typedef struct {
	const uint8_t *p, *end;
} bh_cur;

int bh_kind(const bh_cur *c);
int bh_get_uint(bh_cur *c, uint64_t *v);  /* major 0 only */
int bh_get_int(bh_cur *c, int64_t *v);    /* fails outside int64 */
int bh_get_cbor_int(bh_cur *c, int *neg, uint64_t *mag); /* any CBOR integer */
int bh_get_bool(bh_cur *c, int *v);
int bh_get_null(bh_cur *c);
int bh_get_float(bh_cur *c, double *v);   /* 16, 32 or 64-bit floats */
int bh_get_bytes(bh_cur *c, const uint8_t **p, size_t *n);
int bh_get_text(bh_cur *c, const char **s, size_t *n); /* not NUL-terminated */
int bh_get_array(bh_cur *c, size_t *n);   /* then read n items */
int bh_get_map(bh_cur *c, size_t *n);     /* then read n key, value pairs */
int bh_skip(bh_cur *c);                   /* one whole item */

/* ---- writing values ----------------------------------------------------- */

/* bh_buf is a growable output buffer. A write that cannot be done (out of
 * memory, over `limit` when limit is not 0) sets `failed` and writes nothing
 * more; the SDK then answers the call with ERROR application. */
typedef struct {
	uint8_t *p;
	size_t len, cap, limit;
	int failed;
} bh_buf;

void bh_put_uint(bh_buf *b, uint64_t v);
void bh_put_int(bh_buf *b, int64_t v);
void bh_put_neg(bh_buf *b, uint64_t mag); /* the integer -1 - mag */
void bh_put_bool(bh_buf *b, int v);
void bh_put_null(bh_buf *b);
void bh_put_float(bh_buf *b, double v);
void bh_put_bytes(bh_buf *b, const void *p, size_t n);
void bh_put_text(bh_buf *b, const char *s, size_t n); /* must be UTF-8 */
void bh_put_str(bh_buf *b, const char *s);            /* NUL-terminated */
void bh_put_array(bh_buf *b, uint64_t n);             /* then n items */
void bh_put_map(bh_buf *b, uint64_t n);               /* then n pairs */
void bh_put_raw(bh_buf *b, const void *p, size_t n);  /* encoded CBOR */
/* bh_reserve makes room for n more bytes and returns where they go (the
 * caller then adds n to b->len), or NULL with b->failed set. */
uint8_t *bh_reserve(bh_buf *b, size_t n);
void bh_buf_free(bh_buf *b);

/* ---- serving calls ------------------------------------------------------ */

typedef struct bh_call bh_call;

/* bh_fn is a method. It writes its result into call->result (nothing
 * written: the result is null) and returns 0, or returns bh_fail(...). */
typedef int (*bh_fn)(bh_call *call, void *arg);

typedef struct {
	const char *name; /* 1 to 256 bytes */
	bh_fn fn;
	void *arg; /* passed to fn */
} bh_method;

struct bh_call {
	uint64_t id;
	uint64_t object; /* the object of an ACTIVATE or OBJCALL; 0 for a CALL */
	const char *method; /* not NUL-terminated */
	size_t method_len;
	int64_t deadline;   /* Unix nanoseconds; 0: none */
	size_t nargs;
	bh_buf *result;
	/* The caller's W3C traceparent (PROTOCOL.md section 3, "Trace
	 * context"): 55 bytes, not NUL-terminated; NULL when it sent none. */
	const char *traceparent;
	size_t traceparent_len;
	/* private */
	bh_cur args_;           /* the items of the args array */
	const uint8_t *argp_[16]; /* the first 16 arguments' starts */
	unsigned code_;         /* the ERROR code, once bh_fail was called */
	bh_buf *msg_;
};

/* bh_arg sets *c to read argument i (from 0). */
int bh_arg(const bh_call *call, size_t i, bh_cur *c);
int bh_arg_uint(const bh_call *call, size_t i, uint64_t *v);
int bh_arg_int(const bh_call *call, size_t i, int64_t *v);
int bh_arg_float(const bh_call *call, size_t i, double *v);
int bh_arg_bool(const bh_call *call, size_t i, int *v);
int bh_arg_bytes(const bh_call *call, size_t i, const uint8_t **p, size_t *n);
int bh_arg_text(const bh_call *call, size_t i, const char **s, size_t *n);
/* bh_arg_is_null reports whether argument i is present and null. */
int bh_arg_is_null(const bh_call *call, size_t i);

/* bh_fail makes the call's answer ERROR code with a printf-style message,
 * and returns -1 for the handler to return. */
int bh_fail(bh_call *call, unsigned code, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* bh_canceled reports whether the call should stop: its deadline has passed,
 * or a CANCEL for it has already arrived (the SDK looks at the bytes waiting
 * on the connection without blocking). A long handler polls it. */
int bh_canceled(bh_call *call);

/* ---- objects (section 10) -------------------------------------------- */

/* bh_create constructs an object's state from the activation's arguments
 * (bh_arg on call; call->object is the new object's id) and returns 0, or
 * bh_fail(...). */
typedef int (*bh_create_fn)(bh_call *call, void *class_arg, void **state);
/* bh_objfn is an object method: like bh_fn, with the object's state. */
typedef int (*bh_objfn)(bh_call *call, void *state, void *arg);

typedef struct {
	const char *name; /* 1 to 256 bytes */
	bh_objfn fn;
	void *arg;
} bh_objmethod;

/* bh_class is an object type the worker serves. The SDK runs every call on
 * its one thread, so it registers each class as "single" (threading 2):
 * one call at a time in the process, all on one OS thread. */
typedef struct {
	const char *name; /* 1 to 256 bytes of UTF-8, no control characters */
	bh_create_fn create;
	void (*destroy)(void *state, void *class_arg); /* may be NULL */
	const bh_objmethod *methods;
	size_t nmethods;
	void *arg; /* passed to create and destroy */
} bh_class;

/* bh_serve_objects is bh_serve for a class server: it registers the
 * classes (at most 256) after HELLO, then serves stateless calls,
 * activations, object calls and releases. */
int bh_serve_objects(const char *name, const bh_method *methods, size_t n, const bh_class *classes, size_t nclasses);

/* bh_emit sends event `name` of object `object` with args, one encoded
 * CBOR array (build it with bh_put_array ...), to the object's
 * subscribers. It returns 0, or -1 if the name or the array is invalid. */
int bh_emit(uint64_t object, const char *name, const uint8_t *args, size_t n);

/* bh_revoke stops taking activations (REVOKE): the dispatcher routes new
 * objects elsewhere and stops this worker once its objects are gone. */
void bh_revoke(void);

/* bh_passthrough runs one CALL payload ([method, deadline, args]) on
 * methods in this process, with no worker and no framing: for tests of a
 * generated client against its library (gen's passthrough build tag). It
 * returns 0 with the REPLY's payload in *out, or 1 with an ERROR payload,
 * valid until the next call. It is not thread-safe, and never used by a
 * worker. */
int bh_passthrough(const bh_method *methods, size_t n, const uint8_t *call, size_t len, const uint8_t **out,
                   size_t *outlen);

/* bh_max_frame is the frame limit, BULKHEAD_MAX_FRAME: a bound for what a
 * handler allocates on a caller's word. */
uint64_t bh_max_frame(void);

/* bh_serve runs the worker: methods[0:n] by name. It returns only the exit
 * status for main to return when start-up fails; otherwise it exits the
 * process itself with the statuses of PROTOCOL.md section 7. */
int bh_serve(const char *name, const bh_method *methods, size_t n);

/* bh_parse_call checks a CALL payload (the envelope and every argument) and
 * fills call's public fields and the argument cursor. It returns 0, or -1
 * with the reason in c->err. bh_serve uses it; it is public for tests. */
int bh_parse_call(bh_checker *c, const uint8_t *p, size_t n, bh_call *call);

#ifdef __cplusplus
}
#endif
#endif /* BULKHEAD_H */


/* ======================================================================== */
/* Implementation                                                           */
/* ======================================================================== */
#ifdef BULKHEAD_IMPLEMENTATION
#ifndef BULKHEAD_IMPLEMENTED
#define BULKHEAD_IMPLEMENTED

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---- CBOR heads ---------------------------------------------------------- */

typedef struct {
	unsigned major, ai;
	uint64_t arg;
} bh__head;

/* bh__get_head reads one head at *pp. Additional information 28 to 31
 * (reserved, indefinite lengths, break) is refused. */
static int bh__get_head(const uint8_t **pp, const uint8_t *end, bh__head *h) {
	const uint8_t *p = *pp;
	if (p >= end) {
		return -1;
	}
	h->major = *p >> 5;
	h->ai = *p & 31u;
	p++;
	if (h->ai < 24) {
		h->arg = h->ai;
	} else if (h->ai <= 27) {
		size_t n = (size_t)1 << (h->ai - 24);
		if ((size_t)(end - p) < n) {
			return -1;
		}
		h->arg = 0;
		for (size_t i = 0; i < n; i++) {
			h->arg = h->arg << 8 | p[i];
		}
		p += n;
	} else {
		return -1;
	}
	*pp = p;
	return 0;
}

/* bh__utf8 reports whether s[0:n] is well-formed UTF-8: no overlong forms,
 * no surrogates, nothing above U+10FFFF (what Go's utf8.Valid accepts). */
static int bh__utf8(const uint8_t *s, size_t n) {
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t k;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			k = 1, cp = c & 0x1fu, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2, cp = c & 0x0fu, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3, cp = c & 0x07u, min = 0x10000;
		} else {
			return 0;
		}
		if (n - i - 1 < k) {
			return 0;
		}
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80) {
				return 0;
			}
			cp = cp << 6 | (s[i + j] & 0x3fu);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
			return 0;
		}
		i += k + 1;
	}
	return 1;
}

/* ---- the value checker ---------------------------------------------------- */

typedef struct {
	unsigned major; /* 0, 1 or 3 */
	uint64_t arg;   /* the integer's argument, or the text's length */
	const uint8_t *text;
} bh__key;

static int bh__key_cmp(const void *a, const void *b) {
	const bh__key *x = a, *y = b;
	if (x->major != y->major) {
		return x->major < y->major ? -1 : 1;
	}
	if (x->arg != y->arg) {
		return x->arg < y->arg ? -1 : 1;
	}
	return x->major == 3 && x->arg > 0 ? memcmp(x->text, y->text, (size_t)x->arg) : 0;
}

#define BH__FAIL(c, msg) return ((c)->err = (msg), -1)

static int bh__item(bh_checker *c, const uint8_t **pp, const uint8_t *end, int level);

static int bh__push_key(bh_checker *c, const bh__key *k) {
	if (c->top == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		void *keys = realloc(c->keys, cap * sizeof(bh__key));
		if (keys == NULL) {
			BH__FAIL(c, "out of memory checking map keys");
		}
		c->keys = keys;
		c->cap = cap;
	}
	((bh__key *)c->keys)[c->top++] = *k;
	return 0;
}

/* bh__map checks n pairs: keys integers (-2^63 to 2^64-1) or text, unique. */
static int bh__map(bh_checker *c, const uint8_t **pp, const uint8_t *end, uint64_t n, int level) {
	if (n > BH_MAX_ITEMS) {
		BH__FAIL(c, "map has too many pairs");
	}
	size_t base = c->top;
	int rc = 0;
	for (uint64_t i = 0; i < n && rc == 0; i++) {
		const uint8_t *start = *pp;
		bh__head h;
		bh__key k;
		if (bh__get_head(pp, end, &h) != 0) {
			c->err = "truncated or indefinite CBOR";
			rc = -1;
			break;
		}
		k.major = h.major;
		k.arg = h.arg;
		k.text = *pp;
		if (h.major == 1 && h.arg >= (uint64_t)1 << 63) {
			c->err = "map key below -2^63";
			rc = -1;
		} else if (h.major == 3) {
			*pp = start;
			rc = bh__item(c, pp, end, level + 1);
		} else if (h.major != 0 && h.major != 1) {
			c->err = "map keys must be integers or text";
			rc = -1;
		}
		if (rc == 0) {
			rc = bh__push_key(c, &k);
		}
		if (rc == 0) {
			rc = bh__item(c, pp, end, level + 1);
		}
	}
	if (rc == 0 && c->top - base > 1) {
		bh__key *keys = (bh__key *)c->keys + base;
		size_t m = c->top - base;
		qsort(keys, m, sizeof *keys, bh__key_cmp);
		for (size_t i = 1; i < m; i++) {
			if (bh__key_cmp(&keys[i - 1], &keys[i]) == 0) {
				c->err = "duplicate map key";
				rc = -1;
				break;
			}
		}
	}
	c->top = base;
	return rc;
}

/* bh__item checks one item at nesting level `level`. */
static int bh__item(bh_checker *c, const uint8_t **pp, const uint8_t *end, int level) {
	bh__head h;
	if (bh__get_head(pp, end, &h) != 0) {
		BH__FAIL(c, "truncated, indefinite-length or reserved CBOR item");
	}
	switch (h.major) {
	case 0:
	case 1:
		return 0;
	case 2:
	case 3:
		if (h.arg > (uint64_t)(end - *pp)) {
			BH__FAIL(c, "truncated CBOR string");
		}
		if (h.major == 3 && !bh__utf8(*pp, (size_t)h.arg)) {
			BH__FAIL(c, "text string is not valid UTF-8");
		}
		*pp += h.arg;
		return 0;
	case 4:
		if (level > BH_MAX_DEPTH) {
			BH__FAIL(c, "CBOR nested too deeply");
		}
		if (h.arg > BH_MAX_ITEMS) {
			BH__FAIL(c, "array has too many items");
		}
		for (uint64_t i = 0; i < h.arg; i++) {
			if (bh__item(c, pp, end, level + 1) != 0) {
				return -1;
			}
		}
		return 0;
	case 5:
		if (level > BH_MAX_DEPTH) {
			BH__FAIL(c, "CBOR nested too deeply");
		}
		return bh__map(c, pp, end, h.arg, level);
	case 6:
		BH__FAIL(c, "CBOR tags are not allowed");
	default:
		switch (h.ai) {
		case 20: case 21: case 22: case 25: case 26: case 27:
			return 0;
		}
		BH__FAIL(c, "CBOR simple value other than false, true and null");
	}
}

int bh_check(bh_checker *c, const uint8_t *p, size_t n, int level) {
	const uint8_t *end = p + n;
	c->top = 0;
	c->err = NULL;
	if (bh__item(c, &p, end, level) != 0) {
		return -1;
	}
	if (p != end) {
		BH__FAIL(c, "trailing bytes after the CBOR item");
	}
	return 0;
}

void bh_checker_free(bh_checker *c) {
	free(c->keys);
	c->keys = NULL;
	c->cap = c->top = 0;
}

/* ---- the cursor ----------------------------------------------------------- */

static int bh__peek(const bh_cur *c, bh__head *h, const uint8_t **after) {
	const uint8_t *p = c->p;
	if (bh__get_head(&p, c->end, h) != 0) {
		return -1;
	}
	*after = p;
	return 0;
}

int bh_kind(const bh_cur *c) {
	bh__head h;
	const uint8_t *p;
	if (bh__peek(c, &h, &p) != 0) {
		return BH_K_INVALID;
	}
	switch (h.major) {
	case 0: return BH_K_UINT;
	case 1: return BH_K_NEGINT;
	case 2: return BH_K_BYTES;
	case 3: return BH_K_TEXT;
	case 4: return BH_K_ARRAY;
	case 5: return BH_K_MAP;
	case 7:
		switch (h.ai) {
		case 20: return BH_K_FALSE;
		case 21: return BH_K_TRUE;
		case 22: return BH_K_NULL;
		case 25: case 26: case 27: return BH_K_FLOAT;
		}
	}
	return BH_K_INVALID;
}

int bh_get_cbor_int(bh_cur *c, int *neg, uint64_t *mag) {
	bh__head h;
	const uint8_t *p;
	if (bh__peek(c, &h, &p) != 0 || h.major > 1) {
		return -1;
	}
	*neg = h.major == 1;
	*mag = h.arg;
	c->p = p;
	return 0;
}

int bh_get_uint(bh_cur *c, uint64_t *v) {
	bh_cur save = *c;
	int neg;
	if (bh_get_cbor_int(c, &neg, v) != 0 || neg) {
		*c = save;
		return -1;
	}
	return 0;
}

int bh_get_int(bh_cur *c, int64_t *v) {
	bh_cur save = *c;
	int neg;
	uint64_t m;
	if (bh_get_cbor_int(c, &neg, &m) != 0 || m > (uint64_t)INT64_MAX) {
		*c = save;
		return -1;
	}
	*v = neg ? -1 - (int64_t)m : (int64_t)m;
	return 0;
}

int bh_get_bool(bh_cur *c, int *v) {
	int k = bh_kind(c);
	if (k != BH_K_TRUE && k != BH_K_FALSE) {
		return -1;
	}
	*v = k == BH_K_TRUE;
	c->p++;
	return 0;
}

int bh_get_null(bh_cur *c) {
	if (bh_kind(c) != BH_K_NULL) {
		return -1;
	}
	c->p++;
	return 0;
}

/* bh__half converts an IEEE 754 half to a double without libm. */
static double bh__half(uint16_t h) {
	uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ffu, f;
	float out;
	if (e == 0 && m == 0) {
		f = sign;
	} else if (e == 0) { /* subnormal: normalise */
		e = 127 - 15 + 1;
		while ((m & 0x400) == 0) {
			m <<= 1;
			e--;
		}
		f = sign | e << 23 | (m & 0x3ffu) << 13;
	} else if (e == 31) {
		f = sign | 0x7f800000u | m << 13;
	} else {
		f = sign | (e + 127 - 15) << 23 | m << 13;
	}
	memcpy(&out, &f, sizeof out);
	return out;
}

int bh_get_float(bh_cur *c, double *v) {
	bh__head h;
	const uint8_t *p;
	if (bh_kind(c) != BH_K_FLOAT || bh__peek(c, &h, &p) != 0) {
		return -1;
	}
	if (h.ai == 25) {
		*v = bh__half((uint16_t)h.arg);
	} else if (h.ai == 26) {
		uint32_t b = (uint32_t)h.arg;
		float f;
		memcpy(&f, &b, sizeof f);
		*v = f;
	} else {
		memcpy(v, &h.arg, sizeof *v);
	}
	c->p = p;
	return 0;
}

static int bh__get_string(bh_cur *c, unsigned major, const uint8_t **s, size_t *n) {
	bh__head h;
	const uint8_t *p;
	if (bh__peek(c, &h, &p) != 0 || h.major != major || h.arg > (uint64_t)(c->end - p)) {
		return -1;
	}
	*s = p;
	*n = (size_t)h.arg;
	c->p = p + h.arg;
	return 0;
}

int bh_get_bytes(bh_cur *c, const uint8_t **p, size_t *n) { return bh__get_string(c, 2, p, n); }

int bh_get_text(bh_cur *c, const char **s, size_t *n) {
	const uint8_t *p;
	if (bh__get_string(c, 3, &p, n) != 0) {
		return -1;
	}
	*s = (const char *)p;
	return 0;
}

static int bh__get_container(bh_cur *c, unsigned major, size_t *n) {
	bh__head h;
	const uint8_t *p;
	/* Each item takes at least one byte, each pair two. */
	if (bh__peek(c, &h, &p) != 0 || h.major != major || h.arg > BH_MAX_ITEMS ||
	    h.arg > (uint64_t)(c->end - p) / (major == 5 ? 2 : 1)) {
		return -1;
	}
	*n = (size_t)h.arg;
	c->p = p;
	return 0;
}

int bh_get_array(bh_cur *c, size_t *n) { return bh__get_container(c, 4, n); }
int bh_get_map(bh_cur *c, size_t *n) { return bh__get_container(c, 5, n); }

static int bh__skip(bh_cur *c, int level) {
	bh__head h;
	const uint8_t *p;
	size_t n;
	if (bh__peek(c, &h, &p) != 0 || h.major == 6 || ((h.major == 4 || h.major == 5) && level > BH_MAX_DEPTH)) {
		return -1;
	}
	switch (h.major) {
	case 2:
	case 3:
		if (h.arg > (uint64_t)(c->end - p)) {
			return -1;
		}
		c->p = p + h.arg;
		return 0;
	case 4:
	case 5:
		if (bh__get_container(c, h.major, &n) != 0) {
			return -1;
		}
		if (h.major == 5) {
			n *= 2;
		}
		for (size_t i = 0; i < n; i++) {
			if (bh__skip(c, level + 1) != 0) {
				return -1;
			}
		}
		return 0;
	default:
		c->p = p;
		return 0;
	}
}

int bh_skip(bh_cur *c) {
	bh_cur save = *c;
	if (bh__skip(c, 1) != 0) {
		*c = save;
		return -1;
	}
	return 0;
}

/* ---- the encoder ---------------------------------------------------------- */

uint8_t *bh_reserve(bh_buf *b, size_t n) {
	if (b->failed) {
		return NULL;
	}
	if (n > SIZE_MAX / 2 - b->len || (b->limit != 0 && b->len + n > b->limit)) {
		b->failed = 1;
		return NULL;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n) {
			cap *= 2;
		}
		uint8_t *p = realloc(b->p, cap);
		if (p == NULL) {
			b->failed = 1;
			return NULL;
		}
		b->p = p;
		b->cap = cap;
	}
	return b->p + b->len;
}

void bh_put_raw(bh_buf *b, const void *p, size_t n) {
	uint8_t *d = bh_reserve(b, n);
	if (d != NULL) {
		if (n) {
			memcpy(d, p, n);
		}
		b->len += n;
	}
}

static void bh__put_head(bh_buf *b, unsigned major, uint64_t v) {
	uint8_t h[9];
	size_t n;
	uint8_t m = (uint8_t)(major << 5);
	if (v < 24) {
		h[0] = (uint8_t)(m | v);
		n = 0;
	} else if (v <= 0xff) {
		h[0] = m | 24, n = 1;
	} else if (v <= 0xffff) {
		h[0] = m | 25, n = 2;
	} else if (v <= 0xffffffffu) {
		h[0] = m | 26, n = 4;
	} else {
		h[0] = m | 27, n = 8;
	}
	for (size_t i = 0; i < n; i++) {
		h[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	}
	bh_put_raw(b, h, n + 1);
}

void bh_put_uint(bh_buf *b, uint64_t v) { bh__put_head(b, 0, v); }
void bh_put_neg(bh_buf *b, uint64_t mag) { bh__put_head(b, 1, mag); }
void bh_put_int(bh_buf *b, int64_t v) {
	if (v >= 0) {
		bh__put_head(b, 0, (uint64_t)v);
	} else {
		bh__put_head(b, 1, (uint64_t)(-1 - v));
	}
}
void bh_put_bool(bh_buf *b, int v) { bh_put_raw(b, v ? "\xf5" : "\xf4", 1); }
void bh_put_null(bh_buf *b) { bh_put_raw(b, "\xf6", 1); }
void bh_put_float(bh_buf *b, double v) {
	uint64_t bits;
	uint8_t h[9];
	memcpy(&bits, &v, sizeof bits);
	h[0] = 0xfb;
	for (int i = 0; i < 8; i++) {
		h[1 + i] = (uint8_t)(bits >> (8 * (7 - i)));
	}
	bh_put_raw(b, h, sizeof h);
}
void bh_put_bytes(bh_buf *b, const void *p, size_t n) {
	bh__put_head(b, 2, n);
	bh_put_raw(b, p, n);
}
void bh_put_text(bh_buf *b, const char *s, size_t n) {
	bh__put_head(b, 3, n);
	bh_put_raw(b, s, n);
}
void bh_put_str(bh_buf *b, const char *s) { bh_put_text(b, s, strlen(s)); }
void bh_put_array(bh_buf *b, uint64_t n) { bh__put_head(b, 4, n); }
void bh_put_map(bh_buf *b, uint64_t n) { bh__put_head(b, 5, n); }
void bh_buf_free(bh_buf *b) {
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->failed = 0;
}

/* ---- calls ---------------------------------------------------------------- */

static int bh__args(bh_checker *c, bh_cur cur, bh_call *call);
static int bh__traceparent(bh_checker *c, bh_cur cur, bh_call *call);
/* BH__TRACE: CALL and OBJCALL take a traceparent, and HELLO says so.
 * Define BH_NO_TRACE to leave it out (then HELLO does not offer it). */
#ifdef BH_NO_TRACE
#define BH__TRACE 0
#else
#define BH__TRACE 1
#endif

int bh_parse_call(bh_checker *c, const uint8_t *p, size_t n, bh_call *call) {
	bh_cur cur = {p, p + n};
	size_t len;
	const char *m;
	if (n == 0 || (p[0] != 0x83 && !(p[0] == 0x84 && BH__TRACE))) {
		BH__FAIL(c, "CALL payload is not an array of 3 items, or 4 with a traceparent");
	}
	if (bh_check(c, p, n, 1) != 0) {
		return -1;
	}
	cur.p++;
	if (bh_get_text(&cur, &m, &len) != 0 || len < 1 || len > BH_MAX_METHOD) {
		BH__FAIL(c, "method is not a text string of 1 to 256 bytes");
	}
	call->method = m;
	call->method_len = len;
	if (bh_get_int(&cur, &call->deadline) != 0 || call->deadline < 0) {
		BH__FAIL(c, "deadline is not a non-negative 64-bit integer");
	}
	if (bh__args(c, cur, call) != 0) {
		return -1;
	}
	return p[0] == 0x84 ? bh__traceparent(c, cur, call) : 0;
}

/* bh__traceparent reads a traceparent after the args array at cur: a text
 * string of at most 256 bytes, kept if it is W3C's version 00 form. */
static int bh__traceparent(bh_checker *c, bh_cur cur, bh_call *call) {
	const char *s;
	size_t n;
	bh_skip(&cur); /* the args, checked already */
	if (bh_get_text(&cur, &s, &n) != 0 || n > 256) {
		BH__FAIL(c, "traceparent is not a text string of at most 256 bytes");
	}
	static const char *form = "00-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-xxxxxxxxxxxxxxxx-xx";
	int zero_trace = 1, zero_parent = 1;
	if (n != 55) {
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		int hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
		if (form[i] == 'x' ? !hex : s[i] != form[i]) {
			return 0;
		}
		if (s[i] != '0' && i >= 3 && i < 35) {
			zero_trace = 0;
		}
		if (s[i] != '0' && i >= 36 && i < 52) {
			zero_parent = 0;
		}
	}
	if (!zero_trace && !zero_parent) {
		call->traceparent = s;
		call->traceparent_len = n;
	}
	return 0;
}

/* bh__args reads the args array at cur, of an envelope already checked. */
static int bh__args(bh_checker *c, bh_cur cur, bh_call *call) {
	bh__head h;
	if (bh__get_head(&cur.p, cur.end, &h) != 0 || h.major != 4) {
		BH__FAIL(c, "args is not an array");
	}
	call->nargs = (size_t)h.arg;
	call->args_ = cur;
	for (size_t i = 0; i < call->nargs && i < sizeof call->argp_ / sizeof call->argp_[0]; i++) {
		call->argp_[i] = cur.p;
		bh_skip(&cur); /* checked already */
	}
	return 0;
}

int bh_arg(const bh_call *call, size_t i, bh_cur *c) {
	size_t cached = sizeof call->argp_ / sizeof call->argp_[0];
	if (i >= call->nargs) {
		return -1;
	}
	*c = call->args_;
	if (i < cached) {
		c->p = call->argp_[i];
		return 0;
	}
	c->p = call->argp_[cached - 1];
	for (size_t k = cached - 1; k < i; k++) {
		if (bh_skip(c) != 0) {
			return -1;
		}
	}
	return 0;
}

int bh_arg_uint(const bh_call *call, size_t i, uint64_t *v) {
	bh_cur c;
	return bh_arg(call, i, &c) != 0 ? -1 : bh_get_uint(&c, v);
}
int bh_arg_int(const bh_call *call, size_t i, int64_t *v) {
	bh_cur c;
	return bh_arg(call, i, &c) != 0 ? -1 : bh_get_int(&c, v);
}
int bh_arg_float(const bh_call *call, size_t i, double *v) {
	bh_cur c;
	return bh_arg(call, i, &c) != 0 ? -1 : bh_get_float(&c, v);
}
int bh_arg_bool(const bh_call *call, size_t i, int *v) {
	bh_cur c;
	return bh_arg(call, i, &c) != 0 ? -1 : bh_get_bool(&c, v);
}
int bh_arg_bytes(const bh_call *call, size_t i, const uint8_t **p, size_t *n) {
	bh_cur c;
	return bh_arg(call, i, &c) != 0 ? -1 : bh_get_bytes(&c, p, n);
}
int bh_arg_text(const bh_call *call, size_t i, const char **s, size_t *n) {
	bh_cur c;
	return bh_arg(call, i, &c) != 0 ? -1 : bh_get_text(&c, s, n);
}
int bh_arg_is_null(const bh_call *call, size_t i) {
	bh_cur c;
	return bh_arg(call, i, &c) == 0 && bh_kind(&c) == BH_K_NULL;
}

/* bh__errmsg appends an ERROR payload {code, message[, details]} to b. A
 * message is cut to 1 KiB at a UTF-8 boundary and made valid. */
static void bh__errmsg(bh_buf *b, unsigned code, const char *msg, int not_started) {
	size_t n = strlen(msg);
	if (n > 1024) {
		n = 1024;
	}
	while (n > 0 && !bh__utf8((const uint8_t *)msg, n)) {
		n--;
	}
	bh_put_map(b, not_started ? 3 : 2);
	bh_put_str(b, "code");
	bh_put_uint(b, code);
	bh_put_str(b, "message");
	bh_put_text(b, msg, n);
	if (not_started) {
		bh_put_str(b, "details");
		bh_put_map(b, 1);
		bh_put_str(b, "started");
		bh_put_bool(b, 0);
	}
}

int bh_fail(bh_call *call, unsigned code, const char *fmt, ...) {
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	call->code_ = code ? code : BH_APPLICATION;
	if (call->msg_ != NULL) {
		call->msg_->len = 0;
		call->msg_->failed = 0;
		bh__errmsg(call->msg_, call->code_, msg, 0);
	}
	return -1;
}

/* ---- the worker's state ----------------------------------------------------- */

#define BH__HEADER 16
#define BH__MARKER_MAGIC 0x4b4d4842u
#define BH__EXIT_PROTOCOL 1
#define BH__EXIT_SOFTWARE 70
#define BH__EXIT_CONFIG 78

enum { BH__HELLO = 1, BH__CALL, BH__REPLY, BH__ERROR, BH__CANCEL, BH__QUIT, BH__PING, BH__PONG };
enum {
	BH__REGISTER = 16, BH__RESUME, BH__REVOKE, BH__ACTIVATE, BH__OBJCALL, BH__RELEASE, BH__SUSPEND, BH__EVENT
};
#define BH__UNKNOWN_CLASS 9
#define BH__UNKNOWN_OBJECT 10
#define BH__MAX_OBJECTS (1u << 20)
#define BH__MAX_CLASSES 256

typedef struct {
	uint8_t *base;
	uint64_t size;
	uint64_t pos;  /* our own index: the head we write, or the tail we read */
	uint64_t peer; /* the other side's index, as last seen: never goes back */
} bh__pipe;

static struct {
	const char *name;
	const bh_method *methods;
	size_t nmethods;
	int sock;
	uint64_t max_frame, idle_ms, idle_since, last_id;
	volatile uint64_t *started; /* the start marker's word, or NULL */
	int shm;                    /* frames travel through the pipes */
	int shm_mapped;             /* the pipes were offered and mapped */
	long spin;
	bh__pipe in, out;
	uint8_t rbuf[1 << 16];
	size_t rs, re; /* the buffered bytes: rbuf[rs:re] */
	bh_buf payload, result, msg;
	bh_checker chk;
	/* section 10 */
	bh_buf ev; /* an EVENT being sent */
	const bh_class *classes;
	size_t nclasses;
	int stopping; /* SUSPEND or REVOKE: activations are refused */
	struct bh__obj {
		uint64_t id; /* 0: a free slot */
		const bh_class *cls;
		void *state;
	} *objs;
	size_t objcap, nobjs; /* a power of two; at most half full */
} bh__w;

static void bh__die(int status, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3), noreturn))
#endif
    ;
static void bh__die(int status, const char *fmt, ...) {
	va_list ap;
	fprintf(stderr, "%s: ", bh__w.name ? bh__w.name : "bulkhead worker");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

#define bh__protocol_error(...) bh__die(BH__EXIT_PROTOCOL, "protocol error: " __VA_ARGS__)

static uint64_t bh__le(const uint8_t *p, int n) {
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--) {
		v = v << 8 | p[i];
	}
	return v;
}

static void bh__put_le(uint8_t *p, uint64_t v, int n) {
	for (int i = 0; i < n; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static uint64_t bh__now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int64_t bh__wall_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the shared-memory pipes (section 9) ------------------------------------ */

#define BH__U64(p, off) ((uint64_t *)(void *)((p)->base + (off)))
#define BH__U32(p, off) ((uint32_t *)(void *)((p)->base + (off)))
#define BH__HEAD(p) BH__U64(p, 0)
#define BH__TAIL(p) BH__U64(p, 64)
#define BH__DATA_SEQ(p) BH__U32(p, 128)
#define BH__READER_WAITS(p) BH__U32(p, 132)
#define BH__SPACE_SEQ(p) BH__U32(p, 192)
#define BH__WRITER_WAITS(p) BH__U32(p, 196)
#define BH__CLOSED(p) BH__U32(p, 256)
#define BH__RING(p) ((p)->base + 4096)

static void bh__futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts) {
	syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static void bh__bump(uint32_t *seq, uint32_t *waits) {
	__atomic_add_fetch(seq, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(waits, __ATOMIC_SEQ_CST)) {
		bh__futex(seq, FUTEX_WAKE, INT_MAX, NULL);
	}
}

/* bh__ring_read copies at most n bytes: the count, 0 if the ring is empty,
 * -1 at the end of the stream. The head is the dispatcher's word: checked. */
static long bh__ring_read(uint8_t *dst, size_t n) {
	bh__pipe *in = &bh__w.in;
	uint64_t head = __atomic_load_n(BH__HEAD(in), __ATOMIC_ACQUIRE);
	if (head < in->peer || head - in->pos > in->size) {
		bh__protocol_error("pipe 0's head went from %llu to %llu (tail %llu)",
		                   (unsigned long long)in->peer, (unsigned long long)head, (unsigned long long)in->pos);
	}
	in->peer = head;
	uint64_t avail = head - in->pos;
	if (avail == 0) {
		return __atomic_load_n(BH__CLOSED(in), __ATOMIC_ACQUIRE) ? -1 : 0;
	}
	size_t k = avail < n ? (size_t)avail : n;
	size_t at = (size_t)(in->pos & (in->size - 1)), first = (size_t)in->size - at;
	if (first > k) {
		first = k;
	}
	memcpy(dst, BH__RING(in) + at, first);
	memcpy(dst + first, BH__RING(in), k - first);
	in->pos += k;
	__atomic_store_n(BH__TAIL(in), in->pos, __ATOMIC_RELEASE);
	bh__bump(BH__SPACE_SEQ(in), BH__WRITER_WAITS(in));
	return (long)k;
}

/* bh__ring_write copies what fits of n bytes: the count, or -1 once shut. */
static long bh__ring_write(const uint8_t *src, size_t n) {
	bh__pipe *out = &bh__w.out;
	if (__atomic_load_n(BH__CLOSED(out), __ATOMIC_ACQUIRE)) {
		return -1;
	}
	uint64_t tail = __atomic_load_n(BH__TAIL(out), __ATOMIC_ACQUIRE);
	if (tail < out->peer || tail > out->pos || out->pos - tail > out->size) {
		bh__protocol_error("pipe 1's tail went from %llu to %llu (head %llu)",
		                   (unsigned long long)out->peer, (unsigned long long)tail, (unsigned long long)out->pos);
	}
	out->peer = tail;
	size_t room = (size_t)(out->size - (out->pos - tail)), k = room < n ? room : n;
	size_t at = (size_t)(out->pos & (out->size - 1)), first = (size_t)out->size - at;
	if (first > k) {
		first = k;
	}
	memcpy(BH__RING(out) + at, src, first);
	memcpy(BH__RING(out), src + first, k - first);
	out->pos += k;
	__atomic_store_n(BH__HEAD(out), out->pos, __ATOMIC_RELEASE);
	bh__bump(BH__DATA_SEQ(out), BH__READER_WAITS(out));
	return (long)k;
}

/* bh__ring_wait polls, then sleeps on seq until ready() or ms pass (-1: no
 * limit). It returns 0 when ready, -1 on timeout. */
static int bh__ring_wait(uint32_t *seq, uint32_t *waits, int (*ready)(void), long ms) {
	uint64_t until = ms < 0 ? 0 : bh__now_ms() + (uint64_t)ms;
	for (long i = 0; i < bh__w.spin; i++) {
		if (ready()) {
			return 0;
		}
	}
	for (;;) {
		uint32_t v = __atomic_load_n(seq, __ATOMIC_SEQ_CST);
		__atomic_store_n(waits, 1, __ATOMIC_SEQ_CST);
		if (ready()) {
			__atomic_store_n(waits, 0, __ATOMIC_SEQ_CST);
			return 0;
		}
		struct timespec ts, *tsp = NULL;
		if (ms >= 0) {
			uint64_t now = bh__now_ms();
			if (now >= until) {
				__atomic_store_n(waits, 0, __ATOMIC_SEQ_CST);
				return -1;
			}
			ts.tv_sec = (time_t)((until - now) / 1000);
			ts.tv_nsec = (long)((until - now) % 1000) * 1000000L;
			tsp = &ts;
		}
		bh__futex(seq, FUTEX_WAIT, v, tsp);
		__atomic_store_n(waits, 0, __ATOMIC_SEQ_CST);
	}
}

static int bh__in_ready(void) {
	return __atomic_load_n(BH__HEAD(&bh__w.in), __ATOMIC_ACQUIRE) != bh__w.in.pos ||
	       __atomic_load_n(BH__CLOSED(&bh__w.in), __ATOMIC_ACQUIRE) != 0;
}

static int bh__out_ready(void) {
	return bh__w.out.pos - __atomic_load_n(BH__TAIL(&bh__w.out), __ATOMIC_ACQUIRE) < bh__w.out.size ||
	       __atomic_load_n(BH__CLOSED(&bh__w.out), __ATOMIC_ACQUIRE) != 0;
}

/* ---- the transport: the socket, or the pipes after HELLO --------------------- */

/* bh__raw_read reads at most n bytes, waiting up to ms (-1: no limit): the
 * count, 0 at the end of the stream, -1 when ms passed with nothing. */
static long bh__raw_read(uint8_t *dst, size_t n, long ms) {
	for (;;) {
		if (bh__w.shm) {
			long r = bh__ring_read(dst, n);
			if (r != 0) {
				return r < 0 ? 0 : r;
			}
			if (bh__ring_wait(BH__DATA_SEQ(&bh__w.in), BH__READER_WAITS(&bh__w.in), bh__in_ready, ms) != 0) {
				return -1;
			}
			continue;
		}
		struct pollfd pfd = {bh__w.sock, POLLIN, 0};
		int rc = poll(&pfd, 1, ms < 0 ? -1 : ms > INT_MAX ? INT_MAX : (int)ms);
		if (rc == 0) {
			return -1;
		}
		if (rc < 0) {
			if (errno == EINTR) {
				continue;
			}
			bh__die(BH__EXIT_PROTOCOL, "poll: %s", strerror(errno));
		}
		ssize_t r = read(bh__w.sock, dst, n);
		if (r >= 0) {
			return (long)r;
		}
		if (errno == ECONNRESET) {
			return 0;
		}
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
			bh__die(BH__EXIT_PROTOCOL, "read: %s", strerror(errno));
		}
	}
}

/* bh__fill reads into the buffer's free space, waiting up to ms: what
 * bh__raw_read returns. */
static long bh__fill(long ms) {
	if (bh__w.rs > 0 && bh__w.re == sizeof bh__w.rbuf) {
		memmove(bh__w.rbuf, bh__w.rbuf + bh__w.rs, bh__w.re - bh__w.rs);
		bh__w.re -= bh__w.rs;
		bh__w.rs = 0;
	}
	if (bh__w.re == sizeof bh__w.rbuf) {
		return -1; /* full: nothing more can be looked at */
	}
	long r = bh__raw_read(bh__w.rbuf + bh__w.re, sizeof bh__w.rbuf - bh__w.re, ms);
	if (r > 0) {
		bh__w.re += (size_t)r;
	}
	return r;
}

/* bh__read_exact fills dst with n bytes of the stream; it exits 0 at the end
 * of the stream (the dispatcher is gone). */
static void bh__read_exact(uint8_t *dst, size_t n) {
	while (n > 0) {
		if (bh__w.rs == bh__w.re) {
			bh__w.rs = bh__w.re = 0;
			long r = n >= sizeof bh__w.rbuf ? bh__raw_read(dst, n, -1) : bh__fill(-1);
			if (r == 0) {
				exit(0);
			}
			if (n >= sizeof bh__w.rbuf) {
				dst += r;
				n -= (size_t)r;
			}
			continue;
		}
		size_t k = bh__w.re - bh__w.rs < n ? bh__w.re - bh__w.rs : n;
		memcpy(dst, bh__w.rbuf + bh__w.rs, k);
		bh__w.rs += k;
		dst += k;
		n -= k;
	}
}

static void bh__write_all(const uint8_t *h, size_t hn, const uint8_t *p, size_t n) {
	struct iovec iov[2] = {{(void *)h, hn}, {(void *)p, n}};
	int first = 0;
	while (iov[0].iov_len + iov[1].iov_len > 0) {
		struct iovec *v = &iov[first];
		if (v->iov_len == 0) {
			first = 1;
			continue;
		}
		long w;
		if (bh__w.shm) {
			w = bh__ring_write(v->iov_base, v->iov_len);
			if (w < 0) {
				exit(0); /* the dispatcher shut the pipe */
			}
			if (w == 0) {
				bh__ring_wait(BH__SPACE_SEQ(&bh__w.out), BH__WRITER_WAITS(&bh__w.out), bh__out_ready, -1);
				continue;
			}
		} else {
			/* MSG_NOSIGNAL: a vanished dispatcher is an orderly end. */
			struct msghdr m;
			memset(&m, 0, sizeof m);
			m.msg_iov = v;
			m.msg_iovlen = (size_t)(2 - first);
			w = sendmsg(bh__w.sock, &m, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR) {
					continue;
				}
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					struct pollfd pfd = {bh__w.sock, POLLOUT, 0};
					poll(&pfd, 1, -1);
					continue;
				}
				if (errno == EPIPE || errno == ECONNRESET) {
					exit(0);
				}
				bh__die(BH__EXIT_PROTOCOL, "write: %s", strerror(errno));
			}
		}
		for (size_t k = (size_t)w; k > 0;) {
			size_t d = k < iov[first].iov_len ? k : iov[first].iov_len;
			iov[first].iov_base = (uint8_t *)iov[first].iov_base + d;
			iov[first].iov_len -= d;
			k -= d;
			if (iov[first].iov_len == 0 && first == 0) {
				first = 1;
			}
		}
	}
}

/* ---- crash reports and stacks (PROTOCOL.md sections 3 and 7) --------------- */

/* With glibc, bh__setup installs two signal handlers where the program left
 * the default action:
 *
 *  - for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT, a crash report on
 *    stderr (the signal, the call and the crashing thread's frames), after
 *    which the signal's default action ends the process, as without it;
 *  - only if the program defines BH_STACK_ON_SIGUSR2 before including
 *    this header, for SIGUSR2, a STACK frame with the frames of the
 *    interrupted call (HELLO says "stack": "SIGUSR2-call-thread"), sent
 *    from the handler itself:
 *    the handler interrupts the call's thread where it is stuck. Caveat:
 *    the signal ends the call's blocking wait early whatever SA_RESTART
 *    says (nanosleep, sleep, poll, select, epoll_wait, futex waits with a
 *    timeout... return EINTR or the time left), so a call that does not
 *    retry them returns early when the dispatcher's slow-call log asks for
 *    its stack. Without it the dispatcher still shows where a slow call is,
 *    without a signal: it reads the blocked thread's stack from /proc and
 *    the worker's memory (PROTOCOL.md section 3).
 *
 * Both use glibc's backtrace(3), loaded once at start-up so that the
 * handlers allocate nothing. Frames of functions that are not exported
 * (static, or a program linked without -rdynamic) show as an offset in the
 * program; the report's "program" line lets the dispatcher name them from
 * the program's symbol table. Define BH_NO_BACKTRACE to leave both out. */
#if defined(__GLIBC__) && !defined(BH_NO_BACKTRACE)
#include <execinfo.h>

#define BH__FRAMES 64
#define BH__DUMP_MAX (64u << 10)
#define BH__STACK 9

static struct {
	int stack;                       /* SIGUSR2 is answered: HELLO says "stack" */
	int memfd;                       /* backtrace_symbols_fd writes here; read back for a STACK */
	long tid;                        /* the thread that serves calls */
	bh_call *volatile call;          /* the call running, for the reports */
	volatile sig_atomic_t io;        /* a frame is being written: a STACK waits for it */
	volatile sig_atomic_t pending;   /* a STACK is waiting in dump */
	size_t dump_len;                 /* its frame's length */
	char exe[PATH_MAX];              /* the program, from /proc/self/exe */
	uint8_t dump[BH__HEADER + 5 + BH__DUMP_MAX];
} bh__dg;

static char bh__altstack[64 << 10];

/* bh__dg_put appends s to b[*n:cap], as much as fits. */
static void bh__dg_put(char *b, size_t *n, size_t cap, const char *s) {
	while (*s && *n < cap) {
		b[(*n)++] = *s++;
	}
}

/* bh__dg_num appends v in base 10 or 16 (with 0x). */
static void bh__dg_num(char *b, size_t *n, size_t cap, uint64_t v, int hex) {
	char t[24];
	int i = (int)sizeof t - 1;
	t[i] = 0;
	do {
		t[--i] = "0123456789abcdef"[v % (hex ? 16 : 10)];
		v /= hex ? 16 : 10;
	} while (v > 0);
	if (hex) {
		t[--i] = 'x';
		t[--i] = '0';
	}
	bh__dg_put(b, n, cap, t + i);
}

static const char *bh__dg_signame(int sig) {
	switch (sig) {
	case SIGSEGV: return "SIGSEGV";
	case SIGBUS: return "SIGBUS";
	case SIGFPE: return "SIGFPE";
	case SIGILL: return "SIGILL";
	case SIGABRT: return "SIGABRT";
	case SIGUSR2: return "SIGUSR2";
	}
	return "signal";
}

/* bh__dg_head writes a report's first lines: what happened, in which call,
 * and which program the frames' offsets are in. */
static size_t bh__dg_head(char *b, size_t cap, int sig, const siginfo_t *si) {
	size_t n = 0;
	bh_call *c = bh__dg.call;
	if (sig == SIGUSR2) {
		bh__dg_put(b, &n, cap, "bulkhead: stack of pid ");
		bh__dg_num(b, &n, cap, (uint64_t)getpid(), 0);
	} else {
		bh__dg_put(b, &n, cap, "bulkhead: fatal signal ");
		bh__dg_num(b, &n, cap, (uint64_t)sig, 0);
		bh__dg_put(b, &n, cap, " (");
		bh__dg_put(b, &n, cap, bh__dg_signame(sig));
		bh__dg_put(b, &n, cap, "), code ");
		if (si->si_code < 0) {
			bh__dg_put(b, &n, cap, "-");
		}
		bh__dg_num(b, &n, cap, (uint64_t)(si->si_code < 0 ? -(int64_t)si->si_code : si->si_code), 0);
		bh__dg_put(b, &n, cap, ", address ");
		bh__dg_num(b, &n, cap, (uint64_t)(uintptr_t)si->si_addr, 1);
	}
	if (c != NULL) {
		bh__dg_put(b, &n, cap, ", in call ");
		bh__dg_num(b, &n, cap, c->id, 0);
		bh__dg_put(b, &n, cap, " \"");
		for (size_t i = 0; i < c->method_len && i < 64 && n < cap; i++) {
			unsigned char ch = (unsigned char)c->method[i];
			b[n++] = ch >= 0x20 && ch < 0x7f && ch != '"' ? (char)ch : '?';
		}
		bh__dg_put(b, &n, cap, "\"");
	} else {
		bh__dg_put(b, &n, cap, ", between calls");
	}
	bh__dg_put(b, &n, cap, "\nbulkhead: program ");
	bh__dg_put(b, &n, cap, program_invocation_name);
	bh__dg_put(b, &n, cap, " is ");
	bh__dg_put(b, &n, cap, bh__dg.exe);
	bh__dg_put(b, &n, cap, "\n");
	return n;
}

static void bh__dg_write(int fd, const void *p, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w <= 0) {
			return;
		}
		p = (const char *)p + w;
		n -= (size_t)w;
	}
}

/* bh__dg_frames takes the calling thread's frames into f and returns the
 * index of the interrupted one (the signal's PC, found in the context), so
 * that the handler's own frames are left out; 0 if it is not found. */
static int bh__dg_frames(void **f, int *n, const void *ctx) {
	uintptr_t pc = 0;
	const ucontext_t *uc = (const ucontext_t *)ctx;
#if defined(__x86_64__)
	pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	pc = (uintptr_t)uc->uc_mcontext.pc;
#else
	(void)uc;
#endif
	*n = backtrace(f, BH__FRAMES);
	for (int i = 0; i < *n; i++) {
		if ((uintptr_t)f[i] == pc) {
			return i;
		}
	}
	return 0;
}

/* bh__on_crash reports a fatal signal on stderr, then ends the process by
 * that signal's default action. Every crash signal is blocked while it
 * runs: a fault inside it kills the process at once. */
static void bh__on_crash(int sig, siginfo_t *si, void *ctx) {
	char b[1024 + PATH_MAX];
	void *f[BH__FRAMES];
	int n, at;
	struct sigaction dfl;
	bh__dg_write(2, b, bh__dg_head(b, sizeof b, sig, si));
	at = bh__dg_frames(f, &n, ctx);
	backtrace_symbols_fd(f + at, n - at, 2);
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
	/* A fault raises itself again when the handler returns; abort(),
	 * raise() and kill() need this (delivered once the handler returns). */
	raise(sig);
}

#ifdef BH_STACK_ON_SIGUSR2
/* bh__dg_send writes the STACK frame in dump from the SIGUSR2 handler: on
 * failure it gives up, leaving the main loop to find the connection broken. */
static void bh__dg_send(void) {
	const uint8_t *p = bh__dg.dump;
	size_t n = bh__dg.dump_len;
	while (n > 0) {
		long w;
		if (bh__w.shm) {
			w = bh__ring_write(p, n);
			if (w < 0) {
				return;
			}
			if (w == 0) {
				bh__ring_wait(BH__SPACE_SEQ(&bh__w.out), BH__WRITER_WAITS(&bh__w.out), bh__out_ready, -1);
				continue;
			}
		} else {
			w = send(bh__w.sock, p, n, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR) {
				continue;
			}
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				struct pollfd pfd = {bh__w.sock, POLLOUT, 0};
				poll(&pfd, 1, -1);
				continue;
			}
			if (w <= 0) {
				return;
			}
		}
		p += w;
		n -= (size_t)w;
	}
}

/* bh__on_stack answers SIGUSR2: the interrupted thread's frames, as a STACK
 * frame, sent at once unless a frame is being written (then by bh__send,
 * right after it). */
static void bh__on_stack(int sig, siginfo_t *si, void *ctx) {
	int saved = errno;
	void *f[BH__FRAMES];
	char head[1024 + PATH_MAX];
	int n, at;
	off_t len;
	(void)sig;
	if (syscall(SYS_gettid) != bh__dg.tid) {
		/* Another thread of the library's took it: the call's thread
		 * is the one whose frames are wanted. */
		syscall(SYS_tgkill, getpid(), bh__dg.tid, SIGUSR2);
		errno = saved;
		return;
	}
	if (bh__dg.pending) {
		errno = saved;
		return;
	}
	at = bh__dg_frames(f, &n, ctx);
	lseek(bh__dg.memfd, 0, SEEK_SET);
	bh__dg_write(bh__dg.memfd, head, bh__dg_head(head, sizeof head, SIGUSR2, si));
	backtrace_symbols_fd(f + at, n - at, bh__dg.memfd);
	len = lseek(bh__dg.memfd, 0, SEEK_CUR);
	if (len <= 0) {
		errno = saved;
		return;
	}
	if ((uint64_t)len > BH__DUMP_MAX) {
		len = BH__DUMP_MAX;
	}
	if ((uint64_t)len + 5 > bh__w.max_frame) {
		len = (off_t)(bh__w.max_frame - 5);
	}
	uint8_t *text = bh__dg.dump + BH__HEADER + 5;
	len = pread(bh__dg.memfd, text, (size_t)len, 0);
	if (len <= 0) {
		errno = saved;
		return;
	}
	for (off_t i = 0; i < len; i++) {
		if (text[i] >= 0x80) {
			text[i] = '?'; /* a CBOR text string is UTF-8: keep it ASCII */
		}
	}
	uint8_t *h = bh__dg.dump;
	bh__put_le(h, (uint64_t)len + 5, 4);
	h[4] = BH__STACK;
	memset(h + 5, 0, 11); /* flags, reserved, id 0 */
	h[BH__HEADER] = 0x7a; /* text string, 4-byte length */
	for (int i = 0; i < 4; i++) {
		h[BH__HEADER + 1 + i] = (uint8_t)((uint64_t)len >> (24 - 8 * i));
	}
	bh__dg.dump_len = BH__HEADER + 5 + (size_t)len;
	if (bh__dg.io) {
		bh__dg.pending = 1;
	} else {
		bh__dg_send();
	}
	errno = saved;
}

#endif /* BH_STACK_ON_SIGUSR2 */

/* bh__dg_catch installs h for sig if the program left sig's default
 * action; it reports whether it did. */
static int bh__dg_catch(int sig, void (*h)(int, siginfo_t *, void *), int flags) {
	struct sigaction old, act;
	if (sigaction(sig, NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) {
		return 0;
	}
	memset(&act, 0, sizeof act);
	act.sa_sigaction = h;
	act.sa_flags = SA_SIGINFO | flags;
	sigemptyset(&act.sa_mask);
	sigaddset(&act.sa_mask, SIGSEGV);
	sigaddset(&act.sa_mask, SIGBUS);
	sigaddset(&act.sa_mask, SIGFPE);
	sigaddset(&act.sa_mask, SIGILL);
	sigaddset(&act.sa_mask, SIGABRT);
	sigaddset(&act.sa_mask, SIGUSR2);
	return sigaction(sig, &act, NULL) == 0;
}

static void bh__dg_setup(void) {
	static const int crash[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
	void *f[2];
	stack_t ss;
	ssize_t k = readlink("/proc/self/exe", bh__dg.exe, sizeof bh__dg.exe - 1);
	bh__dg.exe[k > 0 ? k : 0] = 0;
	bh__dg.tid = syscall(SYS_gettid);
	if (backtrace(f, 2) <= 0) {
		return; /* no unwinder (libgcc_s could not be loaded) */
	}
	memset(&ss, 0, sizeof ss);
	ss.ss_sp = bh__altstack;
	ss.ss_size = sizeof bh__altstack;
	sigaltstack(&ss, NULL); /* a stack overflow's report needs a stack */
	for (size_t i = 0; i < sizeof crash / sizeof crash[0]; i++) {
		bh__dg_catch(crash[i], bh__on_crash, SA_ONSTACK);
	}
#ifdef BH_STACK_ON_SIGUSR2
	bh__dg.memfd = memfd_create("bulkhead-stack", MFD_CLOEXEC);
	if (bh__dg.memfd >= 0) {
		bh__dg.stack = bh__dg_catch(SIGUSR2, bh__on_stack, SA_RESTART | SA_ONSTACK);
	}
#endif
}

/* bh__dg_sent runs after each frame: a STACK asked for meanwhile goes now. */
static void bh__dg_sent(void) {
	if (bh__dg.pending) {
		bh__write_all(bh__dg.dump, bh__dg.dump_len, NULL, 0);
		bh__dg.pending = 0;
	}
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	bh__dg.io = 0;
}
#define bh__dg_io() (bh__dg.io = 1, __atomic_signal_fence(__ATOMIC_SEQ_CST))
#define bh__dg_stack() bh__dg.stack
#define bh__dg_call(c) (bh__dg.call = (c))
#else
#define bh__dg_setup() ((void)0)
#define bh__dg_io() ((void)0)
#define bh__dg_sent() ((void)0)
#define bh__dg_stack() 0
#define bh__dg_call(c) ((void)(c))
#endif

static void bh__send(unsigned type, uint64_t id, const uint8_t *p, size_t n) {
	uint8_t h[BH__HEADER];
	bh__put_le(h, n, 4);
	h[4] = (uint8_t)type;
	h[5] = 0;
	bh__put_le(h + 6, 0, 2);
	bh__put_le(h + 8, id, 8);
	bh__dg_io();
	bh__write_all(h, sizeof h, p, n);
	bh__dg_sent();
}

static void bh__send_error(uint64_t id, unsigned code, const char *msg, int not_started) {
	bh__w.msg.len = 0;
	bh__w.msg.failed = 0;
	bh__errmsg(&bh__w.msg, code, msg, not_started);
	bh__send(BH__ERROR, id, bh__w.msg.p, bh__w.msg.len);
}

/* ---- cancellation ------------------------------------------------------------ */

int bh_canceled(bh_call *call) {
	if (call->deadline > 0 && bh__wall_ns() >= call->deadline) {
		return 1;
	}
	if (call->msg_ == NULL) {
		return 0; /* not a call bh_serve runs */
	}
	bh__fill(0);
	/* Look at the whole frames already here, without consuming them. */
	size_t at = bh__w.rs;
	while (bh__w.re - at >= BH__HEADER) {
		const uint8_t *h = bh__w.rbuf + at;
		uint64_t len = bh__le(h, 4);
		if (h[4] == BH__CANCEL && bh__le(h + 8, 8) == call->id) {
			return 1;
		}
		if (len > bh__w.re - at - BH__HEADER) {
			break;
		}
		at += BH__HEADER + (size_t)len;
	}
	return 0;
}

/* ---- start-up ------------------------------------------------------------------ */

static int bh__parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *v) {
	uint64_t x = 0;
	if (s == NULL || *s == '\0') {
		return -1;
	}
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || x > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) {
			return -1;
		}
		x = x * 10 + (uint64_t)(*s - '0');
	}
	if (x < lo || x > hi) {
		return -1;
	}
	*v = x;
	return 0;
}

/* bh__env reads variable name as a decimal from lo to hi; def when unset. */
static uint64_t bh__env(const char *name, uint64_t lo, uint64_t hi, uint64_t def) {
	const char *s = getenv(name);
	uint64_t v;
	if (s == NULL) {
		return def;
	}
	if (bh__parse_u64(s, lo, hi, &v) != 0) {
		bh__die(BH__EXIT_CONFIG, "%s=%s is not a decimal from %llu to %llu", name, s,
		        (unsigned long long)lo, (unsigned long long)hi);
	}
	return v;
}

static int bh__env_fd(const char *name) {
	int fd = (int)bh__env(name, 0, 1 << 20, 0);
	int flags = fcntl(fd, F_GETFD);
	if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
		bh__die(BH__EXIT_CONFIG, "%s=%d: %s", name, fd, strerror(errno));
	}
	return fd;
}

/* bh__map_marker maps the start marker; a page that is not usable is not
 * fatal: the worker then says marker: false. */
static void bh__map_marker(int fd) {
	struct stat st;
	uint8_t *page;
	if (fstat(fd, &st) != 0 || st.st_size < 4096) {
		fprintf(stderr, "%s: the start marker is not a 4096-byte file; not using it\n", bh__w.name);
		return;
	}
	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (page == MAP_FAILED) {
		fprintf(stderr, "%s: mmap of the start marker: %s; not using it\n", bh__w.name, strerror(errno));
		return;
	}
	if (bh__le(page, 4) != BH__MARKER_MAGIC || bh__le(page + 4, 4) != 1) {
		fprintf(stderr, "%s: the start marker has a bad magic or version; not using it\n", bh__w.name);
		munmap(page, 4096);
		return;
	}
	bh__w.started = (volatile uint64_t *)(void *)(page + 8);
}

/* bh__map_shm maps the pipes of section 9 when they are offered. */
static void bh__map_shm(void) {
	uint64_t size, total;
	int fd;
	struct stat st;
	uint8_t *base;
	if (getenv("BULKHEAD_SHM_FD") == NULL) {
		return;
	}
	fd = bh__env_fd("BULKHEAD_SHM_FD");
	size = bh__env("BULKHEAD_SHM_SIZE", 4096, (uint64_t)1 << 30, 0);
	if (size & (size - 1)) {
		bh__die(BH__EXIT_CONFIG, "BULKHEAD_SHM_SIZE=%llu is not a power of two", (unsigned long long)size);
	}
	bh__w.spin = (long)bh__env("BULKHEAD_SHM_SPIN", 0, 1 << 30, 1000);
	total = 2 * (4096 + size);
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < total) {
		fprintf(stderr, "%s: the shared memory is smaller than 2 x (4096 + %llu); staying on the socket\n",
		        bh__w.name, (unsigned long long)size);
		return;
	}
	base = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		fprintf(stderr, "%s: mmap of the shared memory: %s; staying on the socket\n", bh__w.name, strerror(errno));
		return;
	}
	bh__w.in.base = base;
	bh__w.out.base = base + 4096 + size;
	bh__w.in.size = bh__w.out.size = size;
	bh__w.shm_mapped = 1;
}

static void bh__hello(const char *cookie) {
	bh_buf *b = &bh__w.msg;
	b->len = 0;
	bh_put_map(b, 7 + (bh__w.shm_mapped ? 1 : 0) + (bh__dg_stack() ? 1 : 0) + BH__TRACE);
	bh_put_str(b, "protocol");
	bh_put_uint(b, BH_PROTOCOL);
	bh_put_str(b, "pid");
	bh_put_uint(b, (uint64_t)getpid());
	bh_put_str(b, "cookie");
	bh_put_str(b, cookie);
	bh_put_str(b, "methods");
	bh_put_array(b, bh__w.nmethods);
	for (size_t i = 0; i < bh__w.nmethods; i++) {
		bh_put_str(b, bh__w.methods[i].name);
	}
	bh_put_str(b, "concurrency");
	bh_put_uint(b, 1);
	bh_put_str(b, "marker");
	bh_put_bool(b, bh__w.started != NULL);
	bh_put_str(b, "name");
	bh_put_str(b, bh__w.name);
	if (bh__w.shm_mapped) {
		bh_put_str(b, "transport");
		bh_put_str(b, "shm");
	}
	if (bh__dg_stack()) {
		bh_put_str(b, "stack");
		bh_put_str(b, "SIGUSR2-call-thread"); /* it interrupts the call: PROTOCOL.md section 3 */
	}
	if (BH__TRACE) {
		bh_put_str(b, "trace");
		bh_put_str(b, "traceparent");
	}
	if (b->failed) {
		bh__die(BH__EXIT_SOFTWARE, "out of memory building HELLO");
	}
	bh__send(BH__HELLO, 0, b->p, b->len); /* always on the socket */
	bh__w.shm = bh__w.shm_mapped;        /* then every frame on the pipes */
}

static int bh__setup(const char *name, const bh_method *methods, size_t n) {
	const char *cookie;
	uint64_t ppid;
	bh__w.name = name;
	bh__w.methods = methods;
	bh__w.nmethods = n;
	if (n > BH_MAX_METHODS) {
		fprintf(stderr, "%s: %zu methods, more than %d\n", name, n, BH_MAX_METHODS);
		return BH__EXIT_SOFTWARE;
	}
	for (size_t i = 0; i < n; i++) {
		size_t len = methods[i].name ? strlen(methods[i].name) : 0;
		if (len < 1 || len > BH_MAX_METHOD || methods[i].fn == NULL ||
		    !bh__utf8((const uint8_t *)methods[i].name, len)) {
			fprintf(stderr, "%s: method %zu has no handler or a name that is not 1 to 256 bytes of UTF-8\n", name, i);
			return BH__EXIT_SOFTWARE;
		}
	}
	if (getenv("BULKHEAD_FD") == NULL) {
		fprintf(stderr, "%s: BULKHEAD_FD is not set: not started by a bulkhead dispatcher\n", name);
		return BH__EXIT_CONFIG;
	}
	if (getenv("BULKHEAD_PROTOCOL") != NULL && strcmp(getenv("BULKHEAD_PROTOCOL"), "1") != 0) {
		fprintf(stderr, "%s: the dispatcher speaks protocol %s; this worker speaks 1\n", name,
		        getenv("BULKHEAD_PROTOCOL"));
		return BH__EXIT_CONFIG;
	}
	bh__w.sock = bh__env_fd("BULKHEAD_FD");
	bh__w.max_frame = bh__env("BULKHEAD_MAX_FRAME", 1024, (uint64_t)1 << 30, 16u << 20);
	bh__w.idle_ms = bh__env("BULKHEAD_IDLE_TIMEOUT_MS", 0, (uint64_t)1 << 40, 0);
	ppid = bh__env("BULKHEAD_PARENT_PID", 1, (uint64_t)1 << 22, 0);
	cookie = getenv("BULKHEAD_COOKIE") ? getenv("BULKHEAD_COOKIE") : "";
	if (!bh__utf8((const uint8_t *)cookie, strlen(cookie))) {
		fprintf(stderr, "%s: BULKHEAD_COOKIE is not valid UTF-8\n", name);
		return BH__EXIT_CONFIG;
	}
	if (getenv("BULKHEAD_MARKER_FD") != NULL) {
		bh__map_marker(bh__env_fd("BULKHEAD_MARKER_FD"));
	}
	bh__map_shm();
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (ppid != 0 && (uint64_t)getppid() != ppid) {
		fprintf(stderr, "%s: parent %llu is already gone\n", name, (unsigned long long)ppid);
		return BH__EXIT_PROTOCOL;
	}
	bh__w.payload.limit = (size_t)bh__w.max_frame + 1;
	bh__w.result.limit = (size_t)bh__w.max_frame;
	bh__dg_setup();
	bh__hello(cookie);
	bh__w.idle_since = bh__now_ms();
	return 0;
}

/* ---- serving ------------------------------------------------------------------- */

static void bh__mark(uint64_t id) {
	if (bh__w.started != NULL) {
		__atomic_store_n(bh__w.started, id, __ATOMIC_RELEASE);
	}
}

static const bh_method *bh__lookup(const bh_call *call) {
	for (size_t i = 0; i < bh__w.nmethods; i++) {
		const char *name = bh__w.methods[i].name;
		if (strlen(name) == call->method_len && memcmp(name, call->method, call->method_len) == 0) {
			return &bh__w.methods[i];
		}
	}
	return NULL;
}

/* bh__prepare readies call's result and error buffers for a handler. */
static void bh__prepare(bh_call *call) {
	bh__w.result.len = 0;
	bh__w.result.failed = 0;
	call->result = &bh__w.result;
	call->code_ = 0;
	call->msg_ = &bh__w.msg;
	bh__dg_call(call);
}

/* bh__errbody writes an ERROR payload into the error buffer. */
static void bh__errbody(unsigned code, const char *why, const uint8_t **p, size_t *n) {
	bh__w.msg.len = 0;
	bh__w.msg.failed = 0;
	bh__errmsg(&bh__w.msg, code, why, 0);
	*p = bh__w.msg.p;
	*n = bh__w.msg.len;
}

/* bh__answer makes the answer of a handler that returned rc: the frame
 * type, REPLY or ERROR, and its payload. */
static unsigned bh__answer(bh_call *call, int rc, const uint8_t **p, size_t *n) {
	char why[512];
	bh_buf *res = &bh__w.result;
	if (rc != 0) {
		if (call->code_ == 0) {
			bh__errbody(BH_APPLICATION, "the handler failed", p, n);
		} else {
			*p = bh__w.msg.p;
			*n = bh__w.msg.len;
		}
		return BH__ERROR;
	}
	if (res->failed) {
		snprintf(why, sizeof why, "the result is over the frame limit of %llu bytes, or out of memory",
		         (unsigned long long)bh__w.max_frame);
		bh__errbody(BH_APPLICATION, why, p, n);
		return BH__ERROR;
	}
	if (res->len == 0) {
		bh_put_null(res);
	} else if (bh_check(&bh__w.chk, res->p, res->len, 2) != 0) {
		/* Level 2, one stricter than a CALL's: the dispatcher's check
		 * also counts the scalar inside the innermost container. The
		 * handler's bug: the dispatcher would drop the connection. */
		snprintf(why, sizeof why, "the handler's result is not a valid value: %s", bh__w.chk.err);
		bh__errbody(BH_APPLICATION, why, p, n);
		return BH__ERROR;
	}
	*p = res->p;
	*n = res->len;
	return BH__REPLY;
}

/* bh__finish sends the answer of a handler that returned rc. */
static void bh__finish(bh_call *call, int rc) {
	const uint8_t *p;
	size_t n;
	unsigned type = bh__answer(call, rc, &p, &n);
	bh__send(type, call->id, p, n);
	bh__dg_call(NULL);
}

/* bh__run runs a checked, marked call and sends its answer. */
static void bh__run(bh_call *call) {
	char why[512];
	const bh_method *m = bh__lookup(call);
	if (m == NULL) {
		snprintf(why, sizeof why, "unknown method \"%.*s\"", (int)call->method_len, call->method);
		bh__send_error(call->id, BH_UNKNOWN_METHOD, why, 0);
		return;
	}
	bh__prepare(call);
	bh__finish(call, m->fn(call, m->arg));
}

static void bh__on_call(uint64_t id, const uint8_t *p, size_t n) {
	bh_call call;
	char why[512];
	if (id == 0 || id <= bh__w.last_id) {
		bh__protocol_error("CALL id %llu after id %llu: ids must be non-zero and increasing",
		                   (unsigned long long)id, (unsigned long long)bh__w.last_id);
	}
	bh__w.last_id = id;
	memset(&call, 0, sizeof call);
	call.id = id;
	if (bh_parse_call(&bh__w.chk, p, n, &call) != 0) {
		bh__mark(id);
		snprintf(why, sizeof why, "bad CALL payload: %s", bh__w.chk.err);
		bh__send_error(id, BH_BAD_ARGUMENTS, why, 0);
		return;
	}
	if (call.deadline > 0 && bh__wall_ns() >= call.deadline) {
		/* Skipped, unmarked: it had no effect (section 3). */
		bh__send_error(id, BH_CANCELED, "deadline passed before the call started", 1);
		return;
	}
	bh__mark(id);
	bh__run(&call);
}

/* ---- objects (section 10) ------------------------------------------------ */

/* bh__valid_name: 1 to 256 bytes of UTF-8 without control characters. */
static int bh__valid_name(const char *s, size_t n) {
	if (n < 1 || n > BH_MAX_METHOD || !bh__utf8((const uint8_t *)s, n)) {
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if ((uint8_t)s[i] < 0x20 || s[i] == 0x7f) {
			return 0;
		}
	}
	return 1;
}

/* bh__slot finds object id's slot: its own, or the free one it would take. */
static struct bh__obj *bh__slot(uint64_t id) {
	size_t mask = bh__w.objcap - 1, i = (size_t)(id * 0x9e3779b97f4a7c15ull) & mask;
	while (bh__w.objs[i].id != 0 && bh__w.objs[i].id != id) {
		i = (i + 1) & mask;
	}
	return &bh__w.objs[i];
}

static struct bh__obj *bh__find(uint64_t id) {
	struct bh__obj *o;
	if (bh__w.nobjs == 0) {
		return NULL;
	}
	o = bh__slot(id);
	return o->id == id ? o : NULL;
}

/* bh__grow doubles the table (linear probing, at most half full). */
static int bh__grow(void) {
	size_t cap = bh__w.objcap ? bh__w.objcap * 2 : 64, old = bh__w.objcap;
	struct bh__obj *prev = bh__w.objs, *objs = calloc(cap, sizeof *objs);
	if (objs == NULL) {
		return -1;
	}
	bh__w.objs = objs;
	bh__w.objcap = cap;
	for (size_t i = 0; i < old; i++) {
		if (prev[i].id != 0) {
			*bh__slot(prev[i].id) = prev[i];
		}
	}
	free(prev);
	return 0;
}

/* bh__remove empties o's slot and moves back the entries that probed past it. */
static void bh__remove(struct bh__obj *o) {
	size_t mask = bh__w.objcap - 1, i = (size_t)(o - bh__w.objs), j = i;
	bh__w.objs[i].id = 0;
	bh__w.nobjs--;
	for (;;) {
		j = (j + 1) & mask;
		if (bh__w.objs[j].id == 0) {
			return;
		}
		size_t home = (size_t)(bh__w.objs[j].id * 0x9e3779b97f4a7c15ull) & mask;
		/* Move j back to i unless its home lies cyclically in (i, j]. */
		if ((i < j) ? (home <= i || home > j) : (home <= i && home > j)) {
			bh__w.objs[i] = bh__w.objs[j];
			bh__w.objs[j].id = 0;
			i = j;
		}
	}
}

static const bh_class *bh__class(const char *name, size_t n) {
	for (size_t i = 0; i < bh__w.nclasses; i++) {
		const char *c = bh__w.classes[i].name;
		if (strlen(c) == n && memcmp(c, name, n) == 0) {
			return &bh__w.classes[i];
		}
	}
	return NULL;
}

/* bh__parse_object checks an ACTIVATE [class, object, args] or an OBJCALL
 * [object, method, deadline, args] and fills call: method is the class for
 * an ACTIVATE. */
static int bh__parse_object(unsigned type, const uint8_t *p, size_t n, bh_call *call) {
	bh_checker *c = &bh__w.chk;
	bh_cur cur = {p, p + n};
	size_t len;
	const char *name;
	if (n == 0 || (p[0] != (type == BH__ACTIVATE ? 0x83 : 0x84) && !(type == BH__OBJCALL && p[0] == 0x85 && BH__TRACE))) {
		BH__FAIL(c, type == BH__ACTIVATE ? "ACTIVATE payload is not an array of 3 items"
		                                 : "OBJCALL payload is not an array of 4 items, or 5 with a traceparent");
	}
	if (bh_check(c, p, n, 1) != 0) {
		return -1;
	}
	cur.p++;
	if (type == BH__ACTIVATE && (bh_get_text(&cur, &name, &len) != 0 || !bh__valid_name(name, len))) {
		BH__FAIL(c, "class is not a name of 1 to 256 bytes");
	}
	if (bh_get_uint(&cur, &call->object) != 0 || call->object == 0 || call->object > (uint64_t)INT64_MAX) {
		BH__FAIL(c, "object id is not from 1 to 2^63-1");
	}
	if (type == BH__OBJCALL) {
		if (bh_get_text(&cur, &name, &len) != 0 || len < 1 || len > BH_MAX_METHOD) {
			BH__FAIL(c, "method is not a text string of 1 to 256 bytes");
		}
		if (bh_get_int(&cur, &call->deadline) != 0 || call->deadline < 0) {
			BH__FAIL(c, "deadline is not a non-negative 64-bit integer");
		}
	}
	call->method = name;
	call->method_len = len;
	if (bh__args(c, cur, call) != 0) {
		return -1;
	}
	return type == BH__OBJCALL && p[0] == 0x85 ? bh__traceparent(c, cur, call) : 0;
}

/* bh__activate constructs an object and answers REPLY null, or ERROR. */
static void bh__activate(bh_call *call) {
	char why[512];
	const bh_class *cls = bh__class(call->method, call->method_len);
	void *state = NULL;
	if (bh__w.stopping) {
		bh__send_error(call->id, BH_SERVER_STOPPING, "server stopping", 0);
		return;
	}
	if (cls == NULL) {
		snprintf(why, sizeof why, "class \"%.*s\" is not registered", (int)call->method_len, call->method);
		bh__send_error(call->id, BH__UNKNOWN_CLASS, why, 0);
		return;
	}
	if (bh__find(call->object) != NULL) {
		snprintf(why, sizeof why, "object %llu exists", (unsigned long long)call->object);
		bh__send_error(call->id, BH_BAD_ARGUMENTS, why, 0);
		return;
	}
	if (bh__w.nobjs >= BH__MAX_OBJECTS || ((bh__w.nobjs + 1) * 2 > bh__w.objcap && bh__grow() != 0)) {
		bh__send_error(call->id, BH_APPLICATION, "too many objects, or out of memory", 0);
		return;
	}
	bh__prepare(call);
	if (cls->create(call, cls->arg, &state) != 0) {
		bh__finish(call, -1);
		return;
	}
	struct bh__obj *o = bh__slot(call->object);
	o->id = call->object, o->cls = cls, o->state = state;
	bh__w.nobjs++;
	bh__w.result.len = 0; /* the answer is null, whatever create wrote */
	bh__finish(call, 0);
}

/* bh__objcall runs a method of an object. */
static void bh__objcall(bh_call *call) {
	char why[512];
	struct bh__obj *o = bh__find(call->object);
	if (o == NULL) {
		snprintf(why, sizeof why, "no object %llu", (unsigned long long)call->object);
		bh__send_error(call->id, BH__UNKNOWN_OBJECT, why, 0);
		return;
	}
	for (size_t i = 0; i < o->cls->nmethods; i++) {
		const bh_objmethod *m = &o->cls->methods[i];
		if (strlen(m->name) == call->method_len && memcmp(m->name, call->method, call->method_len) == 0) {
			bh__prepare(call);
			bh__finish(call, m->fn(call, o->state, m->arg));
			return;
		}
	}
	snprintf(why, sizeof why, "class %s has no method \"%.*s\"", o->cls->name, (int)call->method_len, call->method);
	bh__send_error(call->id, BH_UNKNOWN_METHOD, why, 0);
}

static void bh__on_object(unsigned type, uint64_t id, const uint8_t *p, size_t n) {
	bh_call call;
	char why[512];
	if (id == 0 || id <= bh__w.last_id) {
		bh__protocol_error("frame type %u id %llu after id %llu: ids must be non-zero and increasing", type,
		                   (unsigned long long)id, (unsigned long long)bh__w.last_id);
	}
	bh__w.last_id = id;
	memset(&call, 0, sizeof call);
	call.id = id;
	bh__mark(id);
	if (bh__parse_object(type, p, n, &call) != 0) {
		snprintf(why, sizeof why, "bad %s payload: %s", type == BH__ACTIVATE ? "ACTIVATE" : "OBJCALL", bh__w.chk.err);
		bh__send_error(id, BH_BAD_ARGUMENTS, why, 0);
		return;
	}
	if (type == BH__ACTIVATE) {
		bh__activate(&call);
	} else {
		bh__objcall(&call);
	}
}

/* bh__release forgets an object and runs its destructor. */
static void bh__release(uint64_t id) {
	struct bh__obj *o = bh__find(id);
	if (o == NULL) {
		return; /* unknown: nothing to do (its activation failed) */
	}
	const bh_class *cls = o->cls;
	void *state = o->state;
	bh__remove(o);
	if (cls->destroy != NULL) {
		cls->destroy(state, cls->arg);
	}
}

int bh_emit(uint64_t object, const char *name, const uint8_t *args, size_t n) {
	bh_buf *b = &bh__w.ev;
	size_t len = name ? strlen(name) : 0;
	if (!bh__valid_name(name ? name : "", len) || n == 0 || (args[0] >> 5) != 4 || bh_check(&bh__w.chk, args, n, 2) != 0) {
		return -1;
	}
	b->len = 0;
	b->failed = 0;
	bh_put_array(b, 2);
	bh_put_text(b, name, len);
	bh_put_raw(b, args, n);
	if (b->failed || b->len > bh__w.max_frame) {
		return -1;
	}
	bh__send(BH__EVENT, object, b->p, b->len);
	return 0;
}

void bh_revoke(void) {
	if (!bh__w.stopping) {
		bh__w.stopping = 1;
		bh__send(BH__REVOKE, 0, NULL, 0);
	}
}

/* bh__register sends one REGISTER per class, then RESUME. */
static void bh__register(void) {
	bh_buf *b = &bh__w.msg;
	for (size_t i = 0; i < bh__w.nclasses; i++) {
		const bh_class *c = &bh__w.classes[i];
		b->len = 0;
		b->failed = 0;
		bh_put_map(b, 3);
		bh_put_str(b, "class");
		bh_put_str(b, c->name);
		bh_put_str(b, "threading");
		bh_put_uint(b, 2); /* single: the SDK runs every call on its one thread */
		bh_put_str(b, "methods");
		bh_put_array(b, c->nmethods);
		for (size_t k = 0; k < c->nmethods; k++) {
			bh_put_str(b, c->methods[k].name);
		}
		if (b->failed) {
			bh__die(BH__EXIT_SOFTWARE, "out of memory registering class %s", c->name);
		}
		bh__send(BH__REGISTER, 0, b->p, b->len);
	}
	bh__send(BH__RESUME, 0, NULL, 0);
}

/* bh__check_classes refuses classes that the dispatcher would. */
static int bh__check_classes(const char *name, const bh_class *classes, size_t n) {
	if (n > BH__MAX_CLASSES) {
		fprintf(stderr, "%s: %zu classes, more than %d\n", name, n, BH__MAX_CLASSES);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const bh_class *c = &classes[i];
		if (c->name == NULL || !bh__valid_name(c->name, strlen(c->name)) || c->create == NULL ||
		    c->nmethods > BH_MAX_METHODS || (c->nmethods > 0 && c->methods == NULL)) {
			fprintf(stderr, "%s: class %zu: a bad name, no create, or bad methods\n", name, i);
			return -1;
		}
		for (size_t k = 0; k < c->nmethods; k++) {
			const char *m = c->methods[k].name;
			if (m == NULL || c->methods[k].fn == NULL || !bh__valid_name(m, strlen(m))) {
				fprintf(stderr, "%s: class %s: method %zu has no handler or a bad name\n", name, c->name, k);
				return -1;
			}
		}
		if (bh__class(c->name, strlen(c->name)) != NULL && bh__class(c->name, strlen(c->name)) != c) {
			fprintf(stderr, "%s: class %s registered twice\n", name, c->name);
			return -1;
		}
	}
	return 0;
}

/* bh__refused reports the dispatcher's ERROR refusing the HELLO, and exits. */
static void bh__refused(const uint8_t *p, size_t n) {
	bh_cur c = {p, p + n};
	size_t pairs = 0;
	uint64_t code = 0;
	const char *msg = "", *key;
	size_t msg_len = 0, klen;
	if (bh_check(&bh__w.chk, p, n, 1) == 0 && bh_get_map(&c, &pairs) == 0) {
		for (size_t i = 0; i < pairs; i++) {
			if (bh_get_text(&c, &key, &klen) != 0) {
				bh_skip(&c);
			} else if (klen == 4 && memcmp(key, "code", 4) == 0 && bh_get_uint(&c, &code) == 0) {
				continue;
			} else if (klen == 7 && memcmp(key, "message", 7) == 0 && bh_get_text(&c, &msg, &msg_len) == 0) {
				continue;
			}
			bh_skip(&c);
		}
	}
	bh__die(BH__EXIT_CONFIG, "the dispatcher refused the HELLO: code %llu: %.*s", (unsigned long long)code,
	        (int)(msg_len > 1024 ? 1024 : msg_len), msg);
}

/* bh__wait_frame returns once a frame may be read, or exits 0 when the idle
 * timeout passes first. Only calls reset the idle clock. */
static void bh__wait_frame(void) {
	if (bh__w.idle_ms == 0 || bh__w.rs != bh__w.re) {
		return;
	}
	for (;;) {
		uint64_t now = bh__now_ms();
		if (now - bh__w.idle_since >= bh__w.idle_ms) {
			fprintf(stderr, "%s: idle for %llu ms, exiting\n", bh__w.name, (unsigned long long)bh__w.idle_ms);
			exit(0);
		}
		uint64_t left = bh__w.idle_ms - (now - bh__w.idle_since);
		long r = bh__fill(left > (uint64_t)LONG_MAX ? LONG_MAX : (long)left);
		if (r == 0) {
			exit(0); /* end of the stream */
		}
		if (r > 0) {
			return;
		}
	}
}

/* bh__frame reads and handles one frame. */
static void bh__frame(void) {
	uint8_t h[BH__HEADER];
	uint64_t len, id, reserved;
	unsigned type, flags;
	bh__wait_frame();
	bh__read_exact(h, sizeof h);
	len = bh__le(h, 4), type = h[4], flags = h[5];
	reserved = bh__le(h + 6, 2), id = bh__le(h + 8, 8);
	/* The whole header is checked before anything is allocated. */
	if (flags != 0) {
		bh__protocol_error("frame has flags %#x", flags);
	}
	if (reserved != 0) {
		bh__protocol_error("frame has reserved bits %#llx", (unsigned long long)reserved);
	}
	if (type >= 16 && type <= 31 && bh__w.nclasses == 0) {
		bh__protocol_error("object-model frame type %u, but this worker serves no objects", type);
	}
	if ((type < BH__HELLO || type > BH__PONG) && (type < BH__ACTIVATE || type > BH__SUSPEND)) {
		bh__protocol_error("unknown frame type %u", type);
	}
	if (len > bh__w.max_frame) {
		bh__protocol_error("frame of %llu bytes exceeds BULKHEAD_MAX_FRAME=%llu", (unsigned long long)len,
		                   (unsigned long long)bh__w.max_frame);
	}
	if (type == BH__HELLO || type == BH__REPLY) {
		bh__protocol_error("frame type %u is never sent to a worker", type);
	}
	if (len != 0 && type != BH__CALL && type != BH__ERROR && type != BH__ACTIVATE && type != BH__OBJCALL) {
		bh__protocol_error("frame type %u with a payload", type);
	}
	bh__w.payload.len = 0;
	if (bh_reserve(&bh__w.payload, (size_t)len + 1) == NULL) {
		bh__die(BH__EXIT_SOFTWARE, "out of memory for a %llu-byte frame", (unsigned long long)len);
	}
	bh__read_exact(bh__w.payload.p, (size_t)len);
	switch (type) {
	case BH__CALL:
		bh__on_call(id, bh__w.payload.p, (size_t)len);
		bh__w.idle_since = bh__now_ms();
		break;
	case BH__ACTIVATE:
	case BH__OBJCALL:
		bh__on_object(type, id, bh__w.payload.p, (size_t)len);
		bh__w.idle_since = bh__now_ms();
		break;
	case BH__RELEASE:
		bh__release(id);
		break;
	case BH__SUSPEND:
		bh__w.stopping = 1;
		break;
	case BH__PING:
		bh__send(BH__PONG, id, NULL, 0);
		break;
	case BH__QUIT:
		exit(0); /* one call at a time: nothing is in flight */
	case BH__ERROR:
		if (id != 0) {
			bh__protocol_error("ERROR frame with id %llu from the dispatcher", (unsigned long long)id);
		}
		bh__refused(bh__w.payload.p, (size_t)len);
		break;
	default:
		/* CANCEL: calls run one at a time and frames are read between
		 * them, so the call it names was answered already (bh_canceled
		 * sees a CANCEL that arrives while it runs). PONG: unasked. */
		break;
	}
}

uint64_t bh_max_frame(void) { return bh__w.max_frame; }

int bh_passthrough(const bh_method *methods, size_t n, const uint8_t *payload, size_t len, const uint8_t **out,
                   size_t *outlen) {
	char why[512];
	bh_call call;
	const bh_method *m;
	if (bh__w.max_frame == 0) {
		bh__w.max_frame = 16u << 20;
		bh__w.result.limit = (size_t)bh__w.max_frame;
	}
	bh__w.methods = methods;
	bh__w.nmethods = n;
	memset(&call, 0, sizeof call);
	if (bh_parse_call(&bh__w.chk, payload, len, &call) != 0) {
		snprintf(why, sizeof why, "bad CALL payload: %s", bh__w.chk.err);
		bh__errbody(BH_BAD_ARGUMENTS, why, out, outlen);
		return 1;
	}
	if ((m = bh__lookup(&call)) == NULL) {
		snprintf(why, sizeof why, "unknown method \"%.*s\"", (int)call.method_len, call.method);
		bh__errbody(BH_UNKNOWN_METHOD, why, out, outlen);
		return 1;
	}
	bh__prepare(&call);
	unsigned type = bh__answer(&call, m->fn(&call, m->arg), out, outlen);
	bh__dg_call(NULL);
	return type == BH__ERROR;
}

int bh_serve(const char *name, const bh_method *methods, size_t n) {
	return bh_serve_objects(name, methods, n, NULL, 0);
}

/* ---- the fork server ---------------------------------------------------- */

#include <linux/filter.h>
#include <linux/seccomp.h>
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif

/* The sandbox's message, as internal/sandbox/trampoline.go sends it to its
 * trampoline: u32 magic, flags, nfilter, npatch, argvlen, uid, gid; the compiled
 * seccomp program; its patches; argv (unused here); with SCM_RIGHTS the
 * worker binary (unused here) and, with Landlock, the ruleset. */
#define BH__SB_MAGIC 0x4248544du
#define BH__SB_PRIVATE_TMP 1u
#define BH__SB_LANDLOCK 2u
#define BH__SB_SECCOMP 4u
#define BH__SB_USER 8u
#define BH__SB_MAX_FILTER 4096u
#define BH__SB_MAX_PATCHES 16u
#define BH__SB_MAX_ARGV (128u << 10)

/* bh__sb_fail tells the dispatcher which protection failed and why, as the
 * trampoline does, and exits: no call runs outside the sandbox. */
static void bh__sb_fail(int sock, const char *prot, const char *why, int err) {
	char msg[512];
	int n = snprintf(msg, sizeof msg, "error: %s%c%s%s%s", prot, 0, why, err ? ": " : "", err ? strerror(err) : "");
	if (n < 0) {
		n = 0;
	}
	if (n > (int)sizeof msg) {
		n = (int)sizeof msg;
	}
	send(sock, msg, (size_t)n, MSG_NOSIGNAL);
	fprintf(stderr, "bulkhead sandbox: %s: %s%s%s\n", prot, why, err ? ": " : "", err ? strerror(err) : "");
	_exit(BH__EXIT_CONFIG);
}

/* bh__fork_sandbox applies, in a clone, what the trampoline applies before
 * an exec: no_new_privs, the Landlock ruleset, the seccomp program with a
 * listener that goes back to the dispatcher (which supervises violations).
 * The program's execveat allowance, patched by the trampoline with its own
 * pathname's address, gets an address in the kernel's half here: a clone
 * never executes anything. Every count is checked against the message. */
static void bh__fork_sandbox(int sock) {
	uint32_t h[7];
	size_t cap = sizeof h + 8 * (size_t)(BH__SB_MAX_FILTER + BH__SB_MAX_PATCHES) + BH__SB_MAX_ARGV + 1;
	char *buf = malloc(cap);
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(2 * sizeof(int))];
	} cm;
	struct iovec iov;
	struct msghdr mh;
	int fds[2] = {-1, -1}, nfds = 0, listener = -1;
	ssize_t n;
	if (buf == NULL) {
		bh__sb_fail(sock, "sandbox", "receiving the sandbox's settings", ENOMEM);
	}
	iov.iov_base = buf, iov.iov_len = cap;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov, mh.msg_iovlen = 1, mh.msg_control = cm.b, mh.msg_controllen = sizeof cm.b;
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	if (n < 0) {
		bh__sb_fail(sock, "sandbox", "receiving the sandbox's settings", errno);
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
				if (nfds < 2) {
					fds[nfds++] = fd;
				} else {
					close(fd);
					nfds = 3; /* too many */
				}
			}
		}
	}
	if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n < sizeof h) {
		bh__sb_fail(sock, "sandbox", "receiving the sandbox's settings: a short or truncated message", 0);
	}
	memcpy(h, buf, sizeof h);
	if (h[0] != BH__SB_MAGIC || h[2] > BH__SB_MAX_FILTER || h[3] > BH__SB_MAX_PATCHES || h[4] > BH__SB_MAX_ARGV ||
	    (size_t)n != sizeof h + 8 * (size_t)h[2] + 8 * (size_t)h[3] + h[4] ||
	    (h[1] & ~(BH__SB_LANDLOCK | BH__SB_SECCOMP | BH__SB_PRIVATE_TMP | BH__SB_USER)) != 0) {
		bh__sb_fail(sock, "sandbox", "receiving the sandbox's settings: a bad message", 0);
	}
	if (nfds != ((h[1] & BH__SB_LANDLOCK) ? 2 : 1)) {
		bh__sb_fail(sock, "sandbox", "receiving the sandbox's settings: not the descriptors expected", 0);
	}
	if (h[1] & BH__SB_PRIVATE_TMP) { /* the dispatcher refuses it with a fork server */
		bh__sb_fail(sock, "namespaces", "a private /tmp cannot be made in a clone of the fork server", 0);
	}
	if (h[1] & BH__SB_USER) { /* so does it a user */
		bh__sb_fail(sock, "user", "a clone of the fork server runs as the fork server's user", 0);
	}
	close(fds[0]); /* the worker binary: a clone does not execute it */
	struct sock_filter *filter = (struct sock_filter *)(void *)(buf + sizeof h);
	const char *patches = buf + sizeof h + 8 * (size_t)h[2];
	for (uint32_t i = 0; i < h[3]; i++) {
		uint32_t pi[2];
		memcpy(pi, patches + 8 * (size_t)i, sizeof pi);
		if (pi[0] >= h[2] || pi[1] > 1) {
			bh__sb_fail(sock, "sandbox", "receiving the sandbox's settings: a bad patch", 0);
		}
		filter[pi[0]].k = 0xffffffffu; /* 0xffff...: no user address */
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		bh__sb_fail(sock, "no_new_privs", "prctl(PR_SET_NO_NEW_PRIVS)", errno);
	}
	if (h[1] & BH__SB_LANDLOCK) {
		if (syscall(SYS_landlock_restrict_self, fds[1], 0) < 0) {
			bh__sb_fail(sock, "landlock", "restricting the worker's file access", errno);
		}
		close(fds[1]);
	}
	if (h[1] & BH__SB_SECCOMP) {
		struct sock_fprog prog;
		prog.len = (unsigned short)h[2], prog.filter = filter;
		listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
		if (listener < 0) {
			bh__sb_fail(sock, "seccomp", "seccomp(SECCOMP_SET_MODE_FILTER)", errno);
		}
	}
	free(buf);
	{
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(sizeof(int))];
		} rb;
		char ok[2] = {'o', 'k'};
		struct iovec oi;
		struct msghdr rh;
		oi.iov_base = ok, oi.iov_len = 2;
		memset(&rh, 0, sizeof rh);
		rh.msg_iov = &oi, rh.msg_iovlen = 1;
		if (listener >= 0) {
			struct cmsghdr *c;
			memset(&rb, 0, sizeof rb);
			rh.msg_control = rb.b, rh.msg_controllen = sizeof rb.b;
			c = CMSG_FIRSTHDR(&rh);
			c->cmsg_level = SOL_SOCKET, c->cmsg_type = SCM_RIGHTS, c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &listener, sizeof(int));
		}
		if (sendmsg(sock, &rh, MSG_NOSIGNAL) < 0) {
			_exit(BH__EXIT_CONFIG); /* the dispatcher would not supervise the filter */
		}
	}
	if (listener >= 0) {
		close(listener);
	}
	close(sock);
}

/* bh__child sets up a child the fork server cloned: the descriptors it was
 * sent become 3 (socket), 4 (marker), 1 and 2 (output) and 5 (shared
 * memory, if sent); env is its BULKHEAD_* variables, NUL-separated. With
 * BULKHEAD_FORK_SANDBOX, the last descriptor is the sandbox's socket: the
 * child applies its seccomp filter and Landlock ruleset before anything
 * else (bh__fork_sandbox), in its own process group. */
static void bh__child(int ctl, const int *fds, int nfds, char *env, size_t envlen) {
	static const int to[] = {3, 4, 1, 5};
	int high[5], sandbox = -1;
	close(ctl);
	for (size_t at = 0; at < envlen;) {
		if (strcmp(env + at, "BULKHEAD_FORK_SANDBOX=1") == 0) {
			sandbox = nfds - 1;
		}
		at += strlen(env + at) + 1;
	}
	if (sandbox >= 0 ? nfds < 4 : nfds > 4) {
		_exit(BH__EXIT_PROTOCOL);
	}
	for (int i = 0; i < nfds; i++) { /* first out of the way of 1 to 5 */
		high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
		if (high[i] < 0) {
			_exit(BH__EXIT_SOFTWARE);
		}
		close(fds[i]);
	}
	for (int i = 0; i < nfds; i++) {
		if (i == sandbox) {
			continue;
		}
		if (dup2(high[i], to[i]) < 0 || (i == 2 && dup2(high[i], 2) < 0)) {
			_exit(BH__EXIT_SOFTWARE);
		}
		close(high[i]);
	}
	unsetenv("BULKHEAD_FORKSERVER_FD");
	for (size_t at = 0; at < envlen;) {
		char *kv = env + at, *eq = strchr(kv, '=');
		at += strlen(kv) + 1;
		if (eq != NULL && strncmp(kv, "BULKHEAD_", 9) == 0 && strncmp(kv, "BULKHEAD_FORK_SANDBOX=", 22) != 0) {
			*eq = 0;
			setenv(kv, eq + 1, 1);
		}
	}
	setpgid(0, 0); /* its own process group, as an exec'd worker has */
	if (sandbox >= 0) {
		bh__fork_sandbox(high[sandbox]);
	}
}

/* bh__fork_one receives one request and clones a child for it. It returns 1
 * in the child, 0 in the fork server. */
static int bh__fork_one(int ctl) {
	char env[8192];
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(5 * sizeof(int))];
	} cm;
	struct iovec iov = {env, sizeof env - 1};
	struct msghdr msg;
	int fds[5], nfds = 0;
	int64_t reply;
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = &iov, msg.msg_iovlen = 1;
	msg.msg_control = cm.buf, msg.msg_controllen = sizeof cm.buf;
	ssize_t n = recvmsg(ctl, &msg, MSG_CMSG_CLOEXEC);
	if (n == 0) {
		exit(0); /* the dispatcher let go of us */
	}
	if (n < 0) {
		if (errno == EINTR) {
			return 0;
		}
		bh__die(BH__EXIT_PROTOCOL, "fork server: recvmsg: %s", strerror(errno));
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
				if (nfds < 5) {
					fds[nfds++] = fd;
				} else {
					close(fd);
				}
			}
		}
	}
	if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || nfds < 3) {
		bh__die(BH__EXIT_PROTOCOL, "fork server: a request with %d descriptors or truncated", nfds);
	}
	env[n] = 0;
	/* CLONE_PARENT: the child is the dispatcher's, which reaps it and
	 * reads its exit status through a pidfd, as for an exec'd worker. */
	long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);
	if (pid == 0) {
		bh__child(ctl, fds, nfds, env, (size_t)n);
		return 1;
	}
	for (int i = 0; i < nfds; i++) {
		close(fds[i]);
	}
	reply = pid < 0 ? -(int64_t)errno : (int64_t)pid;
	if (send(ctl, &reply, sizeof reply, MSG_NOSIGNAL) != (ssize_t)sizeof reply) {
		exit(0);
	}
	return 0;
}

/* bh__fork_server serves BULKHEAD_FORKSERVER_FD: the program has done its
 * initialisation (the library loaded, its own init run) before bh_serve;
 * each request of the dispatcher then costs a clone, not an exec. Only a
 * child returns from it, to start as a worker. */
static void bh__fork_server(const char *name) {
	int ctl = bh__env_fd("BULKHEAD_FORKSERVER_FD");
	uint64_t ppid = bh__env("BULKHEAD_PARENT_PID", 1, (uint64_t)1 << 22, 0);
	bh__w.name = name;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (ppid != 0 && (uint64_t)getppid() != ppid) {
		exit(BH__EXIT_PROTOCOL);
	}
	if (send(ctl, "R", 1, MSG_NOSIGNAL) != 1) { /* ready */
		exit(0);
	}
	while (!bh__fork_one(ctl)) {
	}
}

int bh_serve_objects(const char *name, const bh_method *methods, size_t n, const bh_class *classes, size_t nclasses) {
	int rc;
	name = name ? name : "bulkhead worker";
	bh__w.classes = classes;
	bh__w.nclasses = nclasses;
	if (bh__check_classes(name, classes, nclasses) != 0) {
		return BH__EXIT_SOFTWARE;
	}
	if (getenv("BULKHEAD_FORKSERVER_FD") != NULL) {
		bh__fork_server(name);
	}
	if ((rc = bh__setup(name, methods, n)) != 0) {
		return rc;
	}
	if (nclasses > 0) {
		bh__register();
	}
	for (;;) {
		bh__frame();
	}
}

#endif /* BULKHEAD_IMPLEMENTED */
#endif /* BULKHEAD_IMPLEMENTATION */
