package wire

import (
	"fmt"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// Object-model message types (PROTOCOL.md section 10). They live in the range
// 16-31 that version 1 reserves for activation and lifetime.
const (
	TypeRegister Type = 16 // worker → dispatcher: a class, registered suspended
	TypeResume   Type = 17 // worker → dispatcher: every registered class may now be activated
	TypeRevoke   Type = 18 // worker → dispatcher: the worker has decided to stop; it refuses activations
	TypeActivate Type = 19 // dispatcher → worker: create an object (a request: REPLY or ERROR)
	TypeObjCall  Type = 20 // dispatcher → worker: call a method of an object (a request)
	TypeRelease  Type = 21 // dispatcher → worker: the last reference to an object is gone (no reply)
	TypeSuspend  Type = 22 // dispatcher → worker: the dispatcher has decided to stop this worker
	TypeEvent    Type = 23 // worker → dispatcher: an object emitted an event (no reply)
)

var objectTypeNames = [...]string{
	TypeRegister - typeObjectFirst: "REGISTER",
	TypeResume - typeObjectFirst:   "RESUME",
	TypeRevoke - typeObjectFirst:   "REVOKE",
	TypeActivate - typeObjectFirst: "ACTIVATE",
	TypeObjCall - typeObjectFirst:  "OBJCALL",
	TypeRelease - typeObjectFirst:  "RELEASE",
	TypeSuspend - typeObjectFirst:  "SUSPEND",
	TypeEvent - typeObjectFirst:    "EVENT",
}

// objectTypeName names an object-model type, or returns "".
func objectTypeName(t Type) string {
	if t >= typeObjectFirst && int(t-typeObjectFirst) < len(objectTypeNames) {
		return objectTypeNames[t-typeObjectFirst]
	}
	return ""
}

// IsObjectType reports whether t is in the range reserved for the object model.
func IsObjectType(t Type) bool { return t >= typeObjectFirst && t <= typeObjectLast }

// Error codes of the object model (PROTOCOL.md section 10).
const (
	CodeUnknownClass  = 9  // ACTIVATE for a class the worker did not register
	CodeUnknownObject = 10 // OBJCALL for an object the worker does not have
)

// Limits on object-model messages.
const (
	MaxClassBytes = 256 // class and event names
	MaxClasses    = 256 // classes one worker may register
	MaxObjectID   = 1<<63 - 1
)

// Threading models a class declares (COM's apartment models).
const (
	ThreadingApartment = 0 // calls on one object run one at a time
	ThreadingFree      = 1 // calls run concurrently
	ThreadingSingle    = 2 // one call at a time in the whole process, on one OS thread
	maxThreading       = ThreadingSingle
)

// Register is a REGISTER payload.
type Register struct {
	Class     string   `cbor:"class"`
	Threading uint64   `cbor:"threading"`
	Methods   []string `cbor:"methods,omitempty"`
}

// ValidName reports whether s is a valid class or event name: 1 to
// MaxClassBytes bytes of UTF-8 without control characters.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxClassBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// DecodeRegister decodes and checks a REGISTER payload.
func DecodeRegister(p []byte) (Register, error) {
	var r Register
	if err := decMode.Unmarshal(p, &r); err != nil {
		return r, fmt.Errorf("%w: REGISTER payload: %v", ErrProtocol, err)
	}
	switch {
	case !ValidName(r.Class):
		return r, fmt.Errorf("%w: REGISTER class name %q is invalid", ErrProtocol, r.Class)
	case r.Threading > maxThreading:
		return r, fmt.Errorf("%w: REGISTER threading model %d is unknown", ErrProtocol, r.Threading)
	case len(r.Methods) > MaxHelloMethods:
		return r, fmt.Errorf("%w: REGISTER lists %d methods, more than %d", ErrProtocol, len(r.Methods), MaxHelloMethods)
	}
	for _, m := range r.Methods {
		if len(m) == 0 || len(m) > MaxMethodBytes {
			return r, fmt.Errorf("%w: REGISTER method name of %d bytes", ErrProtocol, len(m))
		}
	}
	return r, nil
}

// Activate is a decoded ACTIVATE payload: [class, object, args].
type Activate struct {
	_      struct{} `cbor:",toarray"`
	Class  string
	Object uint64
	Args   []cbor.RawMessage
}

// Activate appends an ACTIVATE frame.
func (b *Builder) Activate(id uint64, class string, object uint64, args []any, maxFrame uint32) error {
	b.begin()
	b.buf.WriteByte(0x83)
	b.head(3, uint64(len(class)))
	b.buf.WriteString(class)
	b.head(0, object)
	if err := b.args(args); err != nil {
		return err
	}
	return b.end(TypeActivate, id, maxFrame)
}

// args appends a CBOR array of arguments to the frame being built.
func (b *Builder) args(args []any) error {
	b.head(4, uint64(len(args)))
	for i, a := range args {
		if err := b.marshal(a); err != nil {
			b.drop()
			return fmt.Errorf("encoding argument %d (%T): %w", i, a, err)
		}
	}
	return nil
}

// DecodeActivate decodes an ACTIVATE payload into a, reusing its buffers.
func DecodeActivate(p []byte, a *Activate) error {
	if len(p) == 0 || p[0] != 0x83 {
		return &FrameError{Header{Type: TypeActivate}, "ACTIVATE payload is not an array of 3 items"}
	}
	if err := decMode.Unmarshal(p, a); err != nil {
		return fmt.Errorf("%w: ACTIVATE payload: %v", ErrProtocol, err)
	}
	if !ValidName(a.Class) {
		return fmt.Errorf("%w: ACTIVATE class name %q is invalid", ErrProtocol, a.Class)
	}
	if a.Object == 0 || a.Object > MaxObjectID {
		return fmt.Errorf("%w: ACTIVATE object id %d out of range", ErrProtocol, a.Object)
	}
	return checkArgs("ACTIVATE", a.Args)
}

// ObjCall is a decoded OBJCALL payload: [object, method, deadline, args].
type ObjCall struct {
	_        struct{} `cbor:",toarray"`
	Object   uint64
	Method   string
	Deadline int64
	Args     []cbor.RawMessage
	// Traceparent is the optional fifth item (trace.go), or "". One
	// that is not a W3C traceparent of version 00 is dropped.
	Traceparent string `cbor:"-"`
}

// tracedObjCall is an OBJCALL payload with its traceparent.
type tracedObjCall struct {
	_           struct{} `cbor:",toarray"`
	Object      uint64
	Method      string
	Deadline    int64
	Args        []cbor.RawMessage
	Traceparent string
}

// ObjCall appends an OBJCALL frame.
func (b *Builder) ObjCall(id, object uint64, method string, deadline int64, args []any, maxFrame uint32) error {
	b.begin()
	b.buf.WriteByte(0x84)
	b.head(0, object)
	b.head(3, uint64(len(method)))
	b.buf.WriteString(method)
	if deadline < 0 {
		deadline = 0
	}
	b.head(0, uint64(deadline))
	if err := b.args(args); err != nil {
		return err
	}
	return b.end(TypeObjCall, id, maxFrame)
}

// DecodeObjCall decodes an OBJCALL payload into c, reusing its buffers.
func DecodeObjCall(p []byte, c *ObjCall) error {
	if len(p) == 0 || p[0] != 0x84 && p[0] != 0x85 {
		return &FrameError{Header{Type: TypeObjCall}, "OBJCALL payload is not an array of 4 or 5 items"}
	}
	if err := decodeObjCall(p, c); err != nil {
		return fmt.Errorf("%w: OBJCALL payload: %v", ErrProtocol, err)
	}
	switch {
	case c.Object == 0 || c.Object > MaxObjectID:
		return fmt.Errorf("%w: OBJCALL object id %d out of range", ErrProtocol, c.Object)
	case len(c.Method) == 0 || len(c.Method) > MaxMethodBytes:
		return fmt.Errorf("%w: OBJCALL method name of %d bytes (want 1 to %d)", ErrProtocol, len(c.Method), MaxMethodBytes)
	case c.Deadline < 0:
		return fmt.Errorf("%w: OBJCALL deadline is negative", ErrProtocol)
	}
	return checkArgs("OBJCALL", c.Args)
}

// Event is a decoded EVENT payload: [name, args]. The frame's id is the
// object's id.
type Event struct {
	_    struct{} `cbor:",toarray"`
	Name string
	Args []cbor.RawMessage
}

// Event appends an EVENT frame for object.
func (b *Builder) Event(object uint64, name string, args []any, maxFrame uint32) error {
	b.begin()
	b.buf.WriteByte(0x82)
	b.head(3, uint64(len(name)))
	b.buf.WriteString(name)
	if err := b.args(args); err != nil {
		return err
	}
	return b.end(TypeEvent, object, maxFrame)
}

// DecodeEvent decodes an EVENT payload into e.
func DecodeEvent(p []byte, e *Event) error {
	if len(p) == 0 || p[0] != 0x82 {
		return &FrameError{Header{Type: TypeEvent}, "EVENT payload is not an array of 2 items"}
	}
	if err := decMode.Unmarshal(p, e); err != nil {
		return fmt.Errorf("%w: EVENT payload: %v", ErrProtocol, err)
	}
	if !ValidName(e.Name) {
		return fmt.Errorf("%w: EVENT name %q is invalid", ErrProtocol, e.Name)
	}
	return nil
}

// decodeObjCall decodes an OBJCALL of 4 items, or of 5 with a traceparent.
func decodeObjCall(p []byte, c *ObjCall) error {
	if p[0] == 0x84 {
		c.Traceparent = ""
		return decMode.Unmarshal(p, c)
	}
	var t tracedObjCall
	if err := decMode.Unmarshal(p, &t); err != nil {
		return err
	}
	if len(t.Traceparent) > MaxTraceparent {
		return fmt.Errorf("traceparent of %d bytes (at most %d)", len(t.Traceparent), MaxTraceparent)
	}
	*c = ObjCall{Object: t.Object, Method: t.Method, Deadline: t.Deadline, Args: t.Args}
	if ValidTraceparent(t.Traceparent) {
		c.Traceparent = t.Traceparent
	}
	return nil
}
