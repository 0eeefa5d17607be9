// Package python_test runs the Python client's own tests (clients/python/test_*.py, unittest):
// the conformance vectors, and end to end against a `bulkhead serve` that they start from the
// bulkhead command this test builds. Without python3 and cbor2 it skips, unless
// BULKHEAD_REQUIRE_PYTHON=1 (CI sets it), when it fails.
package python_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/daemontest"
)

// python finds a python3 that has cbor2: the one in PATH, or the system's.
func python(t *testing.T) string {
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(p)
		if err == nil && exec.Command(path, "-c", "import cbor2").Run() == nil {
			return path
		}
	}
	msg := "no python3 with cbor2 (apt-get install -y python3-cbor2): the Python client's tests did not run"
	if os.Getenv("BULKHEAD_REQUIRE_PYTHON") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func TestPythonClient(t *testing.T) {
	py := python(t)
	bin := daemontest.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-m", "unittest", "-v", "test_vectors", "test_e2e")
	cmd.Env = append(os.Environ(), "BULKHEAD_BIN="+bin, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -m unittest: %v\n%s", py, err, out)
	}
	t.Logf("%s", out)
}

// Without cbor2 the client says how to get it, for the interpreter that ran it, rather than a bare
// ModuleNotFoundError (a pyenv python3 does not see Debian's python3-cbor2).
func TestMissingCBOR2Explained(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	cmd := exec.Command(py, "-c", "import sys; sys.modules['cbor2'] = None; import bulkhead_client")
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("bulkhead_client imported without cbor2")
	}
	for _, want := range []string{"-m pip install cbor2", "python3-cbor2", "/usr/bin/python3"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the import error lacks %q:\n%s", want, out)
		}
	}
}
