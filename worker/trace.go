package worker

import "context"

type traceparentKey struct{}

// Traceparent returns the W3C traceparent its caller sent with the call
// whose ctx this is (bulkhead.WithTraceparent; PROTOCOL.md section 3), or
// "" if it sent none or one that is not valid. The package
// github.com/bulkhead-go/bulkhead/otel starts the handler's span from it.
func Traceparent(ctx context.Context) string {
	tp, _ := ctx.Value(traceparentKey{}).(string)
	return tp
}
