package activation

import (
	"errors"
	"fmt"
	"time"

	"github.com/bulkhead-go/bulkhead"
)

// Errors of the object model. Each matches with errors.Is; the typed ones
// carry details for errors.As.
var (
	// ErrObjectDisconnected: the object's server process is gone. The
	// *DisconnectedError wraps a *CrashError when the server crashed.
	ErrObjectDisconnected = errors.New("bulkhead: object disconnected")
	// ErrReleased: the handle was released already (a double Release, or a
	// call on a released handle).
	ErrReleased = errors.New("bulkhead: handle already released")
	// ErrSessionClosed: the session was closed, expired, or its client died.
	ErrSessionClosed = errors.New("bulkhead: session closed")
	// ErrUnknownClass: no configured server serves the class.
	ErrUnknownClass = errors.New("bulkhead: unknown class")
	// ErrClassNotRegistered: the server started for the class did not
	// register it.
	ErrClassNotRegistered = errors.New("bulkhead: server did not register the class")
	// ErrNotLocked: LockServer(false) without a matching LockServer(true).
	ErrNotLocked = errors.New("bulkhead: server not locked by this handle")
	// ErrTooManyObjects: ActivatorConfig.MaxObjects objects are alive.
	ErrTooManyObjects = errors.New("bulkhead: too many objects")
	// ErrNameInUse: a running object table name is taken.
	ErrNameInUse = errors.New("bulkhead: name already registered")
	// ErrNotRegistered: no running object table entry by that name.
	ErrNotRegistered = errors.New("bulkhead: name not registered")
	// ErrROTFull: ActivatorConfig.MaxROTEntries names are registered.
	ErrROTFull = errors.New("bulkhead: running object table full")
	// ErrInvalidName: a name that is empty, too long or not printable UTF-8.
	ErrInvalidName = errors.New("bulkhead: invalid name")
	// ErrSubscriberTooSlow: an event subscription was cut off because its
	// queue was full.
	ErrSubscriberTooSlow = errors.New("bulkhead: event subscriber too slow")
	// ErrServerStopping: a server refused an activation because it is
	// stopping. The activator then tries another server, until the
	// activation's ctx ends, so CreateInstance does not return it.
	ErrServerStopping = errors.New("bulkhead: server stopping")
)

// DisconnectedError reports a call or lock on an object or class handle whose
// server process is gone.
type DisconnectedError struct {
	Class  string
	Object uint64 // 0 for a class handle
	PID    int
	Err    error // a *bulkhead.CrashError when the server crashed; bulkhead.ErrClosed at Close
}

func (e *DisconnectedError) Error() string {
	return fmt.Sprintf("bulkhead: object %d of class %s disconnected: server %d is gone: %v", e.Object, e.Class, e.PID, e.Err)
}

// Is makes errors.Is(err, ErrObjectDisconnected) true.
func (e *DisconnectedError) Is(target error) bool { return target == ErrObjectDisconnected }

func (e *DisconnectedError) Unwrap() error { return e.Err }

// SessionEndedError says why a session ended; it matches ErrSessionClosed.
type SessionEndedError struct {
	Reason string
	PID    int           // the client process that died, if that was the reason
	Lease  time.Duration // the lease that expired, if that was the reason
}

func (e *SessionEndedError) Error() string { return "bulkhead: session ended: " + e.Reason }

// Is makes errors.Is(err, ErrSessionClosed) true.
func (e *SessionEndedError) Is(target error) bool { return target == ErrSessionClosed }

// SlowSubscriberError reports a subscription cut off because its queue of
// Buffer events was full when the next event came.
type SlowSubscriberError struct {
	Object uint64
	Buffer int
}

func (e *SlowSubscriberError) Error() string {
	return fmt.Sprintf("bulkhead: subscriber to object %d cut off: its queue of %d events was full", e.Object, e.Buffer)
}

// Is makes errors.Is(err, ErrSubscriberTooSlow) true.
func (e *SlowSubscriberError) Is(target error) bool { return target == ErrSubscriberTooSlow }

// errActivatorClosed is ErrClosed as an Activator reports it: it matches
// ErrClosed (errors.Is), and says what was closed.
var errActivatorClosed error = activatorClosed{}

type activatorClosed struct{}

func (activatorClosed) Error() string        { return "bulkhead: activator closed" }
func (activatorClosed) Is(target error) bool { return target == bulkhead.ErrClosed }
