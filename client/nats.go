package client

import (
	"context"

	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/nats-io/nats.go"
)

// DialNATS connects to the NATS server at url and returns a
// bulkhead.Caller of pool across the cluster nodes that serve it
// (`bulkhead serve --nats`, package cluster): the one-line change from
// Dial(...).Pool(pool). It has the activation API of Client too
// (CreateInstance, GetClassObject, Register, Lookup, Revoke; on objects
// Call, Clone, Subscribe, Release), each object pinned to the node that
// made it; pool "" is a client of objects alone. nopts are nats.go's own
// (credentials, NKeys, TLS). Close the client when done.
func DialNATS(ctx context.Context, url, pool string, nopts ...nats.Option) (*cluster.Client, error) {
	return cluster.Dial(ctx, url, pool, cluster.Options{}, nopts...)
}
