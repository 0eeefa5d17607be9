package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of a
// sorted slice: the smallest value with at least p% of the values at or below
// it. pingpong.c uses the same rule, so C and Go numbers are comparable.
// It returns 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	k := int(math.Ceil(p / 100 * float64(n)))
	k = min(max(k, 1), n)
	return sorted[k-1]
}

// latencySummary sorts lat in place and returns its p50 and p99.
func latencySummary(lat []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(lat)
	return percentile(lat, 50), percentile(lat, 99)
}

// median returns the median of xs (the mean of the two middle values for an
// even count) without modifying xs. It returns 0 for an empty slice.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// ratio returns a/b, or 0 when either side is unknown (0) so that JSON output
// never holds NaN or Inf.
func ratio(a, b float64) float64 {
	if a == 0 || b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0
	}
	return a / b
}

// round3 rounds to 3 decimals (µs to the nanosecond, ratios to 0.001), so
// the JSON holds no float noise.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
