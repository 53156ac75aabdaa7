/* SPDX-License-Identifier: MIT */
/* The wire protocol: every malformed message is rejected, fds travel, nothing leaks. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "protocol.h"

static int nr_open_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 1024; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

static struct msg_hello make_hello(void)
{
	struct msg_hello h;

	memset(&h, 0, sizeof(h));
	proto_init_header(&h.h, MSG_HELLO, sizeof(h), 7);
	h.pid = 1234;
	h.budget_bytes = 64 << 20;
	h.nr_exclude = 2;
	strcpy(h.comm, "app");
	return h;
}

static void test_check(void)
{
	struct msg_hello h = make_hello();
	struct msg_fork f;
	unsigned char buf[MEMEXT_MSG_MAX];
	struct msg_agent_move *m = (struct msg_agent_move *)buf;

	assert(proto_check(&h, sizeof(h)) == 0);
	assert(proto_check(&h, sizeof(h) - 1) == -EBADMSG); /* len != bytes received */
	assert(proto_check(&h, 3) == -EBADMSG);
	h.h.magic ^= 1;
	assert(proto_check(&h, sizeof(h)) == -EBADMSG);
	h = make_hello();
	h.h.version = 99;
	assert(proto_check(&h, sizeof(h)) == -EPROTONOSUPPORT);
	h = make_hello();
	h.nr_exclude = MEMEXT_MAX_EXCLUDE + 1;
	assert(proto_check(&h, sizeof(h)) == -EBADMSG);
	h = make_hello();
	memset(h.comm, 'x', sizeof(h.comm)); /* not NUL-terminated */
	assert(proto_check(&h, sizeof(h)) == -EBADMSG);
	h = make_hello();
	h.pid = 0;
	assert(proto_check(&h, sizeof(h)) == -EBADMSG);
	h = make_hello();
	h.h.type = _MSG_TYPE_MAX;
	assert(proto_check(&h, sizeof(h)) == -EBADMSG);

	/* A fork message with the size of another type. */
	memset(&f, 0, sizeof(f));
	proto_init_header(&f.h, MSG_FORK_PREPARE, sizeof(f), 0);
	assert(proto_check(&f, sizeof(f)) == 0);
	proto_init_header(&f.h, MSG_HELLO, sizeof(f), 0);
	assert(proto_check(&f, sizeof(f)) == -EBADMSG);

	/* A fork child's late agent: its own exact size; the hello keeps its layout. */
	{
		struct msg_agent_started a = {0};

		proto_init_header(&a.h, MSG_AGENT_STARTED, sizeof(a), 0);
		assert(proto_check(&a, sizeof(a)) == 0);
		a.h.len = sizeof(a) - 4;
		assert(proto_check(&a, sizeof(a) - 4) == -EBADMSG);
		assert(MSG_AGENT_STARTED == 14); /* appended: the older types keep their numbers */
		assert(offsetof(struct msg_hello, fork_token) + sizeof(uint32_t) ==
		       offsetof(struct msg_hello, exclude));
	}

	/* The move gate's message: a header alone (the memfd rides along), appended. */
	{
		struct msg_agent_gate g = {0};
		char big[sizeof(g) + 8] = {0};

		proto_init_header(&g.h, MSG_AGENT_GATE, sizeof(g), 0);
		assert(proto_check(&g, sizeof(g)) == 0);
		memcpy(big, &g, sizeof(g));
		((struct msg_header *)big)->len = sizeof(big);
		assert(proto_check(big, sizeof(big)) == -EBADMSG);
		assert(MSG_AGENT_GATE == 15);
	}

	/* MOVE_DONE: the full size, or the size before the written or the unevictable bitmap or the
	 * unreported count (older shims). */
	{
		struct msg_agent_move_done d = {0};
		size_t old = offsetof(struct msg_agent_move_done, written);
		size_t older = offsetof(struct msg_agent_move_done, unevictable);
		size_t unreported = offsetof(struct msg_agent_move_done, nr_unreported);

		proto_init_header(&d.h, MSG_AGENT_MOVE_DONE, sizeof(d), 0);
		assert(proto_check(&d, sizeof(d)) == 0);
		d.h.len = (uint32_t)old;
		assert(proto_check(&d, old) == 0);
		d.h.len = (uint32_t)older;
		assert(proto_check(&d, older) == 0);
		d.h.len = (uint32_t)old - 8;
		assert(proto_check(&d, old - 8) == -EBADMSG);
		d.h.len = (uint32_t)old + 8;
		assert(proto_check(&d, old + 8) == -EBADMSG);
		d.h.len = (uint32_t)older + 8;
		assert(proto_check(&d, older + 8) == -EBADMSG);
		assert(offsetof(struct msg_agent_move_done, nr_failed) <
		       offsetof(struct msg_agent_move_done, written)); /* the old layout is a prefix */
		d.h.len = (uint32_t)unreported;
		assert(proto_check(&d, unreported) == 0);
		d.h.len = (uint32_t)unreported + 4;
		assert(proto_check(&d, unreported + 4) == -EBADMSG);
		assert(older + sizeof(d.unevictable) == unreported);
		assert(unreported + sizeof(d.nr_unreported) + sizeof(d.reserved) == sizeof(d));
	}

	/* MSG_EVICTABLE: appended, a range, its exact size. */
	{
		struct msg_evictable e = {.range = {0x1000, 0x3000}};

		proto_init_header(&e.h, MSG_EVICTABLE, sizeof(e), 0);
		assert(proto_check(&e, sizeof(e)) == 0);
		e.h.len = sizeof(e) - 8;
		assert(proto_check(&e, sizeof(e) - 8) == -EBADMSG);
		assert(MSG_EVICTABLE == 16);
	}

	/* MSG_HAND_BACK and its answer: appended, each of its exact size. */
	{
		struct msg_hand_back hb = {.range = {0x1000, 0x3000}};
		struct msg_hand_back_done done = {.status = -EINVAL};

		proto_init_header(&hb.h, MSG_HAND_BACK, sizeof(hb), 9);
		assert(proto_check(&hb, sizeof(hb)) == 0);
		hb.h.len = sizeof(hb) - 8;
		assert(proto_check(&hb, sizeof(hb) - 8) == -EBADMSG);
		proto_init_header(&done.h, MSG_HAND_BACK_DONE, sizeof(done), 9);
		assert(proto_check(&done, sizeof(done)) == 0);
		/* The one must not pass for the other. */
		done.h.type = MSG_HAND_BACK;
		assert(proto_check(&done, sizeof(done)) == -EBADMSG);
		assert(MSG_HAND_BACK == 17 && MSG_HAND_BACK_DONE == 18);
	}

	/* MSG_NO_UFFD: appended, its exact size, and a command name the daemon may print. */
	{
		struct msg_no_uffd n = {.error = -EPERM};

		strcpy(n.comm, "postgres");
		proto_init_header(&n.h, MSG_NO_UFFD, sizeof(n), 0);
		assert(proto_check(&n, sizeof(n)) == 0);
		n.h.len = sizeof(n) - 8;
		assert(proto_check(&n, sizeof(n) - 8) == -EBADMSG);
		n.h.len = sizeof(n);
		n.pad = 1; /* reserved: zero */
		assert(proto_check(&n, sizeof(n)) == -EBADMSG);
		n.pad = 0;
		memset(n.comm, 'x', sizeof(n.comm)); /* no NUL */
		assert(proto_check(&n, sizeof(n)) == -EBADMSG);
		assert(MSG_NO_UFFD == 19);
	}

	/* MSG_FORK_CHILD (appended: the child of a fork, 0 for none) and MSG_LEAVE_DONE: their
	 * reserved words must be zero, and a child's number is never negative. */
	{
		struct msg_fork_child fc = {.pid = 1234};
		struct msg_leave_done l = {.status = 0};

		proto_init_header(&fc.h, MSG_FORK_CHILD, sizeof(fc), 7);
		assert(proto_check(&fc, sizeof(fc)) == 0);
		fc.pid = 0;
		assert(proto_check(&fc, sizeof(fc)) == 0);
		fc.pid = -1;
		assert(proto_check(&fc, sizeof(fc)) == -EBADMSG);
		fc.pid = 1;
		fc.pad = 1;
		assert(proto_check(&fc, sizeof(fc)) == -EBADMSG);
		assert(MSG_FORK_CHILD == 22);
		proto_init_header(&l.h, MSG_LEAVE_DONE, sizeof(l), 7);
		assert(proto_check(&l, sizeof(l)) == 0);
		l.pad = 1;
		assert(proto_check(&l, sizeof(l)) == -EBADMSG);
	}

	/* Variable-length moves: the count must match the length exactly. */
	memset(buf, 0, sizeof(buf));
	m->nr = 3;
	proto_init_header(&m->h, MSG_AGENT_MOVE, sizeof(*m) + 3 * sizeof(struct move_range), 0);
	assert(proto_check(m, m->h.len) == 0);
	m->nr = 4;
	assert(proto_check(m, m->h.len) == -EBADMSG);
	m->nr = MEMEXT_MAX_MOVE_RANGES + 1;
	m->h.len = (uint32_t)(sizeof(*m) + m->nr * sizeof(struct move_range));
	assert(proto_check(m, m->h.len) == -EBADMSG);
}

static void test_send_recv_fds(void)
{
	struct msg_hello h = make_hello(), got;
	int sv[2], pipefd[2], fds[3] = {-1, -1, -1}, sent[3];
	unsigned nr = 3;
	ssize_t n;
	int before;

	assert(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	assert(pipe(pipefd) == 0);
	before = nr_open_fds();
	sent[0] = pipefd[0];
	sent[1] = pipefd[1];
	sent[2] = sv[0];
	assert(proto_send(sv[0], &h, sizeof(h), sent, 3) == 0);
	n = proto_recv(sv[1], &got, sizeof(got), fds, &nr);
	assert(n == (ssize_t)sizeof(h));
	assert(nr == 3);
	assert(memcmp(&got, &h, sizeof(h)) == 0);
	for (int i = 0; i < 3; i++) {
		assert(fds[i] >= 0);
		assert(fcntl(fds[i], F_GETFD) & FD_CLOEXEC);
	}
	/* The received pipe end works. */
	assert(write(fds[1], "x", 1) == 1);
	char c;
	assert(read(pipefd[0], &c, 1) == 1 && c == 'x');
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	assert(nr_open_fds() == before);

	/* A malformed message with fds: rejected, and its fds are closed, not leaked. */
	h.h.magic = 0;
	assert(proto_send(sv[0], &h, sizeof(h), sent, 2) == 0);
	nr = 3;
	assert(proto_recv(sv[1], &got, sizeof(got), fds, &nr) == -EBADMSG);
	assert(nr == 0);
	assert(nr_open_fds() == before);

	/* More fds than the receiver accepts: rejected, closed. */
	h = make_hello();
	assert(proto_send(sv[0], &h, sizeof(h), sent, 3) == 0);
	nr = 1;
	assert(proto_recv(sv[1], &got, sizeof(got), fds, &nr) == -EBADMSG);
	assert(nr_open_fds() == before);

	/* A message larger than the buffer is truncated: rejected. */
	assert(proto_send(sv[0], &h, sizeof(h), NULL, 0) == 0);
	assert(proto_recv(sv[1], &got, sizeof(got) - 8, NULL, NULL) == -EMSGSIZE);

	/* Orderly shutdown reads as 0. */
	close(sv[0]);
	assert(proto_recv(sv[1], &got, sizeof(got), NULL, NULL) == 0);
	close(sv[1]);
	close(pipefd[0]);
	close(pipefd[1]);
}

int main(void)
{
	test_check();
	test_send_recv_fds();
	printf("protocol: all checks passed\n");
	return 0;
}
