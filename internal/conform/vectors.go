package conform

import (
	_ "embed"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// embeddedVectors is a copy of testdata/protocol/vectors.txt, so that the
// command works outside the repository; TestVectorsMatchTestdata keeps the
// two the same.
//
//go:embed vectors.txt
var embeddedVectors string

// vector is one line of the vectors file.
type vector struct {
	kind  string // value, bad, envelope or frame
	name  string
	bytes []byte
	line  int
}

// parseVectors reads the vectors file format (see its header).
func parseVectors(text string) ([]vector, error) {
	var vs []vector
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("vectors.txt:%d: want KIND NAME BYTES", i+1)
		}
		switch f[0] {
		case "value", "bad", "envelope", "frame":
		default:
			return nil, fmt.Errorf("vectors.txt:%d: unknown kind %q", i+1, f[0])
		}
		b, err := parseBytes(f[2:])
		if err != nil {
			return nil, fmt.Errorf("vectors.txt:%d: %s: %w", i+1, f[1], err)
		}
		vs = append(vs, vector{kind: f[0], name: f[1], bytes: b, line: i + 1})
	}
	return vs, nil
}

// parseBytes decodes hex tokens; HEX*N repeats HEX N times; "-" is nothing.
func parseBytes(tokens []string) ([]byte, error) {
	var out []byte
	for _, t := range tokens {
		if t == "-" {
			continue
		}
		n := 1
		if h, count, ok := strings.Cut(t, "*"); ok {
			c, err := strconv.Atoi(count)
			if err != nil || c < 0 || c > 1<<20 {
				return nil, fmt.Errorf("bad repeat count in %q", t)
			}
			t, n = h, c
		}
		b, err := hex.DecodeString(t)
		if err != nil {
			return nil, fmt.Errorf("token %q: %w", t, err)
		}
		out = append(out, []byte(strings.Repeat(string(b), n))...)
	}
	return out, nil
}

// kind returns the vectors of one kind.
func (k *kit) kind(kind string) []vector {
	var vs []vector
	for _, v := range k.vectors {
		if v.kind == kind {
			vs = append(vs, v)
		}
	}
	return vs
}
