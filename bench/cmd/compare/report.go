package main

import (
	"fmt"
	"io"
	"maps"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is the JSON output: top-level ratios plus a results detail section.
// Every number is a finite float; a ratio that cannot be computed is 0 and
// its key is listed in Missing, together with every unavailable contender.
//
// Each ratio is computed per round, from the two contenders' values in that
// round (interleaved, so they saw the same machine), and the top-level value
// is the median of those per-round ratios; Spreads holds their min, median
// and max. Latency ratios (p50, p99, CPU per call, echo) come from the pinned
// phase, aggregate ratios from the unpinned one.
type Report struct {
	Results Results `json:"results"`

	CFloorP50US                 float64 `json:"c_floor_p50_us"`
	NullCallVsFloor             float64 `json:"null_call_vs_floor"`
	GopluginGRPCVsBulkhead      float64 `json:"goplugin_grpc_vs_bulkhead"`
	GopluginGRPCThroughputRatio float64 `json:"goplugin_grpc_throughput_ratio"`
	NetRPCVsBulkhead            float64 `json:"netrpc_vs_bulkhead"`
	AggregateVsC                float64 `json:"aggregate_vs_c"`
	RespawnVsExec               float64 `json:"respawn_vs_exec"`
	RespawnSpareVsExec          float64 `json:"respawn_spare_vs_exec"` // respawn_vs_exec with a warm spare (Spares: 1)
	Idle256VsIdle1              float64 `json:"idle256_vs_idle1"`
	MiBEchoVsC                  float64 `json:"mib_echo_vs_c"`
	// ShmNullCallVsFloor is the shared-memory transport's null-call p50
	// over the C socketpair floor.
	ShmNullCallVsFloor float64 `json:"shm_null_call_vs_floor"`
	ShmNullCallP50US   float64 `json:"shm_null_call_p50_us"`
	// The aggregate ratios again, for a pool with Config.Pipeline 8 (the
	// socket transport): calls queue on busy workers.
	AggregatePipelinedVsC                float64 `json:"aggregate_pipelined_vs_c"`
	GopluginGRPCThroughputRatioPipelined float64 `json:"goplugin_grpc_throughput_ratio_pipelined"`
	// WarmActivationVsNullCall is a warm CreateInstance plus Release p50
	// over bulkhead's null-call p50 (the object model's goal: at most 2).
	WarmActivationVsNullCall float64 `json:"warm_activation_vs_null_call"`
	// And with the shared-memory transport as well.
	AggregateShmPipelinedVsC                float64 `json:"aggregate_shm_pipelined_vs_c"`
	GopluginGRPCThroughputRatioShmPipelined float64 `json:"goplugin_grpc_throughput_ratio_shm_pipelined"`
	// CPUPerCallVsRawGo is bulkhead's CPU per null call (both processes)
	// over raw Go's, in the pinned phase.
	CPUPerCallVsRawGo float64 `json:"cpu_per_call_vs_raw_go"`
	// ShmNullCallVsCShm is the shared-memory transport's null-call p50
	// over the C shared-memory futex ping-pong's (c_shm_floor).
	ShmNullCallVsCShm float64 `json:"shm_null_call_vs_c_shm"`

	// Spreads holds, for every ratio key above, the min, median and max of
	// its per-round values.
	Spreads map[string]Spread `json:"spreads"`
	// FlaggedRounds lists the rounds whose floor moved by more than 2x from
	// the floor's median over rounds: the machine changed under that round.
	FlaggedRounds []FlaggedRound `json:"flagged_rounds"`

	Missing []string `json:"missing"`

	// Within, with --within, holds this run against an earlier run's
	// spreads; nil (absent) without it.
	Within *Within `json:"within,omitempty"`
}

// Spread is a ratio's distribution over rounds.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	Rounds int     `json:"rounds"`
}

// FlaggedRound is a round whose floor moved by more than 2x.
type FlaggedRound struct {
	Round  int     `json:"round"` // 1-based
	Floor  string  `json:"floor"` // which floor measurement
	Value  float64 `json:"value"`
	Median float64 `json:"median"`
	Factor float64 `json:"factor"` // max(value/median, median/value)
}

// Results is the detail section.
type Results struct {
	Config       map[string]any     `json:"config"`
	Machine      map[string]any     `json:"machine"`
	Contenders   []*ContenderResult `json:"contenders"`
	ProcessStart map[string]float64 `json:"process_start_us"`
	Errors       []string           `json:"errors"`
}

// ContenderResult holds one contender's medians over rounds.
type ContenderResult struct {
	Name   string `json:"name"`
	Label  string `json:"label"`
	Rounds int    `json:"rounds"`
	Error  string `json:"error,omitempty"`

	P50US        float64 `json:"p50_us"`
	P99US        float64 `json:"p99_us"`
	CallsPerSec  float64 `json:"calls_per_s"`
	CPUUSPerCall float64 `json:"cpu_us_per_call"`
	P50VsCFloor  float64 `json:"p50_vs_c_floor"`
	// The per-round spreads of p50, p99 and aggregate over the C floor's.
	P50VsCSpread Spread `json:"p50_vs_c_floor_spread"`
	P99VsCSpread Spread `json:"p99_vs_c_floor_spread"`
	AggVsCSpread Spread `json:"aggregate_vs_c_floor_spread"`

	AggCallsPerSec  float64 `json:"aggregate_calls_per_s"`
	AggCPUUSPerCall float64 `json:"aggregate_cpu_us_per_call"`
	AggCallers      int     `json:"aggregate_callers"`
	AggServers      int     `json:"aggregate_servers"`

	EchoBytes int                `json:"echo_bytes,omitempty"`
	EchoP50US float64            `json:"echo_p50_us,omitempty"`
	EchoP99US float64            `json:"echo_p99_us,omitempty"`
	EchoCPUUS float64            `json:"echo_cpu_us_per_call,omitempty"`
	EchoGiBps float64            `json:"echo_gib_per_s,omitempty"` // both directions, at p50
	Extras    map[string]float64 `json:"extras,omitempty"`
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

func medianOf(ss []Sample, f func(Sample) float64) float64 {
	xs := make([]float64, len(ss))
	for i, s := range ss {
		xs[i] = f(s)
	}
	return round3(median(xs))
}

// byRound indexes f of each sample by its round.
func byRound(ss []Sample, f func(Sample) float64) map[int]float64 {
	m := make(map[int]float64, len(ss))
	for _, s := range ss {
		m[s.Round] = f(s)
	}
	return m
}

// spreadOf returns the spread of num[r]/den[r] over the rounds both have.
func spreadOf(num, den map[int]float64) Spread {
	var xs []float64
	for r, n := range num {
		if d, ok := den[r]; ok {
			if v := ratio(n, d); v != 0 {
				xs = append(xs, v)
			}
		}
	}
	if len(xs) == 0 {
		return Spread{}
	}
	return Spread{Min: round3(slices.Min(xs)), Median: round3(median(xs)), Max: round3(slices.Max(xs)), Rounds: len(xs)}
}

// listByRound turns a per-round list into a round-indexed series.
func listByRound(xs []float64) map[int]float64 {
	m := make(map[int]float64, len(xs))
	for i, x := range xs {
		m[i] = x
	}
	return m
}

// flagFloor lists the rounds in which series moved by more than 2x from its
// median.
func flagFloor(name string, series map[int]float64) []FlaggedRound {
	var xs []float64
	for _, v := range series {
		xs = append(xs, v)
	}
	med := median(xs)
	var out []FlaggedRound
	for r, v := range series {
		f := max(ratio(v, med), ratio(med, v))
		if f > 2 {
			out = append(out, FlaggedRound{Round: r + 1, Floor: name, Value: round3(v), Median: round3(med), Factor: round3(f)})
		}
	}
	return out
}

// contenderResult builds one contender's medians.
func contenderResult(cfg *config, e *entry) *ContenderResult {
	r := &ContenderResult{Name: e.c.Name(), Label: e.c.Label(), Rounds: len(e.lat)}
	if e.err != nil {
		r.Error = e.err.Error()
	}
	if len(e.lat) > 0 {
		r.P50US = medianOf(e.lat, func(s Sample) float64 { return us(s.P50) })
		r.P99US = medianOf(e.lat, func(s Sample) float64 { return us(s.P99) })
		r.CallsPerSec = medianOf(e.lat, func(s Sample) float64 { return s.CallsPerSec })
		r.CPUUSPerCall = medianOf(e.lat, func(s Sample) float64 { return us(s.CPUPerCall) })
	}
	if len(e.agg) > 0 {
		r.AggCallsPerSec = medianOf(e.agg, func(s Sample) float64 { return s.CallsPerSec })
		r.AggCPUUSPerCall = medianOf(e.agg, func(s Sample) float64 { return us(s.CPUPerCall) })
		r.AggCallers, r.AggServers = e.agg[0].Callers, e.agg[0].Servers
	}
	if len(e.echo) > 0 {
		r.EchoBytes = cfg.echoSize
		r.EchoP50US = medianOf(e.echo, func(s Sample) float64 { return us(s.P50) })
		r.EchoP99US = medianOf(e.echo, func(s Sample) float64 { return us(s.P99) })
		r.EchoCPUUS = medianOf(e.echo, func(s Sample) float64 { return us(s.CPUPerCall) })
		r.EchoGiBps = round3(ratio(2*float64(cfg.echoSize)/(1<<30), r.EchoP50US/1e6))
	}
	if len(e.extras)+len(e.finished) > 0 {
		r.Extras = map[string]float64{}
		for k, v := range e.extras {
			r.Extras[k] = round3(median(slices.Collect(maps.Values(v))))
		}
		for k, v := range e.finished {
			r.Extras[k] = round3(median(v))
		}
	}
	return r
}

var (
	p50Of  = func(s Sample) float64 { return us(s.P50) }
	p99Of  = func(s Sample) float64 { return us(s.P99) }
	cpuOfS = func(s Sample) float64 { return us(s.CPUPerCall) }
	rateOf = func(s Sample) float64 { return s.CallsPerSec }
)

func buildReport(cfg *config, es []*entry, starts map[string]map[int]float64, cStatic bool, closeErrs []error) *Report {
	rep := &Report{Missing: []string{}, Spreads: map[string]Spread{}, FlaggedRounds: []FlaggedRound{}}
	rep.Results.Config = map[string]any{
		"rounds": cfg.rounds, "duration_ms": cfg.dur.Milliseconds(), "quick": cfg.quick,
		"aggregate_callers": cfg.callers, "aggregate_servers": cfg.servers,
		"echo_bytes": cfg.echoSize, "spawns_per_round": cfg.spawns,
		"statistic": "per contender: median over rounds of each round's value (p50/p99 are per-call nearest-rank percentiles within a round); per ratio: median over rounds of that round's ratio",
		"phases":    "latency, CPU per call and echo: this process and its descendants pinned to one CPU (sched_setaffinity, rotating over the CPUs by round); aggregate, crash and start-up: unpinned",
	}
	rep.Results.Machine = machineInfo(cStatic)
	rep.Results.ProcessStart = map[string]float64{}
	for k, v := range starts {
		rep.Results.ProcessStart[k] = round3(median(slices.Collect(maps.Values(v))))
	}
	rep.Results.Errors = []string{}
	for _, err := range closeErrs {
		rep.Results.Errors = append(rep.Results.Errors, err.Error())
	}
	by := map[string]*entry{}
	for _, e := range es {
		r := contenderResult(cfg, e)
		if r.Error != "" {
			rep.Results.Errors = append(rep.Results.Errors, e.c.Name()+": "+r.Error)
		}
		if len(e.lat) == 0 {
			rep.Missing = append(rep.Missing, e.c.Name())
		}
		by[r.Name] = e
		rep.Results.Contenders = append(rep.Results.Contenders, r)
	}
	if bulkheadFactory == nil && (cfg.only == nil || cfg.only["bulkhead"]) {
		rep.Missing = append(rep.Missing, "bulkhead")
		rep.Results.Errors = append(rep.Results.Errors, "bulkhead: contender not built into this binary")
	}
	// Per-round series of one contender.
	lat := func(name string, f func(Sample) float64) map[int]float64 {
		if e := by[name]; e != nil {
			return byRound(e.lat, f)
		}
		return nil
	}
	agg := func(name string) map[int]float64 {
		if e := by[name]; e != nil {
			return byRound(e.agg, rateOf)
		}
		return nil
	}
	echo := func(name string) map[int]float64 {
		if e := by[name]; e != nil {
			return byRound(e.echo, p50Of)
		}
		return nil
	}
	extra := func(name, k string) map[int]float64 {
		if e := by[name]; e != nil {
			return e.extras[k]
		}
		return nil
	}
	finished := func(name, k string) map[int]float64 {
		if e := by[name]; e != nil {
			return listByRound(e.finished[k])
		}
		return nil
	}
	cP50 := lat("c_floor", p50Of)
	for _, r := range rep.Results.Contenders {
		r.P50VsCSpread = spreadOf(lat(r.Name, p50Of), cP50)
		r.P99VsCSpread = spreadOf(lat(r.Name, p99Of), lat("c_floor", p99Of))
		r.AggVsCSpread = spreadOf(agg(r.Name), agg("c_floor"))
		r.P50VsCFloor = r.P50VsCSpread.Median
	}
	rep.CFloorP50US = round3(median(slices.Collect(maps.Values(cP50))))
	rep.ShmNullCallP50US = round3(median(slices.Collect(maps.Values(lat("bulkhead_shm", p50Of)))))
	for _, k := range []struct {
		name     string
		dst      *float64
		num, den map[int]float64
	}{
		{"null_call_vs_floor", &rep.NullCallVsFloor, lat("bulkhead", p50Of), cP50},
		{"goplugin_grpc_vs_bulkhead", &rep.GopluginGRPCVsBulkhead, lat("goplugin_grpc", p50Of), lat("bulkhead", p50Of)},
		{"goplugin_grpc_throughput_ratio", &rep.GopluginGRPCThroughputRatio, agg("bulkhead"), agg("goplugin_grpc")},
		{"netrpc_vs_bulkhead", &rep.NetRPCVsBulkhead, lat("net_rpc", p50Of), lat("bulkhead", p50Of)},
		{"aggregate_vs_c", &rep.AggregateVsC, agg("bulkhead"), agg("c_floor")},
		{"respawn_vs_exec", &rep.RespawnVsExec, extra("bulkhead", "respawn_us"), starts["go_compare_binary_us"]},
		{"respawn_spare_vs_exec", &rep.RespawnSpareVsExec, extra("bulkhead", "respawn_spare_us"), starts["go_compare_binary_us"]},
		{"idle256_vs_idle1", &rep.Idle256VsIdle1, finished("bulkhead", "idle256_p50_us"), finished("bulkhead", "idle1_p50_us")},
		{"mib_echo_vs_c", &rep.MiBEchoVsC, echo("bulkhead"), echo("c_floor")},
		{"shm_null_call_vs_floor", &rep.ShmNullCallVsFloor, lat("bulkhead_shm", p50Of), cP50},
		{"aggregate_pipelined_vs_c", &rep.AggregatePipelinedVsC, agg("bulkhead_pipelined"), agg("c_floor")},
		{"goplugin_grpc_throughput_ratio_pipelined", &rep.GopluginGRPCThroughputRatioPipelined, agg("bulkhead_pipelined"), agg("goplugin_grpc")},
		{"warm_activation_vs_null_call", &rep.WarmActivationVsNullCall, lat("bulkhead_activation", p50Of), lat("bulkhead", p50Of)},
		{"aggregate_shm_pipelined_vs_c", &rep.AggregateShmPipelinedVsC, agg("bulkhead_shm_pipelined"), agg("c_floor")},
		{"goplugin_grpc_throughput_ratio_shm_pipelined", &rep.GopluginGRPCThroughputRatioShmPipelined, agg("bulkhead_shm_pipelined"), agg("goplugin_grpc")},
		{"cpu_per_call_vs_raw_go", &rep.CPUPerCallVsRawGo, lat("bulkhead", cpuOfS), lat("raw_go", cpuOfS)},
		{"shm_null_call_vs_c_shm", &rep.ShmNullCallVsCShm, lat("bulkhead_shm", p50Of), lat("c_shm_floor", p50Of)},
	} {
		sp := spreadOf(k.num, k.den)
		*k.dst = sp.Median
		rep.Spreads[k.name] = sp
		if sp.Median == 0 {
			rep.Missing = append(rep.Missing, k.name)
		}
	}
	if rep.CFloorP50US == 0 {
		rep.Missing = append(rep.Missing, "c_floor_p50_us")
	}
	rep.FlaggedRounds = append(rep.FlaggedRounds, flagFloor("c_floor p50 (pinned)", cP50)...)
	rep.FlaggedRounds = append(rep.FlaggedRounds, flagFloor("c_floor aggregate", agg("c_floor"))...)
	rep.FlaggedRounds = append(rep.FlaggedRounds, flagFloor("c_shm_floor p50 (pinned)", lat("c_shm_floor", p50Of))...)
	slices.SortFunc(rep.FlaggedRounds, func(a, b FlaggedRound) int { return a.Round - b.Round })
	return rep
}

func machineInfo(cStatic bool) map[string]any {
	m := map[string]any{
		"go": runtime.Version(), "goos": runtime.GOOS, "goarch": runtime.GOARCH,
		"cpus": runtime.NumCPU(), "c_static": cStatic,
	}
	if out, err := exec.Command("gcc", "--version").Output(); err == nil {
		m["cc"] = strings.SplitN(string(out), "\n", 2)[0]
	}
	return m
}

func (rep *Report) writeTable(w io.Writer) {
	cfg := rep.Results.Config
	fmt.Fprintf(w, "bulkhead bench/compare: %v rounds x %vms windows, interleaved; median over rounds; latency pinned to one CPU, aggregate unpinned. %v CPUs, %v\n\n",
		cfg["rounds"], cfg["duration_ms"], rep.Results.Machine["cpus"], rep.Results.Machine["go"])
	fmt.Fprintf(w, "%-26s %9s %9s %11s %9s %13s %9s %9s\n",
		"null call", "p50 µs", "p99 µs", "calls/s", "CPU µs", "aggregate/s", "agg CPU", "p50 / C")
	fmt.Fprintf(w, "%-26s %9s %9s %11s %9s %13s %9s %9s\n",
		"", "1 caller", "", "1 caller", "per call", "(callers/srv)", "µs/call", "")
	for _, r := range rep.Results.Contenders {
		if r.Rounds == 0 {
			fmt.Fprintf(w, "%-26s unavailable: %s\n", r.Label, r.Error)
			continue
		}
		aggs := fmt.Sprintf("%s (%d/%d)", commas(r.AggCallsPerSec), r.AggCallers, r.AggServers)
		if r.AggCallers == 0 {
			aggs = "-"
		}
		fmt.Fprintf(w, "%-26s %9.1f %9.1f %11s %9.1f %13s %9.1f %8.2fx\n",
			r.Label, r.P50US, r.P99US, commas(r.CallsPerSec), r.CPUUSPerCall, aggs, r.AggCPUUSPerCall, r.P50VsCFloor)
	}
	fmt.Fprintln(w)
	for _, r := range rep.Results.Contenders {
		if r.EchoP50US > 0 {
			fmt.Fprintf(w, "%d KiB echo, %-18s p50 %8.1f µs  p99 %8.1f µs  CPU %8.1f µs/call  %.2f GiB/s\n",
				r.EchoBytes>>10, r.Label+":", r.EchoP50US, r.EchoP99US, r.EchoCPUUS, r.EchoGiBps)
		}
	}
	ps := rep.Results.ProcessStart
	fmt.Fprintf(w, "process start (fork/exec until 1 byte back): static C %.0f µs, compare binary %.0f µs\n",
		ps["c_static_us"], ps["go_compare_binary_us"])
	for _, r := range rep.Results.Contenders {
		keys := make([]string, 0, len(r.Extras))
		for k := range r.Extras {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s: %s = %.2f\n", r.Label, k, r.Extras[k])
		}
	}
	fmt.Fprintf(w, "\n%-46s %8s %8s %8s %7s\n", "ratio (per round)", "median", "min", "max", "rounds")
	keys := slices.Sorted(maps.Keys(rep.Spreads))
	for _, k := range keys {
		sp := rep.Spreads[k]
		fmt.Fprintf(w, "%-46s %8.3f %8.3f %8.3f %7d\n", k, sp.Median, sp.Min, sp.Max, sp.Rounds)
	}
	for _, f := range rep.FlaggedRounds {
		fmt.Fprintf(w, "FLAGGED round %d: %s %.2f, median %.2f (%.1fx)\n", f.Round, f.Floor, f.Value, f.Median, f.Factor)
	}
	if len(rep.Missing) > 0 {
		fmt.Fprintf(w, "missing: %s\n", strings.Join(rep.Missing, ", "))
	}
	for _, e := range rep.Results.Errors {
		fmt.Fprintf(w, "note: %s\n", e)
	}
}

// commas formats a rate as an integer with thousands separators.
func commas(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
