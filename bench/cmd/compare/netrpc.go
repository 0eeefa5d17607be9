package main

import (
	"context"
	"errors"
	"net"
	"net/rpc"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// netRPC is the standard library's net/rpc (gob) over a Unix socket to a
// child process, one multiplexed connection per child.
type netRPC struct {
	cfg      *config
	dir      string
	children []*goChild
	clients  []*rpc.Client
}

func (n *netRPC) Name() string  { return "net_rpc" }
func (n *netRPC) Label() string { return "net/rpc over Unix socket" }

// BenchRPC is the net/rpc service, shared with the go-plugin net/rpc variant.
type BenchRPC struct{}

// Null does nothing.
func (BenchRPC) Null(args []byte, reply *[]byte) error { *reply = nil; return nil }

// Echo returns its argument.
func (BenchRPC) Echo(args []byte, reply *[]byte) error { *reply = args; return nil }

func (n *netRPC) Setup(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "bench-netrpc-")
	if err != nil {
		return err
	}
	n.dir = dir
	for i := range n.cfg.servers {
		lf, path, err := listenUnixFile(dir, "s"+strconv.Itoa(i)+".sock")
		if err != nil {
			return err
		}
		c, err := startGoChild("netrpc", []*os.File{lf})
		lf.Close()
		if err != nil {
			return err
		}
		n.children = append(n.children, c)
		cl, err := rpc.Dial("unix", path)
		if err != nil {
			return err
		}
		n.clients = append(n.clients, cl)
	}
	return nil
}

func (n *netRPC) Close() error {
	var errs []error
	for _, c := range n.clients {
		c.Close()
	}
	for _, c := range n.children {
		errs = append(errs, c.stop())
	}
	n.clients, n.children = nil, nil
	if n.dir != "" {
		errs = append(errs, os.RemoveAll(n.dir))
	}
	return errors.Join(errs...)
}

func (n *netRPC) Latency(ctx context.Context, d time.Duration) (Sample, error) {
	c := n.clients[0]
	return measureLatency(ctx, d, pidsOf(n.children[:1]), func() error {
		var reply []byte
		return c.Call("Bench.Null", []byte(nil), &reply)
	})
}

func (n *netRPC) Throughput(ctx context.Context, d time.Duration) (Sample, error) {
	s := n.cfg.servers
	return measureParallel(ctx, d, n.cfg.callers, s, false, pidsOf(n.children), func(i int) error {
		var reply []byte
		return n.clients[i%s].Call("Bench.Null", []byte(nil), &reply)
	})
}

func netRPCChild() error {
	watchLifeline()
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return err
	}
	srv := rpc.NewServer()
	if err := srv.RegisterName("Bench", BenchRPC{}); err != nil {
		return err
	}
	srv.Accept(l)
	return nil
}

// listenUnixFile creates a listening Unix socket at dir/name and returns it
// as a file to hand to a child. The parent holds no listener afterwards, and
// clients may dial the path at once: connections queue until the child
// accepts them, so no readiness wait is needed.
func listenUnixFile(dir, name string) (*os.File, string, error) {
	path := filepath.Join(dir, name)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, "", err
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	l.Close()
	if err != nil {
		return nil, "", err
	}
	return f, path, nil
}
