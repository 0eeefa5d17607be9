//go:build cgo

// The trampoline, in C (see trampoline.go): a constructor, which the C
// library runs before main and so before the Go runtime starts, the way
// runc's nsenter does. A process started without BULKHEAD_SANDBOX_TRAMPOLINE
// returns from it at once. A trampoline applies what the dispatcher
// prepared, on its only thread, and executes the worker; it never returns.
// Starting a second Go runtime (and every package's init) for that cost
// more than the worker's own start.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif

// As trampoline.go.
#define TRAMPOLINE_MAGIC 0x4248544d
#define FLAG_PRIVATE_TMP 1
#define FLAG_LANDLOCK 2
#define FLAG_SECCOMP 4
#define FLAG_USER 8
#define MAX_FILTER 4096
#define MAX_PATCHES 16
#define MAX_ARGV_BYTES (128 << 10)

struct bh_hdr {
	uint32_t magic, flags, nfilter, npatch, argvlen, uid, gid;
};
struct bh_patch {
	uint32_t index, half;
};

extern char **environ;

// bh_fail tells the dispatcher which protection failed and why, and exits
// as a worker that refuses its environment does (docs/PROTOCOL.md).
static void bh_fail(int sock, const char *prot, const char *why, int err) {
	char msg[512];
	int n = snprintf(msg, sizeof msg, "error: %s%c%s%s%s", prot, 0, why, err ? ": " : "", err ? strerror(err) : "");
	if (n < 0)
		n = 0;
	if (n > (int)sizeof msg)
		n = sizeof msg;
	if (sock >= 0)
		send(sock, msg, n, MSG_NOSIGNAL);
	dprintf(2, "bulkhead sandbox: %s: %s%s%s\n", prot, why, err ? ": " : "", err ? strerror(err) : "");
	_exit(78);
}

// bh_fail_mount is bh_fail for PrivateTmp's mounts, with what the kernel
// looked at: the trampoline's uid and whether it had CAP_SYS_ADMIN (over
// its mount namespace, made with it at the clone).
static void bh_fail_mount(int sock, const char *what, int err) {
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2] = {{0}};
	int admin = syscall(SYS_capget, &hdr, data) == 0 && (data[0].effective & (1U << CAP_SYS_ADMIN));
	char why[256];
	snprintf(why, sizeof why, "private_tmp (PrivateTmp): %s: %s (the trampoline runs as uid %u %s)", what, strerror(err),
		 (unsigned)geteuid(),
		 admin ? "with CAP_SYS_ADMIN: a security module or the host's mount policy refused it"
		       : "without CAP_SYS_ADMIN over its mount namespace");
	bh_fail(sock, "namespaces", why, 0);
}

// bh_switch_user makes the trampoline, and so the worker, uid:gid with no
// supplementary groups (User), once the privileged steps are done. Each
// step is checked, and so is the result: a worker that is not exactly that
// user, or could become root again, does not start. The switch clears the
// parent-death signal (prctl(2)): it is set again.
static void bh_switch_user(int sock, uint32_t uid, uint32_t gid) {
	int pdeath = 0;
	if (prctl(PR_GET_PDEATHSIG, &pdeath, 0, 0, 0) < 0)
		bh_fail(sock, "user", "prctl(PR_GET_PDEATHSIG)", errno);
	pid_t ppid = getppid();
	if (setgroups(0, NULL) < 0)
		bh_fail(sock, "user", "dropping the supplementary groups (setgroups)", errno);
	if (setresgid(gid, gid, gid) < 0)
		bh_fail(sock, "user", "setresgid", errno);
	if (setresuid(uid, uid, uid) < 0)
		bh_fail(sock, "user", "setresuid", errno);
	uid_t r, e, s;
	gid_t rg, eg, sg;
	if (getresuid(&r, &e, &s) < 0 || getresgid(&rg, &eg, &sg) < 0 || r != uid || e != uid || s != uid ||
	    rg != gid || eg != gid || sg != gid || getgroups(0, NULL) != 0)
		bh_fail(sock, "user", "after the switch, the worker's ids are not the ones asked for", 0);
	if (uid != 0 && setuid(0) != -1)
		bh_fail(sock, "user", "after the switch, the worker could become root again", 0);
	if (pdeath) {
		if (prctl(PR_SET_PDEATHSIG, pdeath, 0, 0, 0) < 0)
			bh_fail(sock, "user", "prctl(PR_SET_PDEATHSIG) after the switch", errno);
		if (getppid() != ppid)
			bh_fail(sock, "sandbox", "the dispatcher died during the start", 0);
	}
}

// bh_env is environ less the trampoline's own variables.
static char **bh_env(void) {
	size_t n = 0;
	while (environ[n])
		n++;
	char **out = calloc(n + 1, sizeof *out);
	if (!out)
		return NULL;
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		if (strncmp(environ[i], "BULKHEAD_SANDBOX_TRAMPOLINE=", 28) == 0 ||
		    strncmp(environ[i], "BULKHEAD_EXTRA_FD=", 18) == 0)
			continue;
		out[j++] = environ[i];
	}
	return out;
}

// bh_argv splits the message's NUL-ended strings.
static char **bh_argv(char *p, uint32_t len) {
	size_t n = 0;
	for (uint32_t i = 0; i < len; i++)
		n += p[i] == 0;
	char **out = calloc(n + 1, sizeof *out);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		out[i] = p;
		p += strlen(p) + 1;
	}
	return out;
}

// bh_pidns_init is PID 1 of a worker's PID namespace (pidns.go): it reaps
// the orphans reparented to it until descriptor 3, a pipe from the
// dispatcher, reports the end; its exit kills every process left in the
// namespace.
static void bh_pidns_init(void) {
	// Nothing but the pipe: descriptors the dispatcher inherited without
	// close-on-exec would otherwise stay open as long as the namespace.
	syscall(SYS_close_range, 4, ~0U, 0);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	struct pollfd p[2] = {{.fd = 3, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
	for (;;) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (poll(p, sfd >= 0 ? 2 : 1, sfd >= 0 ? -1 : 1000) < 0 && errno != EINTR)
			_exit(1);
		if (p[0].revents)
			_exit(0);
		struct signalfd_siginfo si;
		while (sfd >= 0 && read(sfd, &si, sizeof si) > 0)
			;
	}
}

__attribute__((constructor)) static void bulkhead_trampoline(void) {
	if (getenv("BULKHEAD_SANDBOX_PIDNS_INIT"))
		bh_pidns_init();
	if (!getenv("BULKHEAD_SANDBOX_TRAMPOLINE"))
		return;
	const char *fdenv = getenv("BULKHEAD_EXTRA_FD");
	int sock = fdenv ? atoi(fdenv) : -1;
	if (sock < 3)
		bh_fail(-1, "sandbox", "no socket (BULKHEAD_EXTRA_FD)", 0);

	size_t cap = sizeof(struct bh_hdr) + 8 * (MAX_FILTER + MAX_PATCHES) + MAX_ARGV_BYTES + 1;
	char *buf = malloc(cap);
	union {
		char b[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = {.iov_base = buf, .iov_len = cap};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b, .msg_controllen = sizeof cbuf.b};
	if (!buf)
		bh_fail(sock, "sandbox", "receiving the trampoline's settings", ENOMEM);
	ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	if (n < 0)
		bh_fail(sock, "sandbox", "receiving the trampoline's settings", errno);
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		bh_fail(sock, "sandbox", "receiving the trampoline's settings: a truncated message", 0);
	int fds[2] = {-1, -1}, nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && nfds == 0) {
			nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(fds, CMSG_DATA(c), (nfds < 2 ? nfds : 2) * sizeof(int));
		}
	}

	// Every count is checked against the message's length.
	struct bh_hdr h;
	if ((size_t)n < sizeof h)
		bh_fail(sock, "sandbox", "receiving the trampoline's settings: a short message", 0);
	memcpy(&h, buf, sizeof h);
	if (h.magic != TRAMPOLINE_MAGIC || h.nfilter > MAX_FILTER || h.npatch > MAX_PATCHES || h.argvlen > MAX_ARGV_BYTES ||
	    (size_t)n != sizeof h + 8 * (size_t)h.nfilter + 8 * (size_t)h.npatch + h.argvlen ||
	    h.argvlen == 0 || buf[n - 1] != 0)
		bh_fail(sock, "sandbox", "receiving the trampoline's settings: a bad message", 0);
	if (nfds != ((h.flags & FLAG_LANDLOCK) ? 2 : 1))
		bh_fail(sock, "sandbox", "receiving the trampoline's settings: not the descriptors expected", 0);
	int exe = fds[0], ruleset = (h.flags & FLAG_LANDLOCK) ? fds[1] : -1;
	struct sock_filter *filter = (struct sock_filter *)(buf + sizeof h);
	struct bh_patch *patches = (struct bh_patch *)(buf + sizeof h + 8 * (size_t)h.nfilter);
	char **argv = bh_argv(buf + sizeof h + 8 * (size_t)h.nfilter + 8 * (size_t)h.npatch, h.argvlen);
	char **envp = bh_env();
	if (!argv || !envp)
		bh_fail(sock, "sandbox", "worker arguments", ENOMEM);

	// The pathname execveat is given lives on a page of its own, at an
	// address the kernel chose at random: the filter lets through only an
	// execveat with that pointer.
	char *page = mmap(NULL, sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		bh_fail(sock, "sandbox", "mmap", errno);
	uint64_t addr = (uint64_t)(uintptr_t)page;
	for (uint32_t i = 0; i < h.npatch; i++) {
		if (patches[i].index >= h.nfilter || patches[i].half > 1)
			bh_fail(sock, "sandbox", "receiving the trampoline's settings: a bad patch", 0);
		filter[patches[i].index].k = patches[i].half ? (uint32_t)addr : (uint32_t)(addr >> 32);
	}
	if (fcntl(sock, F_SETFD, FD_CLOEXEC) < 0)
		bh_fail(sock, "sandbox", "marking the trampoline's socket close-on-exec", errno);

	// The privileged steps first, then the switch to the user, which
	// drops the privilege they need.
	if (h.flags & FLAG_PRIVATE_TMP) {
		if (mount("", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			bh_fail_mount(sock, "making the worker's mounts private", errno);
		if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m") < 0)
			bh_fail_mount(sock, "mounting a private /tmp", errno);
	}
	if (h.flags & FLAG_USER)
		bh_switch_user(sock, h.uid, h.gid);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		bh_fail(sock, "no_new_privs", "prctl(PR_SET_NO_NEW_PRIVS)", errno);
	if (ruleset >= 0) {
		if (syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
			bh_fail(sock, "landlock", "restricting the worker's file access", errno);
		close(ruleset);
	}
	int listener = -1;
	if (h.flags & FLAG_SECCOMP) {
		struct sock_fprog prog = {.len = (unsigned short)h.nfilter, .filter = filter};
		listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
		if (listener < 0)
			bh_fail(sock, "seccomp", "seccomp(SECCOMP_SET_MODE_FILTER)", errno);
	}
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} rbuf;
	struct iovec ok = {.iov_base = "ok", .iov_len = 2};
	struct msghdr rh = {.msg_iov = &ok, .msg_iovlen = 1};
	if (listener >= 0) {
		rh.msg_control = rbuf.b;
		rh.msg_controllen = sizeof rbuf.b;
		struct cmsghdr *c = CMSG_FIRSTHDR(&rh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &listener, sizeof(int));
	}
	if (sendmsg(sock, &rh, MSG_NOSIGNAL) < 0)
		bh_fail(sock, "sandbox", "answering the dispatcher", errno);
	if (listener >= 0)
		close(listener);
	syscall(SYS_execveat, exe, page, argv, envp, AT_EMPTY_PATH);
	bh_fail(sock, "sandbox", "execveat of the worker binary", errno);
}
