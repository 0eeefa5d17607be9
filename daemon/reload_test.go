package daemon

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/bulkhead-go/bulkhead"
)

// A reload replaces a changed pool under load, and adds one, without a
// call failing: calls that took the old pool finish on it, and it is
// closed after them.
func TestReloadUnderLoad(t *testing.T) {
	d := startDaemon(t, "")
	exe, _ := os.Executable()
	c := d.dial(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	calls := make([]int, 8)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Pool("p").Call(context.Background(), "echo", i); err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					return
				}
				calls[i]++
			}
		}()
	}
	for round := range 3 {
		text := configText(exe, d.sock, `
[[pool]]
name = "added"
command = "${EXE}"
`)
		// A changed configuration of p: one more worker each round.
		text = replaceOnce(text, "workers = 1", "workers = "+string(rune('2'+round)))
		cfg, err := Parse("reload.toml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.s.Reload(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		if v, err := bulkhead.CallAs[int](context.Background(), c.Pool("added"), "echo", round); err != nil || v != round {
			t.Fatalf("the added pool: %v, %v", v, err)
		}
	}
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d calls failed during the reloads, the first: %v", len(failures), failures[0])
	}
	for i, n := range calls {
		if n == 0 {
			t.Fatalf("caller %d made no call", i)
		}
	}
	d.s.drainWG.Wait() // the replaced pools are closed
}

func replaceOnce(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}
