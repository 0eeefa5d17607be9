// Package fdio does blocking reads and writes on raw file descriptors.
//
// The hot path of bulkhead avoids the Go netpoller on purpose: a blocking
// read(2) on the goroutine that waits for the reply costs two system calls per
// round trip, where the netpoller costs up to eleven (docs/DESIGN.md).
package fdio

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// FD is a blocking file descriptor used as an io.Reader and io.Writer.
type FD int

// Read reads once, retrying on EINTR. A zero-byte read is io.EOF.
func (f FD) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// Write writes all of p, retrying on EINTR and short writes.
func (f FD) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(int(f), p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// maxIovec bounds the buffers of one writev(2) (IOV_MAX on Linux).
const maxIovec = 1024

// Writev writes all of bufs, in order, with writev(2), retrying on EINTR and
// short writes; it trims the slice headers in bufs as it goes. When it
// returns, nothing holds on to the bytes: the kernel copied what it took.
func (f FD) Writev(bufs [][]byte) (int, error) {
	done := 0
	for len(bufs) > 0 {
		if len(bufs[0]) == 0 {
			bufs = bufs[1:]
			continue
		}
		n, err := unix.Writev(int(f), bufs[:min(len(bufs), maxIovec)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrShortWrite
		}
		done += n
		for n > 0 { // drop what was written
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
	return done, nil
}

// WriteAll writes bufs in order to w: by one writev(2) when w is an FD,
// otherwise by one Write each. It trims bufs as it goes (the caller's slice
// headers change, not the bytes).
func WriteAll(w io.Writer, bufs [][]byte) (int, error) {
	if f, ok := w.(FD); ok {
		return f.Writev(bufs)
	}
	done := 0
	for _, b := range bufs {
		n, err := w.Write(b)
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// WaitReadable blocks until fd is readable or timeoutMs passes (-1: forever).
// It reports whether fd became readable (or hung up).
func (f FD) WaitReadable(timeoutMs int) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(f), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, timeoutMs)
		if err == unix.EINTR {
			continue
		}
		return n > 0, err
	}
}

// TryWrite writes as much of b to the socket behind raw (a net.Conn's, in
// the runtime's non-blocking mode) as it takes now, without waiting for it
// to become writable, and returns how much that was. An error is left for
// the caller's next blocking write to meet.
func TryWrite(raw syscall.RawConn, b []byte) int {
	n := 0
	raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			k, err := unix.Write(int(fd), b[n:])
			if k > 0 {
				n += k
			}
			if err != unix.EINTR && (err != nil || k <= 0) {
				break
			}
		}
		return true // never wait for the socket
	})
	return n
}
