package sandbox

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// LogMessage is the message of the log record that seccomp's log mode
// writes for each system call outside the profile.
const LogMessage = "sandbox: system call outside the seccomp profile"

// Suggestion is a seccomp profile made from a log-mode run: the profile it
// ran with and the system calls to allow on top of it.
type Suggestion struct {
	Profile string   `json:"profile"`
	Allow   []string `json:"allow"`
	Records int      `json:"records"` // log records read
}

// Suggest reads a log written in seccomp's log mode, one record a line, as
// slog's JSON handler writes it ({"msg":..., "syscall":..., "profile":...})
// or its text handler (msg="..." syscall=... profile=...), skipping every
// other line, and suggests the allow list that would have let the run
// through. A line longer than 1 MiB is an error; two profiles in one log
// are too.
func Suggest(r io.Reader) (Suggestion, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var s Suggestion
	allow := map[string]bool{}
	for line := 1; sc.Scan(); line++ {
		name, profile, ok := parseLogLine(sc.Text())
		if !ok {
			continue
		}
		if SyscallNumber(name) < 0 {
			return s, fmt.Errorf("line %d: %q is no system call of this architecture", line, name)
		}
		if s.Records > 0 && profile != s.Profile {
			return s, fmt.Errorf("line %d: profile %q, but earlier lines had %q: suggest from one run at a time", line, profile, s.Profile)
		}
		s.Profile = profile
		s.Records++
		allow[name] = true
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	for n := range allow {
		s.Allow = append(s.Allow, n)
	}
	slices.Sort(s.Allow)
	return s, nil
}

// parseLogLine finds the system call and profile of one log-mode record.
func parseLogLine(line string) (name, profile string, ok bool) {
	if !strings.Contains(line, LogMessage) {
		return "", "", false
	}
	if strings.HasPrefix(strings.TrimSpace(line), "{") {
		var r struct {
			Msg     string `json:"msg"`
			Syscall string `json:"syscall"`
			Profile string `json:"profile"`
		}
		if json.Unmarshal([]byte(line), &r) != nil || r.Msg != LogMessage || r.Syscall == "" {
			return "", "", false
		}
		return r.Syscall, r.Profile, true
	}
	for _, f := range strings.Fields(line) {
		if v, found := strings.CutPrefix(f, "syscall="); found {
			name = v
		} else if v, found := strings.CutPrefix(f, "profile="); found {
			profile = v
		}
	}
	return name, profile, name != ""
}
