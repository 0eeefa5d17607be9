package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/client"
	"github.com/spf13/cobra"
)

// objCall is one call of `bulkhead call --class`: a method and its
// arguments.
type objCall struct {
	method string
	args   []any
}

// objectCmd is `bulkhead call --class`: its arguments checked, then run.
func objectCmd(c *cobra.Command, to target, timeout time.Duration, class, ctor string, args []string) error {
	var ctorArgs []any
	if ctor != "" {
		v, err := callArg(ctor, c.InOrStdin())
		arr, ok := v.([]any)
		if err != nil || !ok {
			return usagef("--new %q: want a JSON array of the constructor's arguments", ctor)
		}
		ctorArgs = arr
	}
	var calls []objCall
	for len(args) > 0 {
		n := 0
		for n < len(args) && args[n] != "," {
			n++
		}
		if n == 0 {
			return usagef("want a METHOD before and after each \",\"")
		}
		vals, err := callArgs(args[1:n], c.InOrStdin())
		if err != nil {
			return err
		}
		calls = append(calls, objCall{args[0], vals})
		if args = args[n:]; len(args) > 0 {
			if args = args[1:]; len(args) == 0 {
				return usagef("want a METHOD after the last \",\"")
			}
		}
	}
	err := runObject(c.Context(), c.OutOrStdout(), to, timeout, class, ctorArgs, calls)
	if errors.Is(err, client.ErrPermission) {
		return hinted{err, fmt.Sprintf("class %q does not exist, or your uid %d is not in its allow_uids, allow_gids or allow_users;\n"+
			"  %s lists the classes you may use", class, os.Getuid(), to.where())}
	}
	return err
}

// runObject creates an object of class, makes calls on it in order,
// printing each result, and releases it. The first failure, the
// creation's included, is printed and ends the run.
func runObject(ctx context.Context, out io.Writer, to target, timeout time.Duration, class string, ctor []any, calls []objCall) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := to.dial(ctx, "")
	if err != nil {
		return err
	}
	defer c.close()
	o, err := c.create(ctx, class, ctor...)
	if err != nil {
		return printReply(out, bulkhead.Reply{}, err)
	}
	defer o.Release()
	for _, call := range calls {
		r, err := o.Call(ctx, call.method, call.args...)
		if err := printReply(out, r, err); err != nil {
			return err
		}
	}
	return nil
}
