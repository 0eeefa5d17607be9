//go:build cgo

package cclient

/*
#cgo CFLAGS: -I${SRCDIR}/../../clients/c -std=c99 -O1
#include "bulkhead_client.c"

// cclient_frames reads frames from p[0:n], as from a daemon, until the
// stream ends or a frame is refused; each payload read is decoded as an
// ERROR's too. It returns how many frames were read, and why it stopped in
// kind (empty at a clean end of the stream).
static int cclient_frames(const uint8_t *p, size_t n, char *kind, size_t kindcap) {
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	bhc_client c;
	memset(&c, 0, sizeof c);
	c.fd = sv[0], c.max_frame = 1 << 16;
	if (write_all(sv[1], p, n, 0) != 0)
		return -1;
	close(sv[1]);
	int frames = 0;
	bhc_error err;
	memset(&err, 0, sizeof err);
	for (;;) {
		header h;
		if (read_frame(&c, now_ms() + 5000, &h, &err) != 0)
			break;
		frames++;
		if (c.in.len > 0) {
			bhc_error e;
			decode_error(c.in.p, c.in.len, &e);
		}
	}
	close(sv[0]);
	bhc_buf_free(&c.in);
	// the end of the stream is kind "connection" with errno 0
	set_text(kind, kindcap, err.kind, strlen(err.kind));
	return frames;
}

// cclient_walk reads a checked item with the cursor: every container's
// items, every key of every map looked up as reply_field would.
static int cclient_walk(bhc_cur *c, int depth) {
	size_t n;
	if (depth > 40)
		return -1;
	switch (bhc_kind(c)) {
	case BHC_ARRAY:
		if (bhc_get_array(c, &n) != 0)
			return -1;
		for (size_t i = 0; i < n; i++)
			if (cclient_walk(c, depth + 1) != 0)
				return -1;
		return 0;
	case BHC_MAP:
		if (bhc_get_map(c, &n) != 0)
			return -1;
		for (size_t i = 0; i < 2 * n; i++)
			if (cclient_walk(c, depth + 1) != 0)
				return -1;
		return 0;
	}
	return bhc_skip(c);
}

static int cclient_read_all(const uint8_t *p, size_t n) {
	bhc_cur c = bhc_cursor(p, n);
	if (cclient_walk(&c, 0) != 0 || c.p != c.end)
		return -1;
	return 0;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

func ptr(p []byte) *C.uint8_t {
	if len(p) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&p[0]))
}

// Check runs bhc_check on p at nesting level `level`.
func Check(p []byte, level int) error {
	var why *C.char
	if C.bhc_check(ptr(p), C.size_t(len(p)), C.int(level), &why) != 0 {
		return errors.New(C.GoString(why))
	}
	return nil
}

// ReadAll walks a checked item with the cursor functions; it reports
// whether they read it all.
func ReadAll(p []byte) bool { return C.cclient_read_all(ptr(p), C.size_t(len(p))) == 0 }

// Frames feeds p to the client's frame reader as a daemon's byte stream (a
// frame limit of 64 KiB); it returns the frames it read and the kind of
// error that stopped it ("connection" at the end of the stream).
func Frames(p []byte) (int, string) {
	var kind [32]C.char
	n := C.cclient_frames(ptr(p), C.size_t(len(p)), &kind[0], C.size_t(len(kind)))
	return int(n), C.GoString(&kind[0])
}
