package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/internal/natsembed"
)

// call --nats reaches a cluster's pools and classes through the NATS
// server alone, with the socket's argument parsing and output; its bad
// command lines are usage errors.
func TestCallNATS(t *testing.T) {
	ns, err := natsembed.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	p := startServe(t, "--nats", ns.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.DialNATS(ctx, ns.URL(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	err = c.WaitNodes(ctx, 1)
	c.Close()
	if err != nil {
		t.Fatalf("the node never reached NATS: %v\n%s", err, p.log)
	}
	url := ns.URL()
	tests := []struct {
		name string
		args []string
		code int
		want string // stdout for exit 0 and 1 (its start), stderr for 2
	}{
		{"pool", []string{"--nats", url, "demo", "echo", `"hello"`}, 0, "\"hello\"\n"},
		{"integers stay integers", []string{"--nats", url, "demo", "echo", "[-5, 18446744073709551615]"}, 0, "[-5,18446744073709551615]\n"},
		{"typed remote error", []string{"--nats", url, "demo", "nosuch"}, 1, `"kind":"remote"`},
		{"object", []string{"--nats", url, "--class", "Counter", "--new", "[10]", "add", "5", ",", "get"}, 0, "15\n15\n"},
		{"another prefix has no node", []string{"--nats", url, "--nats-prefix", "other", "--timeout", "300ms", "demo", "echo", "1"}, 1, `"kind":`},
		{"socket and nats", []string{"--socket", p.sock, "--nats", url, "demo", "echo", "1"}, 2, "give one"},
		{"neither", []string{"demo", "echo", "1"}, 2, "--socket or --nats is required"},
		{"bad url", []string{"--nats", "nats//127.0.0.1:4222", "demo", "echo", "1"}, 2, "not a NATS server URL"},
		{"prefix without nats", []string{"--socket", p.sock, "--nats-prefix", "x", "demo", "echo", "1"}, 2, "--nats-prefix goes with --nats"},
		{"creds missing", []string{"--nats", url, "--nats-creds", "/nonexistent.creds", "demo", "echo", "1"}, 2, "--nats-creds: open /nonexistent.creds"},
		{"creds without nats", []string{"--socket", p.sock, "--nats-creds", "/etc/hostname", "demo", "echo", "1"}, 2, "--nats-creds goes with --nats"},
		{"bad prefix", []string{"--nats", url, "--nats-prefix", "a.b", "demo", "echo", "1"}, 2, "--nats-prefix: \"a.b\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := run(t, append([]string{"call"}, tt.args...)...)
			got := out
			if tt.code == 2 {
				got = errs
			}
			if code != tt.code || !strings.Contains(got, tt.want) {
				t.Errorf("call %q: exit %d, stdout %q, stderr %q; want exit %d and %q", tt.args, code, out, errs, tt.code, tt.want)
			}
		})
	}
	// status --nats lists the pool's live node, by its heartbeats.
	if code, out, errs := run(t, "status", "--nats", url, "--wait", "2s", "demo"); code != 0 || !strings.HasPrefix(out, "pool demo: 1 live node\n") || !strings.Contains(out, "workers free") {
		t.Errorf("status --nats demo: exit %d, %q %q", code, out, errs)
	}
	// A pool no live node serves exits 1, text and JSON alike: a health check.
	if code, out, errs := run(t, "status", "--nats", url, "--wait", "300ms", "--json", "nosuch"); code != 1 || !strings.Contains(out, `"nodes": []`) ||
		!strings.Contains(errs, "pool nosuch: no live node") {
		t.Errorf("status --nats --json nosuch: exit %d, %q %q; want 1", code, out, errs)
	}
	if code, out, errs := run(t, "status", "--nats", url, "--wait", "300ms", "nosuch"); code != 1 || out != "pool nosuch: no live node (none heartbeat within 300ms)\n" {
		t.Errorf("status --nats nosuch: exit %d, %q %q; want 1", code, out, errs)
	}
	// Without a pool: the pools the nodes serve, by micro's discovery.
	if code, out, errs := run(t, "status", "--nats", url, "--wait", "500ms"); code != 0 || !strings.Contains(out, "demo ") || !strings.Contains(out, "1 node(s)") {
		t.Errorf("status --nats: exit %d, %q %q", code, out, errs)
	}
	if code, out, errs := run(t, "status", "--nats", url, "--wait", "500ms", "--json"); code != 0 || !strings.Contains(out, `"name": "demo"`) {
		t.Errorf("status --nats --json: exit %d, %q %q", code, out, errs)
	}
	for _, args := range [][]string{{"--nats", url, "a", "b"}, {"--socket", p.sock, "demo"}, {"--nats", url, "--wait", "0s", "demo"}, {}} {
		if code, _, errs := run(t, append([]string{"status"}, args...)...); code != 2 {
			t.Errorf("status %q: exit %d, %q; want 2", args, code, errs)
		}
	}
	// A NATS server that is not there is named.
	if code, _, errs := run(t, "call", "--nats", "nats://127.0.0.1:1", "demo", "echo", "1"); code != 1 || !strings.Contains(errs, "nats://127.0.0.1:1 (--nats)") {
		t.Errorf("call --nats to nowhere: exit %d, %q", code, errs)
	}
}
