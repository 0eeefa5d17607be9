package shmpipe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"unsafe"
)

// fuzzSize is the ring of the fuzz target: small, so that the fuzzer wraps
// it often.
const fuzzSize = 64

// alignedRegion returns a zeroed 64-byte-aligned region for one pipe. The
// doorbells work on private memory too (within one process).
func alignedRegion() []byte {
	b := make([]byte, Region(fuzzSize)+64)
	off := (64 - int(uintptr(unsafe.Pointer(&b[0]))%64)) % 64
	return b[off : off+Region(fuzzSize)]
}

// FuzzPipe plays a hostile peer against each side of a pipe. The fuzzer
// chooses the initial indices, then a sequence of operations: the peer
// storing any head, tail, closed flag, doorbell word or ring byte, and our
// side reading, writing and waiting. A model of the side follows along:
// every operation must either do exactly what the model says (bytes in
// order, within bounds) or, once the peer has stored an index no correct
// peer could, fail with ErrCorrupt, for good. Nothing may panic or block.
func FuzzPipe(f *testing.F) {
	f.Add(uint64(0), uint64(0), []byte{1, 10, 2, 8, 2, 8})
	f.Add(uint64(100), uint64(100), []byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 4})
	f.Add(uint64(1<<64-10), uint64(1<<64-30), []byte{1, 40, 2, 60, 5, 70, 4, 30, 5, 60, 3, 1, 2, 3, 4, 5, 6, 7, 8, 5, 1})
	f.Add(uint64(7), uint64(3), []byte{6, 1, 2, 9, 6, 0, 2, 9, 7, 7, 5, 3})
	f.Fuzz(func(t *testing.T, head0, tail0 uint64, ops []byte) {
		rmem, wmem := alignedRegion(), alignedRegion()
		for _, mem := range [][]byte{rmem, wmem} {
			binary.LittleEndian.PutUint64(mem[0:], head0)
			binary.LittleEndian.PutUint64(mem[64:], tail0)
		}
		r, err := New(rmem, fuzzSize, 0)
		if head0-tail0 > fuzzSize {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("New with head %d, tail %d = %v; want ErrCorrupt", head0, tail0, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		w, err := New(wmem, fuzzSize, 0)
		if err != nil {
			t.Fatal(err)
		}
		m := model{size: fuzzSize, rTail: tail0, rSeenHead: head0, wHead: head0, wSeenTail: tail0}
		peerHead := head0 // what the peer writing to r has written, honestly
		buf := make([]byte, 2*fuzzSize)
		next := func() byte {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return b
		}
		for len(ops) > 0 {
			switch op := next(); op % 8 {
			case 0: // the peer stores any head into r's region
				var v [8]byte
				for i := range v {
					v[i] = next()
				}
				r.h.head.Store(binary.LittleEndian.Uint64(v[:]))
			case 1: // the peer honestly writes n bytes into r's ring, if they fit
				n := uint64(next()) % (fuzzSize + 1)
				if peerHead-m.rTail+n > fuzzSize {
					break
				}
				for i := range n {
					r.ring[(peerHead+i)&r.mask] = byte(peerHead + i)
				}
				peerHead += n
				r.h.head.Store(peerHead)
			case 2: // we read
				n := 1 + int(next())%len(buf)
				want, blocks, werr := m.read(r, n)
				if blocks {
					if r.WaitReadable(0) {
						t.Fatal("WaitReadable(0) on a pipe that cannot be read")
					}
					break
				}
				got, err := r.Read(buf[:n])
				if !sameErr(err, werr) || got != len(want) || !bytes.Equal(buf[:got], want) {
					t.Fatalf("Read(%d) = %d %x, %v; want %d %x, %v", n, got, buf[:got], err, len(want), want, werr)
				}
				if err == nil {
					if st := r.h.tail.Load(); st != m.rTail {
						t.Fatalf("shared tail %d, want %d", st, m.rTail)
					}
				}
			case 3: // the peer stores any tail into w's region
				var v [8]byte
				for i := range v {
					v[i] = next()
				}
				w.h.tail.Store(binary.LittleEndian.Uint64(v[:]))
			case 4: // the peer honestly reads n bytes from w's ring
				n := uint64(next())
				t0 := w.h.tail.Load()
				if m.wHead-t0 <= fuzzSize && n <= m.wHead-t0 {
					w.h.tail.Store(t0 + n)
				}
			case 5: // we write, without blocking (or blocking when it fits)
				n := int(next()) % len(buf)
				for i := range buf[:n] {
					buf[i] = byte(m.wHead + uint64(i))
				}
				wantN, werr := m.write(w, n)
				var got int
				if op&8 != 0 && n <= wantN {
					got, err = w.Write(buf[:n])
				} else {
					got, err = w.TryWrite(buf[:n])
				}
				if got != wantN || !sameErr(err, werr) {
					t.Fatalf("write(%d) = %d, %v; want %d, %v", n, got, err, wantN, werr)
				}
				for i := range uint64(got) {
					pos := m.wHead - uint64(got) + i
					if w.ring[pos&w.mask] != byte(pos) {
						t.Fatalf("ring byte %d = %d, want %d", pos, w.ring[pos&w.mask], byte(pos))
					}
				}
				if err == nil && w.h.head.Load() != m.wHead {
					t.Fatalf("shared head %d, want %d", w.h.head.Load(), m.wHead)
				}
			case 6: // the peer stores the closed flag and scribbles the doorbells
				v := uint32(next() & 1)
				if op&8 != 0 {
					w.h.closed.Store(v)
				} else {
					r.h.closed.Store(v)
				}
				r.h.dataSeq.Store(uint32(op) * 0x01010101)
				w.h.spaceSeq.Store(uint32(op) * 0x01010101)
				r.h.readerWaits.Store(uint32(op))
				w.h.writerWaits.Store(uint32(op))
			case 7: // we ask, without waiting
				if got, want := w.WaitWritable(0), m.writable(w); got != want {
					t.Fatalf("WaitWritable(0) = %v, want %v", got, want)
				}
			}
		}
	})
}

func sameErr(got, want error) bool {
	if want == nil || got == nil {
		return got == want
	}
	return errors.Is(got, want)
}

// model is what each side of the pipe should do, given what the peer
// stored. It evaluates the shared words in the same order as the code, as
// the latched closed flag depends on it.
type model struct {
	size             uint64
	rTail, rSeenHead uint64
	rCorrupt         bool
	rClosed          bool
	wHead, wSeenTail uint64
	wCorrupt         bool
	wClosed          bool
}

func (m *model) head(r *Pipe) (uint64, bool) {
	if m.rCorrupt {
		return 0, false
	}
	h := r.h.head.Load()
	if h < m.rSeenHead && h-m.rSeenHead > m.size || h-m.rTail > m.size || h-m.rSeenHead > m.size {
		m.rCorrupt = true
		return 0, false
	}
	m.rSeenHead = h
	return h, true
}

func (m *model) closed(p *Pipe, latched *bool) bool {
	if !*latched && p.h.closed.Load() != 0 {
		*latched = true
	}
	return *latched
}

// read returns what Read(n) must return, or blocks if it would block.
func (m *model) read(r *Pipe, n int) (want []byte, blocks bool, err error) {
	h, ok := m.head(r)
	if !ok {
		return nil, false, ErrCorrupt
	}
	if avail := h - m.rTail; avail > 0 {
		k := min(avail, uint64(n))
		for i := range k {
			want = append(want, r.ring[(m.rTail+i)&r.mask])
		}
		m.rTail += k
		return want, false, nil
	}
	if m.closed(r, &m.rClosed) {
		return nil, false, io.EOF
	}
	return nil, true, nil
}

func (m *model) tail(w *Pipe) (uint64, bool) {
	if m.wCorrupt {
		return 0, false
	}
	t := w.h.tail.Load()
	if t-m.wSeenTail > m.wHead-m.wSeenTail {
		m.wCorrupt = true
		return 0, false
	}
	m.wSeenTail = t
	return t, true
}

// write returns what TryWrite(n bytes) must return.
func (m *model) write(w *Pipe, n int) (int, error) {
	if m.wCorrupt {
		return 0, ErrCorrupt
	}
	if n == 0 {
		return 0, nil
	}
	if m.closed(w, &m.wClosed) {
		return 0, ErrClosed
	}
	t, ok := m.tail(w)
	if !ok {
		return 0, ErrCorrupt
	}
	k := min(int(m.size-(m.wHead-t)), n)
	m.wHead += uint64(k)
	return k, nil
}

func (m *model) writable(w *Pipe) bool {
	if m.closed(w, &m.wClosed) {
		return true
	}
	t, ok := m.tail(w)
	return !ok || m.size-(m.wHead-t) > 0
}
