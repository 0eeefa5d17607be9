package worker

import (
	"fmt"
	"os"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// profileEnv names the seccomp profile the dispatcher sandboxed this worker
// with (bulkhead.Sandbox.Seccomp), when it asks the worker to tighten it
// itself once started.
const profileEnv = "BULKHEAD_SANDBOX_PROFILE"

// lockDown engages the "compute" profile's second half just before HELLO:
// no file opened from then on. A filter installed before execve cannot tell
// the loader's and the runtime's start-up opens from a compromised
// worker's; the worker, once started, can. Every thread gets it (TSYNC).
// An open fails with EACCES, as Landlock's denials do. A worker that
// cannot install it does not start.
func lockDown() error {
	if os.Getenv(profileEnv) != "compute" {
		return nil
	}
	f := seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: []seccomp.SyscallGroup{{
			Names:  []string{"open", "openat", "openat2", "creat", "open_by_handle_at", "memfd_create"},
			Action: seccomp.ActionErrno | seccomp.Action(unix.EACCES),
		}}},
	}
	if err := seccomp.LoadFilter(f); err != nil {
		return fmt.Errorf("worker: %w: the compute profile's lockdown: %v", errBadEnv, err)
	}
	return nil
}
