package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/daemon"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

// target is where `bulkhead call` sends: one daemon's socket, or a
// cluster's nodes over NATS (--nats). Both have the same API, the
// activation API included, so the command is the same over either.
type target struct {
	socket   string // the daemon's socket; "" with natsURL
	natsURL  string // the NATS server of a cluster; "" with socket
	prefix   string // the nodes' [nats] prefix; "" for the default
	creds    string // a NATS .creds file; "" for none
	clientID string // the connection's name
}

// remoteObject is an object of a daemon (*client.Object) or of a cluster
// (*cluster.Object).
type remoteObject interface {
	Call(ctx context.Context, method string, args ...any) (bulkhead.Reply, error)
	Release() error
}

// conn is a connection to a target: a caller of one pool (none if pool
// is ""), the activation API, and Close.
type conn struct {
	pool     bulkhead.Caller
	nodes    func() []cluster.NodeLoad                                       // the nodes of the pool, by their heartbeats; nil on a socket
	discover func(context.Context, time.Duration) ([]cluster.Service, error) // nil on a socket
	create   func(ctx context.Context, class string, args ...any) (remoteObject, error)
	close    func() error
}

// check refuses --socket with --nats, neither, and a --nats URL
// nats.go would not take: usage errors.
func (t target) check() error {
	switch {
	case t.socket != "" && t.natsURL != "":
		return usagef("--socket and --nats: give one, a daemon's socket or a cluster's NATS server")
	case t.socket == "" && t.natsURL == "":
		return usagef("--socket or --nats is required")
	case t.prefix != "" && t.natsURL == "":
		return usagef("--nats-prefix goes with --nats")
	case t.creds != "" && t.natsURL == "":
		return usagef("--nats-creds goes with --nats")
	case t.natsURL != "":
		if err := daemon.CheckNATSURL(t.natsURL); err != nil {
			return usagef("--nats: %v", err)
		}
		if t.prefix != "" {
			if err := daemon.CheckNATSToken("prefix", t.prefix); err != nil {
				return usagef("--nats-prefix: %v", err)
			}
		}
		if t.creds != "" {
			if _, err := os.ReadFile(t.creds); err != nil {
				return usagef("--nats-creds: %v", err)
			}
		}
	}
	return nil
}

// dial connects to t for calls of pool ("" for objects alone).
func (t target) dial(ctx context.Context, pool string) (*conn, error) {
	if t.socket != "" {
		c, err := client.Dial(ctx, t.socket, client.Options{Name: t.clientID})
		if err != nil {
			return nil, err
		}
		return &conn{pool: c.Pool(pool), close: c.Close,
			create: func(ctx context.Context, class string, args ...any) (remoteObject, error) {
				o, err := c.CreateInstance(ctx, class, args...)
				if err != nil {
					return nil, err // not a nil *client.Object in a non-nil interface
				}
				return o, nil
			}}, nil
	}
	nopts := []nats.Option{nats.Name(t.clientID)}
	if t.creds != "" {
		nopts = append(nopts, nats.UserCredentials(t.creds))
	}
	c, err := cluster.Dial(ctx, t.natsURL, pool, cluster.Options{Prefix: t.prefix}, nopts...)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the cluster on the NATS server at %s (--nats): %w", redactURLs(t.natsURL), err)
	}
	return &conn{pool: c, close: c.Close, nodes: c.NodeLoads, discover: c.Discover,
		create: func(ctx context.Context, class string, args ...any) (remoteObject, error) {
			o, err := c.CreateInstance(ctx, class, args...)
			if err != nil {
				return nil, err
			}
			return o, nil
		}}, nil
}

// natsFlags adds the flags of a cluster target: --nats, what it is for,
// and the options that go with it.
func (t *target) natsFlags(cmd *cobra.Command, usage string) {
	fs := cmd.Flags()
	fs.StringVar(&t.natsURL, "nats", "", usage)
	fs.StringVar(&t.prefix, "nats-prefix", "", "with --nats: the nodes' [nats] prefix (default \"bulkhead\")")
	fs.StringVar(&t.creds, "nats-creds", "", "with --nats: a NATS .creds file (JWT and NKey seed) to connect with")
}

// where names t in hints: the command that lists what it serves.
func (t target) where() string {
	if t.socket != "" {
		return "bulkhead status --socket " + t.socket
	}
	return "bulkhead status --nats " + redactURLs(t.natsURL) + " POOL"
}
