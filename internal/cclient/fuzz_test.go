//go:build cgo

package cclient

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"encoding/hex"

	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// seeds are values near the rules of PROTOCOL.md section 5, and every
// frame of the conformance vectors.
func seeds(t testing.TB) [][]byte {
	deep := func(k int, leaf byte) []byte { return append(bytes.Repeat([]byte{0x81}, k), leaf) }
	s := [][]byte{
		{0x01}, {0x80}, {0xa0}, {0xf6}, {0xf5}, {0xf7}, {0xf8, 0x20}, {0xf9, 0x3c, 0x00},
		{0x62, 'h', 'i'}, {0x62, 0xc3, 0x28}, {0x63, 0xed, 0xa0, 0x80}, {0x42, 0, 1},
		{0xa2, 0x01, 0xf5, 0x18, 0x01, 0xf6}, {0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02},
		{0xa1, 0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x01}, {0xa1, 0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		{0xa1, 0x41, 'a', 0x01}, {0xc1, 0x01}, {0x9f, 0xff}, {0x7f, 0xff}, {0x1c}, {0x01, 0x02},
		{0x9b, 0, 0, 0, 1, 0, 0, 0, 0}, {0x5b, 0xff, 0, 0, 0, 0, 0, 0, 0},
		deep(30, 0x01), deep(31, 0x01), deep(32, 0x01), deep(31, 0x80), deep(32, 0x80),
	}
	b, err := os.ReadFile("../../testdata/client-protocol/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(line, " ", 4); len(f) == 4 && line[0] != '#' {
			if frame, err := hex.DecodeString(f[2]); err == nil {
				s = append(s, frame)
				if len(frame) > wire.HeaderSize {
					s = append(s, frame[wire.HeaderSize:])
				}
			}
		}
	}
	return s
}

// FuzzCheck runs the C client's value checker against the daemon's
// (wire.CheckValue): they take the same values, and the client's cursor
// reads every value they take to its end.
func FuzzCheck(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		goErr, cErr := wire.CheckValue(p), Check(p, 1)
		if (goErr == nil) != (cErr == nil) {
			t.Fatalf("% x: the daemon's checker says %v, the C client's %v", p, goErr, cErr)
		}
		if cErr == nil && !ReadAll(p) {
			t.Fatalf("% x: checked, but the cursor cannot read it to its end", p)
		}
	})
}

// FuzzFrames feeds arbitrary bytes to the C client's frame reader as a
// daemon's stream: it reads exactly the frames that a reader built on
// internal/wire takes, then stops with "protocol" at a bad frame or
// "connection" at the end of the stream.
func FuzzFrames(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > 1<<16 {
			return // a socket pair's buffer must hold it all
		}
		wantN, wantKind := goFrames(p)
		n, kind := Frames(p)
		if n != wantN || kind != wantKind {
			t.Fatalf("% x: the C client read %d frames and stopped with %q; want %d and %q", p, n, kind, wantN, wantKind)
		}
	})
}

// goFrames is what the C client should read from p.
func goFrames(p []byte) (int, string) {
	n := 0
	for {
		if len(p) < wire.HeaderSize {
			return n, "connection"
		}
		h, err := wire.ParseHeader(p, 1<<16)
		if err != nil || !clientwire.DaemonType(h.Type) {
			return n, "protocol"
		}
		if len(p)-wire.HeaderSize < int(h.Length) {
			return n, "connection"
		}
		payload := p[wire.HeaderSize : wire.HeaderSize+int(h.Length)]
		if len(payload) > 0 && wire.CheckValue(payload) != nil {
			return n, "protocol"
		}
		n++
		p = p[wire.HeaderSize+int(h.Length):]
	}
}
