package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// A cgroup is made and removed, and the empty cgroups of dead dispatchers
// beside it are swept.
func TestCgroupSweepStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root here")
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	c, err := NewCgroup(CgroupLimits{PidsMax: 10})
	if err != nil {
		t.Fatal(err)
	}
	var stale []string
	for _, p := range c.parents() {
		d := filepath.Join(p, "bulkhead-"+strconv.Itoa(dead.Process.Pid)+"-test")
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		stale = append(stale, d)
	}
	c.SweepStale()
	for _, d := range stale {
		if _, err := os.Stat(d); err == nil {
			os.Remove(d)
			t.Errorf("%s was not swept", d)
		}
	}
	for _, d := range c.dirs {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("the live cgroup %s was swept: %v", d, err)
		}
	}
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, d := range c.dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s left after Delete", d)
		}
	}
}
