/* mini.h: a small C library for bulkhead gen's tests: each way a parameter
 * can travel, and a function that does nothing, for the null-call benchmark. */
#ifndef MINI_H
#define MINI_H
#include <stddef.h>

typedef unsigned int mini_len;

#define MINI_OK 0

/* Does nothing: the null call. */
void mini_null(void);
/* Sums n bytes of buf into *sum; returns MINI_OK, or -1 when n is 0. */
int mini_sum(const unsigned char *buf, size_t n, long *sum);
/* Writes cap bytes 'a', 'b', ... into dst; *written = cap. */
void mini_fill(char *dst, mini_len cap, mini_len *written);
/* Scales x by k. */
double mini_scale(double x, short k);
/* The length of a NUL-terminated string. */
size_t mini_strlen(const char *s);
/* The first 4 bytes of key as a little-endian number; opts is ignored. */
unsigned mini_key(const unsigned char *key, void *opts);
/* A variadic function, which gen refuses. */
int mini_printf(const char *format, ...);
/* A point, for the struct parameters. */
struct mini_point {
	int x, y;
	double w;
};
typedef struct {
	unsigned short r, g, b;
} mini_rgb;

/* Moves p by dx, dy and scales its weight by k; returns x + y after. */
long mini_move(struct mini_point *p, int dx, int dy, double k);
/* The grey level of c; sets *out to its inverse. */
unsigned mini_grey(const mini_rgb *c, mini_rgb *out);
/* A box of two points: a nested struct, by value and by pointer. */
struct mini_box {
	struct mini_point lo, hi;
	int tag;
};
/* The box's area, from a box passed by value. */
double mini_area(struct mini_box b);
/* The box moved by d, both by value, returned by value. */
struct mini_box mini_shift(struct mini_box b, struct mini_point d);
/* Grows *b by k on each side (a nested inout); returns its tag. */
int mini_grow(struct mini_box *b, int k);
/* Sets *out to the unit box, tag 1 (a nested out). */
void mini_unit(struct mini_box *out);
/* Structs gen refuses: a union field, an array field. */
struct mini_tagged {
	int kind;
	union {
		int i;
		double d;
	} u;
};
void mini_tagged_f(struct mini_tagged t);
struct mini_arr {
	int v[4];
};
void mini_arr_f(struct mini_arr a);
/* A struct gen refuses: a pointer field. */
struct mini_named {
	const char *name;
};
void mini_name(struct mini_named *n);
/* Named and typedef'd enums, as results and parameters. */
enum mini_color { MINI_RED, MINI_GREEN, MINI_BLUE };
typedef enum { MINI_SMALL, MINI_BIG } mini_size;
/* The color after c, round. */
enum mini_color mini_next(enum mini_color c);
/* MINI_BIG when n is over 10. */
mini_size mini_size_of(int n);
/* Copies src into a buffer it allocates, *out, of *outn bytes; frees it
 * with mini_release. *out stays NULL when n is 0. */
void mini_dup(const unsigned char *src, size_t n, unsigned char **out, size_t *outn);
void mini_release(void *p);
/* Returns the id of the thread it runs on (gettid). */
long mini_tid(void);

/* mini_color_name is a string the library owns; NULL for no such color. */
const char *mini_color_name(int c);
/* mini_repeat is a string the caller frees; "\xff" for k < 0, not UTF-8. */
char *mini_repeat(const char *s, int k);

/* mini_check returns 0 for 0, the code for a positive one, and -1 with
 * errno set to -code for a negative one. */
int mini_check(int code);
/* mini_ok reports r == 0, and sets errno to EDOM: a status expression that
 * clobbers errno. */
int mini_ok(int r);
/* mini_errname names mini_check's positive codes: UTF-8 text (1), NULL (2),
 * "" (3), a newline (4), 300 bytes (5), a byte that is not UTF-8 (6), a
 * two-byte character across the 256th byte (7). */
const char *mini_errname(int code);

/* A counter behind an opaque handle, for gen's handles across calls. */
typedef struct mini_counter *mini_counter_t;
/* A new counter at start; NULL when start is negative. */
mini_counter_t mini_counter_new(long start);
/* A counter at the sum of two: a second constructor. */
mini_counter_t mini_counter_sum(long a, long b);
/* Adds n; returns the value after. */
long mini_counter_add(mini_counter_t c, long n);
/* How many counters are alive in this process (c is not read). */
long mini_counter_live(mini_counter_t c);
/* Frees c. */
void mini_counter_free(mini_counter_t c);
/* Takes two handles, which gen refuses. */
long mini_counter_diff(mini_counter_t a, mini_counter_t b);
/* Frees with a result: a free function gen takes (the result is ignored). */
int mini_counter_close(mini_counter_t c);

#endif
