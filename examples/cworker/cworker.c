//go:build ignore

// The constraint above keeps the go command from treating this directory as a
// cgo package: cworker.c is a standalone program, built by the test with gcc.

/* cworker: a bulkhead worker in plain C99, written from docs/PROTOCOL.md alone.
 *
 * It proves that the wire protocol is language-neutral: no Go, no external
 * libraries, just a minimal CBOR encoder and a validating CBOR decoder for the
 * subset that the protocol allows (section 5).
 *
 * Methods, served one call at a time:
 *   echo(x, ...)     returns its first argument unchanged (its raw CBOR bytes)
 *   add(a, b)        integers -> a + b (any CBOR integers; overflow -> ERROR 1)
 *   upper(s)         text -> text with ASCII letters upper-cased
 *   crash(kind[, n]) kind "segv" | "abort" | "exit" (exit status n, default 3)
 *
 * Exit statuses: 0 on QUIT, end of file and idle timeout; 1 on a protocol
 * error or when the parent is already gone at start-up; 78 on a bad
 * environment or a HELLO refused by the dispatcher; 70 when out of memory.
 *
 * Build: gcc -std=c99 -pedantic -O2 -Wall -Wextra -Werror -o cworker cworker.c
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define EXIT_PROTOCOL 1
#define EXIT_SOFTWARE 70
#define EXIT_CONFIG 78

#define HEADER_SIZE 16
#define DEFAULT_MAX_FRAME (16UL << 20)
#define LIMIT_MAX_FRAME (1UL << 30)
#define MAX_DEPTH 32
#define MAX_ITEMS 131072
#define MAX_METHOD 256
#define MARKER_SIZE 4096
#define MARKER_MAGIC 0x4b4d4842UL
#define CRASH_EXIT_DEFAULT 3

enum {
	T_HELLO = 1,
	T_CALL = 2,
	T_REPLY = 3,
	T_ERROR = 4,
	T_CANCEL = 5,
	T_QUIT = 6,
	T_PING = 7,
	T_PONG = 8
};

enum {
	E_APPLICATION = 1,
	E_UNKNOWN_METHOD = 2,
	E_BAD_ARGUMENTS = 3,
	E_CANCELED = 5
};

/* ---- process state ---------------------------------------------------- */

static int sock = -1;
static unsigned long max_frame = DEFAULT_MAX_FRAME;
static uint64_t idle_ms;          /* 0: no idle timeout */
static uint64_t idle_since_ms;    /* CLOCK_MONOTONIC ms when the last call ended */
static uint64_t *marker_started;  /* NULL: no start marker */
static uint64_t last_id;

static void die(int status, const char *fmt, ...) {
	va_list ap;
	fputs("cworker: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

#define protocol_error(...) die(EXIT_PROTOCOL, "protocol error: " __VA_ARGS__)

static void *xrealloc(void *p, size_t n) {
	p = realloc(p, n ? n : 1);
	if (p == NULL) {
		die(EXIT_SOFTWARE, "out of memory (%zu bytes)", n);
	}
	return p;
}

static uint64_t now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- little-endian framing helpers ------------------------------------ */

static uint64_t le(const uint8_t *p, int n) {
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--) {
		v = v << 8 | p[i];
	}
	return v;
}

static void put_le(uint8_t *p, uint64_t v, int n) {
	for (int i = 0; i < n; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

/* ---- growable byte buffer and CBOR encoder ---------------------------- */

typedef struct {
	uint8_t *p;
	size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t n) {
	if (n > SIZE_MAX / 2 - b->len) {
		die(EXIT_SOFTWARE, "buffer too large");
	}
	size_t need = b->len + n;
	if (need <= b->cap) {
		return;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need) {
		cap *= 2;
	}
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

static void buf_put(buf_t *b, const void *p, size_t n) {
	buf_reserve(b, n);
	if (n) {
		memcpy(b->p + b->len, p, n);
	}
	b->len += n;
}

/* cb_head appends a CBOR head with the shortest encoding of v. */
static void cb_head(buf_t *b, unsigned major, uint64_t v) {
	uint8_t h[9];
	int n;
	uint8_t m = (uint8_t)(major << 5);
	if (v < 24) {
		h[0] = (uint8_t)(m | v);
		n = 0;
	} else if (v <= 0xff) {
		h[0] = m | 24;
		n = 1;
	} else if (v <= 0xffff) {
		h[0] = m | 25;
		n = 2;
	} else if (v <= 0xffffffffUL) {
		h[0] = m | 26;
		n = 4;
	} else {
		h[0] = m | 27;
		n = 8;
	}
	for (int i = 0; i < n; i++) {
		h[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	}
	buf_put(b, h, (size_t)n + 1);
}

static void cb_text(buf_t *b, const char *s, size_t n) {
	cb_head(b, 3, n);
	buf_put(b, s, n);
}

static void cb_str(buf_t *b, const char *s) { cb_text(b, s, strlen(s)); }

static void cb_bool(buf_t *b, int v) {
	uint8_t x = v ? 0xf5 : 0xf4;
	buf_put(b, &x, 1);
}

/* ---- validating CBOR decoder ------------------------------------------ */

typedef struct {
	const uint8_t *p, *end;
} cur_t;

typedef struct {
	unsigned major, ai;
	uint64_t arg;
} head_t;

static const char *derr; /* why the last decode failed */

#define FAIL(msg)                                                              \
	do {                                                                   \
		derr = (msg);                                                  \
		return -1;                                                     \
	} while (0)

static size_t remaining(const cur_t *c) { return (size_t)(c->end - c->p); }

/* get_head reads one head. Indefinite lengths (and the break code) and the
 * reserved additional-information values 28-30 are rejected. */
static int get_head(cur_t *c, head_t *h) {
	if (c->p >= c->end) {
		FAIL("truncated CBOR");
	}
	uint8_t b = *c->p++;
	h->major = b >> 5;
	h->ai = b & 31;
	int n;
	if (h->ai < 24) {
		h->arg = h->ai;
		return 0;
	} else if (h->ai == 24) {
		n = 1;
	} else if (h->ai == 25) {
		n = 2;
	} else if (h->ai == 26) {
		n = 4;
	} else if (h->ai == 27) {
		n = 8;
	} else if (h->ai == 31) {
		FAIL("indefinite-length CBOR items are not allowed");
	} else {
		FAIL("malformed CBOR head");
	}
	if (remaining(c) < (size_t)n) {
		FAIL("truncated CBOR");
	}
	h->arg = 0;
	for (int i = 0; i < n; i++) {
		h->arg = h->arg << 8 | *c->p++;
	}
	return 0;
}

/* utf8_valid reports whether s[0:n] is well-formed UTF-8 (no overlong forms,
 * no surrogates, nothing above U+10FFFF). */
static int utf8_valid(const uint8_t *s, size_t n) {
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t k;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			k = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3, cp = c & 0x07, min = 0x10000;
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
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
			return 0;
		}
		i += k + 1;
	}
	return 1;
}

/* A map key, for the duplicate check: integers compare by value, text by
 * content. */
typedef struct {
	unsigned major; /* 0, 1 or 3 */
	uint64_t arg;   /* integer value, or text length */
	const uint8_t *text;
} mapkey_t;

static int key_cmp(const void *a, const void *b) {
	const mapkey_t *x = a, *y = b;
	if (x->major != y->major) {
		return x->major < y->major ? -1 : 1;
	}
	if (x->arg != y->arg) {
		return x->arg < y->arg ? -1 : 1;
	}
	if (x->major == 3 && x->arg > 0) {
		return memcmp(x->text, y->text, (size_t)x->arg);
	}
	return 0;
}

static int skip_item(cur_t *c, int depth);

static int skip_string(cur_t *c, const head_t *h) {
	if (h->arg > remaining(c)) {
		FAIL("truncated CBOR string");
	}
	if (h->major == 3 && !utf8_valid(c->p, (size_t)h->arg)) {
		FAIL("text string is not valid UTF-8");
	}
	c->p += h->arg;
	return 0;
}

static int skip_map(cur_t *c, const head_t *h, int depth) {
	if (h->arg > MAX_ITEMS) {
		FAIL("map has too many pairs");
	}
	if (h->arg > remaining(c) / 2) {
		FAIL("truncated CBOR map");
	}
	size_t n = (size_t)h->arg;
	mapkey_t *keys = n ? xrealloc(NULL, n * sizeof *keys) : NULL;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		head_t k;
		if (get_head(c, &k) != 0) {
			rc = -1;
			break;
		}
		if (k.major != 0 && k.major != 1 && k.major != 3) {
			derr = "map keys must be text or integers";
			rc = -1;
			break;
		}
		keys[i].major = k.major;
		keys[i].arg = k.arg;
		keys[i].text = c->p;
		if (k.major == 3 && skip_string(c, &k) != 0) {
			rc = -1;
			break;
		}
		rc = skip_item(c, depth);
	}
	if (rc == 0 && n > 1) {
		qsort(keys, n, sizeof *keys, key_cmp);
		for (size_t i = 1; i < n; i++) {
			if (key_cmp(&keys[i - 1], &keys[i]) == 0) {
				derr = "duplicate map key";
				rc = -1;
				break;
			}
		}
	}
	free(keys);
	return rc;
}

/* skip_item validates one data item and moves past it. depth is the number of
 * arrays, maps and tags that enclose it; an item that is itself an array, map
 * or tag at depth MAX_DEPTH would be one level too deep. */
static int skip_item(cur_t *c, int depth) {
	head_t h;
	if (get_head(c, &h) != 0) {
		return -1;
	}
	switch (h.major) {
	case 0: /* unsigned integer */
	case 1: /* negative integer */
		return 0;
	case 2: /* byte string */
	case 3: /* text string */
		return skip_string(c, &h);
	case 4: /* array */
		if (depth + 1 > MAX_DEPTH) {
			FAIL("CBOR nested too deeply");
		}
		if (h.arg > MAX_ITEMS) {
			FAIL("array has too many items");
		}
		if (h.arg > remaining(c)) {
			FAIL("truncated CBOR array");
		}
		for (uint64_t i = 0; i < h.arg; i++) {
			if (skip_item(c, depth + 1) != 0) {
				return -1;
			}
		}
		return 0;
	case 5: /* map */
		if (depth + 1 > MAX_DEPTH) {
			FAIL("CBOR nested too deeply");
		}
		return skip_map(c, &h, depth + 1);
	case 6: { /* tag: only 1 (epoch time), over an integer or a float */
		if (h.arg != 1) {
			FAIL("CBOR tags other than 1 are not allowed");
		}
		if (depth + 1 > MAX_DEPTH) {
			FAIL("CBOR nested too deeply");
		}
		if (c->p >= c->end) {
			FAIL("truncated CBOR tag");
		}
		unsigned m = *c->p >> 5, ai = *c->p & 31;
		if (m != 0 && m != 1 && !(m == 7 && ai >= 25 && ai <= 27)) {
			FAIL("tag 1 must enclose an integer or a float");
		}
		return skip_item(c, depth + 1);
	}
	default: /* 7: simple values and floats */
		if (h.ai == 20 || h.ai == 21 || h.ai == 22) {
			return 0; /* false, true, null */
		}
		if (h.ai >= 25 && h.ai <= 27) {
			return 0; /* half, single, double float */
		}
		FAIL("CBOR simple value not allowed");
	}
}

/* ---- socket I/O ------------------------------------------------------- */

static uint8_t rbuf[1 << 16];
static size_t rstart, rend;

static void wait_fd(short events, int timeout) {
	struct pollfd pfd = {sock, events, 0};
	while (poll(&pfd, 1, timeout) < 0 && errno == EINTR) {
	}
}

/* sock_read reads what is available, at least one byte; 0 means end of
 * file. A non-blocking descriptor is tolerated. */
static size_t sock_read(void *dst, size_t cap) {
	for (;;) {
		ssize_t n = read(sock, dst, cap);
		if (n >= 0) {
			return (size_t)n;
		}
		if (errno == EINTR) {
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			wait_fd(POLLIN, -1);
			continue;
		}
		if (errno == ECONNRESET) {
			return 0;
		}
		die(EXIT_PROTOCOL, "read: %s", strerror(errno));
	}
}

/* read_exact fills dst with n bytes of the stream; -1 at end of file. */
static int read_exact(uint8_t *dst, size_t n) {
	while (n > 0) {
		if (rstart == rend) {
			rstart = rend = 0;
			if (n >= sizeof rbuf) { /* large payload: bypass the buffer */
				size_t r = sock_read(dst, n);
				if (r == 0) {
					return -1;
				}
				dst += r;
				n -= r;
				continue;
			}
			rend = sock_read(rbuf, sizeof rbuf);
			if (rend == 0) {
				return -1;
			}
		}
		size_t k = rend - rstart < n ? rend - rstart : n;
		memcpy(dst, rbuf + rstart, k);
		rstart += k;
		dst += k;
		n -= k;
	}
	return 0;
}

/* wait_for_frame returns once a frame may be read, or exits 0 when the idle
 * timeout passes first. Pings do not reset the idle clock: only calls do. */
static void wait_for_frame(void) {
	if (idle_ms == 0 || rstart != rend) {
		return;
	}
	for (;;) {
		uint64_t now = now_ms();
		if (now - idle_since_ms >= idle_ms) {
			fprintf(stderr, "cworker: idle for %llu ms, exiting\n",
			        (unsigned long long)idle_ms);
			exit(0);
		}
		uint64_t left = idle_ms - (now - idle_since_ms);
		struct pollfd pfd = {sock, POLLIN, 0};
		int rc = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (rc > 0) {
			return; /* readable, or hung up: the read tells which */
		}
		if (rc < 0 && errno != EINTR) {
			die(EXIT_PROTOCOL, "poll: %s", strerror(errno));
		}
	}
}

static void write_all(const uint8_t *p, size_t n) {
	while (n > 0) {
		/* MSG_NOSIGNAL: a vanished dispatcher is an orderly end, not a
		 * SIGPIPE death. */
		ssize_t w = send(sock, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == ENOTSOCK) {
			w = write(sock, p, n);
		}
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				wait_fd(POLLOUT, -1);
				continue;
			}
			if (errno == EPIPE || errno == ECONNRESET) {
				exit(0); /* the dispatcher is gone */
			}
			die(EXIT_PROTOCOL, "write: %s", strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
}

static buf_t out; /* reused frame buffer */

/* send_frame writes header and payload with one write. */
static void send_frame(unsigned type, uint64_t id, const uint8_t *payload, size_t n) {
	out.len = 0;
	buf_reserve(&out, HEADER_SIZE + n);
	put_le(out.p, n, 4);
	out.p[4] = (uint8_t)type;
	out.p[5] = 0;
	put_le(out.p + 6, 0, 2);
	put_le(out.p + 8, id, 8);
	out.len = HEADER_SIZE;
	buf_put(&out, payload, n);
	write_all(out.p, out.len);
}

static void send_error(uint64_t id, unsigned code, const char *fmt, ...) {
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	buf_t b = {0};
	cb_head(&b, 5, 2);
	cb_str(&b, "code");
	cb_head(&b, 0, code);
	cb_str(&b, "message");
	cb_str(&b, msg);
	send_frame(T_ERROR, id, b.p, b.len);
	free(b.p);
}

/* ---- calls ------------------------------------------------------------ */

#define MAX_ARGS 8

typedef struct {
	const uint8_t *s, *e;
} span_t;

typedef struct {
	const uint8_t *method;
	size_t method_len;
	int deadline_passed;
	size_t nargs;
	span_t args[MAX_ARGS]; /* the first MAX_ARGS arguments */
} call_t;

/* parse_call validates a CALL payload: [method, deadline, args]. */
static int parse_call(const uint8_t *p, size_t n, call_t *call) {
	cur_t c = {p, p + n};
	if (skip_item(&c, 0) != 0) {
		return -1;
	}
	if (c.p != c.end) {
		FAIL("trailing bytes after the CALL array");
	}
	c.p = p;
	head_t h;
	get_head(&c, &h);
	if (h.major != 4 || h.arg != 3) {
		FAIL("CALL payload is not an array of 3 items");
	}
	get_head(&c, &h);
	if (h.major != 3 || h.arg < 1 || h.arg > MAX_METHOD) {
		FAIL("method is not a text string of 1 to 256 bytes");
	}
	call->method = c.p;
	call->method_len = (size_t)h.arg;
	c.p += h.arg;
	get_head(&c, &h);
	if (h.major == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		call->deadline_passed = h.arg != 0 && now >= h.arg;
	} else if (h.major == 1) {
		call->deadline_passed = 1; /* before 1970 */
	} else {
		FAIL("deadline is not an integer");
	}
	get_head(&c, &h);
	if (h.major != 4) {
		FAIL("args is not an array");
	}
	call->nargs = (size_t)h.arg;
	for (size_t i = 0; i < call->nargs; i++) {
		const uint8_t *s = c.p;
		skip_item(&c, 2); /* already validated */
		if (i < MAX_ARGS) {
			call->args[i].s = s;
			call->args[i].e = c.p;
		}
	}
	return 0;
}

static int method_is(const call_t *c, const char *name) {
	return c->method_len == strlen(name) && memcmp(c->method, name, c->method_len) == 0;
}

/* arg_int decodes an integer argument as sign and magnitude: the value is
 * mag when !neg and -1-mag when neg, as in CBOR. */
static int arg_int(span_t a, int *neg, uint64_t *mag) {
	cur_t c = {a.s, a.e};
	head_t h;
	if (get_head(&c, &h) != 0 || (h.major != 0 && h.major != 1)) {
		return 0;
	}
	*neg = h.major == 1;
	*mag = h.arg;
	return 1;
}

static int arg_text(span_t a, const uint8_t **s, size_t *n) {
	cur_t c = {a.s, a.e};
	head_t h;
	if (get_head(&c, &h) != 0 || h.major != 3) {
		return 0;
	}
	*s = c.p;
	*n = (size_t)h.arg;
	return 1;
}

static int text_is(const uint8_t *s, size_t n, const char *want) {
	return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* add_ints adds two CBOR integers into res. It fails when the sum is outside
 * the CBOR integer range [-2^64, 2^64-1]. */
static int add_ints(int an, uint64_t a, int bn, uint64_t b, buf_t *res) {
	if (an && !bn) { /* make a the non-negative one */
		int tn = an;
		uint64_t t = a;
		an = bn, a = b, bn = tn, b = t;
	}
	if (!an && !bn) { /* a + b */
		if (a > UINT64_MAX - b) {
			return 0;
		}
		cb_head(res, 0, a + b);
	} else if (an && bn) { /* (-1-a) + (-1-b) = -1-(a+b+1) */
		if (a > UINT64_MAX - b || a + b == UINT64_MAX) {
			return 0;
		}
		cb_head(res, 1, a + b + 1);
	} else if (a > b) { /* a + (-1-b) = a-b-1 >= 0 */
		cb_head(res, 0, a - b - 1);
	} else { /* a + (-1-b) = -1-(b-a) */
		cb_head(res, 1, b - a);
	}
	return 1;
}

static void handle_call(uint64_t id, const uint8_t *payload, size_t n) {
	if (id == 0 || id <= last_id) {
		protocol_error("CALL id %llu after id %llu: ids must be non-zero and increasing",
		               (unsigned long long)id, (unsigned long long)last_id);
	}
	last_id = id;
	/* The call starts here: publish its id before running any of it. */
	if (marker_started != NULL) {
		__atomic_store_n(marker_started, id, __ATOMIC_RELEASE);
	}

	call_t call;
	if (parse_call(payload, n, &call) != 0) {
		send_error(id, E_BAD_ARGUMENTS, "bad CALL payload: %s", derr);
		return;
	}
	enum { M_ECHO, M_ADD, M_UPPER, M_CRASH } m;
	if (method_is(&call, "echo")) {
		m = M_ECHO;
	} else if (method_is(&call, "add")) {
		m = M_ADD;
	} else if (method_is(&call, "upper")) {
		m = M_UPPER;
	} else if (method_is(&call, "crash")) {
		m = M_CRASH;
	} else {
		send_error(id, E_UNKNOWN_METHOD, "unknown method \"%.*s\"",
		           (int)call.method_len, (const char *)call.method);
		return;
	}
	if (call.deadline_passed) {
		send_error(id, E_CANCELED, "deadline passed before the call started");
		return;
	}

	buf_t res = {0};
	switch (m) {
	case M_ECHO:
		if (call.nargs < 1) {
			send_error(id, E_BAD_ARGUMENTS, "echo takes at least 1 argument, got %zu", call.nargs);
			goto done;
		}
		buf_put(&res, call.args[0].s, (size_t)(call.args[0].e - call.args[0].s));
		break;
	case M_ADD: {
		int an, bn;
		uint64_t a, b;
		if (call.nargs != 2 || !arg_int(call.args[0], &an, &a) || !arg_int(call.args[1], &bn, &b)) {
			send_error(id, E_BAD_ARGUMENTS, "add takes 2 integers");
			goto done;
		}
		if (!add_ints(an, a, bn, b, &res)) {
			send_error(id, E_APPLICATION, "add: integer overflow");
			goto done;
		}
		break;
	}
	case M_UPPER: {
		const uint8_t *s;
		size_t len;
		if (call.nargs != 1 || !arg_text(call.args[0], &s, &len)) {
			send_error(id, E_BAD_ARGUMENTS, "upper takes 1 text string");
			goto done;
		}
		cb_head(&res, 3, len);
		buf_reserve(&res, len);
		for (size_t i = 0; i < len; i++) { /* ASCII only: keeps UTF-8 valid */
			uint8_t ch = s[i];
			res.p[res.len++] = (ch >= 'a' && ch <= 'z') ? (uint8_t)(ch - 'a' + 'A') : ch;
		}
		break;
	}
	case M_CRASH: {
		const uint8_t *kind;
		size_t klen;
		int neg = 0;
		uint64_t code = CRASH_EXIT_DEFAULT;
		if (call.nargs < 1 || call.nargs > 2 || !arg_text(call.args[0], &kind, &klen) ||
		    (call.nargs == 2 && (!arg_int(call.args[1], &neg, &code) || neg || code > 255))) {
			send_error(id, E_BAD_ARGUMENTS, "crash takes a kind (\"segv\", \"abort\" or \"exit\") and an optional exit status 0-255");
			goto done;
		}
		if (text_is(kind, klen, "segv")) {
			fprintf(stderr, "cworker: crash(segv): dereferencing NULL\n");
			signal(SIGSEGV, SIG_DFL);
			volatile int *volatile p = NULL;
			*p = 1;
			raise(SIGSEGV);
		} else if (text_is(kind, klen, "abort")) {
			fprintf(stderr, "cworker: crash(abort): calling abort()\n");
			signal(SIGABRT, SIG_DFL);
			abort();
		} else if (text_is(kind, klen, "exit")) {
			fprintf(stderr, "cworker: crash(exit): exit(%d)\n", (int)code);
			exit((int)code);
		}
		send_error(id, E_BAD_ARGUMENTS, "crash: unknown kind \"%.*s\"", (int)klen, (const char *)kind);
		goto done;
	}
	}
	if (res.len > max_frame) {
		send_error(id, E_APPLICATION, "result of %zu bytes exceeds the frame limit", res.len);
	} else {
		send_frame(T_REPLY, id, res.p, res.len);
	}
done:
	free(res.p);
}

/* handle_refusal reports the dispatcher's ERROR (id 0) refusing the HELLO. */
static void handle_refusal(const uint8_t *p, size_t n) {
	cur_t c = {p, p + n};
	head_t h;
	uint64_t code = 0;
	const char *msg = "";
	int msg_len = 0;
	if (skip_item(&c, 0) == 0 && (c.p = p, get_head(&c, &h) == 0) && h.major == 5) {
		for (uint64_t i = 0; i < h.arg; i++) {
			head_t k, v;
			if (get_head(&c, &k) != 0 || k.major != 3) {
				break;
			}
			const uint8_t *key = c.p;
			c.p += k.arg;
			const uint8_t *vstart = c.p;
			if (get_head(&c, &v) != 0) {
				break;
			}
			if (text_is(key, (size_t)k.arg, "code") && v.major == 0) {
				code = v.arg;
			} else if (text_is(key, (size_t)k.arg, "message") && v.major == 3) {
				msg = (const char *)c.p;
				msg_len = v.arg > 1024 ? 1024 : (int)v.arg;
			}
			c.p = vstart;
			skip_item(&c, 1);
		}
	}
	die(EXIT_CONFIG, "dispatcher refused the HELLO: code %llu: %.*s",
	    (unsigned long long)code, msg_len, msg);
}

/* ---- start-up --------------------------------------------------------- */

/* parse_u64 parses a plain decimal number. */
static int parse_u64(const char *s, uint64_t *v) {
	if (s == NULL || *s == '\0') {
		return 0;
	}
	uint64_t x = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || x > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) {
			return 0;
		}
		x = x * 10 + (uint64_t)(*s - '0');
	}
	*v = x;
	return 1;
}

static int env_fd(const char *name) {
	uint64_t v;
	const char *s = getenv(name);
	if (!parse_u64(s, &v) || v > INT_MAX) {
		die(EXIT_CONFIG, "%s=%s is not a descriptor number", name, s);
	}
	int fd = (int)v;
	int flags = fcntl(fd, F_GETFD);
	if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
		die(EXIT_CONFIG, "%s=%d: %s", name, fd, strerror(errno));
	}
	return fd;
}

/* map_marker maps the start-marker page. A marker that is not usable is not
 * fatal: the worker then says marker:false and the dispatcher assumes every
 * call in flight at a crash had started. */
static void map_marker(int fd) {
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size < MARKER_SIZE) {
		fprintf(stderr, "cworker: start marker is not a %d-byte file; not using it\n", MARKER_SIZE);
		return;
	}
	uint8_t *page = mmap(NULL, MARKER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (page == MAP_FAILED) {
		fprintf(stderr, "cworker: mmap start marker: %s; not using it\n", strerror(errno));
		return;
	}
	if (le(page, 4) != MARKER_MAGIC || le(page + 4, 4) != 1) {
		fprintf(stderr, "cworker: start marker has bad magic or version; not using it\n");
		munmap(page, MARKER_SIZE);
		return;
	}
	marker_started = (uint64_t *)(void *)(page + 8);
}

static void send_hello(const char *cookie) {
	static const char *const methods[] = {"echo", "add", "upper", "crash"};
	buf_t b = {0};
	cb_head(&b, 5, 7);
	cb_str(&b, "protocol");
	cb_head(&b, 0, 1);
	cb_str(&b, "pid");
	cb_head(&b, 0, (uint64_t)getpid());
	cb_str(&b, "cookie");
	cb_str(&b, cookie);
	cb_str(&b, "methods");
	cb_head(&b, 4, sizeof methods / sizeof methods[0]);
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
		cb_str(&b, methods[i]);
	}
	cb_str(&b, "concurrency");
	cb_head(&b, 0, 1);
	cb_str(&b, "marker");
	cb_bool(&b, marker_started != NULL);
	cb_str(&b, "name");
	cb_str(&b, "cworker");
	send_frame(T_HELLO, 0, b.p, b.len);
	free(b.p);
}

int main(void) {
	uint64_t v;
	const char *s;

	if (getenv("BULKHEAD_FD") == NULL) {
		die(EXIT_CONFIG, "BULKHEAD_FD is not set: not started by a bulkhead dispatcher");
	}
	sock = env_fd("BULKHEAD_FD");
	if ((s = getenv("BULKHEAD_PROTOCOL")) != NULL && strcmp(s, "1") != 0) {
		fprintf(stderr, "cworker: dispatcher speaks protocol %s; this worker speaks 1\n", s);
	}
	if ((s = getenv("BULKHEAD_MAX_FRAME")) != NULL) {
		if (!parse_u64(s, &v) || v == 0 || v > LIMIT_MAX_FRAME) {
			die(EXIT_CONFIG, "BULKHEAD_MAX_FRAME=%s is not a size from 1 to %lu", s, LIMIT_MAX_FRAME);
		}
		max_frame = (unsigned long)v;
	}
	if ((s = getenv("BULKHEAD_IDLE_TIMEOUT_MS")) != NULL) {
		if (!parse_u64(s, &idle_ms)) {
			die(EXIT_CONFIG, "BULKHEAD_IDLE_TIMEOUT_MS=%s is not a number", s);
		}
	}
	const char *cookie = getenv("BULKHEAD_COOKIE");
	if (cookie == NULL) {
		cookie = ""; /* the dispatcher will refuse it */
	}
	if (!utf8_valid((const uint8_t *)cookie, strlen(cookie))) {
		die(EXIT_CONFIG, "BULKHEAD_COOKIE is not valid UTF-8");
	}
	if (getenv("BULKHEAD_MARKER_FD") != NULL) {
		map_marker(env_fd("BULKHEAD_MARKER_FD"));
	}

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if ((s = getenv("BULKHEAD_PARENT_PID")) != NULL) {
		if (!parse_u64(s, &v)) {
			die(EXIT_CONFIG, "BULKHEAD_PARENT_PID=%s is not a pid", s);
		}
		if ((uint64_t)getppid() != v) {
			die(EXIT_PROTOCOL, "parent %s is already gone", s);
		}
	}

	send_hello(cookie);
	idle_since_ms = now_ms();

	uint8_t *payload = NULL;
	for (;;) {
		wait_for_frame();
		uint8_t h[HEADER_SIZE];
		if (read_exact(h, sizeof h) != 0) {
			exit(0); /* end of file: the dispatcher is gone */
		}
		uint64_t len = le(h, 4);
		unsigned type = h[4], flags = h[5];
		uint64_t reserved = le(h + 6, 2), id = le(h + 8, 8);
		/* Check the whole header before allocating anything. */
		if (flags != 0) {
			protocol_error("frame has flags %#x", flags);
		}
		if (reserved != 0) {
			protocol_error("frame has reserved bits %#llx", (unsigned long long)reserved);
		}
		if (type >= 16 && type <= 31) {
			protocol_error("object-model frame type %u, but this worker serves no objects", type);
		}
		if (type < T_HELLO || type > T_PONG) {
			protocol_error("unknown frame type %u", type);
		}
		if (len > max_frame) {
			protocol_error("frame of %llu bytes exceeds BULKHEAD_MAX_FRAME=%lu",
			               (unsigned long long)len, max_frame);
		}
		payload = xrealloc(payload, (size_t)len);
		if (read_exact(payload, (size_t)len) != 0) {
			exit(0);
		}
		switch (type) {
		case T_CALL:
			handle_call(id, payload, (size_t)len);
			idle_since_ms = now_ms();
			break;
		case T_PING:
			if (len != 0) {
				protocol_error("PING with a payload");
			}
			send_frame(T_PONG, id, NULL, 0);
			break;
		case T_PONG:
			break; /* this worker sends no PING */
		case T_CANCEL:
			/* Calls run one at a time and frames are read between
			 * them, so the call named here has already been
			 * answered. */
			if (len != 0) {
				protocol_error("CANCEL with a payload");
			}
			break;
		case T_QUIT:
			if (len != 0) {
				protocol_error("QUIT with a payload");
			}
			exit(0); /* nothing in flight */
		case T_ERROR:
			if (id != 0) {
				protocol_error("ERROR frame with id %llu from the dispatcher", (unsigned long long)id);
			}
			handle_refusal(payload, (size_t)len);
			break;
		default: /* HELLO, REPLY */
			protocol_error("frame type %u is never sent to a worker", type);
		}
	}
}
