package bulkhead_test

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/internal/fdio"
	"github.com/bulkhead-go/bulkhead/internal/wire"
	"golang.org/x/sys/unix"
)

// lieArgs are the "lie" method's: write a REPLY for request ID whose
// payload is lies[Kind], then hang.
type lieArgs struct {
	Kind string
	ID   uint64
}

// lies are REPLY payloads that break PROTOCOL.md section 5.
var lies = map[string][]byte{
	"deep":     append(bytes.Repeat([]byte{0x81}, 10000), 0x00),
	"hugemap":  {0xbb, 0, 0, 0, 1, 0, 0, 0, 0},
	"indef":    {0x7f, 0x61, 'a'},
	"trailing": {0x01, 0x02},
	"empty":    {},
	"tag":      {0xc1, 0x01},
}

// startOrphan starts a process in a session of its own, out of reach of
// the pool's kill of the worker's process group, that keeps the worker's
// socket (fd) and answers request id once the worker has exited.
func startOrphan(fd int, id uint64) {
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	cmd.Env = bulkhead.HelperEnviron("orphan", "HELPER_ORPHAN="+strconv.FormatUint(id, 10),
		"HELPER_ORPHAN_PARENT="+strconv.Itoa(os.Getpid()))
	cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(fd), "socket")} // fd 3 in the child
	cmd.Stderr = os.Stderr                                         // it holds the worker's stderr too: the reaping waits
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		panic(err)
	}
}

// runOrphan is the orphan: it waits for its parent, the worker, to exit,
// gives the dispatcher time to see it, then answers on the socket.
func runOrphan() {
	id, _ := strconv.ParseUint(os.Getenv("HELPER_ORPHAN"), 10, 64)
	ppid, _ := strconv.Atoi(os.Getenv("HELPER_ORPHAN_PARENT"))
	if pfd, err := unix.PidfdOpen(ppid, 0); err == nil {
		fds := []unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}}
		unix.Poll(fds, 5000)
	}
	time.Sleep(100 * time.Millisecond) // a slow descendant, not synchronisation
	var b wire.Builder
	_ = b.Raw(wire.TypeReply, id, []byte{0x01}, wire.MaxMaxFrame)
	fdio.FD(3).Write(b.Bytes())
	os.Exit(0)
}
