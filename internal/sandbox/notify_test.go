package sandbox

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The supervisor fails the start on any answer but "ok" with the listener
// when a filter was asked for: a fork server whose clones do not apply the
// message (an older C SDK) closes the socket or answers without one, and
// its clone must not serve.
func TestSupervisorAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sc     Seccomp
		answer []byte // nil: the other end closes
		want   string // "" for no failure
	}{
		{"closed", Seccomp{Profile: ProfileCompute}, nil, "sent no listener"},
		{"closed, no filter asked", Seccomp{}, nil, "sent no listener"},
		{"ok without listener", Seccomp{Profile: ProfileCompute}, []byte("ok"), "without the filter's listener"},
		{"ok, no filter asked", Seccomp{}, []byte("ok"), ""},
		{"error", Seccomp{Profile: ProfileCompute}, []byte("error: landlock\x00no ruleset"), "no ruleset"},
		{"garbage", Seccomp{}, []byte("hello"), "sent \"hello\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			sv, err := newSupervisor(os.NewFile(uintptr(fds[0]), "report"), 5*time.Second, &tc.sc, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if tc.answer != nil {
				if _, err := unix.Write(fds[1], tc.answer); err != nil {
					t.Fatal(err)
				}
			}
			unix.Close(fds[1])
			why := sv.wait()
			sv.stop()
			switch {
			case tc.want == "" && why != nil:
				t.Fatalf("failure %v; want none", why)
			case tc.want != "" && (why == nil || !strings.Contains(why.Error(), tc.want)):
				t.Fatalf("failure %v; want one saying %q", why, tc.want)
			}
		})
	}
}
