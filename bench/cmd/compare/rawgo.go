package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// rawGo is the floor for Go: two Go processes on a socketpair, blocking
// unix.Read/unix.Write on raw fds from goroutines locked to OS threads, no
// netpoller. A message is a 16-byte header whose first 8 bytes are the
// little-endian payload length (0 for a null call), then the payload.
//
// Throughput uses cfg.callers socketpairs spread over cfg.servers child
// processes; each child serves each of its fds on its own locked thread.
type rawGo struct {
	cfg      *config
	children []*goChild
	fds      [][]int // fds[server][k]: parent ends
}

func (r *rawGo) Name() string  { return "raw_go" }
func (r *rawGo) Label() string { return "raw Go socketpair" }

func (r *rawGo) Setup(ctx context.Context) error {
	per := (r.cfg.callers + r.cfg.servers - 1) / r.cfg.servers
	for range r.cfg.servers {
		var mine []int
		var theirs []*os.File
		for range per {
			sv, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			mine = append(mine, sv[0])
			theirs = append(theirs, os.NewFile(uintptr(sv[1]), "rawgo-child"))
		}
		r.fds = append(r.fds, mine)
		c, err := startGoChild("rawgo", theirs, "BENCH_NFDS="+strconv.Itoa(per))
		for _, f := range theirs {
			f.Close()
		}
		if err != nil {
			return err
		}
		r.children = append(r.children, c)
	}
	return nil
}

func (r *rawGo) Close() error {
	for _, fs := range r.fds {
		for _, fd := range fs {
			unix.Close(fd)
		}
	}
	r.fds = nil
	var errs []error
	for _, c := range r.children {
		errs = append(errs, c.stop())
	}
	r.children = nil
	return errors.Join(errs...)
}

func (r *rawGo) Latency(ctx context.Context, d time.Duration) (Sample, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd := r.fds[0][0]
	var msg [16]byte
	return measureLatency(ctx, d, pidsOf(r.children[:1]), func() error {
		return rawRoundTrip(fd, msg[:], msg[:])
	})
}

func (r *rawGo) Throughput(ctx context.Context, d time.Duration) (Sample, error) {
	n := r.cfg.servers
	bufs := make([][16]byte, r.cfg.callers)
	return measureParallel(ctx, d, r.cfg.callers, n, true, pidsOf(r.children), func(i int) error {
		return rawRoundTrip(r.fds[i%n][i/n], bufs[i][:], bufs[i][:])
	})
}

func (r *rawGo) Echo(ctx context.Context, size int, d time.Duration) (Sample, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd := r.fds[0][0]
	req := make([]byte, 16+size)
	binary.LittleEndian.PutUint64(req, uint64(size))
	resp := make([]byte, 16+size)
	s, err := measureLatency(ctx, d, pidsOf(r.children[:1]), func() error {
		return rawRoundTrip(fd, req, resp)
	})
	if err == nil && binary.LittleEndian.Uint64(resp) != uint64(size) {
		err = fmt.Errorf("raw go echo: reply of %d bytes, want %d", binary.LittleEndian.Uint64(resp), size)
	}
	return s, err
}

// rawRoundTrip writes req (header and payload) and reads a whole reply into resp.
func rawRoundTrip(fd int, req, resp []byte) error {
	if err := writeFull(fd, req); err != nil {
		return err
	}
	if err := readFull(fd, resp[:16]); err != nil {
		return err
	}
	n := binary.LittleEndian.Uint64(resp)
	if n > uint64(len(resp)-16) {
		return fmt.Errorf("raw go: reply of %d bytes does not fit", n)
	}
	return readFull(fd, resp[16:16+n])
}

func readFull(fd int, b []byte) error {
	for got := 0; got < len(b); {
		n, err := unix.Read(fd, b[got:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			if got == 0 {
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
		got += n
	}
	return nil
}

func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// rawGoChild serves BENCH_NFDS fds starting at 3, one locked thread each,
// until every one of them reaches EOF.
func rawGoChild() error {
	n, err := strconv.Atoi(os.Getenv("BENCH_NFDS"))
	if err != nil || n < 1 {
		return fmt.Errorf("rawgo child: bad BENCH_NFDS %q", os.Getenv("BENCH_NFDS"))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			errs[i] = rawServe(3 + i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

const rawMaxPayload = 64 << 20

func rawServe(fd int) error {
	buf := make([]byte, 16)
	for {
		if err := readFull(fd, buf[:16]); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		n := binary.LittleEndian.Uint64(buf)
		if n > rawMaxPayload {
			return fmt.Errorf("rawgo child: payload of %d bytes", n)
		}
		if uint64(cap(buf)) < 16+n {
			nb := make([]byte, 16+n)
			copy(nb, buf[:16])
			buf = nb
		}
		buf = buf[:16+n]
		if err := readFull(fd, buf[16:]); err != nil {
			return err
		}
		if err := writeFull(fd, buf); err != nil {
			return err
		}
	}
}
