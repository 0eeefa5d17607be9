package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
)

// TestMain lets the test binary serve as the child process of the Go
// contenders, as the compare binary does.
func TestMain(m *testing.M) {
	if kind := os.Getenv("BENCH_CHILD"); kind != "" {
		os.Exit(childMain(kind))
	}
	os.Exit(m.Run())
}

func testConfig() *config {
	return &config{rounds: 1, dur: 30 * time.Millisecond, callers: 4, servers: 2, echoSize: 64 << 10, spawns: 2}
}

func checkSample(t *testing.T, what string, s Sample, wantLatency bool) {
	t.Helper()
	if s.Calls <= 0 || s.CallsPerSec <= 0 {
		t.Errorf("%s: no calls measured: %+v", what, s)
	}
	if s.CPUPerCall <= 0 {
		t.Errorf("%s: CPU per call %v, want > 0", what, s.CPUPerCall)
	}
	if wantLatency && (s.P50 <= 0 || s.P99 < s.P50) {
		t.Errorf("%s: p50 %v, p99 %v", what, s.P50, s.P99)
	}
}

// TestCFloorSmoke builds pingpong.c and runs every C measurement briefly.
func TestCFloorSmoke(t *testing.T) {
	ctx := context.Background()
	c := &cFloor{cfg: testConfig()}
	if err := c.Setup(ctx); errors.Is(err, errUnavailable) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Latency(ctx, 30*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	checkSample(t, "latency", s, true)
	if s, err = c.Throughput(ctx, 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	checkSample(t, "throughput", s, false)
	if s.Callers != 2 || s.Servers != 2 {
		t.Errorf("C throughput shape %d/%d, want 2 pairs", s.Callers, s.Servers)
	}
	if s, err = c.Echo(ctx, 64<<10, 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	checkSample(t, "echo", s, true)
	m, err := (&procStart{cBin: c.bin}).round(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if m["c_static_us"] <= 0 || m["go_compare_binary_us"] <= 0 {
		t.Errorf("process start: %v", m)
	}
}

// directChildren lists live or unreaped children of this process.
func directChildren(t *testing.T) []int {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		fs := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fs) > 1 && fs[1] == self {
			pid, _ := strconv.Atoi(e.Name())
			out = append(out, pid)
		}
	}
	return out
}

// TestGoContendersTeardown runs each Go contender briefly and checks that
// Close leaves no child process behind, reaped or not.
func TestGoContendersTeardown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes of every Go contender")
	}
	ctx := context.Background()
	cfg := testConfig()
	for _, c := range []Contender{
		&rawGo{cfg: cfg}, &netRPC{cfg: cfg}, &grpcDirect{cfg: cfg},
		&goPlugin{cfg: cfg, proto: plugin.ProtocolGRPC}, &goPlugin{cfg: cfg, proto: plugin.ProtocolNetRPC},
	} {
		t.Run(c.Name(), func(t *testing.T) {
			g0 := runtime.NumGoroutine()
			if err := c.Setup(ctx); err != nil {
				c.Close()
				t.Fatal(err)
			}
			s, err := c.Latency(ctx, cfg.dur)
			if err != nil {
				c.Close()
				t.Fatal(err)
			}
			checkSample(t, "latency", s, true)
			if s, err = c.Throughput(ctx, cfg.dur); err != nil {
				c.Close()
				t.Fatal(err)
			}
			checkSample(t, "throughput", s, false)
			if e, ok := c.(Echoer); ok {
				if s, err = e.Echo(ctx, cfg.echoSize, cfg.dur); err != nil {
					c.Close()
					t.Fatal(err)
				}
				checkSample(t, "echo", s, true)
			}
			if err := c.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			if kids := directChildren(t); len(kids) > 0 {
				t.Errorf("children left after Close: %v", kids)
			}
			if g := runtime.NumGoroutine(); g > g0 {
				t.Logf("goroutines: %d before, %d after Close", g0, g)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	var errOut bytes.Buffer
	for _, bad := range [][]string{
		{"--rounds", "0"}, {"--rounds", "x"}, {"--duration", "1ns"}, {"--duration", "2h"},
		{"--nope"}, {"extra"}, {"--only", "c_floor,grcp"},
	} {
		if _, err := parseFlags(bad, &errOut); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
	cfg, err := parseFlags([]string{"--quick", "--json"}, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.rounds != 5 || cfg.dur != 200*time.Millisecond || !cfg.json {
		t.Errorf("--quick defaults: %+v", cfg)
	}
	cfg, err = parseFlags([]string{"--quick", "--rounds", "2", "--only", "c_floor, raw_go"}, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.rounds != 2 || !cfg.only["raw_go"] || len(cfg.only) != 2 {
		t.Errorf("explicit flags: %+v", cfg)
	}
}

// TestReportJSONWithoutBulkhead checks the JSON shape: the required keys
// are numbers, ratios that cannot be computed are 0 and listed in missing.
func TestReportJSONWithoutBulkhead(t *testing.T) {
	cfg := testConfig()
	c := &entry{c: &cFloor{cfg: cfg}, lat: []Sample{{P50: 10 * time.Microsecond, P99: 20 * time.Microsecond, CallsPerSec: 1e5, Calls: 10}}}
	rep := buildReport(cfg, []*entry{c}, map[string]map[int]float64{"go_compare_binary_us": {0: 1000}}, true, nil)
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"null_call_vs_floor", "goplugin_grpc_vs_bulkhead", "goplugin_grpc_throughput_ratio",
		"netrpc_vs_bulkhead", "aggregate_vs_c", "respawn_vs_exec", "respawn_spare_vs_exec", "idle256_vs_idle1", "mib_echo_vs_c",
		"cpu_per_call_vs_raw_go", "shm_null_call_vs_c_shm"} {
		v, ok := m[k].(float64)
		if !ok {
			t.Errorf("%s = %v, want a number", k, m[k])
		}
		if bulkheadFactory == nil && v != 0 {
			t.Errorf("%s = %v without bulkhead", k, v)
		}
	}
	if m["c_floor_p50_us"] != 10.0 {
		t.Errorf("c_floor_p50_us = %v", m["c_floor_p50_us"])
	}
	missing, _ := m["missing"].([]any)
	if bulkheadFactory == nil && (len(missing) == 0 || !strings.Contains(string(b), `"bulkhead"`)) {
		t.Errorf("missing = %v, want bulkhead and its keys", missing)
	}
	if bytes.Contains(b, []byte(":null")) {
		t.Errorf("JSON holds null: %s", b)
	}
}

// fakeContender is a named contender for report tests; it is never run.
type fakeContender struct {
	Contender
	name string
}

func (f fakeContender) Name() string  { return f.name }
func (f fakeContender) Label() string { return f.name }

// TestReportSpreadsAndFlags checks that ratios are taken round by round
// (the median of per-round ratios, with min and max), that rounds are joined
// by their number, not their position, and that a round whose floor moved
// by more than 2x is flagged.
func TestReportSpreadsAndFlags(t *testing.T) {
	cfg := testConfig()
	lat := func(r int, p50us, cpuus float64) Sample {
		d := time.Duration(p50us * 1e3)
		return Sample{P50: d, P99: 2 * d, CPUPerCall: time.Duration(cpuus * 1e3), CallsPerSec: 1, Calls: 1, Round: r}
	}
	agg := func(r int, rate float64) Sample { return Sample{CallsPerSec: rate, Calls: 1, Round: r} }
	floor := &entry{c: fakeContender{name: "c_floor"},
		lat: []Sample{lat(0, 10, 1), lat(1, 10, 1), lat(2, 25, 1), lat(3, 10, 1)},
		agg: []Sample{agg(0, 100), agg(1, 100), agg(2, 100), agg(3, 100)}}
	// bulkhead lost round 1: its rounds 0, 2, 3 pair with the floor's 0, 2, 3.
	bh := &entry{c: fakeContender{name: "bulkhead"},
		lat: []Sample{lat(0, 12, 6), lat(2, 25, 6), lat(3, 15, 9)},
		agg: []Sample{agg(0, 50), agg(2, 40), agg(3, 60)}}
	raw := &entry{c: fakeContender{name: "raw_go"},
		lat: []Sample{lat(0, 11, 3), lat(1, 11, 3), lat(2, 11, 3), lat(3, 11, 3)}}
	rep := buildReport(cfg, []*entry{floor, bh, raw}, map[string]map[int]float64{}, true, nil)
	for _, tc := range []struct {
		key  string
		want Spread
	}{
		{"null_call_vs_floor", Spread{Min: 1, Median: 1.2, Max: 1.5, Rounds: 3}},
		{"aggregate_vs_c", Spread{Min: 0.4, Median: 0.5, Max: 0.6, Rounds: 3}},
		{"cpu_per_call_vs_raw_go", Spread{Min: 2, Median: 2, Max: 3, Rounds: 3}},
	} {
		if got := rep.Spreads[tc.key]; got != tc.want {
			t.Errorf("%s spread = %+v, want %+v", tc.key, got, tc.want)
		}
	}
	if rep.NullCallVsFloor != 1.2 || rep.CPUPerCallVsRawGo != 2 {
		t.Errorf("top-level: null_call_vs_floor %v, cpu_per_call_vs_raw_go %v", rep.NullCallVsFloor, rep.CPUPerCallVsRawGo)
	}
	if len(rep.FlaggedRounds) != 1 || rep.FlaggedRounds[0].Round != 3 || rep.FlaggedRounds[0].Factor != 2.5 {
		t.Errorf("flagged rounds = %+v, want round 3 (floor 25 against a median of 10)", rep.FlaggedRounds)
	}
}

// TestSVGIsWellFormed draws a report with a measured and an unmeasured
// contender and checks the picture parses and holds a bar per measurement.
func TestSVGIsWellFormed(t *testing.T) {
	rep := &Report{Results: Results{Config: map[string]any{"rounds": 3}, Machine: map[string]any{}, Contenders: []*ContenderResult{
		{Name: "c_floor", Label: "C"},
		{Name: "bulkhead", Label: "bulkhead <&>", P50VsCSpread: Spread{Min: 1.1, Median: 1.2, Max: 1.4, Rounds: 3},
			P99VsCSpread: Spread{Min: 0.9, Median: 1, Max: 2, Rounds: 3}, AggVsCSpread: Spread{Min: 0.3, Median: 0.4, Max: 0.5, Rounds: 3}},
		{Name: "grpc", Label: "gRPC"},
	}}, FlaggedRounds: []FlaggedRound{{Round: 2}}}
	var b bytes.Buffer
	if err := writeSVG(&b, rep); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&b)
	rects := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if rects != 1+3 { // the background, then p50, p99 and aggregate of bulkhead
		t.Errorf("%d rects, want 4", rects)
	}
}

// --within lists the medians outside the full run's min–max, and counts as
// far only a pinned latency ratio beyond half its min or twice its max.
func TestCompareSpreads(t *testing.T) {
	full := map[string]Spread{
		"null_call_vs_floor": {Min: 1.3, Median: 1.4, Max: 1.5, Rounds: 7},
		"aggregate_vs_c":     {Min: 0.2, Median: 0.3, Max: 0.5, Rounds: 7},
		"mib_echo_vs_c":      {Min: 1.1, Median: 1.2, Max: 1.3, Rounds: 7},
	}
	for _, tc := range []struct {
		name         string
		now          map[string]Spread
		outside, far int
	}{
		{"inside", map[string]Spread{"null_call_vs_floor": {Median: 1.5, Rounds: 5}, "aggregate_vs_c": {Median: 0.2, Rounds: 5}}, 0, 0},
		{"a little outside", map[string]Spread{"null_call_vs_floor": {Median: 1.6, Rounds: 5}}, 1, 0},
		{"the unpinned floor's 0.09", map[string]Spread{"null_call_vs_floor": {Median: 0.09, Rounds: 5}}, 1, 1},
		{"far, but not a pinned key", map[string]Spread{"aggregate_vs_c": {Median: 5, Rounds: 5}}, 1, 0},
		{"far above", map[string]Spread{"mib_echo_vs_c": {Median: 2.7, Rounds: 5}, "null_call_vs_floor": {Median: 1.4, Rounds: 5}}, 1, 1},
		{"not measured", map[string]Spread{"null_call_vs_floor": {Rounds: 0}, "unknown": {Median: 9, Rounds: 5}}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := compareSpreads("full.json", full, tc.now)
			if w.OutsideCount != tc.outside || len(w.Outside) != tc.outside || w.FarOutsideCount != tc.far {
				t.Fatalf("outside %d (%v), far %d; want %d, %d", w.OutsideCount, w.Outside, w.FarOutsideCount, tc.outside, tc.far)
			}
		})
	}
}

// A --within file that cannot be read, or holds no spreads, is refused.
func TestLoadSpreadsRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"empty.json": "{}", "bad.json": "{", "other.json": `{"spreads": {}}`} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := loadSpreads(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := loadSpreads(filepath.Join(dir, "absent.json")); err == nil {
		t.Error("a missing file: accepted")
	}
	sp, err := loadSpreads("../../../docs/bench/compare-2026-11-26.json")
	if err != nil || sp["null_call_vs_floor"].Rounds == 0 {
		t.Fatalf("the committed full run: %v, %v", sp["null_call_vs_floor"], err)
	}
}
