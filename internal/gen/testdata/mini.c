#define _GNU_SOURCE
#include "mini.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

void mini_null(void) {}

int mini_sum(const unsigned char *buf, size_t n, long *sum) {
	if (n == 0) {
		return -1;
	}
	*sum = 0;
	for (size_t i = 0; i < n; i++) {
		*sum += buf[i];
	}
	return MINI_OK;
}

void mini_fill(char *dst, mini_len cap, mini_len *written) {
	for (mini_len i = 0; i < cap; i++) {
		dst[i] = (char)('a' + i % 26);
	}
	*written = cap;
}

double mini_scale(double x, short k) { return x * k; }

size_t mini_strlen(const char *s) {
	size_t n = 0;
	while (s[n]) {
		n++;
	}
	return n;
}

unsigned mini_key(const unsigned char *key, void *opts) {
	(void)opts;
	return (unsigned)key[0] | (unsigned)key[1] << 8 | (unsigned)key[2] << 16 | (unsigned)key[3] << 24;
}

int mini_printf(const char *format, ...) { (void)format; return 0; }

long mini_tid(void) { return (long)syscall(SYS_gettid); }

const char *mini_color_name(int c) {
	static const char *names[] = {"red", "grün", "blue"};
	return c >= 0 && c < 3 ? names[c] : NULL;
}

char *mini_repeat(const char *s, int k) {
	if (k < 0) {
		return strdup("\xff");
	}
	size_t n = strlen(s);
	char *out = malloc(n * (size_t)k + 1);
	if (out == NULL) {
		return NULL;
	}
	for (int i = 0; i < k; i++) {
		memcpy(out + n * (size_t)i, s, n);
	}
	out[n * (size_t)k] = 0;
	return out;
}

int mini_check(int code) {
	if (code < 0) {
		errno = -code;
		return -1;
	}
	return code;
}

int mini_ok(int r) {
	errno = EDOM;
	return r == 0;
}

const char *mini_errname(int code) {
	static char long_name[301], split[258];
	switch (code) {
	case 1:
		return "gr\xc3\xbcn fault";
	case 2:
		return NULL;
	case 3:
		return "";
	case 4:
		return "first line\nsecond line";
	case 5:
		memset(long_name, 'x', 300);
		return long_name;
	case 6:
		return "bad \xff byte";
	case 7:
		memset(split, 'x', 255);
		memcpy(split + 255, "\xc3\xbc", 3);
		return split;
	}
	return "unknown";
}

long mini_move(struct mini_point *p, int dx, int dy, double k) {
	p->x += dx;
	p->y += dy;
	p->w *= k;
	return (long)p->x + p->y;
}

unsigned mini_grey(const mini_rgb *c, mini_rgb *out) {
	out->r = (unsigned short)(65535 - c->r);
	out->g = (unsigned short)(65535 - c->g);
	out->b = (unsigned short)(65535 - c->b);
	return ((unsigned)c->r + c->g + c->b) / 3;
}

void mini_name(struct mini_named *n) { (void)n; }

double mini_area(struct mini_box b) { return (double)(b.hi.x - b.lo.x) * (b.hi.y - b.lo.y); }

struct mini_box mini_shift(struct mini_box b, struct mini_point d) {
	b.lo.x += d.x, b.lo.y += d.y, b.hi.x += d.x, b.hi.y += d.y;
	b.lo.w *= d.w, b.hi.w *= d.w;
	return b;
}

int mini_grow(struct mini_box *b, int k) {
	b->lo.x -= k, b->lo.y -= k, b->hi.x += k, b->hi.y += k;
	return b->tag;
}

void mini_unit(struct mini_box *out) {
	struct mini_box u = {{0, 0, 1.0}, {1, 1, 1.0}, 1};
	*out = u;
}

void mini_tagged_f(struct mini_tagged t) { (void)t; }

void mini_arr_f(struct mini_arr a) { (void)a; }

enum mini_color mini_next(enum mini_color c) { return (enum mini_color)((c + 1) % 3); }

mini_size mini_size_of(int n) { return n > 10 ? MINI_BIG : MINI_SMALL; }

struct mini_counter {
	long v;
};

static long mini_live;

mini_counter_t mini_counter_new(long start) {
	if (start < 0) {
		return NULL;
	}
	mini_counter_t c = malloc(sizeof *c);
	if (c != NULL) {
		c->v = start;
		mini_live++;
	}
	return c;
}

mini_counter_t mini_counter_sum(long a, long b) { return mini_counter_new(a + b); }

long mini_counter_add(mini_counter_t c, long n) { return c->v += n; }

long mini_counter_live(mini_counter_t c) {
	(void)c;
	return mini_live;
}

void mini_counter_free(mini_counter_t c) {
	free(c);
	mini_live--;
}

long mini_counter_diff(mini_counter_t a, mini_counter_t b) { return a->v - b->v; }

int mini_counter_close(mini_counter_t c) {
	mini_counter_free(c);
	return 0;
}

void mini_dup(const unsigned char *src, size_t n, unsigned char **out, size_t *outn) {
	*out = NULL;
	*outn = 0;
	if (n == 0 || (*out = malloc(n)) == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		(*out)[i] = (unsigned char)(src[i] ^ 0xff);
	}
	*outn = n;
}

void mini_release(void *p) { free(p); }
