package sandbox

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/proc"
)

// The holder is PID 1 of a new PID namespace; a process the spawner starts
// in it is another pid there, and the holder's SIGKILL ends it and the child it
// moved to a session of its own. CI runs it without cgo too (the holder
// in Go).
func TestPidNSHolder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a PID namespace needs root here")
	}
	ns, err := newPidNS()
	if err != nil {
		t.Fatal(err)
	}
	sp := proc.NewSpawner()
	defer sp.Close()
	cmd := exec.Command("/bin/sh", "-c", "setsid sleep 1000 & exec sleep 1000")
	if err := sp.StartIn(cmd, ns.ns); err != nil {
		ns.end()
		t.Fatal(err)
	}
	link, err := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	// PID 2 with cgo; without, the Go holder's threads took pids first.
	st, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
	var inner int
	for line := range strings.Lines(string(st)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" {
			inner, _ = strconv.Atoi(f[2])
		}
	}
	if inner < 2 {
		t.Errorf("the process is not in the holder's namespace, or is its PID 1:\n%s", st)
	}
	ns.kill()
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the process in the namespace: %v, want killed with it", err)
	}
	ns.end()
	for _, e := range func() []os.DirEntry { d, _ := os.ReadDir("/proc"); return d }() {
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == link {
			if st, _ := os.ReadFile("/proc/" + e.Name() + "/stat"); !strings.Contains(string(st), ") Z ") {
				t.Errorf("process %s left in the namespace", e.Name())
			}
		}
	}
}
