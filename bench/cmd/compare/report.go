package main

import (
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is the JSON output: top-level ratios plus a results detail section.
// Every number is a finite float; a ratio that cannot be computed is 0 and
// its key is listed in Missing, together with every unavailable contender.
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
	// over the C socketpair floor (a stretch goal: under 2 µs absolute).
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

	Missing []string `json:"missing"`
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

func buildReport(cfg *config, es []*entry, starts map[string][]float64, cStatic bool, closeErrs []error) *Report {
	rep := &Report{Missing: []string{}}
	rep.Results.Config = map[string]any{
		"rounds": cfg.rounds, "duration_ms": cfg.dur.Milliseconds(), "quick": cfg.quick,
		"aggregate_callers": cfg.callers, "aggregate_servers": cfg.servers,
		"echo_bytes": cfg.echoSize, "spawns_per_round": cfg.spawns,
		"statistic": "median over rounds of each round's value (p50/p99 are per-call nearest-rank percentiles within a round)",
	}
	rep.Results.Machine = machineInfo(cStatic)
	rep.Results.ProcessStart = map[string]float64{}
	for k, v := range starts {
		rep.Results.ProcessStart[k] = round3(median(v))
	}
	rep.Results.Errors = []string{}
	for _, err := range closeErrs {
		rep.Results.Errors = append(rep.Results.Errors, err.Error())
	}
	by := map[string]*ContenderResult{}
	for _, e := range es {
		r := &ContenderResult{Name: e.c.Name(), Label: e.c.Label(), Rounds: len(e.lat)}
		if e.err != nil {
			r.Error = e.err.Error()
			rep.Results.Errors = append(rep.Results.Errors, e.c.Name()+": "+r.Error)
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
				r.Extras[k] = round3(median(v))
			}
			for k, v := range e.finished {
				r.Extras[k] = round3(median(v))
			}
		}
		if len(e.lat) == 0 {
			rep.Missing = append(rep.Missing, e.c.Name())
		}
		by[r.Name] = r
		rep.Results.Contenders = append(rep.Results.Contenders, r)
	}
	if bulkheadFactory == nil && (cfg.only == nil || cfg.only["bulkhead"]) {
		rep.Missing = append(rep.Missing, "bulkhead")
		rep.Results.Errors = append(rep.Results.Errors, "bulkhead: contender not built into this binary")
	}
	get := func(name string, f func(*ContenderResult) float64) float64 {
		if r := by[name]; r != nil {
			return f(r)
		}
		return 0
	}
	p50 := func(r *ContenderResult) float64 { return r.P50US }
	agg := func(r *ContenderResult) float64 { return r.AggCallsPerSec }
	echo := func(r *ContenderResult) float64 { return r.EchoP50US }
	extra := func(k string) func(*ContenderResult) float64 {
		return func(r *ContenderResult) float64 { return r.Extras[k] }
	}
	cP50 := get("c_floor", p50)
	for _, r := range rep.Results.Contenders {
		r.P50VsCFloor = round3(ratio(r.P50US, cP50))
	}
	rep.CFloorP50US = cP50
	rep.NullCallVsFloor = ratio(get("bulkhead", p50), cP50)
	rep.GopluginGRPCVsBulkhead = ratio(get("goplugin_grpc", p50), get("bulkhead", p50))
	rep.GopluginGRPCThroughputRatio = ratio(get("bulkhead", agg), get("goplugin_grpc", agg))
	rep.NetRPCVsBulkhead = ratio(get("net_rpc", p50), get("bulkhead", p50))
	rep.AggregateVsC = ratio(get("bulkhead", agg), get("c_floor", agg))
	rep.RespawnVsExec = ratio(get("bulkhead", extra("respawn_us")), rep.Results.ProcessStart["go_compare_binary_us"])
	rep.RespawnSpareVsExec = ratio(get("bulkhead", extra("respawn_spare_us")), rep.Results.ProcessStart["go_compare_binary_us"])
	rep.Idle256VsIdle1 = get("bulkhead", extra("idle256_vs_idle1"))
	rep.MiBEchoVsC = ratio(get("bulkhead", echo), get("c_floor", echo))
	rep.ShmNullCallVsFloor = ratio(get("bulkhead_shm", p50), cP50)
	rep.ShmNullCallP50US = round3(get("bulkhead_shm", p50))
	rep.AggregatePipelinedVsC = round3(ratio(get("bulkhead_pipelined", agg), get("c_floor", agg)))
	rep.GopluginGRPCThroughputRatioPipelined = round3(ratio(get("bulkhead_pipelined", agg), get("goplugin_grpc", agg)))
	rep.WarmActivationVsNullCall = round3(ratio(get("bulkhead_activation", p50), get("bulkhead", p50)))
	rep.AggregateShmPipelinedVsC = round3(ratio(get("bulkhead_shm_pipelined", agg), get("c_floor", agg)))
	rep.GopluginGRPCThroughputRatioShmPipelined = round3(ratio(get("bulkhead_shm_pipelined", agg), get("goplugin_grpc", agg)))
	for _, p := range []*float64{&rep.NullCallVsFloor, &rep.GopluginGRPCVsBulkhead, &rep.GopluginGRPCThroughputRatio,
		&rep.NetRPCVsBulkhead, &rep.AggregateVsC, &rep.RespawnVsExec, &rep.RespawnSpareVsExec, &rep.Idle256VsIdle1, &rep.MiBEchoVsC, &rep.ShmNullCallVsFloor} {
		*p = round3(*p)
	}
	for _, k := range []struct {
		name string
		v    float64
	}{
		{"c_floor_p50_us", rep.CFloorP50US},
		{"null_call_vs_floor", rep.NullCallVsFloor},
		{"goplugin_grpc_vs_bulkhead", rep.GopluginGRPCVsBulkhead},
		{"goplugin_grpc_throughput_ratio", rep.GopluginGRPCThroughputRatio},
		{"netrpc_vs_bulkhead", rep.NetRPCVsBulkhead},
		{"aggregate_vs_c", rep.AggregateVsC},
		{"respawn_vs_exec", rep.RespawnVsExec},
		{"respawn_spare_vs_exec", rep.RespawnSpareVsExec},
		{"idle256_vs_idle1", rep.Idle256VsIdle1},
		{"mib_echo_vs_c", rep.MiBEchoVsC},
		{"shm_null_call_vs_floor", rep.ShmNullCallVsFloor},
	} {
		if k.v == 0 {
			rep.Missing = append(rep.Missing, k.name)
		}
	}
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
	fmt.Fprintf(w, "bulkhead bench/compare: %v rounds x %vms windows, interleaved; median over rounds. %v CPUs, %v\n\n",
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
	fmt.Fprintf(w, "\nnull_call_vs_floor %.2f  goplugin_grpc_vs_bulkhead %.2f  goplugin_grpc_throughput_ratio %.2f  netrpc_vs_bulkhead %.2f\n",
		rep.NullCallVsFloor, rep.GopluginGRPCVsBulkhead, rep.GopluginGRPCThroughputRatio, rep.NetRPCVsBulkhead)
	fmt.Fprintf(w, "aggregate_vs_c %.2f  respawn_vs_exec %.2f  respawn_spare_vs_exec %.2f  idle256_vs_idle1 %.2f  mib_echo_vs_c %.2f\n",
		rep.AggregateVsC, rep.RespawnVsExec, rep.RespawnSpareVsExec, rep.Idle256VsIdle1, rep.MiBEchoVsC)
	fmt.Fprintf(w, "with Pipeline 8: aggregate_pipelined_vs_c %.2f  goplugin_grpc_throughput_ratio_pipelined %.2f\n",
		rep.AggregatePipelinedVsC, rep.GopluginGRPCThroughputRatioPipelined)
	fmt.Fprintf(w, "warm_activation_vs_null_call %.2f\n", rep.WarmActivationVsNullCall)
	fmt.Fprintf(w, "with shared memory and Pipeline 8: aggregate_shm_pipelined_vs_c %.2f  goplugin_grpc_throughput_ratio_shm_pipelined %.2f\n",
		rep.AggregateShmPipelinedVsC, rep.GopluginGRPCThroughputRatioShmPipelined)
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
