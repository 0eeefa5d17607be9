package sandbox

import (
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Credential resolves spec, a user name or "uid" or "uid:gid", to the
// credential a worker is started with. Only root may start processes as
// another user: a dispatcher that is not root gets an *Error naming the
// missing privilege. Supplementary groups are dropped. A dispatcher that
// is not root, already the user and in no other group, has nothing to
// change: nil.
func Credential(spec string) (*syscall.Credential, error) {
	uid, gid, err := Lookup(spec)
	if err != nil {
		return nil, err
	}
	if euid := os.Geteuid(); euid != 0 {
		if uint32(euid) != uid || uint32(os.Getegid()) != gid {
			return nil, fail("user", nil, "running workers as %q needs CAP_SETUID and CAP_SETGID: the dispatcher runs as uid %d, not root", spec, euid)
		}
		groups, err := os.Getgroups()
		if err != nil || slices.ContainsFunc(groups, func(g int) bool { return uint32(g) != gid }) {
			return nil, fail("user", err, "running workers as %q without the dispatcher's other groups %v needs CAP_SETGID: the dispatcher runs as uid %d, not root", spec, groups, euid)
		}
		return nil, nil
	}
	return &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}, nil
}

// Lookup resolves spec without checking privileges.
func Lookup(spec string) (uid, gid uint32, err error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		uid, gid = uint32(n), uint32(n)
		if u, err := user.LookupId(name); err == nil {
			if g, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
				gid = uint32(g)
			}
		}
	} else {
		u, err := user.Lookup(name)
		if err != nil {
			return 0, 0, fail("user", err, "no user %q", name)
		}
		n, err1 := strconv.ParseUint(u.Uid, 10, 32)
		g, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			return 0, 0, fail("user", nil, "user %q has uid %q, gid %q", name, u.Uid, u.Gid)
		}
		uid, gid = uint32(n), uint32(g)
	}
	if hasGroup {
		g, err := strconv.ParseUint(group, 10, 32)
		if err != nil {
			grp, lerr := user.LookupGroup(group)
			if lerr != nil {
				return 0, 0, fail("user", lerr, "no group %q", group)
			}
			if g, err = strconv.ParseUint(grp.Gid, 10, 32); err != nil {
				return 0, 0, fail("user", err, "group %q has gid %q", group, grp.Gid)
			}
		}
		gid = uint32(g)
	}
	return uid, gid, nil
}
