package proc

import (
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// output copies a child's stdout and stderr, one pipe, into w, until the
// child dies; then it takes what the child had written, which is in the
// pipe already, and stops. It does not wait for end of file, which a
// descendant that kept the pipe open could put off for as long as it
// lives: the child's crash report would wait for it.
type output struct {
	r    *os.File
	w    io.Writer
	done chan struct{}
}

// maxDrain bounds what is read after the death: a descendant that keeps
// writing cannot keep the reaping waiting.
const maxDrain = 1 << 20

func newOutput(w io.Writer) (*output, *os.File, error) {
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	return &output{r: r, w: w, done: make(chan struct{})}, pw, nil
}

func (o *output) run() {
	defer close(o.done)
	defer o.r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := o.r.Read(buf)
		if n > 0 {
			_, _ = o.w.Write(buf[:n])
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			o.drain(buf)
			return
		}
		if err != nil {
			return // end of file: nobody holds the pipe any more
		}
	}
}

// drain reads what is in the pipe now, without waiting for more.
func (o *output) drain(buf []byte) {
	rc, err := o.r.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		for total := 0; total < maxDrain; {
			n, err := unix.Read(int(fd), buf)
			if n <= 0 || err != nil {
				return // EAGAIN: empty; 0: end of file
			}
			_, _ = o.w.Write(buf[:n])
			total += n
		}
	})
}

// stop ends the copying once the child has died, and waits for it.
func (o *output) stop() {
	_ = o.r.SetReadDeadline(time.Now())
	<-o.done
}
