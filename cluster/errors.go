package cluster

import (
	"errors"
	"fmt"
)

// ErrNodeLost matches a *NodeLostError.
var ErrNodeLost = errors.New("bulkhead: cluster node lost")

// NodeLostError is a call that a node may have started when the node was
// lost: killed, or cut off from NATS. Whether the call ran, or ran to its
// end, is unknown; it is never sent to another node. A call the lost node
// had said it queued and not started, or had refused, is sent to another
// node instead, and never sees this.
type NodeLostError struct {
	Node   string // the lost node's id
	Method string
	Reason string // how the loss was seen
}

func (e *NodeLostError) Error() string {
	return fmt.Sprintf("bulkhead: %s: node %s lost with the call taken: %s", e.Method, e.Node, e.Reason)
}

// Is makes errors.Is(err, ErrNodeLost) true.
func (e *NodeLostError) Is(target error) bool { return target == ErrNodeLost }
