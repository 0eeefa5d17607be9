package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// affinity pins this process and every descendant of it to one CPU for the
// latency phase, and gives them back the CPUs they started with for the
// aggregate phase. It sets the mask of every thread (sched_setaffinity is
// per thread on Linux); a thread or process created later inherits the mask
// of the thread that made it, so a pool's replacement worker or the C floor's
// forked server lands on the same CPU as its caller.
//
// Why pin: on a VM an idle vCPU halts, and waking it costs tens of
// microseconds; a ping-pong between two vCPUs pays that on every message
// when nothing keeps them busy, and a loaded machine hides it. With both
// sides on one CPU that cost is out of every contender alike.
type affinity struct {
	full unix.CPUSet // the mask this process started with
	cpus []int       // the CPUs in full, in order
}

func newAffinity() (*affinity, error) {
	a := &affinity{}
	if err := unix.SchedGetaffinity(0, &a.full); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	for c := range 1024 {
		if a.full.IsSet(c) {
			a.cpus = append(a.cpus, c)
		}
	}
	if len(a.cpus) == 0 {
		return nil, errors.New("sched_getaffinity: empty CPU mask")
	}
	return a, nil
}

// cpuFor returns the CPU the latency phase of round r uses: every contender
// of a round gets the same one, and the rounds rotate over the CPUs.
func (a *affinity) cpuFor(r int) int { return a.cpus[r%len(a.cpus)] }

// pin puts this process tree on cpu.
func (a *affinity) pin(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return setTreeAffinity(&set)
}

// unpin gives the tree back its starting mask.
func (a *affinity) unpin() error { return setTreeAffinity(&a.full) }

// setTreeAffinity sets set on every thread of this process and of its
// descendants. It makes two passes, so that a thread made during the first
// from a thread not yet moved is caught by the second.
func setTreeAffinity(set *unix.CPUSet) error {
	var errs []error
	for pass := range 2 {
		errs = errs[:0]
		for _, pid := range append([]int{os.Getpid()}, descendants(os.Getpid())...) {
			tids, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
			if err != nil {
				continue // exited
			}
			for _, t := range tids {
				tid, err := strconv.Atoi(t.Name())
				if err != nil {
					continue
				}
				err = unix.SchedSetaffinity(tid, set)
				if err != nil && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("sched_setaffinity(%d) pass %d: %w", tid, pass, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// descendants lists the processes below root, from /proc (each process's
// parent is field 4 of /proc/PID/stat).
func descendants(root int) []int {
	ents, _ := os.ReadDir("/proc")
	kids := map[int][]int{}
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
		if len(fs) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(fs[1]); err == nil {
			kids[ppid] = append(kids[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, k := range kids[p] {
			out = append(out, k)
			queue = append(queue, k)
		}
	}
	return out
}
