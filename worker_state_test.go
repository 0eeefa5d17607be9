package bulkhead

import (
	"strings"
	"testing"
)

// The transitions workerProc.to allows are exactly those of DESIGN.md's
// table, and any other panics.
func TestWorkerStateTransitions(t *testing.T) {
	legal := map[[2]state]bool{
		{starting, serving}: true, {starting, spare}: true, {starting, retiring}: true, {starting, dead}: true,
		{spare, serving}: true,
		{spare, lost}:    true, {serving, lost}: true,
		{spare, retiring}: true, {serving, retiring}: true, {lost, retiring}: true,
		{spare, dead}: true, {serving, dead}: true, {lost, dead}: true, {retiring, dead}: true,
	}
	for from := starting; from <= dead; from++ {
		for to := starting; to <= dead; to++ {
			w := &workerProc{state: from}
			var panicked any
			func() {
				defer func() { panicked = recover() }()
				w.to(to)
			}()
			switch {
			case legal[[2]state{from, to}] && panicked != nil:
				t.Errorf("%v -> %v panicked: %v", from, to, panicked)
			case legal[[2]state{from, to}] && w.state != to:
				t.Errorf("%v -> %v left the worker %v", from, to, w.state)
			case !legal[[2]state{from, to}] && (panicked == nil || !strings.Contains(panicked.(string), "illegal transition")):
				t.Errorf("%v -> %v: allowed (recover: %v)", from, to, panicked)
			}
		}
	}
}
