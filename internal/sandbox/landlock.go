package sandbox

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Landlock is a worker's Landlock settings: what it may read and write;
// everything else on the file system it may not touch.
type Landlock struct {
	ReadOnly []string // read (and execute) beneath these
	Writable []string // read and write beneath these
	Exe      string   // the worker binary, which it may execute
	Interp   string   // the binary's ELF interpreter, if it has one
}

func (l *Landlock) on() bool { return len(l.ReadOnly) > 0 || len(l.Writable) > 0 }

// libDirs are where a dynamic worker's loader finds its libraries: readable
// whenever the binary has an interpreter.
var libDirs = []string{"/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib"}

// validatePaths checks that every path is absolute.
func validatePaths(key string, paths []string) error {
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%s: %q is not an absolute path", key, p)
		}
	}
	return nil
}

// interpreter is the ELF interpreter of the binary open as f, or "".
func interpreter(f *os.File) string {
	e, err := elf.NewFile(f)
	if err != nil {
		return ""
	}
	for _, p := range e.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err == nil && len(b) > 0 && b[len(b)-1] == 0 {
				return string(b[:len(b)-1])
			}
		}
	}
	return ""
}

// ruleset builds l's Landlock ruleset, on the best ABI the kernel has (up
// to 7), for the trampoline to enforce (landlock_restrict_self) before it
// executes the worker.
func (l *Landlock) ruleset() (int, error) {
	rules := []landlock.Rule{landlock.ROFiles(l.Exe)}
	for _, p := range l.ReadOnly {
		rules = append(rules, pathRule(p, landlock.RODirs, landlock.ROFiles))
	}
	for _, p := range l.Writable {
		rules = append(rules, pathRule(p, landlock.RWDirs, landlock.RWFiles))
	}
	if l.Interp != "" {
		rules = append(rules, landlock.ROFiles(l.Interp), landlock.ROFiles("/etc/ld.so.cache").IgnoreIfMissing(),
			landlock.RODirs(libDirs...).IgnoreIfMissing())
	}
	fd, _, err := landlock.V7.BestEffort().NewRulesetFD(rules...)
	if err != nil {
		return -1, err
	}
	if fd < 0 {
		return -1, fmt.Errorf("the kernel has no Landlock")
	}
	unix.CloseOnExec(fd)
	return fd, nil
}

// pathRule is the rule for path: dir's if it is a directory, else file's
// (Landlock refuses directory rights on a file). A missing path is left to
// the rule, which fails.
func pathRule(path string, dir, file func(...string) landlock.FSRule) landlock.Rule {
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		return file(path)
	}
	return dir(path)
}

// LandlockABI is the kernel's Landlock ABI version.
func LandlockABI() (int, error) { return ll.LandlockGetABIVersion() }
