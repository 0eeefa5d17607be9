package worker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// env is what the dispatcher hands a worker (PROTOCOL.md section 1).
type env struct {
	fd          int
	markerFD    int // -1: none
	cookie      string
	parentPID   int
	maxFrame    uint32
	idleTimeout time.Duration
	shmFD       int // -1: no shared-memory transport offered
	shmSize     int // ring bytes per direction
	shmSpin     int
	callUsage   bool // BULKHEAD_CALL_USAGE=1: a USAGE frame before each answer
}

// ErrNotWorker is returned by Serve when the process was not started by a
// bulkhead dispatcher.
var ErrNotWorker = fmt.Errorf("worker: not started by a bulkhead dispatcher (BULKHEAD_FD is not set)")

// IsWorker reports whether this process was started by a bulkhead dispatcher.
// Programs that can run both as a dispatcher and as a worker use it to choose.
func IsWorker() bool { return os.Getenv("BULKHEAD_FD") != "" }

func readEnv() (env, error) {
	e := env{markerFD: -1, shmFD: -1, maxFrame: wire.DefaultMaxFrame}
	fdStr := os.Getenv("BULKHEAD_FD")
	if fdStr == "" {
		return e, ErrNotWorker
	}
	if v := os.Getenv("BULKHEAD_PROTOCOL"); v != "" && v != strconv.Itoa(wire.Version) {
		return e, fmt.Errorf("worker: %w: dispatcher speaks protocol %q, this worker speaks %d", errBadEnv, v, wire.Version)
	}
	e.callUsage = os.Getenv("BULKHEAD_CALL_USAGE") == "1"
	var err error
	if e.fd, err = atoiRange("BULKHEAD_FD", fdStr, 0, 1<<20); err != nil {
		return e, err
	}
	if v := os.Getenv("BULKHEAD_MARKER_FD"); v != "" {
		if e.markerFD, err = atoiRange("BULKHEAD_MARKER_FD", v, 0, 1<<20); err != nil {
			return e, err
		}
	}
	e.cookie = os.Getenv("BULKHEAD_COOKIE")
	if v := os.Getenv("BULKHEAD_PARENT_PID"); v != "" {
		if e.parentPID, err = atoiRange("BULKHEAD_PARENT_PID", v, 1, 1<<22); err != nil {
			return e, err
		}
	}
	if v := os.Getenv("BULKHEAD_MAX_FRAME"); v != "" {
		n, err := atoiRange("BULKHEAD_MAX_FRAME", v, 1024, wire.MaxMaxFrame)
		if err != nil {
			return e, err
		}
		e.maxFrame = uint32(n)
	}
	if v := os.Getenv("BULKHEAD_IDLE_TIMEOUT_MS"); v != "" {
		n, err := atoiRange("BULKHEAD_IDLE_TIMEOUT_MS", v, 0, 1<<40)
		if err != nil {
			return e, err
		}
		e.idleTimeout = time.Duration(n) * time.Millisecond
	}
	if v := os.Getenv("BULKHEAD_SHM_FD"); v != "" {
		if e.shmFD, err = atoiRange("BULKHEAD_SHM_FD", v, 0, 1<<20); err != nil {
			return e, err
		}
		if e.shmSize, err = atoiRange("BULKHEAD_SHM_SIZE", os.Getenv("BULKHEAD_SHM_SIZE"), 4096, 1<<30); err != nil {
			return e, err
		}
		if e.shmSize&(e.shmSize-1) != 0 {
			return e, fmt.Errorf("worker: %w: BULKHEAD_SHM_SIZE=%d is not a power of two", errBadEnv, e.shmSize)
		}
		if v := os.Getenv("BULKHEAD_SHM_SPIN"); v != "" {
			if e.shmSpin, err = atoiRange("BULKHEAD_SHM_SPIN", v, 0, 1<<30); err != nil {
				return e, err
			}
		}
	}
	return e, nil
}

// errBadEnv is wrapped by errors about the environment the dispatcher gave.
var errBadEnv = errors.New("bad environment")

func atoiRange(name, s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("worker: %w: %s=%q: want an integer from %d to %d", errBadEnv, name, s, lo, hi)
	}
	return n, nil
}
