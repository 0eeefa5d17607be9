package sandbox

import (
	"fmt"
	"syscall"
)

// Cause is which protection killed a sandboxed process, as its Usage
// tells once it is dead.
type Cause int

const (
	CauseNone    Cause = iota // none: it died of something else
	CauseSeccomp              // a system call outside its seccomp profile (Usage.Violation)
	CauseOOM                  // the kernel's OOM killer, at its cgroup's memory.max
	CausePids                 // it ran into its cgroup's pids.max, and died
)

// Verdict says whether the process's protections killed it, and in words
// why: the same for a pool's worker and an activator's class server.
// sig is the signal it died of; memoryMax its Settings.MemoryMax.
func (u *Usage) Verdict(sig syscall.Signal, memoryMax int64) (Cause, string) {
	switch {
	case u.Violation != nil:
		v := u.Violation
		return CauseSeccomp, fmt.Sprintf("made the system call %s (%d), outside its seccomp profile; killed", v.Name, v.Nr)
	case u.OOMKills > 0 && sig == syscall.SIGKILL:
		return CauseOOM, fmt.Sprintf("killed by the kernel's OOM killer at Sandbox.MemoryMax (%d bytes; its cgroup's peak: %d)",
			memoryMax, u.PeakMemory)
	case u.PidsMaxHits > 0:
		// A fork that fails is the process's to handle; one that dies
		// of it (a runtime that cannot start a thread) died of the limit.
		return CausePids, fmt.Sprintf("died after its cgroup refused %d new processes or threads at Sandbox.PidsMax", u.PidsMaxHits)
	}
	return CauseNone, ""
}
