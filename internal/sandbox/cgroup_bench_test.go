package sandbox

import (
	"os"
	"os/exec"
	"testing"
)

// BenchmarkCgroup is what a cgroup costs a worker's start on this
// machine's hierarchy (v1 here): make, a cgroup made and removed (what
// reusing one saves); move, a started process moved into one (what is
// left on v1; CLONE_INTO_CGROUP does without on v2).
func BenchmarkCgroup(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("cgroups need root here")
	}
	l := CgroupLimits{MemoryMax: 1 << 30, PidsMax: 256, CPUMax: 1}
	b.Run("make", func(b *testing.B) {
		for b.Loop() {
			c, err := NewCgroup(l)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Delete(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("move", func(b *testing.B) {
		c, err := NewCgroup(l)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Delete()
		for b.Loop() {
			b.StopTimer()
			cmd := exec.Command("sleep", "1000")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			err := c.Add(cmd.Process.Pid)
			b.StopTimer()
			cmd.Process.Kill()
			cmd.Wait()
			b.StartTimer()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
