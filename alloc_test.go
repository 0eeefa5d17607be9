package bulkhead_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
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

// BenchmarkNullCallBytes is BenchmarkBytesCall through CallBytes, the
// typed form: -benchmem shows 0 allocs/op on the caller's side.
func BenchmarkNullCallBytes(b *testing.B) {
	p := benchPool(b, 1, 1)
	ctx := context.Background()
	in := []byte("0123456789abcdef")
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if out, err = p.CallBytes(ctx, "echobytes", in, out[:0]); err != nil || len(out) != len(in) {
			b.Fatal(err, len(out))
		}
	}
}

// TestCallAllocs counts what the caller's side allocates per call, with the
// reply released: nothing for a null call; for a []byte argument and result
// through Call, only the 3 allocations Go's escape analysis makes at the
// call site (the []byte boxed into an any, the variadic []any, and out,
// whose address goes to Decode as an any), none in the library; through
// CallBytes, which releases the reply itself, nothing.
func TestCallAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops sync.Pool items at random")
	}
	p := newPool(t, bulkhead.Config{Workers: 1})
	ctx := context.Background()
	in := []byte("0123456789abcdef")
	var out []byte
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
		{"callbytes", 0, func() error {
			// CallBytes: nothing boxed, the reply recycled inside.
			var err error
			out, err = p.CallBytes(ctx, "echobytes", in, out[:0])
			if err == nil && !bytes.Equal(out, in) {
				t.Fatalf("echobytes returned %q", out)
			}
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

// CallBytes answers as Call followed by Decode into a *[]byte would, with
// the result appended to dst: small and large byte strings, null, a result
// of another type, and a remote error.
func TestCallBytes(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1})
	ctx := context.Background()
	big := testutil.Patterned(1<<20, 7)
	for _, tc := range []struct {
		name, method string
		arg          []byte
		want         []byte // appended to "dst:"
		wantErr      bool
	}{
		{"small", "echobytes", []byte("0123456789abcdef"), []byte("0123456789abcdef"), false},
		{"empty", "echobytes", []byte{}, nil, false},
		{"large", "echobytes", big, big, false},
		{"null result", "null", []byte("x"), nil, false},
		{"not a byte string", "pid", nil, nil, true},
		{"remote error", "fail", nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("dst:")
			got, err := p.CallBytes(ctx, tc.method, tc.arg, dst)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want an error: %v", err, tc.wantErr)
			}
			r, cerr := p.Call(ctx, tc.method, tc.arg)
			var viaCall []byte
			if cerr == nil {
				cerr = r.Decode(&viaCall)
			}
			if (cerr != nil) != (err != nil) {
				t.Fatalf("CallBytes: %v; Call and Decode: %v", err, cerr)
			}
			if err != nil {
				if !bytes.Equal(got, dst) {
					t.Fatalf("on error, dst became %q", got)
				}
				return
			}
			if want := append([]byte("dst:"), tc.want...); !bytes.Equal(got, want) || !bytes.Equal(got[4:], viaCall) {
				t.Fatalf("got %d bytes, want %d (Call: %d)", len(got), len(want), len(viaCall))
			}
		})
	}
}
