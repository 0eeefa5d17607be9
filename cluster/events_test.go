package cluster_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// TestEventsAcrossNodes: an object's events reach its subscriber in
// order, from the object's node over NATS; Close ends the subscription on
// the node; a subscriber that does not read is cut off as on one machine.
func TestEventsAcrossNodes(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	startNode(t, url, "ea", 1)
	c := dial(t, url, cluster.Options{}, 1)
	ctx := ctxT(t, 30*time.Second)
	o := objectsOn(t, c, "ea")["ea"]
	defer o.Release()
	sub, err := o.Subscribe(ctx, 8)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 3; i++ {
		if _, err := o.Call(ctx, "add", 1); err != nil {
			t.Fatal(err)
		}
	}
	for i := int64(1); i <= 3; i++ {
		var ev activation.Event = <-sub.Events() // the in-process type
		var n int64
		if err := ev.Decode(0, &n); err != nil || ev.Name != "changed" || n != i {
			t.Fatalf("event %d: %s %d, %v", i, ev.Name, n, err)
		}
	}
	sub.Close()
	if _, ok := <-sub.Events(); ok || !errors.Is(sub.Err(), context.Canceled) {
		t.Fatalf("after Close: %v", sub.Err())
	}
	// A subscriber of one event that does not read: cut off.
	slow, err := o.Subscribe(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := o.Call(ctx, "add", 1); err != nil {
			t.Fatal(err)
		}
	}
	<-cluster.Ended(slow) // reading before could keep up
	for range slow.Events() {
	}
	if !errors.Is(slow.Err(), activation.ErrSubscriberTooSlow) {
		t.Fatalf("a slow subscriber: %v", slow.Err())
	}
}

// TestEventsNodeLost: a subscription to an object on a node SIGKILLed
// ends with the object disconnected.
func TestEventsNodeLost(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	victim := startNodeProcess(t, url, "evlost")
	c := dial(t, url, cluster.Options{}, 1)
	o := objectsOn(t, c, "evlost")["evlost"]
	sub, err := o.Subscribe(ctxT(t, 30*time.Second), 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := victim.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range sub.Events() {
	}
	if !errors.Is(sub.Err(), activation.ErrObjectDisconnected) || !errors.Is(sub.Err(), cluster.ErrNodeLost) {
		t.Fatalf("the subscription of the lost node's object: %v", sub.Err())
	}
}

// TestObjectsOfDrainedNode: a node drained and closed (a rolling
// restart) disconnects its objects and ends their subscriptions
// disconnected, as a daemon's restart does; new activations go to the
// other node.
func TestObjectsOfDrainedNode(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	leaving := startNode(t, url, "leaving", 1)
	startNode(t, url, "staying", 1)
	c := dial(t, url, cluster.Options{}, 2)
	o := objectsOn(t, c, "leaving")["leaving"]
	sub, err := o.Subscribe(ctxT(t, 30*time.Second), 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaving.node.Drain(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := leaving.node.Close(); err != nil {
		t.Fatal(err)
	}
	for range sub.Events() {
	}
	if !errors.Is(sub.Err(), activation.ErrObjectDisconnected) {
		t.Fatalf("the subscription: %v", sub.Err())
	}
	if _, err := o.Call(ctxT(t, 30*time.Second), "add", 1); !errors.Is(err, activation.ErrObjectDisconnected) {
		t.Fatalf("a call after the drain: %v", err)
	}
	for range 5 {
		n, err := c.CreateInstance(ctxT(t, 30*time.Second), "Counter")
		if err != nil || n.Node() != "staying" {
			t.Fatalf("an activation after the drain: %v on %v", err, n)
		}
		n.Release()
	}
}
