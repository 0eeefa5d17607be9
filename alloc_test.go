package bulkhead_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/bulkhead-go/bulkhead"
)

// BenchmarkBytesCall is a call with a 16-byte []byte argument whose worker
// returns it (a view, written back uncopied); the caller decodes the result
// into a []byte and releases the reply. With -benchmem it shows what the
// caller's side allocates per call.
func BenchmarkBytesCall(b *testing.B) {
	p := benchPool(b, 1, 1)
	ctx := context.Background()
	in := []byte("0123456789abcdef")
	b.ReportAllocs()
	for b.Loop() {
		r, err := p.Call(ctx, "echobytes", in)
		if err != nil {
			b.Fatal(err)
		}
		var out []byte
		if err := r.Decode(&out); err != nil || len(out) != len(in) {
			b.Fatal(err, len(out))
		}
		r.Release()
	}
}

// TestCallAllocs counts what the caller's side allocates per call, with the
// reply released: nothing for a null call; for a []byte argument and result,
// only the 3 allocations Go's escape analysis makes at the call site (the
// []byte boxed into an any, the variadic []any, and out, whose address goes
// to Decode as an any), none in the library.
func TestCallAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops sync.Pool items at random")
	}
	p := newPool(t, bulkhead.Config{Workers: 1})
	ctx := context.Background()
	in := []byte("0123456789abcdef")
	for _, tc := range []struct {
		name string
		want float64
		call func() error
	}{
		{"bytes", 3, func() error {
			r, err := p.Call(ctx, "echobytes", in)
			if err != nil {
				return err
			}
			var out []byte
			err = r.Decode(&out)
			if err == nil && !bytes.Equal(out, in) {
				t.Fatalf("echobytes returned %q", out)
			}
			r.Release()
			return err
		}},
		{"null", 0, func() error {
			r, err := p.Call(ctx, "null")
			r.Release()
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 100 { // warm the pools
				if err := tc.call(); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			n := testing.AllocsPerRun(1000, func() {
				if e := tc.call(); e != nil {
					err = e
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if n > tc.want {
				t.Errorf("%v allocations per call, want %v", n, tc.want)
			}
		})
	}
}
