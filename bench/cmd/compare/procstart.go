package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// procStart measures process start-up: fork/exec of a program until it has
// written one byte back on a pipe. It is the floor under any worker
// replacement time. Two programs: the static C binary (pingpong hello) and
// this compare binary itself (BENCH_CHILD=hello), which is also what the
// Go-based contenders run as their children.
type procStart struct {
	cBin string // "" when there is no C build
}

// round spawns each program n times, interleaved, and returns the medians in µs.
func (p *procStart) round(ctx context.Context, n int) (map[string]float64, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var cs, gs []float64
	for range n {
		if p.cBin != "" {
			d, err := timeToFirstByte(ctx, exec.Command(p.cBin, "hello"))
			if err != nil {
				return nil, err
			}
			cs = append(cs, float64(d)/1e3)
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "BENCH_CHILD=hello")
		d, err := timeToFirstByte(ctx, cmd)
		if err != nil {
			return nil, err
		}
		gs = append(gs, float64(d)/1e3)
	}
	out := map[string]float64{"go_compare_binary_us": median(gs)}
	if len(cs) > 0 {
		out["c_static_us"] = median(cs)
	}
	return out, nil
}

func timeToFirstByte(ctx context.Context, cmd *exec.Cmd) (time.Duration, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	cmd.Stdout = w
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	err = cmd.Start()
	w.Close()
	if err != nil {
		return 0, err
	}
	var b [1]byte
	_, rerr := io.ReadFull(r, b[:])
	d := time.Since(t0)
	werr := cmd.Wait()
	if rerr != nil {
		return 0, fmt.Errorf("%s: no byte back: %v (exit: %v)", cmd.Path, rerr, werr)
	}
	if werr != nil {
		return 0, fmt.Errorf("%s: %v", cmd.Path, werr)
	}
	return d, ctx.Err()
}

// helloChild is the compare binary's start-up probe: one byte, then exit.
func helloChild() error {
	_, err := os.Stdout.Write([]byte{'!'})
	return err
}
