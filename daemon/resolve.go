package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/user"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
)

// Config is a checked daemon configuration, ready to serve.
type Config struct {
	Path        string // the file it came from
	Socket      string
	SocketMode  uint32 // permission bits
	SocketGID   int    // the group that may connect (mode 0660); 0 or -1: none
	MaxDeadline time.Duration
	DrainGrace  time.Duration
	Limits      ConnLimits
	Pools       []Pool
	Activator   activation.ActivatorConfig
	ClassAllow  map[string]Access // by class name
	NATS        NATS              // [nats]: serve the pools as a cluster node too
}

// Pool is one configured pool.
type Pool struct {
	Name   string
	Config bulkhead.Config
	Access Access
}

// resolve checks f and fills in its defaults.
func (f *File) resolve(path string, data []byte) (*Config, error) {
	c := &Config{Path: path, Socket: f.Socket, MaxDeadline: f.MaxDeadline, DrainGrace: f.DrainGrace,
		Limits: f.Limits.withDefaults(), SocketGID: -1, ClassAllow: make(map[string]Access)}
	var errs []error
	bad := func(key string, nth int, err error) {
		errs = append(errs, &ConfigError{File: path, Line: keyLineN(data, toml.Key(splitKey(key)), nth), Key: key, Err: err})
	}
	c.socketAccess(f, bad)
	f.checkTimes(bad)
	c.NATS = f.NATS
	f.NATS.check(bad)
	c = c.withDefaults()
	seen := make(map[string]bool)
	for i := range f.Pools {
		pf := &f.Pools[i]
		switch {
		case pf.Name == "":
			bad("pool.name", i, fmt.Errorf("pool %d has no name", i+1))
		case seen[pf.Name]:
			bad("pool.name", i, fmt.Errorf("pool %q is declared twice", pf.Name))
		}
		seen[pf.Name] = true
		if p, ok := pf.pool(func(k string, err error) { bad(k, i, err) }); ok {
			c.Pools = append(c.Pools, p)
		}
	}
	f.activator(c, bad)
	if len(f.Pools) == 0 && len(f.Servers) == 0 {
		errs = append(errs, &ConfigError{File: path, Err: errors.New("no [[pool]] and no [[server]]: nothing to serve")})
	}
	return c, errors.Join(errs...)
}

// checkTimes refuses a negative max_deadline or drain_grace (zero is the
// default), and a max_deadline too short for any call to finish.
func (f *File) checkTimes(bad func(string, int, error)) {
	switch {
	case f.MaxDeadline < 0:
		bad("max_deadline", -1, errors.New("must not be negative (zero: 5m)"))
	case f.MaxDeadline > 0 && f.MaxDeadline < time.Millisecond:
		bad("max_deadline", -1, fmt.Errorf("%v: every call would end before it ran; want at least 1ms (zero: 5m)", f.MaxDeadline))
	}
	if f.DrainGrace < 0 {
		bad("drain_grace", -1, errors.New("must not be negative (zero: 30s)"))
	}
}

// withDefaults is a copy of c with its zero values replaced.
func (c *Config) withDefaults() *Config {
	d := *c
	if d.MaxDeadline <= 0 {
		d.MaxDeadline = 5 * time.Minute
	}
	if d.DrainGrace <= 0 {
		d.DrainGrace = 30 * time.Second
	}
	if d.SocketMode == 0 {
		d.SocketMode = 0o600
	}
	d.Limits = d.Limits.withDefaults()
	return &d
}

// socketAccess checks the socket's mode and group.
func (c *Config) socketAccess(f *File, bad func(string, int, error)) {
	mode := f.SocketMode
	switch {
	case mode == "" && f.SocketGroup != "":
		mode = "0660"
	case mode == "":
		mode = "0600"
	}
	m, err := strconv.ParseUint(mode, 8, 32)
	if err != nil || m&^0o660 != 0 {
		bad("socket_mode", -1, fmt.Errorf("%q: want octal permission bits within 0660 (no one else may connect)", mode))
	}
	c.SocketMode = uint32(m)
	if f.SocketGroup != "" {
		gid, err := groupID(f.SocketGroup)
		if err != nil {
			bad("socket_group", -1, err)
		}
		c.SocketGID = gid
	}
}

func groupID(name string) (int, error) {
	if id, err := strconv.Atoi(name); err == nil {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(g.Gid)
}

// withDefaults is l with its zero values replaced.
func (l ConnLimits) withDefaults() ConnLimits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxFrame, 16<<20)
	def(&l.MaxPending, 1024)
	def(&l.MaxHandles, 65536)
	def(&l.MaxSubscriptions, 64)
	def(&l.MaxOut, 4<<20)
	def(&l.MaxConnections, 1024)
	return l
}

// configKey matches the field a bulkhead.Config error names, sandboxKey
// the field of its Sandbox (a process's, for a server).
var (
	configKey  = regexp.MustCompile(`Config\.([A-Za-z]+)`)
	sandboxKey = regexp.MustCompile(`Sandbox: ([A-Za-z0-9]+)\b`)
)

// sandboxField is the key, ".memory_max", of the sandbox field a
// validation error names ("MemoryMax"), as the file spells it; "" (the
// table itself) if it names no field.
func sandboxField(m map[string]any, field string) string {
	for k := range m {
		if camel(k) == field {
			return "." + k
		}
	}
	if _, ok := reflect.TypeOf(bulkhead.Sandbox{}).FieldByName(field); ok {
		return "." + snake(field)
	}
	return ""
}

// pool checks one [[pool]] with bulkhead.Config.Validate.
func (pf *PoolFile) pool(bad func(string, error)) (Pool, bool) {
	p := Pool{Name: pf.Name, Config: bulkhead.Config{Logger: slog.Default()}}
	configFields(&p.Config, pf)
	p.Config.Command = os.ExpandEnv(pf.Command)
	p.Config.Limits = bulkhead.Limits(pf.Limits)
	ok := true
	if err := setFields(reflect.ValueOf(&p.Config.Sandbox).Elem(), pf.Sandbox, "pool.sandbox", bad); err != nil {
		ok = false
	}
	if pf.DumpSignal != "" {
		sig, found := signalNames[pf.DumpSignal]
		if !found {
			bad("pool.dump_signal", fmt.Errorf("%q: not a signal bulkhead can send as a dump signal", pf.DumpSignal))
			ok = false
		}
		p.Config.DumpSignal = sig
	}
	switch pf.Transport {
	case "", "socket":
		p.Config.Transport = bulkhead.TransportSocket
	case "shm":
		p.Config.Transport = bulkhead.TransportShm
	default:
		bad("pool.transport", fmt.Errorf("%q: want \"socket\" or \"shm\"", pf.Transport))
		ok = false
	}
	if err := p.Config.Validate(); err != nil {
		for _, e := range joined(err) {
			key := "pool"
			if m := sandboxKey.FindStringSubmatch(e.Error()); m != nil {
				key += ".sandbox" + sandboxField(pf.Sandbox, m[1])
			} else if m := configKey.FindStringSubmatch(e.Error()); m != nil {
				key += "." + tomlKey(reflect.TypeOf(PoolFile{}), m[1])
			}
			bad(key, fmt.Errorf("pool %q: %w", pf.Name, e))
		}
		ok = false
	}
	acc, err := pf.Allow.access()
	if err != nil {
		bad("pool.allow_users", err)
		ok = false
	}
	p.Access = acc
	return p, ok
}

// activator checks [activator] and every [[server]].
func (f *File) activator(c *Config, bad func(string, int, error)) {
	a := &c.Activator
	a.Linger, a.MaxRetries, a.MaxObjects = f.Activator.Linger, f.Activator.MaxRetries, f.Activator.MaxObjects
	a.MaxROTEntries, a.EventDelay = f.Activator.MaxROTEntries, f.Activator.EventDelay
	for i, sf := range f.Servers {
		sc := activation.ServerConfig{Name: sf.Name, Process: bulkhead.Process{Command: os.ExpandEnv(sf.Command), Args: sf.Args,
			Env: sf.Env, Dir: sf.Dir, Limits: bulkhead.Limits(sf.Limits), StartTimeout: sf.StartTimeout, StderrTail: sf.StderrTail}}
		setFields(reflect.ValueOf(&sc.Process.Sandbox).Elem(), sf.Sandbox, "server.sandbox",
			func(k string, err error) { bad(k, i, err) })
		for _, cf := range sf.Classes {
			inst, ok := instancings[cf.Instancing]
			if !ok {
				bad("server.class.instancing", i, fmt.Errorf("%q: want multiple_use, single_use or pooled", cf.Instancing))
			}
			sc.Classes = append(sc.Classes, activation.ClassConfig{Name: cf.Name, Instancing: inst, PoolSize: cf.PoolSize})
			acc, err := cf.Allow.access()
			if err != nil {
				bad("server.class.allow_users", i, err)
			}
			c.ClassAllow[cf.Name] = acc
		}
		if sf.Command == "" {
			bad("server.command", i, fmt.Errorf("server %d has no command", i+1))
		}
		a.Servers = append(a.Servers, sc)
	}
	if len(a.Servers) == 0 {
		return
	}
	a.Logger = slog.New(slog.DiscardHandler)
	act, err := activation.NewActivator(*a) // validates; starts no server until an activation
	if err != nil {
		for _, e := range joined(err) {
			key, nth := f.activatorKey(e.Error())
			bad(key, nth, e)
		}
		return
	}
	act.Close(context.Background()) // a fresh activator, which started nothing, closes at once
	a.Logger = nil
}

// serverField matches the field of a server an activation.ActivatorConfig
// error names: its index, the Process or Classes part, and the field.
var serverField = regexp.MustCompile(`Servers\[(\d+)\](?:\.(Process|Classes\[\d+\])(?:\.(?:Sandbox: )?([A-Za-z0-9]+))?)?`)

// activatorKey is the key, and the [[server]] it is in, of an
// activation.NewActivator error.
func (f *File) activatorKey(msg string) (string, int) {
	m := serverField.FindStringSubmatch(msg)
	if m == nil {
		if m := regexp.MustCompile(`ActivatorConfig\.([A-Za-z]+)`).FindStringSubmatch(msg); m != nil && m[1] != "Servers" {
			return "activator." + tomlKey(reflect.TypeOf(ActivatorFile{}), m[1]), -1
		}
		return "server", -1
	}
	i, _ := strconv.Atoi(m[1])
	if i >= len(f.Servers) {
		return "server", -1
	}
	switch {
	case m[2] == "Process" && sandboxKey.MatchString(msg):
		return "server.sandbox" + sandboxField(f.Servers[i].Sandbox, m[3]), i
	case m[2] == "Process" && m[3] != "":
		return "server." + tomlKey(reflect.TypeOf(ServerFile{}), m[3]), i
	case strings.HasPrefix(m[2], "Classes") && m[3] != "":
		return "server.class." + tomlKey(reflect.TypeOf(ClassFile{}), m[3]), i
	case strings.HasPrefix(m[2], "Classes"):
		return "server.class", i
	}
	return "server", i
}

// joined splits an errors.Join error, and one that wraps a join with a
// prefix ("Config.Sandbox: " and a sandbox's errors) into one error per
// joined error, each with the prefix: each has its own key and line.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, joined(e)...)
		}
		return out
	}
	j, ok := errors.Unwrap(err).(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	prefix, cut := strings.CutSuffix(err.Error(), errors.Unwrap(err).Error())
	if !cut {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, fmt.Errorf("%s%w", prefix, e))
	}
	return out
}

// tomlKey is the TOML key of the struct field named field in t.
func tomlKey(t reflect.Type, field string) string {
	if f, ok := t.FieldByName(field); ok {
		if tag := f.Tag.Get("toml"); tag != "" {
			return tag
		}
	}
	return field
}

func splitKey(k string) []string {
	var out []string
	start := 0
	for i := range len(k) {
		if k[i] == '.' {
			out = append(out, k[start:i])
			start = i + 1
		}
	}
	return append(out, k[start:])
}

// setFields sets the fields of the struct dst from m, whose keys are the
// fields' names in snake_case; each problem goes to bad with its key.
func setFields(dst reflect.Value, m map[string]any, prefix string, bad func(string, error)) error {
	var failed error
	for k, v := range m {
		key := prefix + "." + k
		f := dst.FieldByName(camel(k))
		if !f.IsValid() || !f.CanSet() {
			failed = errors.New("unknown key")
			bad(key, failed)
			continue
		}
		if s, ok := v.(string); ok && byteFields[camel(k)] {
			n, err := parseBytes(s)
			if err != nil {
				failed = err
				bad(key, err)
				continue
			}
			v = n
		}
		if err := setValue(f, v); err != nil {
			failed = err
			bad(key, err)
		}
	}
	return failed
}

// byteFields are the sandbox's sizes in bytes, which take a string with a
// unit ("64MiB") as well as an integer.
var byteFields = map[string]bool{"MemoryMax": true}

// byteUnits are the units parseBytes knows: powers of 1024, as cgroup's
// memory.max and systemd's MemoryMax= count them.
var byteUnits = map[string]int64{"": 1, "B": 1, "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20,
	"G": 1 << 30, "GiB": 1 << 30, "T": 1 << 40, "TiB": 1 << 40}

// parseBytes is a size such as "64MiB", "512K" or "1048576".
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	unit, ok := byteUnits[strings.TrimSpace(t[i:])]
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if !ok || err != nil {
		return 0, fmt.Errorf("%q: want bytes as an integer or with a unit: \"64MiB\", \"512KiB\", \"1GiB\" (K, M, G, T: powers of 1024)", s)
	}
	if n > math.MaxInt64/unit {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return n * unit, nil
}

// setValue sets f from a TOML value.
func setValue(f reflect.Value, v any) error {
	rv := reflect.ValueOf(v)
	switch {
	case f.Type() == reflect.TypeOf(time.Duration(0)):
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("want a duration such as \"250ms\", got %v", v)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.Slice && rv.Kind() == reflect.Slice:
		out := reflect.MakeSlice(f.Type(), rv.Len(), rv.Len())
		for i := range rv.Len() {
			if err := setValue(out.Index(i), rv.Index(i).Interface()); err != nil {
				return err
			}
		}
		f.Set(out)
	case f.Kind() >= reflect.Int && f.Kind() <= reflect.Int64 && rv.Kind() == reflect.Int64:
		if f.OverflowInt(rv.Int()) {
			return fmt.Errorf("%d is out of range", rv.Int())
		}
		f.SetInt(rv.Int())
	case (f.Kind() == reflect.Float64 || f.Kind() == reflect.Float32) && (rv.Kind() == reflect.Float64 || rv.Kind() == reflect.Int64):
		f.SetFloat(rv.Convert(reflect.TypeOf(0.0)).Float())
	case rv.IsValid() && rv.Type().AssignableTo(f.Type()):
		f.Set(rv)
	default:
		return fmt.Errorf("incompatible types: TOML value %v (%T) for a %s", v, v, f.Type())
	}
	return nil
}

// camel is a snake_case key as a Go field name: memory_max is MemoryMax,
// sha256 is SHA256.
func camel(k string) string {
	var b strings.Builder
	for _, part := range strings.Split(k, "_") {
		switch up := strings.ToUpper(part); {
		case up == "SHA256" || up == "ID" || up == "UID" || up == "GID" || up == "CPU" || up == "URL" || up == "IPC" || up == "PID":
			b.WriteString(up)
		case part != "":
			b.WriteString(up[:1] + part[1:])
		}
	}
	return b.String()
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
