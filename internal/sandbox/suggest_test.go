package sandbox

import (
	"slices"
	"strings"
	"testing"
)

func TestSuggest(t *testing.T) {
	for _, tt := range []struct {
		name, log string
		want      Suggestion
		err       string
	}{
		{"json", `{"time":"x","level":"WARN","msg":"sandbox: system call outside the seccomp profile","syscall":"socket","nr":41,"pid":7,"profile":"files"}
{"msg":"worker started"}
{"msg":"sandbox: system call outside the seccomp profile","syscall":"connect","profile":"files"}
{"msg":"sandbox: system call outside the seccomp profile","syscall":"socket","profile":"files"}
`, Suggestion{Profile: "files", Allow: []string{"connect", "socket"}, Records: 3}, ""},
		{"text", `time=x level=WARN msg="sandbox: system call outside the seccomp profile" syscall=ptrace nr=101 pid=9 profile=compute` + "\n",
			Suggestion{Profile: "compute", Allow: []string{"ptrace"}, Records: 1}, ""},
		{"none", "nothing here\n", Suggestion{}, ""},
		{"unknown", `{"msg":"sandbox: system call outside the seccomp profile","syscall":"nosuchcall","profile":"files"}`, Suggestion{}, "line 1"},
		{"two profiles", `msg="sandbox: system call outside the seccomp profile" syscall=read profile=files
msg="sandbox: system call outside the seccomp profile" syscall=read profile=compute`, Suggestion{}, "line 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Suggest(strings.NewReader(tt.log))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one naming %s", err, tt.err)
				}
				return
			}
			if err != nil || got.Profile != tt.want.Profile || got.Records != tt.want.Records || !slices.Equal(got.Allow, tt.want.Allow) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func FuzzSuggest(f *testing.F) {
	f.Add(`{"msg":"sandbox: system call outside the seccomp profile","syscall":"socket","profile":"files"}`)
	f.Add(`msg="sandbox: system call outside the seccomp profile" syscall=read profile=files`)
	f.Fuzz(func(t *testing.T, log string) {
		s, err := Suggest(strings.NewReader(log))
		if err != nil {
			return
		}
		for _, n := range s.Allow {
			if SyscallNumber(n) < 0 {
				t.Fatalf("suggested %q, no system call", n)
			}
		}
	})
}

// The profiles assemble, and the names they use exist here.
func TestProfilesAssemble(t *testing.T) {
	for _, p := range []string{ProfileCompute, ProfileFiles} {
		s := Seccomp{Profile: p, Allow: []string{"socket"}, Deny: []string{"read"}}
		if err := s.validate(); err != nil {
			t.Fatal(err)
		}
		pol, err := s.policy(0x1000)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pol.Assemble(); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	if err := (&Seccomp{Profile: "bogus"}).validate(); err == nil {
		t.Fatal("a bogus profile validated")
	}
	if err := (&Seccomp{Profile: "files", Deny: []string{"nosuch"}}).validate(); err == nil {
		t.Fatal("a bogus system call validated")
	}
}
