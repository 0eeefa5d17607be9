#include "crashy.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int64_t crashy_checksum(const uint8_t *p, size_t n) {
	uint64_t h = 14695981039346656037ULL; /* FNV-1a 64 offset basis */
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ULL; /* FNV-1a 64 prime */
	}
	return (int64_t)h;
}

/* reset_default puts sig back to its default disposition.
 *
 * In a cgo program the Go runtime owns the SIGSEGV and SIGABRT handlers. A
 * fault raised inside C code reaches the Go handler, which prints
 * "fatal error: unexpected signal during runtime execution" (or
 * "SIGABRT: abort") with a Go traceback and exits with status 2: the process
 * no longer dies *by the signal*. bulkhead classifies a worker's death by its
 * wait status, so we restore SIG_DFL right before faulting. The kernel then
 * delivers the signal with its default action and the parent sees a genuine
 * WIFSIGNALED death by SIGSEGV or SIGABRT, exactly as it would for a C
 * library crashing in a non-Go process. The signal is also unblocked, in
 * case the calling thread had it blocked. */
static void reset_default(int sig) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
}

void crashy_segv(void) {
	reset_default(SIGSEGV);
	/* The pointer itself is volatile, so the compiler cannot prove it is
	 * NULL and replace the store with a trap instruction (which would be
	 * SIGILL); the pointee is volatile, so the store cannot be dropped. */
	volatile int *volatile p = NULL;
	*p = 1;
	/* Not reached. Should the store somehow succeed, still die by SIGSEGV
	 * rather than return into the caller. */
	raise(SIGSEGV);
	for (;;) {
	}
}

void crashy_abort(void) {
	reset_default(SIGABRT);
	abort();
}

/* The raw faults leave the signal handlers alone, as a C library that knows
 * nothing of Go would: the Go runtime catches the signal. */

void crashy_raw_segv(void) {
	volatile int *volatile p = NULL;
	*p = 1;
	for (;;) {
	}
}

void crashy_raw_abort(void) {
	abort();
}

void crashy_bad_free(void) {
	/* An interior pointer: glibc's free checks the chunk, prints
	 * "free(): invalid pointer" and calls abort(). volatile keeps the
	 * compiler from seeing, and warning about, the bad free. */
	char *p = malloc(64);
	char *volatile q = p + 16;
	free(q);
	for (;;) {
	}
}

void crashy_exit(int code) {
	exit(code);
}

void crashy_hang(void) {
	volatile unsigned long spins = 0;
	for (;;) {
		spins++;
	}
}

unsigned crashy_sleep(unsigned seconds) {
	return sleep(seconds);
}

void *crashy_leak(size_t n) {
	unsigned char *p = malloc(n ? n : 1);
	if (p == NULL) {
		return NULL;
	}
	/* A non-zero fill: malloc+memset(0) may be folded into calloc, whose
	 * fresh zero pages are never touched and so never become resident. */
	memset(p, 0xA5, n);
	return p;
}

int crashy_write_fd(int fd, const void *p, size_t n) {
	const unsigned char *b = p;
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}
