package bulkhead_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"golang.org/x/sys/unix"
)

// BenchmarkNullCall is the round trip of a call with no arguments and no
// result through Pool.Call, one caller, one worker.
func BenchmarkNullCall(b *testing.B) {
	p := benchPool(b, 1, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Call(ctx, "null"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNullCallParallel measures aggregate throughput with 2 workers
// and GOMAXPROCS*8 callers, without and with Config.Pipeline.
func BenchmarkNullCallParallel(b *testing.B) {
	for _, tc := range []struct {
		pipe int
		t    bulkhead.Transport
		spin int
	}{{0, bulkhead.TransportSocket, 0}, {8, bulkhead.TransportSocket, 0}, {8, bulkhead.TransportShm, 0}, {8, bulkhead.TransportShm, 200}, {8, bulkhead.TransportShm, 2000}} {
		name := map[bulkhead.Transport]string{bulkhead.TransportSocket: "socket", bulkhead.TransportShm: "shm"}[tc.t]
		if tc.spin != 0 {
			name += fmt.Sprint("/spin=", tc.spin)
		}
		b.Run(fmt.Sprintf("pipeline=%d/%s", tc.pipe, name), func(b *testing.B) {
			p := benchPoolCfg(b, bulkhead.Config{Workers: 2, Pipeline: tc.pipe, Transport: tc.t, ShmSpin: tc.spin})
			ctx := context.Background()
			b.SetParallelism(8)
			b.ReportAllocs()
			r0, w0 := syscallCounts(b, p)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := p.Call(ctx, "null"); err != nil {
						b.Error(err)
						return
					}
				}
			})
			r1, w1 := syscallCounts(b, p)
			b.ReportMetric(float64(r1-r0)/float64(b.N), "reads/op")
			b.ReportMetric(float64(w1-w0)/float64(b.N), "writes/op")
		})
	}
}

// BenchmarkEcho1MiB is the round trip of a 1 MiB byte string, decoded by
// the caller into a []byte. The worker's handler either takes a zero-copy
// view of the argument and returns it (view: Args.Bytes), or decodes it
// into a value and returns that (decode: one copy in the worker).
func BenchmarkEcho1MiB(b *testing.B) {
	for _, m := range []struct{ name, method string }{{"view", "echobytes"}, {"decode", "echo"}} {
		b.Run(m.name, func(b *testing.B) {
			p := benchPool(b, 1, 1)
			ctx := context.Background()
			payload := make([]byte, 1<<20)
			b.SetBytes(2 << 20)
			b.ReportAllocs()
			for b.Loop() {
				r, err := p.Call(ctx, m.method, payload)
				if err != nil {
					b.Fatal(err)
				}
				var out []byte
				if err := r.Decode(&out); err != nil || len(out) != len(payload) {
					b.Fatalf("echo: %d bytes, %v", len(out), err)
				}
				r.Release()
			}
		})
	}
}

func benchPool(b *testing.B, workers, conc int) *bulkhead.Pool {
	return benchPoolCfg(b, bulkhead.Config{Workers: workers, ConcurrencyPerWorker: conc})
}

func benchPoolCfg(b *testing.B, cfg bulkhead.Config) *bulkhead.Pool {
	b.Helper()
	cfg.Command, _ = os.Executable()
	cfg.Logger = slog.New(slog.DiscardHandler)
	p, err := bulkhead.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	// Make sure every worker has said HELLO before timing.
	for len(p.Workers()) < cfg.Workers {
		p.Call(context.Background(), "null")
	}
	b.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// BenchmarkRawSocketpair is the floor for BenchmarkNullCall in the same
// package: a ping-pong of 16-byte messages with blocking read/write between
// this process and a child (this test binary, re-executed), on locked threads.
// It runs over both socket types; bulkhead uses stream (docs/DESIGN.md).
func BenchmarkRawSocketpair(b *testing.B) {
	for _, typ := range []struct {
		name string
		t    int
	}{{"stream", unix.SOCK_STREAM}, {"seqpacket", unix.SOCK_SEQPACKET}} {
		b.Run(typ.name, func(b *testing.B) { rawPingPong(b, typ.t) })
	}
}

func rawPingPong(b *testing.B, sockType int) {
	fds, err := unix.Socketpair(unix.AF_UNIX, sockType|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	child := os.NewFile(uintptr(fds[1]), "child")
	exe, _ := os.Executable()
	attr := &os.ProcAttr{Env: bulkhead.HelperEnviron("pingpong"), Files: []*os.File{nil, os.Stdout, os.Stderr, child}}
	proc, err := os.StartProcess(exe, []string{exe}, attr)
	if err != nil {
		b.Fatal(err)
	}
	child.Close()
	fd := fdio.FD(fds[0])
	defer func() {
		unix.Close(fds[0])
		proc.Wait()
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 16)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fd.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := readFull(fd, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func readFull(fd fdio.FD, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := fd.Read(p[n:])
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// runPingPong is the child side of BenchmarkRawSocketpair.
func runPingPong() {
	runtime.LockOSThread()
	fd := fdio.FD(3)
	buf := make([]byte, 16)
	var n atomic.Int64
	for {
		if _, err := readFull(fd, buf); err != nil {
			os.Exit(0)
		}
		n.Add(1)
		if _, err := fd.Write(buf); err != nil {
			os.Exit(0)
		}
	}
}

// syscallCounts sums the read and write system calls (syscr, syscw in
// /proc/PID/io) of this process and p's workers, to show how many calls a
// system call carries.
func syscallCounts(b *testing.B, p *bulkhead.Pool) (reads, writes uint64) {
	b.Helper()
	pids := []int{os.Getpid()}
	for _, w := range p.Workers() {
		pids = append(pids, w.PID)
	}
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			var n uint64
			if _, err := fmt.Sscanf(line, "syscr: %d", &n); err == nil {
				reads += n
			} else if _, err := fmt.Sscanf(line, "syscw: %d", &n); err == nil {
				writes += n
			}
		}
	}
	return reads, writes
}
