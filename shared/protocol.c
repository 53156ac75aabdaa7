/* SPDX-License-Identifier: MIT */
#include "protocol.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

void proto_init_header(struct msg_header *h, enum msg_type type, uint32_t len, uint32_t seq)
{
	h->magic = MEMEXT_PROTO_MAGIC;
	h->version = MEMEXT_PROTO_VERSION;
	h->type = (uint16_t)type;
	h->len = len;
	h->seq = seq;
}

/* A command name the daemon may print: NUL-terminated within its 16 bytes. */
static bool comm_ok(const char comm[16])
{
	return memchr(comm, 0, 16) != NULL;
}

static int check_hello(const struct msg_hello *m)
{
	if (m->nr_exclude > MEMEXT_MAX_EXCLUDE)
		return -EBADMSG;
	if (!comm_ok(m->comm))
		return -EBADMSG;
	if (m->pid <= 0)
		return -EBADMSG;
	return 0;
}

/* The size of every message of a fixed size; 0: none of that type (or a variable size). */
static const size_t fixed_size[_MSG_TYPE_MAX] = {
	[MSG_HELLO_ACK] = sizeof(struct msg_hello_ack),
	[MSG_FORK_PREPARE] = sizeof(struct msg_fork),
	[MSG_FORK_READY] = sizeof(struct msg_fork),
	[MSG_FORK_DONE] = sizeof(struct msg_fork),
	[MSG_AGENT_MOVE_DONE] = sizeof(struct msg_agent_move_done),
	[MSG_AGENT_FREE] = sizeof(struct msg_agent_free),
	[MSG_AGENT_RELEASE] = sizeof(struct msg_agent_release),
	[MSG_AGENT_ARM] = sizeof(struct msg_agent_arm),
	[MSG_AGENT_PMEM] = sizeof(struct msg_agent_pmem),
	[MSG_CONTROL_ATTACH] = sizeof(struct msg_control_attach),
	[MSG_AGENT_BUDGET] = sizeof(struct msg_agent_budget),
	[MSG_AGENT_STARTED] = sizeof(struct msg_agent_started),
	[MSG_AGENT_GATE] = sizeof(struct msg_agent_gate),
	[MSG_EVICTABLE] = sizeof(struct msg_evictable),
	[MSG_HAND_BACK] = sizeof(struct msg_hand_back),
	[MSG_HAND_BACK_DONE] = sizeof(struct msg_hand_back_done),
	[MSG_NO_UFFD] = sizeof(struct msg_no_uffd),
	[MSG_LEAVE] = sizeof(struct msg_leave),
	[MSG_LEAVE_DONE] = sizeof(struct msg_leave_done),
	[MSG_FORK_CHILD] = sizeof(struct msg_fork_child),
};

int proto_check(const void *buf, size_t n)
{
	const struct msg_header *h = buf;
	size_t want;

	if (n < sizeof(*h))
		return -EBADMSG;
	if (h->magic != MEMEXT_PROTO_MAGIC)
		return -EBADMSG;
	if (h->version != MEMEXT_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	if (h->len != n)
		return -EBADMSG;

	if (h->type == MSG_HELLO)
		return n == sizeof(struct msg_hello) ? check_hello(buf) : -EBADMSG;
	if (h->type == MSG_FORK_CHILD) {
		const struct msg_fork_child *m = buf;

		return n == sizeof(*m) && m->pid >= 0 && m->pad == 0 ? 0 : -EBADMSG;
	}
	if (h->type == MSG_LEAVE_DONE) {
		const struct msg_leave_done *m = buf;

		return n == sizeof(*m) && m->pad == 0 ? 0 : -EBADMSG;
	}
	if (h->type == MSG_NO_UFFD) {
		const struct msg_no_uffd *m = buf;

		return n == sizeof(*m) && m->pad == 0 && comm_ok(m->comm) ? 0 : -EBADMSG;
	}
	if (h->type == MSG_AGENT_MOVE) {
		const struct msg_agent_move *m = buf;

		if (n < sizeof(*m) || m->nr > MEMEXT_MAX_MOVE_RANGES)
			return -EBADMSG;
		want = sizeof(*m) + m->nr * sizeof(struct move_range);
	} else if (h->type == MSG_AGENT_MOVE_DONE &&
		   (n == offsetof(struct msg_agent_move_done, written) ||
		    n == offsetof(struct msg_agent_move_done, unevictable) ||
		    n == offsetof(struct msg_agent_move_done, nr_unreported))) {
		/* An application still running the shim of a memextd before an upgrade. */
		return 0;
	} else {
		want = h->type < _MSG_TYPE_MAX ? fixed_size[h->type] : 0;
	}
	return want && n == want ? 0 : -EBADMSG;
}

/*
 * Sending, receiving and closing are raw system calls: the shim's agent uses these, and glibc's
 * wrappers of calls that can be cancelled read a flag in libc's data (__libc_single_threaded)
 * first. Were that page evicted while the daemon died, the agent would fault on it and wait for
 * ever, never reconnecting (the shim also keeps libc's data unregistered, shim.c).
 */
int proto_send(int sock, const void *msg, size_t len, const int *fds, unsigned nr_fds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MEMEXT_MAX_FDS)];
	} control;
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nr_fds > MEMEXT_MAX_FDS)
		return -EINVAL;
	if (nr_fds > 0) {
		struct cmsghdr *c;

		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nr_fds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nr_fds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nr_fds);
	}
	do
		n = syscall(SYS_sendmsg, sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

static void close_all(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		(void)syscall(SYS_close, fds[i]);
}

ssize_t proto_recv(int sock, void *buf, size_t len, int *fds, unsigned *nr_fds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MEMEXT_MAX_FDS)];
	} control;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	int got[MEMEXT_MAX_FDS];
	unsigned nr_got = 0, max = nr_fds ? *nr_fds : 0;
	ssize_t n;
	int r;

	do
		n = syscall(SYS_recvmsg, sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (unsigned i = 0; i < k && nr_got < MEMEXT_MAX_FDS; i++)
			memcpy(&got[nr_got++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	if (nr_fds)
		*nr_fds = 0;
	/* MSG_CTRUNC alone: fds that found no free number in our table were dropped; the
	 * message is whole, and the caller sees how many fds came. */
	if (mh.msg_flags & MSG_TRUNC) {
		close_all(got, nr_got);
		return -EMSGSIZE;
	}
	if (n == 0) {
		close_all(got, nr_got);
		return 0;
	}
	r = proto_check(buf, (size_t)n);
	if (r < 0 || nr_got > max) {
		close_all(got, nr_got);
		return r < 0 ? r : -EBADMSG;
	}
	if (nr_got) {
		memcpy(fds, got, nr_got * sizeof(int));
		*nr_fds = nr_got;
	}
	return n;
}
