/* crashlib is a C SDK worker that crashes inside shared libraries, for the
 * forensics tests (forensics_test.go: TestCrashInLibrary):
 *
 *   inflate()   zlib's inflate with a valid stream whose output pointer is
 *               bad: it faults in zlib's inflate_fast, a hidden function of
 *               libz.so.1 that no symbol table of a stripped zlib names
 *   libcrash()  libcrash.so's libcrash_write, which faults in its static
 *               libcrash_store (libcrash.so is not stripped)
 *   zstd()      built with -DCRASHLIB_ZSTD -lzstd: the new user's case,
 *               ZSTD_compress of 16 bytes said to be 16 GiB, the 16 before
 *               an unreadable page: it faults in a static function of a
 *               stripped libzstd
 */
#define BULKHEAD_IMPLEMENTATION
#include "bulkhead.h"

#include <string.h>
#include <zlib.h>

void libcrash_write(int *p, int v);

static int do_inflate(bh_call *c, void *arg) {
	static unsigned char text[4096], packed[4096];
	uLongf packed_len = sizeof packed;
	z_stream zs;
	(void)arg;
	for (size_t i = 0; i < sizeof text; i++) {
		text[i] = (unsigned char)("crash in zlib, "[i % 15] + (i / 97) % 7);
	}
	if (compress2(packed, &packed_len, text, sizeof text, 9) != Z_OK) {
		return bh_fail(c, BH_APPLICATION, "compress2 failed");
	}
	memset(&zs, 0, sizeof zs);
	if (inflateInit(&zs) != Z_OK) {
		return bh_fail(c, BH_APPLICATION, "inflateInit failed");
	}
	zs.next_in = packed;
	zs.avail_in = (uInt)packed_len;
	zs.next_out = (Bytef *)(uintptr_t)64; /* not mapped: the first write faults */
	zs.avail_out = 1 << 20;
	int ret = inflate(&zs, Z_NO_FLUSH);
	return bh_fail(c, BH_APPLICATION, "inflate returned %d without faulting", ret);
}

static int do_libcrash(bh_call *c, void *arg) {
	(void)arg;
	libcrash_write((int *)(uintptr_t)64, (int)c->nargs);
	return bh_fail(c, BH_APPLICATION, "libcrash_write returned without faulting");
}

#ifdef CRASHLIB_ZSTD
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

static int do_zstd(bh_call *c, void *arg) {
	static unsigned char dst[1 << 20];
	long page = sysconf(_SC_PAGESIZE);
	unsigned char *p = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	(void)arg;
	if (p == MAP_FAILED || mprotect(p + page, (size_t)page, PROT_NONE) != 0) {
		return bh_fail(c, BH_APPLICATION, "mmap failed");
	}
	memset(p, 'z', (size_t)page);
	size_t ret = ZSTD_compress(dst, sizeof dst, p + page - 16, (size_t)1 << 34, 1);
	return bh_fail(c, BH_APPLICATION, "ZSTD_compress returned %zu without faulting", ret);
}
#endif

int main(void) {
	static const bh_method methods[] = {
		{"inflate", do_inflate, NULL},
		{"libcrash", do_libcrash, NULL},
#ifdef CRASHLIB_ZSTD
		{"zstd", do_zstd, NULL},
#endif
	};
	return bh_serve("crashlib", methods, sizeof methods / sizeof methods[0]);
}
