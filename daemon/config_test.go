package daemon

import (
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

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
		{"fork server in a sandbox", base + "fork_server = true\n[pool.sandbox]\nisolate_net = true\n",
			[]string{"c.toml:5", "pool.fork_server", "namespaces", "would not get that protection"}},
		{"sandbox refused by Validate", base + "[pool.sandbox]\nmemory_max = -1\n", []string{"c.toml:6", "pool.sandbox.memory_max", "MemoryMax"}},
		{"second pool's sandbox", base + "[[pool]]\nname = \"q\"\ncommand = \"" + exe + "\"\n[pool.sandbox]\npids_max = -1\n",
			[]string{"c.toml:9", "pool.sandbox.pids_max"}},
		{"two sandbox errors", base + "[pool.sandbox]\ncpu_max = 0.001\nseccomp = \"bogus\"\n",
			[]string{"c.toml:6: pool.sandbox.cpu_max", "c.toml:7: pool.sandbox.seccomp: pool \"p\": bulkhead: Config.Sandbox: Seccomp"}},
		{"bad size", base + "[pool.sandbox]\nmemory_max = \"64 parsecs\"\n", []string{"c.toml:6", "pool.sandbox.memory_max", "64MiB"}},
		{"server sandbox refused", base + "[[server]]\ncommand = \"" + exe + "\"\n[server.sandbox]\nmemory_max = \"1K\"\n[[server.class]]\nname = \"C\"\n",
			[]string{"c.toml:8", "server.sandbox.memory_max", "MemoryMax"}},
		{"server without a class", base + "[[server]]\nname = \"s\"\ncommand = \"" + exe + "\"\n", []string{"c.toml:5", "server"}},
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

// A sandbox's memory_max is bytes, as an integer or with a unit.
func TestConfigMemoryMaxUnits(t *testing.T) {
	exe, _ := os.Executable()
	for _, tt := range []struct {
		value string
		want  int64
	}{{"67108864", 64 << 20}, {`"64MiB"`, 64 << 20}, {`"64M"`, 64 << 20}, {`"1GiB"`, 1 << 30}, {`"65536 KiB"`, 64 << 20}, {`"8388608"`, 8 << 20}} {
		text := "socket = \"/tmp/x.sock\"\n[[pool]]\nname = \"p\"\ncommand = \"" + exe + "\"\n[pool.sandbox]\nmemory_max = " + tt.value + "\n"
		cfg, err := Parse("c.toml", []byte(text))
		if err != nil {
			t.Errorf("memory_max = %s: %v", tt.value, err)
			continue
		}
		if got := cfg.Pools[0].Config.Sandbox.MemoryMax; got != tt.want {
			t.Errorf("memory_max = %s: %d bytes, want %d", tt.value, got, tt.want)
		}
	}
}

// The shipped example documents every key (README says so), but for a
// pool's bulkhead.Config fields (go doc lists them): set, or commented out
// as "# key = ...".
func TestExampleDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../examples/serve/bulkhead.toml")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(reflect.Type)
	walk = func(st reflect.Type) {
		for i := range st.NumField() {
			f := st.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			if st == reflect.TypeOf(PoolFile{}) && f.Name != "Name" && f.Name != "Limits" {
				continue
			}
			keys = append(keys, f.Tag.Get("toml"))
			switch ft := f.Type; {
			case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)):
				walk(ft)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem())
			}
		}
	}
	walk(reflect.TypeOf(File{}))
	sb := reflect.TypeOf(bulkhead.Sandbox{})
	for i := range sb.NumField() {
		keys = append(keys, snake(sb.Field(i).Name))
	}
	for _, k := range keys {
		if !regexp.MustCompile(`(?m)^\s*(# )?` + regexp.QuoteMeta(k) + ` +=`).Match(b) {
			if !regexp.MustCompile(`(?m)^\s*(# )?\[\[?(pool\.|server\.)?` + regexp.QuoteMeta(k) + `\]`).Match(b) {
				t.Errorf("examples/serve/bulkhead.toml does not document %s", k)
			}
		}
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
