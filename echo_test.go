package bulkhead_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"unsafe"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Large byte strings travel uncopied (writev from the caller's slice, a
// view in the worker, writev of the view, a Reply decoded in place) over
// both transports, with the same results as the copying paths, up to the
// frame limit; the caller's slice is left as it was.
func TestEchoLargeBytes(t *testing.T) {
	const limit = 2 << 20
	// CALL "echobytes": 0x83, 0x69 and 9 bytes, 0x00, 0x81, a 5-byte head.
	maxArg := limit - 13 - 5
	for _, tr := range []struct {
		name string
		t    bulkhead.Transport
	}{{"socket", bulkhead.TransportSocket}, {"shm", bulkhead.TransportShm}} {
		t.Run(tr.name, func(t *testing.T) {
			p := newPool(t, bulkhead.Config{Transport: tr.t, MaxFrameSize: limit, ShmRingSize: 64 << 10})
			if ws := p.Workers(); len(ws) != 1 || ws[0].Transport != tr.t {
				t.Fatalf("workers %+v: want transport %s", ws, tr.name)
			}
			ctx := context.Background()
			for _, method := range []string{"echobytes", "echo"} {
				for _, n := range []int{0, 1, wire.MinRef - 1, wire.MinRef, 1 << 20, maxArg} {
					in := make([]byte, n)
					for i := range in {
						in[i] = byte(i*5 + n)
					}
					orig := bytes.Clone(in)
					r, err := p.Call(ctx, method, in)
					if err != nil {
						t.Fatalf("%s of %d bytes: %v", method, n, err)
					}
					var out []byte
					if err := r.Decode(&out); err != nil || !bytes.Equal(out, orig) || !bytes.Equal(in, orig) {
						t.Fatalf("%s of %d bytes: got %d bytes, %v", method, n, len(out), err)
					}
					if n > 0 && unsafe.SliceData(out) != &r.Raw()[len(r.Raw())-n] {
						t.Fatalf("%s of %d bytes: Decode copied the reply", method, n)
					}
				}
			}
			_, err := p.Call(ctx, "echobytes", make([]byte, maxArg+1))
			if !errors.Is(err, wire.ErrTooLarge) {
				t.Fatalf("an argument over the frame limit: %v", err)
			}
			if _, err := p.Call(ctx, "echobytes", "text"); !isRemoteCode(err, bulkhead.CodeBadArguments) {
				t.Fatalf("Bytes of a text argument: %v", err)
			}
		})
	}
}

func isRemoteCode(err error, code bulkhead.ErrorCode) bool {
	var re *bulkhead.RemoteError
	return errors.As(err, &re) && re.Code == code
}
