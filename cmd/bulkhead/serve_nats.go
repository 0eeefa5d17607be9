package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-go/bulkhead/cluster"
	"github.com/bulkhead-go/bulkhead/daemon"
	"github.com/nats-io/nats.go"
)

// natsOptions turns the [nats] section of cfg into nats.go's options:
// the credentials, NKeys and TLS are NATS's, nothing of ours. A seed that
// NATS cannot read is a *daemon.ConfigError naming nkey_seed.
func natsOptions(cfg *daemon.Config) ([]nats.Option, error) {
	n := cfg.NATS
	opts := []nats.Option{nats.Name(n.Name), nats.MaxReconnects(-1), nats.ReconnectWait(cluster.ReconnectInterval)}
	if n.Creds != "" {
		opts = append(opts, nats.UserCredentials(n.Creds))
	}
	if n.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(n.NKey)
		if err != nil {
			return nil, cfg.KeyError("nats.nkey_seed", fmt.Errorf("%s: %w", n.NKey, err))
		}
		opts = append(opts, o)
	}
	if n.TLSCA != "" {
		opts = append(opts, nats.RootCAs(n.TLSCA))
	}
	if n.TLSCert != "" {
		opts = append(opts, nats.ClientCert(n.TLSCert, n.TLSKey))
	}
	if n.TLSFirst {
		opts = append(opts, nats.TLSHandshakeFirst(), nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	return opts, nil
}

// servedNode is the daemon's cluster node, or nothing without NATS. A
// node whose NATS server cannot be reached at start joins once it can
// (join), while the daemon's socket serves: boot order does not matter.
type servedNode struct {
	log  *slog.Logger
	stop chan struct{}  // closed by leave: join gives up
	wg   sync.WaitGroup // join

	mu   sync.Mutex
	node *cluster.Node // nil until it has joined
	nc   *nats.Conn
}

// connectionLog makes the NATS connection's losses and returns visible in
// the node's log: while it is away, its clients find the node lost. The
// handlers run on nats.go's callback goroutine, which nc.Close ends.
func connectionLog(log *slog.Logger) []nats.Option {
	return []nats.Option{
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if !nc.IsClosed() { // not our own Close
				log.Warn("cluster node: disconnected from NATS; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("cluster node: reconnected to NATS", "nats", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("cluster node: NATS error", "subject", subject, "err", err)
		}),
	}
}

// redactURLs is a NATS URL list with its passwords hidden, for messages.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// natsSource says where the NATS URL came from, for messages.
func natsSource(cfg *daemon.Config, fromFlag bool) string {
	if fromFlag {
		return "--nats"
	}
	return "the [nats] url of " + cfg.Path
}

// startNode makes s a cluster node when cfg has a NATS URL (from the
// --nats flag if fromFlag). A NATS server that cannot be reached leaves
// the node to join later; any other error (credentials, an id in use) is
// returned.
func startNode(s *daemon.Server, cfg *daemon.Config, fromFlag bool, log *slog.Logger) (*servedNode, error) {
	sn := &servedNode{log: log, stop: make(chan struct{})}
	if cfg.NATS.URL == "" {
		return sn, nil
	}
	opts, err := natsOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts, connectionLog(log)...)
	err = sn.connect(s, cfg, opts)
	switch {
	case errors.Is(err, nats.ErrNoServers):
		log.Warn("cluster node: no NATS server answers; the socket serves, and the node joins once one does",
			"nats", redactURLs(cfg.NATS.URL), "from", natsSource(cfg, fromFlag), "err", err)
		sn.wg.Add(1)
		go sn.join(s, cfg, opts)
		return sn, nil
	case err != nil:
		return nil, connectError(cfg, fromFlag, err)
	}
	return sn, nil
}

// connect connects to NATS and makes the node.
func (sn *servedNode) connect(s *daemon.Server, cfg *daemon.Config, opts []nats.Option) error {
	n := cfg.NATS
	nc, err := nats.Connect(n.URL, opts...)
	if err != nil {
		return err
	}
	node, err := cluster.NewNode(nc, s, cluster.NodeConfig{ID: n.NodeID, Prefix: n.Prefix, Version: n.Version,
		Heartbeat: n.Heartbeat, MaxDeadline: cfg.MaxDeadline, Logger: sn.log})
	if err != nil {
		nc.Close()
		return err
	}
	sn.mu.Lock()
	sn.node, sn.nc = node, nc
	sn.mu.Unlock()
	sn.log.Info("cluster node", "nats", nc.ConnectedUrlRedacted(), "node", node.ID(), "pools", s.PoolNames())
	return nil
}

// join tries to connect, ever less often (up to every 10 s, each failure
// logged then), until it has or leave stops it.
func (sn *servedNode) join(s *daemon.Server, cfg *daemon.Config, opts []nats.Option) {
	defer sn.wg.Done()
	wait := cluster.ReconnectInterval
	for {
		t := time.NewTimer(wait)
		select {
		case <-sn.stop:
			t.Stop()
			return
		case <-t.C:
		}
		err := sn.connect(s, cfg, opts)
		if err == nil {
			return
		}
		if wait = min(2*wait, 10*time.Second); wait == 10*time.Second || !errors.Is(err, nats.ErrNoServers) {
			sn.log.Warn("cluster node: not joined yet", "nats", redactURLs(cfg.NATS.URL), "err", err)
		}
	}
}

// connectError is a failed start's error: the URL, where it came from,
// and a hint.
func connectError(cfg *daemon.Config, fromFlag bool, err error) error {
	n := cfg.NATS
	if errors.Is(err, cluster.ErrNodeIDInUse) && n.NodeID != "" {
		return cfg.KeyError("nats.node_id", err)
	}
	if errors.Is(err, cluster.ErrNodeIDInUse) {
		return err
	}
	hint := "is a NATS server running there? README.md, \"Run it across machines\", says how to run one"
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
		strings.Contains(strings.ToLower(err.Error()), "authoriz") {
		hint = "the server may have refused the credentials: check [nats] creds, nkey_seed, or the URL's user"
	}
	err = fmt.Errorf("cannot connect to the NATS server at %s (%s): %w", redactURLs(n.URL), natsSource(cfg, fromFlag), err)
	return hinted{err, hint}
}

// sync registers on NATS the pools a reload added, and deregisters those
// it removed.
func (sn *servedNode) sync() {
	sn.mu.Lock()
	node := sn.node
	sn.mu.Unlock()
	if node == nil {
		return // not joined yet: NewNode will serve the pools as they are then
	}
	if err := node.Sync(); err != nil {
		sn.log.Error("cluster node: the reloaded pools are not all on NATS", "err", err)
	}
}

// leave drains the node (it leaves the queue group, then waits for its
// calls within grace), closes it and its connection.
func (sn *servedNode) leave(grace time.Duration) {
	close(sn.stop)
	sn.wg.Wait()
	sn.mu.Lock()
	node, nc := sn.node, sn.nc
	sn.mu.Unlock()
	if node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := node.Drain(ctx); err != nil {
		sn.log.Warn("cluster node drained with calls left", "err", err)
	}
	node.Close()
	nc.Close()
}
