package wire

import "fmt"

// Usage is a worker's resource usage during one call (PROTOCOL.md section
// 3, USAGE): the CPU time of the thread that ran it, and the process's peak
// resident memory since the call began.
type Usage struct {
	CPU    uint64 // nanoseconds
	MaxRSS uint64 // bytes
}

// Usage appends a USAGE frame for call id.
func (b *Builder) Usage(id uint64, u Usage, maxFrame uint32) error {
	return b.Value(TypeUsage, id, []uint64{u.CPU, u.MaxRSS}, maxFrame)
}

// DecodeUsage decodes a USAGE payload: an array of exactly two unsigned
// integers.
func DecodeUsage(p []byte) (Usage, error) {
	var v []uint64
	if err := decMode.Unmarshal(p, &v); err != nil {
		return Usage{}, fmt.Errorf("%w: USAGE payload: %v", ErrProtocol, err)
	}
	if len(v) != 2 {
		return Usage{}, fmt.Errorf("%w: USAGE payload of %d items, want 2", ErrProtocol, len(v))
	}
	return Usage{CPU: v[0], MaxRSS: v[1]}, nil
}
