package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// testDaemon is a daemon serving this test binary's helpers.
type testDaemon struct {
	s    *Server
	sock string
	cfg  *Config
}

// configText is a configuration of pool "p" and class server "counter"
// (classes Counter and Secret), with extra: its top-level keys first, and
// from its first "[[" on, at the end. ${EXE} and ${SOCK} are filled in.
func configText(exe, sock, extra string) string {
	top, extra, _ := strings.Cut(extra, "\n[[")
	if extra != "" {
		extra = "\n[[" + extra
	}
	return strings.NewReplacer("${EXE}", exe, "${SOCK}", sock).Replace(`
socket = "${SOCK}"
drain_grace = "5s"
` + top + `
[[pool]]
name = "p"
command = "${EXE}"
env = ["BULKHEAD_TEST_HELPER=worker", "GORACE=atexit_sleep_ms=0"]
workers = 1
term_grace = "50ms"
dump_grace = "50ms"
[activator]
linger = "-1ns"
[[server]]
name = "counter"
command = "${EXE}"
env = ["BULKHEAD_TEST_HELPER=classes", "GORACE=atexit_sleep_ms=0"]
  [[server.class]]
  name = "Counter"
  [[server.class]]
  name = "Secret"
  allow_uids = [424242]
` + extra)
}

// startDaemon serves configText(extra) on a fresh socket, and shuts it
// down when the test ends, checking that nothing leaked.
func startDaemon(t *testing.T, extra string) *testDaemon {
	t.Helper()
	testutil.CheckLeaks(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "d.sock")
	cfg, err := Parse("test.toml", []byte(configText(exe, sock, extra)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testDaemon{s: s, sock: sock, cfg: cfg}
}

// dial connects a client that is closed when the test ends.
func (d *testDaemon) dial(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), d.sock, client.Options{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// objects is the activator's count of live objects.
func (d *testDaemon) objects() int { return d.s.act.Stats().Objects }

// ok fails the test on an error: ok[T](t)(f()) is f's value.
func ok[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantErr[E error](t *testing.T, err error) E {
	t.Helper()
	var e E
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want a %T", err, err, e)
	}
	return e
}

var _ = fmt.Sprint
