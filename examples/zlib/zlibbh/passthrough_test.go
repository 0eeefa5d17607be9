//go:build bulkhead_passthrough

package zlibbh

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead"
)

// The generated stubs, run in-process with the passthrough build tag
// (go test -tags bulkhead_passthrough ./examples/zlib/zlibbh), agree with
// Go's zlib and crc32, and zlib's errors come back as RemoteErrors.
func TestPassthrough(t *testing.T) {
	ctx := context.Background()
	c := Passthrough()
	in := bytes.Repeat([]byte("passthrough "), 1000)
	z, err := Compress2(ctx, c, in, 9)
	if err != nil {
		t.Fatal(err)
	}
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	if back, err := io.ReadAll(r); err != nil || !bytes.Equal(back, in) {
		t.Fatalf("Go read back %d bytes, %v", len(back), err)
	}
	if back, err := Uncompress(ctx, c, z, uint64(len(in))); err != nil || !bytes.Equal(back, in) {
		t.Fatalf("Uncompress: %d bytes, %v", len(back), err)
	}
	if sum, err := Crc32(ctx, c, 0, in); err != nil || sum != uint64(crc32.ChecksumIEEE(in)) {
		t.Fatalf("Crc32 = %#x, %v", sum, err)
	}
	_, err = Uncompress(ctx, c, z, 10)
	var re *bulkhead.RemoteError
	if !errors.As(err, &re) || re.Code != bulkhead.CodeApplication || !strings.HasSuffix(re.Message, "returned -5: buffer error") {
		t.Fatalf("Uncompress into 10 bytes: %v; want Z_BUF_ERROR as a RemoteError with zError's words", err)
	}
}
