package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// CgroupLimits are the limits of a worker's own cgroup. Zero leaves one
// unlimited.
type CgroupLimits struct {
	MemoryMax int64   // bytes: memory.max (v2), memory.limit_in_bytes (v1)
	PidsMax   int64   // processes and threads: pids.max
	CPUMax    float64 // CPUs: cpu.max (v2), cfs_quota_us over cfs_period_us (v1)
}

// Cgroup is one worker's cgroup, nested under the dispatcher's own: on
// cgroup v2 if the unified hierarchy has the controllers, else on the v1
// controllers memory, pids and (for CPUMax) cpu. Every process the worker
// starts is in it, whatever session or process group it moves to, so Kill
// reaches them all.
type Cgroup struct {
	v1   cgroup1.Cgroup
	v2   *cgroup2.Manager
	path func(cgroup1.Name) string // a v1 controller's directory
	dirs []string                  // its directory in each hierarchy
	base cgroupCounters            // the v1 counters when it was last reused (reset)
}

// cgroupUsage is what a cgroup recorded about its processes.
type cgroupUsage struct {
	PeakMemory int64  // the most memory charged at once, bytes
	OOMKills   uint64 // processes the kernel's OOM killer killed in it
	// PidsMaxHits counts the forks it refused at pids.max (pids.events).
	PidsMaxHits uint64
}

const cpuPeriod = 100000 // µs

// NewCgroup creates a cgroup for one worker with limits l. Failing that
// (no cgroup hierarchy, or no right to create one) is an *Error naming the
// cgroup protection.
func NewCgroup(l CgroupLimits) (*Cgroup, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "bulkhead-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
	switch cgroups.Mode() {
	case cgroups.Unified:
		return newV2(unifiedMount, name, l)
	case cgroups.Legacy, cgroups.Hybrid:
		return newV1(name, l)
	}
	return nil, fail("cgroup", nil, "no cgroup hierarchy is mounted at /sys/fs/cgroup")
}

func newV1(name string, l CgroupLimits) (*Cgroup, error) {
	want := map[cgroup1.Name]bool{cgroup1.Memory: true, cgroup1.Pids: true, cgroup1.Cpu: l.CPUMax > 0}
	var found []cgroup1.Subsystem
	hier := func() ([]cgroup1.Subsystem, error) {
		all, err := cgroup1.Default()
		found = found[:0]
		for _, s := range all {
			if want[s.Name()] {
				found = append(found, s)
			}
		}
		return found, err
	}
	subs, err := hier()
	if err != nil {
		return nil, fail("cgroup", err, "listing the cgroup v1 controllers")
	}
	for n, need := range want {
		if need && !hasSubsystem(subs, n) {
			return nil, fail("cgroup", nil, "the cgroup v1 controller %q is not mounted", n)
		}
	}
	r := &specs.LinuxResources{Pids: &specs.LinuxPids{}}
	if l.PidsMax > 0 {
		r.Pids.Limit = &l.PidsMax
	}
	if l.MemoryMax > 0 {
		r.Memory = &specs.LinuxMemory{Limit: &l.MemoryMax}
	}
	if l.CPUMax > 0 {
		q, p := int64(l.CPUMax*cpuPeriod), uint64(cpuPeriod)
		r.CPU = &specs.LinuxCPU{Quota: &q, Period: &p}
	}
	path := cgroup1.NestedPath(name)
	cg, err := cgroup1.New(path, r, cgroup1.WithHierarchy(hier))
	if err != nil {
		return nil, fail("cgroup", err, "creating cgroup v1 %s (needs write access to the controllers' directories, as root has)", name)
	}
	dirs := map[cgroup1.Name]string{}
	for _, s := range subs {
		rel, err := path(s.Name())
		if p, ok := s.(interface{ Path(string) string }); ok && err == nil {
			dirs[s.Name()] = p.Path(rel)
		}
	}
	c := &Cgroup{v1: cg, path: func(n cgroup1.Name) string { return dirs[n] }}
	for _, d := range dirs {
		c.dirs = append(c.dirs, d)
	}
	return c, nil
}

func hasSubsystem(subs []cgroup1.Subsystem, n cgroup1.Name) bool {
	for _, s := range subs {
		if s.Name() == n {
			return true
		}
	}
	return false
}

// unifiedMount is where the cgroup v2 hierarchy is, on a unified system.
const unifiedMount = "/sys/fs/cgroup"

// newV2 creates the cgroup on the v2 hierarchy mounted at mount. Without a
// limit it needs no controller (the tests use that on a hybrid system's
// empty v2 mount).
func newV2(mount, name string, l CgroupLimits) (*Cgroup, error) {
	self, err := cgroup2.NestedGroupPath("")
	if err != nil {
		return nil, fail("cgroup", err, "finding the dispatcher's own cgroup v2")
	}
	r := &cgroup2.Resources{}
	if l.PidsMax > 0 {
		r.Pids = &cgroup2.Pids{Max: l.PidsMax}
	}
	if l.MemoryMax > 0 {
		r.Memory = &cgroup2.Memory{Max: &l.MemoryMax}
	}
	if l.CPUMax > 0 {
		q, p := int64(l.CPUMax*cpuPeriod), uint64(cpuPeriod)
		r.CPU = &cgroup2.CPU{Max: cgroup2.NewCPUMax(&q, &p)}
	}
	m, err := cgroup2.NewManager(mount, filepath.Join(self, name), r)
	if err != nil {
		return nil, fail("cgroup", err, "creating cgroup v2 %s (its parent must delegate the pids, memory and cpu controllers)", name)
	}
	return &Cgroup{v2: m, dirs: []string{filepath.Join(mount, self, name)}}, nil
}

// Add moves process pid into the cgroup.
func (c *Cgroup) Add(pid int) error {
	var err error
	if c.v2 != nil {
		err = c.v2.AddProc(uint64(pid))
	} else {
		err = c.v1.AddProc(uint64(pid))
	}
	if err != nil {
		return fail("cgroup", err, "moving worker %d into its cgroup", pid)
	}
	return nil
}

// Kill SIGKILLs every process in the cgroup, and again any it forked in
// the meantime, and waits until the cgroup is empty: a process leaves it
// when it exits (it may be a zombie still, holding nothing). It gives up
// after about 2 seconds (a process in uninterruptible sleep leaves when it
// wakes).
func (c *Cgroup) Kill() {
	atomic := false
	if c.v2 != nil {
		// cgroup.kill (Linux 5.14): atomic against forks. Written here,
		// not with the library's Kill, whose fallback logs through logrus.
		atomic = os.WriteFile(filepath.Join(c.dirs[0], "cgroup.kill"), []byte("1"), 0) == nil
	}
	pause := unix.Timespec{Nsec: 50000}
	for round := 0; round < 4000; round++ {
		pids, err := c.procs()
		if err != nil || len(pids) == 0 {
			return
		}
		if !atomic {
			for _, p := range pids {
				_ = unix.Kill(p, unix.SIGKILL)
			}
		}
		if round > 0 {
			_ = unix.Nanosleep(&pause, nil)
		}
	}
}

// procs lists the processes in the cgroup.
func (c *Cgroup) procs() ([]int, error) {
	if c.v2 != nil {
		ps, err := c.v2.Procs(true)
		out := make([]int, len(ps))
		for i, p := range ps {
			out[i] = int(p)
		}
		return out, err
	}
	ps, err := c.v1.Processes(cgroup1.Pids, true)
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.Pid
	}
	return out, err
}

// Usage reads what the cgroup recorded: call it after the worker died,
// before Delete.
func (c *Cgroup) Usage() cgroupUsage {
	var u cgroupUsage
	if c.v2 != nil {
		if st, err := c.v2.Stat(); err == nil && st.Memory != nil {
			u.PeakMemory = int64(st.Memory.MaxUsage)
			if st.MemoryEvents != nil {
				u.OOMKills = st.MemoryEvents.OomKill
			}
		}
		u.PidsMaxHits = eventCount(filepath.Join(c.dirs[0], "pids.events"), "max")
		return u
	}
	dir := c.path(cgroup1.Memory)
	if b, err := os.ReadFile(filepath.Join(dir, "memory.max_usage_in_bytes")); err == nil {
		u.PeakMemory, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	n := c.counters()
	u.OOMKills, u.PidsMaxHits = n.oomKills-c.base.oomKills, n.pidsMax-c.base.pidsMax
	return u
}

// eventCount is the counter key in a cgroup file of "key value" lines, or
// 0 if there is none.
func eventCount(file, key string) uint64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+" "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}

// Delete kills what is left in the cgroup and removes it. The killed
// leave within microseconds, and rmdir fails until then (the library's
// error does not say why), so it tries again for up to a second.
func (c *Cgroup) Delete() error {
	c.Kill()
	var err error
	for range 2000 {
		if c.v2 != nil {
			err = c.v2.Delete()
		} else {
			err = c.v1.Delete()
		}
		if err == nil || c.gone() {
			return nil
		}
		c.Kill()
		_ = unix.Nanosleep(&unix.Timespec{Nsec: 500000}, nil)
	}
	return fmt.Errorf("removing the worker's cgroup: %w", err)
}

// gone reports whether the cgroup's directories are all gone.
func (c *Cgroup) gone() bool {
	for _, d := range c.dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			return false
		}
	}
	return true
}

// parents are the directories the cgroup was made in, one per hierarchy.
func (c *Cgroup) parents() []string {
	var out []string
	for _, d := range c.dirs {
		out = append(out, filepath.Dir(d))
	}
	return out
}

// SweepStale removes, beneath the directories c was made in, the empty
// cgroups that earlier dispatchers left when they died before they could
// (named bulkhead-PID-..., with PID no longer running).
func (c *Cgroup) SweepStale() {
	for _, parent := range c.parents() {
		ents, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, e := range ents {
			rest, ok := strings.CutPrefix(e.Name(), "bulkhead-")
			pid, _, ok2 := strings.Cut(rest, "-")
			n, err := strconv.Atoi(pid)
			if !ok || !ok2 || err != nil || !e.IsDir() || unix.Kill(n, 0) != unix.ESRCH {
				continue
			}
			_ = unix.Rmdir(filepath.Join(parent, e.Name())) // fails if not empty: left alone
		}
	}
}
