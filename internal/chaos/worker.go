// Package chaos is bulkhead's chaos soak: it runs many calls through a pool
// whose workers inject real faults (native ones through cgo), and audits the
// run from both sides: what each caller was told, and what each worker
// journaled as started.
package chaos

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bulkhead-go/bulkhead/examples/crashy/native"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/bulkhead-go/bulkhead/worker"
	"golang.org/x/sys/unix"
)

// WorkerEnv, set in a worker's environment, names the journal directory and
// marks the process as a chaos worker.
const WorkerEnv = "BULKHEAD_CHAOS_JOURNAL"

// IsWorker reports whether this process was started as a chaos worker.
func IsWorker() bool { return os.Getenv(WorkerEnv) != "" && worker.IsWorker() }

// chaosWorker is one chaos worker process's state.
type chaosWorker struct {
	dir string
	jfd int // the journal, opened O_APPEND
	// journal is jfd's *os.File, kept: unreachable, its finalizer would
	// close jfd under the worker (a soak's calls then failed "journal:
	// bad file descriptor", once the GC ran).
	journal *os.File
	pid     uint32 // journaled with each record
	sock    int    // the protocol socket
	ring    *ring  // the shared-memory transport's pipes, if offered; else nil
}

// RunWorker serves chaos calls until the pool is done with this worker, then
// exits the process. Methods:
//
//	call(key, fault, arg, work)  journals key, sleeps work nanoseconds (the
//	                             call's work, deaf to its ctx, as native code
//	                             is), then does the fault (see Fault)
//	idem(key, fault, arg, work)  the same; the pool is told it is idempotent
func RunWorker() {
	w, err := newChaosWorker()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		os.Exit(1)
	}
	var s worker.Server
	s.Name = "chaos"
	s.Handle("call", w.handle)
	s.Handle("idem", w.handle)
	s.Run()
}

func newChaosWorker() (*chaosWorker, error) {
	w := &chaosWorker{dir: os.Getenv(WorkerEnv), pid: uint32(os.Getpid())}
	w.sock, _ = strconv.Atoi(os.Getenv("BULKHEAD_FD"))
	// Unique, not named by pid alone: a long soak wraps the pid space.
	j, err := os.CreateTemp(w.dir, fmt.Sprintf("journal-%d-*", os.Getpid()))
	if err == nil {
		// Reopen for appending: each record is then one atomic write.
		name := j.Name()
		j.Close()
		j, err = os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	w.journal, w.jfd = j, int(j.Fd())
	if err := pointJournal(w.dir, os.Getpid(), filepath.Base(j.Name())); err != nil {
		return nil, err
	}
	// Map the shared-memory pipes before the SDK does (it closes the
	// descriptor once it has mapped them): the ring faults write to them.
	if w.ring, err = openRing(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *chaosWorker) handle(_ context.Context, a worker.Args) (any, error) {
	var key uint64
	var fault string
	var arg, work int64
	if err := a.Scan(&key, &fault, &arg, &work); err != nil {
		return nil, err
	}
	if err := w.record(key, recordMagic); err != nil {
		return nil, err
	}
	if work > 0 {
		time.Sleep(time.Duration(work)) // the work itself, not synchronisation
	}
	return w.do(Fault(fault), key, arg)
}

// record journals one event of call key.
func (w *chaosWorker) record(key uint64, magic uint32) error {
	var rec [recordSize]byte
	putRecord(&rec, key, w.pid, magic)
	if _, err := unix.Write(w.jfd, rec[:]); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// do performs one fault, journaling it as fired first. Native faults happen
// in C, through cgo.
func (w *chaosWorker) do(f Fault, key uint64, arg int64) (any, error) {
	switch f {
	case FaultNone:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], key)
		native.Checksum(b[:])
		return key, nil
	case FaultFlaky:
		return w.flaky(key)
	case FaultEnviron, FaultShadow, FaultWrite:
		return w.sandboxFault(f, int64(key), arg)
	}
	if err := w.record(key, firedMagic); err != nil {
		return nil, err
	}
	switch f {
	case FaultSegv, FaultPoison:
		native.Segv()
	case FaultAbort:
		native.Abort()
	case FaultExit:
		native.Exit(ExitCode)
	case FaultHang:
		native.Hang()
	case FaultGarbage:
		w.lie([]byte("\x7fELF? no: a library wrote its debug output to the wrong descriptor\n"))
	case FaultOversize:
		var h [wire.HeaderSize]byte
		wire.PutHeader(h[:], wire.Header{Length: wire.MaxMaxFrame, Type: wire.TypeReply, ID: 1})
		w.lie(h[:])
	case FaultCloseSock:
		_ = unix.Close(w.sock)
		blockForever() // alive, but deaf
	case FaultLeak:
		// Grow until the pool's memory monitor kills us; arg caps the
		// growth (in MiB) so that a missing monitor cannot run away.
		for grown := int64(0); grown < arg; grown += 4 {
			native.Leak(4 << 20)
			time.Sleep(time.Millisecond)
		}
		blockForever()
	case FaultRingBack, FaultRingOver, FaultRingTorn:
		if w.ring == nil {
			return nil, errors.New("chaos worker: ring fault " + string(f) + " without the shared-memory transport")
		}
		w.ring.lie(f)
		blockForever()
	case FaultConnect, FaultExecSh, FaultSetsid, FaultPtrace, FaultAlloc:
		return w.sandboxFault(f, int64(key), arg)
	}
	return nil, errors.New("chaos worker: unknown fault " + string(f))
}

// lie writes b where the dispatcher reads frames (the socket, or the
// shared-memory pipe once the transport is in use), then blocks: a live
// worker that broke the protocol.
func (w *chaosWorker) lie(b []byte) {
	if w.ring != nil {
		w.ring.write(b)
	} else {
		_ = native.WriteFD(w.sock, b)
	}
	blockForever()
}

// flaky crashes on the first attempt of call key only: the pool must replay
// it.
func (w *chaosWorker) flaky(key uint64) (any, error) {
	f, err := os.OpenFile(filepath.Join(w.dir, "flaky-"+strconv.FormatUint(key, 10)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		f.Close()
		if err := w.record(key, firedMagic); err != nil {
			return nil, err
		}
		native.Segv()
	}
	return key, nil
}

// blockForever blocks in a system call, as a stuck library would.
func blockForever() {
	var p [2]int
	_ = unix.Pipe(p[:])
	_, _ = unix.Read(p[0], make([]byte, 1))
}
