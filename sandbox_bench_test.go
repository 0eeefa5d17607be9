package bulkhead_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// BenchmarkSandboxNullCall alternates blocks of 1,000 null calls on a pool
// whose worker runs under the "files" seccomp profile and on one without,
// so that both see the same load, and reports seccomp/bare.
func BenchmarkSandboxNullCall(b *testing.B) {
	filtered := benchPoolCfg(b, bulkhead.Config{Workers: 1, Sandbox: bulkhead.Sandbox{Seccomp: "files"}})
	bare := benchPoolCfg(b, bulkhead.Config{Workers: 1})
	ctx := context.Background()
	const block = 1000
	run := func(p *bulkhead.Pool) time.Duration {
		t0 := time.Now()
		for range block {
			if _, err := p.Call(ctx, "null"); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	var tf, tb time.Duration
	for b.Loop() {
		tf += run(filtered)
		tb += run(bare)
	}
	b.ReportMetric(float64(tf)/float64(tb), "seccomp/bare")
	b.ReportMetric(float64(tf.Nanoseconds())/float64(b.N*block), "seccomp-ns/call")
	b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N*block), "bare-ns/call")
}

// BenchmarkSandboxSpawn alternates starting a pool of one worker (spawn to
// HELLO; Close is not timed) with a sandbox and without, and reports
// sandboxed/bare: full is a pinned binary, its own cgroup with memory, pids
// and CPU limits, and the "files" seccomp profile (through the
// trampoline); seccomp and cgroup are those parts alone, pidns a PID
// namespace alone. Each start is a new pool's first: the pinned binary is
// hashed, and the cgroup made, at each (BenchmarkSandboxRespawn is a
// long-lived pool's).
func BenchmarkSandboxSpawn(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("cgroups need root")
	}
	exe, _ := os.Executable()
	f, err := os.Open(exe)
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	cg := bulkhead.Sandbox{MemoryMax: 1 << 30, PidsMax: 256, CPUMax: 1}
	full := cg
	full.SHA256, full.Seccomp = hex.EncodeToString(h.Sum(nil)), "files"
	for _, tc := range []struct {
		name string
		sb   bulkhead.Sandbox
	}{{"full", full}, {"seccomp", bulkhead.Sandbox{Seccomp: "files"}}, {"cgroup", cg}, {"pidns", bulkhead.Sandbox{IsolatePID: true}}} {
		b.Run(tc.name, func(b *testing.B) {
			var ts, tb time.Duration
			for b.Loop() {
				ts += benchSpawn(b, exe, tc.sb)
				tb += benchSpawn(b, exe, bulkhead.Sandbox{})
			}
			b.ReportMetric(float64(ts)/float64(tb), "sandboxed/bare")
			b.ReportMetric(float64(ts.Microseconds())/float64(b.N), "sandboxed-us/spawn")
			b.ReportMetric(float64(tb.Microseconds())/float64(b.N), "bare-us/spawn")
		})
	}
}

// benchSpawn is the time New takes to start one worker with sb.
func benchSpawn(b *testing.B, exe string, sb bulkhead.Sandbox) time.Duration {
	t0 := time.Now()
	p, err := bulkhead.New(context.Background(), bulkhead.Config{Command: exe, Workers: 1, Sandbox: sb,
		Env: []string{"GORACE=atexit_sleep_ms=0"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	d := time.Since(t0)
	p.Close(context.Background())
	return d
}

// BenchmarkSandboxRespawn alternates, on a pool of one worker with the full
// sandbox (nocgroup: the same without its cgroup) and on one without, a
// call that kills its worker and a null call that waits for the
// replacement, and reports the time from the crash to the null call's
// answer, sandboxed/bare. Unlike BenchmarkSandboxSpawn, the
// pool's per-pool work (the pinned binary's hash, the Landlock ABI) is done
// once, as in a long-lived pool.
func BenchmarkSandboxRespawn(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("cgroups need root")
	}
	exe, _ := os.Executable()
	f, err := os.Open(exe)
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	full := bulkhead.Sandbox{SHA256: hex.EncodeToString(h.Sum(nil)), MemoryMax: 1 << 30, PidsMax: 256, CPUMax: 1,
		Seccomp: "files", ReadOnly: []string{"/proc"}}
	nocg := bulkhead.Sandbox{SHA256: full.SHA256, Seccomp: "files", ReadOnly: []string{"/proc"}}
	agedBinary(b, exe)
	for _, tc := range []struct {
		name string
		sb   bulkhead.Sandbox
	}{{"full", full}, {"nocgroup", nocg}} {
		b.Run(tc.name, func(b *testing.B) { benchRespawn(b, tc.sb) })
	}
}

// benchRespawn alternates respawns with sb and without.
func benchRespawn(b *testing.B, sb bulkhead.Sandbox) {
	pools := [2]*bulkhead.Pool{
		benchPoolCfg(b, bulkhead.Config{Workers: 1, Sandbox: sb, Env: []string{"GORACE=atexit_sleep_ms=0"}}),
		benchPoolCfg(b, bulkhead.Config{Workers: 1, Env: []string{"GORACE=atexit_sleep_ms=0"}}),
	}
	ctx := context.Background()
	respawn := func(p *bulkhead.Pool) time.Duration {
		t0 := time.Now()
		if _, err := p.Call(ctx, "kill"); err == nil {
			b.Fatal("kill call succeeded")
		}
		if _, err := p.Call(ctx, "null"); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	var ts, tb time.Duration
	for b.Loop() {
		ts += respawn(pools[0])
		tb += respawn(pools[1])
	}
	b.ReportMetric(float64(ts)/float64(tb), "sandboxed/bare")
	b.ReportMetric(float64(ts.Microseconds())/float64(b.N), "sandboxed-us/respawn")
	b.ReportMetric(float64(tb.Microseconds())/float64(b.N), "bare-us/respawn")
}

// agedBinary waits until exe, which go test has just written, is over a
// second old: a pinned binary is hashed again at each start until then
// (a write in the same clock tick as the check could hide behind an
// unchanged ctime), which a deployed binary never is. Waiting for a
// clock, not for another goroutine. A copy cannot be aged instead: the pin
// trusts the ctime because only the kernel sets it, always to the present
// (os.Chtimes sets the mtime, and moves the ctime to now; so do a copy, a
// link and a rename), and it should not trust the mtime, which whoever
// swaps the binary can set back.
func agedBinary(b *testing.B, exe string) {
	var st syscall.Stat_t
	if err := syscall.Stat(exe, &st); err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Until(time.Unix(st.Ctim.Unix()).Add(1100 * time.Millisecond)))
}
