package sandbox

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-go/bulkhead/internal/dispatch"
	"golang.org/x/sys/unix"
)

// TestMain lets the test binary be a trampoline: trampoline.c's constructor
// in a build with cgo, Trampoline without (CI runs this package with
// CGO_ENABLED=0 too).
func TestMain(m *testing.M) {
	Trampoline()
	os.Exit(m.Run())
}

// runTrampolined starts the worker argv[0] (a path) under s through this
// test binary as the trampoline, and returns its output and what its
// protections recorded.
func runTrampolined(t *testing.T, s Settings, argv ...string) (string, Usage, error) {
	t.Helper()
	p, err := NewPlan(s)
	if err != nil {
		t.Fatal(err)
	}
	spec := dispatch.Spec{Path: argv[0], Command: argv[0], Args: argv[1:], StartTimeout: 10 * time.Second}
	st, err := p.Prepare(argv[0], nil, &spec, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := &exec.Cmd{Path: "/proc/self/fd/" + strconv.Itoa(int(spec.Exec.Fd())), Args: argv,
		Env: append(spec.Env, dispatch.ExtraFDEnv+"=3"), ExtraFiles: spec.ExtraFiles, Stdout: &out, SysProcAttr: spec.Attr}
	runErr := cmd.Run()
	st.closeFiles()
	u, err := st.Reaped()
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), u, runErr
}

// The trampoline installs the prepared filter and ruleset and executes the
// worker, which runs confined: a system call outside the profile is the
// dispatcher's to answer, a file outside the ruleset is denied.
func TestTrampoline(t *testing.T) {
	if _, err := LandlockABI(); err != nil {
		t.Skip("no Landlock:", err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	files := Settings{Seccomp: ProfileFiles, ReadOnly: []string{"/usr", "/bin"}}
	for _, tc := range []struct {
		name    string
		script  string
		out     string // in the output
		syscall string // the violation, if any
	}{
		{"runs", "echo hello $BULKHEAD_SANDBOX_TRAMPOLINE$BULKHEAD_EXTRA_FD", "hello", ""},
		{"landlock", "read x < /etc/hostname && echo read || echo denied", "denied", ""},
		{"landlock-allows", "read x < /usr/bin/sh; echo read", "read", ""},
		{"seccomp", "exec /bin/true", "", "execve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, u, err := runTrampolined(t, files, sh, "-c", tc.script)
			if tc.syscall == "" && (err != nil || !strings.Contains(out, tc.out) || strings.TrimSpace(out) != tc.out) {
				t.Fatalf("sh -c %q: %v, output %q, want %q", tc.script, err, out, tc.out)
			}
			if got := ""; u.Violation != nil {
				got = u.Violation.Name
				if got != tc.syscall {
					t.Fatalf("sh -c %q: violation %q, want %q", tc.script, got, tc.syscall)
				}
			} else if tc.syscall != "" {
				t.Fatalf("sh -c %q: no violation (%v, %q), want %s", tc.script, err, out, tc.syscall)
			}
		})
	}
}

// With User and PrivateTmp, the trampoline mounts the private /tmp while
// it still has the dispatcher's privilege, and only then switches to the
// user: the worker runs as that user, in no other group, with an empty
// /tmp and no_new_privs.
func TestTrampolineUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("as root: only root may start a worker as another user")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	script := "id -u; id -g; id -G; ls -A /tmp | wc -l; grep NoNewPrivs /proc/self/status"
	out, _, err := runTrampolined(t, Settings{User: "1:1", PrivateTmp: true}, sh, "-c", script)
	if want := "1\n1\n1\n0\nNoNewPrivs:\t1\n"; err != nil || out != want {
		t.Fatalf("sh -c %q: %v, output %q, want %q", script, err, out, want)
	}
}

func TestTrampolineMsg(t *testing.T) {
	prog, patches, err := compileFilter(&Seccomp{Profile: ProfileFiles})
	if err != nil {
		t.Fatal(err)
	}
	if len(patches) != 2 {
		t.Fatalf("%d placeholders for execveat's pathname, want 2 (its high and low halves)", len(patches))
	}
	m := trampolineMsg{flags: flagSeccomp | flagLandlock | flagUser, uid: 65534, gid: 65533, filter: prog, patches: patches, argv: []string{"w", "", "x y"}}
	b, err := m.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeTrampolineMsg(b)
	if err != nil || !reflect.DeepEqual(*got, m) {
		t.Fatalf("decode(encode(m)) = %+v, %v", got, err)
	}
	got.patch(0x7f12_3456_7000)
	if got.filter[patches[0][0]].K != 0x7f12 || got.filter[patches[1][0]].K != 0x3456_7000 {
		t.Fatalf("patched: %#x %#x", got.filter[patches[0][0]].K, got.filter[patches[1][0]].K)
	}
	for _, bad := range [][]byte{nil, b[:hdrSize], b[:len(b)-1], append(b[:len(b):len(b)], 0)} {
		if _, err := decodeTrampolineMsg(bad); err == nil {
			t.Errorf("decoded %d bytes of a %d-byte message", len(bad), len(b))
		}
	}
}

// FuzzTrampolineMsg: whatever the bytes, the decoder fails or returns a
// message whose patches are within its program, and that encodes back.
func FuzzTrampolineMsg(f *testing.F) {
	m := trampolineMsg{flags: flagSeccomp, filter: []unix.SockFilter{{Code: 6}}, patches: [][2]uint32{{0, 1}}, argv: []string{"a"}}
	b, _ := m.encode()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeTrampolineMsg(b)
		if err != nil {
			return
		}
		for _, p := range m.patches {
			if int(p[0]) >= len(m.filter) {
				t.Fatalf("patch %v outside a program of %d", p, len(m.filter))
			}
		}
		if again, err := m.encode(); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, %v; want %x", again, err, b)
		}
	})
}
