// Package clientwire is the client protocol of docs/CLIENT-PROTOCOL.md: the
// messages between `bulkhead serve` and its clients, their limits, and the
// errors that cross it. Framing is the worker protocol's (internal/wire).
package clientwire

import (
	"fmt"
	"reflect"

	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/fxamacker/cbor/v2"
)

// Version is the client protocol's version.
const Version = 1

// Frame types: the worker protocol's, and its EVENT (CLIENT-PROTOCOL.md
// section 3).
const (
	TypeHello   = wire.TypeHello
	TypeRequest = wire.TypeCall
	TypeReply   = wire.TypeReply
	TypeError   = wire.TypeError
	TypeCancel  = wire.TypeCancel
	TypePing    = wire.TypePing
	TypePong    = wire.TypePong
	TypeEvent   = wire.TypeEvent
)

// ClientType reports whether t may come from a client.
func ClientType(t wire.Type) bool {
	switch t {
	case TypeHello, TypeRequest, TypeCancel, TypePing, TypePong:
		return true
	}
	return false
}

// DaemonType reports whether t may come from the daemon.
func DaemonType(t wire.Type) bool {
	switch t {
	case TypeHello, TypeReply, TypeError, TypePing, TypePong, TypeEvent:
		return true
	}
	return false
}

// Operations (CLIENT-PROTOCOL.md section 5).
const (
	OpCall                = "call"
	OpCreateInstance      = "create_instance"
	OpGetClassObject      = "get_class_object"
	OpClassCreateInstance = "class_create_instance"
	OpLockServer          = "lock_server"
	OpObjectCall          = "object_call"
	OpClone               = "clone"
	OpRelease             = "release"
	OpROTRegister         = "rot_register"
	OpROTLookup           = "rot_lookup"
	OpROTRevoke           = "rot_revoke"
	OpSubscribe           = "subscribe"
	OpStatus              = "status"
	OpStats               = "stats"
)

// Hello is either side's HELLO.
type Hello struct {
	Protocol uint64 `cbor:"protocol"`
	Name     string `cbor:"name,omitempty"`      // the client's
	MaxFrame uint64 `cbor:"max_frame,omitempty"` // the daemon's
}

// Request is a REQUEST's payload: every field any op takes. Which ones an
// op needs is checked by the daemon (Check); a key not here is refused.
type Request struct {
	Op          string            `cbor:"op"`
	Deadline    uint64            `cbor:"deadline,omitempty"`
	Pool        string            `cbor:"pool,omitempty"`
	Method      string            `cbor:"method,omitempty"`
	Class       string            `cbor:"class,omitempty"`
	Args        []cbor.RawMessage `cbor:"args,omitempty"`
	Object      uint64            `cbor:"object,omitempty"`
	ClassObject uint64            `cbor:"class_object,omitempty"`
	Handle      uint64            `cbor:"handle,omitempty"`
	Lock        bool              `cbor:"lock,omitempty"`
	Name        string            `cbor:"name,omitempty"`
	KeepAlive   bool              `cbor:"keep_alive,omitempty"`
	Buffer      uint64            `cbor:"buffer,omitempty"`
	// Traceparent is a call's W3C traceparent (bulkhead.WithTraceparent), or "".
	Traceparent string `cbor:"traceparent,omitempty"`
}

// Reply is a REPLY's payload for every op but status and stats.
type Reply struct {
	Result      cbor.RawMessage `cbor:"result,omitempty"`
	Object      uint64          `cbor:"object,omitempty"`
	ClassObject uint64          `cbor:"class_object,omitempty"`
	PID         int             `cbor:"pid,omitempty"`
	Subscribed  bool            `cbor:"subscribed,omitempty"`
}

// strict decodes a peer's maps: the value rules of PROTOCOL.md section 5
// (checked before, by wire.CheckValue) and no key the struct lacks.
var strict = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		MaxNestedLevels:   wire.MaxDepth,
		MaxArrayElements:  wire.MaxArrayItems,
		MaxMapPairs:       wire.MaxMapPairs,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		UTF8:              cbor.UTF8RejectInvalid,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		DefaultMapType:    reflect.TypeOf(map[any]any(nil)),
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// Decode decodes a peer's payload p into v (a *Hello, *Request or
// *Reply): one value that keeps section 5's rules, with no unknown key.
func Decode(p []byte, v any) error {
	if err := wire.CheckValue(p); err != nil {
		return err
	}
	if err := strict.Unmarshal(p, v); err != nil {
		return fmt.Errorf("%w: %v", wire.ErrProtocol, err)
	}
	return nil
}

// Frame appends a frame of type t and id with v's encoding to b.
func Frame(b []byte, t wire.Type, id uint64, v any) ([]byte, error) {
	p, err := wire.Marshal(v)
	if err != nil {
		return b, err
	}
	return RawFrame(b, t, id, p), nil
}

// RawFrame appends a frame of type t and id with payload p to b.
func RawFrame(b []byte, t wire.Type, id uint64, p []byte) []byte {
	b = wire.AppendHeader(b, wire.Header{Length: uint32(len(p)), Type: t, ID: id})
	return append(b, p...)
}
