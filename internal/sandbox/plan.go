package sandbox

import (
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"
)

// Settings are bulkhead.Sandbox, field for field, so that one converts to
// the other; bulkhead documents each field.
type Settings struct {
	User      string
	SHA256    string
	Cgroup    bool
	MemoryMax int64
	PidsMax   int
	CPUMax    float64
}

// cgrouped reports whether workers get a cgroup of their own.
func (s *Settings) cgrouped() bool {
	return s.Cgroup || s.MemoryMax != 0 || s.PidsMax != 0 || s.CPUMax != 0
}

// Plan is validated Settings, shared by every start of a pool's workers or
// of an activator's servers.
type Plan struct {
	s   Settings
	pin *Pin // nil: not pinned
}

// NewPlan validates s's syntax; whether each protection can be applied is
// known only at a start.
func NewPlan(s Settings) (*Plan, error) {
	var errs []error
	if s.MemoryMax < 0 || (s.MemoryMax > 0 && s.MemoryMax < 4<<20) {
		errs = append(errs, fmt.Errorf("MemoryMax = %d: want 0 (no limit) or at least 4 MiB", s.MemoryMax))
	}
	if s.PidsMax < 0 {
		errs = append(errs, fmt.Errorf("PidsMax = %d: must not be negative", s.PidsMax))
	}
	if s.CPUMax < 0 || math.IsNaN(s.CPUMax) || math.IsInf(s.CPUMax, 0) || (s.CPUMax > 0 && s.CPUMax < 0.01) {
		errs = append(errs, fmt.Errorf("CPUMax = %v: want 0 (no limit) or at least 0.01", s.CPUMax))
	}
	p := &Plan{s: s}
	if s.SHA256 != "" {
		var err error
		if p.pin, err = NewPin(s.SHA256); err != nil {
			errs = append(errs, err)
		}
	}
	if s.User != "" {
		if _, _, err := Lookup(s.User); err != nil {
			errs = append(errs, err)
		}
	}
	return p, errors.Join(errs...)
}

// Start is one start's protections: what it opened and created, released
// in two steps (Launched, Reaped).
type Start struct {
	cg  *Cgroup
	exe *os.File
}

// Prepare sets spec's environment (Environ, with env) and protections for
// one start of the binary at path. A failure is an *Error.
func (p *Plan) Prepare(path string, env []string, spec *dispatch.Spec) (*Start, error) {
	spec.Env = Environ(os.Environ(), env)
	st := &Start{}
	var err error
	if p.s.User != "" {
		if spec.Credential, err = Credential(p.s.User); err != nil {
			return nil, err
		}
	}
	switch {
	case p.pin != nil:
		st.exe, err = p.pin.Open(path)
	case p.s.User != "":
		// Executed by the dispatcher's open file, so that the user needs
		// no access to the directories on its path, only the file's x bit.
		if st.exe, err = OpenExec(path); err != nil {
			err = fail("user", err, "open %s", path)
		}
	}
	if err != nil {
		return nil, err
	}
	spec.Exec = st.exe
	if p.s.cgrouped() {
		st.cg, err = NewCgroup(CgroupLimits{MemoryMax: p.s.MemoryMax, PidsMax: int64(p.s.PidsMax), CPUMax: p.s.CPUMax})
		if err != nil {
			st.Launched(false)
			return nil, err
		}
		spec.Confine, spec.KillAll = st.cg.Add, st.cg.Kill
	}
	return st, nil
}

// Launched releases what only the start needed, once dispatch.Launch has
// returned; started says whether a process ran (dispatch.Hooks.Reaped then
// runs, and must call Reaped).
func (st *Start) Launched(started bool) {
	if st.exe != nil {
		st.exe.Close()
	}
	if !started && st.cg != nil {
		_ = st.cg.Delete()
	}
}

// Reaped reads what the worker's cgroup recorded and removes it, once the
// worker has been reaped.
func (st *Start) Reaped() (Usage, error) {
	if st.cg == nil {
		return Usage{}, nil
	}
	u := st.cg.Usage()
	return u, st.cg.Delete()
}
