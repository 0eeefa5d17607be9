package forkserver

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/proc"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// A program that does not serve BULKHEAD_FORKSERVER_FD is no fork server:
// Start says so, and leaves nothing behind. (internal/csdk runs a real one,
// the C SDK's, under a Pool.)
func TestStartNotAForkServer(t *testing.T) {
	testutil.CheckLeaks(t)
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	sp := proc.NewSpawner()
	defer sp.Close()
	_, err = Start(sp, exec.Command(truePath), 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "did not become ready") {
		t.Fatalf("Start(true) = %v; want it not ready", err)
	}
}

func TestForkRefusesBadRequests(t *testing.T) {
	s := &Server{}
	if _, err := s.Fork(nil, nil); err == nil {
		t.Fatal("no descriptors accepted")
	}
	if _, err := s.Fork([]string{"PATH=/x"}, make([]*os.File, 3)); err == nil {
		t.Fatal("a variable other than BULKHEAD_ accepted")
	}
}
