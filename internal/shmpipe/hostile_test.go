package shmpipe

import (
	"errors"
	"io"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// A peer that stores an impossible index costs us only an error, never a
// panic, and the error stays.
func TestPeerIndexLies(t *testing.T) {
	const size = 4096
	tests := []struct {
		name string
		// prepare brings both sides to a legal state; lie then scribbles.
		written, read int
		head, tail    func(head, tail uint64) (uint64, bool) // nil: left alone
		reader        bool                                   // the reader sees the lie (else the writer)
	}{
		{name: "head = tail-1", written: 100, read: 100, reader: true,
			head: func(_, tail uint64) (uint64, bool) { return tail - 1, true }},
		{name: "head far beyond tail+size", written: 10, read: 0, reader: true,
			head: func(_, tail uint64) (uint64, bool) { return tail + size + 1, true }},
		{name: "head = 2^64-1", written: 0, read: 0, reader: true,
			head: func(_, _ uint64) (uint64, bool) { return ^uint64(0), true }},
		{name: "head goes backwards", written: 300, read: 100, reader: true,
			head: func(head, _ uint64) (uint64, bool) { return head - 50, true }},
		{name: "tail beyond head", written: 100, read: 50, reader: false,
			tail: func(head, _ uint64) (uint64, bool) { return head + 1, true }},
		{name: "tail = head-size-1 (more than the ring in use)", written: 100, read: 100, reader: false,
			tail: func(head, _ uint64) (uint64, bool) { return head - size - 1, true }},
		{name: "tail goes backwards", written: 300, read: 200, reader: false,
			tail: func(_, tail uint64) (uint64, bool) { return tail - 1, true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, mem := newRegion(t, Region(size))
			w, _ := New(mem, size, 0)
			r, _ := New(mem, size, 0)
			if _, err := w.Write(make([]byte, tt.written)); err != nil {
				t.Fatal(err)
			}
			if tt.read > 0 {
				if _, err := io.ReadFull(r, make([]byte, tt.read)); err != nil {
					t.Fatal(err)
				}
			}
			// A writer that has seen the reader's tail, so that a tail
			// going backwards is one.
			if _, err := w.TryWrite(nil); err != nil {
				t.Fatal(err)
			}
			w.WaitWritable(0)
			head, tail := r.h.head.Load(), r.h.tail.Load()
			if tt.head != nil {
				v, _ := tt.head(head, tail)
				r.h.head.Store(v)
			}
			if tt.tail != nil {
				v, _ := tt.tail(head, tail)
				r.h.tail.Store(v)
			}
			for i := range 2 { // the second time: the error stayed
				if tt.reader {
					if !r.WaitReadable(-1) {
						t.Fatal("WaitReadable(-1) = false")
					}
					n, err := r.Read(make([]byte, 64))
					if n != 0 || !errors.Is(err, ErrCorrupt) {
						t.Fatalf("Read #%d = %d, %v; want ErrCorrupt", i, n, err)
					}
				} else {
					if !w.WaitWritable(-1) {
						t.Fatal("WaitWritable(-1) = false")
					}
					n, err := w.Write(make([]byte, 64))
					if n != 0 || !errors.Is(err, ErrCorrupt) {
						t.Fatalf("Write #%d = %d, %v; want ErrCorrupt", i, n, err)
					}
					if n, err := w.TryWrite([]byte{1}); n != 0 || !errors.Is(err, ErrCorrupt) {
						t.Fatalf("TryWrite #%d = %d, %v; want ErrCorrupt", i, n, err)
					}
				}
			}
			var ce *CorruptError
			var err error
			if tt.reader {
				_, err = r.Read(make([]byte, 1))
			} else {
				_, err = w.Write([]byte{1})
			}
			if !errors.As(err, &ce) || ce.Error() == "" {
				t.Fatalf("error %v is not a *CorruptError", err)
			}
		})
	}
}

// New refuses a region whose indices no pipe can have.
func TestNewRefusesCorruptRegion(t *testing.T) {
	_, mem := newRegion(t, Region(4096))
	p, _ := New(mem, 4096, 0)
	p.h.tail.Store(10)
	p.h.head.Store(9)
	if _, err := New(mem, 4096, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("New = %v, want ErrCorrupt", err)
	}
}

// The tail of the reader's own pipe is its own: a writer that stores into
// it (a worker moving the dispatcher's tail) changes nothing for the
// reader, and the head of the writer's likewise.
func TestOwnIndexIsNotReloaded(t *testing.T) {
	_, mem := newRegion(t, Region(4096))
	w, _ := New(mem, 4096, 0)
	r, _ := New(mem, 4096, 0)
	w.Write([]byte("abcdef"))
	r.h.tail.Store(3) // the peer claims we read 3 bytes
	buf := make([]byte, 16)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "abcdef" {
		t.Fatalf("Read = %q, %v; want all six bytes", buf[:n], err)
	}
	r.h.tail.Store(6)
	w.h.head.Store(1000) // the peer claims we wrote 1000
	if _, err := w.Write([]byte("gh")); err != nil {
		t.Fatal(err)
	}
	r.h.head.Store(8) // as we published it
	n, err = r.Read(buf)
	if err != nil || string(buf[:n]) != "gh" {
		t.Fatalf("Read = %q, %v; want gh", buf[:n], err)
	}
}

// A peer that sets the closed flag and clears it again cannot reopen the
// pipe: end of stream stays, and so does ErrClosed.
func TestClosedFlagFlapping(t *testing.T) {
	_, mem := newRegion(t, Region(4096))
	w, _ := New(mem, 4096, 0)
	r, _ := New(mem, 4096, 0)
	w.Write([]byte("xy"))
	r.h.closed.Store(1)
	buf := make([]byte, 8)
	if n, err := r.Read(buf); n != 2 || err != nil {
		t.Fatalf("Read = %d, %v; want the 2 bytes written before the close", n, err)
	}
	if _, err := r.Read(buf); err != io.EOF {
		t.Fatalf("Read = %v, want EOF", err)
	}
	if _, err := w.Write([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write = %v, want ErrClosed", err)
	}
	r.h.closed.Store(0)
	if _, err := r.Read(buf); err != io.EOF {
		t.Fatalf("Read after the flag was cleared = %v, want EOF still", err)
	}
	if !r.WaitReadable(0) {
		t.Fatal("WaitReadable(0) false after the end of the stream")
	}
	if _, err := w.Write([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after the flag was cleared = %v, want ErrClosed still", err)
	}
	if !w.WaitWritable(0) {
		t.Fatal("WaitWritable(0) false on a shut pipe")
	}
}

// A Write blocked on a full ring is ended by Shut.
func TestShutEndsBlockedWrite(t *testing.T) {
	for _, spin := range []int{0, 1000} {
		_, mem := newRegion(t, Region(4096))
		w, _ := New(mem, 4096, spin)
		done := make(chan error, 1)
		go func() {
			_, err := w.Write(make([]byte, 3*4096))
			done <- err
		}()
		for w.h.head.Load() != 4096 || w.h.writerWaits.Load() == 0 {
			runtime.Gosched() // until the writer filled the ring and sleeps
		}
		w.Shut()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("spin %d: blocked Write after Shut = %v, want ErrClosed", spin, err)
		}
	}
}

// Our own Shut ends our sleep even when the peer undoes the doorbell: the
// sleep is bounded by MaxSleep and our own state is looked at again.
func TestShutWithoutDoorbell(t *testing.T) {
	_, mem := newRegion(t, Region(4096))
	r, _ := New(mem, 4096, 0)
	w, _ := New(mem, 4096, 0)
	read := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 1))
		read <- err
	}()
	for r.h.readerWaits.Load() == 0 {
		runtime.Gosched() // until the reader sleeps
	}
	// Shut's local half only: the shared flag and the doorbell as if a
	// hostile peer had restored both at once.
	start := time.Now()
	r.shut.Store(true)
	select {
	case err := <-read:
		if err != io.EOF {
			t.Fatalf("Read = %v, want EOF", err)
		}
	case <-time.After(10 * MaxSleep):
		w.Shut()
		<-read
		t.Fatalf("reader still asleep %v after our Shut", 10*MaxSleep)
	}
	if d := time.Since(start); d > 5*MaxSleep {
		t.Errorf("reader woke %v after Shut, want at most about %v", d, MaxSleep)
	}
}

// Doorbell and waits words scribbled by the peer neither wake a sleeping
// side into a spin nor stop it from waking for real.
func TestScribbledDoorbellsDoNotSpin(t *testing.T) {
	_, mem := newRegion(t, Region(4096))
	r, _ := New(mem, 4096, 1000)
	w, _ := New(mem, 4096, 1000)
	r.h.dataSeq.Store(0xdeadbeef)
	r.h.spaceSeq.Store(0xffffffff)
	r.h.readerWaits.Store(7)
	r.h.writerWaits.Store(0xffffffff)
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	wall := time.Now()
	if r.WaitReadable(300 * time.Millisecond) {
		t.Fatal("empty pipe readable")
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	if el := time.Since(wall); cpu > el/3 {
		t.Errorf("waiting %v on an empty pipe used %v of CPU", el, cpu)
	}
	got := make(chan int, 1)
	go func() {
		n, _ := r.Read(make([]byte, 4))
		got <- n
	}()
	w.Write([]byte("ping"))
	if n := <-got; n == 0 {
		t.Fatal("Read got nothing")
	}
}

// TryWrite writes what fits and never blocks; WaitWritable waits for room.
func TestTryWriteAndWaitWritable(t *testing.T) {
	_, mem := newRegion(t, Region(4096))
	w, _ := New(mem, 4096, 0)
	r, _ := New(mem, 4096, 0)
	if n, err := w.TryWrite(make([]byte, 5000)); n != 4096 || err != nil {
		t.Fatalf("TryWrite(5000) into an empty 4096 ring = %d, %v", n, err)
	}
	if n, err := w.TryWrite([]byte{1}); n != 0 || err != nil {
		t.Fatalf("TryWrite into a full ring = %d, %v; want 0, nil", n, err)
	}
	if w.WaitWritable(10 * time.Millisecond) {
		t.Fatal("full ring writable")
	}
	woke := make(chan bool, 1)
	go func() { woke <- w.WaitWritable(-1) }()
	if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if !<-woke {
		t.Fatal("WaitWritable(-1) = false")
	}
	if n, err := w.TryWrite(make([]byte, 200)); n != 100 || err != nil {
		t.Fatalf("TryWrite after reading 100 = %d, %v; want 100", n, err)
	}
	go func() { woke <- w.WaitWritable(-1) }()
	w.Shut()
	if !<-woke {
		t.Fatal("WaitWritable after Shut = false")
	}
	if n, err := w.TryWrite([]byte{1}); n != 0 || !errors.Is(err, ErrClosed) {
		t.Fatalf("TryWrite after Shut = %d, %v", n, err)
	}
}
