package activation

import (
	"context"
	"errors"
	"testing"
)

// TestCloneInto: a handle cloned into another session outlives the
// session it was cloned from, and ends with its own; the object goes
// with its last handle.
func TestCloneInto(t *testing.T) {
	gone := newGoneWatch()
	a := newAct(t, ActivatorConfig{Linger: NoLinger, Servers: []ServerConfig{helperServer(t, "Counter:free", multi("Counter"))}},
		actHooks{gone: gone.hook})
	ctx := context.Background()
	from, err := a.NewSession(SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	to, err := a.NewSession(SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	x, err := from.CreateInstance(ctx, "Counter")
	if err != nil {
		t.Fatal(err)
	}
	y, err := x.CloneInto(to)
	if err != nil || y.Session() != to || y.ID() != x.ID() {
		t.Fatalf("CloneInto: %v", err)
	}
	from.Close()
	if _, err := x.Call(ctx, "add", 1); err == nil {
		t.Fatal("a handle of a closed session still calls")
	}
	if _, err := y.Call(ctx, "add", 1); err != nil {
		t.Fatalf("the clone after its origin's session closed: %v", err)
	}
	if _, err := x.CloneInto(to); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("CloneInto from a released handle: %v", err)
	}
	pid := y.PID()
	to.Close()
	gone.waitFor(t, pid)
	if st := a.Stats(); st.Objects != 0 {
		t.Fatalf("after both sessions closed: %+v", st)
	}
}
