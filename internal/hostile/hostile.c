//go:build ignore

// The constraint above keeps the go command from treating this directory as
// a cgo package: hostile.c is a standalone program, built by the test with gcc.

/* hostile: a bulkhead worker that lies, written from docs/PROTOCOL.md.
 *
 * It speaks the protocol well enough to be started (HELLO, the start marker,
 * the shared-memory transport of section 9 when offered), then misbehaves
 * as HOSTILE_MODE says: lying frame lengths, wrong ids, unexpected frames,
 * malformed CBOR, floods, stopping, forking, lying start markers and ring
 * indices, lying HELLOs. hostile_test.go runs each mode against a real pool
 * and checks that the dispatcher survives it with the right error.
 *
 * Environment, besides the BULKHEAD_* variables:
 *   HOSTILE_MODE  the misbehaviour (see on_call and send_hello); "honest"
 *                 answers every CALL with REPLY null
 *   HOSTILE_DIR   a directory where the fork modes write the pid of the
 *                 process they leave behind (file "grandchild")
 *
 * Build: gcc -std=gnu11 -O2 -Wall -Wextra -Werror -o hostile hostile.c
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum {
	T_HELLO = 1,
	T_CALL = 2,
	T_REPLY = 3,
	T_ERROR = 4,
	T_CANCEL = 5,
	T_QUIT = 6,
	T_PING = 7,
	T_PONG = 8,
	T_EVENT = 23
};

#define HEADER 16
#define MARKER_MAGIC 0x4b4d4842u

static const char *mode = "honest";
static int sock = -1;
static uint64_t max_frame = 16u << 20;
static volatile uint64_t *started; /* the start marker's word, or NULL */
static const char *cookie = "";

static void die(const char *what) {
	fprintf(stderr, "hostile(%s): %s: %s\n", mode, what, strerror(errno));
	exit(1);
}

static int is(const char *m) { return strcmp(mode, m) == 0; }

static void hang(void) {
	fprintf(stderr, "hostile(%s): hanging\n", mode);
	for (;;) {
		pause();
	}
}

static void put_le(uint8_t *p, uint64_t v, int n) {
	for (int i = 0; i < n; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static uint64_t le(const uint8_t *p, int n) {
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--) {
		v = v << 8 | p[i];
	}
	return v;
}

/* ---- the shared-memory transport (PROTOCOL.md section 9) ---------------- */

typedef struct {
	uint8_t *base;
	uint64_t size;
	uint64_t pos; /* our own index: head for the writer, tail for the reader */
} pipe_t;

static pipe_t in, out; /* pipe 0 (to us) and pipe 1 (from us) */
static int shm;         /* frames travel through the pipes */
static long spin = 1000;

#define HEAD(p) ((uint64_t *)(void *)((p)->base + 0))
#define TAIL(p) ((uint64_t *)(void *)((p)->base + 64))
#define DATA_SEQ(p) ((uint32_t *)(void *)((p)->base + 128))
#define READER_WAITS(p) ((uint32_t *)(void *)((p)->base + 132))
#define SPACE_SEQ(p) ((uint32_t *)(void *)((p)->base + 192))
#define WRITER_WAITS(p) ((uint32_t *)(void *)((p)->base + 196))
#define CLOSED(p) ((uint32_t *)(void *)((p)->base + 256))
#define RING(p) ((p)->base + 4096)

static long futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts) {
	return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static void wake(uint32_t *seq) {
	__atomic_add_fetch(seq, 1, __ATOMIC_SEQ_CST);
	futex(seq, FUTEX_WAKE, INT_MAX, NULL);
}

/* ring_wait sleeps on seq while cond says so, for at most ms milliseconds. */
static void ring_wait(uint32_t *seq, uint32_t *waits, int (*blocked)(void), long ms) {
	for (long i = 0; i < spin; i++) {
		if (!blocked()) {
			return;
		}
	}
	uint32_t v = __atomic_load_n(seq, __ATOMIC_SEQ_CST);
	__atomic_store_n(waits, 1, __ATOMIC_SEQ_CST);
	if (blocked()) {
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
		futex(seq, FUTEX_WAIT, v, ms >= 0 ? &ts : NULL);
	}
	__atomic_store_n(waits, 0, __ATOMIC_SEQ_CST);
}

static int in_empty(void) {
	return __atomic_load_n(HEAD(&in), __ATOMIC_ACQUIRE) == in.pos &&
	       __atomic_load_n(CLOSED(&in), __ATOMIC_ACQUIRE) == 0;
}

static int out_full(void) {
	return out.pos - __atomic_load_n(TAIL(&out), __ATOMIC_ACQUIRE) >= out.size &&
	       __atomic_load_n(CLOSED(&out), __ATOMIC_ACQUIRE) == 0;
}

/* ring_try_read copies what is there, at most n bytes: 0 if nothing, -1 at
 * the end of the stream. */
static long ring_try_read(uint8_t *dst, size_t n) {
	uint64_t head = __atomic_load_n(HEAD(&in), __ATOMIC_ACQUIRE);
	uint64_t avail = head - in.pos;
	if (avail == 0) {
		return __atomic_load_n(CLOSED(&in), __ATOMIC_ACQUIRE) ? -1 : 0;
	}
	if (avail > in.size) {
		fprintf(stderr, "hostile: the dispatcher broke pipe 0\n");
		exit(1);
	}
	size_t k = avail < n ? (size_t)avail : n;
	for (size_t i = 0; i < k; i++) {
		dst[i] = RING(&in)[(in.pos + i) & (in.size - 1)];
	}
	in.pos += k;
	__atomic_store_n(TAIL(&in), in.pos, __ATOMIC_RELEASE);
	__atomic_add_fetch(SPACE_SEQ(&in), 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(WRITER_WAITS(&in), __ATOMIC_SEQ_CST)) {
		futex(SPACE_SEQ(&in), FUTEX_WAKE, INT_MAX, NULL);
	}
	return (long)k;
}

/* ring_try_write copies what fits, at most n bytes; -1 once shut. */
static long ring_try_write(const uint8_t *src, size_t n) {
	if (__atomic_load_n(CLOSED(&out), __ATOMIC_ACQUIRE)) {
		return -1;
	}
	uint64_t used = out.pos - __atomic_load_n(TAIL(&out), __ATOMIC_ACQUIRE);
	if (used > out.size && is("ring_tail_own")) {
		used = 0; /* our own lie, until the dispatcher stores its tail */
	} else if (used > out.size) {
		fprintf(stderr, "hostile: the dispatcher broke pipe 1\n");
		exit(1);
	}
	size_t k = out.size - used < n ? (size_t)(out.size - used) : n;
	for (size_t i = 0; i < k; i++) {
		RING(&out)[(out.pos + i) & (out.size - 1)] = src[i];
	}
	out.pos += k;
	__atomic_store_n(HEAD(&out), out.pos, __ATOMIC_RELEASE);
	__atomic_add_fetch(DATA_SEQ(&out), 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(READER_WAITS(&out), __ATOMIC_SEQ_CST)) {
		futex(DATA_SEQ(&out), FUTEX_WAKE, INT_MAX, NULL);
	}
	return (long)k;
}

/* ---- the transport: socket or pipes ------------------------------------- */

static void wait_fd(short events) {
	struct pollfd p = {sock, events, 0};
	while (poll(&p, 1, -1) < 0 && errno == EINTR) {
	}
}

/* tx_write writes all of p; it exits 0 if the dispatcher is gone. */
static void tx_write(const void *p, size_t n) {
	const uint8_t *b = p;
	while (n > 0) {
		long w;
		if (shm) {
			w = ring_try_write(b, n);
			if (w < 0) {
				exit(0);
			}
			if (w == 0) {
				ring_wait(SPACE_SEQ(&out), WRITER_WAITS(&out), out_full, 100);
			}
		} else {
			w = send(sock, b, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR) {
					continue;
				}
				if (errno == EAGAIN) {
					wait_fd(POLLOUT);
					continue;
				}
				exit(0); /* EPIPE, ECONNRESET: the dispatcher dropped us */
			}
		}
		b += w;
		n -= (size_t)w;
	}
}

/* tx_read fills p with n bytes; -1 at the end of the stream. */
static int tx_read(void *p, size_t n) {
	uint8_t *b = p;
	while (n > 0) {
		long r;
		if (shm) {
			r = ring_try_read(b, n);
			if (r < 0) {
				return -1;
			}
			if (r == 0) {
				ring_wait(DATA_SEQ(&in), READER_WAITS(&in), in_empty, -1);
			}
		} else {
			r = read(sock, b, n);
			if (r < 0 && errno == EINTR) {
				continue;
			}
			if (r < 0 && errno == EAGAIN) {
				wait_fd(POLLIN);
				continue;
			}
			if (r <= 0) {
				return -1;
			}
		}
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* ---- frames ------------------------------------------------------------- */

static void header(uint8_t *h, uint64_t len, unsigned type, unsigned flags, unsigned reserved, uint64_t id) {
	put_le(h, len, 4);
	h[4] = (uint8_t)type;
	h[5] = (uint8_t)flags;
	put_le(h + 6, reserved, 2);
	put_le(h + 8, id, 8);
}

/* raw writes a header that may lie, and then the bytes given. */
static void raw(uint64_t len, unsigned type, unsigned flags, unsigned reserved, uint64_t id,
                const void *p, size_t n) {
	uint8_t h[HEADER];
	header(h, len, type, flags, reserved, id);
	tx_write(h, HEADER);
	tx_write(p, n);
}

static void frame(unsigned type, uint64_t id, const void *p, size_t n) { raw(n, type, 0, 0, id, p, n); }

static const uint8_t null_value[] = {0xf6};

static void reply_null(uint64_t id) { frame(T_REPLY, id, null_value, 1); }

/* A tiny CBOR encoder, for HELLO and ERROR bodies. */
typedef struct {
	uint8_t *p;
	size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *p, size_t n) {
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL) {
			die("realloc");
		}
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void cb_head(buf_t *b, unsigned major, uint64_t v) {
	uint8_t h[9];
	int n = v < 24 ? 0 : v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
	h[0] = (uint8_t)(major << 5 | (n == 0 ? v : n == 1 ? 24 : n == 2 ? 25 : n == 4 ? 26 : 27));
	for (int i = 0; i < n; i++) {
		h[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	}
	put(b, h, (size_t)n + 1);
}

static void cb_text(buf_t *b, const char *s, size_t n) {
	cb_head(b, 3, n);
	put(b, s, n);
}

static void cb_str(buf_t *b, const char *s) { cb_text(b, s, strlen(s)); }

/* ---- HELLO -------------------------------------------------------------- */

static void send_hello(void) {
	if (is("hello_silent")) {
		hang();
	}
	if (is("hello_first_reply")) {
		reply_null(1);
		hang();
	}
	buf_t b = {0};
	int extra = shm ? 1 : 0;
	if (is("hello_not_map")) {
		cb_head(&b, 4, 1);
		cb_str(&b, "protocol");
		frame(T_HELLO, 0, b.p, b.len);
		hang();
	}
	if (is("hello_shm_unoffered")) {
		extra = 1;
	}
	cb_head(&b, 5, 7 + (uint64_t)extra);
	cb_str(&b, "protocol");
	cb_head(&b, 0, is("hello_proto2") ? 2 : 1);
	cb_str(&b, "pid");
	cb_head(&b, 0, (uint64_t)getpid());
	cb_str(&b, "cookie");
	cb_str(&b, is("hello_bad_cookie") ? "00000000000000000000000000000000" : cookie);
	cb_str(&b, "methods");
	cb_head(&b, 4, 0);
	cb_str(&b, "concurrency");
	cb_head(&b, 0, is("hello_conc0") ? 0 : is("hello_conc_huge") ? 70000 : 1);
	cb_str(&b, "marker");
	uint8_t t = started != NULL ? 0xf5 : 0xf4;
	put(&b, &t, 1);
	cb_str(&b, "name");
	if (is("hello_huge_name")) {
		size_t n = 60000;
		char *s = malloc(n);
		memset(s, 'n', n);
		cb_text(&b, s, n);
		free(s);
	} else if (is("hello_bad_utf8")) {
		cb_text(&b, "\xff\xfe", 2);
	} else {
		cb_str(&b, "hostile");
	}
	if (extra) {
		cb_str(&b, "transport");
		cb_str(&b, "shm");
	}
	if (is("hello_trailing")) {
		put(&b, null_value, 1);
	}
	if (is("hello_oversize")) {
		/* A HELLO that claims 1 MiB: the dispatcher bounds it to 64 KiB. */
		raw(1 << 20, T_HELLO, 0, 0, 0, b.p, b.len);
		hang();
	}
	/* HELLO always travels on the socket. */
	int was = shm;
	shm = 0;
	frame(T_HELLO, 0, b.p, b.len);
	shm = was && !is("hello_shm_unoffered");
	free(b.p);
}

/* ---- misbehaviours ------------------------------------------------------ */

static uint64_t ncalls, last_id;

static void mark(uint64_t id) {
	if (started != NULL) {
		__atomic_store_n(started, id, __ATOMIC_RELEASE);
	}
}

/* error_body sends ERROR id with the CBOR map given as raw bytes. */
static void error_raw(uint64_t id, const buf_t *b) { frame(T_ERROR, id, b->p, b->len); }

static void deep(buf_t *b, int n) {
	uint8_t x = 0x81;
	for (int i = 0; i < n; i++) {
		put(b, &x, 1);
	}
	put(b, null_value, 1);
}

static void ping_flood(uint64_t id, uint64_t n) {
	/* Send n PINGs while reading the PONGs, then REPLY the number of
	 * PONGs received, once all have come. */
	uint64_t sent = 0, pongs = 0;
	uint8_t ping[HEADER], pong[HEADER];
	size_t ping_off = 0, pong_off = 0;
	if (!shm) {
		fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
	}
	while (pongs < n) {
		int progress = 0;
		if (sent < n) {
			if (ping_off == 0) {
				header(ping, 0, T_PING, 0, 0, sent + 1);
			}
			long w = shm ? ring_try_write(ping + ping_off, HEADER - ping_off)
			             : send(sock, ping + ping_off, HEADER - ping_off, MSG_NOSIGNAL);
			if (w > 0) {
				progress = 1;
				ping_off += (size_t)w;
				if (ping_off == HEADER) {
					ping_off = 0;
					sent++;
				}
			} else if (shm ? w < 0 : (errno != EAGAIN && errno != EINTR)) {
				exit(0);
			}
		}
		long r = shm ? ring_try_read(pong + pong_off, HEADER - pong_off)
		             : read(sock, pong + pong_off, HEADER - pong_off);
		if (r > 0) {
			progress = 1;
			pong_off += (size_t)r;
			if (pong_off == HEADER) {
				pong_off = 0;
				if (pong[4] != T_PONG || le(pong, 4) != 0) {
					fprintf(stderr, "hostile: frame type %u during the flood\n", pong[4]);
					exit(1);
				}
				pongs++;
			}
		} else if (shm ? r < 0 : (r == 0 || (errno != EAGAIN && errno != EINTR))) {
			exit(0);
		}
		if (!progress) {
			if (shm) {
				ring_wait(DATA_SEQ(&in), READER_WAITS(&in), in_empty, 1);
			} else {
				struct pollfd p = {sock, POLLIN | (sent < n ? POLLOUT : 0), 0};
				poll(&p, 1, 100);
			}
		}
	}
	if (!shm) {
		fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) & ~O_NONBLOCK);
	}
	buf_t b = {0};
	cb_head(&b, 0, pongs);
	frame(T_REPLY, id, b.p, b.len);
	free(b.p);
}

/* fork_answer leaves a child behind that answers id once we are gone. */
static void fork_answer(uint64_t id, int new_session) {
	pid_t parent = getpid();
	int ready[2];
	if (pipe(ready) != 0) {
		die("pipe");
	}
	pid_t kid = fork();
	if (kid < 0) {
		die("fork");
	}
	if (kid > 0) {
		/* Once the child has said where it is, the worker dies mid-call. */
		char c;
		close(ready[1]);
		while (read(ready[0], &c, 1) < 0 && errno == EINTR) {
		}
		_exit(3);
	}
	close(ready[0]);
	alarm(20); /* whatever happens, do not outlive the test for long */
	if (new_session) {
		setsid(); /* out of the worker's process group */
	}
	const char *dir = getenv("HOSTILE_DIR");
	if (dir != NULL) {
		char path[4096], tmp[4096], pid[32];
		snprintf(path, sizeof path, "%s/grandchild", dir);
		snprintf(tmp, sizeof tmp, "%s/grandchild.tmp", dir);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int n = snprintf(pid, sizeof pid, "%d", (int)getpid());
		if (fd >= 0 && write(fd, pid, (size_t)n) == n) {
			close(fd);
			rename(tmp, path);
		}
	}
	close(ready[1]);
	while (getppid() == parent) {
		usleep(1000);
	}
	reply_null(id);
	/* Keep the connection open until the dispatcher drops it. */
	char c;
	while (read(sock, &c, 1) > 0) {
	}
	_exit(0);
}

static void on_call(uint64_t id, const uint8_t *payload, size_t len) {
	(void)payload;
	(void)len;
	ncalls++;
	uint64_t prev = last_id;
	last_id = id;
	if (is("marker_huge") || is("marker_huge_hang")) {
		mark((uint64_t)1 << 62);
		if (is("marker_huge")) {
			exit(3);
		}
		hang();
	}
	if (is("marker_backwards") && ncalls >= 2) {
		mark(id);
		mark(prev - 1);
		exit(3);
	}
	mark(id);

	buf_t b = {0};
	if (is("honest") || is("hello_huge_name")) {
		reply_null(id);
	} else if (is("hang")) {
		hang();
	} else if (is("len_over_max")) {
		raw(0xfffffff0u, T_REPLY, 0, 0, id, "0123456789abcdef", 16);
		hang();
	} else if (is("len_max_dribble")) {
		raw(max_frame, T_REPLY, 0, 0, id, "0123456789abcdef", 16);
		hang();
	} else if (is("len_truncated_hang") || is("len_truncated_close")) {
		uint8_t p[10] = {0x59, 0x03, 0xe5};
		raw(1000, T_REPLY, 0, 0, id, p, sizeof p);
		if (is("len_truncated_hang")) {
			hang();
		}
		if (shm) { /* the connection is the pipes: shut them */
			__atomic_store_n(CLOSED(&out), 1, __ATOMIC_SEQ_CST);
			__atomic_store_n(CLOSED(&in), 1, __ATOMIC_SEQ_CST);
			wake(DATA_SEQ(&out));
			wake(SPACE_SEQ(&in));
		}
		shutdown(sock, SHUT_RDWR);
		close(sock);
		hang();
	} else if (is("flags")) {
		raw(1, T_REPLY, 1, 0, id, null_value, 1);
		hang();
	} else if (is("reserved")) {
		raw(1, T_REPLY, 0, 0x0100, id, null_value, 1);
		hang();
	} else if (is("unknown_type")) {
		frame(99, id, NULL, 0);
		hang();
	} else if (is("type_zero")) {
		frame(0, id, NULL, 0);
		hang();
	} else if (is("hello_again")) {
		cb_head(&b, 5, 0);
		frame(T_HELLO, 0, b.p, b.len);
		hang();
	} else if (is("call_from_worker")) {
		static const uint8_t call[] = {0x83, 0x61, 'm', 0x00, 0x80};
		frame(T_CALL, id, call, sizeof call);
		hang();
	} else if (is("cancel_from_worker")) {
		frame(T_CANCEL, id, NULL, 0);
		hang();
	} else if (is("quit_from_worker")) {
		frame(T_QUIT, 0, NULL, 0);
		hang();
	} else if (is("object_frame")) {
		static const uint8_t ev[] = {0x82, 0x61, 'e', 0x80};
		frame(T_EVENT, 1, ev, sizeof ev);
		hang();
	} else if (is("reply_id_zero")) {
		reply_null(0);
		hang();
	} else if (is("reply_id_unsent")) {
		reply_null(id + 1000);
		hang();
	} else if (is("reply_dup")) {
		reply_null(id);
		reply_null(id);
	} else if (is("reply_then_error")) {
		reply_null(id);
		cb_head(&b, 5, 2);
		cb_str(&b, "code");
		cb_head(&b, 0, 1);
		cb_str(&b, "message");
		cb_str(&b, "second answer");
		error_raw(id, &b);
	} else if (is("reply_stale")) {
		if (ncalls == 1) {
			reply_null(id);
		} else {
			reply_null(prev);
			hang();
		}
	} else if (is("ping_payload")) {
		frame(T_PING, 1, "ping", 4);
		hang();
	} else if (is("pong_payload")) {
		frame(T_PONG, 1, "pong", 4);
		hang();
	} else if (is("cbor_deep")) {
		deep(&b, 10000);
		frame(T_REPLY, id, b.p, b.len);
	} else if (is("cbor_huge_map")) {
		static const uint8_t m[] = {0xba, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01};
		frame(T_REPLY, id, m, sizeof m);
	} else if (is("cbor_huge_array")) {
		static const uint8_t a[] = {0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
		frame(T_REPLY, id, a, sizeof a);
	} else if (is("cbor_huge_bytes")) {
		static const uint8_t s[] = {0x5b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 'x'};
		frame(T_REPLY, id, s, sizeof s);
	} else if (is("cbor_indef_string")) {
		uint8_t start = 0x7f, chunk[] = {0x61, 'a'};
		put(&b, &start, 1);
		for (int i = 0; i < 1000; i++) {
			put(&b, chunk, sizeof chunk);
		}
		frame(T_REPLY, id, b.p, b.len); /* no break: it never ends */
	} else if (is("cbor_trailing")) {
		static const uint8_t v[] = {0xf6, 0xf6};
		frame(T_REPLY, id, v, sizeof v);
	} else if (is("cbor_bad_utf8")) {
		static const uint8_t v[] = {0x62, 0xff, 0xfe};
		frame(T_REPLY, id, v, sizeof v);
	} else if (is("cbor_tag")) {
		static const uint8_t v[] = {0xd9, 0xd9, 0xf7, 0xf6};
		frame(T_REPLY, id, v, sizeof v);
	} else if (is("cbor_simple")) {
		static const uint8_t v[] = {0xf8, 0x20}; /* simple value 32 */
		frame(T_REPLY, id, v, sizeof v);
	} else if (is("cbor_empty")) {
		frame(T_REPLY, id, NULL, 0);
	} else if (is("error_not_map")) {
		frame(T_ERROR, id, "\x01", 1);
	} else if (is("error_bad_utf8")) {
		cb_head(&b, 5, 2);
		cb_str(&b, "code");
		cb_head(&b, 0, 1);
		cb_str(&b, "message");
		cb_text(&b, "\xff\xfe", 2);
		error_raw(id, &b);
	} else if (is("error_deep_details")) {
		cb_head(&b, 5, 3);
		cb_str(&b, "code");
		cb_head(&b, 0, 1);
		cb_str(&b, "message");
		cb_str(&b, "x");
		cb_str(&b, "details");
		deep(&b, 10000);
		error_raw(id, &b);
	} else if (is("error_code_huge")) {
		cb_head(&b, 5, 2);
		cb_str(&b, "code");
		cb_head(&b, 0, UINT64_MAX);
		cb_str(&b, "message");
		cb_str(&b, "a code from the future");
		error_raw(id, &b);
	} else if (is("error_trailing")) {
		cb_head(&b, 5, 2);
		cb_str(&b, "code");
		cb_head(&b, 0, 1);
		cb_str(&b, "message");
		cb_str(&b, "x");
		put(&b, null_value, 1);
		error_raw(id, &b);
	} else if (is("error_dup_key")) {
		cb_head(&b, 5, 2);
		cb_str(&b, "code");
		cb_head(&b, 0, 1);
		cb_str(&b, "code");
		cb_head(&b, 0, 2);
		error_raw(id, &b);
	} else if (is("ping_flood")) {
		ping_flood(id, 100000);
	} else if (is("ping_flood_noread")) {
		uint8_t ping[HEADER * 64];
		for (;;) { /* blocks once the dispatcher stops reading */
			for (int i = 0; i < 64; i++) {
				header(ping + i * HEADER, 0, T_PING, 0, 0, ++prev);
			}
			tx_write(ping, sizeof ping);
		}
	} else if (is("sigstop")) {
		raise(SIGSTOP);
		hang();
	} else if (is("close_live")) {
		close(sock);
		hang();
	} else if (is("fork_child")) {
		fork_answer(id, 0);
	} else if (is("fork_setsid")) {
		fork_answer(id, 1);
	} else if (is("marker_backwards")) {
		reply_null(id);
	} else if (shm && (is("ring_head_minus1") || is("ring_head_beyond"))) {
		uint64_t tail = __atomic_load_n(TAIL(&out), __ATOMIC_ACQUIRE);
		uint64_t head = is("ring_head_minus1") ? tail - 1 : tail + out.size + 4096;
		__atomic_store_n(HEAD(&out), head, __ATOMIC_RELEASE);
		wake(DATA_SEQ(&out));
		hang();
	} else if (shm && is("ring_tail_beyond")) {
		/* Claim to have read more of pipe 0 than was written, then
		 * answer: the dispatcher's next write must refuse it. */
		__atomic_store_n(TAIL(&in), in.pos + 1000, __ATOMIC_RELEASE);
		wake(SPACE_SEQ(&in));
		reply_null(id);
	} else if (shm && is("ring_tail_own")) {
		/* Store into the dispatcher's own index of pipe 1, then answer:
		 * the dispatcher must not take it. */
		__atomic_store_n(TAIL(&out), out.pos + 12345, __ATOMIC_RELEASE);
		reply_null(id);
	} else if (shm && is("ring_closed_flap")) {
		__atomic_store_n(CLOSED(&out), 1, __ATOMIC_SEQ_CST);
		wake(DATA_SEQ(&out));
		/* Until the dispatcher has seen it and dropped us (or 2 s). */
		struct pollfd p = {sock, POLLIN, 0};
		poll(&p, 1, 2000);
		__atomic_store_n(CLOSED(&out), 0, __ATOMIC_SEQ_CST);
		reply_null(id);
		hang();
	} else if (shm && is("ring_seq_scribble")) {
		for (uint32_t i = 0;; i++) {
			__atomic_store_n(DATA_SEQ(&out), i * 2654435761u, __ATOMIC_SEQ_CST);
			__atomic_store_n(READER_WAITS(&out), i, __ATOMIC_SEQ_CST);
			__atomic_store_n(SPACE_SEQ(&in), ~i, __ATOMIC_SEQ_CST);
			__atomic_store_n(WRITER_WAITS(&in), 0, __ATOMIC_SEQ_CST);
			usleep(1000);
		}
	} else {
		fprintf(stderr, "hostile: unknown mode %s\n", mode);
		exit(2);
	}
	free(b.p);
}

/* ---- start-up and the frame loop ---------------------------------------- */

static int env_int(const char *name, long long *v) {
	const char *s = getenv(name);
	if (s == NULL || *s == '\0') {
		return 0;
	}
	char *end;
	*v = strtoll(s, &end, 10);
	return *end == '\0';
}

int main(int argc, char **argv) {
	if (argc > 1) {
		mode = argv[1];
	} else if (getenv("HOSTILE_MODE") != NULL) {
		mode = getenv("HOSTILE_MODE");
	}
	long long v;
	if (!env_int("BULKHEAD_FD", &v)) {
		fprintf(stderr, "hostile: BULKHEAD_FD is not set\n");
		return 78;
	}
	sock = (int)v;
	fcntl(sock, F_SETFD, FD_CLOEXEC);
	if (env_int("BULKHEAD_MAX_FRAME", &v)) {
		max_frame = (uint64_t)v;
	}
	if (getenv("BULKHEAD_COOKIE") != NULL) {
		cookie = getenv("BULKHEAD_COOKIE");
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (env_int("BULKHEAD_PARENT_PID", &v) && getppid() != (pid_t)v) {
		return 1;
	}
	if (env_int("BULKHEAD_MARKER_FD", &v)) {
		int fd = (int)v;
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		uint8_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (page != MAP_FAILED && le(page, 4) == MARKER_MAGIC && le(page + 4, 4) == 1) {
			started = (volatile uint64_t *)(void *)(page + 8);
		}
	}
	long long size;
	if (env_int("BULKHEAD_SHM_FD", &v) && env_int("BULKHEAD_SHM_SIZE", &size) && size >= 4096 &&
	    (size & (size - 1)) == 0) {
		int fd = (int)v;
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		size_t region = 4096 + (size_t)size;
		uint8_t *mem = mmap(NULL, 2 * region, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (mem == MAP_FAILED) {
			die("mmap shm");
		}
		in = (pipe_t){mem, (uint64_t)size, 0};
		out = (pipe_t){mem + region, (uint64_t)size, 0};
		shm = 1;
		if (env_int("BULKHEAD_SHM_SPIN", &v)) {
			spin = (long)v;
		}
	}

	send_hello();
	if (is("noread")) {
		hang(); /* a worker that never reads its connection again */
	}

	uint8_t *payload = NULL;
	for (;;) {
		uint8_t h[HEADER];
		if (tx_read(h, HEADER) != 0) {
			return 0;
		}
		uint64_t len = le(h, 4), id = le(h + 8, 8);
		if (len > max_frame) {
			fprintf(stderr, "hostile: frame of %llu bytes from the dispatcher\n", (unsigned long long)len);
			return 1;
		}
		payload = realloc(payload, len ? len : 1);
		if (payload == NULL) {
			die("realloc");
		}
		if (tx_read(payload, len) != 0) {
			return 0;
		}
		switch (h[4]) {
		case T_CALL:
			on_call(id, payload, len);
			break;
		case T_PING:
			frame(T_PONG, id, NULL, 0);
			break;
		case T_QUIT:
			return 0;
		case T_ERROR:
			fprintf(stderr, "hostile(%s): refused by the dispatcher\n", mode);
			return 78;
		default: /* PONG, CANCEL */
			break;
		}
	}
}
