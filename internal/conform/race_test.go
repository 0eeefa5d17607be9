//go:build race

package conform

// raceEnabled: a race-instrumented Go worker starts in about 0.5 s, so the
// Go SDK runs only some checks under -race (CI runs them all on a plain build).
const raceEnabled = true
