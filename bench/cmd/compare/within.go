package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
)

// Within compares this run's ratios with the spreads of an earlier run
// (--within FILE, the full run BENCHMARKS.md quotes): CI's quick run must
// land inside the full run's spread.
type Within struct {
	File string `json:"file"`
	// Outside lists the ratios outside the earlier run's min–max, each with
	// this run's value and that spread. Informational: a quick run on
	// another machine may leave the range by a little.
	Outside []OutsideKey `json:"outside"`
	// OutsideCount is len(Outside).
	OutsideCount int `json:"outside_count"`
	// FarOutsideCount counts the pinned latency ratios (farKeys) outside
	// half the earlier minimum to twice its maximum: an instrument that
	// disagrees with itself that much (the unpinned floor's 0.09) is broken,
	// and CI fails.
	FarOutsideCount int `json:"far_outside_count"`
}

// OutsideKey is one ratio outside the earlier run's spread.
type OutsideKey struct {
	Key   string  `json:"key"`
	Value float64 `json:"value"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Far   bool    `json:"far"` // outside [Min/2, 2*Max], for a key of farKeys
}

// farKeys are the ratios taken pinned, between contenders that share a CPU:
// the ones the instrument promises to keep stable from run to run.
var farKeys = []string{"null_call_vs_floor", "cpu_per_call_vs_raw_go", "shm_null_call_vs_c_shm", "mib_echo_vs_c"}

// loadSpreads reads the spreads of the report in path (--within).
func loadSpreads(path string) (map[string]Spread, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--within: %w", err)
	}
	defer f.Close()
	var old struct {
		Spreads map[string]Spread `json:"spreads"`
	}
	if err := json.NewDecoder(io.LimitReader(f, 16<<20)).Decode(&old); err != nil {
		return nil, fmt.Errorf("--within %s: %w", path, err)
	}
	if len(old.Spreads) == 0 {
		return nil, fmt.Errorf("--within %s: no spreads in it (not a compare --json report?)", path)
	}
	return old.Spreads, nil
}

// compareSpreads lists the medians of now outside the ranges of full, in
// key order. A key missing from either side is skipped (Missing says so).
func compareSpreads(file string, full, now map[string]Spread) *Within {
	w := &Within{File: file, Outside: []OutsideKey{}}
	for k, sp := range now {
		ref, ok := full[k]
		if !ok || ref.Rounds == 0 || sp.Rounds == 0 {
			continue
		}
		if sp.Median >= ref.Min && sp.Median <= ref.Max {
			continue
		}
		o := OutsideKey{Key: k, Value: sp.Median, Min: ref.Min, Max: ref.Max}
		o.Far = slices.Contains(farKeys, k) && (sp.Median < ref.Min/2 || sp.Median > 2*ref.Max)
		if o.Far {
			w.FarOutsideCount++
		}
		w.Outside = append(w.Outside, o)
	}
	slices.SortFunc(w.Outside, func(a, b OutsideKey) int {
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
	})
	w.OutsideCount = len(w.Outside)
	return w
}
