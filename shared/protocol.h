/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The wire protocol between libmemext.so and memextd.
 *
 * Two SOCK_SEQPACKET unix sockets per client, so every message arrives whole or not at all:
 *
 *   control  the shim connects to memextd's client socket. It sends MSG_HELLO with four fds
 *            (SCM_RIGHTS, in this order): the userfaultfd, a pidfd of the process, its end of
 *            the agent socketpair, and its /proc/self/pagemap (which memextd could not open
 *            for another user's process without CAP_DAC_READ_SEARCH). memextd answers
 *            MSG_HELLO_ACK (and sends the agent its pmem memfd, MSG_AGENT_PMEM, and the move
 *            gate, MSG_AGENT_GATE). Later the
 *            shim sends MSG_FORK_PREPARE (answered by MSG_FORK_READY once eviction is paused
 *            and the evicted pages are snapshotted for the child, or, where they cannot be
 *            shared, brought back) and MSG_FORK_DONE (the parent resumes). The header's seq
 *            of FORK_PREPARE is a random token; the child's hello (HELLO_FORK_CHILD) names it
 *            and its parent's pid to claim the shared pages (daemon/forkshare.h). After
 *            munlock(), munlockall() or mprotect() it may send MSG_EVICTABLE, and when the
 *            application's own userfaultfd cannot register memory memextd manages, MSG_HAND_BACK
 *            (answered by MSG_HAND_BACK_DONE). A process that cannot make a userfaultfd sends
 *            MSG_NO_UFFD instead of the hello, and closes the socket.
 *   agent    daemon -> shim agent thread: MSG_AGENT_MOVE asks it to UFFDIO_MOVE ranges of the
 *            application into its staging area (answered by MSG_AGENT_MOVE_DONE, a bitmap of
 *            the staging pages that now hold a page); MSG_AGENT_FREE asks it to MADV_DONTNEED the staging area (no answer:
 *            the agent handles messages in order, so the next MOVE finds staging empty).
 *
 * Every message starts with struct msg_header. A receiver checks magic, version, that len is
 * the number of bytes received, and the exact size each type has (proto_check()); anything else
 * is a protocol error and the peer is dropped. Integers are host-endian: both ends run on one
 * machine. Units are in the field names.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MEMEXT_PROTO_MAGIC 0x584d454dU /* "MEMX" little-endian */
#define MEMEXT_PROTO_VERSION 1

#define MEMEXT_MAX_EXCLUDE 8        /* shim-owned ranges the daemon must never register */
#define MEMEXT_MAX_MOVE_RANGES 256  /* ranges in one MSG_AGENT_MOVE */
#define MEMEXT_MAX_FDS 5

enum msg_type {
	MSG_HELLO = 1,
	MSG_HELLO_ACK,
	MSG_FORK_PREPARE,
	MSG_FORK_READY,
	MSG_FORK_DONE,
	MSG_AGENT_MOVE,
	MSG_AGENT_MOVE_DONE,
	MSG_AGENT_FREE,
	MSG_AGENT_RELEASE,
	MSG_AGENT_ARM,
	MSG_AGENT_PMEM,
	MSG_CONTROL_ATTACH,
	MSG_AGENT_BUDGET,
	MSG_AGENT_STARTED,
	MSG_AGENT_GATE,
	MSG_EVICTABLE,
	MSG_HAND_BACK,
	MSG_HAND_BACK_DONE,
	MSG_NO_UFFD,
	MSG_LEAVE,
	MSG_LEAVE_DONE,
	MSG_FORK_CHILD,
	_MSG_TYPE_MAX,
};

struct msg_header {
	uint32_t magic;
	uint16_t version;
	uint16_t type; /* enum msg_type */
	uint32_t len;  /* bytes, whole message including this header */
	uint32_t seq;  /* echoed in the answer */
};

struct mem_range {
	uint64_t start; /* bytes, page aligned */
	uint64_t end;   /* bytes, exclusive, page aligned */
};

/* A child created by fork(); its parent is parent_pid. With a fifth fd (the pmem memfd that
 * came with FORK_READY) it has evicted pages to claim and must not run on without them. */
#define HELLO_FORK_CHILD (1U << 0)
#define HELLO_IGNORE_MLOCK (1U << 1) /* MEMEXT_IGNORE_MLOCK=1: staging has an mlocked half */
/* Reconnecting after the daemon died: a fifth fd is the dead daemon's pmem memfd, which the
 * new daemon adopts the process's evicted pages from (daemon/adopt.h). */
#define HELLO_RESUME (1U << 2)
/* A fork child that has evicted pages of its parent's to claim (FORK_READY said so): one the
 * daemon cannot find them for must be refused, not served with zeroes. */
#define HELLO_FORK_SHARED (1U << 3)
/* The agent takes a move gate (MSG_AGENT_GATE) and moves only through it. An older shim's agent
 * would take the message for a protocol error: it gets none, and moves as it always did. */
#define HELLO_MOVE_GATE (1U << 4)

struct msg_hello {
	struct msg_header h;
	int32_t pid;
	int32_t parent_pid;
	int32_t agent_tid; /* faults taken by this thread are never held; 0: MSG_AGENT_STARTED
			    * follows (fork children) */
	uint32_t flags;    /* HELLO_* */
	uint64_t budget_bytes;
	uint64_t uffd_features; /* granted by UFFDIO_API */
	struct mem_range staging;
	uint32_t nr_exclude;
	uint32_t fork_token; /* HELLO_FORK_CHILD: the seq of the parent's MSG_FORK_PREPARE */
	struct mem_range exclude[MEMEXT_MAX_EXCLUDE];
	char comm[16]; /* NUL-terminated */
};

/* The daemon answers MSG_HAND_BACK (an older one would drop the control socket). */
#define ACK_HAND_BACK (1U << 0)
/* ... and MSG_LEAVE. */
#define ACK_LEAVE (1U << 1)
/* ... and takes MSG_FORK_CHILD. */
#define ACK_FORK_CHILD (1U << 2)

struct msg_hello_ack {
	struct msg_header h;
	int32_t status; /* 0 or -errno */
	uint32_t flags; /* ACK_*; zero from daemons before them */
	uint64_t client_id;
};

/* MSG_FORK_PREPARE, MSG_FORK_READY (status), MSG_FORK_DONE */
struct msg_fork {
	struct msg_header h;
	int32_t status; /* in FORK_READY: the evicted pages shared with the child (the daemon's
			 * pmem memfd comes along when there are any), or -errno when they were
			 * to be brought back and not all could be */
	uint32_t flags; /* in FORK_PREPARE: FORK_DRAIN, FORK_REPLACES */
};

/*
 * MSG_FORK_CHILD, shim -> daemon after fork() returned in the parent, for a fork whose child
 * shares evicted pages: seq is that FORK_PREPARE's token. Should the child die before it
 * claims them, the daemon drops them at once rather than after FORK_CLAIM_TIMEOUT_USEC.
 */
struct msg_fork_child {
	struct msg_header h;
	int32_t pid; /* the child, as the parent numbers it; 0: fork() failed, no child */
	uint32_t pad;
};

/* The child could not take the shared pages (its fd table is full: it cannot make the uffd,
 * sockets and pidfd a client needs): bring every evicted page back before the fork instead. */
#define FORK_DRAIN (1U << 0)
/* The sender's last FORK_PREPARE, not yet done, will have no child: drop its snapshot. Sent
 * by a clone() after the program ran the atfork handlers itself (preload/shim.c). */
#define FORK_REPLACES (1U << 1)

/*
 * MSG_AGENT_STARTED, shim -> daemon on the control socket. A fork child says hello before it
 * starts its agent (pthread_create() allocates, and the child's heap may hold pages evicted in
 * the parent, readable only once the daemon has registered the child's memory), with
 * agent_tid 0 in the hello; the daemon evicts none of its pages until this names the agent.
 */
struct msg_agent_started {
	struct msg_header h;
	int32_t agent_tid;
	uint32_t pad;
};

struct move_range {
	uint64_t src; /* application address, page aligned */
	uint64_t dst; /* staging address, page aligned */
	uint64_t len; /* bytes */
};

#define AGENT_MOVE_BACK (1U << 0) /* src is in staging, dst in the application */

struct msg_agent_move {
	struct msg_header h;
	uint32_t nr;    /* ranges that follow */
	uint32_t flags; /* AGENT_MOVE_* */
	struct move_range r[]; /* nr entries, at most MEMEXT_MAX_MOVE_RANGES */
};

#define MEMEXT_STAGING_PAGES 256 /* pages in the agent's staging area = largest batch */

struct msg_agent_move_done {
	struct msg_header h;
	/* Bit i set: staging page i now holds the page moved to it. Pages whose bit is clear
	 * stayed where they were (or were not there). */
	uint64_t moved[MEMEXT_STAGING_PAGES / 64];
	/* Bit i set (with moved): page i went to the mlocked half of staging, slot i + 256:
	 * an mlocked page (MEMEXT_IGNORE_MLOCK) can only move into locked memory. */
	uint64_t locked[MEMEXT_STAGING_PAGES / 64];
	uint32_t nr_failed; /* pages the kernel refused to move */
	int32_t first_err;  /* -errno of the first refusal, 0 if none */
	/* Bit i set, moved or not: the agent lifted the write protection of page i to make it
	 * exclusive (shared with a fork child) for the move, so the application may write it
	 * without a fault from then on: a copy kept of it no longer holds its content. Last, and
	 * absent from the replies of a shim from before it (proto_check), read as zeroes. */
	uint64_t written[MEMEXT_STAGING_PAGES / 64];
	/* Bit i set (not moved): the kernel refused page i for a reason of its mapping
	 * (EINVAL: mlocked, or not read-write) or for a pin on it (EBUSY once the page is
	 * exclusive: io_uring's registered buffers, RDMA), as it will until that changes:
	 * the daemon sets it aside (daemon/lru.h, unevictable). Absent from older shims' replies. */
	uint64_t unevictable[MEMEXT_STAGING_PAGES / 64];
	/* Of the moved pages, those UFFDIO_MOVE reported as not moved: the agent found them
	 * moved in staging (reconcile_moves in the shim). Absent from older shims' replies. */
	uint32_t nr_unreported;
	uint32_t reserved; /* zero */
};

/*
 * MSG_EVICTABLE, shim -> daemon on the control socket, no answer: the application called
 * munlock() or mprotect() to read-write on range (munlockall(): range is everything), so pages
 * of it the daemon set aside as unevictable may move again. Sent only after the agent reported
 * an unevictable page.
 */
struct msg_evictable {
	struct msg_header h;
	struct mem_range range;
};

/*
 * MSG_HAND_BACK, shim -> daemon on the control socket: the application registers range with a
 * userfaultfd of its own, which the kernel refuses (EBUSY) while ours holds it. memextd brings
 * every evicted page of range back, unregisters it, and registers it again only once no
 * userfaultfd holds it (client_take_back); MSG_HAND_BACK_DONE (same seq) answers with status 0
 * or -errno.
 */
struct msg_hand_back {
	struct msg_header h;
	struct mem_range range;
};

struct msg_hand_back_done {
	struct msg_header h;
	int32_t status;
	uint32_t pad;
};

/*
 * MSG_LEAVE, shim -> daemon on the control socket: the process is about to confine itself with
 * a seccomp filter, which may forbid what its agent does (ioctl, madvise) and would then kill it.
 * memextd gives every page back, unregisters all its memory and releases the agent
 * (MSG_AGENT_RELEASE), as when it stops, and lets the process go for good; MSG_LEAVE_DONE
 * (same seq) answers with status 0 or -errno.
 */
struct msg_leave {
	struct msg_header h;
};

struct msg_leave_done {
	struct msg_header h;
	int32_t status;
	uint32_t pad;
};

/*
 * MSG_NO_UFFD, shim -> daemon on a new control socket, instead of MSG_HELLO: the process cannot
 * make a userfaultfd it could use (error: -errno; -EPERM or -EACCES without access to
 * /dev/userfaultfd), so it runs without memext. The daemon says so in its log, which is where
 * an administrator looks; the shim closes the socket after it.
 */
struct msg_no_uffd {
	struct msg_header h;
	int32_t error;
	uint32_t pad;
	char comm[16]; /* NUL-terminated */
};

struct msg_agent_free {
	struct msg_header h;
	struct mem_range range;
};

/* The daemon gave every page back and unregistered the memory (it is stopping): the agent
 * ends, and the shim does not reconnect. */
struct msg_agent_release {
	struct msg_header h;
};

/* The process passed the share of its budget at which memextd tracks it (track-above): from
 * now on the shim registers large new mappings at once, as the daemon does the others. */
struct msg_agent_arm {
	struct msg_header h;
};

/* Right after the hello, on the agent socket, with the daemon's pmem memfd attached: the agent
 * holds it in its own fd table (never maps it), so evicted pages outlive a daemon crash. */
struct msg_agent_pmem {
	struct msg_header h;
};

/* Right after the hello, on the agent socket, with a memfd of one page attached: the move gate
 * (shared/movegate.h), which the agent maps and uses for every move from then on. An agent
 * without one moves nothing. */
struct msg_agent_gate {
	struct msg_header h;
};

/* Right after the hello, on the agent socket: the budget the daemon gives this process (its
 * MEMEXT_BUDGET, its [app:NAME] section's, or the default). Before the process is tracked, the
 * shim registers at once a mapping that could take it past this by itself (early_register). */
struct msg_agent_budget {
	struct msg_header h;
	uint64_t budget_bytes; /* 0: none */
};

/* The first message on a new control socket of a client the daemon serves already (its old
 * socket was closed, or belonged to a daemon that died): answered with MSG_HELLO_ACK. */
struct msg_control_attach {
	struct msg_header h;
	int32_t pid;
	uint32_t pad;
};

/* The largest message of all, for receive buffers. */
#define MEMEXT_MSG_MAX                                                                             \
	(sizeof(struct msg_agent_move) + MEMEXT_MAX_MOVE_RANGES * sizeof(struct move_range))

void proto_init_header(struct msg_header *h, enum msg_type type, uint32_t len, uint32_t seq);

/*
 * Checks a received message of n bytes: header, version, length, and the exact size of its type.
 * Returns 0 or -EBADMSG (malformed), -EPROTONOSUPPORT (other version).
 */
int proto_check(const void *buf, size_t n);

/*
 * Sends one message with up to MEMEXT_MAX_FDS fds attached. Retries on EINTR; never raises
 * SIGPIPE. Returns 0 or -errno. Safe in the shim: no malloc.
 */
int proto_send(int sock, const void *msg, size_t len, const int *fds, unsigned nr_fds);

/*
 * Receives one message into buf (size len) and checks it. Received fds are stored in fds
 * (up to *nr_fds; the count is written back) with O_CLOEXEC; fds of a rejected message are
 * closed. Returns the message size, 0 on orderly shutdown, or -errno (-EBADMSG for a message
 * proto_check() rejects, -EMSGSIZE for one that was truncated).
 */
ssize_t proto_recv(int sock, void *buf, size_t len, int *fds, unsigned *nr_fds);
