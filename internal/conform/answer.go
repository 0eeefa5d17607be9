package conform

import (
	"bytes"
	"fmt"
	"math"
	"reflect"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// noSuchMethod is a method no worker serves.
const noSuchMethod = "bulkhead.conform.no-such-method"

// head encodes a CBOR head.
func head(major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return []byte{m | byte(n)}
	case n <= math.MaxUint8:
		return []byte{m | 24, byte(n)}
	case n <= math.MaxUint16:
		return []byte{m | 25, byte(n >> 8), byte(n)}
	case n <= math.MaxUint32:
		return []byte{m | 26, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	b := []byte{m | 27}
	for i := 7; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

// callPayload encodes [method, deadline, [args...]] with each argument's
// encoding given as is.
func callPayload(method string, deadline int64, args ...[]byte) []byte {
	b := append([]byte{0x83}, head(3, uint64(len(method)))...)
	b = append(b, method...)
	b = append(b, head(0, uint64(deadline))...)
	b = append(b, head(4, uint64(len(args)))...)
	for _, a := range args {
		b = append(b, a...)
	}
	return b
}

// bytesArg encodes a byte string of n bytes.
func bytesArg(n int) []byte {
	return append(head(2, uint64(n)), bytes.Repeat([]byte{0xa5}, n)...)
}

// uintArg encodes an unsigned integer.
func uintArg(n uint64) []byte { return head(0, n) }

// answer is a REPLY or an ERROR.
type answer struct {
	reply []byte          // the REPLY's payload, or nil for an ERROR
	err   *wire.ErrorBody // the ERROR, or nil
}

func (a answer) String() string {
	if a.err != nil {
		return fmt.Sprintf("ERROR %d %q", a.err.Code, a.err.Message)
	}
	if len(a.reply) > 32 {
		return fmt.Sprintf("REPLY of %d bytes (% x...)", len(a.reply), a.reply[:32])
	}
	return fmt.Sprintf("REPLY % x", a.reply)
}

// notStarted reports whether an ERROR says details.started: false.
func (a answer) notStarted() bool {
	if a.err == nil {
		return false
	}
	d, ok := a.err.Details.(map[any]any)
	return ok && d["started"] == false
}

// recvAnswer reads the answer to call id, checking it as a dispatcher does:
// the type, the id, the value rules.
func (s *session) recvAnswer(id uint64) (answer, error) {
	h, p, err := s.recv()
	if err != nil {
		return answer{}, fmt.Errorf("waiting for the answer to call %d: %w", id, err)
	}
	if h.Type != wire.TypeReply && h.Type != wire.TypeError {
		return answer{}, fmt.Errorf("waiting for the answer to call %d: got %v", id, h.Type)
	}
	if h.ID != id {
		return answer{}, fmt.Errorf("answer with id %d, want %d", h.ID, id)
	}
	if err := wire.CheckValue(p); err != nil {
		return answer{}, fmt.Errorf("answer to call %d: %w", id, err)
	}
	if h.Type == wire.TypeReply {
		return answer{reply: bytes.Clone(p)}, nil
	}
	e, err := wire.DecodeError(p)
	if err != nil {
		return answer{}, err
	}
	return answer{err: &e}, nil
}

// call sends one CALL and reads its answer.
func (s *session) call(id uint64, payload []byte) (answer, error) {
	if err := s.send(wire.TypeCall, id, payload); err != nil {
		return answer{}, err
	}
	return s.recvAnswer(id)
}

// wantError checks that a is an ERROR with the code.
func wantError(a answer, code uint64) error {
	if a.err == nil || a.err.Code != code {
		return fmt.Errorf("got %v, want ERROR %d", a, code)
	}
	if a.err.Message == "" {
		return fmt.Errorf("ERROR %d with an empty message", code)
	}
	return nil
}

// wantEcho checks that a REPLY holds the same value as arg.
func wantEcho(a answer, arg []byte) error {
	if a.reply == nil {
		return fmt.Errorf("got %v, want the argument back", a)
	}
	if bytes.Equal(a.reply, arg) {
		return nil
	}
	var x, y any
	if wire.Unmarshal(a.reply, &x) != nil || wire.Unmarshal(arg, &y) != nil || !reflect.DeepEqual(x, y) {
		return fmt.Errorf("echo returned % .40x, want % .40x", a.reply, arg)
	}
	return nil
}

// wantMarked checks the start marker after call id ran, if the worker keeps one.
func (s *session) wantMarked(id uint64) error {
	if s.hello.Marker && s.started() != id {
		return fmt.Errorf("start marker is %d after call %d started", s.started(), id)
	}
	return nil
}

// pingPong checks that the worker still answers.
func (s *session) pingPong(id uint64) error {
	if err := s.send(wire.TypePing, id, nil); err != nil {
		return err
	}
	h, p, err := s.recv()
	if err != nil {
		return fmt.Errorf("PING %d: %w", id, err)
	}
	if h.Type != wire.TypePong || h.ID != id || len(p) != 0 {
		return fmt.Errorf("PING %d answered by %v id %d with %d bytes", id, h.Type, h.ID, len(p))
	}
	return nil
}

// quit sends QUIT and checks the worker closes the connection and exits 0.
func (s *session) quit() error {
	if err := s.send(wire.TypeQuit, 0, nil); err != nil {
		return err
	}
	if err := s.expectDrop(); err != nil {
		return fmt.Errorf("after QUIT: %w", err)
	}
	return s.expectExit(0)
}

// probe is the method for calls whose result does not matter: the echo
// method if there is one (its argument is then any value), else one the
// worker does not serve.
func (k *kit) probe() string {
	if k.opts.Echo != "" {
		return k.opts.Echo
	}
	return noSuchMethod
}

// wantProbe checks the answer to a probe call with argument arg.
func (k *kit) wantProbe(s *session, a answer, arg []byte) error {
	if k.opts.Echo != "" {
		return wantEcho(a, arg)
	}
	if len(s.hello.Methods) == 0 { // "any method": anything but a refusal of the value
		if a.err != nil && a.err.Code == wire.CodeBadArguments {
			return fmt.Errorf("got %v for a valid value", a)
		}
		return nil
	}
	return wantError(a, wire.CodeUnknownMethod)
}

var errNoSleep = errSkip{"needs a method that runs for a while: give --sleep METHOD"}
