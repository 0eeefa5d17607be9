package sandbox

import (
	"os"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"
)

// Making and removing a cgroup takes a mkdir and an rmdir in each v1
// hierarchy (three, with CPUMax), about as long as a worker's whole start
// on a loaded machine. A plan keeps the cgroups of its dead workers, once
// emptied and reset, for its next starts; on cgroup v2 a worker is cloned
// straight into its cgroup (CLONE_INTO_CGROUP), with no move at all.

// maxSpareCgroups bounds the emptied cgroups a plan keeps.
const maxSpareCgroups = 8

// cloneFD opens the cgroup's directory for SysProcAttr.CgroupFD, on cgroup
// v2 (CLONE_INTO_CGROUP: the worker starts in it); -1 on v1, whose
// workers are moved in once started (Add).
func (c *Cgroup) cloneFD() (int, error) {
	if c.v2 == nil {
		return -1, nil
	}
	fd, err := unix.Open(c.dirs[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fail("cgroup", err, "opening %s for CLONE_INTO_CGROUP", c.dirs[0])
	}
	return fd, nil
}

// reset readies the empty cgroup of a dead worker for the next one: its
// peak is set back to its usage now, and its counters' values are kept
// as the zero of the next Usage. Only v1 cgroups are reused: a v2
// cgroup's memory.peak is not reset on the kernels bulkhead supports.
func (c *Cgroup) reset() bool {
	if c.v1 == nil {
		return false
	}
	c.Kill()
	if pids, err := c.procs(); err != nil || len(pids) > 0 {
		return false // a process that does not die (D state) keeps it
	}
	mem := c.path(cgroup1.Memory)
	if err := os.WriteFile(filepath.Join(mem, "memory.max_usage_in_bytes"), []byte("0"), 0); err != nil {
		return false
	}
	c.base = c.counters()
	return true
}

// takeCgroup is a spare cgroup of p's, or a new one.
func (p *Plan) takeCgroup(l CgroupLimits) (*Cgroup, error) {
	p.cgMu.Lock()
	if n := len(p.spare); n > 0 {
		c := p.spare[n-1]
		p.spare = p.spare[:n-1]
		p.cgMu.Unlock()
		return c, nil
	}
	p.cgMu.Unlock()
	return NewCgroup(l)
}

// putCgroup keeps a dead worker's cgroup for the next start, if it can be
// reused and the plan is open; else removes it.
func (p *Plan) putCgroup(c *Cgroup) error {
	if c.reset() {
		p.cgMu.Lock()
		if !p.closed && len(p.spare) < maxSpareCgroups {
			p.spare = append(p.spare, c)
			p.cgMu.Unlock()
			return nil
		}
		p.cgMu.Unlock()
	}
	return c.Delete()
}

// Close removes the plan's spare cgroups; a start after it makes a new
// one, and a cgroup released after it is removed. The pool or activator
// that owns the plan calls it once every worker has been reaped.
func (p *Plan) Close() error {
	p.cgMu.Lock()
	spare := p.spare
	p.spare, p.closed = nil, true
	p.cgMu.Unlock()
	var first error
	for _, c := range spare {
		if err := c.Delete(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// counters reads the cgroup's cumulative counters, which Usage reports
// from base on.
func (c *Cgroup) counters() cgroupCounters {
	return cgroupCounters{
		oomKills: eventCount(filepath.Join(c.path(cgroup1.Memory), "memory.oom_control"), "oom_kill"),
		pidsMax:  eventCount(filepath.Join(c.path(cgroup1.Pids), "pids.events"), "max"),
	}
}

// cgroupCounters are a v1 cgroup's counters at its reuse.
type cgroupCounters struct{ oomKills, pidsMax uint64 }
