package proc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Child is a child process as /proc shows it.
type Child struct {
	PID   int
	State string // "R", "S", … ; "Z" for a zombie
}

func (c Child) String() string { return strconv.Itoa(c.PID) + ":" + c.State }

// Zombie reports whether the child has exited and awaits reaping.
func (c Child) Zombie() bool { return c.State == "Z" }

// Children lists pid's child processes, zombies included. Tests and the
// chaos soak use it to prove that nothing was left behind.
func Children(pid int) []Child {
	want := strconv.Itoa(pid)
	var out []Child
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // it went away while we looked
		}
		fields := statFields(string(b))
		if len(fields) > 1 && fields[1] == want {
			if n, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
				out = append(out, Child{PID: n, State: fields[0]})
			}
		}
	}
	return out
}

// statFields returns the fields of a /proc/<pid>/stat line after the
// command name, which may itself contain spaces and parentheses: state,
// ppid, pgrp, session, tty_nr, tpgid, flags, …
func statFields(s string) []string {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}
