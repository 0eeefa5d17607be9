package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead/internal/testutil"
)

// The test binary doubles as the storm's class server: started as a worker,
// it runs the CLI (TestMain), and "storm" with BULKHEAD_STORM_SERVER set
// serves the classes, as the bulkhead binary does.

func stormTestOptions(t *testing.T, n int) stormOptions {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return stormOptions{Activations: n, Goroutines: 8, Calls: 2, Recycle: 7, SingleEvery: 10,
		serverCmd: exe, serverArgs: []string{"storm"}, serverEnv: []string{stormServeEnv + "=1"}}
}

// The short storm CI runs under -race: every path, servers stopping at zero
// with no linger, recycling servers answering late activations.
func TestStormShort(t *testing.T) {
	n := 400
	if testing.Short() {
		n = 150
	}
	res, err := runStorm(context.Background(), stormTestOptions(t, n))
	if err != nil {
		t.Fatal(err)
	}
	if res.Failures != 0 || res.Disconnected != 0 {
		t.Fatalf("storm: %+v", res)
	}
	if res.Activations < uint64(n)*3/4 || res.Launches < 2 || res.Calls == 0 {
		t.Fatalf("storm did less than asked: %+v", res)
	}
	var b bytes.Buffer
	if err := res.print(&b, true); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"activations", "calls", "failures", "disconnected", "launches", "stopping_retries"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b.String())
		}
	}
}

func TestStormFlagValidation(t *testing.T) {
	for _, args := range [][]string{
		{"--activations", "0"},
		{"--goroutines", "100000"},
		{"--calls", "-1"},
		{"--linger", "-1s"},
	} {
		cmd := newStormCmd()
		cmd.SetArgs(args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.Execute()
		var u badUsage
		if !errors.As(err, &u) || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: err = %v, want a usage error naming the flag", args, err)
		}
	}
}

// The storm from client processes through a daemon: the lifetime races
// hold across the client protocol, with references owned by connections
// and clients that go away holding them.
func TestStormThroughDaemon(t *testing.T) {
	t.Setenv(testutil.HelperEnv, "cli") // the client processes are this test binary, as the CLI
	o := stormTestOptions(t, 400)
	o.Clients = 4
	res, err := runStorm(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failures != 0 || res.Disconnected != 0 {
		t.Fatalf("storm: %+v", res)
	}
	if res.Activations < 300 || res.Launches < 2 || res.Calls == 0 {
		t.Fatalf("storm did less than asked: %+v", res)
	}
}

// The storm across three cluster nodes on an embedded NATS server: the
// lifetime races hold over NATS, objects pinned to the node that made
// them, sessions per client on each node, clients that go away holding
// references. BULKHEAD_STORM_NODES_ACTIVATIONS makes it longer (CI runs
// 10000 through the CLI).
func TestStormAcrossNodes(t *testing.T) {
	n := 300
	if v := os.Getenv("BULKHEAD_STORM_NODES_ACTIVATIONS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("BULKHEAD_STORM_NODES_ACTIVATIONS=%q: want a positive count", v)
		}
	}
	o := stormTestOptions(t, n)
	o.Nodes = 3
	res, err := runStorm(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failures != 0 || res.Disconnected != 0 {
		t.Fatalf("storm: %+v", res)
	}
	if res.Activations != uint64(n) || res.Launches < 3 || res.Calls == 0 {
		t.Fatalf("storm did less than asked: %+v", res)
	}
}
