package bulkhead_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead"
)

// Config.ForkServer with a Config.Sandbox protection that a clone of the
// fork server cannot get (user, namespaces, binary pin) fails closed: New
// returns a *StartError naming the protections, and starts no process.
// Seccomp, Landlock and cgroups are applied to clones (internal/csdk's
// TestForkServerSandbox).
func TestForkServerRefusesSandbox(t *testing.T) {
	bulkhead.CheckLeaks(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sb   bulkhead.Sandbox
		want string
	}{
		{"namespaces", bulkhead.Sandbox{IsolateNet: true}, "namespaces"},
		{"private tmp", bulkhead.Sandbox{PrivateTmp: true, Seccomp: "compute"}, "namespaces"},
		{"pid namespace", bulkhead.Sandbox{IsolatePID: true}, "IsolatePID"},
		{"pin", bulkhead.Sandbox{SHA256: strings.Repeat("0", 64)}, "SHA256"},
		{"user", bulkhead.Sandbox{User: "nobody"}, "User"},
		{"two", bulkhead.Sandbox{User: "nobody", IsolateIPC: true, MemoryMax: 1 << 30}, "User, namespaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := bulkhead.New(context.Background(), bulkhead.Config{Command: exe, Workers: 1, ForkServer: true,
				Sandbox: tc.sb, Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				p.Close(context.Background())
				t.Fatal("New took ForkServer with a Sandbox")
			}
			if verr := (bulkhead.Config{Command: exe, ForkServer: true, Sandbox: tc.sb}).Validate(); !errors.As(verr, new(*bulkhead.StartError)) {
				t.Fatalf("Validate: %v; want the same *StartError as New", verr)
			}
			var se *bulkhead.StartError
			if !errors.As(err, &se) || se.Protection != "fork server" || se.PID != 0 ||
				!strings.Contains(se.Reason, tc.want) || !strings.Contains(err.Error(), "Config.ForkServer") {
				t.Fatalf("err = %v (%#v); want a *StartError, Protection \"fork server\", naming %s", err, se, tc.want)
			}
		})
	}
}
