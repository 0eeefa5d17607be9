package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Pin is a worker binary pinned by its SHA-256. Open checks the file it
// opens, and the worker is executed from that open file (ExecPath), so that
// a file swapped in at the path after the check is never run.
type Pin struct {
	want []byte

	mu   sync.Mutex
	good identity // the last file that matched; zero if none
}

// identity tells whether a file changed since it was hashed: a write to it
// changes its ctime, which only the kernel sets.
type identity struct {
	dev, ino     uint64
	size         int64
	ctime, mtime unix.Timespec
}

// NewPin parses sum, 64 hex digits.
func NewPin(sum string) (*Pin, error) {
	b, err := hex.DecodeString(sum)
	if err != nil || len(b) != sha256.Size {
		return nil, fail("binary pin", err, "SHA256 = %q: want 64 hex digits", sum)
	}
	return &Pin{want: b}, nil
}

// minExecFD keeps the opened binary clear of the descriptors that os/exec
// rearranges in the child before execve (0 to 2, the extra files from 3 on,
// and its own status pipe just above them).
const minExecFD = 64

// Open opens path and checks its SHA-256. The file is hashed again unless
// it is the file that matched last time, unchanged since (same device,
// inode, size and ctime, and a ctime old enough that a second write in the
// same clock tick cannot hide behind it). A mismatch is an *Error.
func (p *Pin) Open(path string) (*os.File, error) {
	f, err := OpenExec(path)
	if err != nil {
		return nil, fail("binary pin", err, "open %s", path)
	}
	if err := p.check(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenExec opens the executable at path for ExecPath, on a descriptor
// that os/exec leaves alone in the child.
func OpenExec(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, minExecFD)
	unix.Close(fd)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(high), path), nil
}

func (p *Pin) check(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fail("binary pin", err, "fstat %s", f.Name())
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fail("binary pin", nil, "%s is not a regular file", f.Name())
	}
	id := identity{dev: st.Dev, ino: st.Ino, size: st.Size, ctime: st.Ctim, mtime: st.Mtim}
	p.mu.Lock()
	known := p.good == id
	p.mu.Unlock()
	if known {
		return nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, st.Size)); err != nil {
		return fail("binary pin", err, "read %s", f.Name())
	}
	if got := h.Sum(nil); !bytes.Equal(got, p.want) {
		return fail("binary pin", nil, "%s has SHA-256 %x, want %x", f.Name(), got, p.want)
	}
	if time.Since(time.Unix(st.Ctim.Unix())) > time.Second {
		p.mu.Lock()
		p.good = id
		p.mu.Unlock()
	}
	return nil
}

// ExecPath is the path that executes the open file f itself, whatever is
// at its original path now (what fexecve(3) does).
func ExecPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }
