package daemon

import (
	"log/slog"
	"net"
	"path/filepath"
	"testing"
)

// The notifier speaks sd_notify to NOTIFY_SOCKET: READY, RELOADING,
// STOPPING, and the watchdog systemd asks for.
func TestNotifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "20000") // a ping every 10 ms
	n := NewNotifier(slog.New(slog.DiscardHandler))
	n.Ready()
	n.Reloading()
	got := map[string]bool{}
	buf := make([]byte, 256)
	for !(got["READY=1"] && got["RELOADING=1"] && got["WATCHDOG=1"]) {
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got[string(buf[:k])] = true
	}
	n.Stopping()
	for {
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:k]) == "STOPPING=1" {
			return
		}
	}
}
