package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/client"
	"github.com/bulkhead-go/bulkhead/status"
	tea "github.com/charmbracelet/bubbletea"
)

// aReport is a report with one busy worker and one crash, a worker-chosen
// string among them that tries an escape sequence.
func aReport() status.Report {
	return status.Report{Time: time.Now(), Pools: []status.PoolReport{{
		Name: "render",
		Stats: status.StatsReport{Workers: 2, Busy: 1, Calls: 42, InFlight: 1,
			CallsByOutcome: map[string]uint64{"ok": 40, "crash_call": 2}},
		Workers: []status.WorkerReport{
			{PID: 4242, State: "busy", Calls: 17, CPUSeconds: 1.5, RSSBytes: 30 << 20, AgeSeconds: 90,
				Current: &status.CurrentReport{Method: "thumbnail\x1b[2J", RequestID: 18, RunningSeconds: 0.25}},
			{PID: 4343, State: "idle", Calls: 23, AgeSeconds: 3},
		},
		Crashes: []status.CrashReport{{PID: 4141, Phase: "call", Signal: "SIGSEGV", Function: "crashy_raw_segv",
			Method: "thumbnail", RequestID: 9, Fingerprint: "thumbnail #beef", AgoSeconds: 4}},
	}}}
}

func serveReport(t *testing.T, rep status.Report) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.Query().Has("json") && !strings.HasSuffix(r.URL.Path, ".json") {
			http.Error(w, "want the report", http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(rep)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestTopOnce(t *testing.T) {
	srv := serveReport(t, aReport())
	code, out, errs := run(t, "top", "--once", srv.URL+"/status")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"pool render: 42 calls (ok 40, crashed 2", "4242  busy", "thumbnail?[2J #18 for 250ms",
		"4343  idle", "pid 4141  call  SIGSEGV in crashy_raw_segv  thumbnail #9 thumbnail #beef"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Error("a worker's string reached the terminal with an escape")
	}
	// A bare host:port means its /status page, and the header shows the
	// page's URL, not the report's query.
	code, out, errs = run(t, "top", "--once", strings.TrimPrefix(srv.URL, "http://"))
	if code != 0 {
		t.Fatalf("host:port: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "bulkhead top  "+srv.URL+"/status  updated") || strings.Contains(out, "json") {
		t.Errorf("host:port: header not the clean page URL:\n%s", out)
	}
}

func TestReportURL(t *testing.T) {
	tests := []struct{ in, page, report string }{
		{"127.0.0.1:9090", "http://127.0.0.1:9090/status", "http://127.0.0.1:9090/status?json"},
		{"localhost:9090/status", "http://localhost:9090/status", "http://localhost:9090/status?json"},
		{"http://h:1/status", "http://h:1/status", "http://h:1/status?json"},
		{"http://h:1", "http://h:1/status", "http://h:1/status?json"},
		{"http://h:1/status.json", "http://h:1/status.json", "http://h:1/status.json"},
		{"https://h/x?a=1", "https://h/x?a=1", "https://h/x?a=1&json"},
	}
	for _, tt := range tests {
		page, rep, err := reportURL(tt.in)
		if err != nil || page != tt.page || rep != tt.report {
			t.Errorf("reportURL(%q) = %q, %q, %v; want %q, %q", tt.in, page, rep, err, tt.page, tt.report)
		}
	}
	for _, bad := range []string{"ftp://x/status", ":9090", "http:///status"} {
		if _, _, err := reportURL(bad); err == nil {
			t.Errorf("reportURL(%q) accepted", bad)
		}
	}
}

func TestTopErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"top"}, 2, "one URL"},
		{[]string{"top", "--socket", "/x.sock", "http://127.0.0.1:1/status"}, 2, "one URL, or --socket"},
		{[]string{"top", "--once", "--socket", "/nonexistent/bulkhead.sock"}, 1, "no such file"},
		{[]string{"top", "ftp://x/status"}, 2, "want http://"},
		{[]string{"top", "--interval", "1ms", "http://127.0.0.1:1/status"}, 2, "--interval"},
		{[]string{"top", "--once", "http://127.0.0.1:1/status"}, 1, "connect"}, // nothing listens on port 1
	}
	for _, tt := range tests {
		code, _, errs := run(t, tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tt.args, code, errs, tt.code, tt.want)
		}
	}
}

// TestTopModel drives the live view as bubbletea would: a report arrives
// and is drawn, a failed poll keeps the last report and says why, the next
// poll is scheduled, p pauses, q quits.
func TestTopModel(t *testing.T) {
	srv := serveReport(t, aReport())
	page, u, err := reportURL(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	cfg := topConfig{url: page, report: u, interval: time.Second}
	m := &topModel{cfg: cfg, ctx: context.Background(), width: 120, read: topSource(cfg)}
	msg := m.Init()()
	if _, cmd := m.Update(msg); cmd == nil {
		t.Error("no next poll after a report")
	}
	if v := m.View(); !strings.Contains(v, "4242  busy") {
		t.Errorf("view after a report:\n%s", v)
	}
	m.Update(reportMsg{err: context.DeadlineExceeded})
	if v := m.View(); !strings.Contains(v, "4242") || !strings.Contains(v, "cannot read the report") {
		t.Errorf("view after a failed poll:\n%s", v)
	}
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("p")})
	if _, cmd := m.Update(tickMsg{}); cmd != nil || !strings.Contains(m.View(), "paused") {
		t.Error("paused, yet polling")
	}
	if _, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")}); cmd == nil || cmd() != tea.Quit() {
		t.Error("q does not quit")
	}
}

// TestTopDaemon reads a real bulkhead serve daemon over its socket: its
// pool's calls as the daemon counts them, per worker too, and its class
// server holding an object; what the daemon does not report is n/a.
func TestTopDaemon(t *testing.T) {
	checkLeaks(t)
	p := startServe(t)
	pids := p.workerPIDs(t)
	if len(pids) != 1 {
		t.Fatalf("the daemon has workers %v, want one", pids)
	}
	for range 3 {
		if code, _, errs := run(t, "call", "--socket", p.sock, "demo", "echo", "1"); code != 0 {
			t.Fatalf("call: %s", errs)
		}
	}
	c, err := client.Dial(context.Background(), p.sock, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	obj, err := c.CreateInstance(context.Background(), "Counter")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Release()
	code, out, errs := run(t, "top", "--once", "--socket", p.sock)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"daemon " + p.sock, "pool demo: 3 calls (ok 3, crashed 0", fmt.Sprintf("%8d  idle            3       n/a        n/a", pids[0]),
		"latest crashes: n/a", "activator daemon: servers 1", "objects 1", "running", "Counter"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

// TestReportOf: a daemon that does not send calls or the activator's
// counters gets n/a for them, never a 0 that looks measured.
func TestReportOf(t *testing.T) {
	st := map[string]any{"pools": []any{map[any]any{"name": "p", "workers": []any{map[any]any{"pid": uint64(7), "state": "idle"}}}},
		"servers": []any{map[any]any{"pid": uint64(8), "name": "srv", "state": "running", "objects": uint64(2), "locks": uint64(3),
			"classes": []any{"C"}}}}
	stats := map[string]any{"pools": map[any]any{"p": map[any]any{"CallCrashes": uint64(1)}}}
	out := renderTop(reportOf(st, stats, time.Now()), 200, "d", nil)
	for _, want := range []string{"pool p: n/a calls (ok n/a, crashed n/a", "crashes 1+0", "       7  idle          n/a",
		"activator daemon: servers 1  starting n/a  objects n/a", "       8  running         3        2  srv               C"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
