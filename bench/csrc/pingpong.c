/*
 * pingpong.c - the kernel floor for one request/reply between two processes.
 *
 * A parent and a forked child share an AF_UNIX SOCK_STREAM socketpair and do
 * blocking read(2)/write(2) of 16-byte messages: no event loop, no framing
 * beyond the fixed size, no allocation on the hot path. Whatever this costs is
 * what the kernel and the CPU charge for a cross-process round trip; every
 * other contender in bench/cmd/compare is compared against it.
 *
 * Usage (all results are one JSON object on stdout):
 *   pingpong lat  DURATION_MS WARMUP MAX_ITERS [pin]
 *                                                one caller, per-RTT p50/p99; with
 *                                                "pin" both processes share one CPU
 *   pingpong tput PAIRS DURATION_MS              PAIRS independent pairs at once
 *   pingpong echo SIZE DURATION_MS MAX_ITERS     SIZE-byte request, SIZE-byte reply
 *   pingpong shm  DURATION_MS WARMUP MAX_ITERS SPIN
 *                                                one caller, the shared-memory floor:
 *                                                16 bytes each way through a MAP_SHARED
 *                                                page, a side polling an empty slot SPIN
 *                                                times before it sleeps in futex(2) (the
 *                                                doorbell scheme of internal/shmpipe)
 *   pingpong hello                               write one byte to stdout, exit
 *
 * CPU: the caller asks the server for its own getrusage(RUSAGE_SELF) before
 * and after the measured window (op byte OP_RUSAGE), so cpu_us_per_call
 * covers both processes over exactly the measured calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG 16
#define OP_PING 0
#define OP_RUSAGE 1

static void die(const char *what) {
	fprintf(stderr, "pingpong: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t self_cpu_ns(void) {
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
	       ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

/* readn returns 1 when n bytes were read, 0 on EOF before any byte. */
static int readn(int fd, void *p, size_t n) {
	char *b = p;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);
		if (r < 0) {
			if (errno == EINTR) continue;
			die("read");
		}
		if (r == 0) {
			if (got == 0) return 0;
			errno = EPIPE;
			die("read: short");
		}
		got += (size_t)r;
	}
	return 1;
}

static void writen(int fd, const void *p, size_t n) {
	const char *b = p;
	while (n > 0) {
		ssize_t r = write(fd, b, n);
		if (r < 0) {
			if (errno == EINTR) continue;
			die("write");
		}
		b += r;
		n -= (size_t)r;
	}
}

/* serve answers requests of `size` bytes with the same bytes until EOF. */
static void serve(int fd, size_t size) {
	char *buf = malloc(size < MSG ? MSG : size);
	if (!buf) die("malloc");
	for (;;) {
		if (!readn(fd, buf, MSG)) _exit(0);
		if (buf[0] == OP_RUSAGE) {
			int64_t c = self_cpu_ns();
			memcpy(buf + 8, &c, 8);
			writen(fd, buf, MSG);
			continue;
		}
		if (size > MSG) readn(fd, buf + MSG, size - MSG);
		writen(fd, buf, size);
	}
}

/* spawn forks a server for `size`-byte requests and returns the caller's fd. */
static int spawn(size_t size, pid_t *pid) {
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
	/* The buffers bulkhead asks for (spawn.go, socketBuffer), so that a
	 * large message crosses in as few hand-offs here as there. */
	int buf = 4 << 20;
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
	}
	pid_t p = fork();
	if (p < 0) die("fork");
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		serve(sv[1], size);
		_exit(0);
	}
	close(sv[1]);
	*pid = p;
	return sv[0];
}

static int64_t peer_cpu_ns(int fd) {
	char m[MSG] = {0};
	int64_t c;
	m[0] = OP_RUSAGE;
	writen(fd, m, MSG);
	if (!readn(fd, m, MSG)) die("rusage reply");
	memcpy(&c, m + 8, 8);
	return c;
}

static void finish(int fd, pid_t pid) {
	close(fd);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
	}
}

static int cmp64(const void *a, const void *b) {
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* nearest-rank percentile of a sorted array, the same rule as stats.go */
static int64_t pct(const int64_t *v, long n, double p) {
	long k = (long)((p / 100.0) * (double)n + 0.999999999);
	if (k < 1) k = 1;
	if (k > n) k = n;
	return v[k - 1];
}

/* rtt runs round trips of `size` bytes for dur_ns (or max iterations). */
static void rtt(const char *mode, size_t size, int64_t dur_ns, long warm, long max) {
	pid_t pid;
	int fd = spawn(size, &pid);
	char *buf = calloc(1, size < MSG ? MSG : size);
	int64_t *t = malloc(sizeof(int64_t) * (size_t)max);
	if (!buf || !t) die("malloc");
	for (long i = 0; i < warm; i++) {
		writen(fd, buf, size);
		if (!readn(fd, buf, size)) die("eof");
	}
	int64_t peer0 = peer_cpu_ns(fd), self0 = self_cpu_ns();
	int64_t start = now_ns(), b = start;
	long n = 0;
	while (n < max) {
		int64_t a = now_ns();
		writen(fd, buf, size);
		if (!readn(fd, buf, size)) die("eof");
		b = now_ns();
		t[n++] = b - a;
		if (b - start >= dur_ns) break;
	}
	int64_t cpu = self_cpu_ns() - self0;
	cpu += peer_cpu_ns(fd) - peer0;
	finish(fd, pid);
	qsort(t, (size_t)n, sizeof(int64_t), cmp64);
	double secs = (double)(b - start) / 1e9;
	printf("{\"mode\":\"%s\",\"size\":%zu,\"calls\":%ld,\"secs\":%.6f,\"p50_ns\":%lld,"
	       "\"p99_ns\":%lld,\"min_ns\":%lld,\"calls_per_s\":%.1f,\"cpu_ns_per_call\":%.1f}\n",
	       mode, size, n, secs, (long long)pct(t, n, 50), (long long)pct(t, n, 99),
	       (long long)t[0], (double)n / secs, (double)cpu / (double)n);
}

/*
 * The shared-memory floor. One page, two slots (request and reply), each with
 * a sequence word (the futex word, bumped by the writer after it published the
 * message) and a sleepers count (a reader announces itself before it sleeps, so
 * a writer only makes the wake system call when someone sleeps). This is what
 * bulkhead's shm transport does per frame, minus its ring and framing.
 */
struct slot {
	_Alignas(64) uint32_t seq;
	uint32_t sleepers;
	char msg[MSG];
	int64_t cpu_ns; /* the server's CPU time, answered to OP_RUSAGE */
};
struct shm_page {
	struct slot req, rep;
};

static void shm_post(struct slot *s, const char *m) {
	memcpy(s->msg, m, MSG);
	__atomic_add_fetch(&s->seq, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&s->sleepers, __ATOMIC_SEQ_CST) > 0)
		syscall(SYS_futex, &s->seq, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* shm_wait returns the slot's sequence once it differs from seen. */
static uint32_t shm_wait(struct slot *s, uint32_t seen, long spin) {
	uint32_t v;
	/* A plain spin, as shmpipe's: no pause instruction. */
	for (long i = 0; i < spin; i++) {
		if ((v = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE)) != seen) return v;
	}
	for (;;) {
		__atomic_add_fetch(&s->sleepers, 1, __ATOMIC_SEQ_CST);
		if ((v = __atomic_load_n(&s->seq, __ATOMIC_SEQ_CST)) == seen)
			syscall(SYS_futex, &s->seq, FUTEX_WAIT, seen, NULL, NULL, 0);
		__atomic_sub_fetch(&s->sleepers, 1, __ATOMIC_SEQ_CST);
		if ((v = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE)) != seen) return v;
	}
}

static void shm_rtt(int64_t dur_ns, long warm, long max, long spin) {
	struct shm_page *pg = mmap(NULL, sizeof *pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (pg == MAP_FAILED) die("mmap");
	memset(pg, 0, sizeof *pg);
	pid_t pid = fork();
	if (pid < 0) die("fork");
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		uint32_t seen = 0;
		for (;;) {
			seen = shm_wait(&pg->req, seen, spin);
			char m[MSG];
			memcpy(m, pg->req.msg, MSG);
			if (m[0] == OP_RUSAGE) {
				pg->rep.cpu_ns = self_cpu_ns();
				if (m[1]) _exit(0); /* the last request: done */
			}
			shm_post(&pg->rep, m);
		}
	}
	char m[MSG] = {0};
	uint32_t rseen = 0;
	int64_t *t = malloc(sizeof(int64_t) * (size_t)max);
	if (!t) die("malloc");
	for (long i = 0; i < warm; i++) {
		shm_post(&pg->req, m);
		rseen = shm_wait(&pg->rep, rseen, spin);
	}
	m[0] = OP_RUSAGE;
	shm_post(&pg->req, m);
	rseen = shm_wait(&pg->rep, rseen, spin);
	int64_t peer0 = pg->rep.cpu_ns, self0 = self_cpu_ns();
	m[0] = OP_PING;
	int64_t start = now_ns(), b = start;
	long n = 0;
	while (n < max) {
		int64_t a = now_ns();
		shm_post(&pg->req, m);
		rseen = shm_wait(&pg->rep, rseen, spin);
		b = now_ns();
		t[n++] = b - a;
		if (b - start >= dur_ns) break;
	}
	int64_t cpu = self_cpu_ns() - self0;
	m[0] = OP_RUSAGE;
	shm_post(&pg->req, m);
	rseen = shm_wait(&pg->rep, rseen, spin);
	cpu += pg->rep.cpu_ns - peer0;
	m[1] = 1;
	shm_post(&pg->req, m); /* stop */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
	}
	qsort(t, (size_t)n, sizeof(int64_t), cmp64);
	double secs = (double)(b - start) / 1e9;
	printf("{\"mode\":\"shm\",\"size\":%d,\"calls\":%ld,\"secs\":%.6f,\"p50_ns\":%lld,"
	       "\"p99_ns\":%lld,\"min_ns\":%lld,\"calls_per_s\":%.1f,\"cpu_ns_per_call\":%.1f}\n",
	       MSG, n, secs, (long long)pct(t, n, 50), (long long)pct(t, n, 99),
	       (long long)t[0], (double)n / secs, (double)cpu / (double)n);
}

struct tput_res {
	int64_t calls, ns, cpu_ns;
};

static void tput(int pairs, int64_t dur_ns) {
	int res[2], go[2];
	if (pipe(res) < 0 || pipe(go) < 0) die("pipe");
	pid_t *kids = calloc((size_t)pairs, sizeof(pid_t));
	for (int i = 0; i < pairs; i++) {
		pid_t p = fork();
		if (p < 0) die("fork");
		if (p == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(res[0]);
			close(go[1]);
			pid_t spid;
			int fd = spawn(MSG, &spid);
			char buf[MSG] = {0}, c;
			for (int w = 0; w < 2000; w++) {
				writen(fd, buf, MSG);
				if (!readn(fd, buf, MSG)) die("eof");
			}
			if (read(go[0], &c, 1) < 0) die("go"); /* EOF: everyone starts */
			int64_t peer0 = peer_cpu_ns(fd), self0 = self_cpu_ns();
			int64_t start = now_ns(), end = start, n = 0;
			for (;;) {
				writen(fd, buf, MSG);
				if (!readn(fd, buf, MSG)) die("eof");
				n++;
				if ((n & 15) == 0 && (end = now_ns()) - start >= dur_ns) break;
			}
			struct tput_res r = {n, end - start, 0};
			r.cpu_ns = self_cpu_ns() - self0;
			r.cpu_ns += peer_cpu_ns(fd) - peer0;
			finish(fd, spid);
			writen(res[1], &r, sizeof r);
			_exit(0);
		}
		kids[i] = p;
	}
	close(res[1]);
	close(go[0]);
	close(go[1]); /* release the callers */
	double cps = 0, calls = 0, cpu = 0, secs = 0;
	for (int i = 0; i < pairs; i++) {
		struct tput_res r;
		if (!readn(res[0], &r, sizeof r)) die("result");
		cps += (double)r.calls / ((double)r.ns / 1e9);
		calls += (double)r.calls;
		cpu += (double)r.cpu_ns;
		if ((double)r.ns / 1e9 > secs) secs = (double)r.ns / 1e9;
	}
	for (int i = 0; i < pairs; i++) waitpid(kids[i], NULL, 0);
	printf("{\"mode\":\"tput\",\"pairs\":%d,\"calls\":%.0f,\"secs\":%.6f,\"calls_per_s\":%.1f,"
	       "\"cpu_ns_per_call\":%.1f}\n",
	       pairs, calls, secs, cps, cpu / calls);
}

static long arg(char **argv, int i) {
	char *end;
	long v = strtol(argv[i], &end, 10);
	if (*end || v <= 0) {
		fprintf(stderr, "pingpong: bad argument %s\n", argv[i]);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv) {
	signal(SIGPIPE, SIG_IGN);
	if (argc == 2 && !strcmp(argv[1], "hello")) {
		writen(1, "!", 1);
		return 0;
	}
	if ((argc == 5 || (argc == 6 && !strcmp(argv[5], "pin"))) && !strcmp(argv[1], "lat")) {
		if (argc == 6) {
			/* Same-CPU floor: no cross-CPU wake-up (an IPI, and on a VM
			 * the host waking a halted vCPU) in the round trip. */
			cpu_set_t set;
			int cpu = sched_getcpu();
			CPU_ZERO(&set);
			CPU_SET(cpu < 0 ? 0 : cpu, &set);
			if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
		}
		rtt("lat", MSG, arg(argv, 2) * 1000000LL, arg(argv, 3), arg(argv, 4));
		return 0;
	}
	if (argc == 6 && !strcmp(argv[1], "shm")) {
		shm_rtt(arg(argv, 2) * 1000000LL, arg(argv, 3), arg(argv, 4), arg(argv, 5));
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "tput")) {
		tput((int)arg(argv, 2), arg(argv, 3) * 1000000LL);
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "echo")) {
		long size = arg(argv, 2);
		if (size < MSG) size = MSG;
		rtt("echo", (size_t)size, arg(argv, 3) * 1000000LL, 20, arg(argv, 4));
		return 0;
	}
	fprintf(stderr, "usage: pingpong lat MS WARMUP MAX [pin] | shm MS WARMUP MAX SPIN | tput PAIRS MS | echo SIZE MS MAX | hello\n");
	return 2;
}
