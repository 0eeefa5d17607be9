package daemon

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Access is who may use a pool or a class: a peer whose uid is in UIDs, or
// whose primary or supplementary group is in GIDs. Empty: the daemon's own
// uid and root.
type Access struct {
	UIDs []int
	GIDs []int
}

// access resolves a's user names.
func (a Allow) access() (Access, error) {
	uids, err := lookupUsers(a.Users)
	if err != nil {
		return Access{}, err
	}
	return Access{UIDs: append(append([]int(nil), a.UIDs...), uids...), GIDs: append([]int(nil), a.GIDs...)}, nil
}

// Peer is a connected client's credentials (SO_PEERCRED), read once at
// accept.
type Peer struct {
	PID, UID, GID int
	Groups        []int // supplementary groups, from /proc at accept
}

// peerOf reads the credentials of the process at the other end of fd.
func peerOf(fd int) (Peer, error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return Peer{}, err
	}
	p := Peer{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}
	p.Groups = groupsOf(p.PID)
	return p, nil
}

// groupsOf reads a process's supplementary groups; none if it cannot.
func groupsOf(pid int) []int {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var gs []int
		for _, g := range strings.Fields(rest) {
			if n, err := strconv.Atoi(g); err == nil {
				gs = append(gs, n)
			}
		}
		return gs
	}
	return nil
}

// allows reports whether a lets p in.
func (a Access) allows(p Peer) bool {
	if len(a.UIDs) == 0 && len(a.GIDs) == 0 {
		return p.UID == 0 || p.UID == os.Getuid()
	}
	if slices.Contains(a.UIDs, p.UID) || slices.Contains(a.GIDs, p.GID) {
		return true
	}
	for _, g := range p.Groups {
		if slices.Contains(a.GIDs, g) {
			return true
		}
	}
	return false
}
