package bulkhead

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"runtime"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// Config describes a pool of worker processes. Every field's zero value is
// usable, except Command. New copies the Config; the caller's is never
// modified.
type Config struct {
	// Command is the worker program: a path, or a name looked up in PATH.
	// Required.
	Command string

	// Args are the worker's arguments, not including the program name.
	// Zero value: none.
	Args []string

	// Env is the worker's environment, as "KEY=value" strings.
	// Zero value: the dispatcher's own environment. The BULKHEAD_*
	// variables of docs/PROTOCOL.md are always added.
	Env []string

	// Dir is the worker's working directory.
	// Zero value: the dispatcher's.
	Dir string

	// Workers is the number of worker processes kept running.
	// Zero value: runtime.NumCPU().
	Workers int

	// ConcurrencyPerWorker caps the calls in flight on one worker. The
	// worker's own HELLO may lower it further.
	// Zero value: 1, one call at a time, seed 000's apartment model.
	ConcurrencyPerWorker int

	// StartTimeout bounds the time from spawn to HELLO.
	// Zero value: 10 seconds.
	StartTimeout time.Duration

	// KillGrace is how long a worker has to exit after QUIT, and again
	// after SIGTERM, before the next step (SIGKILL).
	// Zero value: 2 seconds.
	KillGrace time.Duration

	// MaxFrameSize bounds every message in both directions, in bytes.
	// Zero value: 16 MiB. At most 1 GiB.
	MaxFrameSize int

	// StderrTail is how many bytes of each worker's stderr are kept for
	// crash reports. Zero value: 4 KiB. At most 1 MiB.
	StderrTail int

	// MaxRedispatch bounds how many times one call that never started is
	// sent to another worker after its worker died under it.
	// Zero value: 3.
	MaxRedispatch int

	// Transport is how frames travel once a worker has said HELLO:
	// TransportSocket (the zero value), or TransportShm, shared-memory
	// pipes with futex doorbells, for callers who will spend CPU on
	// spinning to cut latency. A worker that does not support shared
	// memory stays on the socket.
	Transport Transport

	// ShmRingSize is the bytes of each direction's ring with TransportShm.
	// Zero value: 1 MiB. A power of two from 4 KiB to 64 MiB.
	ShmRingSize int

	// ShmSpin is how many times a side polls an empty ring before it
	// sleeps in futex(2), with TransportShm.
	// Zero value: 20000 (tens of microseconds on current hardware).
	ShmSpin int

	// RestartDelay is the first pause before retrying a worker that failed
	// to start; it doubles on each further failure, up to 1000 times
	// itself.
	// Zero value: 10 milliseconds.
	RestartDelay time.Duration

	// Logger receives one structured record per worker start failure,
	// crash and replacement.
	// Zero value: slog.Default().
	Logger *slog.Logger
}

// Transport selects how frames travel between dispatcher and worker.
type Transport int

const (
	TransportSocket Transport = iota // a Unix stream socket
	TransportShm                     // shared-memory pipes (PROTOCOL.md section 9)
)

// Bounds on Config values, so that a typo cannot ask for a million workers.
const (
	maxWorkers     = 4096
	maxConcurrency = wire.MaxConcurrency
	maxStderrTail  = 1 << 20
)

// settings is a validated Config with defaults filled in.
type settings struct {
	Config
	path     string
	maxFrame uint32
}

func (c *Config) settings() (settings, error) {
	s := settings{Config: *c}
	// Copy the slices, so that later changes by the caller do not reach us.
	s.Args = append([]string(nil), c.Args...)
	if c.Env != nil {
		s.Env = append([]string(nil), c.Env...)
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("bulkhead: Config."+format, a...)) }
	if c.Command == "" {
		bad("Command is required")
	} else if p, err := exec.LookPath(c.Command); err != nil {
		bad("Command: %w", err)
	} else {
		s.path = p
	}
	if c.Workers < 0 || c.Workers > maxWorkers {
		bad("Workers = %d: want 0 (NumCPU) to %d", c.Workers, maxWorkers)
	} else if c.Workers == 0 {
		s.Workers = runtime.NumCPU()
	}
	if c.ConcurrencyPerWorker < 0 || c.ConcurrencyPerWorker > maxConcurrency {
		bad("ConcurrencyPerWorker = %d: want 0 (1) to %d", c.ConcurrencyPerWorker, maxConcurrency)
	} else if c.ConcurrencyPerWorker == 0 {
		s.ConcurrencyPerWorker = 1
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"StartTimeout", &s.StartTimeout, 10 * time.Second},
		{"KillGrace", &s.KillGrace, 2 * time.Second},
		{"RestartDelay", &s.RestartDelay, 10 * time.Millisecond},
	}
	for _, d := range durations {
		if *d.v < 0 {
			bad("%s = %v: must not be negative", d.name, *d.v)
		} else if *d.v == 0 {
			*d.v = d.def
		}
	}
	switch {
	case c.MaxFrameSize < 0 || c.MaxFrameSize > wire.MaxMaxFrame:
		bad("MaxFrameSize = %d: want 0 (16 MiB) to %d", c.MaxFrameSize, wire.MaxMaxFrame)
	case c.MaxFrameSize > 0 && c.MaxFrameSize < 1024:
		bad("MaxFrameSize = %d: want at least 1024", c.MaxFrameSize)
	case c.MaxFrameSize == 0:
		s.maxFrame = wire.DefaultMaxFrame
	default:
		s.maxFrame = uint32(c.MaxFrameSize)
	}
	if c.StderrTail < 0 || c.StderrTail > maxStderrTail {
		bad("StderrTail = %d: want 0 (4 KiB) to %d", c.StderrTail, maxStderrTail)
	} else if c.StderrTail == 0 {
		s.StderrTail = 4 << 10
	}
	if c.MaxRedispatch < 0 || c.MaxRedispatch > 100 {
		bad("MaxRedispatch = %d: want 0 (3) to 100", c.MaxRedispatch)
	} else if c.MaxRedispatch == 0 {
		s.MaxRedispatch = 3
	}
	switch {
	case c.Transport != TransportSocket && c.Transport != TransportShm:
		bad("Transport = %d: want TransportSocket or TransportShm", c.Transport)
	case c.ShmRingSize < 0 || c.ShmRingSize > 64<<20 || (c.ShmRingSize != 0 && (c.ShmRingSize < 4096 || c.ShmRingSize&(c.ShmRingSize-1) != 0)):
		bad("ShmRingSize = %d: want 0 (1 MiB) or a power of two from 4096 to %d", c.ShmRingSize, 64<<20)
	case c.ShmSpin < 0 || c.ShmSpin > 1<<30:
		bad("ShmSpin = %d: want 0 (20000) to %d", c.ShmSpin, 1<<30)
	}
	if s.ShmRingSize == 0 {
		s.ShmRingSize = 1 << 20
	}
	if s.ShmSpin == 0 {
		s.ShmSpin = 20000
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return s, errors.Join(errs...)
}

func (s *settings) restartDelay() time.Duration    { return s.RestartDelay }
func (s *settings) maxRestartDelay() time.Duration { return 1000 * s.RestartDelay }
