/* sandboxed is a C SDK worker that tries what a sandbox stops, for the
 * fork server's sandbox tests (fork_sandbox_test.go):
 *
 *   add(a, b)      a + b
 *   socket()       socket(AF_INET, SOCK_STREAM): the "compute" profile denies it
 *   read(path)     opens path for reading: 0, or the errno (Landlock: EACCES)
 *   alloc(mib)     allocates and touches mib MiB: past MemoryMax, the OOM killer
 */
#define BULKHEAD_IMPLEMENTATION
#include "bulkhead.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

static int add(bh_call *c, void *arg) {
	int64_t a, b;
	(void)arg;
	if (c->nargs != 2 || bh_arg_int(c, 0, &a) != 0 || bh_arg_int(c, 1, &b) != 0) {
		return bh_fail(c, BH_BAD_ARGUMENTS, "add takes two integers");
	}
	bh_put_int(c->result, a + b);
	return 0;
}

static int do_socket(bh_call *c, void *arg) {
	(void)arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd >= 0) {
		close(fd);
	}
	bh_put_int(c->result, fd < 0 ? -errno : 0);
	return 0;
}

static int do_read(bh_call *c, void *arg) {
	const char *p;
	size_t n;
	char path[4096];
	(void)arg;
	if (c->nargs != 1 || bh_arg_text(c, 0, &p, &n) != 0 || n >= sizeof path) {
		return bh_fail(c, BH_BAD_ARGUMENTS, "read takes a path");
	}
	memcpy(path, p, n);
	path[n] = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
	}
	bh_put_int(c->result, fd < 0 ? errno : 0);
	return 0;
}

static int do_alloc(bh_call *c, void *arg) {
	uint64_t mib;
	(void)arg;
	if (c->nargs != 1 || bh_arg_uint(c, 0, &mib) != 0 || mib > 4096) {
		return bh_fail(c, BH_BAD_ARGUMENTS, "alloc takes MiB, at most 4096");
	}
	for (uint64_t i = 0; i < mib; i++) {
		char *b = malloc(1 << 20);
		if (b == NULL) {
			return bh_fail(c, BH_APPLICATION, "malloc failed at %llu MiB", (unsigned long long)i);
		}
		memset(b, 1, 1 << 20);
	}
	bh_put_uint(c->result, mib);
	return 0;
}

int main(void) {
	static const bh_method methods[] = {
		{"add", add, NULL},
		{"socket", do_socket, NULL},
		{"read", do_read, NULL},
		{"alloc", do_alloc, NULL},
	};
	return bh_serve("sandboxed", methods, sizeof methods / sizeof methods[0]);
}
