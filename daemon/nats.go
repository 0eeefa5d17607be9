package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// NATS is the [nats] section: with a URL (or `bulkhead serve --nats`),
// the daemon is also a cluster node (package cluster) on that NATS
// server. Credentials, NKeys and TLS are NATS's own; every field's zero
// value means "not used" unless it says otherwise.
type NATS struct {
	URL       string        `toml:"url"`       // nats://host:port, comma-separated for several
	Name      string        `toml:"name"`      // the connection's name in the NATS server's monitoring
	NodeID    string        `toml:"node_id"`   // unique per node; zero value: a random id at each start
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

// Bounds of [nats] heartbeat: below the minimum a node and its clients
// spend their CPU on load reports; above the maximum a lost node is
// found too late to matter.
const (
	minHeartbeat = 10 * time.Millisecond
	maxHeartbeat = time.Minute
)

// natsName is what a node id or a prefix may be: one NATS subject token.
// It is package cluster's nameRE (cluster/wire.go checkName), copied so
// that the daemon package does not import cluster and NATS with it.
var natsName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CheckNATSToken reports whether s, a node id or a prefix (what), is
// what package cluster takes: one NATS subject token.
func CheckNATSToken(what, s string) error {
	if !natsName.MatchString(s) {
		return fmt.Errorf("%q: a %s is one NATS subject token: 1 to 64 of A-Z a-z 0-9 _ -", s, what)
	}
	return nil
}

// semver is a micro service's version, as nats.go/micro checks it.
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// check reports the section's errors, a missing or unreadable file
// included: what `serve --check` passes must be able to connect.
func (n *NATS) check(bad func(string, int, error)) {
	if n.URL != "" {
		if err := CheckNATSURL(n.URL); err != nil {
			bad("nats.url", -1, err)
		}
	}
	if (n.TLSCert == "") != (n.TLSKey == "") {
		bad("nats.tls_cert", -1, errors.New("tls_cert and tls_key go together"))
	}
	if n.Creds != "" && n.NKey != "" {
		bad("nats.creds", -1, errors.New("creds and nkey_seed are two ways to authenticate: use one"))
	}
	switch {
	case n.Heartbeat < 0:
		bad("nats.heartbeat", -1, errors.New("must not be negative"))
	case n.Heartbeat != 0 && (n.Heartbeat < minHeartbeat || n.Heartbeat > maxHeartbeat):
		bad("nats.heartbeat", -1, fmt.Errorf("%v: want %v to %v (zero: 100ms)", n.Heartbeat, minHeartbeat, maxHeartbeat))
	}
	for _, f := range []struct{ key, v, what string }{{"nats.node_id", n.NodeID, "node id"}, {"nats.prefix", n.Prefix, "prefix"}} {
		if f.v != "" {
			if err := CheckNATSToken(f.what, f.v); err != nil {
				bad(f.key, -1, err)
			}
		}
	}
	if n.Version != "" && !semver.MatchString(n.Version) {
		bad("nats.version", -1, fmt.Errorf("%q: want a semantic version such as \"1.0.0\"", n.Version))
	}
	n.checkFiles(bad)
}

// checkFiles reports the credential and TLS files that cannot be read,
// and TLS files that do not hold what they should.
func (n *NATS) checkFiles(bad func(string, int, error)) {
	readable := true
	for _, f := range []struct{ key, path string }{{"nats.creds", n.Creds}, {"nats.nkey_seed", n.NKey},
		{"nats.tls_ca", n.TLSCA}, {"nats.tls_cert", n.TLSCert}, {"nats.tls_key", n.TLSKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			bad(f.key, -1, err)
			readable = false
		}
	}
	if !readable {
		return
	}
	if n.TLSCA != "" {
		pem, _ := os.ReadFile(n.TLSCA)
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			bad("nats.tls_ca", -1, fmt.Errorf("%s holds no PEM certificate", n.TLSCA))
		}
	}
	if n.TLSCert != "" && n.TLSKey != "" {
		if _, err := tls.LoadX509KeyPair(n.TLSCert, n.TLSKey); err != nil {
			bad("nats.tls_cert", -1, err)
		}
	}
}

// natsSchemes are the schemes nats.go connects with.
var natsSchemes = map[string]bool{"nats": true, "tls": true, "ws": true, "wss": true}

// CheckNATSURL reports whether s is what nats.Connect takes: one or
// more comma-separated server URLs, scheme://[user[:password]@]host[:port]
// with scheme nats, tls, ws or wss (not ws and the others mixed), or a
// bare host:port (nats://). A bare word without a port, such as
// "notaurl", is refused although nats.go would read it as
// nats://notaurl:4222: it is far more often a mistyped URL than a host,
// and it would fail only at dial time.
func CheckNATSURL(s string) error {
	var ws, other bool
	n := 0
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n++
		full := part
		bare := !strings.Contains(part, "://")
		if bare {
			full = "nats://" + part // as nats.go reads it
		}
		u, err := url.Parse(full)
		bad := err != nil || !natsSchemes[u.Scheme] || u.Hostname() == "" || (u.Path != "" && u.Path != "/") ||
			u.RawQuery != "" || u.Fragment != "" || (bare && u.Port() == "")
		if !bad && u.Port() != "" {
			p, err := strconv.Atoi(u.Port())
			bad = err != nil || p < 1 || p > 65535
		}
		if bad {
			if err == nil && u.User != nil {
				part = u.Redacted() // the password stays out of logs
			}
			return fmt.Errorf("%q is not a NATS server URL: want nats://host:port (or tls://, ws://, wss://), several separated by commas", part)
		}
		if u.Scheme == "ws" || u.Scheme == "wss" {
			ws = true
		} else {
			other = true
		}
	}
	switch {
	case n == 0:
		return fmt.Errorf("%q names no server: want nats://host:port", s)
	case ws && other:
		return fmt.Errorf("%q mixes websocket (ws://, wss://) and other URLs, which nats.go refuses", s)
	}
	return nil
}

// ChangedKeys are the keys ("nats.prefix", ...) whose values differ
// between a and b, in the section's order. A running node keeps the
// settings it started with (its connection and subjects are made once), so
// a reload reports these as taking effect at the next start. Every field is
// compared, by reflection, so a new key cannot be forgotten.
func (a NATS) ChangedKeys(b NATS) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var keys []string
	for i := range va.NumField() {
		if va.Field(i).Interface() != vb.Field(i).Interface() {
			keys = append(keys, "nats."+va.Type().Field(i).Tag.Get("toml"))
		}
	}
	return keys
}
