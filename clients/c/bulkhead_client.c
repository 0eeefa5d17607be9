/* bulkhead_client.c: the client of bulkhead_client.h. C99, libc only, Linux. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* SOCK_CLOEXEC, MSG_NOSIGNAL under -std=c99 */
#endif
#include "bulkhead_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Frame types (CLIENT-PROTOCOL.md section 3) and limits (PROTOCOL.md 2, 5). */
enum { T_HELLO = 1, T_REQUEST = 2, T_REPLY = 3, T_ERROR = 4, T_CANCEL = 5, T_PING = 7, T_PONG = 8, T_EVENT = 23 };
#define HEADER 16
#define MAX_HELLO (64u << 10)
#define MAX_MAX_FRAME (1u << 30)
#define MAX_DEPTH 32
#define MAX_ITEMS 131072u
#define GRACE_MS 1000

/* ---- writing ------------------------------------------------------------ */

static int reserve(bhc_buf *b, size_t n) {
	if (b->failed)
		return -1;
	if (n > SIZE_MAX / 2 - b->len) {
		b->failed = 1;
		return -1;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *p = (uint8_t *)realloc(b->p, cap);
		if (p == NULL) {
			b->failed = 1;
			return -1;
		}
		b->p = p;
		b->cap = cap;
	}
	return 0;
}

void bhc_put_raw(bhc_buf *b, const void *p, size_t n) {
	if (reserve(b, n) == 0 && n > 0) {
		memcpy(b->p + b->len, p, n);
		b->len += n;
	}
}

static void put_head(bhc_buf *b, unsigned major, uint64_t v) {
	uint8_t h[9];
	size_t n = 1;
	if (v < 24) {
		h[0] = (uint8_t)(major << 5 | v);
	} else if (v <= 0xff) {
		h[0] = (uint8_t)(major << 5 | 24), h[1] = (uint8_t)v, n = 2;
	} else if (v <= 0xffff) {
		h[0] = (uint8_t)(major << 5 | 25), n = 3;
	} else if (v <= 0xffffffffu) {
		h[0] = (uint8_t)(major << 5 | 26), n = 5;
	} else {
		h[0] = (uint8_t)(major << 5 | 27), n = 9;
	}
	for (size_t i = 1; n > 2 && i < n; i++)
		h[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	bhc_put_raw(b, h, n);
}

void bhc_buf_reset(bhc_buf *b) { b->len = 0, b->failed = 0; }
void bhc_buf_free(bhc_buf *b) {
	free(b->p);
	memset(b, 0, sizeof *b);
}
void bhc_put_uint(bhc_buf *b, uint64_t v) { put_head(b, 0, v); }
void bhc_put_int(bhc_buf *b, int64_t v) {
	if (v >= 0)
		put_head(b, 0, (uint64_t)v);
	else
		put_head(b, 1, (uint64_t)(-(v + 1)));
}
void bhc_put_bool(bhc_buf *b, int v) { bhc_put_raw(b, v ? "\xf5" : "\xf4", 1); }
void bhc_put_null(bhc_buf *b) { bhc_put_raw(b, "\xf6", 1); }
void bhc_put_float(bhc_buf *b, double v) {
	uint64_t u;
	memcpy(&u, &v, 8);
	uint8_t h[9] = {0xfb};
	for (int i = 0; i < 8; i++)
		h[1 + i] = (uint8_t)(u >> (56 - 8 * i));
	bhc_put_raw(b, h, 9);
}
void bhc_put_bytes(bhc_buf *b, const void *p, size_t n) { put_head(b, 2, n), bhc_put_raw(b, p, n); }
void bhc_put_text(bhc_buf *b, const char *s, size_t n) { put_head(b, 3, n), bhc_put_raw(b, s, n); }
void bhc_put_str(bhc_buf *b, const char *s) { bhc_put_text(b, s, strlen(s)); }
void bhc_put_array(bhc_buf *b, uint64_t n) { put_head(b, 4, n); }
void bhc_put_map(bhc_buf *b, uint64_t n) { put_head(b, 5, n); }

/* ---- reading ------------------------------------------------------------ */

typedef struct {
	unsigned major, info;
	uint64_t arg;
} head;

/* get_head reads the head at *pp; it checks the bytes the head needs and,
 * for strings, that the content fits. */
static int get_head(const uint8_t **pp, const uint8_t *end, head *h) {
	const uint8_t *p = *pp;
	if (p >= end)
		return -1;
	h->major = p[0] >> 5, h->info = p[0] & 31, h->arg = h->info;
	p++;
	if (h->info >= 24 && h->info <= 27) {
		size_t n = (size_t)1 << (h->info - 24);
		if ((size_t)(end - p) < n)
			return -1;
		h->arg = 0;
		for (size_t i = 0; i < n; i++)
			h->arg = h->arg << 8 | p[i];
		p += n;
	} else if (h->info > 27 && !(h->major == 7 && h->info == 31)) {
		return -1;
	}
	if ((h->major == 2 || h->major == 3) && (h->info == 31 || h->arg > (uint64_t)(end - p)))
		return -1;
	*pp = p;
	return 0;
}

bhc_cur bhc_cursor(const uint8_t *p, size_t n) {
	bhc_cur c = {p, p + n};
	return c;
}

int bhc_kind(const bhc_cur *c) {
	const uint8_t *p = c->p;
	head h;
	if (get_head(&p, c->end, &h) != 0)
		return BHC_INVALID;
	switch (h.major) {
	case 0: return BHC_UINT;
	case 1: return BHC_NEGINT;
	case 2: return BHC_BYTES;
	case 3: return BHC_TEXT;
	case 4: return BHC_ARRAY;
	case 5: return BHC_MAP;
	case 7:
		if (h.info == 20 || h.info == 21)
			return BHC_BOOL;
		if (h.info == 22)
			return BHC_NULL;
		if (h.info >= 25 && h.info <= 27)
			return BHC_FLOAT;
	}
	return BHC_INVALID;
}

/* get reads a head of the given major type. */
static int get(bhc_cur *c, unsigned major, head *h) {
	const uint8_t *p = c->p;
	if (get_head(&p, c->end, h) != 0 || h->major != major || h->info == 31)
		return -1;
	c->p = p;
	return 0;
}

int bhc_get_uint(bhc_cur *c, uint64_t *v) {
	head h;
	if (get(c, 0, &h) != 0)
		return -1;
	*v = h.arg;
	return 0;
}

int bhc_get_int(bhc_cur *c, int64_t *v) {
	bhc_cur save = *c;
	head h;
	int neg = bhc_kind(c) == BHC_NEGINT;
	if (get(c, neg ? 1 : 0, &h) != 0)
		return -1;
	if (h.arg > (uint64_t)INT64_MAX) {
		*c = save;
		return -1;
	}
	*v = neg ? -1 - (int64_t)h.arg : (int64_t)h.arg;
	return 0;
}

int bhc_get_bool(bhc_cur *c, int *v) {
	if (bhc_kind(c) != BHC_BOOL)
		return -1;
	*v = *c->p == 0xf5;
	c->p++;
	return 0;
}

int bhc_get_null(bhc_cur *c) {
	if (bhc_kind(c) != BHC_NULL)
		return -1;
	c->p++;
	return 0;
}

static double half(uint16_t h) {
	int e = (h >> 10) & 31;
	double m = h & 1023, v;
	if (e == 0)
		v = m / 16777216.0; /* m * 2^-24 */
	else if (e == 31)
		v = m ? 0.0 / 0.0 : 1.0 / 0.0;
	else {
		v = (1024 + m);
		for (int i = e - 25; i > 0; i--)
			v *= 2;
		for (int i = e - 25; i < 0; i++)
			v /= 2;
	}
	return h & 0x8000 ? -v : v;
}

int bhc_get_float(bhc_cur *c, double *v) {
	head h;
	if (bhc_kind(c) != BHC_FLOAT || get(c, 7, &h) != 0)
		return -1;
	if (h.info == 25) {
		*v = half((uint16_t)h.arg);
	} else if (h.info == 26) {
		uint32_t u = (uint32_t)h.arg;
		float f;
		memcpy(&f, &u, 4);
		*v = f;
	} else {
		memcpy(v, &h.arg, 8);
	}
	return 0;
}

static int get_string(bhc_cur *c, unsigned major, const uint8_t **s, size_t *n) {
	head h;
	if (get(c, major, &h) != 0)
		return -1;
	*s = c->p, *n = (size_t)h.arg;
	c->p += h.arg;
	return 0;
}

int bhc_get_bytes(bhc_cur *c, const uint8_t **p, size_t *n) { return get_string(c, 2, p, n); }
int bhc_get_text(bhc_cur *c, const char **s, size_t *n) {
	const uint8_t *p; /* not through a cast of s: that would break strict aliasing */
	if (get_string(c, 3, &p, n) != 0)
		return -1;
	*s = (const char *)p;
	return 0;
}

/* get_container reads an array or map head; every item takes a byte at
 * least, so a count beyond the bytes left is refused at once. */
static int get_container(bhc_cur *c, unsigned major, size_t *n) {
	bhc_cur save = *c;
	head h;
	if (get(c, major, &h) != 0)
		return -1;
	if (h.arg > MAX_ITEMS || h.arg * (major == 5 ? 2 : 1) > (uint64_t)(c->end - c->p)) {
		*c = save;
		return -1;
	}
	*n = (size_t)h.arg;
	return 0;
}

int bhc_get_array(bhc_cur *c, size_t *n) { return get_container(c, 4, n); }
int bhc_get_map(bhc_cur *c, size_t *n) { return get_container(c, 5, n); }

/* ---- checking values (PROTOCOL.md section 5) ----------------------------- */

static int item(const uint8_t **pp, const uint8_t *end, int level, const char **why);

int bhc_skip(bhc_cur *c) {
	const uint8_t *p = c->p;
	const char *why;
	if (item(&p, c->end, 1, &why) != 0)
		return -1;
	c->p = p;
	return 0;
}

static int utf8(const uint8_t *s, size_t n) {
	size_t i = 0;
	while (i < n) {
		uint8_t b = s[i];
		size_t k;
		uint32_t cp;
		if (b < 0x80) {
			i++;
			continue;
		} else if ((b & 0xe0) == 0xc0) {
			k = 1, cp = b & 0x1f;
		} else if ((b & 0xf0) == 0xe0) {
			k = 2, cp = b & 0x0f;
		} else if ((b & 0xf8) == 0xf0) {
			k = 3, cp = b & 0x07;
		} else {
			return -1;
		}
		if (n - i - 1 < k)
			return -1;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return -1;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return -1;
		i += k + 1;
	}
	return 0;
}

/* A map key by value: its major type and argument, and a text key's bytes
 * (a key's head need not be in its shortest form, so bytes are no test). */
typedef struct {
	unsigned major;
	uint64_t arg;
	const uint8_t *p;
} span;

static int span_cmp(const void *a, const void *b) {
	const span *x = (const span *)a, *y = (const span *)b;
	if (x->major != y->major)
		return x->major < y->major ? -1 : 1;
	if (x->arg != y->arg)
		return x->arg < y->arg ? -1 : 1;
	return x->major == 3 && x->arg > 0 ? memcmp(x->p, y->p, (size_t)x->arg) : 0;
}

#define FAIL(msg) return (*why = (msg), -1)

/* map checks n pairs; a key is a text string or an integer, and no two
 * keys of one map are equal. */
static int map(const uint8_t **pp, const uint8_t *end, uint64_t n, int level, const char **why) {
	span *keys = (span *)malloc((size_t)(n ? n : 1) * sizeof *keys);
	if (keys == NULL)
		FAIL("out of memory");
	int rc = 0;
	for (uint64_t i = 0; i < n && rc == 0; i++) {
		const uint8_t *k = *pp;
		head h;
		if (get_head(&k, end, &h) != 0 || h.major > 3 || h.major == 2 || h.info == 31) {
			*why = "a map key that is not text or an integer", rc = -1;
			break;
		}
		if (h.major == 1 && h.arg >= (uint64_t)1 << 63) {
			*why = "an integer key below -2^63", rc = -1;
			break;
		}
		keys[i].major = h.major, keys[i].arg = h.arg, keys[i].p = k;
		rc = item(pp, end, level + 1, why);
		if (rc == 0)
			rc = item(pp, end, level + 1, why);
	}
	if (rc == 0 && n > 1) {
		qsort(keys, (size_t)n, sizeof *keys, span_cmp);
		for (uint64_t i = 1; i < n; i++)
			if (span_cmp(&keys[i - 1], &keys[i]) == 0) {
				*why = "a duplicate map key", rc = -1;
				break;
			}
	}
	free(keys);
	return rc;
}

static int item(const uint8_t **pp, const uint8_t *end, int level, const char **why) {
	head h;
	if (level > MAX_DEPTH)
		FAIL("nested deeper than 32");
	if (get_head(pp, end, &h) != 0)
		FAIL("truncated or malformed CBOR");
	if (h.info == 31)
		FAIL("an indefinite-length item");
	switch (h.major) {
	case 0:
	case 1:
		return 0;
	case 2:
		*pp += h.arg;
		return 0;
	case 3:
		if (utf8(*pp, (size_t)h.arg) != 0)
			FAIL("text that is not UTF-8");
		*pp += h.arg;
		return 0;
	case 4:
	case 5:
		if (h.arg > MAX_ITEMS)
			FAIL("more than 131072 items");
		if (h.arg * (h.major == 5 ? 2 : 1) > (uint64_t)(end - *pp))
			FAIL("more items than bytes");
		if (h.major == 5)
			return map(pp, end, h.arg, level, why);
		for (uint64_t i = 0; i < h.arg; i++)
			if (item(pp, end, level + 1, why) != 0)
				return -1;
		return 0;
	case 6:
		FAIL("a tag");
	}
	if (h.info == 20 || h.info == 21 || h.info == 22 || (h.info >= 25 && h.info <= 27))
		return 0;
	FAIL("a simple value other than false, true and null");
}

int bhc_check(const uint8_t *p, size_t n, int level, const char **why) {
	const char *w = NULL;
	const uint8_t *q = p;
	int rc = item(&q, p + n, level, &w);
	if (rc == 0 && q != p + n)
		rc = -1, w = "bytes after the item";
	if (why != NULL)
		*why = w;
	return rc;
}

int bhc_result_int(const bhc_buf *result, int64_t *v) {
	bhc_cur c = bhc_cursor(result->p, result->len);
	return bhc_get_int(&c, v) == 0 && c.p == c.end ? 0 : -1;
}

int bhc_result_text(const bhc_buf *result, const char **s, size_t *n) {
	bhc_cur c = bhc_cursor(result->p, result->len);
	return bhc_get_text(&c, s, n) == 0 && c.p == c.end ? 0 : -1;
}

/* ---- errors ------------------------------------------------------------- */

static void set_text(char *dst, size_t cap, const char *s, size_t n) {
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, s, n);
	dst[n] = 0;
}

/* fail sets *err to a kind of the client's own, with a printf message. */
static int fail(bhc_error *err, const char *kind, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int fail(bhc_error *err, const char *kind, const char *fmt, ...) {
	va_list ap;
	memset(err, 0, sizeof *err);
	set_text(err->kind, sizeof err->kind, kind, strlen(kind));
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	return -1;
}

/* A field of bhc_error by its key in the ERROR map. */
typedef struct {
	const char *key;
	char type; /* 's' text, 'i' int64, 'u' uint64, 'b' bool */
	size_t off, cap;
} field;

#define S(k, m) {k, 's', offsetof(bhc_error, m), sizeof(((bhc_error *)0)->m)}
#define I(k, m) {k, 'i', offsetof(bhc_error, m), 0}
#define U(k, m) {k, 'u', offsetof(bhc_error, m), 0}
#define B(k, m) {k, 'b', offsetof(bhc_error, m), 0}
static const field fields[] = {
	S("kind", kind), S("message", message), S("method", method), S("reason", reason), S("phase", phase),
	S("cause", cause), S("limit", limit), S("class", class_name), S("key", key), S("last", last),
	S("stderr", stderr_text), S("stack", stderr_text), I("pid", pid), I("exit_code", exit_code),
	I("signal", signal), I("code", code), I("queued", queued), I("failures", failures), I("deaths", deaths),
	I("replays", replays), I("waited_ns", waited_ns), I("since_ns", since_ns), I("until_ns", until_ns),
	U("request_id", request_id), U("object", object), U("abandoned_by", abandoned_by),
	U("args_hash", args_hash), U("buffer", buffer), B("core_dumped", core_dumped), B("killed", killed),
	B("started", started), B("exited", exited),
};

/* decode_error fills *err from a checked ERROR payload. A field of the
 * wrong type is left out; a disconnected error's cause map gives cause its
 * kind. */
static int decode_error(const uint8_t *p, size_t n, bhc_error *err) {
	bhc_cur c = bhc_cursor(p, n);
	size_t pairs;
	memset(err, 0, sizeof *err);
	if (bhc_get_map(&c, &pairs) != 0)
		return fail(err, "protocol", "an ERROR payload that is not a map");
	for (size_t i = 0; i < pairs; i++) {
		const char *k, *s = "";
		size_t kn, sn = 0;
		if (bhc_get_text(&c, &k, &kn) != 0) {
			bhc_skip(&c), bhc_skip(&c);
			continue;
		}
		if (kn == 5 && memcmp(k, "cause", 5) == 0 && bhc_kind(&c) == BHC_MAP) {
			bhc_cur m = c;
			size_t mp;
			bhc_get_map(&m, &mp);
			for (size_t j = 0; j < mp; j++) {
				if (bhc_get_text(&m, &s, &sn) != 0)
					bhc_skip(&m);
				else if (sn == 4 && memcmp(s, "kind", 4) == 0 && bhc_get_text(&m, &s, &sn) == 0) {
					set_text(err->cause, sizeof err->cause, s, sn);
					break;
				}
				bhc_skip(&m);
			}
			bhc_skip(&c);
			continue;
		}
		const field *f = NULL;
		for (size_t j = 0; j < sizeof fields / sizeof fields[0]; j++)
			if (strlen(fields[j].key) == kn && memcmp(fields[j].key, k, kn) == 0)
				f = &fields[j];
		char *dst = f ? (char *)err + f->off : NULL;
		int64_t iv;
		uint64_t uv;
		int bv;
		if (f && f->type == 's' && bhc_get_text(&c, &s, &sn) == 0)
			set_text(dst, f->cap, s, sn);
		else if (f && f->type == 'i' && bhc_get_int(&c, &iv) == 0)
			memcpy(dst, &iv, sizeof iv);
		else if (f && f->type == 'u' && bhc_get_uint(&c, &uv) == 0)
			memcpy(dst, &uv, sizeof uv);
		else if (f && f->type == 'b' && bhc_get_bool(&c, &bv) == 0)
			memcpy(dst, &bv, sizeof bv);
		else
			bhc_skip(&c);
	}
	if (err->kind[0] == 0)
		return fail(err, "protocol", "an ERROR without a kind");
	return -1;
}

/* ---- the connection ----------------------------------------------------- */

struct bhc_client {
	int fd;
	uint32_t max_frame; /* the daemon's, from its HELLO */
	uint64_t next_id;
	int timeout_ms;
	int grace_ms;      /* waited past a deadline for the daemon's answer */
	int broken;        /* the connection is unusable: why says why */
	bhc_error why;
	bhc_buf in, out;   /* the last payload read; the frame being written */
};

static int64_t now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait polls for ev until deadline (ms, monotonic; 0: none): 0, -1 error,
 * -2 timeout. */
static int wait_fd(int fd, short ev, int64_t deadline) {
	for (;;) {
		int ms = -1;
		if (deadline) {
			int64_t left = deadline - now_ms();
			if (left <= 0)
				return -2;
			ms = left > 1 << 30 ? 1 << 30 : (int)left;
		}
		struct pollfd p = {fd, ev, 0};
		int n = poll(&p, 1, ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

static int write_all(int fd, const uint8_t *p, size_t n, int64_t deadline) {
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k > 0) {
			p += k, n -= (size_t)k;
		} else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int rc = wait_fd(fd, POLLOUT, deadline);
			if (rc != 0)
				return rc;
		} else if (k < 0 && errno != EINTR) {
			return -1;
		}
	}
	return 0;
}

/* read_full reads n bytes: 0, -1 error (errno; 0 at end of file), -2 timeout. */
static int read_full(int fd, uint8_t *p, size_t n, int64_t deadline) {
	while (n > 0) {
		ssize_t k = recv(fd, p, n, MSG_DONTWAIT);
		if (k > 0) {
			p += k, n -= (size_t)k;
		} else if (k == 0) {
			errno = 0;
			return -1;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int rc = wait_fd(fd, POLLIN, deadline);
			if (rc != 0)
				return rc;
		} else if (errno != EINTR) {
			return -1;
		}
	}
	return 0;
}

typedef struct {
	uint32_t length;
	uint8_t type;
	uint64_t id;
} header;

static uint64_t le(const uint8_t *p, int n) {
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_le(uint8_t *p, uint64_t v, int n) {
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* check_header decodes a daemon's frame header: NULL, or why it is refused. */
static const char *check_header(const uint8_t *b, uint32_t max_frame, header *h) {
	h->length = (uint32_t)le(b, 4), h->type = b[4], h->id = le(b + 8, 8);
	switch (h->type) {
	case T_HELLO: case T_REPLY: case T_ERROR: case T_PING: case T_PONG: case T_EVENT:
		break;
	default:
		return "a frame of a type the daemon does not send";
	}
	if (b[5] != 0)
		return "non-zero flags";
	if (b[6] != 0 || b[7] != 0)
		return "non-zero reserved bytes";
	if (h->length > max_frame)
		return "a frame over max_frame";
	return NULL;
}

/* broke marks the connection unusable for the reason in *err. */
static int broke(bhc_client *c, bhc_error *err) {
	c->broken = 1;
	c->why = *err;
	shutdown(c->fd, SHUT_RDWR);
	return -1;
}

static int io_fail(bhc_client *c, int rc, const char *what, int started, bhc_error *err) {
	if (rc == -2) {
		fail(err, "timeout", "no answer from the daemon in time (%s)", what);
		return started ? broke(c, err) : -1; /* a frame cut in two leaves the stream unreadable */
	}
	fail(err, "connection", "%s: %s", what, errno ? strerror(errno) : "the daemon closed the connection");
	return broke(c, err);
}

/* read_frame reads one frame into c->in, checked. */
static int read_frame(bhc_client *c, int64_t deadline, header *h, bhc_error *err) {
	uint8_t b[HEADER];
	int rc = read_full(c->fd, b, 1, deadline);
	if (rc == 0)
		rc = read_full(c->fd, b + 1, HEADER - 1, deadline);
	if (rc != 0)
		return io_fail(c, rc, "reading a frame", 0, err);
	const char *why = check_header(b, c->max_frame, h);
	if (why != NULL) {
		fail(err, "protocol", "the daemon broke the protocol: %s", why);
		return broke(c, err);
	}
	bhc_buf_reset(&c->in);
	if (reserve(&c->in, h->length) != 0) {
		fail(err, "connection", "out of memory for a frame of %u bytes", (unsigned)h->length);
		return broke(c, err);
	}
	if ((rc = read_full(c->fd, c->in.p, h->length, deadline)) != 0)
		return io_fail(c, rc, "reading a frame", 1, err);
	c->in.len = h->length;
	if (h->length > 0 && bhc_check(c->in.p, h->length, 1, &why) != 0) {
		fail(err, "protocol", "the daemon broke the protocol: %s", why);
		return broke(c, err);
	}
	return 0;
}

static int send_control(bhc_client *c, uint8_t type, uint64_t id, int64_t deadline) {
	uint8_t b[HEADER] = {0};
	b[4] = type;
	put_le(b + 8, id, 8);
	return write_all(c->fd, b, HEADER, deadline);
}

/* send_frame finishes c->out (header first, 16 bytes reserved) and writes it. */
static int send_frame(bhc_client *c, uint8_t type, uint64_t id, int64_t deadline, bhc_error *err) {
	if (c->out.failed)
		return fail(err, "usage", "out of memory encoding a request");
	size_t n = c->out.len - HEADER;
	if (n > c->max_frame)
		return fail(err, "usage", "a request of %zu bytes, over the daemon's max_frame", n);
	memset(c->out.p, 0, HEADER);
	put_le(c->out.p, n, 4);
	c->out.p[4] = type;
	put_le(c->out.p + 8, id, 8);
	int rc = write_all(c->fd, c->out.p, c->out.len, deadline);
	return rc == 0 ? 0 : io_fail(c, rc, "sending a request", 1, err);
}

/* ---- requests ----------------------------------------------------------- */

/* kv is one key of a REQUEST map. */
typedef struct {
	const char *key;
	char type; /* 'u' unsigned, 's' text, 'b' bool, 'r' encoded CBOR */
	uint64_t u;
	const char *s;
	const uint8_t *raw;
	size_t rawn;
} kv;

/* put_request encodes a REQUEST map after the header's room, with its keys
 * in CBOR's core deterministic order (shorter first, then bytewise), as the
 * daemon's own encoder writes them: the same request is the same bytes. */
static void put_request(bhc_buf *b, kv *f, size_t n) {
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0; j--) {
			size_t a = strlen(f[j - 1].key), z = strlen(f[j].key);
			if (a < z || (a == z && strcmp(f[j - 1].key, f[j].key) < 0))
				break;
			kv t = f[j];
			f[j] = f[j - 1], f[j - 1] = t;
		}
	bhc_buf_reset(b);
	if (reserve(b, HEADER) == 0)
		b->len = HEADER;
	bhc_put_map(b, n);
	for (size_t i = 0; i < n; i++) {
		bhc_put_str(b, f[i].key);
		switch (f[i].type) {
		case 'u': bhc_put_uint(b, f[i].u); break;
		case 's': bhc_put_str(b, f[i].s); break;
		case 'b': bhc_put_bool(b, f[i].u != 0); break;
		default: bhc_put_raw(b, f[i].raw, f[i].rawn);
		}
	}
}

static int64_t wall_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* roundtrip sends the REQUEST of op with fields f (room for 3 more kept by
 * the caller) and args, and waits for its answer: its REPLY's payload is in
 * c->in. */
static int roundtrip(bhc_client *c, const char *op, kv *f, size_t n, const uint8_t *args, size_t args_len,
                     bhc_error *err) {
	const char *why;
	if (c == NULL)
		return fail(err, "usage", "no client");
	if (c->broken) {
		*err = c->why;
		return -1;
	}
	if (args != NULL && (bhc_check(args, args_len, 2, &why) != 0 || args[0] >> 5 != 4))
		return fail(err, "usage", "args must be one CBOR array: %s", why ? why : "another item");
	f[n++] = (kv){"op", 's', 0, op, NULL, 0};
	if (args != NULL && args[0] != 0x80) /* no arguments: args left out */
		f[n++] = (kv){"args", 'r', 0, NULL, args, args_len};
	int64_t deadline = 0;
	if (c->timeout_ms > 0) {
		f[n++] = (kv){"deadline", 'u', (uint64_t)(wall_ns() + (int64_t)c->timeout_ms * 1000000), NULL, NULL, 0};
		deadline = now_ms() + c->timeout_ms + c->grace_ms;
	}
	uint64_t id = ++c->next_id;
	put_request(&c->out, f, n);
	if (send_frame(c, T_REQUEST, id, deadline, err) != 0)
		return -1;
	for (;;) {
		header h;
		if (read_frame(c, deadline, &h, err) != 0) {
			if (!c->broken)
				send_control(c, T_CANCEL, id, now_ms() + GRACE_MS);
			return -1;
		}
		if (h.type == T_PING) {
			int rc = send_control(c, T_PONG, h.id, deadline);
			if (rc != 0)
				return io_fail(c, rc, "answering PING", 1, err);
		} else if (h.type == T_ERROR && h.id == 0) {
			decode_error(c->in.p, c->in.len, err);
			return broke(c, err);
		} else if (h.type == T_HELLO) {
			fail(err, "protocol", "the daemon broke the protocol: HELLO after the handshake");
			return broke(c, err);
		} else if ((h.type == T_REPLY || h.type == T_ERROR) && h.id == id) {
			if (h.type == T_ERROR)
				return decode_error(c->in.p, c->in.len, err);
			if (c->in.len == 0 || c->in.p[0] >> 5 != 5) {
				fail(err, "protocol", "the daemon broke the protocol: a REPLY that is not a map");
				return broke(c, err);
			}
			memset(err, 0, sizeof *err);
			return 0;
		} /* else PONG, EVENT, or the late answer of a request given up: dropped */
	}
}

/* reply_field finds key in the REPLY map in c->in: a cursor on its value. */
static int reply_field(bhc_client *c, const char *key, bhc_cur *v) {
	bhc_cur m = bhc_cursor(c->in.p, c->in.len);
	size_t n, kn = strlen(key);
	if (bhc_get_map(&m, &n) != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *k;
		size_t len;
		if (bhc_get_text(&m, &k, &len) != 0)
			bhc_skip(&m);
		else if (len == kn && memcmp(k, key, kn) == 0) {
			*v = m;
			return 0;
		}
		bhc_skip(&m);
	}
	return -1;
}

/* reply_uint reads an unsigned field of the REPLY (pid: an int). */
static int reply_uint(bhc_client *c, const char *key, uint64_t *v, bhc_error *err) {
	bhc_cur f;
	if (reply_field(c, key, &f) != 0 || bhc_get_uint(&f, v) != 0) {
		fail(err, "protocol", "the daemon's REPLY lacks %s", key);
		return broke(c, err);
	}
	return 0;
}

/* handle_reply reads {key: handle, pid: pid}. */
static int handle_reply(bhc_client *c, const char *key, uint64_t *h, int64_t *pid, bhc_error *err) {
	uint64_t u = 0;
	if (reply_uint(c, key, h, err) != 0)
		return -1;
	bhc_cur f;
	if (pid != NULL)
		*pid = reply_field(c, "pid", &f) == 0 && bhc_get_uint(&f, &u) == 0 ? (int64_t)u : 0;
	return 0;
}

/* result_reply copies the REPLY's result item to out. */
static int result_reply(bhc_client *c, bhc_buf *out, bhc_error *err) {
	bhc_cur f;
	if (reply_field(c, "result", &f) != 0) {
		fail(err, "protocol", "the daemon's REPLY lacks result");
		return broke(c, err);
	}
	const uint8_t *start = f.p;
	bhc_skip(&f);
	bhc_buf_reset(out);
	bhc_put_raw(out, start, (size_t)(f.p - start));
	return out->failed ? fail(err, "usage", "out of memory for a result") : 0;
}

/* ---- the API ------------------------------------------------------------ */

static bhc_client *handshake(int fd, const char *name, int timeout_ms, bhc_error *err) {
	bhc_client *c = (bhc_client *)calloc(1, sizeof *c);
	if (c == NULL) {
		fail(err, "connection", "out of memory");
		close(fd);
		return NULL;
	}
	c->fd = fd, c->max_frame = MAX_HELLO, c->timeout_ms = timeout_ms, c->grace_ms = GRACE_MS;
	int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
	kv f[2] = {{"protocol", 'u', BHC_PROTOCOL, NULL, NULL, 0}, {"name", 's', 0, name, NULL, 0}};
	put_request(&c->out, f, name != NULL && name[0] ? 2 : 1);
	header h;
	bhc_cur v;
	uint64_t proto = 0, max = 0;
	if (send_frame(c, T_HELLO, 0, deadline, err) != 0 || read_frame(c, deadline, &h, err) != 0)
		goto out;
	if (h.type == T_ERROR) {
		decode_error(c->in.p, c->in.len, err);
		goto out;
	}
	if (h.type != T_HELLO || h.id != 0 || reply_field(c, "protocol", &v) != 0 || bhc_get_uint(&v, &proto) != 0 ||
	    proto != BHC_PROTOCOL || reply_field(c, "max_frame", &v) != 0 || bhc_get_uint(&v, &max) != 0 ||
	    max < 1024 || max > MAX_MAX_FRAME) {
		fail(err, "protocol", "the daemon's HELLO is malformed");
		goto out;
	}
	c->max_frame = (uint32_t)max;
	memset(err, 0, sizeof *err);
	return c;
out:
	bhc_close(c);
	return NULL;
}

bhc_client *bhc_connect(const char *socket_path, const char *name, int timeout_ms, bhc_error *err) {
	struct sockaddr_un a;
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	if (socket_path == NULL || strlen(socket_path) >= sizeof a.sun_path) {
		fail(err, "usage", "a socket path of 1 to %zu bytes is needed", sizeof a.sun_path - 1);
		return NULL;
	}
	if (name != NULL && strlen(name) > 256) {
		fail(err, "usage", "a name of at most 256 bytes is needed");
		return NULL;
	}
	memcpy(a.sun_path, socket_path, strlen(socket_path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fail(err, "connection", "socket: %s", strerror(errno));
		return NULL;
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		fail(err, "connection", "connecting to %s: %s", socket_path, strerror(errno));
		close(fd);
		return NULL;
	}
	return handshake(fd, name, timeout_ms, err);
}

void bhc_set_timeout(bhc_client *c, int timeout_ms) { c->timeout_ms = timeout_ms > 0 ? timeout_ms : 0; }

void bhc_close(bhc_client *c) {
	if (c == NULL)
		return;
	close(c->fd);
	bhc_buf_free(&c->in);
	bhc_buf_free(&c->out);
	free(c);
}

#define KV_S(k, v) {k, 's', 0, v, NULL, 0}
#define KV_U(k, v) {k, 'u', v, NULL, NULL, 0}

int bhc_call(bhc_client *c, const char *pool, const char *method, const uint8_t *args, size_t args_len,
             bhc_buf *result, bhc_error *err) {
	kv f[5] = {KV_S("pool", pool), KV_S("method", method)};
	if (roundtrip(c, "call", f, 2, args, args_len, err) != 0)
		return -1;
	return result_reply(c, result, err);
}

int bhc_create_instance(bhc_client *c, const char *class_name, const uint8_t *args, size_t args_len,
                        uint64_t *object, int64_t *pid, bhc_error *err) {
	kv f[4] = {KV_S("class", class_name)};
	if (roundtrip(c, "create_instance", f, 1, args, args_len, err) != 0)
		return -1;
	return handle_reply(c, "object", object, pid, err);
}

int bhc_object_call(bhc_client *c, uint64_t object, const char *method, const uint8_t *args, size_t args_len,
                    bhc_buf *result, bhc_error *err) {
	kv f[5] = {KV_U("object", object), KV_S("method", method)};
	if (roundtrip(c, "object_call", f, 2, args, args_len, err) != 0)
		return -1;
	return result_reply(c, result, err);
}

/* bhc_release sends the release and returns: the daemon carries it out
 * before the next request, and answers only if it fails (section 5.2), an
 * ERROR that roundtrip drops as the answer of a request nobody waits for. */
int bhc_release(bhc_client *c, uint64_t handle, bhc_error *err) {
	if (c == NULL)
		return fail(err, "usage", "no client");
	if (c->broken) {
		*err = c->why;
		return -1;
	}
	kv f[2] = {KV_U("handle", handle), {"op", 's', 0, "release", NULL, 0}};
	put_request(&c->out, f, 2);
	int64_t deadline = c->timeout_ms > 0 ? now_ms() + c->timeout_ms + c->grace_ms : 0;
	if (send_frame(c, T_REQUEST, ++c->next_id, deadline, err) != 0)
		return -1;
	memset(err, 0, sizeof *err);
	return 0;
}

int bhc_clone(bhc_client *c, uint64_t object, uint64_t *clone, bhc_error *err) {
	kv f[4] = {KV_U("object", object)};
	if (roundtrip(c, "clone", f, 1, NULL, 0, err) != 0)
		return -1;
	return handle_reply(c, "object", clone, NULL, err);
}

int bhc_get_class_object(bhc_client *c, const char *class_name, uint64_t *class_object, int64_t *pid,
                         bhc_error *err) {
	kv f[4] = {KV_S("class", class_name)};
	if (roundtrip(c, "get_class_object", f, 1, NULL, 0, err) != 0)
		return -1;
	return handle_reply(c, "class_object", class_object, pid, err);
}

int bhc_class_create_instance(bhc_client *c, uint64_t class_object, const uint8_t *args, size_t args_len,
                              uint64_t *object, int64_t *pid, bhc_error *err) {
	kv f[4] = {KV_U("class_object", class_object)};
	if (roundtrip(c, "class_create_instance", f, 1, args, args_len, err) != 0)
		return -1;
	return handle_reply(c, "object", object, pid, err);
}

int bhc_lock_server(bhc_client *c, uint64_t class_object, int lock, bhc_error *err) {
	kv f[5] = {KV_U("class_object", class_object), {"lock", 'b', (uint64_t)(lock != 0), NULL, NULL, 0}};
	return roundtrip(c, "lock_server", f, 2, NULL, 0, err);
}

int bhc_rot_register(bhc_client *c, const char *name, uint64_t object, int keep_alive, bhc_error *err) {
	kv f[6] = {KV_S("name", name), KV_U("object", object), {"keep_alive", 'b', (uint64_t)(keep_alive != 0), NULL, NULL, 0}};
	return roundtrip(c, "rot_register", f, 3, NULL, 0, err);
}

int bhc_rot_lookup(bhc_client *c, const char *name, uint64_t *object, int64_t *pid, bhc_error *err) {
	kv f[4] = {KV_S("name", name)};
	if (roundtrip(c, "rot_lookup", f, 1, NULL, 0, err) != 0)
		return -1;
	return handle_reply(c, "object", object, pid, err);
}

int bhc_rot_revoke(bhc_client *c, const char *name, bhc_error *err) {
	kv f[4] = {KV_S("name", name)};
	return roundtrip(c, "rot_revoke", f, 1, NULL, 0, err);
}

static int map_op(bhc_client *c, const char *op, bhc_buf *reply, bhc_error *err) {
	kv f[3];
	if (roundtrip(c, op, f, 0, NULL, 0, err) != 0)
		return -1;
	bhc_buf_reset(reply);
	bhc_put_raw(reply, c->in.p, c->in.len);
	return reply->failed ? fail(err, "usage", "out of memory for a reply") : 0;
}

int bhc_status(bhc_client *c, bhc_buf *reply, bhc_error *err) { return map_op(c, "status", reply, err); }
int bhc_stats(bhc_client *c, bhc_buf *reply, bhc_error *err) { return map_op(c, "stats", reply, err); }
