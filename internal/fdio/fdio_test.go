package fdio

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func socketpair(t *testing.T) (FD, FD) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return FD(fds[0]), FD(fds[1])
}

// drain reads everything from r until EOF, on its own goroutine.
func drain(r FD) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		var all []byte
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				got <- all
				return
			}
		}
	}()
	return got
}

// Writev delivers every byte in order: through a small socket buffer (so
// that writev returns short and resumes mid-buffer), across more buffers
// than one writev(2) takes, and past empty ones.
func TestWritevAll(t *testing.T) {
	for _, tc := range []struct {
		name string
		bufs func() [][]byte
	}{
		{"large pieces", func() [][]byte {
			return [][]byte{bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 1<<20), {3, 3, 3}, bytes.Repeat([]byte{4}, 300000)}
		}},
		{"more than IOV_MAX", func() [][]byte {
			var bs [][]byte
			for i := range 3*maxIovec + 7 {
				bs = append(bs, bytes.Repeat([]byte{byte(i)}, i%5))
			}
			return bs
		}},
		{"none", func() [][]byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, r := socketpair(t)
			if err := unix.SetsockoptInt(int(w), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
				t.Fatal(err)
			}
			got := drain(r)
			bufs := tc.bufs()
			want := bytes.Join(bufs, nil)
			n, err := w.Writev(bufs)
			if err != nil || n != len(want) {
				t.Fatalf("Writev = %d, %v; want %d", n, err, len(want))
			}
			unix.Shutdown(int(w), unix.SHUT_WR)
			if g := <-got; !bytes.Equal(g, want) {
				t.Fatalf("read %d bytes, not the %d written", len(g), len(want))
			}
		})
	}
}

// A peer that goes away fails the write with an error, not a hang.
func TestWritevBrokenPeer(t *testing.T) {
	w, r := socketpair(t)
	unix.Close(int(r))
	if _, err := w.Writev([][]byte{make([]byte, 1<<20)}); !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("Writev to a closed peer: %v", err)
	}
}

type onlyWriter struct{ bytes.Buffer }

// WriteAll falls back to one Write per buffer for a writer that is not a
// descriptor (the shared-memory pipe).
func TestWriteAllOtherWriter(t *testing.T) {
	var w onlyWriter
	n, err := WriteAll(&w, [][]byte{[]byte("ab"), nil, []byte("cde")})
	if err != nil || n != 5 || w.String() != "abcde" {
		t.Fatalf("WriteAll = %d, %v, %q", n, err, w.String())
	}
}

// TryWrite takes what the socket takes now and never waits.
func TestTryWrite(t *testing.T) {
	a, b, err := socketpairConns()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	raw, err := a.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if n := TryWrite(raw, []byte("hello")); n != 5 {
		t.Fatalf("wrote %d of 5", n)
	}
	big := make([]byte, 64<<20) // more than any socket buffer: the rest is left
	n := TryWrite(raw, big)
	if n == 0 || n >= len(big) {
		t.Fatalf("wrote %d of %d, want some and not all", n, len(big))
	}
}

func socketpairConns() (net.Conn, net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fa, fb := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	defer fa.Close()
	defer fb.Close()
	a, err := net.FileConn(fa)
	if err != nil {
		return nil, nil, err
	}
	b, err := net.FileConn(fb)
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}
