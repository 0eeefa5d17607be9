package proc

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestTail(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"nothing", 8, nil, ""},
		{"fits", 8, []string{"abc", "de"}, "abcde"},
		{"exactly the budget", 8, []string{"abcd", "efgh"}, "abcdefgh"},
		{"head fills first", 8, []string{"abcdef"}, "abcdef"},
		{"one byte over", 8, []string{"abcdefghi"}, "abcd\n... [1 bytes elided] ...\nfghi"},
		{"small writes", 8, []string{"ab", "cd", "ef", "gh", "ij", "kl"}, "abcd\n... [4 bytes elided] ...\nijkl"},
		{"one large write", 8, []string{"0123456789xyz"}, "0123\n... [5 bytes elided] ...\n9xyz"},
		{"large write after small ones", 8, []string{"abc", "defgh", "ij", "0123456789xyz"}, "abcd\n... [15 bytes elided] ...\n9xyz"},
		{"tail keeps moving", 8, []string{"abcd", "0123456789", "XY"}, "abcd\n... [8 bytes elided] ...\n89XY"},
		{"odd budget: the tail gets the extra byte", 5, []string{"abcdefgh"}, "ab\n... [3 bytes elided] ...\nfgh"},
		{"budget of one keeps the last byte", 1, []string{"abc"}, "\n... [2 bytes elided] ...\nc"},
		{"budget of zero keeps nothing", 0, []string{"abc"}, "\n... [3 bytes elided] ...\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := NewTail(tt.max)
			var total int64
			for _, w := range tt.writes {
				n, err := tl.Write([]byte(w))
				if n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
				total += int64(len(w))
			}
			if got := tl.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if tl.Total() != total {
				t.Errorf("Total() = %d, want %d", tl.Total(), total)
			}
		})
	}
}

// The tail is the end of the stream whatever the sizes of the writes: checked
// against the whole stream, over many write patterns, so that the amortised
// compaction cannot lose or repeat a byte.
func TestTailMatchesStream(t *testing.T) {
	for _, max := range []int{2, 7, 64, 4096} {
		for _, size := range []int{1, 3, 31, 100, 5000} {
			tl := NewTail(max)
			var all strings.Builder
			for i := 0; all.Len() < 3*max+size; i++ {
				w := strings.Repeat(string(rune('a'+i%26)), 1+(i*7)%size)
				fmt.Fprintf(&all, "%s", w)
				tl.Write([]byte(w))
			}
			s := all.String()
			want := s[:max/2] + fmt.Sprintf("\n... [%d bytes elided] ...\n", len(s)-max) + s[len(s)-(max-max/2):]
			if got := tl.String(); got != want {
				t.Fatalf("max %d, writes up to %d: String() =\n%q\nwant\n%q", max, size, got, want)
			}
		}
	}
}

func TestTailConcurrent(t *testing.T) {
	tl := NewTail(64)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				tl.Write([]byte("0123456789\n"))
				_ = tl.String()
			}
		})
	}
	wg.Wait()
	if tl.Total() != 4*1000*11 {
		t.Fatalf("Total() = %d", tl.Total())
	}
	if got := tl.String(); !strings.Contains(got, fmt.Sprintf("[%d bytes elided]", 4*1000*11-64)) {
		t.Fatalf("String() = %q", got)
	}
}
