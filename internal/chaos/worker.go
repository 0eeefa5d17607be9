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

// Journal records: one fixed-size record per call started, appended with a
// single write(2) to an O_APPEND file of the worker's own.
const (
	recordSize  = 16
	recordMagic = 0x4c4e524a // "JRNL"
)

// RunWorker serves chaos calls until the pool is done with this worker, then
// exits the process. Methods:
//
//	call(key, fault, arg)  journals key, then does the fault (see Fault)
//	idem(key, fault, arg)  the same; the pool is told it is idempotent
func RunWorker() {
	dir := os.Getenv(WorkerEnv)
	fd, _ := strconv.Atoi(os.Getenv("BULKHEAD_FD"))
	// Unique, not named by pid alone: a long soak wraps the pid space.
	j, err := os.CreateTemp(dir, fmt.Sprintf("journal-%d-*", os.Getpid()))
	if err == nil {
		// Reopen for appending: each record is then one atomic write.
		name := j.Name()
		j.Close()
		j, err = os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker: journal:", err)
		os.Exit(1)
	}
	jfd := int(j.Fd())
	pid := uint32(os.Getpid())
	h := func(_ context.Context, a worker.Args) (any, error) {
		var key uint64
		var fault string
		var arg int64
		if err := a.Scan(&key, &fault, &arg); err != nil {
			return nil, err
		}
		var rec [recordSize]byte
		binary.LittleEndian.PutUint64(rec[0:], key)
		binary.LittleEndian.PutUint32(rec[8:], pid)
		binary.LittleEndian.PutUint32(rec[12:], recordMagic)
		if _, err := unix.Write(jfd, rec[:]); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		return do(Fault(fault), key, arg, fd, dir)
	}
	var s worker.Server
	s.Name = "chaos"
	s.Handle("call", h)
	s.Handle("idem", h)
	s.Run()
}

// do performs one fault. Native faults happen in C, through cgo.
func do(f Fault, key uint64, arg int64, fd int, dir string) (any, error) {
	switch f {
	case FaultNone:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], key)
		native.Checksum(b[:])
		return key, nil
	case FaultSegv, FaultPoison:
		native.Segv()
	case FaultAbort:
		native.Abort()
	case FaultExit:
		native.Exit(ExitCode)
	case FaultHang:
		native.Hang()
	case FaultGarbage:
		_ = native.WriteFD(fd, []byte("\x7fELF? no: a library wrote its debug output to the wrong descriptor\n"))
		blockForever()
	case FaultOversize:
		var h [wire.HeaderSize]byte
		wire.PutHeader(h[:], wire.Header{Length: wire.MaxMaxFrame, Type: wire.TypeReply, ID: 1})
		_ = native.WriteFD(fd, h[:])
		blockForever()
	case FaultCloseSock:
		_ = unix.Close(fd)
		blockForever() // alive, but deaf
	case FaultLeak:
		// Grow until the pool's memory monitor kills us; arg caps the
		// growth (in MiB) so that a missing monitor cannot run away.
		for grown := int64(0); grown < arg; grown += 4 {
			native.Leak(4 << 20)
			time.Sleep(time.Millisecond)
		}
		blockForever()
	case FaultFlaky:
		// Crash on the first attempt only: the pool must replay it.
		f, err := os.OpenFile(filepath.Join(dir, "flaky-"+strconv.FormatUint(key, 10)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			native.Segv()
		}
		return key, nil
	}
	return nil, errors.New("chaos worker: unknown fault " + string(f))
}

// blockForever blocks in a system call, as a stuck library would.
func blockForever() {
	var p [2]int
	_ = unix.Pipe(p[:])
	_, _ = unix.Read(p[0], make([]byte, 1))
}
