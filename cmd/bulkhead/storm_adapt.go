package main

import (
	"context"
	"fmt"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/client"
)

// The storm's workload runs on these, so that the same paths run against
// an activator in this process and through the daemon from client
// processes (storm --clients).

type stormSession interface {
	CreateInstance(ctx context.Context, class string, args ...any) (stormObject, error)
	GetClassObject(ctx context.Context, class string) (stormClass, error)
	Register(ctx context.Context, name string, o stormObject, keep bool) error
	Lookup(ctx context.Context, name string) (stormObject, error)
	Revoke(ctx context.Context, name string) error
	Close() error
}

type stormObject interface {
	bulkhead.Caller
	Clone(ctx context.Context) (stormObject, error)
	Release() error
	Name() string // for a failure's message
}

type stormClass interface {
	CreateInstance(ctx context.Context, args ...any) (stormObject, error)
	LockServer(ctx context.Context, lock bool) error
	Release() error
}

// inProcess opens sessions of act.
func inProcess(act *activation.Activator) func() (stormSession, error) {
	return func() (stormSession, error) {
		s, err := act.NewSession(activation.SessionConfig{})
		return actSession{s}, err
	}
}

type actSession struct{ s *activation.Session }
type actObject struct{ *activation.Object }
type actClass struct{ co *activation.ClassObject }

func (s actSession) CreateInstance(ctx context.Context, class string, args ...any) (stormObject, error) {
	o, err := s.s.CreateInstance(ctx, class, args...)
	return actObject{o}, err
}

func (s actSession) GetClassObject(ctx context.Context, class string) (stormClass, error) {
	co, err := s.s.GetClassObject(ctx, class)
	return actClass{co}, err
}

func (s actSession) Register(_ context.Context, name string, o stormObject, keep bool) error {
	return s.s.Register(name, o.(actObject).Object, keep)
}

func (s actSession) Lookup(_ context.Context, name string) (stormObject, error) {
	o, err := s.s.Lookup(name)
	return actObject{o}, err
}

func (s actSession) Revoke(_ context.Context, name string) error { return s.s.Revoke(name) }
func (s actSession) Close() error                                { return s.s.Close() }

func (o actObject) Clone(context.Context) (stormObject, error) {
	c, err := o.Object.Clone()
	return actObject{c}, err
}

func (o actObject) Name() string { return fmt.Sprintf("%d of %s", o.ID(), o.Class()) }

func (c actClass) CreateInstance(ctx context.Context, args ...any) (stormObject, error) {
	o, err := c.co.CreateInstance(ctx, args...)
	return actObject{o}, err
}

func (c actClass) LockServer(_ context.Context, lock bool) error { return c.co.LockServer(lock) }
func (c actClass) Release() error                                { return c.co.Release() }

// throughDaemon opens connections to the daemon at socket.
func throughDaemon(ctx context.Context, socket string) func() (stormSession, error) {
	return func() (stormSession, error) {
		c, err := client.Dial(ctx, socket, client.Options{Name: "storm"})
		return cliSession{c}, err
	}
}

type cliSession struct{ c *client.Client }
type cliObject struct{ *client.Object }
type cliClass struct{ co *client.ClassObject }

func (s cliSession) CreateInstance(ctx context.Context, class string, args ...any) (stormObject, error) {
	o, err := s.c.CreateInstance(ctx, class, args...)
	return cliObject{o}, err
}

func (s cliSession) GetClassObject(ctx context.Context, class string) (stormClass, error) {
	co, err := s.c.GetClassObject(ctx, class)
	return cliClass{co}, err
}

func (s cliSession) Register(ctx context.Context, name string, o stormObject, keep bool) error {
	return s.c.Register(ctx, name, o.(cliObject).Object, keep)
}

func (s cliSession) Lookup(ctx context.Context, name string) (stormObject, error) {
	o, err := s.c.Lookup(ctx, name)
	return cliObject{o}, err
}

func (s cliSession) Revoke(ctx context.Context, name string) error { return s.c.Revoke(ctx, name) }
func (s cliSession) Close() error                                  { return s.c.Close() }

func (o cliObject) Clone(ctx context.Context) (stormObject, error) {
	c, err := o.Object.Clone(ctx)
	return cliObject{c}, err
}

func (o cliObject) Name() string { return fmt.Sprintf("of %s in server %d", o.Class(), o.PID()) }

func (c cliClass) CreateInstance(ctx context.Context, args ...any) (stormObject, error) {
	o, err := c.co.CreateInstance(ctx, args...)
	return cliObject{o}, err
}

func (c cliClass) LockServer(ctx context.Context, lock bool) error { return c.co.LockServer(ctx, lock) }
func (c cliClass) Release() error                                  { return c.co.Release() }
