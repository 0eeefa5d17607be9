package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// A pool or class the peer may not use is "permission denied", whether it
// exists or not, and status does not show it.
func TestPermissionDenied(t *testing.T) {
	d := startDaemon(t, `
[[pool]]
name = "private"
command = "${EXE}"
allow_uids = [424242]
`)
	c := d.dial(t)
	ctx := context.Background()
	var msgs []string
	for _, pool := range []string{"private", "no-such-pool"} {
		_, err := c.Pool(pool).Call(ctx, "echo", 1)
		if !errors.Is(err, client.ErrPermission) {
			t.Errorf("pool %q: %v, want ErrPermission", pool, err)
			continue
		}
		// The message helps and says the same whether the pool exists.
		want := fmt.Sprintf("permission denied: no pool %q that uid %d may use", pool, os.Getuid())
		if !strings.Contains(err.Error(), want) {
			t.Errorf("pool %q: %q, want %q", pool, err, want)
		}
		msgs = append(msgs, strings.Replace(err.Error(), pool, "NAME", 1))
	}
	if len(msgs) == 2 && msgs[0] != msgs[1] {
		t.Errorf("a refused peer can tell a pool that exists: %q, %q", msgs[0], msgs[1])
	}
	for _, class := range []string{"Secret", "NoSuchClass"} {
		if _, err := c.CreateInstance(ctx, class); !errors.Is(err, client.ErrPermission) {
			t.Errorf("class %q: %v, want ErrPermission", class, err)
		}
	}
	st := ok[map[string]any](t)(c.Status(ctx))
	if pools, _ := st["pools"].([]any); len(pools) != 1 {
		t.Fatalf("status shows %d pools, want only p: %v", len(pools), st)
	}
}

// Another uid, which the socket's group lets connect, is refused at the
// handshake by its credentials (SO_PEERCRED), and learns nothing.
func TestOtherUIDRefused(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if os.Getuid() != 0 || err != nil {
		t.Skip("needs root and setpriv, to run a client as nobody")
	}
	d := startDaemon(t, `socket_group = "65534"`)
	// nobody must reach the socket and the executable.
	dir := filepath.Dir(d.sock)
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir makes both levels 0700
	exe, _ := os.Executable()
	mine := filepath.Join(dir, "client")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mine, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", mine)
	cmd.Env = []string{testutil.HelperEnv + "=client", "SOCKET=" + d.sock, "OBJECTS=1"}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "dial: bulkhead: permission denied") {
		t.Fatalf("nobody's client: %v, %s", err, out)
	}
	if n := d.objects(); n != 0 {
		t.Fatalf("%d objects made for a refused peer", n)
	}
}
