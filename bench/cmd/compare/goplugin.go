package main

import (
	"context"
	"fmt"
	"net/rpc"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// goPlugin is HashiCorp go-plugin, the usual way Go programs run plugins in
// child processes, over either of its protocols: gRPC (the same hand-written
// bench.Bench service as the plain gRPC contender) or net/rpc (over yamux).
type goPlugin struct {
	cfg     *config
	proto   plugin.Protocol
	clients []*plugin.Client
	cmds    []*exec.Cmd
	nullers []nuller
}

type nuller interface {
	Null(ctx context.Context) error
}

var pluginHandshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "BULKHEAD_BENCH_PLUGIN",
	MagicCookieValue: "5f0c6e2a-bench",
}

type netrpcPlugin struct{}

func (netrpcPlugin) Server(*plugin.MuxBroker) (any, error) { return BenchRPC{}, nil }
func (netrpcPlugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (any, error) {
	return netrpcNuller{c}, nil
}

type netrpcNuller struct{ c *rpc.Client }

func (n netrpcNuller) Null(context.Context) error {
	var reply []byte
	return n.c.Call("Plugin.Null", []byte(nil), &reply)
}

type grpcPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&benchServiceDesc, benchGRPC{})
	return nil
}

func (grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return grpcNuller{c}, nil
}

type grpcNuller struct{ c *grpc.ClientConn }

func (g grpcNuller) Null(ctx context.Context) error { return grpcNull(ctx, g.c) }

func (g *goPlugin) kind() string {
	if g.proto == plugin.ProtocolGRPC {
		return "grpc"
	}
	return "netrpc"
}

func (g *goPlugin) Name() string { return "goplugin_" + g.kind() }
func (g *goPlugin) Label() string {
	return "go-plugin " + map[string]string{"grpc": "gRPC", "netrpc": "net/rpc"}[g.kind()]
}

func pluginSet(kind string) plugin.PluginSet {
	if kind == "grpc" {
		return plugin.PluginSet{"bench": grpcPlugin{}}
	}
	return plugin.PluginSet{"bench": netrpcPlugin{}}
}

// start launches one plugin process and dispenses its client.
func (g *goPlugin) start() (*plugin.Client, *exec.Cmd, nuller, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = []string{"BENCH_CHILD=goplugin-" + g.kind()} // go-plugin appends os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cl := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginHandshake,
		Plugins:          pluginSet(g.kind()),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{g.proto},
		Logger:           hclog.NewNullLogger(),
		SyncStderr:       os.Stderr,
	})
	rc, err := cl.Client()
	if err != nil {
		cl.Kill()
		return nil, nil, nil, err
	}
	raw, err := rc.Dispense("bench")
	if err != nil {
		cl.Kill()
		return nil, nil, nil, err
	}
	n, ok := raw.(nuller)
	if !ok {
		cl.Kill()
		return nil, nil, nil, fmt.Errorf("go-plugin dispensed %T", raw)
	}
	return cl, cmd, n, nil
}

func (g *goPlugin) Setup(ctx context.Context) error {
	for range g.cfg.servers {
		cl, cmd, n, err := g.start()
		if err != nil {
			return err
		}
		g.clients = append(g.clients, cl)
		g.cmds = append(g.cmds, cmd)
		g.nullers = append(g.nullers, n)
	}
	return nil
}

func (g *goPlugin) Close() error {
	for _, cl := range g.clients {
		cl.Kill() // graceful, then forced after 2 s; returns once the process has exited
	}
	g.clients, g.cmds, g.nullers = nil, nil, nil
	return nil
}

func (g *goPlugin) pids(n int) func() []int {
	return func() []int {
		ps := make([]int, n)
		for i := range n {
			ps[i] = g.cmds[i].Process.Pid
		}
		return ps
	}
}

func (g *goPlugin) Latency(ctx context.Context, d time.Duration) (Sample, error) {
	n := g.nullers[0]
	return measureLatency(ctx, d, g.pids(1), func() error { return n.Null(ctx) })
}

func (g *goPlugin) Throughput(ctx context.Context, d time.Duration) (Sample, error) {
	s := g.cfg.servers
	return measureParallel(ctx, d, g.cfg.callers, s, false, g.pids(s), func(i int) error {
		return g.nullers[i%s].Null(ctx)
	})
}

// Extras measures go-plugin's start-up: from client.Client() (which starts
// the process and does the handshake) until the first call has completed.
func (g *goPlugin) Extras(ctx context.Context) (map[string]float64, error) {
	t0 := time.Now()
	cl, _, n, err := g.start()
	if err != nil {
		return nil, err
	}
	err = n.Null(ctx)
	t := time.Since(t0)
	cl.Kill()
	if err != nil {
		return nil, err
	}
	return map[string]float64{"startup_ms": float64(t) / 1e6}, nil
}

func goPluginChild(kind string) error {
	cfg := &plugin.ServeConfig{
		HandshakeConfig: pluginHandshake,
		Plugins:         pluginSet(kind),
		Logger:          hclog.NewNullLogger(),
	}
	if kind == "grpc" {
		cfg.GRPCServer = plugin.DefaultGRPCServer
	}
	plugin.Serve(cfg)
	return nil
}
