package dispatch

import (
	"os"

	"github.com/bulkhead-go/bulkhead/internal/shmpipe"
	"golang.org/x/sys/unix"
)

// newShmLink creates the shared-memory region of PROTOCOL.md section 9: pipe
// 0 carries frames to the worker, pipe 1 from it.
func newShmLink(size, spin int) (*shmLink, error) {
	fd, err := unix.MemfdCreate("bulkhead-shm", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "bulkhead-shm")
	n := 2 * shmpipe.Region(size)
	if err := f.Truncate(int64(n)); err != nil {
		f.Close()
		return nil, err
	}
	mem, err := unix.Mmap(fd, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, err
	}
	out, err := shmpipe.New(mem[:n/2], size, spin)
	if err == nil {
		var in *shmpipe.Pipe
		if in, err = shmpipe.New(mem[n/2:], size, spin); err == nil {
			return &shmLink{mem: mem, in: in, out: out, file: f}, nil
		}
	}
	unix.Munmap(mem)
	f.Close()
	return nil, err
}

// unmap releases the region of a link that no connection took (useShm).
func (l *shmLink) unmap() { _ = unix.Munmap(l.mem) }
