package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// Decode limits of PROTOCOL.md section 5.
const (
	MaxDepth       = 32
	MaxArrayItems  = 131072
	MaxMapPairs    = 131072
	MaxMethodBytes = 256
)

// The modes are built once and never change; they are safe for concurrent use.
var (
	encMode = mustEnc(cbor.EncOptions{
		Sort:          cbor.SortCoreDeterministic,
		IndefLength:   cbor.IndefLengthForbidden,
		TagsMd:        cbor.TagsForbidden,
		Time:          cbor.TimeUnixDynamic,
		NilContainers: cbor.NilContainerAsNull,
	})
	decMode = mustDec(cbor.DecOptions{
		MaxNestedLevels:  MaxDepth,
		MaxArrayElements: MaxArrayItems,
		MaxMapPairs:      MaxMapPairs,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		UTF8:             cbor.UTF8RejectInvalid,
		DefaultMapType:   reflect.TypeOf(map[any]any(nil)),
		SimpleValues:     onlyBoolsAndNull(),
	})
)

// onlyBoolsAndNull rejects every simple value but false, true and null
// (PROTOCOL.md section 5): undefined and the unassigned ones too.
func onlyBoolsAndNull() *cbor.SimpleValueRegistry {
	var reject []func(*cbor.SimpleValueRegistry) error
	for sv := range 256 {
		if (sv < 20 || sv == 23 || sv > 31) && sv != 20 && sv != 21 && sv != 22 {
			reject = append(reject, cbor.WithRejectedSimpleValue(cbor.SimpleValue(sv)))
		}
	}
	r, err := cbor.NewSimpleValueRegistryFromDefaults(reject...)
	if err != nil {
		panic(err)
	}
	return r
}

func mustEnc(o cbor.EncOptions) cbor.UserBufferEncMode {
	m, err := o.UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	return m
}

func mustDec(o cbor.DecOptions) cbor.DecMode {
	m, err := o.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}

// Marshal encodes v as one CBOR data item under the protocol's rules.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes exactly one CBOR data item into v under the protocol's
// limits. Trailing bytes are an error.
func Unmarshal(data []byte, v any) error { return decMode.Unmarshal(data, v) }

// Builder appends frames to a buffer. Its zero value is ready to use; it is
// reused across calls so that steady-state encoding does not allocate.
//
// CallVec and ValueVec reference large byte strings instead of copying them
// (vec.go); a Builder holding such references is written with Segments.
type Builder struct {
	buf   bytes.Buffer
	start int   // offset of the frame being built
	refs  []ref // referenced byte strings, in stream order
	first int   // index in refs of the first reference of the frame being built
}

var zeroHeader [HeaderSize]byte

// Reset discards all frames, and drops any references to byte strings.
func (b *Builder) Reset() {
	b.buf.Reset()
	if len(b.refs) > 0 {
		clear(b.refs)
		b.refs = b.refs[:0]
	}
}

// Bytes returns the frames built so far. With references (HasRefs) it is
// not the whole stream: use Segments.
func (b *Builder) Bytes() []byte { return b.buf.Bytes() }

// Len returns the number of bytes built so far, referenced ones included.
func (b *Builder) Len() int {
	n := b.buf.Len()
	for _, r := range b.refs {
		n += len(r.b)
	}
	return n
}

func (b *Builder) begin() {
	b.start = b.buf.Len()
	b.first = len(b.refs)
	b.buf.Write(zeroHeader[:])
}

// drop discards the frame begun last.
func (b *Builder) drop() {
	b.buf.Truncate(b.start)
	clear(b.refs[b.first:])
	b.refs = b.refs[:b.first]
}

// end fills in the header of the frame begun last, or drops the frame and
// reports an error if its payload is over maxFrame.
func (b *Builder) end(t Type, id uint64, maxFrame uint32) error {
	n := b.buf.Len() - b.start - HeaderSize
	for _, r := range b.refs[b.first:] {
		n += len(r.b)
	}
	if uint64(n) > uint64(maxFrame) {
		b.drop()
		return fmt.Errorf("%w: %v payload of %d bytes is over the frame limit of %d",
			ErrTooLarge, t, n, maxFrame)
	}
	PutHeader(b.buf.Bytes()[b.start:], Header{Length: uint32(n), Type: t, ID: id})
	return nil
}

// ErrTooLarge is returned when a message would exceed the frame limit.
var ErrTooLarge = errors.New("message too large")

// Empty appends a frame without payload (CANCEL, QUIT, PING, PONG).
func (b *Builder) Empty(t Type, id uint64) {
	b.begin()
	_ = b.end(t, id, 0)
}

// Call appends a CALL frame: ["method", deadline, [args...]].
func (b *Builder) Call(id uint64, method string, deadline int64, args []any, maxFrame uint32) error {
	return b.call(id, method, deadline, args, maxFrame, false)
}

func (b *Builder) call(id uint64, method string, deadline int64, args []any, maxFrame uint32, vec bool) error {
	b.callHead(method, deadline, len(args))
	for i, a := range args {
		if vec && b.ref(a) {
			continue
		}
		if b.fast(a) {
			continue
		}
		if err := b.marshal(a); err != nil {
			b.drop()
			return fmt.Errorf("encoding argument %d (%T): %w", i, a, err)
		}
	}
	return b.end(TypeCall, id, maxFrame)
}

// CallBytes appends the CALL frame that Call (vec false) or CallVec (vec
// true) would append for args []any{arg}, byte for byte, without boxing arg
// into an any: the caller's []byte does not escape into an interface.
func (b *Builder) CallBytes(id uint64, method string, deadline int64, arg []byte, maxFrame uint32, vec bool) error {
	b.callHead(method, deadline, 1)
	if !vec || !b.refBytes(arg) {
		b.bytes(arg)
	}
	return b.end(TypeCall, id, maxFrame)
}

// callHead begins a CALL frame and writes its payload up to the head of
// the argument array: ["method", deadline, [ (n items follow). Every CALL
// encoder goes through it, so that a field added to the CALL is added once.
func (b *Builder) callHead(method string, deadline int64, n int) {
	b.begin()
	b.buf.WriteByte(0x83)
	b.head(3, uint64(len(method)))
	b.buf.WriteString(method)
	if deadline < 0 {
		deadline = 0
	}
	b.head(0, uint64(deadline))
	b.head(4, uint64(n))
}

// Value appends a frame whose payload is one encoded value (REPLY, HELLO).
func (b *Builder) Value(t Type, id uint64, v any, maxFrame uint32) error {
	b.begin()
	if b.fast(v) {
		return b.end(t, id, maxFrame)
	}
	if err := b.marshal(v); err != nil {
		b.drop()
		return fmt.Errorf("encoding %v value (%T): %w", t, v, err)
	}
	return b.end(t, id, maxFrame)
}

// marshal encodes v into the frame being built. Should encoding panic (a
// MarshalCBOR method of the caller's type), the partial frame is dropped
// before the panic goes on, so that a caller that recovers still holds only
// whole frames: a worker answers such a call with ERROR panic rather than
// with half a REPLY.
func (b *Builder) marshal(v any) error {
	done := false
	defer func() {
		if !done {
			b.drop()
		}
	}()
	err := encMode.MarshalToBuffer(v, &b.buf)
	done = true
	return err
}

// fast encodes the commonest arguments, nil and []byte, without the
// encoder's reflection and deferred recovery, exactly as encMode would
// (a nil []byte is null: NilContainerAsNull), and reports whether it did.
func (b *Builder) fast(v any) bool {
	switch v := v.(type) {
	case nil:
		b.buf.WriteByte(0xf6)
	case []byte:
		b.bytes(v)
	default:
		return false
	}
	return true
}

// bytes encodes v as encMode would: a byte string, or null for a nil slice
// (NilContainerAsNull).
func (b *Builder) bytes(v []byte) {
	if v == nil {
		b.buf.WriteByte(0xf6)
		return
	}
	b.head(2, uint64(len(v)))
	b.buf.Write(v)
}

// Raw appends a frame whose payload is already-encoded CBOR.
func (b *Builder) Raw(t Type, id uint64, payload []byte, maxFrame uint32) error {
	b.begin()
	b.buf.Write(payload)
	return b.end(t, id, maxFrame)
}

// head writes a CBOR major type and argument in the shortest form.
func (b *Builder) head(major byte, n uint64) {
	var tmp [9]byte
	m := major << 5
	switch {
	case n < 24:
		b.buf.WriteByte(m | byte(n))
	case n <= 0xff:
		b.buf.Write([]byte{m | 24, byte(n)})
	case n <= 0xffff:
		tmp[0] = m | 25
		binary.BigEndian.PutUint16(tmp[1:], uint16(n))
		b.buf.Write(tmp[:3])
	case n <= 0xffffffff:
		tmp[0] = m | 26
		binary.BigEndian.PutUint32(tmp[1:], uint32(n))
		b.buf.Write(tmp[:5])
	default:
		tmp[0] = m | 27
		binary.BigEndian.PutUint64(tmp[1:], n)
		b.buf.Write(tmp[:9])
	}
}

// Call is a decoded CALL payload. Args holds each argument's encoded bytes:
// slices of the payload given to DecodeCall, not copies.
type Call struct {
	_        struct{} `cbor:",toarray"`
	Method   string
	Deadline int64
	Args     []cbor.RawMessage
	// Traceparent is the CALL's optional fourth item (trace.go), or "".
	// One that is not a W3C traceparent of version 00 is dropped: the
	// call runs untraced.
	Traceparent string `cbor:"-"`
}

// DecodeCall decodes a CALL payload into c, reusing c's argument slice. The
// arguments alias p: they are valid while p is.
//
// It walks the payload by hand (the checker of check.go), with no
// reflection and no allocation once c's slice has grown and while the
// method name repeats: this runs on every call a worker takes. It accepts
// exactly what decoding into a toarray struct under decMode accepted, which
// FuzzDecodeCallMatchesReflect holds it to.
func DecodeCall(p []byte, c *Call) error {
	if len(p) == 0 || p[0] != 0x83 && p[0] != 0x84 {
		return &FrameError{Header{Type: TypeCall}, "CALL payload is not an array of 3 or 4 items"}
	}
	c.Traceparent = ""
	k := checker{p: p, off: 1, containers: true}
	// The method: a text string of valid UTF-8.
	start := k.off
	major, _, n, err := k.head()
	if err == nil && major != 3 {
		err = fmt.Errorf("method is of major type %d, not a text string", major)
	}
	if err == nil {
		k.off = start
		err = k.item(2)
	}
	if err != nil {
		return fmt.Errorf("%w: CALL payload: method: %v", ErrProtocol, err)
	}
	mb := p[k.off-int(n) : k.off]
	if len(mb) == 0 || len(mb) > MaxMethodBytes {
		return fmt.Errorf("%w: CALL method name of %d bytes (want 1 to %d)", ErrProtocol, len(mb), MaxMethodBytes)
	}
	if c.Method != string(mb) { // no allocation when it repeats
		c.Method = string(mb)
	}
	// The deadline: an integer that fits an int64, or null (none).
	major, info, n, err := k.head()
	switch {
	case err != nil:
	case major == 7 && info == 22:
		c.Deadline = 0
	case major == 0 && n <= math.MaxInt64:
		c.Deadline = int64(n)
	case major == 1 && n <= math.MaxInt64:
		c.Deadline = -1 - int64(n)
	case major == 0 || major == 1:
		err = errors.New("deadline overflows int64")
	default:
		err = fmt.Errorf("deadline is of major type %d, not an integer", major)
	}
	if err != nil {
		return fmt.Errorf("%w: CALL payload: deadline: %v", ErrProtocol, err)
	}
	// The arguments: null, or an array of well-formed, valid items (CheckValue's
	// rules), each one a view of p.
	major, info, n, err = k.head()
	if err == nil && major == 7 && info == 22 { // null: none
		n = 0
	} else if err == nil && major != 4 {
		err = fmt.Errorf("arguments are of major type %d, not an array", major)
	}
	if err == nil && n > MaxArrayItems {
		err = fmt.Errorf("array of %d items (at most %d)", n, MaxArrayItems)
	}
	if err != nil {
		return fmt.Errorf("%w: CALL payload: arguments: %v", ErrProtocol, err)
	}
	c.Args = c.Args[:0]
	for i := range n {
		start := k.off
		if err := k.item(3); err != nil {
			return fmt.Errorf("CALL argument %d: %w", i, &ValueError{Err: err})
		}
		c.Args = append(c.Args, cbor.RawMessage(p[start:k.off]))
	}
	if p[0] == 0x84 {
		if err := k.traceparent(c); err != nil {
			return fmt.Errorf("%w: CALL payload: traceparent: %v", ErrProtocol, err)
		}
	}
	if k.off != len(p) {
		return fmt.Errorf("%w: CALL payload: %d trailing bytes", ErrProtocol, len(p)-k.off)
	}
	if c.Deadline < 0 {
		return fmt.Errorf("%w: CALL deadline is negative", ErrProtocol)
	}
	return nil
}

// checkArgs holds each argument to the value rules that decoding it as raw
// bytes does not check (duplicate map keys, key types, simple values): a
// handler that takes an argument raw, and echoes it, would otherwise send a
// value the dispatcher refuses, and lose its worker. The decoder has already
// bounded the nesting over the whole payload.
func checkArgs(what string, args []cbor.RawMessage) error {
	for i, a := range args {
		if err := CheckValue(a); err != nil {
			return fmt.Errorf("%s argument %d: %w", what, i, err)
		}
	}
	return nil
}

// Error codes of PROTOCOL.md section 3.
const (
	CodeApplication        = 1
	CodeUnknownMethod      = 2
	CodeBadArguments       = 3
	CodePanic              = 4
	CodeCanceled           = 5
	CodeServerStopping     = 6
	CodeUnsupportedVersion = 7
	CodeBadHello           = 8
)

// ErrorBody is an ERROR payload.
type ErrorBody struct {
	Code    uint64 `cbor:"code"`
	Message string `cbor:"message"`
	Details any    `cbor:"details,omitempty"`
}

// DecodeError decodes an ERROR payload.
func DecodeError(p []byte) (ErrorBody, error) {
	var e ErrorBody
	if err := decMode.Unmarshal(p, &e); err != nil {
		return e, fmt.Errorf("%w: ERROR payload: %v", ErrProtocol, err)
	}
	return e, nil
}

// Hello is the HELLO payload (PROTOCOL.md section 4).
type Hello struct {
	Protocol    uint64   `cbor:"protocol"`
	PID         int64    `cbor:"pid"`
	Cookie      string   `cbor:"cookie"`
	Methods     []string `cbor:"methods"`
	Concurrency uint64   `cbor:"concurrency"`
	Marker      bool     `cbor:"marker,omitempty"`
	Name        string   `cbor:"name,omitempty"`
	// Transport is "shm" when the worker accepted the shared-memory
	// transport the dispatcher offered (PROTOCOL.md section 9).
	Transport string `cbor:"transport,omitempty"`
	// SIGTERM says what SIGTERM does to the worker: SigtermCancel, or ""
	// (not said). A value this dispatcher does not know means "not said".
	SIGTERM string `cbor:"sigterm,omitempty"`
	// Stack names the signal on which the worker sends a STACK frame, a
	// dump of its threads' stacks (StackSIGUSR2), or "" (it does not). A
	// value this dispatcher does not know means "it does not".
	Stack string `cbor:"stack,omitempty"`
	// Trace is TraceW3C when the worker takes a traceparent in CALL
	// (PROTOCOL.md section 3), or "" (it does not: a dispatcher sends
	// none). A value this dispatcher does not know means "it does not".
	Trace string `cbor:"trace,omitempty"`
}

// HELLO's "stack" values (PROTOCOL.md section 3). StackSIGUSR2: the worker
// answers SIGUSR2 with a STACK frame written by a thread of its own, not
// one running a call; the dispatcher signals such a thread alone.
// StackSIGUSR2CallThread: the signal is taken on the call's own thread
// (the C SDK with BH_STACK_ON_SIGUSR2), which it interrupts: the program
// opted in to that, and the dispatcher signals the process.
const (
	StackSIGUSR2           = "SIGUSR2"
	StackSIGUSR2CallThread = "SIGUSR2-call-thread"
)

// MaxStackDump bounds the STACK text a dispatcher keeps; the rest of a
// longer dump is dropped.
const MaxStackDump = 256 << 10

// DecodeStack decodes a STACK payload: one CBOR text string. A longer one
// is cut to MaxStackDump bytes.
func DecodeStack(p []byte) (string, error) {
	if len(p) == 0 || p[0]>>5 != 3 { // null would decode as "": only a text string is a dump
		return "", fmt.Errorf("%w: STACK payload is not a text string", ErrProtocol)
	}
	var s string
	if err := decMode.Unmarshal(p, &s); err != nil {
		return "", fmt.Errorf("%w: STACK payload: %v", ErrProtocol, err)
	}
	if len(s) > MaxStackDump {
		s = s[:MaxStackDump]
	}
	return s, nil
}

// SigtermCancel is HELLO's "sigterm" of a worker on which SIGTERM only
// cancels the calls in flight (their contexts, in the Go SDK), and which
// exits once they have returned: a call that ignores cancellation, native
// code in particular, runs on (PROTOCOL.md section 4).
const SigtermCancel = "cancel"

// Limits on HELLO contents.
const (
	MaxHelloMethods  = 4096
	MaxConcurrency   = 1 << 16
	MaxHelloNameSize = 256
	// MaxHelloSigtermSize bounds "sigterm", known values or not.
	MaxHelloSigtermSize = 32
)

// HelloError is a HELLO that was refused; Code is the ERROR code to send back.
type HelloError struct {
	Code   uint64
	Reason string
}

func (e *HelloError) Error() string { return "bulkhead handshake refused: " + e.Reason }

func (e *HelloError) Unwrap() error { return ErrProtocol }

// DecodeHello decodes and checks a HELLO payload against the expected cookie.
// The version is checked before anything else, so that a worker of another
// version is told exactly that.
func DecodeHello(p []byte, cookie string) (Hello, error) {
	var h Hello
	if err := decMode.Unmarshal(p, &h); err != nil {
		// Try to find the version alone, for a clearer error.
		var v struct {
			Protocol uint64 `cbor:"protocol"`
		}
		if decMode.Unmarshal(p, &v) == nil && v.Protocol != Version {
			return h, versionError(v.Protocol)
		}
		return h, &HelloError{CodeBadHello, fmt.Sprintf("malformed HELLO: %v", err)}
	}
	switch {
	case h.Protocol != Version:
		return h, versionError(h.Protocol)
	case h.Cookie != cookie:
		return h, &HelloError{CodeBadHello, "cookie does not match"}
	case h.PID <= 0:
		return h, &HelloError{CodeBadHello, fmt.Sprintf("invalid pid %d", h.PID)}
	case h.Concurrency < 1 || h.Concurrency > MaxConcurrency:
		return h, &HelloError{CodeBadHello, fmt.Sprintf("concurrency %d out of range 1..%d", h.Concurrency, MaxConcurrency)}
	case len(h.Methods) > MaxHelloMethods:
		return h, &HelloError{CodeBadHello, fmt.Sprintf("%d methods, more than %d", len(h.Methods), MaxHelloMethods)}
	case len(h.Name) > MaxHelloNameSize:
		return h, &HelloError{CodeBadHello, "name too long"}
	case h.Transport != "" && h.Transport != "shm":
		return h, &HelloError{CodeBadHello, fmt.Sprintf("unknown transport %q", h.Transport)}
	case len(h.SIGTERM) > MaxHelloSigtermSize:
		return h, &HelloError{CodeBadHello, fmt.Sprintf("sigterm of %d bytes, more than %d", len(h.SIGTERM), MaxHelloSigtermSize)}
	case len(h.Stack) > MaxHelloSigtermSize:
		return h, &HelloError{CodeBadHello, fmt.Sprintf("stack of %d bytes, more than %d", len(h.Stack), MaxHelloSigtermSize)}
	case len(h.Trace) > MaxHelloSigtermSize:
		return h, &HelloError{CodeBadHello, fmt.Sprintf("trace of %d bytes, more than %d", len(h.Trace), MaxHelloSigtermSize)}
	}
	for _, m := range h.Methods {
		if len(m) == 0 || len(m) > MaxMethodBytes {
			return h, &HelloError{CodeBadHello, fmt.Sprintf("method name of %d bytes", len(m))}
		}
	}
	return h, nil
}

func versionError(v uint64) error {
	return &HelloError{CodeUnsupportedVersion,
		fmt.Sprintf("worker speaks protocol version %d; this dispatcher speaks version %d", v, Version)}
}

// Skipped reports whether an ERROR of code with details says that no
// handler ran: code canceled with details {"started": false} (section 3).
func Skipped(code uint64, details any) bool {
	m, ok := details.(map[any]any)
	return code == CodeCanceled && ok && m["started"] == false
}
