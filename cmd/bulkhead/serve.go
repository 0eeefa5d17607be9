package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead/daemon"
	"github.com/spf13/cobra"
)

// newServeCmd is `bulkhead serve`: the daemon (package daemon).
func newServeCmd() *cobra.Command {
	var (
		config, socket, natsURL, listen string
		check                           bool
	)
	cmd := &cobra.Command{
		Use:   "serve --config FILE [--socket PATH] [--check]",
		Short: "Run the pools and class servers of a config for client processes in any language",
		Long: "serve runs the pools and class servers that a TOML config declares, for clients that\n" +
			"connect to its Unix socket (docs/CLIENT-PROTOCOL.md). SIGTERM drains it, SIGHUP reloads\n" +
			"the config. Logs are JSON on stderr. --check validates the config and exits.",
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if config == "" {
				return usagef("--config is required")
			}
			if natsURL != "" {
				if err := daemon.CheckNATSURL(natsURL); err != nil {
					return usagef("--nats: %v", err)
				}
			}
			if listen != "" {
				if err := checkListen(listen); err != nil {
					return usagef("%v", err)
				}
			}
			if err := setSelf(); err != nil {
				return err
			}
			cfg, err := daemon.Load(config)
			if err != nil {
				return err
			}
			if natsURL != "" {
				cfg.NATS.URL = natsURL
			}
			if check {
				if cfg.NATS.URL != "" {
					if _, err := natsOptions(cfg); err != nil {
						return err
					}
				}
				fmt.Fprintf(c.OutOrStdout(), "%s: ok (%d pools, %d class servers)\n", config, len(cfg.Pools), len(cfg.Activator.Servers))
				return nil
			}
			return serve(c.Context(), cfg, natsURL != "", socket, listen)
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the TOML config (examples/serve/bulkhead.toml)")
	cmd.Flags().StringVar(&socket, "socket", "", "the socket's path, overriding the config's")
	cmd.Flags().BoolVar(&check, "check", false, "validate the config and exit")
	cmd.Flags().StringVar(&listen, "listen", "", "serve /metrics (Prometheus), /status (a live page) and /status.json at this host:port, such as 127.0.0.1:9090")
	cmd.Flags().StringVar(&natsURL, "nats", "", "also serve the pools as a cluster node on this NATS server (overrides [nats] url)")
	return cmd
}

// serve runs the daemon until SIGTERM or SIGINT (ctx), reloading on SIGHUP.
// natsFlag says the NATS URL came from --nats rather than the config.
func serve(ctx context.Context, cfg *daemon.Config, natsFlag bool, socket, listen string) error {
	path := cfg.Path
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ln, err := daemon.Listen(cfg, socket)
	if err != nil {
		return err
	}
	s, err := daemon.New(ctx, cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	node, err := startNode(s, cfg, natsFlag, log)
	if err != nil {
		shutdown(s, cfg.DrainGrace, log)
		ln.Close()
		return err
	}
	if listen != "" {
		obs, err := serveObs(listen, daemonCollector{s}, daemonStatus{s}, os.Stderr)
		if err != nil {
			node.leave(0) // its joining goroutine too, before the server it serves goes
			ln.Close()
			s.Shutdown(context.Background())
			return err
		}
		defer obs.Close()
		log.Info("serving metrics and status", "listen", obs.Addr())
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	notify := daemon.NewNotifier(log)
	notify.Ready()
	log.Info("serving", "socket", ln.Addr().String(), "pools", len(cfg.Pools), "servers", len(cfg.Activator.Servers))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			notify.Reloading()
			if next := reload(ctx, s, path, log); next != nil {
				warnNATSChanged(cfg.NATS, next.NATS, natsFlag, log)
			}
			node.sync()
			notify.Ready()
		case err := <-served:
			notify.Stopping()
			node.leave(cfg.DrainGrace)
			shutdown(s, cfg.DrainGrace, log)
			return err
		case <-ctx.Done():
			notify.Stopping()
			log.Info("draining", "grace", cfg.DrainGrace.String())
			t0 := time.Now()
			node.leave(cfg.DrainGrace)
			shutdown(s, cfg.DrainGrace, log)
			err := <-served
			log.Info("drained", "took", time.Since(t0).Round(time.Millisecond).String())
			return err
		}
	}
}

// reload applies the config at path and returns it; a bad one is logged
// and ignored (nil).
func reload(ctx context.Context, s *daemon.Server, path string, log *slog.Logger) *daemon.Config {
	cfg, err := daemon.Load(path)
	if err == nil {
		err = s.Reload(ctx, cfg)
	}
	if err != nil {
		log.Error("reload refused; the running configuration stays", "path", path, "err", err)
		return nil
	}
	return cfg
}

// warnNATSChanged logs the [nats] keys a reload changed from those the
// node started with (was): a reload applies the pools, but the node's
// connection and subjects are made at start, so they wait for the next.
// With --nats (natsFlag) the flag's URL stays, whatever the file says.
func warnNATSChanged(was, now daemon.NATS, natsFlag bool, log *slog.Logger) {
	if natsFlag {
		now.URL = was.URL
	}
	if keys := was.ChangedKeys(now); len(keys) > 0 {
		log.Warn("reload: the changed [nats] keys take effect at the next start; the node keeps its old NATS settings until then", "keys", keys)
	}
}

func shutdown(s *daemon.Server, grace time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", "err", err)
	}
}

// setSelf sets BULKHEAD_SELF, which a config's commands may name, to this
// executable: its hidden subcommands serve the example's pool and class.
func setSelf() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return os.Setenv("BULKHEAD_SELF", exe)
}
