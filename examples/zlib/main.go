// Command zlib calls Debian's zlib through bulkhead workers that `bulkhead
// gen` generated from zlib.h (zlibbh/, from zlib.toml): no worker code was
// written by hand. It checks every result against Go's own compress/zlib,
// hash/crc32 and hash/adler32, then makes zlib crash on purpose (crc32 over a
// length that lies) and checks that the crash cost only that call: a
// *bulkhead.CrashError, and the next call succeeds. It exits 0 when every
// check holds.
//
//	apt-get install zlib1g-dev   # zlib.h and libz for the worker
//	go run ./examples/zlib
package main

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"hash/adler32"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/examples/zlib/zlibbh"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "zlib:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	bin, err := zlibbh.Worker(ctx)
	if err != nil {
		return fmt.Errorf("building the worker (is zlib1g-dev installed?): %w", err)
	}
	pool, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 2})
	if err != nil {
		return err
	}
	defer pool.Close(context.Background())
	for _, in := range inputs() {
		if err := roundTrip(ctx, pool, in); err != nil {
			return fmt.Errorf("%d bytes: %w", len(in), err)
		}
		fmt.Fprintf(out, "ok  %8d bytes: compress2, uncompress, crc32, adler32 agree with Go\n", len(in))
	}
	if err := refusals(ctx, pool); err != nil {
		return err
	}
	fmt.Fprintln(out, "ok  a destination too small and bytes that are not zlib are a *bulkhead.RemoteError with zlib's words (buffer error, data error)")
	if err := crash(ctx, pool, out); err != nil {
		return err
	}
	fmt.Fprintln(out, "every check holds")
	return nil
}

// inputs are the buffers compressed and checksummed: empty, short, text,
// incompressible, and large.
func inputs() [][]byte {
	noise := make([]byte, 300<<10)
	x := uint32(2463534242)
	for i := range noise { // xorshift: incompressible, and the same each run
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		noise[i] = byte(x)
	}
	return [][]byte{{}, []byte("a"), bytes.Repeat([]byte("bulkhead keeps zlib's crashes out of the caller. "), 2000), noise}
}

// roundTrip checks one buffer through all four functions against Go.
func roundTrip(ctx context.Context, c bulkhead.Caller, in []byte) error {
	z, err := zlibbh.Compress2(ctx, c, in, 6)
	if err != nil {
		return fmt.Errorf("compress2: %w", err)
	}
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		return fmt.Errorf("Go cannot read compress2's output: %w", err)
	}
	if back, err := io.ReadAll(r); err != nil || !bytes.Equal(back, in) {
		return fmt.Errorf("Go decompressed compress2's output to %d bytes (%v), want the input", len(back), err)
	}
	var gz bytes.Buffer
	w := zlib.NewWriter(&gz)
	_, _ = w.Write(in)
	_ = w.Close()
	for name, src := range map[string][]byte{"its own": z, "Go's": gz.Bytes()} {
		back, err := zlibbh.Uncompress(ctx, c, src, uint64(len(in)))
		if err != nil || !bytes.Equal(back, in) {
			return fmt.Errorf("uncompress of %s output: %d bytes, %v; want the input", name, len(back), err)
		}
	}
	if sum, err := zlibbh.Crc32(ctx, c, 0, in); err != nil || sum != uint64(crc32.ChecksumIEEE(in)) {
		return fmt.Errorf("crc32 = %#x, %v; Go says %#x", sum, err, crc32.ChecksumIEEE(in))
	}
	if sum, err := zlibbh.Adler32(ctx, c, 1, in); err != nil || sum != uint64(adler32.Checksum(in)) {
		return fmt.Errorf("adler32 = %#x, %v; Go says %#x", sum, err, adler32.Checksum(in))
	}
	return nil
}

// refusals checks that zlib's own error comes back as a RemoteError whose
// message has zlib's words for it (zError, the annotation's error).
func refusals(ctx context.Context, c bulkhead.Caller) error {
	z, err := zlibbh.Compress2(ctx, c, bytes.Repeat([]byte("x"), 1000), 9)
	if err != nil {
		return err
	}
	for _, r := range []struct {
		what string
		src  []byte
		cap  uint64
		want string
	}{
		{"into 10 bytes", z, 10, "uncompress returned -5: buffer error"},                              // Z_BUF_ERROR
		{"of bytes that are not zlib", []byte("not zlib"), 100, "uncompress returned -3: data error"}, // Z_DATA_ERROR
	} {
		_, err = zlibbh.Uncompress(ctx, c, r.src, r.cap)
		var re *bulkhead.RemoteError
		if !errors.As(err, &re) || re.Code != bulkhead.CodeApplication || !strings.HasSuffix(re.Message, r.want) {
			return fmt.Errorf("uncompress %s: %v; want a *bulkhead.RemoteError ending %q", r.what, err, r.want)
		}
	}
	return nil
}

// crash makes zlib read 4 GiB past a 16-byte buffer, in the worker.
func crash(ctx context.Context, c bulkhead.Caller, out io.Writer) error {
	_, err := zlibbh.Crc32Unchecked(ctx, c, 0, make([]byte, 16), 0xfffffff0)
	var ce *bulkhead.CrashError
	if !errors.As(err, &ce) {
		return fmt.Errorf("crc32 over a lying length: %v; want a *bulkhead.CrashError", err)
	}
	fmt.Fprintf(out, "ok  crc32 over a lying length crashed its worker (%v), and only its call: %v\n", ce.Signal, err)
	in := []byte("the next call")
	if sum, err := zlibbh.Crc32(ctx, c, 0, in); err != nil || sum != uint64(crc32.ChecksumIEEE(in)) {
		return fmt.Errorf("the call after the crash: %#x, %v", sum, err)
	}
	fmt.Fprintln(out, "ok  the next call succeeded")
	return nil
}
