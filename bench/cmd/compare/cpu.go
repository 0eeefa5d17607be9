package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cpuOf returns the CPU time used so far by this process plus the given
// child processes. Children are read from /proc/<pid>/task/*/schedstat
// (nanoseconds on CPU, per thread), falling back to the clock-tick totals in
// /proc/<pid>/stat. Deltas of cpuOf over a window charge both the caller's
// and the servers' work to the calls made in it.
func cpuOf(pids []int) time.Duration {
	t := selfCPU()
	for _, p := range pids {
		t += procCPU(p)
	}
	return t
}

func selfCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func procCPU(pid int) time.Duration {
	dir := "/proc/" + strconv.Itoa(pid)
	tasks, _ := filepath.Glob(dir + "/task/*/schedstat")
	var sum time.Duration
	ok := false
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // thread exited between glob and read
		}
		fs := strings.Fields(string(b))
		if len(fs) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			continue
		}
		sum += time.Duration(ns)
		ok = true
	}
	if ok && sum > 0 {
		return sum
	}
	return procStatCPU(dir)
}

// procStatCPU reads utime+stime (clock ticks, assumed 100 Hz) from
// /proc/<pid>/stat.
func procStatCPU(dir string) time.Duration {
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	fs := strings.Fields(string(b[i+1:]))
	// after "(comm)": state is fields[0]; utime and stime are stat fields 14 and 15.
	if len(fs) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fs[11], 10, 64)
	st, _ := strconv.ParseInt(fs[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// childrenWithEnv lists this process's direct children whose environment
// holds the given KEY=VALUE entry (for pools whose worker pids are not
// exposed). It scans /proc, so call it outside measured windows.
func childrenWithEnv(entry string) []int {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fs := strings.Fields(string(b[i+1:]))
		if len(fs) < 2 || fs[1] != strconv.Itoa(self) {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if string(kv) == entry {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
