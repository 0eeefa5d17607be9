//go:build ignore

// The constraint above keeps the go command from treating this directory as a
// cgo package: cworker.c is a standalone program, built by the test with gcc.

/* cworker: a bulkhead worker in plain C on the C SDK (sdk/c/bulkhead.h).
 *
 * The SDK does the protocol (environment, HELLO, framing, CBOR checks, the
 * start marker, PING, QUIT, idle timeout, shared memory); this file is only
 * the methods, served one call at a time:
 *
 *   echo(x, ...)     returns its first argument unchanged (its raw CBOR bytes)
 *   add(a, b)        integers -> a + b (any CBOR integers; overflow -> ERROR 1)
 *   upper(s)         text -> text with ASCII letters upper-cased
 *   crash(kind[, n]) kind "segv" | "abort" | "exit" (exit status n, default 3)
 *   sleep(ms)        waits ms milliseconds, or until cancelled (ERROR 5)
 *   nap(s)           sleep(3) for s seconds, deaf to cancellation, as a
 *                    library's blocking call is; returns the seconds left
 *                    (not 0 only if a signal handler cut the sleep short)
 *   spin()           spins in user code until cancelled (ERROR 5)
 *   traceparent()    the caller's W3C traceparent, or null
 *
 * CWORKER_INIT_MS in the environment makes start-up take that long, before
 * bh_serve, as a library's own initialisation would (a fork server pays it
 * once: Config.ForkServer).
 *
 * Build: gcc -std=c99 -pedantic -O2 -Wall -Wextra -Werror -I sdk/c -o cworker cworker.c
 */
#define BULKHEAD_IMPLEMENTATION
#include "bulkhead.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int echo(bh_call *c, void *arg) {
	bh_cur a, rest;
	(void)arg;
	if (bh_arg(c, 0, &a) != 0) {
		return bh_fail(c, BH_BAD_ARGUMENTS, "echo takes at least 1 argument, got %zu", c->nargs);
	}
	rest = a;
	bh_skip(&rest);
	bh_put_raw(c->result, a.p, (size_t)(rest.p - a.p));
	return 0;
}

/* add adds two CBOR integers, as sign and magnitude (the value is mag, or
 * -1-mag when neg); the sum must stay within [-2^64, 2^64-1]. */
static int add(bh_call *c, void *arg) {
	bh_cur x, y;
	int an, bn;
	uint64_t a, b;
	(void)arg;
	if (c->nargs != 2 || bh_arg(c, 0, &x) != 0 || bh_get_cbor_int(&x, &an, &a) != 0 ||
	    bh_arg(c, 1, &y) != 0 || bh_get_cbor_int(&y, &bn, &b) != 0) {
		return bh_fail(c, BH_BAD_ARGUMENTS, "add takes 2 integers");
	}
	if (an && !bn) { /* make a the non-negative one */
		int tn = an;
		uint64_t t = a;
		an = bn, a = b, bn = tn, b = t;
	}
	if (!an && !bn) {
		if (a > UINT64_MAX - b) {
			return bh_fail(c, BH_APPLICATION, "add: integer overflow");
		}
		bh_put_uint(c->result, a + b);
	} else if (an && bn) { /* (-1-a) + (-1-b) = -1-(a+b+1) */
		if (a > UINT64_MAX - b || a + b == UINT64_MAX) {
			return bh_fail(c, BH_APPLICATION, "add: integer overflow");
		}
		bh_put_neg(c->result, a + b + 1);
	} else if (a > b) { /* a + (-1-b) */
		bh_put_uint(c->result, a - b - 1);
	} else {
		bh_put_neg(c->result, b - a);
	}
	return 0;
}

static int upper(bh_call *c, void *arg) {
	const char *s;
	size_t n;
	uint8_t *out;
	(void)arg;
	if (c->nargs != 1 || bh_arg_text(c, 0, &s, &n) != 0) {
		return bh_fail(c, BH_BAD_ARGUMENTS, "upper takes 1 text string");
	}
	bh_put_text(c->result, s, n);
	out = c->result->failed ? NULL : c->result->p + c->result->len - n;
	for (size_t i = 0; out != NULL && i < n; i++) { /* ASCII only: keeps UTF-8 valid */
		if (out[i] >= 'a' && out[i] <= 'z') {
			out[i] = (uint8_t)(out[i] - 'a' + 'A');
		}
	}
	return 0;
}

/* cworker_null_write faults: the crash report names it (CrashError.Function). */
#ifdef __GNUC__
__attribute__((noinline))
#endif
static void cworker_null_write(void) {
	volatile int *volatile p = NULL;
	*p = 1;
}

static int crash(bh_call *c, void *arg) {
	const char *kind;
	size_t n;
	uint64_t code = 3;
	(void)arg;
	if (c->nargs < 1 || c->nargs > 2 || bh_arg_text(c, 0, &kind, &n) != 0 ||
	    (c->nargs == 2 && (bh_arg_uint(c, 1, &code) != 0 || code > 255))) {
		return bh_fail(c, BH_BAD_ARGUMENTS,
		               "crash takes a kind (\"segv\", \"abort\" or \"exit\") and an optional exit status 0-255");
	}
	if (n == 4 && memcmp(kind, "segv", 4) == 0) {
		fprintf(stderr, "cworker: crash(segv): dereferencing NULL\n");
		cworker_null_write();
		raise(SIGSEGV);
	} else if (n == 5 && memcmp(kind, "abort", 5) == 0) {
		fprintf(stderr, "cworker: crash(abort): calling abort()\n");
		abort();
	} else if (n == 4 && memcmp(kind, "exit", 4) == 0) {
		fprintf(stderr, "cworker: crash(exit): exit(%d)\n", (int)code);
		exit((int)code);
	}
	return bh_fail(c, BH_BAD_ARGUMENTS, "crash: unknown kind \"%.*s\"", (int)n, kind);
}

/* sleep_ms waits in 1 ms steps, polling for cancellation between them. */
static int sleep_ms(bh_call *c, void *arg) {
	uint64_t ms;
	(void)arg;
	if (c->nargs != 1 || bh_arg_uint(c, 0, &ms) != 0) {
		return bh_fail(c, BH_BAD_ARGUMENTS, "sleep takes a number of milliseconds");
	}
	for (uint64_t i = 0; i < ms; i++) {
		struct timespec ts = {0, 1000000};
		if (bh_canceled(c)) {
			return bh_fail(c, BH_CANCELED, "sleep cancelled after %llu ms", (unsigned long long)i);
		}
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* nap blocks in sleep(3) as a library call that knows nothing of
 * cancellation does: only its deadline (the dispatcher stopping the
 * worker) ends it early, or a signal handler, which it reports. */
static int nap(bh_call *c, void *arg) {
	uint64_t s;
	(void)arg;
	if (c->nargs != 1 || bh_arg_uint(c, 0, &s) != 0 || s > 86400) {
		return bh_fail(c, BH_BAD_ARGUMENTS, "nap takes a number of seconds, at most 86400");
	}
	bh_put_uint(c->result, sleep((unsigned)s));
	return 0;
}

/* spin_until_canceled spins in user code, never blocking, until cancelled. */
static int spin_until_canceled(bh_call *c, void *arg) {
	volatile uint64_t n = 0;
	(void)arg;
	while (!bh_canceled(c)) {
		n++;
	}
	return bh_fail(c, BH_CANCELED, "spin cancelled after %llu turns", (unsigned long long)n);
}

/* traceparent returns the caller's W3C traceparent, or null. */
static int traceparent(bh_call *c, void *arg) {
	(void)arg;
	if (c->traceparent != NULL) {
		bh_put_text(c->result, c->traceparent, c->traceparent_len);
	}
	return 0; /* nothing written: null */
}

int main(void) {
	const char *init = getenv("CWORKER_INIT_MS");
	if (init != NULL) {
		long ms = atol(init);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	static const bh_method methods[] = {
		{"echo", echo, NULL},
		{"add", add, NULL},
		{"upper", upper, NULL},
		{"crash", crash, NULL},
		{"sleep", sleep_ms, NULL},
		{"nap", nap, NULL},
		{"spin", spin_until_canceled, NULL},
		{"traceparent", traceparent, NULL},
	};
	return bh_serve("cworker", methods, sizeof methods / sizeof methods[0]);
}
