/*
 * sdkcall.c - what the C SDK charges per call, against the kernel floor, in
 * one run.
 *
 * Two ways of doing the same round trip between two processes over an
 * AF_UNIX socketpair, alternated in rounds so that both see the same
 * machine:
 *   floor  16 bytes each way, blocking read/write (bench/csrc/pingpong.c's
 *          loop): what the kernel and the CPU charge;
 *   sdk    a worker on sdk/c/bulkhead.h serving "null": a real CALL frame
 *          ([method, deadline, args], CBOR) checked by the SDK, the start
 *          marker stored, the handler run, a REPLY null sent back; the
 *          caller writes the CALL and reads the REPLY as a dispatcher would.
 * CPU per call covers both processes over exactly the measured calls: the
 * caller's getrusage(RUSAGE_SELF) and the server's /proc/PID/schedstat.
 *
 * Build and run (pinned, so that the ratio is not a scheduling artefact):
 *   gcc -std=gnu11 -O2 -I sdk/c -o sdkcall bench/csrc/sdkcall.c
 *   taskset -c 0 ./sdkcall 200000 5
 * Output: one JSON object per round, then the medians and their ratio.
 */
#define _GNU_SOURCE
#define BULKHEAD_IMPLEMENTATION
#include "bulkhead.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void must(int ok, const char *what) {
	if (!ok) {
		perror(what);
		exit(1);
	}
}

static void full_write(int fd, const void *p, size_t n) {
	const char *b = p;
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		must(w > 0 || errno == EINTR, "write");
		if (w > 0) {
			b += w, n -= (size_t)w;
		}
	}
}

static void full_read(int fd, void *p, size_t n) {
	char *b = p;
	while (n > 0) {
		ssize_t r = read(fd, b, n);
		must(r > 0 || (r < 0 && errno == EINTR), "read");
		if (r > 0) {
			b += r, n -= (size_t)r;
		}
	}
}

static long long self_cpu_ns(void) {
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

static long long proc_cpu_ns(pid_t pid) {
	char path[64];
	long long ns = 0;
	snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
	FILE *f = fopen(path, "r");
	must(f != NULL, "schedstat");
	must(fscanf(f, "%lld", &ns) == 1, "schedstat");
	fclose(f);
	return ns;
}

static int null_method(bh_call *c, void *arg) {
	(void)c, (void)arg;
	return 0;
}

/* server forks the server side; sdk selects the SDK worker over the raw loop. */
static pid_t server(int sdk, int *fd) {
	int sv[2];
	must(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	int marker = memfd_create("marker", 0);
	must(marker >= 0 && ftruncate(marker, 4096) == 0, "memfd");
	uint8_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, marker, 0);
	must(page != MAP_FAILED, "mmap");
	memcpy(page, "BHMK\x01\0\0\0", 8);
	pid_t pid = fork();
	must(pid >= 0, "fork");
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		if (!sdk) {
			char m[16];
			for (;;) {
				full_read(sv[1], m, sizeof m);
				full_write(sv[1], m, sizeof m);
			}
		}
		char fdv[16], mv[16], pp[16];
		snprintf(fdv, sizeof fdv, "%d", sv[1]);
		snprintf(mv, sizeof mv, "%d", marker);
		snprintf(pp, sizeof pp, "%d", (int)getppid());
		setenv("BULKHEAD_FD", fdv, 1);
		setenv("BULKHEAD_MARKER_FD", mv, 1);
		setenv("BULKHEAD_PARENT_PID", pp, 1);
		setenv("BULKHEAD_COOKIE", "00000000000000000000000000000000", 1);
		static const bh_method methods[] = {{"null", null_method, NULL}};
		exit(bh_serve("sdkcall", methods, 1));
	}
	close(sv[1]);
	close(marker);
	munmap(page, 4096);
	*fd = sv[0];
	if (sdk) { /* read HELLO */
		uint8_t h[16];
		full_read(*fd, h, 16);
		uint32_t n = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
		uint8_t *p = malloc(n);
		full_read(*fd, p, n);
		free(p);
	}
	return pid;
}

/* calls makes n round trips and returns the CPU of both sides, in ns. */
static long long calls(int sdk, long n) {
	int fd;
	pid_t pid = server(sdk, &fd);
	/* CALL ["null", 0, []]: 83 64 'n' 'u' 'l' 'l' 00 80 */
	uint8_t call[16 + 8] = {8, 0, 0, 0, 2};
	memcpy(call + 16, "\x83\x64null\x00\x80", 8);
	uint8_t reply[16 + 1];
	long warm = n / 10 + 1;
	long long c0 = 0, s0 = 0;
	for (long i = 0; i < warm + n; i++) {
		if (i == warm) {
			c0 = self_cpu_ns(), s0 = proc_cpu_ns(pid);
		}
		if (sdk) {
			uint64_t id = (uint64_t)i + 1;
			for (int k = 0; k < 8; k++) {
				call[8 + k] = (uint8_t)(id >> (8 * k));
			}
			full_write(fd, call, sizeof call);
			full_read(fd, reply, sizeof reply);
			must(reply[4] == 3 && reply[16] == 0xf6, "REPLY null");
		} else {
			full_write(fd, call, 16);
			full_read(fd, reply, 16);
		}
	}
	long long cpu = self_cpu_ns() - c0 + proc_cpu_ns(pid) - s0;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(fd);
	return cpu;
}

static int cmp(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	if (n <= 0 || rounds <= 0 || rounds > 100) {
		fprintf(stderr, "usage: sdkcall [CALLS [ROUNDS]]\n");
		return 2;
	}
	double floor_ns[100], sdk_ns[100];
	for (int r = 0; r < rounds; r++) {
		floor_ns[r] = (double)calls(0, n) / (double)n;
		sdk_ns[r] = (double)calls(1, n) / (double)n;
		printf("{\"round\":%d,\"floor_cpu_ns_per_call\":%.0f,\"sdk_cpu_ns_per_call\":%.0f}\n", r, floor_ns[r], sdk_ns[r]);
	}
	qsort(floor_ns, (size_t)rounds, sizeof floor_ns[0], cmp);
	qsort(sdk_ns, (size_t)rounds, sizeof sdk_ns[0], cmp);
	double f = floor_ns[rounds / 2], s = sdk_ns[rounds / 2];
	printf("{\"calls\":%ld,\"rounds\":%d,\"floor_cpu_ns_per_call\":%.0f,\"sdk_cpu_ns_per_call\":%.0f,\"sdk_vs_floor\":%.3f}\n",
	       n, rounds, f, s, s / f);
	return 0;
}
