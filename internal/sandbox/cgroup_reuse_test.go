package sandbox

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"golang.org/x/sys/unix"
)

// A plan reuses a dead worker's emptied cgroup for its next start, with its
// peak and counters starting again from zero, and Close removes it.
func TestCgroupReuse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root here")
	}
	p, err := NewPlan(Settings{PidsMax: 8})
	if err != nil {
		t.Fatal(err)
	}
	start := func(script string) (*Start, Usage) {
		spec := dispatch.Spec{Path: "/bin/sh", Command: "sh", StartTimeout: 10 * time.Second}
		st, err := p.Prepare("/bin/sh", nil, &spec, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		// Started stopped, so that it is in its cgroup before it forks.
		cmd := exec.Command("/bin/sh", "-c", "kill -STOP $$; "+script)
		cmd.SysProcAttr = spec.Attr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(cmd.Process.Pid, &ws, unix.WUNTRACED, nil); err != nil || !ws.Stopped() {
			t.Fatalf("wait for the stop: %v %v", ws, err)
		}
		if err := spec.Confine(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Wait()
		spec.KillAll()
		u, err := st.Reaped()
		if err != nil {
			t.Fatal(err)
		}
		return st, u
	}
	// A fork bomb hits pids.max.
	first, u := start("for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 100 & done; wait")
	if u.PidsMaxHits == 0 {
		t.Fatalf("no fork refused at pids.max 8: %+v", u)
	}
	second, u := start("true")
	if second.cg != first.cg {
		t.Fatal("the second start made a cgroup of its own instead of reusing the first's")
	}
	if u.PidsMaxHits != 0 {
		t.Fatalf("the reused cgroup reports the first worker's %d refused forks", u.PidsMaxHits)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range first.cg.dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s left after Close", d)
		}
	}
}

// The cgroup v2 code, for real, on this machine's cgroup2 mount, which has
// no controllers (they are all on v1, as in CI): a cgroup is made, a
// process cloned into it (CLONE_INTO_CGROUP) with a child in a session of
// its own, cgroup.kill kills both, and the cgroup is removed. The limits
// (memory.max, pids.max, cpu.max) need controllers, and are not tested
// here.
func TestCgroupV2(t *testing.T) {
	const mount = "/sys/fs/cgroup/unified"
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root here")
	}
	if _, err := os.Stat(filepath.Join(mount, "cgroup.procs")); err != nil {
		t.Skip("no cgroup2 mount at " + mount)
	}
	c, err := newV2(mount, "bulkhead-"+strconv.Itoa(os.Getpid())+"-v2test", CgroupLimits{})
	if errors.Is(err, unix.EROFS) {
		t.Skip(mount + " is read-only here")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Delete() // a second Delete finds nothing to do
	fd, err := c.cloneFD()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", "setsid sleep 1000 & echo $!; exec sleep 1000")
	cmd.Stdout = w
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	line := make([]byte, 32)
	n, _ := r.Read(line)
	child, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatalf("no child pid: %q", line[:n])
	}
	rel := strings.TrimPrefix(c.dirs[0], mount)
	for _, pid := range []int{cmd.Process.Pid, child} {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		if !strings.Contains(string(b), "0::"+rel+"\n") {
			t.Fatalf("process %d is not in %s:\n%s", pid, rel, b)
		}
	}
	if pids, err := c.procs(); err != nil || len(pids) != 2 {
		t.Fatalf("procs: %v, %v; want the shell and its child", pids, err)
	}
	c.Kill()
	_ = cmd.Wait()
	if pids, err := c.procs(); err != nil || len(pids) != 0 {
		t.Fatalf("procs after Kill: %v, %v", pids, err)
	}
	if u := c.Usage(); u != (cgroupUsage{}) {
		t.Fatalf("usage without controllers: %+v", u)
	}
	if c.reset() {
		t.Fatal("a v2 cgroup was reset for reuse")
	}
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.dirs[0]); err == nil {
		t.Fatalf("%s left after Delete", c.dirs[0])
	}
}
