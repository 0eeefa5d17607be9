package daemon

import (
	"errors"
	"time"
)

// NATS is the [nats] section: with a URL (or `bulkhead serve --nats`),
// the daemon is also a cluster node (package cluster) on that NATS
// server. Credentials, NKeys and TLS are NATS's own; every field's zero
// value means "not used" unless it says otherwise.
type NATS struct {
	URL       string        `toml:"url"`       // nats://host:port, comma-separated for several
	Name      string        `toml:"name"`      // the connection's name in the NATS server's monitoring
	NodeID    string        `toml:"node_id"`   // zero value: a random id at each start
	Prefix    string        `toml:"prefix"`    // the subjects' first token; zero value: "bulkhead"
	Version   string        `toml:"version"`   // the micro services' version; zero value: "1.0.0"
	Heartbeat time.Duration `toml:"heartbeat"` // load reports; zero value: 100 ms
	Creds     string        `toml:"creds"`     // a .creds file (JWT and NKey seed)
	NKey      string        `toml:"nkey_seed"` // a file holding an NKey seed
	TLSCA     string        `toml:"tls_ca"`    // the CA file to verify the server with
	TLSCert   string        `toml:"tls_cert"`  // client certificate, with tls_key
	TLSKey    string        `toml:"tls_key"`   // its key
	TLSFirst  bool          `toml:"tls_handshake_first"`
}

// check reports the section's errors.
func (n *NATS) check(bad func(string, int, error)) {
	if (n.TLSCert == "") != (n.TLSKey == "") {
		bad("nats.tls_cert", -1, errors.New("tls_cert and tls_key go together"))
	}
	if n.Creds != "" && n.NKey != "" {
		bad("nats.creds", -1, errors.New("creds and nkey_seed are two ways to authenticate: use one"))
	}
	if n.Heartbeat < 0 {
		bad("nats.heartbeat", -1, errors.New("must not be negative"))
	}
}
