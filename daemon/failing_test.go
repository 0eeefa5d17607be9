package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// A pool whose workers cannot start does not keep the daemon from serving
// its other pools: its calls get the StartError, status shows it failing,
// and it joins the others once its workers start (retried with backoff).
func TestFailingPoolServesTheOthers(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	d := startDaemon(t, `
[[pool]]
name = "broken"
command = "${EXE}"
env = ["BULKHEAD_TEST_HELPER=gated", "GATE=`+gate+`", "GORACE=atexit_sleep_ms=0"]
workers = 1
restart_delay = "5ms"
max_restart_delay = "50ms"
term_grace = "50ms"
`)
	c := d.dial(t)
	ctx := context.Background()
	if r, err := c.Pool("p").Call(ctx, "echo", "up"); err != nil {
		t.Fatalf("the healthy pool: %v", err)
	} else if v, _ := r.Value(); v != "up" {
		t.Fatalf("the healthy pool echoed %v", v)
	}
	var se *bulkhead.StartError
	if _, err := c.Pool("broken").Call(ctx, "echo", 1); !errors.As(err, &se) {
		t.Fatalf("a call of the failing pool: %v, want a *bulkhead.StartError", err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var state any
	for _, p := range st["pools"].([]any) {
		if pm := p.(map[any]any); pm["name"] == "broken" {
			state = pm["state"]
		}
	}
	if state != "failing" {
		t.Fatalf("status of the failing pool: state %v, want failing: %v", state, st)
	}
	// A cluster node serves it too: its calls get the StartError.
	if !slices.Contains(d.s.PoolNames(), "broken") {
		t.Errorf("PoolNames %v lacks the failing pool", d.s.PoolNames())
	}
	if got := d.s.PoolLimit("broken"); got < 2 {
		t.Errorf("PoolLimit of the failing pool: %d, want what it takes once it runs", got)
	}
	if _, err := d.s.CallPool(ctx, "broken", "echo", 1); !errors.As(err, &se) {
		t.Errorf("CallPool of the failing pool: %v, want a *bulkhead.StartError", err)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Until(t, "the failing pool to start", func() bool {
		_, err := c.Pool("broken").Call(ctx, "echo", 1)
		return err == nil
	})
}

// A reload keeps a failing pool failing (its retries go on) and stops the
// retries of one it drops; Shutdown stops them all (startDaemon checks for
// leaks).
func TestReloadFailingPool(t *testing.T) {
	exe, _ := os.Executable()
	gate := filepath.Join(t.TempDir(), "gate")
	broken := `
[[pool]]
name = "broken"
command = "${EXE}"
env = ["BULKHEAD_TEST_HELPER=gated", "GATE=` + gate + `", "GORACE=atexit_sleep_ms=0"]
workers = 1
restart_delay = "5ms"
max_restart_delay = "50ms"
`
	d := startDaemon(t, broken)
	for _, extra := range []string{broken, ""} {
		cfg, err := Parse("test.toml", []byte(configText(exe, d.sock, extra)))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.s.Reload(context.Background(), cfg); err != nil {
			t.Fatalf("reload: %v", err)
		}
		d.s.mu.Lock()
		n := len(d.s.failing)
		d.s.mu.Unlock()
		if want := len(extra) / len(broken); n != want {
			t.Fatalf("after a reload, %d failing pools, want %d", n, want)
		}
	}
}
