package activation

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/bulkhead-go/bulkhead"
)

// HTTPStatus maps an error of the object model to the status a service in
// front of the activator would answer with, and defers to
// bulkhead.HTTPStatus for the pool's errors (a crash 502, a deadline 504...):
//
//	*DisconnectedError                          502: the object's server died (503 at Close)
//	ErrSessionClosed                            410 Gone
//	ErrUnknownClass, ErrNotRegistered           404 Not Found
//	ErrNameInUse                                409 Conflict
//	ErrInvalidName, ErrReleased, ErrNotLocked   400 Bad Request
//	ErrTooManyObjects, ErrROTFull               503 Service Unavailable
//	ErrClassNotRegistered                       502: the server broke its promise
func HTTPStatus(err error) int {
	var de *DisconnectedError
	switch {
	case errors.As(err, &de):
		if errors.Is(de.Err, bulkhead.ErrClosed) {
			return http.StatusServiceUnavailable
		}
		return http.StatusBadGateway
	case errors.Is(err, ErrSessionClosed):
		return http.StatusGone
	case errors.Is(err, ErrUnknownClass), errors.Is(err, ErrNotRegistered):
		return http.StatusNotFound
	case errors.Is(err, ErrNameInUse):
		return http.StatusConflict
	case errors.Is(err, ErrInvalidName), errors.Is(err, ErrReleased), errors.Is(err, ErrNotLocked):
		return http.StatusBadRequest
	case errors.Is(err, ErrTooManyObjects), errors.Is(err, ErrROTFull):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrClassNotRegistered):
		return http.StatusBadGateway
	}
	return bulkhead.HTTPStatus(err)
}

// LogValue logs the disconnection with the object, the server and, as a
// group, the crash that ended it.
func (e *DisconnectedError) LogValue() slog.Value {
	a := []slog.Attr{slog.String("kind", "disconnected"), slog.String("msg", e.Error()),
		slog.String("class", e.Class), slog.Uint64("object", e.Object), slog.Int("pid", e.PID)}
	if e.Err != nil {
		a = append(a, slog.Any("cause", e.Err))
	}
	return slog.GroupValue(a...)
}

// LogValue logs why the session ended.
func (e *SessionEndedError) LogValue() slog.Value {
	a := []slog.Attr{slog.String("kind", "session_ended"), slog.String("msg", e.Error()), slog.String("reason", e.Reason)}
	if e.PID != 0 {
		a = append(a, slog.Int("client_pid", e.PID))
	}
	if e.Lease != 0 {
		a = append(a, slog.Duration("lease", e.Lease))
	}
	return slog.GroupValue(a...)
}

// LogValue logs the subscription cut off with its queue's size.
func (e *SlowSubscriberError) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", "slow_subscriber"), slog.String("msg", e.Error()),
		slog.Uint64("object", e.Object), slog.Int("buffer", e.Buffer))
}
