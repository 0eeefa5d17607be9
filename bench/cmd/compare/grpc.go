package main

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The gRPC service is registered by hand (no protoc): bench.Bench with unary
// methods Null and Echo on google.protobuf.BytesValue, using gRPC's default
// protobuf codec, as a real gRPC service would.
const (
	grpcNullMethod = "/bench.Bench/Null"
	grpcEchoMethod = "/bench.Bench/Echo"
)

type benchGRPC struct{}

var benchServiceDesc = grpc.ServiceDesc{
	ServiceName: "bench.Bench",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Null", Handler: grpcUnary(grpcNullMethod, func(*wrapperspb.BytesValue) *wrapperspb.BytesValue {
			return &wrapperspb.BytesValue{}
		})},
		{MethodName: "Echo", Handler: grpcUnary(grpcEchoMethod, func(in *wrapperspb.BytesValue) *wrapperspb.BytesValue {
			return in
		})},
	},
	Metadata: "bench.proto",
}

func grpcUnary(full string, fn func(*wrapperspb.BytesValue) *wrapperspb.BytesValue) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.BytesValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		if ic == nil {
			return fn(in), nil
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: full}
		return ic(ctx, in, info, func(_ context.Context, req any) (any, error) {
			return fn(req.(*wrapperspb.BytesValue)), nil
		})
	}
}

// grpcNull makes one null call on conn.
func grpcNull(ctx context.Context, conn grpc.ClientConnInterface) error {
	return conn.Invoke(ctx, grpcNullMethod, &wrapperspb.BytesValue{}, new(wrapperspb.BytesValue))
}

// grpcDirect is plain gRPC over a Unix socket to a child process.
type grpcDirect struct {
	cfg      *config
	dir      string
	children []*goChild
	conns    []*grpc.ClientConn
}

func (g *grpcDirect) Name() string  { return "grpc" }
func (g *grpcDirect) Label() string { return "gRPC over Unix socket" }

func (g *grpcDirect) Setup(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "bench-grpc-")
	if err != nil {
		return err
	}
	g.dir = dir
	for i := range g.cfg.servers {
		lf, path, err := listenUnixFile(dir, "s"+strconv.Itoa(i)+".sock")
		if err != nil {
			return err
		}
		c, err := startGoChild("grpc", []*os.File{lf})
		lf.Close()
		if err != nil {
			return err
		}
		g.children = append(g.children, c)
		conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		g.conns = append(g.conns, conn)
	}
	return nil
}

func (g *grpcDirect) Close() error {
	var errs []error
	for _, c := range g.conns {
		errs = append(errs, c.Close())
	}
	for _, c := range g.children {
		errs = append(errs, c.stop())
	}
	g.conns, g.children = nil, nil
	if g.dir != "" {
		errs = append(errs, os.RemoveAll(g.dir))
	}
	return errors.Join(errs...)
}

func (g *grpcDirect) Latency(ctx context.Context, d time.Duration) (Sample, error) {
	c := g.conns[0]
	return measureLatency(ctx, d, pidsOf(g.children[:1]), func() error { return grpcNull(ctx, c) })
}

func (g *grpcDirect) Throughput(ctx context.Context, d time.Duration) (Sample, error) {
	s := g.cfg.servers
	return measureParallel(ctx, d, g.cfg.callers, s, false, pidsOf(g.children), func(i int) error {
		return grpcNull(ctx, g.conns[i%s])
	})
}

func grpcChild() error {
	watchLifeline()
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	s.RegisterService(&benchServiceDesc, benchGRPC{})
	return s.Serve(l)
}
