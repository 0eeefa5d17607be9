package bulkhead

import (
	"bytes"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// A byte string decoded from a Reply into a *[]byte is a part of the
// Reply, not a copy; everything else decodes as before.
func TestReplyDecodeBytesAliases(t *testing.T) {
	for _, n := range []int{0, 1, 100, 1 << 20} {
		raw, err := wire.Marshal(testutil.Patterned(n, 4))
		if err != nil {
			t.Fatal(err)
		}
		r := Reply{raw: raw}
		var out []byte
		if err := r.Decode(&out); err != nil || !bytes.Equal(out, testutil.Patterned(n, 4)) || out == nil {
			t.Fatalf("%d bytes: got %d, %v", n, len(out), err)
		}
		if n > 0 {
			out[0] ^= 0xff
			if r.Raw()[len(raw)-n] != out[0] {
				t.Fatalf("%d bytes: the decoded slice does not share the Reply's memory", n)
			}
			var v any // not a *[]byte: a copy
			r.Decode(&v)
			v.([]byte)[0] ^= 0xff
			if r.Raw()[len(raw)-n] != out[0] {
				t.Fatal("decoding into any aliased the Reply")
			}
		}
	}
	for _, tc := range []struct {
		name string
		v    any
	}{{"null", nil}, {"text", "abc"}, {"number", 5}, {"array", []int{1}}} {
		raw, _ := wire.Marshal(tc.v)
		var got, want []byte
		gerr := Reply{raw: raw}.Decode(&got)
		werr := wire.Unmarshal(raw, &want)
		if (gerr == nil) != (werr == nil) || !bytes.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("%s: Decode = %v, %v; the decoder %v, %v", tc.name, got, gerr, want, werr)
		}
	}
	var out []byte
	if err := (Reply{}).Decode(&out); err != nil || out != nil {
		t.Fatalf("empty Reply: %v, %v", out, err)
	}
}
