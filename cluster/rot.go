package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/clientwire"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"github.com/nats-io/nats.go"
)

// Each node has its own running object table, as each machine had in
// COM: an entry lives on the node of its object. Register and Revoke go
// to that node; Lookup asks every node which has the name (a name this
// client registered, it knows).

// Register enters o in its node's running object table under name; the
// entry ends with the client's session there unless keepAlive.
func (c *Client) Register(ctx context.Context, name string, o *Object, keepAlive bool) error {
	_, err := c.pinnedReply(ctx, o.target(),
		&clientwire.Request{Op: clientwire.OpROTRegister, Name: name, Object: o.h, KeepAlive: keepAlive}, nil, nil)
	if err == nil {
		c.mu.Lock()
		c.rotNames[name] = o.target()
		c.mu.Unlock()
	}
	return err
}

// Revoke removes name, which this client registered, from its node's
// table.
func (c *Client) Revoke(ctx context.Context, name string) error {
	c.mu.Lock()
	t, ok := c.rotNames[name]
	delete(c.rotNames, name)
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q was not registered by this client", clientwire.ErrNotFound, name)
	}
	// In the session of the object it registered: the entry is that
	// session's.
	_, err := c.pinnedReply(ctx, target{node: t.node, born: t.born}, &clientwire.Request{Op: clientwire.OpROTRevoke, Name: name}, nil, nil)
	return err
}

// Lookup finds an object in the running object table of the node that
// has name.
func (c *Client) Lookup(ctx context.Context, name string) (*Object, error) {
	c.mu.Lock()
	node := c.rotNames[name].node
	c.mu.Unlock()
	if node == "" {
		var err error
		if node, err = c.findName(ctx, name); err != nil {
			return nil, err
		}
	}
	born := c.epoch()
	rep, err := c.pinnedReply(ctx, target{node: node, born: born}, &clientwire.Request{Op: clientwire.OpROTLookup, Name: name}, nil, nil)
	if err != nil {
		return nil, err
	}
	return &Object{c: c, node: node, h: rep.Object, pid: rep.PID, born: born}, nil
}

// findName asks every node serving objects whether it has name, and
// returns the first that has. A node that does not answer within
// LostAfter and 5 s counts as not having it; a client younger than two
// heartbeats, which may not know every node yet, waits that long.
func (c *Client) findName(ctx context.Context, name string) (string, error) {
	payload, err := wire.Marshal(&clientwire.Request{Op: clientwire.OpROTLookup, Name: name})
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	want := 0
	for _, n := range c.nodes {
		if n.objects {
			want++
		}
	}
	c.mu.Unlock()
	sub, err := c.nc.SubscribeSync(c.nc.NewInbox())
	if err != nil {
		return "", err
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishMsg(&nats.Msg{Subject: c.s.rot(), Reply: sub.Subject, Data: payload}); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.LostAfter+5*time.Second)
	defer cancel()
	for answered := 0; ; answered++ {
		// Every node has answered, of those the client knows; and it
		// knows them all once it has had two heartbeats' time to hear
		// them.
		if answered >= want && time.Since(c.born) > 2*c.opts.Heartbeat {
			break
		}
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break
		}
		if node := m.Header.Get(HeaderNode); len(m.Data) == 1 && m.Data[0] == 0xf5 && checkName("node", node) == nil {
			return node, nil
		}
	}
	return "", fmt.Errorf("%w: %q is not registered on any node", clientwire.ErrNotFound, name)
}
