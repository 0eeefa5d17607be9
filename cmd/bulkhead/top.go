package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bulkhead-go/bulkhead/status"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"
)

// topConfig is bulkhead top's validated command line.
type topConfig struct {
	url      string // the status page's URL as shown, or
	report   string // the JSON report's URL that top reads, or
	socket   string // a bulkhead serve daemon's socket
	interval time.Duration
	once     bool
}

func newTopCmd() *cobra.Command {
	cfg := topConfig{}
	cmd := &cobra.Command{
		Use:   "top URL | top --socket PATH",
		Short: "Watch a status endpoint live: pools, workers, their calls and the latest crashes",
		Long: `top polls a status endpoint (package status: bulkhead demo --listen, or a service that
mounts status.New) and shows every pool and worker, like top: state, calls served, the call it
runs and for how long, CPU time, memory, age; then the latest crashes, and the class servers
(state, locks, objects, classes). URL is the page or its JSON report
(http://127.0.0.1:9090/status); a bare host:port means http://host:port/status. With --socket it
reads a bulkhead serve daemon's status over its socket instead (pools, calls, workers, class
servers; the daemon reports no CPU, memory or crash log per worker: those show n/a). Keys: q
quits, p pauses.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 && cfg.socket == "" || len(args) != 0 && cfg.socket != "" {
				return usagef("top takes one URL, or --socket and no URL; got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if cfg.socket == "" {
				page, rep, err := reportURL(args[0])
				if err != nil {
					return badUsage{err}
				}
				cfg.url, cfg.report = page, rep
			}
			if cfg.interval < 100*time.Millisecond || cfg.interval > time.Minute {
				return usagef("--interval %v: want 100ms to 1m", cfg.interval)
			}
			return runTop(c.Context(), cfg, c.InOrStdin(), c.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.interval, "interval", time.Second, "how often to poll, 100ms to 1m")
	f.BoolVar(&cfg.once, "once", false, "print one screen and exit, for scripts")
	f.StringVar(&cfg.socket, "socket", "", "read a bulkhead serve daemon's status over this Unix socket instead of a URL")
	return cmd
}

// reportURL reads what the user gave: a page's URL, a report's URL, or a
// bare host:port (http://host:port/status). It returns the URL to show and
// the JSON report's URL to read (the page's URL with "?json").
func reportURL(s string) (page, report string, err error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return "", "", fmt.Errorf("URL %q: want http://host:port/status or host:port", strings.TrimPrefix(s, "http://"))
	}
	if u.Path == "" {
		u.Path = "/status"
	}
	page = u.String()
	if !strings.HasSuffix(u.Path, ".json") {
		if u.RawQuery == "" {
			u.RawQuery = "json"
		} else {
			u.RawQuery += "&json"
		}
	}
	return page, u.String(), nil
}

// fetchReport reads the report, within the poll interval.
func fetchReport(ctx context.Context, u string, timeout time.Duration) (status.Report, error) {
	var rep status.Report
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return rep, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("%s: %s", u, resp.Status)
	}
	// A report is small; a server that sends more is not a status endpoint.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&rep); err != nil {
		return rep, fmt.Errorf("%s: not a status report: %w", u, err)
	}
	return rep, nil
}

func runTop(ctx context.Context, cfg topConfig, in io.Reader, out io.Writer) error {
	if cfg.once {
		rep, err := topSource(cfg)(ctx, 10*time.Second)
		if err != nil {
			return err
		}
		_, err = io.WriteString(out, renderTop(rep, 120, cfg.where(), nil))
		return err
	}
	m := &topModel{cfg: cfg, ctx: ctx, width: 120, read: topSource(cfg)}
	_, err := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(in), tea.WithOutput(out), tea.WithAltScreen()).Run()
	if err == tea.ErrProgramKilled && ctx.Err() != nil {
		return nil
	}
	return err
}

// topModel is the live view (bubbletea's Elm architecture): a report
// arrives (reportMsg), is drawn, and the next poll is due an interval later.
type topModel struct {
	cfg    topConfig
	ctx    context.Context
	rep    topView
	err    error
	width  int
	paused bool
	read   func(context.Context, time.Duration) (topView, error) // topSource
}

// reportMsg is one poll's outcome.
type reportMsg struct {
	rep topView
	err error
}

// tickMsg says the next poll is due.
type tickMsg struct{}

func (m *topModel) poll() tea.Msg {
	rep, err := m.read(m.ctx, m.cfg.interval)
	return reportMsg{rep, err}
}

func (m *topModel) Init() tea.Cmd { return m.poll }

func (m *topModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "ctrl+c", "esc":
			return m, tea.Quit
		case "p", " ":
			m.paused = !m.paused
			if !m.paused {
				return m, m.poll
			}
		}
	case tea.WindowSizeMsg:
		m.width = msg.Width
	case reportMsg:
		if msg.err == nil {
			m.rep = msg.rep
		}
		m.err = msg.err
		return m, tea.Tick(m.cfg.interval, func(time.Time) tea.Msg { return tickMsg{} })
	case tickMsg:
		if !m.paused {
			return m, m.poll
		}
	}
	return m, nil
}

func (m *topModel) View() string {
	s := renderTop(m.rep, m.width, m.cfg.where(), m.err)
	if m.paused {
		s += "\n[paused: p resumes]"
	}
	return s + "\nq quits, p pauses\n"
}
