package main

import (
	"math"
	"testing"
	"time"
)

func durs(xs ...int) []time.Duration {
	out := make([]time.Duration, len(xs))
	for i, x := range xs {
		out[i] = time.Duration(x)
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	s := durs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 5}, {99, 10}, {100, 10}, {10, 1}, {11, 2}, {0.001, 1}, {90, 9}, {91, 10},
	} {
		if got := percentile(s, tc.p); got != tc.want {
			t.Errorf("percentile(1..10, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	if got := percentile(durs(7), 99); got != 7 {
		t.Errorf("percentile of one value = %v, want 7", got)
	}
}

func TestPercentileMatchesCRule(t *testing.T) {
	// pingpong.c uses k = ceil(p/100*n) with a tiny epsilon; for 1000
	// values the p99 is the 990th smallest and the p50 the 500th.
	s := make([]time.Duration, 1000)
	for i := range s {
		s[i] = time.Duration(i + 1)
	}
	if got := percentile(s, 99); got != 990 {
		t.Errorf("p99 of 1..1000 = %v, want 990", got)
	}
	if got := percentile(s, 50); got != 500 {
		t.Errorf("p50 of 1..1000 = %v, want 500", got)
	}
}

func TestLatencySummarySorts(t *testing.T) {
	lat := durs(9, 1, 8, 2, 7, 3, 6, 4, 5, 100)
	p50, p99 := latencySummary(lat)
	if p50 != 5 || p99 != 100 {
		t.Errorf("latencySummary = %v, %v; want 5, 100", p50, p99)
	}
}

func TestMedian(t *testing.T) {
	in := []float64{3, 1, 2}
	if got := median(in); got != 2 {
		t.Errorf("median(3,1,2) = %v", got)
	}
	if in[0] != 3 {
		t.Error("median modified its input")
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median(4,1,3,2) = %v, want 2.5", got)
	}
	if got := median(nil); got != 0 {
		t.Errorf("median(nil) = %v", got)
	}
}

func TestRatioNeverNaNOrInf(t *testing.T) {
	for _, tc := range [][2]float64{{0, 0}, {1, 0}, {0, 1}, {math.NaN(), 1}} {
		if got := ratio(tc[0], tc[1]); got != 0 {
			t.Errorf("ratio(%v, %v) = %v, want 0", tc[0], tc[1], got)
		}
	}
	if got := ratio(3, 2); got != 1.5 {
		t.Errorf("ratio(3, 2) = %v", got)
	}
}
