package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// CheckValue reports whether p is exactly one CBOR data item that keeps every
// rule of PROTOCOL.md section 5: nesting depth, array and map sizes, definite
// lengths, valid UTF-8, map keys that are text or integers and unique, no
// tags, no simple values but false, true and null, and no trailing bytes.
// A peer's value that fails is a protocol violation: the error wraps
// ErrProtocol. It reads each byte once and allocates only for a large
// map's keys; a byte string costs nothing whatever its size, so a reply can
// be checked before it is reported as a success.
func CheckValue(p []byte) error {
	c := checker{p: p}
	if err := c.item(1); err != nil {
		return &ValueError{Err: err}
	}
	if c.off != len(p) {
		return &ValueError{Err: fmt.Errorf("%d trailing bytes", len(p)-c.off)}
	}
	return nil
}

// ValueError is a payload that breaks the value rules of PROTOCOL.md
// section 5.
type ValueError struct{ Err error }

func (e *ValueError) Error() string {
	return "bulkhead protocol error: malformed CBOR value: " + e.Err.Error()
}

// Is makes errors.Is(err, ErrProtocol) hold.
func (e *ValueError) Is(target error) bool { return target == ErrProtocol }

func (e *ValueError) Unwrap() error { return e.Err }

var errTruncated = errors.New("truncated")

// checker walks one CBOR item; off is where the next byte is.
type checker struct {
	p   []byte
	off int
	// containers has depth count arrays and maps only, as the CBOR
	// decoder's MaxNestedLevels does (DecodeCall), rather than every item.
	containers bool
}

// head reads an item's initial byte and argument. Every length it returns
// has been checked against the bytes left.
func (c *checker) head() (major byte, info byte, arg uint64, err error) {
	if c.off >= len(c.p) {
		return 0, 0, 0, errTruncated
	}
	b := c.p[c.off]
	c.off++
	major, info = b>>5, b&0x1f
	switch {
	case info < 24:
		return major, info, uint64(info), nil
	case info > 27:
		return 0, 0, 0, fmt.Errorf("additional information %d (indefinite length or reserved)", info)
	}
	n := 1 << (info - 24)
	if len(c.p)-c.off < n {
		return 0, 0, 0, errTruncated
	}
	v := c.p[c.off : c.off+n]
	c.off += n
	switch n {
	case 1:
		arg = uint64(v[0])
	case 2:
		arg = uint64(binary.BigEndian.Uint16(v))
	case 4:
		arg = uint64(binary.BigEndian.Uint32(v))
	default:
		arg = binary.BigEndian.Uint64(v)
	}
	return major, info, arg, nil
}

// item checks one item at nesting level depth.
func (c *checker) item(depth int) error {
	if depth > MaxDepth && !c.containers {
		return fmt.Errorf("nested deeper than %d", MaxDepth)
	}
	major, info, arg, err := c.head()
	if err != nil {
		return err
	}
	if depth > MaxDepth && (major == 4 || major == 5) {
		return fmt.Errorf("nested deeper than %d", MaxDepth)
	}
	switch major {
	case 0, 1: // integers
		return nil
	case 2, 3: // byte and text strings
		if arg > uint64(len(c.p)-c.off) {
			return errTruncated
		}
		s := c.p[c.off : c.off+int(arg)]
		c.off += int(arg)
		if major == 3 && !utf8.Valid(s) {
			return errors.New("text string that is not valid UTF-8")
		}
		return nil
	case 4:
		if arg > MaxArrayItems {
			return fmt.Errorf("array of %d items (at most %d)", arg, MaxArrayItems)
		}
		for range arg {
			if err := c.item(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case 5:
		return c.mapItems(arg, depth)
	case 6:
		return errors.New("a tag")
	}
	switch info { // major 7
	case 20, 21, 22, 25, 26, 27: // false, true, null, floats
		return nil
	}
	return fmt.Errorf("simple value %d (only false, true and null)", arg)
}

// mapItems checks n key/value pairs: keys are integers or text, unique.
func (c *checker) mapItems(n uint64, depth int) error {
	if n > MaxMapPairs {
		return fmt.Errorf("map of %d pairs (at most %d)", n, MaxMapPairs)
	}
	var small [8]string
	var seen map[string]struct{}
	for i := range n {
		start := c.off
		major, _, arg, err := c.head()
		if err != nil {
			return err
		}
		var key string
		switch major {
		case 1:
			if arg >= 1<<63 {
				return errors.New("map key below -2^63")
			}
			fallthrough
		case 0:
			key = string([]byte{major, byte(arg >> 56), byte(arg >> 48), byte(arg >> 40), byte(arg >> 32),
				byte(arg >> 24), byte(arg >> 16), byte(arg >> 8), byte(arg)})
		case 3:
			c.off = start
			if err := c.item(depth + 1); err != nil {
				return err
			}
			k := c.p[start:c.off]
			key = "\x03" + string(k[len(k)-int(arg):])
		default:
			return fmt.Errorf("map key of major type %d (only integers and text)", major)
		}
		if i < uint64(len(small)) {
			for _, k := range small[:i] {
				if k == key {
					return errors.New("duplicate map key")
				}
			}
			small[i] = key
		} else {
			if seen == nil {
				seen = make(map[string]struct{}, min(n, math.MaxInt16))
				for _, k := range small {
					seen[k] = struct{}{}
				}
			}
			if _, dup := seen[key]; dup {
				return errors.New("duplicate map key")
			}
			seen[key] = struct{}{}
		}
		if err := c.item(depth + 1); err != nil {
			return err
		}
	}
	return nil
}
