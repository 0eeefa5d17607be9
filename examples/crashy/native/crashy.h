/* crashy: a tiny native library that does real work and fails for real.
 *
 * It exists so that bulkhead's examples and tests can exercise genuine
 * native faults (segmentation faults, aborts, exit() from C, endless loops,
 * runaway memory) rather than simulations of them.
 */
#ifndef CRASHY_H
#define CRASHY_H

#include <stddef.h>
#include <stdint.h>

/* crashy_checksum returns the 64-bit FNV-1a hash of p[0:n]. */
int64_t crashy_checksum(const uint8_t *p, size_t n);

/* crashy_segv dereferences a NULL pointer. The process dies by SIGSEGV. */
void crashy_segv(void);

/* crashy_abort calls abort(). The process dies by SIGABRT. */
void crashy_abort(void);

/* crashy_raw_segv dereferences a NULL pointer, and crashy_raw_abort calls
 * abort(), without touching the signal handlers first: in a Go program the
 * runtime catches the signal. */
void crashy_raw_segv(void);
void crashy_raw_abort(void);

/* crashy_bad_free corrupts the heap: it frees a pointer into the middle of
 * an allocation, which glibc reports ("free(): invalid pointer") before it
 * calls abort(). */
void crashy_bad_free(void);

/* crashy_exit calls exit(code) from C. */
void crashy_exit(int code);

/* crashy_hang spins forever and never returns. */
void crashy_hang(void);

/* crashy_sleep sleeps in sleep(3) and returns what sleep returns: the
 * seconds left if a signal handler interrupted it, as it ends any blocking
 * wait early. */
unsigned crashy_sleep(unsigned seconds);

/* crashy_leak allocates n bytes, writes to every page so that they count
 * towards the resident set, and never frees them. It returns NULL if the
 * allocation fails. */
void *crashy_leak(size_t n);

/* crashy_write_fd writes all n bytes of p to fd with write(2), retrying
 * partial writes and EINTR. It returns 0, or -1 with errno set. */
int crashy_write_fd(int fd, const void *p, size_t n);

#endif
