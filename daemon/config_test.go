package daemon

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkhead-go/bulkhead"
)

// Every bulkhead.Config field has a key in a pool's table.
func TestEveryConfigFieldHasAKey(t *testing.T) {
	pf := reflect.TypeOf(PoolFile{})
	ct := reflect.TypeOf(bulkhead.Config{})
	for i := range ct.NumField() {
		f := ct.Field(i)
		if f.Name == "Logger" {
			continue // the daemon's own JSON log
		}
		if f.Name == "Sandbox" {
			for j := range f.Type.NumField() {
				name := f.Type.Field(j).Name
				if camel(snake(name)) != name {
					t.Errorf("bulkhead.Sandbox.%s has no key: %s reads back as %s", name, snake(name), camel(snake(name)))
				}
			}
		}
		if _, ok := pf.FieldByName(f.Name); !ok {
			t.Errorf("bulkhead.Config.%s has no key in [[pool]]", f.Name)
		}
	}
}

// A bad configuration is refused with its file, line and key.
func TestConfigErrors(t *testing.T) {
	exe, _ := os.Executable()
	base := "socket = \"/tmp/x.sock\"\n[[pool]]\nname = \"p\"\ncommand = \"" + exe + "\"\n"
	tests := []struct {
		name, text string
		want       []string // in the error, each
	}{
		{"unknown key", base + "workerz = 2\n", []string{"c.toml:5", "pool.workerz", "unknown key"}},
		{"unknown table", base + "[poool]\nx = 1\n", []string{"c.toml:6", "poool.x", "unknown key"}},
		{"wrong type", base + "workers = \"two\"\n", []string{"c.toml:5", "workers", "incompatible types"}},
		{"bad duration", base + "term_grace = \"fast\"\n", []string{"c.toml:5", "term_grace"}},
		{"out of range", base + "workers = -3\n", []string{"c.toml:5", "pool.workers", "Workers"}},
		{"bad transport", base + "transport = \"pigeon\"\n", []string{"c.toml:5", "pool.transport", "pigeon"}},
		{"bad signal", base + "dump_signal = \"SIGFOO\"\n", []string{"c.toml:5", "pool.dump_signal"}},
		{"nats cert without key", base + "[nats]\nurl = \"nats://127.0.0.1:4222\"\ntls_cert = \"c.pem\"\n", []string{"c.toml:7", "nats.tls_cert", "go together"}},
		{"nats two auths", base + "[nats]\ncreds = \"a.creds\"\nnkey_seed = \"s.nk\"\n", []string{"c.toml:6", "nats.creds", "use one"}},
		{"nats unknown key", base + "[nats]\nurll = \"x\"\n", []string{"c.toml:6", "nats.urll", "unknown key"}},
		{"second pool's bad value", base + "[[pool]]\nname = \"q\"\ncommand = \"" + exe + "\"\nspares = -1\n",
			[]string{"c.toml:8", "pool.spares"}},
		{"no command", "socket = \"/x\"\n[[pool]]\nname = \"p\"\n", []string{"c.toml", "Command is required"}},
		{"duplicate pool", base + "[[pool]]\nname = \"p\"\ncommand = \"" + exe + "\"\n", []string{"c.toml:6", "declared twice"}},
		{"open socket mode", "socket_mode = \"0666\"\n" + base[strings.Index(base, "[[pool]]"):], []string{"c.toml:1", "socket_mode"}},
		{"syntax", base + "workers = = 2\n", []string{"c.toml:5"}},
		{"nothing to serve", "socket = \"/x\"\n", []string{"nothing to serve"}},
		{"unknown sandbox key", base + "[pool.sandbox]\nmemory_maxx = 5\n", []string{"c.toml:6", "pool.sandbox.memory_maxx", "unknown key"}},
		{"bad sandbox value", base + "[pool.sandbox]\npids_max = \"many\"\n", []string{"c.toml:6", "pool.sandbox.pids_max"}},
		{"fork server in a sandbox", base + "fork_server = true\n[pool.sandbox]\ncgroup = true\n",
			[]string{"c.toml:5", "pool.fork_server", "Cgroup", "would not be in that sandbox"}},
		{"bad instancing", base + "[[server]]\ncommand = \"" + exe + "\"\n[[server.class]]\nname = \"C\"\ninstancing = \"often\"\n",
			[]string{"c.toml:9", "instancing", "often"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.text))
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("%v is not a *ConfigError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// The shipped example is valid.
func TestExampleConfig(t *testing.T) {
	exe, _ := os.Executable()
	t.Setenv("BULKHEAD_SELF", exe)
	cfg, err := Load("../examples/serve/bulkhead.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pools) != 1 || cfg.Pools[0].Name != "demo" || len(cfg.Activator.Servers) != 1 {
		t.Fatalf("%+v", cfg)
	}
}

// snake is a Go field name in snake_case, as the config writes it.
func snake(name string) string {
	var b strings.Builder
	up := func(i int) bool { return i >= 0 && i < len(name) && name[i] >= 'A' && name[i] <= 'Z' }
	for i := range len(name) {
		// A word starts at an upper-case letter after a lower-case one,
		// or before a lower-case one after upper-case ones (CPUMax).
		if i > 0 && up(i) && (!up(i-1) || (i+1 < len(name) && !up(i+1) && name[i+1] != '2')) {
			b.WriteByte('_')
		}
		b.WriteByte(name[i])
	}
	return strings.ToLower(b.String())
}
