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
		// A duration given a number, which the toml package takes as nanoseconds, in every section.
		{"bare integer heartbeat", base + "[nats]\nheartbeat = 5\n", []string{"c.toml:6: nats.heartbeat: " + `a duration is a string such as "100ms"`, "5ns"}},
		{"bare integer max_deadline", "max_deadline = 60\n" + base, []string{"c.toml:1: max_deadline: a duration is a string"}},
		{"bare integer drain_grace", "drain_grace = 30\n" + base, []string{"c.toml:1: drain_grace: a duration is a string"}},
		{"bare integer start_timeout", base + "start_timeout = 10\n", []string{"c.toml:5: pool.start_timeout: a duration is a string"}},
		{"bare integer in the second pool", base + "[[pool]]\nname = \"q\"\ncommand = \"" + exe + "\"\nidle_timeout = 7\n",
			[]string{"c.toml:8: pool.idle_timeout: a duration is a string"}},
		{"bare integer cpu_time", base + "[pool.limits]\ncpu_time = 2\n", []string{"c.toml:6: pool.limits.cpu_time: a duration is a string"}},
		{"bare integer linger", base + "[activator]\nlinger = 2\n", []string{"c.toml:6: activator.linger: a duration is a string"}},
		{"bare integer server start_timeout", base + "[[server]]\ncommand = \"" + exe + "\"\nstart_timeout = 3\n[[server.class]]\nname = \"C\"\n",
			[]string{"c.toml:7: server.start_timeout: a duration is a string"}},
		{"bare float duration", base + "kill_grace = 1.5\n", []string{"c.toml:5", "kill_grace"}},
		{"negative max_deadline", "max_deadline = \"-1s\"\n" + base, []string{"c.toml:1: max_deadline: must not be negative"}},
		{"tiny max_deadline", "max_deadline = \"60ns\"\n" + base, []string{"c.toml:1: max_deadline", "at least 1ms"}},
		{"negative drain_grace", "drain_grace = \"-1s\"\n" + base, []string{"c.toml:1: drain_grace: must not be negative"}},
		{"nats heartbeat too fast", base + "[nats]\nheartbeat = \"1ns\"\n", []string{"c.toml:6: nats.heartbeat", "10ms"}},
		{"nats heartbeat too slow", base + "[nats]\nheartbeat = \"1h\"\n", []string{"c.toml:6: nats.heartbeat", "1m0s"}},
		{"nats prefix not a token", base + "[nats]\nprefix = \"a.b c\"\n", []string{"c.toml:6: nats.prefix", "subject token"}},
		{"nats node_id too long", base + "[nats]\nnode_id = \"" + strings.Repeat("n", 65) + "\"\n", []string{"c.toml:6: nats.node_id", "1 to 64"}},
		{"nats node_id with a wildcard", base + "[nats]\nnode_id = \"node*\"\n", []string{"c.toml:6: nats.node_id"}},
		{"nats version", base + "[nats]\nversion = \"1\"\n", []string{"c.toml:6: nats.version", "semantic version"}},
		{"nats url without its colon", base + "[nats]\nurl = \"nats//127.0.0.1:14222\"\n", []string{"c.toml:6: nats.url", "nats//127.0.0.1:14222", "nats://host:port"}},
		{"nats url with a bad scheme", base + "[nats]\nurl = \"http://127.0.0.1:4222\"\n", []string{"c.toml:6: nats.url", "not a NATS server URL"}},
		{"nats url with a bad port", base + "[nats]\nurl = \"nats://h:99999\"\n", []string{"c.toml:6: nats.url"}},
		{"nats url list with one bad", base + "[nats]\nurl = \"nats://a:4222, nats://b:x\"\n", []string{"c.toml:6: nats.url", "nats://b:x"}},
		{"nats url mixing websocket", base + "[nats]\nurl = \"ws://a:80,nats://b:4222\"\n", []string{"c.toml:6: nats.url", "mixes"}},
		{"nats url hides its password", base + "[nats]\nurl = \"nats://u:secret@h:4222/x\"\n", []string{"c.toml:6: nats.url", "u:xxxxx@h"}},
		{"nats creds missing", base + "[nats]\ncreds = \"/nonexistent.creds\"\n", []string{"c.toml:6: nats.creds", "/nonexistent.creds", "no such file"}},
		{"nats nkey_seed missing", base + "[nats]\nnkey_seed = \"/nonexistent.nk\"\n", []string{"c.toml:6: nats.nkey_seed", "no such file"}},
		{"nats tls_ca unreadable", base + "[nats]\ntls_ca = \"/\"\n", []string{"c.toml:6: nats.tls_ca", "is a directory"}},
		{"nats tls_ca not PEM", base + "[nats]\ntls_ca = \"" + exe + "\"\n", []string{"c.toml:6: nats.tls_ca", "no PEM certificate"}},
		{"nats tls_key missing", base + "[nats]\ntls_cert = \"" + exe + "\"\ntls_key = \"/nonexistent.key\"\n", []string{"c.toml:7: nats.tls_key", "no such file"}},
		{"nats tls pair not PEM", base + "[nats]\ntls_cert = \"" + exe + "\"\ntls_key = \"" + exe + "\"\n", []string{"c.toml:6: nats.tls_cert"}},
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

// What nats.Connect takes passes CheckNATSURL.
func TestCheckNATSURL(t *testing.T) {
	for _, good := range []string{"nats://127.0.0.1:4222", "127.0.0.1:4222", "localhost:4222", "nats://localhost", "tls://h:4443",
		"nats://a:4222, nats://b:4222,nats://c:4222", "nats://u:p@h:4222", "ws://h:8080", "wss://h:443,ws://g:80", "nats://[::1]:4222/"} {
		if err := CheckNATSURL(good); err != nil {
			t.Errorf("CheckNATSURL(%q): %v", good, err)
		}
	}
	for _, bad := range []string{"", " , ", "nats//h:4222", "http://h:4222", "nats://:4222", "nats://h:0", "nats://h:4222?x=1", "ws://a,nats://b", "notaurl", "nats://a:4222,notaurl"} {
		if err := CheckNATSURL(bad); err == nil {
			t.Errorf("CheckNATSURL(%q) accepted", bad)
		}
	}
}

// ChangedKeys names each changed [nats] key, and only those.
func TestNATSChangedKeys(t *testing.T) {
	base := NATS{URL: "nats://a:4222", Prefix: "bulkhead", Heartbeat: 100 * time.Millisecond}
	if got := base.ChangedKeys(base); got != nil {
		t.Errorf("unchanged: %q", got)
	}
	two := base
	two.Prefix, two.Heartbeat = "other", time.Second
	if got := base.ChangedKeys(two); !reflect.DeepEqual(got, []string{"nats.prefix", "nats.heartbeat"}) {
		t.Errorf("prefix and heartbeat changed: %q", got)
	}
	// Every field, one at a time.
	nt := reflect.TypeOf(NATS{})
	for i := range nt.NumField() {
		changed := base
		f := reflect.ValueOf(&changed).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Int64:
			f.SetInt(f.Int() + 1)
		default:
			t.Fatalf("field %s: kind %v not covered", nt.Field(i).Name, f.Kind())
		}
		want := []string{"nats." + nt.Field(i).Tag.Get("toml")}
		if got := base.ChangedKeys(changed); !reflect.DeepEqual(got, want) {
			t.Errorf("%s changed: %q, want %q", nt.Field(i).Name, got, want)
		}
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
