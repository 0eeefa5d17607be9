package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// progress writes status lines to w: on a terminal, one line rewritten in
// place; otherwise a line each time.
type progress struct {
	w       io.Writer
	enabled bool
	tty     bool
	shown   bool
}

func newProgress(w io.Writer, enabled bool) *progress {
	return &progress{w: w, enabled: enabled, tty: isTerminal(w)}
}

func (p *progress) show(line string) {
	if !p.enabled {
		return
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.shown = true
}

// finish shows the last line and leaves the cursor on a fresh line.
func (p *progress) finish(line string) {
	p.show(line)
	if p.enabled && p.tty {
		fmt.Fprintln(p.w)
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
