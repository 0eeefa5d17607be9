package stackscan

import (
	"strconv"
	"strings"
)

// Header is the first line of a Report's text: what it is, and how far to
// trust it.
const Header = "scanned stacks (heuristic: return addresses found on each blocked thread's stack, not unwound; a stale one may show)"

// String is the report for a log: a header line, then a line per thread,
// "thread TID NAME: blocked in SYSCALL: f+0x1 (file) <- g+0x2 (file) ...",
// or why it shows no frames.
func (r Report) String() string {
	var b strings.Builder
	b.WriteString(Header + " of pid " + strconv.Itoa(r.PID))
	if r.Err != nil {
		b.WriteString(": " + r.Err.Error())
		return b.String()
	}
	for _, t := range r.Threads {
		b.WriteString("\nthread " + strconv.Itoa(t.TID) + " " + strconv.Quote(t.Name) + ": ")
		b.WriteString(t.where())
		for i, f := range t.Frames {
			if i > 0 {
				b.WriteString(" ← ")
			}
			b.WriteString(f.String())
		}
		if len(t.Frames) > 0 && t.NoStack != "" {
			b.WriteString(" (" + t.NoStack + ")")
		}
	}
	if r.More > 0 {
		b.WriteString("\n" + strconv.Itoa(r.More) + " more threads not scanned")
	}
	return b.String()
}

// where says what the thread is doing, before its frames.
func (t Thread) where() string {
	switch {
	case t.State.Running:
		return "running in user code"
	case len(t.Frames) == 0 && t.NoStack != "":
		return t.NoStack
	case t.State.NR < 0:
		return "blocked outside a syscall: "
	}
	nr := strconv.FormatInt(t.State.NR, 10)
	if n := syscallName(t.State.NR); n != "" {
		return "blocked in " + n + " (syscall " + nr + "): "
	}
	return "blocked in syscall " + nr + ": "
}

// Funcs is the names of the functions of every thread's frames, for a
// test or a search; "" for unnamed frames.
func (r Report) Funcs() []string {
	var fs []string
	for _, t := range r.Threads {
		for _, f := range t.Frames {
			fs = append(fs, f.Func)
		}
	}
	return fs
}
