// Command compare measures, in one run, the cost of calling a helper process
// from Go in several ways, against the C socketpair ping-pong floor:
//
//	cd bench && go run ./cmd/compare [--json] [--quick] [--rounds N] [--duration D] [--only a,b] [--svg FILE]
//
// Contenders are interleaved round by round (A B C … A B C …, with the order
// rotated every round) so that drift on a shared machine falls on all of them
// alike, and every number reported is the median over rounds.
//
// Child processes are re-executions of this same binary, selected by the
// BENCH_CHILD environment variable.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// config is the run's configuration, from flags.
type config struct {
	rounds   int
	dur      time.Duration
	quick    bool
	json     bool
	only     map[string]bool // nil: every contender
	callers  int             // concurrent callers in the aggregate measurement
	servers  int             // server processes in the aggregate measurement
	echoSize int             // bytes each way in the echo measurement
	spawns   int             // process-start probes per program per round
	svg      string          // file to draw the run into ("": none)
	within   string          // an earlier report whose spreads this run is held to ("": none)
}

// bulkheadFactory and bulkheadChildMain are set by bulkhead.go, which is
// set by bulkhead.go's init.
var (
	bulkheadFactory   func(*config) []Contender
	bulkheadChildMain func() error
)

func main() {
	if kind := os.Getenv("BENCH_CHILD"); kind != "" {
		os.Exit(childMain(kind))
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	var full map[string]Spread // --within's, read before the run: a bad file is a bad flag
	if cfg.within != "" {
		if full, err = loadSpreads(cfg.within); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := run(ctx, cfg, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
	if full != nil {
		rep.Within = compareSpreads(cfg.within, full, rep.Spreads)
		for _, o := range rep.Within.Outside {
			fmt.Fprintf(os.Stderr, "compare: %s = %.3f, outside %s's spread %.3f–%.3f (far: %v)\n", o.Key, o.Value, cfg.within, o.Min, o.Max, o.Far)
		}
	}
	if cfg.svg != "" {
		if err := saveSVG(cfg.svg, rep); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			os.Exit(1)
		}
	}
	if cfg.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			os.Exit(1)
		}
		return
	}
	rep.writeTable(os.Stdout)
}

func childMain(kind string) int {
	var err error
	switch kind {
	case "hello":
		err = helloChild()
	case "rawgo":
		err = rawGoChild()
	case "netrpc":
		err = netRPCChild()
	case "grpc":
		err = grpcChild()
	case "goplugin-grpc":
		err = goPluginChild("grpc")
	case "goplugin-netrpc":
		err = goPluginChild("netrpc")
	case "bulkhead":
		if bulkheadChildMain == nil {
			err = errors.New("this binary was built without the bulkhead contender")
		} else {
			err = bulkheadChildMain()
		}
	default:
		err = fmt.Errorf("unknown child kind %q", kind)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench child %s: %v\n", kind, err)
		return 1
	}
	return 0
}

// contenderNames lists every contender in table order.
var contenderNames = []string{"c_floor", "c_shm_floor", "raw_go", "net_rpc", "grpc", "goplugin_grpc", "goplugin_netrpc", "bulkhead", "bulkhead_shm", "bulkhead_pipelined", "bulkhead_shm_pipelined", "bulkhead_activation"}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &config{callers: 16, servers: 2, echoSize: 1 << 20}
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object instead of a table")
	fs.BoolVar(&cfg.quick, "quick", false, "fewer rounds and shorter windows (under 60 s on 2 cores)")
	fs.IntVar(&cfg.rounds, "rounds", 7, "rounds of interleaved measurements (median reported); --quick: 5")
	fs.DurationVar(&cfg.dur, "duration", time.Second, "measured window of each measurement; --quick: 200ms")
	fs.StringVar(&cfg.svg, "svg", "", "also draw the run as an SVG picture into this file")
	fs.StringVar(&cfg.within, "within", "", "an earlier --json report (the full run): report this run's ratios outside its spreads")
	only := fs.String("only", "", "comma-separated contenders to run: "+strings.Join(contenderNames, ","))
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: compare [--json] [--quick] [--rounds N] [--duration D] [--only LIST] [--svg FILE] [--within FILE]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg.spawns = 30
	if cfg.quick {
		if !set["rounds"] {
			cfg.rounds = 5
		}
		if !set["duration"] {
			cfg.dur = 200 * time.Millisecond
		}
		cfg.spawns = 10
	}
	if cfg.rounds < 1 || cfg.rounds > 1000 {
		return nil, fmt.Errorf("--rounds must be between 1 and 1000, got %d", cfg.rounds)
	}
	if cfg.dur < 10*time.Millisecond || cfg.dur > time.Minute {
		return nil, fmt.Errorf("--duration must be between 10ms and 1m, got %v", cfg.dur)
	}
	if *only != "" {
		cfg.only = map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			n = strings.TrimSpace(n)
			known := false
			for _, k := range contenderNames {
				known = known || k == n
			}
			if !known {
				return nil, fmt.Errorf("--only: unknown contender %q (known: %s)", n, strings.Join(contenderNames, ","))
			}
			cfg.only[n] = true
		}
	}
	return cfg, nil
}

// saveSVG writes the picture of rep to path.
func saveSVG(path string, rep *Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--svg: %w", err)
	}
	if err := writeSVG(f, rep); err != nil {
		f.Close()
		return fmt.Errorf("--svg: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--svg: %w", err)
	}
	return nil
}
