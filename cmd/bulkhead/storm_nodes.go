package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/daemon"
	"github.com/bulkhead-go/bulkhead/internal/natsembed"
	"github.com/nats-io/nats.go"
)

// The storm across cluster nodes (storm --nodes): an embedded NATS server,
// o.Nodes daemons made cluster nodes, each with the storm's class servers,
// and the storm's goroutines as cluster clients (client.DialNATS's), each
// session a cluster.Client of its own on one connection.

// stormNode is one node of the storm.
type stormNode struct {
	s    *daemon.Server
	nc   *nats.Conn
	node *cluster.Node
}

func runStormNodes(ctx context.Context, o stormOptions) (res *stormResult, err error) {
	ns, err := natsembed.Start()
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var nodes []*stormNode
	defer func() { err = errors.Join(err, stopStormNodes(nodes)) }()
	for i := range o.Nodes {
		n, err := startStormNode(ctx, o, ns.URL(), fmt.Sprintf("storm%d", i))
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	nc, err := nats.Connect(ns.URL(), nats.Name("storm clients"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	newSession := func() (stormSession, error) {
		c, err := cluster.New(nc, "", cluster.Options{})
		return clusterSession{c}, err
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	var (
		next atomic.Int64
		t    stormTally
		wg   sync.WaitGroup
	)
	start := time.Now()
	for g := range o.Goroutines {
		wg.Go(func() { stormClient(ctx, newSession, o, g, &next, &t) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	res = &stormResult{Activations: t.activations.Load(), Calls: t.calls.Load(),
		Failures: t.failures.Load(), Disconnected: t.disconnected.Load(), FirstFailure: t.first,
		Goroutines: o.Goroutines, Seconds: elapsed.Seconds(), PerSecond: float64(t.activations.Load()) / elapsed.Seconds()}
	for _, n := range nodes {
		st := n.s.Activator().Stats()
		res.Launches += st.Launches
		res.StoppingRetries += st.StoppingRetries
		res.Redispatched += st.Redispatched
		res.ServerStops += st.ServerStops
		res.ServerCrashes += st.ServerCrashes
	}
	if res.ServerCrashes > 0 && res.Failures == 0 {
		res.Failures, res.FirstFailure = res.ServerCrashes, "a class server crashed"
	}
	return res, nil
}

// startStormNode starts a daemon with the storm's class servers and makes
// it node id.
func startStormNode(ctx context.Context, o stormOptions, url, id string) (*stormNode, error) {
	s, err := daemon.New(ctx, &daemon.Config{Activator: stormConfig(o)}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, nats.Name(id))
	if err != nil {
		s.Shutdown(context.Background())
		return nil, err
	}
	node, err := cluster.NewNode(nc, s, cluster.NodeConfig{ID: id, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		nc.Close()
		s.Shutdown(context.Background())
		return nil, err
	}
	return &stormNode{s: s, nc: nc, node: node}, nil
}

func stopStormNodes(nodes []*stormNode) error {
	var errs []error
	for _, n := range nodes {
		errs = append(errs, n.node.Close())
		n.nc.Close()
		errs = append(errs, n.s.Shutdown(context.Background()))
	}
	return errors.Join(errs...)
}

type clusterSession struct{ c *cluster.Client }
type clusterObject struct{ *cluster.Object }
type clusterClass struct{ co *cluster.ClassObject }

func (s clusterSession) CreateInstance(ctx context.Context, class string, args ...any) (stormObject, error) {
	o, err := s.c.CreateInstance(ctx, class, args...)
	return clusterObject{o}, err
}

func (s clusterSession) GetClassObject(ctx context.Context, class string) (stormClass, error) {
	co, err := s.c.GetClassObject(ctx, class)
	return clusterClass{co}, err
}

func (s clusterSession) Register(ctx context.Context, name string, o stormObject, keep bool) error {
	return s.c.Register(ctx, name, o.(clusterObject).Object, keep)
}

func (s clusterSession) Lookup(ctx context.Context, name string) (stormObject, error) {
	o, err := s.c.Lookup(ctx, name)
	return clusterObject{o}, err
}

func (s clusterSession) Revoke(ctx context.Context, name string) error { return s.c.Revoke(ctx, name) }
func (s clusterSession) Close() error                                  { return s.c.Close() }

func (o clusterObject) Clone(ctx context.Context) (stormObject, error) {
	c, err := o.Object.Clone(ctx)
	return clusterObject{c}, err
}

func (o clusterObject) Name() string {
	return fmt.Sprintf("of %s in server %d on node %s", o.Class(), o.PID(), o.Node())
}

func (c clusterClass) CreateInstance(ctx context.Context, args ...any) (stormObject, error) {
	o, err := c.co.CreateInstance(ctx, args...)
	return clusterObject{o}, err
}

func (c clusterClass) LockServer(ctx context.Context, lock bool) error {
	return c.co.LockServer(ctx, lock)
}
func (c clusterClass) Release() error { return c.co.Release() }
