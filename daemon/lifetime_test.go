package daemon

import (
	"bufio"
	"os"
	"os/exec"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// A client process that dies holding references has them released at once:
// COM's six-minute ping, made exact.
func TestClientDeathReleases(t *testing.T) {
	d := startDaemon(t, "")
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	cmd.Env = testutil.HelperEnviron("client", "SOCKET="+d.sock, "OBJECTS=50")
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("client said %q", line)
	}
	if n := d.objects(); n != 50 {
		t.Fatalf("%d objects, want 50", n)
	}
	cmd.Process.Kill()
	cmd.Wait()
	stdin.Close()
	testutil.Until(t, "the dead client's objects to be released", func() bool { return d.objects() == 0 })
}

func waitObjects(t *testing.T, d *testDaemon, n int) {
	t.Helper()
	testutil.Until(t, "the objects to be released", func() bool { return d.objects() == n })
}
