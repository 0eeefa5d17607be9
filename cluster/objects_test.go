package cluster_test

import (
	"context"
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// objectsOn creates Counters until it has one on each of the nodes, and
// returns them by node; the others it made are released.
func objectsOn(t *testing.T, c *cluster.Client, nodes ...string) map[string]*cluster.Object {
	t.Helper()
	out := map[string]*cluster.Object{}
	for i := 0; len(out) < len(nodes); i++ {
		if i > 200 {
			t.Fatalf("200 activations reached only %d of the nodes %v", len(out), nodes)
		}
		o, err := c.CreateInstance(ctxT(t, 30*time.Second), "Counter")
		if err != nil {
			t.Fatal(err)
		}
		if out[o.Node()] != nil || !slices.Contains(nodes, o.Node()) {
			if err := o.Release(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		out[o.Node()] = o
	}
	return out
}

// TestObjectsAcrossNodes: objects made through the cluster client live
// on the node that activated them; calls, clones, class handles and
// typed errors (a server crash disconnects its object) cross; releases
// reach the node.
func TestObjectsAcrossNodes(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	nodes := []*testNode{startNode(t, url, "oa", 1), startNode(t, url, "ob", 1)}
	c := dial(t, url, cluster.Options{}, 2)
	ctx := ctxT(t, 30*time.Second)
	objs := objectsOn(t, c, "oa", "ob")
	for node, o := range objs {
		if who, err := bulkhead.CallAs[string](ctx, o, "who"); err != nil || who != node {
			t.Fatalf("object on %s: who = %q, %v", node, who, err)
		}
		for i := int64(1); i <= 3; i++ {
			if n, err := bulkhead.CallAs[int64](ctx, o, "add", 1); err != nil || n != i {
				t.Fatalf("object on %s: add = %d, %v", node, n, err)
			}
		}
		cl, err := o.Clone(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.Release(); err != nil {
			t.Fatal(err)
		}
		if n, err := bulkhead.CallAs[int64](ctx, cl, "add", 0); err != nil || n != 3 || cl.Node() != node {
			t.Fatalf("the clone on %s: %d, %v", cl.Node(), n, err)
		}
		if _, err := o.Call(ctx, "add", 1); !errors.Is(err, clientwire.ErrNotFound) {
			t.Fatalf("a released handle: %v", err)
		}
		if err := cl.Release(); err != nil {
			t.Fatal(err)
		}
	}
	// The running object table of the object's node, found by another
	// client.
	kept := objectsOn(t, c, "ob")["ob"]
	if err := c.Register(ctx, "the/counter", kept, false); err != nil {
		t.Fatal(err)
	}
	other := dial(t, url, cluster.Options{}, 2)
	got, err := other.Lookup(ctx, "the/counter")
	if err != nil || got.Node() != "ob" {
		t.Fatalf("Lookup from another client: %v, %v", got, err)
	}
	if who, err := bulkhead.CallAs[string](ctx, got, "who"); err != nil || who != "ob" {
		t.Fatalf("the looked-up object: %q, %v", who, err)
	}
	got.Release()
	if err := c.Revoke(ctx, "the/counter"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Lookup(ctx, "the/counter"); !errors.Is(err, clientwire.ErrNotFound) {
		t.Fatalf("Lookup after Revoke: %v", err)
	}
	kept.Release()
	co, err := c.GetClassObject(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	o, err := co.CreateInstance(ctx)
	if err != nil || o.Node() != co.Node() {
		t.Fatalf("class handle's instance: %v on %v", err, o)
	}
	if err := co.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Call(ctx, "crash"); !errors.Is(err, activation.ErrObjectDisconnected) || errors.Is(err, cluster.ErrNodeLost) {
		t.Fatalf("a crash: %v", err)
	}
	o.Release()
	if _, err := c.CreateInstance(ctx, "NoSuchClass"); !errors.Is(err, activation.ErrUnknownClass) {
		t.Fatalf("an unknown class: %v", err)
	}
	_ = nodes
}

// TestObjectOnLostNode: a node SIGKILLed disconnects its objects, the
// one with a call in flight and the idle ones, as a server crash does,
// and the objects on the other node live on.
func TestObjectOnLostNode(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	victim := startNodeProcess(t, url, "lost")
	startNodeProcess(t, url, "kept")
	c := dial(t, url, cluster.Options{}, 2)
	objs := objectsOn(t, c, "lost", "kept")
	idle, err := objs["lost"].Clone(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	path, held := fifo(t)
	errc := make(chan error, 1)
	go func() {
		_, err := objs["lost"].Call(ctxT(t, 30*time.Second), "hold", path)
		errc <- err
	}()
	<-held
	if err := victim.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, activation.ErrObjectDisconnected) || !errors.Is(err, cluster.ErrNodeLost) {
		t.Fatalf("the call in flight on the lost node: %v", err)
	}
	if _, err := idle.Call(ctxT(t, 30*time.Second), "add", 1); !errors.Is(err, activation.ErrObjectDisconnected) {
		t.Fatalf("an idle object of the lost node: %v", err)
	}
	if err := idle.Release(); err != nil {
		t.Fatalf("releasing an object of the lost node: %v", err)
	}
	if who, err := bulkhead.CallAs[string](ctxT(t, 30*time.Second), objs["kept"], "who"); err != nil || who != "kept" {
		t.Fatalf("the live node's object: %q, %v", who, err)
	}
	if o, err := c.CreateInstance(ctxT(t, 30*time.Second), "Counter"); err != nil || o.Node() != "kept" {
		t.Fatalf("an activation after the loss: %v", err)
	}
}

// TestSessionEndsWithClient: a client that goes away releases what it
// held on a node, as a socket client's exit does: the node's probe finds
// it gone.
func TestSessionEndsWithClient(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	n := startNode(t, url, "s", 1)
	c, err := cluster.Dial(ctxT(t, 30*time.Second), url, "", cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.CreateInstance(ctxT(t, 30*time.Second), "Counter"); err != nil {
			t.Fatal(err)
		}
	}
	act := n.srv.Activator()
	if st := act.Stats(); st.Objects != 3 {
		t.Fatalf("objects: %+v", st)
	}
	c.Close()
	ctx := ctxT(t, 30*time.Second)
	for act.Stats().Objects != 0 {
		// The node probes every third heartbeat; its probe's "no
		// responders" ends the session. Waiting on the heartbeats
		// themselves: a client of the pool sees each.
		if err := waitBeat(ctx, url); err != nil {
			t.Fatalf("the session lived on: %+v", act.Stats())
		}
	}
}

// waitBeat returns at the next heartbeat of pool p.
func waitBeat(ctx context.Context, url string) error {
	c, err := cluster.Dial(ctx, url, "p", cluster.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	return c.WaitNodes(ctx, 1)
}

// TestHostileObjectRequests: what anyone allowed to publish on a node's
// object subject may send costs only a typed error: no client, a bad
// client name, an op not served, another client's handle.
func TestHostileObjectRequests(t *testing.T) {
	testutil.CheckLeaks(t)
	url := startNATS(t)
	startNode(t, url, "h", 1)
	c := dial(t, url, cluster.Options{}, 1)
	o := objectsOn(t, c, "h")["h"] // handle 1 of c's session
	defer o.Release()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, tc := range []struct {
		name, client, kind string
		req                []byte
		epoch              string
	}{
		{"no client", "", "bad_request", []byte("\xa2bopkobject_callfobject\x01"), ""},
		{"a bad client name", "a.b", "bad_request", []byte("\xa2bopkobject_callfobject\x01"), ""},
		{"garbage", "x", "bad_request", []byte("garbage"), ""},
		{"an op not served", "x", "bad_request", []byte("\xa1bopfstatus"), ""},
		{"another client's handle", "intruder", "not_found", []byte("\xa3bopkobject_callfobject\x01fmethodcwho"), ""},
		{"a subscription to another client's handle", "intruder", "not_found", []byte("\xa3bopisubscribefobject\x01fbuffer\x1a\x00\x10\x00\x00"), ""},
		{"an epoch not a number", "x", "bad_request", []byte("\xa3bopkobject_callfobject\x01fmethodcwho"), "1x"},
		{"an epoch out of range", "x", "bad_request", []byte("\xa3bopkobject_callfobject\x01fmethodcwho"), "184467440737095516160"},
		{"an epoch with no session", "x", "not_found", []byte("\xa3bopkobject_callfobject\x01fmethodcwho"), "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &nats.Msg{Subject: "bulkhead.obj.node.h", Data: tc.req, Header: nats.Header{}}
			if tc.client != "" {
				m.Header.Set(cluster.HeaderClient, tc.client)
			}
			if tc.epoch != "" {
				m.Header.Set(cluster.HeaderEpoch, tc.epoch)
			}
			ans, err := nc.RequestMsg(m, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ans.Header.Get(cluster.HeaderStatus) != "error" || ans.Header.Get(micro.ErrorCodeHeader) != tc.kind {
				t.Fatalf("answered %v %q", ans.Header, ans.Data)
			}
		})
	}
	if who, err := bulkhead.CallAs[string](ctxT(t, 30*time.Second), o, "who"); err != nil || who != "h" {
		t.Fatalf("the node no longer serves its client: %q, %v", who, err)
	}
}
