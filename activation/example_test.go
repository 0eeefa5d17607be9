package activation_test

import (
	"context"
	"fmt"
	"os"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// An activator starts a class server on the first activation, and each
// object keeps its own state in it. The server here is this test binary,
// run as the class server of activation_helper_test.go; a real one is a
// program written with package worker's classes, or in any language
// (docs/PROTOCOL.md section 10).
func Example() {
	exe, _ := os.Executable()
	a, err := activation.NewActivator(activation.ActivatorConfig{
		Servers: []activation.ServerConfig{{
			Process: bulkhead.Process{Command: exe, Env: testutil.HelperEnviron("classes", "ACT_CLASSES=Counter:free")},
			Classes: []activation.ClassConfig{{Name: "Counter"}},
		}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close(context.Background())

	ctx := context.Background()
	c1, err := a.CreateInstance(ctx, "Counter")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c1.Release()
	c2, _ := a.CreateInstance(ctx, "Counter")
	defer c2.Release()

	c1.Call(ctx, "add", 2)
	r1, _ := c1.Call(ctx, "add", 3)
	r2, _ := c2.Call(ctx, "add", 10)
	var n1, n2 int
	r1.Decode(&n1)
	r2.Decode(&n2)
	fmt.Println(n1, n2, c1.PID() == c2.PID())
	// Output: 5 10 true
}
