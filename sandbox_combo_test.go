package bulkhead_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"golang.org/x/sys/unix"
)

// comboKeys are the [pool.sandbox] layers whose combinations
// TestSandboxCombinations starts a worker under, by their daemon keys.
var comboKeys = []string{"user", "private_tmp", "isolate_net", "isolate_ipc", "user_namespace", "seccomp", "landlock", "cgroup", "isolate_pid"}

// combo is a set of comboKeys: bit i is comboKeys[i].
type combo uint

// The user a combination's worker runs as: not nobody, whom a root
// dispatcher's user namespace maps root to when no user is asked for.
const comboUID = 1

// comboMarkerEnv names comboMarker's file, which is the run's own, so that
// runs in other checkouts at the same time do not remove each other's.
const comboMarkerEnv = "BULKHEAD_TEST_COMBO_MARKER"

// comboMarker is a file in the dispatcher's /tmp, which a private /tmp
// hides.
func comboMarker() string {
	if p := os.Getenv(comboMarkerEnv); p != "" {
		return p
	}
	return "/tmp/bulkhead-combo-marker"
}

func (c combo) has(key string) bool { return c&(1<<slices.Index(comboKeys, key)) != 0 }

func (c combo) String() string {
	var on []string
	for i, k := range comboKeys {
		if c&(1<<i) != 0 {
			on = append(on, k)
		}
	}
	if len(on) == 0 {
		return "none"
	}
	return strings.Join(on, "+")
}

// sandbox is c as a Sandbox: seccomp lets socket through, for the network
// probe; Landlock allows /proc (the race runtime reads it), and not /tmp,
// which private_tmp refuses (TestSandboxPrivateTmpLandlockRefused).
func (c combo) sandbox() bulkhead.Sandbox {
	sb := bulkhead.Sandbox{PrivateTmp: c.has("private_tmp"), IsolateNet: c.has("isolate_net"), IsolateIPC: c.has("isolate_ipc"),
		UserNamespace: c.has("user_namespace"), Cgroup: c.has("cgroup"), IsolatePID: c.has("isolate_pid")}
	if c.has("user") {
		sb.User = fmt.Sprintf("%d:%d", comboUID, comboUID)
	}
	if c.has("seccomp") {
		sb.Seccomp, sb.SeccompAllow = "files", []string{"socket"}
	}
	if c.has("landlock") {
		sb.ReadOnly = []string{"/proc"}
	}
	return sb
}

// workerView is what a process sees of its sandbox (the helper worker's
// "whoami").
type workerView struct {
	UID, GID   int
	Groups     []int
	UIDMap     string            // /proc/self/uid_map
	NS         map[string]string // net, ipc, mnt, user, pid
	Marker     bool              // comboMarker is there
	TmpEntries int               // -1 if /tmp cannot be listed
	TmpError   string            // why not
	Connect    string            // connecting to 127.0.0.1:1
	Hostname   string            // reading /etc/hostname, outside Landlock's paths
	NoNewPrivs string
	Seccomp    string // /proc/self/status's mode
	Cgroup     string // /proc/self/cgroup
}

func whoami() workerView {
	v := workerView{UID: os.Getuid(), GID: os.Getgid(), NS: map[string]string{}, TmpEntries: -1}
	v.Groups, _ = os.Getgroups()
	b, _ := os.ReadFile("/proc/self/uid_map")
	v.UIDMap = strings.Join(strings.Fields(string(b)), " ")
	for _, n := range []string{"net", "ipc", "mnt", "user", "pid"} {
		v.NS[n], _ = os.Readlink("/proc/self/ns/" + n)
	}
	_, err := os.Lstat(comboMarker())
	v.Marker = err == nil
	if ents, err := os.ReadDir("/tmp"); err == nil {
		v.TmpEntries = len(ents)
	} else {
		v.TmpError = err.Error()
	}
	if fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
		v.Connect = err.Error()
	} else {
		v.Connect = fmt.Sprint(unix.Connect(fd, &unix.SockaddrInet4{Port: 1, Addr: [4]byte{127, 0, 0, 1}}))
		unix.Close(fd)
	}
	_, err = os.ReadFile("/etc/hostname")
	v.Hostname = fmt.Sprint(err)
	b, _ = os.ReadFile("/proc/self/status")
	for line := range strings.Lines(string(b)) {
		k, val, _ := strings.Cut(line, ":")
		switch k {
		case "NoNewPrivs":
			v.NoNewPrivs = strings.TrimSpace(val)
		case "Seccomp":
			v.Seccomp = strings.TrimSpace(val)
		}
	}
	b, _ = os.ReadFile("/proc/self/cgroup")
	v.Cgroup = string(b)
	return v
}

// check returns what is wrong in w, the view of a worker started under c
// by a dispatcher whose own view is d.
func (c combo) check(w, d workerView) []string {
	var bad []string
	want := func(ok bool, format string, a ...any) {
		if !ok {
			bad = append(bad, fmt.Sprintf(format, a...))
		}
	}
	root := d.UID == 0
	userNS := c.has("user_namespace") || (!root && (c.has("private_tmp") || c.has("isolate_net") || c.has("isolate_ipc")))
	switch {
	case userNS:
		outside := d.UID
		if root {
			outside = 65534
			if c.has("user") {
				outside = comboUID
			}
		}
		want(w.UID == 0 && w.GID == 0, "ids %d:%d in its user namespace, want root inside", w.UID, w.GID)
		want(w.UIDMap == fmt.Sprintf("0 %d 1", outside), "uid_map %q, want uid %d outside", w.UIDMap, outside)
	case c.has("user"):
		want(w.UID == comboUID && w.GID == comboUID && len(w.Groups) == 0, "ids %d:%d %v, want %d:%d and no other group",
			w.UID, w.GID, w.Groups, comboUID, comboUID)
	default:
		want(w.UID == d.UID && w.GID == d.GID, "ids %d:%d, want the dispatcher's %d:%d", w.UID, w.GID, d.UID, d.GID)
	}
	for n, own := range map[string]bool{"net": c.has("isolate_net"), "ipc": c.has("isolate_ipc"), "mnt": c.has("private_tmp"),
		"user": userNS, "pid": c.has("isolate_pid")} {
		want((w.NS[n] != d.NS[n]) == own && w.NS[n] != "", "%s namespace %q, the dispatcher's %q: want its own %v", n, w.NS[n], d.NS[n], own)
	}
	switch {
	case c.has("landlock"):
		want(strings.Contains(w.TmpError, "permission denied"), "listing /tmp under Landlock: %d entries (%s), want permission denied",
			w.TmpEntries, w.TmpError)
	case c.has("private_tmp"):
		want(w.TmpEntries == 0, "/tmp: %d entries (%s); want an empty tmpfs", w.TmpEntries, w.TmpError)
	}
	want(w.Marker != c.has("private_tmp"), "/tmp: the dispatcher's marker seen %v; private_tmp %v", w.Marker, c.has("private_tmp"))
	switch {
	case c.has("landlock"): // Landlock ABI 4 and later: no TCP connect either
		want(strings.Contains(w.Connect, "permission denied"), "connect: %q, want permission denied (Landlock)", w.Connect)
	case c.has("isolate_net"):
		want(strings.Contains(w.Connect, "network is unreachable"), "connect: %q, want network is unreachable", w.Connect)
	default:
		want(strings.Contains(w.Connect, "connection refused"), "connect: %q, want connection refused", w.Connect)
	}
	want((w.Hostname == "<nil>") != c.has("landlock"), "reading /etc/hostname: %s; Landlock %v", w.Hostname, c.has("landlock"))
	want(w.NoNewPrivs == map[bool]string{true: "0", false: "1"}[c == 0], "NoNewPrivs %q", w.NoNewPrivs)
	want((w.Seccomp == "2") == c.has("seccomp"), "Seccomp mode %q", w.Seccomp)
	want((w.Cgroup != d.Cgroup) == c.has("cgroup"), "cgroups %q, the dispatcher's %q: want its own %v", w.Cgroup, d.Cgroup, c.has("cgroup"))
	return bad
}

// comboResult is one combination's start by a dispatcher, as the
// "combos" helper reports it.
type comboResult struct {
	Combo      combo
	View       *workerView // nil if the worker did not start
	Protection string
	Error      string
}

// startCombo starts a pool of exe under c, and returns what its worker
// sees.
func startCombo(exe string, c combo) comboResult {
	r := comboResult{Combo: c}
	p, err := bulkhead.New(context.Background(), bulkhead.Config{Command: exe, Workers: 1, Sandbox: c.sandbox(),
		Env: []string{"GORACE=atexit_sleep_ms=0", comboMarkerEnv + "=" + comboMarker()}, Logger: slog.New(slog.DiscardHandler)})
	var se *bulkhead.StartError
	switch {
	case errors.As(err, &se):
		r.Protection, r.Error = se.Protection, se.Error()
		return r
	case err != nil:
		r.Error = err.Error()
		return r
	}
	defer p.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := bulkhead.CallAs[workerView](ctx, p, "whoami", nil)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.View = &v
	return r
}

// Every combination of the layers the docs allow starts a worker as
// root, and the worker sees each layer it was given and none other: its
// uid (and, in a user namespace, who it is outside), its namespaces, its
// /tmp, the network, Landlock, no_new_privs, seccomp, its cgroup.
func TestSandboxCombinations(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("as root; TestSandboxCombinationsUnprivileged covers the other side")
	}
	writeMarker(t)
	bulkhead.CheckLeaks(t)
	exe, _ := os.Executable()
	d := whoami()
	for c := range combo(1 << len(comboKeys)) {
		r := startCombo(exe, c)
		if r.View == nil {
			t.Errorf("%v: did not start: %s", c, r.Error)
			continue
		}
		for _, b := range c.check(*r.View, d) {
			t.Errorf("%v: %s", c, b)
		}
	}
}

func writeMarker(t *testing.T) {
	t.Helper()
	f, err := os.CreateTemp("/tmp", "bulkhead-combo-marker-*")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { os.Remove(f.Name()) })
	t.Setenv(comboMarkerEnv, f.Name()) // for the workers, and the nobody dispatcher
}

// comboReport is what the "combos" helper dispatcher prints: its own view,
// then one comboResult per line.
type comboReport struct {
	Dispatcher *workerView  `json:",omitempty"`
	Result     *comboResult `json:",omitempty"`
}

// unprivilegedCombos are the layers a dispatcher that is not root may
// combine: user, cgroup and isolate_pid fail closed there
// (TestSandboxUnprivileged).
var unprivilegedCombos = []string{"private_tmp", "isolate_net", "isolate_ipc", "user_namespace", "seccomp", "landlock"}

// runComboDispatcher is a dispatcher (run as nobody by
// TestSandboxCombinationsUnprivileged) that starts a worker under every
// combination of unprivilegedCombos and reports what it saw.
func runComboDispatcher() {
	os.Unsetenv(bulkhead.HelperEnv)
	exe, _ := os.Executable()
	enc := json.NewEncoder(os.Stdout)
	d := whoami()
	enc.Encode(comboReport{Dispatcher: &d})
	for i := range 1 << len(unprivilegedCombos) {
		var c combo
		for j, k := range unprivilegedCombos {
			if i&(1<<j) != 0 {
				c |= 1 << slices.Index(comboKeys, k)
			}
		}
		r := startCombo(exe, c)
		enc.Encode(comboReport{Result: &r})
	}
	os.Exit(0)
}

// As nobody (a dispatcher setpriv dropped), every combination of the
// layers that need no privilege starts, through a user namespace where
// namespaces are asked for, and its worker sees them.
func TestSandboxCombinationsUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 {
		writeMarker(t)
	}
	sc, wait := nobodyDispatcher(t, "combos")
	var d *workerView
	n := 0
	for sc.Scan() {
		var r comboReport
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("dispatcher said %q", sc.Text())
		}
		switch {
		case r.Dispatcher != nil:
			d = r.Dispatcher
		case d == nil || r.Result == nil:
			t.Fatalf("dispatcher said %q", sc.Text())
		case r.Result.View == nil:
			n++
			t.Errorf("%v as nobody: did not start: %s", r.Result.Combo, r.Result.Error)
		default:
			n++
			for _, b := range r.Result.Combo.check(*r.Result.View, *d) {
				t.Errorf("%v as nobody: %s", r.Result.Combo, b)
			}
		}
	}
	wait()
	if n != 1<<len(unprivilegedCombos) {
		t.Fatalf("%d combinations reported, want %d", n, 1<<len(unprivilegedCombos))
	}
}

// A private /tmp hides the dispatcher's, on which a Landlock path under
// /tmp would be granted (Landlock ignores a hidden mount point): Validate
// refuses the combination, naming both keys, rather than a worker that
// finds its /tmp denied.
func TestSandboxPrivateTmpLandlockRefused(t *testing.T) {
	exe, _ := os.Executable()
	for _, sb := range []bulkhead.Sandbox{
		{PrivateTmp: true, Writable: []string{"/tmp"}},
		{PrivateTmp: true, ReadOnly: []string{"/proc", "/tmp/x/"}},
	} {
		err := bulkhead.Config{Command: exe, Sandbox: sb}.Validate()
		if err == nil || !strings.Contains(err.Error(), "private_tmp") || !strings.Contains(err.Error(), "Config.Sandbox") ||
			(!strings.Contains(err.Error(), "writable") && !strings.Contains(err.Error(), "read_only")) {
			t.Errorf("%+v: %v, want a Config.Sandbox error naming private_tmp and the Landlock key", sb, err)
		}
	}
	for _, sb := range []bulkhead.Sandbox{{PrivateTmp: true, Writable: []string{"/tmpfoo"}}, {PrivateTmp: true, ReadOnly: []string{"/"}}} {
		if err := (bulkhead.Config{Command: exe, Sandbox: sb}).Validate(); err != nil {
			t.Errorf("%+v: %v", sb, err)
		}
	}
}
