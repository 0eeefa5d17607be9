package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	bench "github.com/bulkhead-go/bulkhead/bench"
)

// cFloor is the kernel floor: bench/csrc/pingpong.c, built at run time with
// the machine's C compiler. Each measurement runs the program once; it forks
// its own server and times itself, so fork and warm-up are outside the window.
type cFloor struct {
	cfg    *config
	bin    string
	static bool
}

func (c *cFloor) Name() string  { return "c_floor" }
func (c *cFloor) Label() string { return "C socketpair floor" }

func (c *cFloor) Setup(ctx context.Context) error {
	bin, static, err := buildPingPong(ctx)
	if err != nil {
		return err
	}
	c.bin, c.static = bin, static
	return nil
}

func (c *cFloor) Close() error { return nil }

// cResult is the JSON line pingpong prints.
type cResult struct {
	Mode         string  `json:"mode"`
	Calls        float64 `json:"calls"`
	Secs         float64 `json:"secs"`
	P50NS        int64   `json:"p50_ns"`
	P99NS        int64   `json:"p99_ns"`
	CallsPerSec  float64 `json:"calls_per_s"`
	CPUNSPerCall float64 `json:"cpu_ns_per_call"`
}

func (c *cFloor) run(ctx context.Context, args ...string) (cResult, error) {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		return cResult{}, fmt.Errorf("pingpong %v: %w", args, err)
	}
	var r cResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil {
		return cResult{}, fmt.Errorf("pingpong %v: bad output %q: %w", args, out, err)
	}
	if r.Calls <= 0 {
		return cResult{}, fmt.Errorf("pingpong %v: no calls made", args)
	}
	return r, nil
}

func ms(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }

func (r cResult) sample(callers, servers int) Sample {
	return Sample{
		P50: time.Duration(r.P50NS), P99: time.Duration(r.P99NS),
		CallsPerSec: r.CallsPerSec, CPUPerCall: time.Duration(r.CPUNSPerCall),
		Calls: int(r.Calls), Callers: callers, Servers: servers,
	}
}

func (c *cFloor) Latency(ctx context.Context, d time.Duration) (Sample, error) {
	r, err := c.run(ctx, "lat", ms(d), "1000", "4000000")
	return r.sample(1, 1), err
}

// Throughput runs cfg.servers independent pairs, one caller each: the C
// floor has no multiplexing, so "2 pairs" is its aggregate configuration.
func (c *cFloor) Throughput(ctx context.Context, d time.Duration) (Sample, error) {
	n := c.cfg.servers
	r, err := c.run(ctx, "tput", strconv.Itoa(n), ms(d))
	return r.sample(n, n), err
}

func (c *cFloor) Echo(ctx context.Context, size int, d time.Duration) (Sample, error) {
	r, err := c.run(ctx, "echo", strconv.Itoa(size), ms(d), "100000")
	return r.sample(1, 1), err
}

// buildPingPong compiles the embedded pingpong.c into the user cache dir
// (keyed by a hash of the source and the compiler version) unless a build is
// already there. It tries a static binary first, then a dynamic one.
func buildPingPong(ctx context.Context) (bin string, static bool, err error) {
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	ccPath, err := exec.LookPath(cc)
	if err != nil {
		return "", false, fmt.Errorf("%w: no C compiler (%s): %v", errUnavailable, cc, err)
	}
	ver, _ := exec.CommandContext(ctx, ccPath, "--version").Output()
	h := sha256.New()
	h.Write(bench.PingPongC)
	h.Write(ver)
	key := hex.EncodeToString(h.Sum(nil))[:16]
	dir := cacheDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	src := filepath.Join(dir, "pingpong-"+key+".c")
	for _, static := range []bool{true, false} {
		bin := filepath.Join(dir, "pingpong-"+key)
		args := []string{"-O2", "-o"}
		if static {
			bin += "-static"
		} else {
			bin += "-dyn"
		}
		if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
			return bin, static, nil
		}
		if err := os.WriteFile(src, bench.PingPongC, 0o644); err != nil {
			return "", false, err
		}
		tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
		args = append(args, tmp, src)
		if static {
			args = append(args, "-static")
		}
		out, cerr := exec.CommandContext(ctx, ccPath, args...).CombinedOutput()
		if cerr != nil {
			os.Remove(tmp)
			err = fmt.Errorf("%s %v: %v\n%s", cc, args, cerr, out)
			continue
		}
		if err := os.Rename(tmp, bin); err != nil {
			return "", false, err
		}
		return bin, static, nil
	}
	return "", false, fmt.Errorf("%w: building pingpong.c: %v", errUnavailable, err)
}

func cacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "bulkhead-bench")
	}
	return filepath.Join(os.TempDir(), "bulkhead-bench")
}

// Extras measures the same-CPU floor: the latency round trip with both
// processes pinned to one CPU, so no cross-CPU wake-up is in the path. It
// tells how much of the unpinned floor is wake-up cost of the machine.
func (c *cFloor) Extras(ctx context.Context) (map[string]float64, error) {
	r, err := c.run(ctx, "lat", ms(c.cfg.dur/2), "1000", "4000000", "pin")
	if err != nil {
		return nil, err
	}
	return map[string]float64{"same_cpu_p50_us": float64(r.P50NS) / 1e3, "same_cpu_p99_us": float64(r.P99NS) / 1e3}, nil
}

// cShmFloor is the shared-memory floor: pingpong.c's "shm" mode, 16 bytes
// each way through a shared page with futex doorbells, each side spinning as
// many polls as bulkhead's default Config.ShmSpin before it sleeps. It is
// the floor for bulkhead's shared-memory transport (shm_null_call_vs_c_shm).
// It has no aggregate measurement.
type cShmFloor struct {
	cfg *config
	bin string
}

// defaultShmSpin is bulkhead's default Config.ShmSpin (config.go).
const defaultShmSpin = 20000

func (c *cShmFloor) Name() string  { return "c_shm_floor" }
func (c *cShmFloor) Label() string { return "C shared-memory floor" }
func (c *cShmFloor) Close() error  { return nil }

func (c *cShmFloor) Setup(ctx context.Context) error {
	bin, _, err := buildPingPong(ctx)
	c.bin = bin
	return err
}

func (c *cShmFloor) Latency(ctx context.Context, d time.Duration) (Sample, error) {
	f := cFloor{cfg: c.cfg, bin: c.bin}
	r, err := f.run(ctx, "shm", ms(d), "1000", "4000000", strconv.Itoa(defaultShmSpin))
	return r.sample(1, 1), err
}

func (c *cShmFloor) Throughput(context.Context, time.Duration) (Sample, error) {
	return Sample{}, errNoAggregate
}
