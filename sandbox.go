package bulkhead

import (
	"errors"
	"os"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"github.com/bulkhead-go/bulkhead/internal/sandbox"
)

// Sandbox is what a worker is kept from doing, so that native code
// compromised by its input gains little (docs/SANDBOX.md). Every field's
// zero value leaves that protection off. A protection that is asked for
// and cannot be applied stops the worker from starting: New (or the call
// that needed the worker) returns a *StartError whose Protection names it.
// Nothing is silently skipped.
//
// Whatever the Sandbox, a worker's environment is PATH, the dispatcher's
// BULKHEAD_* variables and Config.Env (Config.Env).
type Sandbox struct {
	// User runs the worker as this user: a user name, or "uid", or either
	// followed by ":group" (a group name or gid); without a group, the
	// user's own group. Supplementary groups are dropped. Only a
	// dispatcher running as root may do this.
	// Zero value: the worker runs as the dispatcher's user.
	User string

	// SHA256 pins the worker binary: the SHA-256 of the file Command names,
	// in hex. At every start the file is opened and checked, and the
	// opened file itself is executed, so that a file swapped in at the
	// path between the check and the start is never run. A file that does
	// not match does not start (Protection "binary pin").
	// Zero value: not pinned.
	SHA256 string
}

// validate checks the fields' syntax; whether they can be applied is known
// only at a start.
func (b *Sandbox) validate() error {
	var errs []error
	if b.SHA256 != "" {
		if _, err := sandbox.NewPin(b.SHA256); err != nil {
			errs = append(errs, err)
		}
	}
	if b.User != "" {
		if _, _, err := sandbox.Lookup(b.User); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sandboxing is a validated Sandbox, shared by every start of a pool's
// workers or an activator's servers.
type sandboxing struct {
	pin *sandbox.Pin // nil: not pinned
}

func newSandboxing(b *Sandbox) sandboxing {
	var s sandboxing
	if b.SHA256 != "" {
		s.pin, _ = sandbox.NewPin(b.SHA256) // validated
	}
	return s
}

// apply sets up spec's protections for one start. The returned release
// runs once the start has ended, either way; a failure is a *StartError.
func (s *settings) applySandbox(spec *dispatch.Spec) (release func(), err error) {
	spec.Env = sandbox.Environ(os.Environ(), s.Env)
	release = func() {}
	if s.Sandbox.User != "" {
		if spec.Credential, err = sandbox.Credential(s.Sandbox.User); err != nil {
			return release, protectionError(err)
		}
	}
	var f *os.File
	switch {
	case s.sandboxing.pin != nil:
		f, err = s.sandboxing.pin.Open(s.path)
	case s.Sandbox.User != "":
		// Executed by the dispatcher's open file, so that the user needs
		// no access to the directories on its path, only the file's x bit.
		f, err = sandbox.OpenExec(s.path)
	}
	if err != nil {
		return release, protectionError(err)
	}
	if f != nil {
		spec.Exec = f
		release = func() { f.Close() }
	}
	return release, nil
}

// protectionError is a protection that could not be applied, as the
// *StartError that stops the worker from starting.
func protectionError(err error) error {
	var e *sandbox.Error
	if !errors.As(err, &e) {
		return &StartError{ExitCode: -1, Reason: err.Error(), Err: err}
	}
	return &StartError{ExitCode: -1, Protection: e.Protection, Reason: "sandbox: " + e.Protection + ": " + e.Reason, Err: err}
}
