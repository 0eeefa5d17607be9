package bulkhead_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/bulkhead-go/bulkhead"
)

// A large reply's memory is reused only after Release: an unreleased reply
// keeps its bytes whatever calls follow, and a released one's buffer serves
// a later reply instead of a new allocation.
func TestReplyRelease(t *testing.T) {
	p := newPool(t, bulkhead.Config{Workers: 1})
	ctx := context.Background()
	echo := func(fill byte) (bulkhead.Reply, []byte) {
		t.Helper()
		r, err := p.Call(ctx, "echobytes", bytes.Repeat([]byte{fill}, 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		if err := r.Decode(&out); err != nil || len(out) != 1<<20 {
			t.Fatalf("echo: %d bytes, %v", len(out), err)
		}
		return r, out
	}

	kept, keptOut := echo(1)
	for i := range 4 {
		r, out := echo(byte(2 + i))
		r.Release()
		r.Release() // a second Release does nothing
		_ = out
	}
	if !bytes.Equal(keptOut, bytes.Repeat([]byte{1}, 1<<20)) {
		t.Fatal("an unreleased reply's bytes changed under later calls")
	}
	kept.Release()

	// sync.Pool may drop what it is given (under -race, at random): try a
	// few times to see a released buffer come back.
	reused := false
	for i := 0; i < 50 && !reused; i++ {
		r, out := echo(9)
		first := &out[0]
		r.Release()
		r2, out2 := echo(10)
		reused = &out2[0] == first
		r2.Release()
	}
	if !reused {
		t.Error("a released reply buffer was never reused")
	}

	small, err := p.Call(ctx, "upper", "x")
	if err != nil {
		t.Fatal(err)
	}
	small.Release() // small replies are not recycled: a no-op
	if s, err := small.Value(); err != nil || s != "X" {
		t.Errorf("small reply after Release: %v, %v", s, err)
	}
}
