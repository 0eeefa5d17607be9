package bulkhead

import (
	"context"
	"errors"
	"net/http"

	"github.com/bulkhead-go/bulkhead/internal/wire"
)

// StatusClientClosedRequest is the status HTTPStatus gives a call whose
// caller hung up (context.Canceled): nginx's 499, which no client sees but
// an access log and a metric can tell apart from a server's failure.
const StatusClientClosedRequest = 499

// HTTPStatus maps the error of a call (Pool.Call, CallAs) to the HTTP
// status a service in front of the pool would answer with, so that an
// operator reads from the status alone whose fault it was:
//
//	nil                                     200 OK
//	*CrashError (limits included)           502 Bad Gateway: the native code died under the call
//	*QuarantinedError                       422 Unprocessable Entity: inputs like this one kill workers
//	*OverloadedError, *UnhealthyError,
//	*StartError, ErrClosed                  503 Service Unavailable: try later, or elsewhere
//	*CanceledError, deadline passed         504 Gateway Timeout
//	*CanceledError, caller hung up          499 (StatusClientClosedRequest)
//	ErrEncoding, over the frame limit       413 Content Too Large
//	ErrEncoding, anything else              500 Internal Server Error: the service passed what CBOR cannot carry
//	*RemoteError: bad_arguments 400, unknown_method 501, server_stopping 503, canceled 503,
//	              application and panic 500
//	anything else                           500
//
// An error anywhere in err's chain that has a method HTTPStatus() int
// decides for itself, ahead of the table: other packages' errors (the
// object model's) say their own status that way.
func HTTPStatus(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var own interface{ HTTPStatus() int }
	if errors.As(err, &own) {
		return own.HTTPStatus()
	}
	var (
		re *RemoteError
		ce *CanceledError
	)
	switch {
	case errors.As(err, &re):
		return remoteStatus(re.Code)
	case errors.Is(err, ErrQuarantined):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrOverloaded), errors.Is(err, ErrUnhealthy), errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	case errors.As(err, &ce), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		if errors.Is(err, context.DeadlineExceeded) {
			return http.StatusGatewayTimeout
		}
		return StatusClientClosedRequest
	case errors.Is(err, ErrStartFailed):
		// Before ErrWorkerCrashed: a StartError of a worker that died on
		// its own matches both, and no call was run.
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrWorkerCrashed):
		return http.StatusBadGateway
	case errors.Is(err, ErrEncoding) && errors.Is(err, wire.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// remoteStatus is the status of a worker's ERROR of code c.
func remoteStatus(c ErrorCode) int {
	switch c {
	case CodeBadArguments:
		return http.StatusBadRequest
	case CodeUnknownMethod:
		return http.StatusNotImplemented
	case CodeServerStopping, CodeCanceled:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
