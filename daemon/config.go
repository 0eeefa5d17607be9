package daemon

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/activation"
)

// File is a daemon configuration as written in its TOML file
// (examples/serve/bulkhead.toml is an annotated one). Load reads and checks
// it; every key of a pool is a bulkhead.Config field, in snake_case. A
// pool's or server's command may name environment variables, ${NAME}:
// `bulkhead serve` sets BULKHEAD_SELF to its own executable.
type File struct {
	Socket      string        `toml:"socket"`       // the socket's path; required here or by --socket
	SocketMode  string        `toml:"socket_mode"`  // octal; zero value "0600" ("0660" with socket_group)
	SocketGroup string        `toml:"socket_group"` // a group name or gid that may connect
	MaxDeadline time.Duration `toml:"max_deadline"` // bounds every request; zero value: 5 minutes
	DrainGrace  time.Duration `toml:"drain_grace"`  // how long SIGTERM waits for calls; zero value: 30 s
	Limits      ConnLimits    `toml:"limits"`
	Pools       []PoolFile    `toml:"pool"`
	Activator   ActivatorFile `toml:"activator"`
	Servers     []ServerFile  `toml:"server"`
	NATS        NATS          `toml:"nats"`
}

// ConnLimits bound what one client connection may hold (CLIENT-PROTOCOL.md
// section 8). Zero values: the defaults below.
type ConnLimits struct {
	MaxFrame         int `toml:"max_frame"`         // 16 MiB
	MaxPending       int `toml:"max_pending"`       // 1024 requests at once
	MaxHandles       int `toml:"max_handles"`       // 65536 references
	MaxSubscriptions int `toml:"max_subscriptions"` // 64
	MaxOut           int `toml:"max_out"`           // 4 MiB of answers queued for the client
	MaxConnections   int `toml:"max_connections"`   // 1024 clients at once, over all peers
}

// Allow is who may use a pool or a class. All empty: the daemon's own uid
// and root only.
type Allow struct {
	UIDs  []int    `toml:"allow_uids"`
	GIDs  []int    `toml:"allow_gids"`
	Users []string `toml:"allow_users"`
}

// PoolFile is one [[pool]]: a name, who may use it, and a bulkhead.Config.
type PoolFile struct {
	Name string `toml:"name"`
	Allow

	Command              string        `toml:"command"`
	Args                 []string      `toml:"args"`
	Env                  []string      `toml:"env"`
	Dir                  string        `toml:"dir"`
	Workers              int           `toml:"workers"`
	MinWorkers           int           `toml:"min_workers"`
	MaxWorkers           int           `toml:"max_workers"`
	Spares               int           `toml:"spares"`
	IdleTimeout          time.Duration `toml:"idle_timeout"`
	ConcurrencyPerWorker int           `toml:"concurrency_per_worker"`
	Pipeline             int           `toml:"pipeline"`
	StartTimeout         time.Duration `toml:"start_timeout"`
	KillGrace            time.Duration `toml:"kill_grace"`
	TermGrace            time.Duration `toml:"term_grace"`
	CancelGrace          time.Duration `toml:"cancel_grace"`
	DumpSignal           string        `toml:"dump_signal"` // "SIGQUIT", "SIGABRT", ...
	DumpGrace            time.Duration `toml:"dump_grace"`
	MaxFrameSize         int           `toml:"max_frame_size"`
	StderrTail           int           `toml:"stderr_tail"`
	MaxRedispatch        int           `toml:"max_redispatch"`
	Transport            string        `toml:"transport"` // "socket" or "shm"
	ShmRingSize          int           `toml:"shm_ring_size"`
	ShmSpin              int           `toml:"shm_spin"`
	RestartDelay         time.Duration `toml:"restart_delay"`
	MaxRestartDelay      time.Duration `toml:"max_restart_delay"`
	UnhealthyAfter       int           `toml:"unhealthy_after"`
	CrashLoopWindow      time.Duration `toml:"crash_loop_window"`
	MaxQueue             int           `toml:"max_queue"`
	QueueTimeout         time.Duration `toml:"queue_timeout"`
	MaxCalls             int           `toml:"max_calls"`
	MaxCallsJitter       int           `toml:"max_calls_jitter"`
	MaxLifetime          time.Duration `toml:"max_lifetime"`
	MaxMemory            int64         `toml:"max_memory"`
	MonitorInterval      time.Duration `toml:"monitor_interval"`
	QuarantineAfter      int           `toml:"quarantine_after"`
	QuarantineWindow     time.Duration `toml:"quarantine_window"`
	QuarantineFor        time.Duration `toml:"quarantine_for"`
	QuarantineMax        int           `toml:"quarantine_max"`
	Idempotent           []string      `toml:"idempotent"`
	MaxReplays           int           `toml:"max_replays"`
	NoCallTimings        bool          `toml:"no_call_timings"`
	SlowCall             time.Duration `toml:"slow_call"`
	CallUsage            bool          `toml:"call_usage"`
	ForkServer           bool          `toml:"fork_server"`
	// Sandbox is bulkhead.Sandbox: each field as its snake_case key
	// (memory_max, pids_max, ...), set by reflection so that every field
	// the sandbox gains has a key.
	Sandbox map[string]any `toml:"sandbox"`
	Limits  LimitsFile     `toml:"limits"`
}

// LimitsFile is bulkhead.Limits.
type LimitsFile struct {
	AddressSpace int64         `toml:"address_space"`
	CPUTime      time.Duration `toml:"cpu_time"`
	OpenFiles    int           `toml:"open_files"`
	CoreSize     int64         `toml:"core_size"`
}

// ActivatorFile is [activator]: activation.ActivatorConfig's scalars.
type ActivatorFile struct {
	Linger        time.Duration `toml:"linger"` // negative: none
	MaxRetries    int           `toml:"max_retries"`
	MaxObjects    int           `toml:"max_objects"`
	MaxROTEntries int           `toml:"max_rot_entries"`
	EventDelay    time.Duration `toml:"event_delay"`
}

// ServerFile is one [[server]]: a class server's program and its classes.
type ServerFile struct {
	Name         string         `toml:"name"`
	Command      string         `toml:"command"`
	Args         []string       `toml:"args"`
	Env          []string       `toml:"env"`
	Dir          string         `toml:"dir"`
	StartTimeout time.Duration  `toml:"start_timeout"`
	StderrTail   int            `toml:"stderr_tail"`
	Limits       LimitsFile     `toml:"limits"`
	Sandbox      map[string]any `toml:"sandbox"`
	Classes      []ClassFile    `toml:"class"`
}

// ClassFile is one [[server.class]].
type ClassFile struct {
	Name       string `toml:"name"`
	Instancing string `toml:"instancing"` // "multiple_use" (default), "single_use" or "pooled"
	PoolSize   int    `toml:"pool_size"`
	Allow
}

// ConfigError is a configuration that was refused: where, and why.
type ConfigError struct {
	File string
	Line int    // 0 if unknown
	Key  string // the dotted key, if one is to blame
	Err  error
}

func (e *ConfigError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s: %v", loc, e.Key, e.Err)
	}
	return fmt.Sprintf("%s: %v", loc, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// KeyError is err blamed on the dotted key ("nats.nkey_seed") of the file
// c came from, with the key's line if the file still says where: for what
// only a user of the config can find wrong (NATS's own parse of a seed).
func (c *Config) KeyError(key string, err error) *ConfigError {
	ce := &ConfigError{File: c.Path, Key: key, Err: err}
	if data, rerr := os.ReadFile(c.Path); rerr == nil {
		ce.Line = keyLine(data, toml.Key(splitKey(key)))
	}
	return ce
}

// Load reads the configuration at path, refusing unknown keys, values of
// the wrong type and values out of range, each with its file, line and key.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse is Load of data, read from a file named path.
func Parse(path string, data []byte) (*Config, error) {
	var f File
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, decodeError(path, err)
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, &ConfigError{File: path, Line: keyLine(data, k), Key: k.String(), Err: errors.New("unknown key")})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := checkDurations(path, data); err != nil {
		return nil, err
	}
	c, err := f.resolve(path, data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

var tomlLine = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// decodeError is the toml package's error with its line and key.
func decodeError(path string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &ConfigError{File: path, Line: pe.Position.Line, Key: pe.LastKey, Err: errors.New(pe.Message)}
	}
	if m := tomlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &ConfigError{File: path, Line: line, Key: m[2], Err: errors.New(m[3])}
	}
	return &ConfigError{File: path, Err: err}
}

// keyLine finds the line that sets key k: its last part, assigned in the
// table its other parts name. 0 if it cannot tell.
func keyLine(data []byte, k toml.Key) int { return keyLineN(data, k, -1) }

// keyLineN is keyLine in the nth table of the array of tables k[0] names
// ([[pool]], [[server]]), its subtables included, counting from 0; in any,
// if nth is negative. A key the file does not set (a value left to its
// default that conflicts with another) is found as its table's header; a
// table, as its header.
func keyLineN(data []byte, k toml.Key, nth int) int {
	if len(k) == 0 {
		return 0
	}
	name := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(k[len(k)-1]) + `"?\s*=`)
	parent, self := strings.Join(k[:len(k)-1], "."), strings.Join(k, ".")
	table, seen := "", -1
	for i, line := range strings.Split(string(data), "\n") {
		t, _, _ := strings.Cut(line, "#")
		if t = strings.TrimSpace(t); strings.HasPrefix(t, "[") {
			table = strings.Trim(t, "[] ")
			if strings.HasPrefix(t, "[[") && table == k[0] {
				seen++
			}
			if table == self && (nth < 0 || seen == nth) {
				return i + 1
			}
			continue
		}
		if table == parent && (nth < 0 || seen == nth) && name.MatchString(line) {
			return i + 1
		}
	}
	return keyLineN(data, k[:len(k)-1], nth)
}

// signalNames are the signals a dump_signal may name.
var signalNames = map[string]syscall.Signal{
	"SIGQUIT": syscall.SIGQUIT, "SIGABRT": syscall.SIGABRT, "SIGUSR1": syscall.SIGUSR1,
	"SIGUSR2": syscall.SIGUSR2, "SIGTERM": syscall.SIGTERM, "SIGKILL": syscall.SIGKILL,
	"SIGSEGV": syscall.SIGSEGV, "SIGTRAP": syscall.SIGTRAP,
}

// lookupUsers resolves user names to uids.
func lookupUsers(names []string) ([]int, error) {
	var uids []int
	for _, n := range names {
		u, err := user.Lookup(n)
		if err != nil {
			return nil, err
		}
		id, err := strconv.Atoi(u.Uid)
		if err != nil {
			return nil, err
		}
		uids = append(uids, id)
	}
	return uids, nil
}

// configFields copies the fields of src (a *PoolFile) that a
// bulkhead.Config has under the same name and type into dst.
func configFields(dst *bulkhead.Config, src *PoolFile) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for i := range s.NumField() {
		sf := s.Type().Field(i)
		df, ok := d.Type().FieldByName(sf.Name)
		if !ok || df.Type != sf.Type || sf.Anonymous {
			continue
		}
		d.FieldByIndex(df.Index).Set(s.Field(i))
	}
}

// instancings are the values of a class's instancing.
var instancings = map[string]activation.Instancing{
	"": activation.MultipleUse, "multiple_use": activation.MultipleUse,
	"single_use": activation.SingleUse, "pooled": activation.Pooled,
}
