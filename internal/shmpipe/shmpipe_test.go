package shmpipe

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"golang.org/x/sys/unix"
)

// mapRegion maps n bytes of fd.
func mapRegion(t testing.TB, fd, n int) []byte {
	t.Helper()
	mem, err := unix.Mmap(fd, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return mem
}

// newRegion makes a shared region of n bytes.
func newRegion(t testing.TB, n int) (int, []byte) {
	t.Helper()
	fd, err := unix.MemfdCreate("shmpipe-test", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Ftruncate(fd, int64(n)); err != nil {
		t.Fatal(err)
	}
	return fd, mapRegion(t, fd, n)
}

func TestNewValidates(t *testing.T) {
	_, mem := newRegion(t, Region(4096))
	for _, size := range []int{0, -1, 3000, 8192} {
		if _, err := New(mem, size, 0); err == nil {
			t.Errorf("New(size %d) accepted", size)
		}
	}
}

// Data larger than the ring streams through it, in order, with the reader
// and writer blocking on each other in turn.
func TestStreamThroughSmallRing(t *testing.T) {
	for _, spin := range []int{0, 1000} {
		t.Run("spin="+strconv.Itoa(spin), func(t *testing.T) {
			_, mem := newRegion(t, Region(1024))
			w, _ := New(mem, 1024, spin)
			r, _ := New(mem, 1024, spin)
			data := make([]byte, 1<<20)
			for i := range data {
				data[i] = byte(i * 7)
			}
			done := make(chan error, 1)
			go func() {
				for off := 0; off < len(data); off += 777 {
					if _, err := w.Write(data[off:min(off+777, len(data))]); err != nil {
						done <- err
						return
					}
				}
				w.Shut()
				done <- nil
			}()
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, err %v; want the 1 MiB written", len(got), err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestShutWakesAndRefuses(t *testing.T) {
	_, mem := newRegion(t, Region(4096))
	p, _ := New(mem, 4096, 0)
	read := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 1))
		read <- err
	}()
	// Whether the reader is already asleep in futex(2) or not, Shut must
	// end its Read.
	p.Shut()
	if err := <-read; err != io.EOF {
		t.Fatalf("Read after Shut = %v, want io.EOF", err)
	}
	if _, err := p.Write([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Shut = %v", err)
	}
}

// The two ends in different processes: the child echoes a hash of what it
// reads back through a second pipe.
func TestAcrossProcesses(t *testing.T) {
	const size = 4096
	fd, mem := newRegion(t, 2*Region(size)) // two pipes in one region
	toChild, _ := New(mem[:Region(size)], size, 100)
	fromChild, _ := New(mem[Region(size):], size, 100)

	cmd := exec.Command(os.Args[0])
	cmd.Env = testutil.HelperEnviron("echo")
	cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(fd), "region")}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("bulkhead"), 50000)
	if _, err := toChild.Write(data); err != nil {
		t.Fatal(err)
	}
	toChild.Shut()
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(fromChild, got); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		t.Fatal("child saw different bytes")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// The test binary's helper processes come from the module's one registry
// (internal/testutil); none is a pool worker.
func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func(){"echo": runChildEcho}, "", func() bool { return false })
}

// runChildEcho is the child half of TestAcrossProcesses: it reads the
// region's first pipe to its end and writes the bytes' hash to the second.
func runChildEcho() {
	const size = 4096
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "echo child:", err)
		os.Exit(1)
	}
	mem, err := unix.Mmap(3, 0, 2*Region(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		fail(err)
	}
	in, _ := New(mem[:Region(size)], size, 100)
	out, _ := New(mem[Region(size):], size, 100)
	h := sha256.New()
	if _, err := io.Copy(h, in); err != nil {
		fail(err)
	}
	if _, err := out.Write(h.Sum(nil)); err != nil {
		fail(err)
	}
}

func BenchmarkPingPong(b *testing.B) {
	_, mem := newRegion(b, 2*Region(4096))
	a2b, _ := New(mem[:Region(4096)], 4096, 10000)
	b2a, _ := New(mem[Region(4096):], 4096, 10000)
	go func() {
		buf := make([]byte, 16)
		for {
			if _, err := io.ReadFull(a2b, buf); err != nil {
				return
			}
			b2a.Write(buf)
		}
	}()
	buf := make([]byte, 16)
	for b.Loop() {
		a2b.Write(buf)
		io.ReadFull(b2a, buf)
	}
	a2b.Shut()
}

func TestWaitReadable(t *testing.T) {
	_, mem := newRegion(t, Region(4096))
	p, _ := New(mem, 4096, 0)
	if p.WaitReadable(time.Millisecond) {
		t.Fatal("empty pipe readable")
	}
	p.Write([]byte{1})
	if !p.WaitReadable(-1) {
		t.Fatal("pipe with data not readable")
	}
	p.Read(make([]byte, 1))
	p.Shut()
	if !p.WaitReadable(-1) {
		t.Fatal("shut pipe not readable (end of stream)")
	}
}
