package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/natsembed"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// serve --check refuses the [nats] settings that could not connect, each
// with its file, line and key; a bad --nats is a usage error.
func TestServeCheckNATS(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "bad.nk")
	if err := os.WriteFile(seed, []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "socket = \"" + filepath.Join(dir, "s.sock") + "\"\n[[pool]]\nname = \"demo\"\ncommand = \"${BULKHEAD_SELF}\"\nargs = [\"worker\"]\n[nats]\n"
	tests := []struct {
		name, nats string
		flags      []string
		code       int
		want       []string // in stdout for code 0, stderr otherwise
	}{
		{"valid", "url = \"nats://127.0.0.1:4222, tls://n2:4443\"\nheartbeat = \"250ms\"\n", nil, 0, []string{"ok (1 pools"}},
		{"url without its colon", "url = \"nats//127.0.0.1:14222\"\n", nil, 1, []string{"c.toml:7: nats.url", "nats://host:port"}},
		{"creds missing", "url = \"nats://127.0.0.1:4222\"\ncreds = \"/nonexistent.creds\"\n", nil, 1,
			[]string{"c.toml:8: nats.creds", "/nonexistent.creds", "no such file"}},
		{"tls_cert missing", "tls_cert = \"/nonexistent.pem\"\ntls_key = \"/nonexistent.key\"\n", nil, 1,
			[]string{"c.toml:7: nats.tls_cert", "c.toml:8: nats.tls_key"}},
		{"seed NATS cannot read", "url = \"nats://127.0.0.1:4222\"\nnkey_seed = \"" + seed + "\"\n", nil, 1,
			[]string{"c.toml:8: nats.nkey_seed", seed}},
		{"heartbeat as a number", "heartbeat = 5\n", nil, 1, []string{"c.toml:7: nats.heartbeat", `a duration is a string such as "100ms"`}},
		{"bad --nats", "", []string{"--nats", "nats//127.0.0.1:4222"}, 2, []string{"--nats", "not a NATS server URL"}},
		{"--nats a bare word", "", []string{"--nats", "notaurl"}, 2, []string{"--nats", `"notaurl" is not a NATS server URL`}},
		{"url a bare word", "url = \"notaurl\"\n", nil, 1, []string{"c.toml:7: nats.url", `"notaurl" is not a NATS server URL`}},
		{"--nats checked with the file's seed", "nkey_seed = \"" + seed + "\"\n", []string{"--nats", "nats://127.0.0.1:4222"}, 1,
			[]string{"c.toml:7: nats.nkey_seed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "c.toml")
			if err := os.WriteFile(cfg, []byte(base+tt.nats), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errs := run(t, append([]string{"serve", "--check", "--config", cfg}, tt.flags...)...)
			got := out
			if tt.code != 0 {
				got = errs
			}
			if code != tt.code {
				t.Errorf("exit %d, want %d: %s%s", code, tt.code, out, errs)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("output %q lacks %q", got, w)
				}
			}
		})
	}
}

// TestServeNATSJoinsLater: a node whose NATS server is not up yet serves
// its socket at once, says so (the URL's password hidden), and joins once
// the server is up.
func TestServeNATSJoinsLater(t *testing.T) {
	checkLeaks(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	url := fmt.Sprintf("nats://u:secret@127.0.0.1:%d", port)
	p := startServe(t, "--nats", url) // it waits until the socket serves
	testutil.Until(t, "the warning", func() bool { return strings.Contains(p.log.String(), "no NATS server answers") })
	ns, err := natsembed.StartAt(port)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	testutil.Until(t, "the node to join", func() bool { return strings.Contains(p.log.String(), `"msg":"cluster node"`) })
	if code, out, errs := run(t, "call", "--nats", ns.URL(), "demo", "echo", "1"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Errorf("call --nats once joined: exit %d, %q %q", code, out, errs)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, p.log.String())
	}
	logs := p.log.String()
	if !strings.Contains(logs, fmt.Sprintf("nats://u:xxxxx@127.0.0.1:%d", port)) || strings.Contains(logs, "secret") {
		t.Errorf("the log should name the URL with its password hidden:\n%s", logs)
	}
}

// A node logs the loss of its NATS server, and a second node given the
// id of a live one refuses to start, blaming the config's node_id.
func TestServeNATSLostAndDuplicateID(t *testing.T) {
	ns, err := natsembed.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	p := startServe(t, "--nats", ns.URL())
	var id string
	testutil.Until(t, "the cluster node record", func() bool {
		_, rest, ok := strings.Cut(p.log.String(), `"msg":"cluster node"`)
		if ok {
			_, rest, ok = strings.Cut(rest, `"node":"`)
			id, _, _ = strings.Cut(rest, `"`)
		}
		return ok && id != ""
	})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c2.toml")
	text := "socket = \"" + filepath.Join(dir, "s.sock") + "\"\n[[pool]]\nname = \"demo\"\ncommand = \"${BULKHEAD_SELF}\"\nargs = [\"worker\"]\nworkers = 1\n" +
		"[nats]\nurl = \"" + ns.URL() + "\"\nnode_id = \"" + id + "\"\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "serve", "--config", cfg)
	cmd.Env = testutil.HelperEnviron("cli")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "c2.toml:9: nats.node_id: cluster: node id in use") {
		t.Fatalf("a second node %q: %v, want exit 1 naming c2.toml:9 nats.node_id\n%s", id, err, stderr.String())
	}
	ns.Close()
	testutil.Until(t, "the node to log the NATS server's loss", func() bool {
		return strings.Contains(p.log.String(), "disconnected from NATS")
	})
}
