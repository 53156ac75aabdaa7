/* SPDX-License-Identifier: MIT */
/*
 * libmemext.so: loaded with LD_PRELOAD into an unmodified application. It hands the process's
 * userfaultfd to memextd and runs the agent thread that moves pages out on the daemon's behalf.
 *
 * Hostile ground (STYLE.md rule 7): the environment is read once in the constructor; the agent
 * thread never calls malloc, never takes a lock an application thread can hold and touches only
 * its own stack and the shim's static data, none of which is ever registered with the uffd.
 * Anything that goes wrong before the daemon has the uffd leaves the application exactly as it
 * would run without the shim (fail-open), with one line on stderr when MEMEXT_DEBUG=1.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "macro.h"
#include "protocol.h"
#include "size.h"
#include "uffd-compat.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* 5.14 */
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24 /* 5.18 */
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

#define DEFAULT_SOCKET "/run/memext/memextd.sock"
#define AGENT_STACK_BYTES (128 * 1024)
#define HELLO_TIMEOUT_MSEC 5000
#define MOVE_EAGAIN_RETRIES 100

static struct {
	bool debug;
	bool active; /* the daemon has our uffd */
	uint32_t flags;
	uint64_t budget_bytes;
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

	int uffd;       /* our own copy, kept for the life of the process */
	/* A second uffd that only staging is registered with, asking for no events: the
	 * agent moves pages into staging through it (a move checks only the destination's
	 * registration), so dropping staging raises no REMOVE event for anyone to read. */
	int staging_uffd;
	int control_fd; /* to the daemon */
	int agent_fd;   /* the agent's end of the agent socketpair */
	uint64_t features;

	void *staging;
	void *agent_stack; /* with a guard page below */
	pthread_t agent;
	pid_t agent_tid;
	struct mem_range self; /* this library's own mappings */

	pthread_mutex_t fork_lock;
	uint32_t fork_token; /* of the last MSG_FORK_PREPARE; the child names it in its hello */
	pid_t fork_parent;   /* the pid that sent it: getppid() in the child may already be a
			      * reaper's, when the parent exits at once (daemon(3)) */
} S = {
	.uffd = -1,
	.staging_uffd = -1,
	.control_fd = -1,
	.agent_fd = -1,
	.fork_lock = PTHREAD_MUTEX_INITIALIZER,
};

static void shim_log(const char *fmt, ...) _printf_(1, 2);

/* A fixed buffer and write(2): no malloc, usable from any context. */
static void shim_log(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	if (!S.debug)
		return;
	memcpy(buf, "memext: ", 8);
	va_start(ap, fmt);
	n = vsnprintf(buf + 8, sizeof(buf) - 9, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n = MIN(n + 8, (int)sizeof(buf) - 1);
	buf[n++] = '\n';
	(void)!write(STDERR_FILENO, buf, (size_t)n);
}

static const char *errstr(int e)
{
	const char *s = strerrordesc_np(e < 0 ? -e : e);

	return s ? s : "unknown error";
}

/* The agent: moves pages into staging (eviction) or back (a batch the daemon could not keep). */

static bool inside(uint64_t a, uint64_t len, uint64_t start, uint64_t end)
{
	return a >= start && a + len <= end && a + len >= a;
}

static size_t staging_bytes(void)
{
	/* With MEMEXT_IGNORE_MLOCK, a second, mlocked half for pages of mlocked memory. */
	return (S.flags & HELLO_IGNORE_MLOCK ? 2 : 1) * MEMEXT_STAGING_PAGES * PAGE_SIZE;
}

static void set_moved(struct msg_agent_move_done *reply, uint64_t staging_addr)
{
	uint64_t slot = (staging_addr - (uint64_t)(uintptr_t)S.staging) / PAGE_SIZE;

	if (slot >= MEMEXT_STAGING_PAGES) {
		slot -= MEMEXT_STAGING_PAGES;
		if (slot < MEMEXT_STAGING_PAGES)
			reply->locked[slot / 64] |= 1ULL << (slot % 64);
	}
	if (slot < MEMEXT_STAGING_PAGES)
		reply->moved[slot / 64] |= 1ULL << (slot % 64);
}

/*
 * Moves one contiguous run; returns bytes moved from its start, and the error that stopped it.
 * Into staging through staging_uffd, back into the application through the main uffd: a
 * move needs its destination registered with the uffd it is issued on.
 */
static uint64_t move_once(int uffd, uint64_t dst, uint64_t src, uint64_t len, int *ret_err)
{
	struct uffdio_move mv = {.dst = dst, .src = src, .len = len};
	int retries = 0;

	for (;;) {
		mv.move = 0;
		if (ioctl(uffd, UFFDIO_MOVE, &mv) == 0) {
			*ret_err = 0;
			return len;
		}
		/* EAGAIN: the address space is changing (an event is pending); try again. */
		if (errno == EAGAIN && mv.move <= 0 && retries++ < MOVE_EAGAIN_RETRIES) {
			sched_yield();
			continue;
		}
		*ret_err = errno;
		return mv.move > 0 ? (uint64_t)mv.move : 0;
	}
}

static void move_range(const struct move_range *r, bool back, struct msg_agent_move_done *reply)
{
	int uffd = back ? S.uffd : S.staging_uffd;
	uint64_t done = 0;

	while (done < r->len) {
		uint64_t len = r->len - done, moved;
		int err;

		moved = move_once(uffd, r->dst + done, r->src + done, len, &err);
		if (err && moved == 0 && len > PAGE_SIZE) {
			/* A run may cross two mappings (EINVAL) or hold one page the kernel refuses:
			 * find out page by page. */
			moved = move_once(uffd, r->dst + done, r->src + done, PAGE_SIZE, &err);
		}
		if (err == EBUSY && moved == 0 && !back) {
			/*
			 * Still shared with a fork child (or the child has exited and the page was
			 * not written since): the kernel moves only pages exclusive to us. A write
			 * fault without a write (MADV_POPULATE_WRITE) makes it ours again, content
			 * unchanged; on a mapping that is not writable it fails, no signal.
			 */
			if (madvise((void *)(uintptr_t)(r->src + done), PAGE_SIZE,
				    MADV_POPULATE_WRITE) == 0)
				moved = move_once(uffd, r->dst + done, r->src + done, PAGE_SIZE, &err);
		}
		if (err == EINVAL && moved == 0 && !back && (S.flags & HELLO_IGNORE_MLOCK)) {
			/* Mlocked memory moves only into locked memory: the locked half. */
			uint64_t dst = r->dst + done + MEMEXT_STAGING_PAGES * PAGE_SIZE;

			moved = move_once(uffd, dst, r->src + done, PAGE_SIZE, &err);
			if (moved) {
				set_moved(reply, dst);
				done += moved;
				continue;
			}
		}
		for (uint64_t off = 0; off < moved; off += PAGE_SIZE)
			set_moved(reply, (back ? r->src : r->dst) + done + off);
		done += moved;
		if (err && moved == 0) {
			/* This page stays where it is (shared with a fork child, mlocked, other
			 * protection, gone). */
			if (!reply->first_err)
				reply->first_err = -err;
			reply->nr_failed++;
			done += PAGE_SIZE;
		}
	}
}

static void agent_move(const struct msg_agent_move *m)
{
	uint64_t st = (uint64_t)(uintptr_t)S.staging, st_end = st + staging_bytes();
	bool back = m->flags & AGENT_MOVE_BACK;
	struct msg_agent_move_done reply;

	memset(&reply, 0, sizeof(reply));
	proto_init_header(&reply.h, MSG_AGENT_MOVE_DONE, sizeof(reply), m->h.seq);
	for (uint32_t i = 0; i < m->nr; i++) {
		const struct move_range *r = &m->r[i];
		uint64_t stage = back ? r->src : r->dst, app = back ? r->dst : r->src;

		/* Only ever between staging and memory outside the shim's own. */
		if (r->len == 0 || r->len % PAGE_SIZE || stage % PAGE_SIZE || app % PAGE_SIZE ||
		    !inside(stage, r->len, st, st_end) || inside(app, PAGE_SIZE, st, st_end) ||
		    inside(app, PAGE_SIZE, S.self.start, S.self.end)) {
			reply.nr_failed++;
			reply.first_err = -EINVAL;
			continue;
		}
		move_range(r, back, &reply);
	}
	(void)proto_send(S.agent_fd, &reply, sizeof(reply), NULL, 0);
}

static void *agent_main(void *arg)
{
	/* Aligned for the largest message; lives on the agent's own (unregistered) stack. */
	uint64_t buf[(MEMEXT_MSG_MAX + 7) / 8];

	(void)arg;
	S.agent_tid = (pid_t)syscall(SYS_gettid);
	(void)prctl(PR_SET_NAME, "memext-agent");
	for (;;) {
		const struct msg_header *h = (const struct msg_header *)buf;
		ssize_t n = proto_recv(S.agent_fd, buf, sizeof(buf), NULL, NULL);

		if (n == -EINTR)
			continue;
		if (n <= 0)
			break; /* the daemon is gone: nothing more to move */
		switch (h->type) {
		case MSG_AGENT_MOVE:
			agent_move((const struct msg_agent_move *)buf);
			break;
		case MSG_AGENT_FREE:
			/* The daemon has read staging: give the memory back. */
			(void)madvise(S.staging, MEMEXT_STAGING_PAGES * PAGE_SIZE, MADV_DONTNEED);
			if (S.flags & HELLO_IGNORE_MLOCK)
				(void)madvise((char *)S.staging + MEMEXT_STAGING_PAGES * PAGE_SIZE,
					      MEMEXT_STAGING_PAGES * PAGE_SIZE, MADV_DONTNEED_LOCKED);
			break;
		default:
			break;
		}
	}
	return NULL;
}

/* Set-up. */

static int find_self(struct dl_phdr_info *info, size_t size, void *data)
{
	uint64_t lo = UINT64_MAX, hi = 0, me = (uint64_t)(uintptr_t)data;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD)
			continue;
		lo = MIN(lo, (uint64_t)(info->dlpi_addr + ph->p_vaddr));
		hi = MAX(hi, (uint64_t)(info->dlpi_addr + ph->p_vaddr + ph->p_memsz));
	}
	if (me < lo || me >= hi)
		return 0;
	S.self = (struct mem_range){PAGE_ALIGN_DOWN(lo), PAGE_ALIGN_UP(hi)};
	return 1;
}

static int open_uffd(void)
{
	int fd, dev;

	/* /dev/userfaultfd gives a uffd that also handles faults taken inside system calls,
	 * to anyone with access to the device (the package grants it to group memext). */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd >= 0 ? fd : -errno;
}

static int uffd_api(int fd, uint64_t features, uint64_t *ret_features)
{
	struct uffdio_api api = {.api = UFFD_API, .features = features};

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	*ret_features = api.features;
	return 0;
}

/* A uffd with every feature memext needs, or -errno (-ENOTSUP: the kernel lacks one). */
static int make_uffd(uint64_t *ret_features)
{
	uint64_t supported = 0;
	int fd, r;

	/* Ask the kernel what it has: UFFDIO_API with no features reports them all. */
	fd = open_uffd();
	if (fd < 0)
		return fd;
	r = uffd_api(fd, 0, &supported);
	close(fd);
	if (r < 0)
		return r;
	if ((supported & MEMEXT_UFFD_REQUIRED) != MEMEXT_UFFD_REQUIRED)
		return -ENOTSUP;
	fd = open_uffd();
	if (fd < 0)
		return fd;
	r = uffd_api(fd, supported & MEMEXT_UFFD_WANTED, ret_features);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

static int connect_daemon(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	memcpy(sa.sun_path, S.socket_path, sizeof(sa.sun_path));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

static int start_agent(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int r;

	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, (char *)S.agent_stack + PAGE_SIZE,
			      AGENT_STACK_BYTES - PAGE_SIZE);
	/* The agent takes no signal meant for the application. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	S.agent_tid = 0;
	r = -pthread_create(&S.agent, &attr, agent_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r == 0) {
		pthread_detach(S.agent);
		/* Its tid goes into the hello. */
		while (!__atomic_load_n(&S.agent_tid, __ATOMIC_ACQUIRE))
			sched_yield();
	}
	return r;
}

static int send_hello(int pidfd, int daemon_end, pid_t parent)
{
	struct msg_hello hello;
	struct msg_hello_ack ack;
	int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int fds[4] = {S.uffd, pidfd, daemon_end, pagemap};
	struct pollfd p = {.fd = S.control_fd, .events = POLLIN};
	ssize_t n;
	int r;

	memset(&hello, 0, sizeof(hello));
	proto_init_header(&hello.h, MSG_HELLO, sizeof(hello), 1);
	hello.pid = getpid();
	hello.parent_pid = parent;
	hello.agent_tid = S.agent_tid;
	hello.flags = S.flags | (parent ? HELLO_FORK_CHILD : 0);
	hello.fork_token = parent ? S.fork_token : 0;
	hello.budget_bytes = S.budget_bytes;
	hello.uffd_features = S.features;
	hello.staging = (struct mem_range){(uint64_t)(uintptr_t)S.staging,
					   (uint64_t)(uintptr_t)S.staging + staging_bytes()};
	hello.exclude[hello.nr_exclude++] = S.self;
	hello.exclude[hello.nr_exclude++] = (struct mem_range){
		(uint64_t)(uintptr_t)S.agent_stack,
		(uint64_t)(uintptr_t)S.agent_stack + AGENT_STACK_BYTES};
	(void)prctl(PR_GET_NAME, hello.comm);
	hello.comm[sizeof(hello.comm) - 1] = 0;

	if (pagemap < 0)
		return -errno;
	r = proto_send(S.control_fd, &hello, sizeof(hello), fds, 4);
	close(pagemap);
	if (r < 0)
		return r;
	if (poll(&p, 1, HELLO_TIMEOUT_MSEC) <= 0)
		return -ETIMEDOUT;
	n = proto_recv(S.control_fd, &ack, sizeof(ack), NULL, NULL);
	if (n <= 0)
		return n < 0 ? (int)n : -ECONNRESET;
	if (ack.h.type != MSG_HELLO_ACK)
		return -EBADMSG;
	return ack.status;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * A fork child's agent, once the daemon has registered the child's memory: pthread_create()
 * allocates, and the heap may hold pages evicted in the parent, which read as zeroes until
 * then. Without an agent the daemon still serves the child's faults; it only evicts nothing.
 */
static void start_agent_late(void)
{
	struct msg_agent_started m = {0};
	int r = start_agent();

	if (r < 0) {
		shim_log("cannot start the agent thread: %s; memory stays resident", errstr(r));
		return;
	}
	proto_init_header(&m.h, MSG_AGENT_STARTED, sizeof(m), 0);
	m.agent_tid = S.agent_tid;
	r = proto_send(S.control_fd, &m, sizeof(m), NULL, 0);
	if (r < 0)
		shim_log("cannot name the agent to the daemon: %s", errstr(r));
}

/* Connects this process to the daemon. parent: 0, or the pid we were forked from. */
static void memext_start(pid_t parent)
{
	int pidfd = -1, pair[2] = {-1, -1}, r;
	struct uffdio_register reg;

	S.control_fd = connect_daemon();
	if (S.control_fd < 0) {
		shim_log("cannot connect to %s: %s; running without memext", S.socket_path,
			 errstr(S.control_fd));
		S.control_fd = -1;
		return;
	}
	S.uffd = make_uffd(&S.features);
	if (S.uffd < 0) {
		shim_log("no usable userfaultfd (%s)%s; running without memext", errstr(S.uffd),
			 S.uffd == -EPERM || S.uffd == -EACCES
				 ? ": access to /dev/userfaultfd (group memext) is needed"
				 : S.uffd == -ENOTSUP ? ": the kernel lacks UFFDIO_MOVE (6.8+)" : "");
		S.uffd = -1;
		goto fail;
	}
	if (!S.staging) {
		S.staging = mmap(NULL, staging_bytes(), PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		S.agent_stack = mmap(NULL, AGENT_STACK_BYTES, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (S.staging == MAP_FAILED || S.agent_stack == MAP_FAILED) {
			shim_log("cannot map the agent's memory; running without memext");
			goto fail;
		}
		(void)mprotect(S.agent_stack, PAGE_SIZE, PROT_NONE); /* guard page */
		(void)madvise(S.staging, staging_bytes(), MADV_NOHUGEPAGE);
		if ((S.flags & HELLO_IGNORE_MLOCK) &&
		    mlock2((char *)S.staging + MEMEXT_STAGING_PAGES * PAGE_SIZE,
			   MEMEXT_STAGING_PAGES * PAGE_SIZE, MLOCK_ONFAULT) < 0) {
			shim_log("MEMEXT_IGNORE_MLOCK: cannot lock staging (%s); mlocked memory "
				 "stays resident",
				 errstr(errno));
			S.flags &= ~HELLO_IGNORE_MLOCK;
		}
	}
	/* UFFDIO_MOVE only moves into memory registered with the uffd it is issued on. */
	S.staging_uffd = open_uffd();
	if (S.staging_uffd >= 0) {
		uint64_t f;

		r = uffd_api(S.staging_uffd, UFFD_FEATURE_MOVE, &f);
		if (r < 0) {
			close(S.staging_uffd);
			S.staging_uffd = r;
		}
	}
	if (S.staging_uffd < 0) {
		shim_log("no second userfaultfd for staging (%s); running without memext",
			 errstr(S.staging_uffd));
		S.staging_uffd = -1;
		goto fail;
	}
	reg = (struct uffdio_register){
		.range = {(uint64_t)(uintptr_t)S.staging, staging_bytes()},
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(S.staging_uffd, UFFDIO_REGISTER, &reg) < 0) {
		shim_log("cannot register the staging area: %s; running without memext",
			 errstr(errno));
		goto fail;
	}
	pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (pidfd < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
		shim_log("cannot create a pidfd or socketpair: %s; running without memext",
			 errstr(errno));
		goto fail;
	}
	S.agent_fd = pair[0];
	/* A fork child starts its agent after the hello (start_agent_late()). */
	r = parent ? 0 : start_agent();
	if (r < 0) {
		shim_log("cannot start the agent thread: %s; running without memext", errstr(r));
		goto fail;
	}
	r = send_hello(pidfd, pair[1], parent);
	close_fd(&pair[1]);
	close_fd(&pidfd);
	if (r < 0) {
		shim_log("the daemon did not accept us: %s; running without memext", errstr(r));
		/* The agent sees its socket close and ends. */
		shutdown(S.agent_fd, SHUT_RDWR);
		if (parent)
			close_fd(&S.agent_fd);
		goto fail_agent;
	}
	if (parent)
		start_agent_late();
	S.active = true;
	shim_log("managed by memextd (budget %llu bytes)", (unsigned long long)S.budget_bytes);
	return;

fail:
	close_fd(&pair[0]);
	close_fd(&pair[1]);
	close_fd(&pidfd);
fail_agent:
	S.agent_fd = -1;
	close_fd(&S.control_fd);
	/* Unregister whatever we registered: an uffd nobody serves would hang the process. */
	close_fd(&S.uffd);
	close_fd(&S.staging_uffd);
}

/*
 * fork(): the child does not inherit the registrations (no UFFD_FEATURE_EVENT_FORK without
 * CAP_SYS_PTRACE). Before the address space is copied, the daemon pauses the parent's
 * eviction and snapshots its evicted pages for the child (or, failing that, brings them all
 * back); the child claims the snapshot with the token in its hello and gets its memory
 * registered before it runs on (daemon/forkshare.h). The parent resumes after fork returns.
 */

static uint32_t fork_token_new(void)
{
	uint32_t t;

	/* Unguessable, so another process of the user cannot claim the child's pages. */
	if (syscall(SYS_getrandom, &t, sizeof(t), 0x1 /* GRND_NONBLOCK */) != sizeof(t))
		t = (uint32_t)syscall(SYS_gettid) ^ (uint32_t)(uintptr_t)&t;
	return t;
}

static void fork_prepare(void)
{
	struct msg_fork m = {0};
	struct pollfd p;

	pthread_mutex_lock(&S.fork_lock);
	if (!S.active || S.control_fd < 0)
		return;
	S.fork_token = fork_token_new();
	S.fork_parent = getpid();
	proto_init_header(&m.h, MSG_FORK_PREPARE, sizeof(m), S.fork_token);
	if (proto_send(S.control_fd, &m, sizeof(m), NULL, 0) < 0)
		return;
	p = (struct pollfd){.fd = S.control_fd, .events = POLLIN};
	for (;;) {
		ssize_t n;

		if (poll(&p, 1, -1) < 0 && errno == EINTR)
			continue;
		n = proto_recv(S.control_fd, &m, sizeof(m), NULL, NULL);
		if (n == -EINTR || n == -EAGAIN)
			continue;
		if (n <= 0 || m.h.type == MSG_FORK_READY)
			break;
	}
}

static void fork_parent(void)
{
	struct msg_fork m = {0};

	if (S.active && S.control_fd >= 0) {
		proto_init_header(&m.h, MSG_FORK_DONE, sizeof(m), 0);
		(void)proto_send(S.control_fd, &m, sizeof(m), NULL, 0);
	}
	pthread_mutex_unlock(&S.fork_lock);
}

static void fork_child(void)
{
	pid_t parent = S.fork_parent ? S.fork_parent : getppid();
	bool was_active = S.active;

	/* These are the parent's: its connection, its agent's socket, its uffd, its agent. */
	S.agent_tid = 0;
	close_fd(&S.control_fd);
	close_fd(&S.agent_fd);
	close_fd(&S.uffd);
	close_fd(&S.staging_uffd);
	S.active = false;
	/* Staging may still hold the parent's last batch if its agent had not freed it yet. */
	if (S.staging) {
		(void)madvise(S.staging, MEMEXT_STAGING_PAGES * PAGE_SIZE, MADV_DONTNEED);
		if (S.flags & HELLO_IGNORE_MLOCK)
			(void)madvise((char *)S.staging + MEMEXT_STAGING_PAGES * PAGE_SIZE,
				      MEMEXT_STAGING_PAGES * PAGE_SIZE, MADV_DONTNEED_LOCKED);
	}
	if (was_active)
		memext_start(parent);
	pthread_mutex_unlock(&S.fork_lock);
}

/*
 * Early registration. The daemon finds new memory by rescanning the process's maps, which lets
 * a program that maps and fills a large buffer in a few milliseconds run past its budget
 * before the daemon sees it. mmap() and mlock() calls that go through the PLT (direct callers:
 * stress-ng, memtester's mlock; not glibc's malloc, which calls the kernel itself) register
 * the memory at once, so its first touches already fault to the daemon. The daemon's next scan
 * finds the range registered and takes it over. Failure changes nothing: the scan still comes.
 */
#define EARLY_REGISTER_MIN_BYTES (256 * 1024)

static void early_register(uint64_t start, uint64_t len)
{
	struct uffdio_register reg = {
		.range = {PAGE_ALIGN_DOWN(start), PAGE_ALIGN_UP(start + len) - PAGE_ALIGN_DOWN(start)},
		.mode = UFFDIO_REGISTER_MODE_MISSING |
			(S.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP ? UFFDIO_REGISTER_MODE_WP : 0),
	};
	int saved = errno;

	if (__atomic_load_n(&S.active, __ATOMIC_ACQUIRE) && len >= EARLY_REGISTER_MIN_BYTES &&
	    S.uffd >= 0)
		(void)ioctl(S.uffd, UFFDIO_REGISTER, &reg);
	errno = saved;
}

static void *do_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);

	if (r == -1)
		return MAP_FAILED;
	if ((flags & MAP_ANONYMOUS) && (flags & MAP_PRIVATE) && (prot & PROT_READ) &&
	    (prot & PROT_WRITE))
		early_register((uint64_t)r, len);
	return (void *)r;
}

/* Both names (the headers turn mmap into mmap64 with 64-bit offsets); off_t is 64-bit here. */
_public_ void *memext_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__asm__("mmap");
_public_ void *memext_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__asm__("mmap64");

void *memext_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return do_mmap(addr, len, prot, flags, fd, off);
}

void *memext_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return do_mmap(addr, len, prot, flags, fd, off);
}

_public_ int mlock(const void *addr, size_t len)
{
	/* Locking populates every page: registered first, they fault to the daemon. A range
	 * that is not anonymous memory fails to register and is locked all the same. */
	early_register((uint64_t)(uintptr_t)addr, len);
	return (int)syscall(SYS_mlock, addr, len);
}

__attribute__((constructor)) static void memext_init(void)
{
	const char *e;
	uint64_t budget = 0;
	int r;

	e = getenv("MEMEXT_DEBUG");
	S.debug = e && *e && strcmp(e, "0") != 0;
	if (getauxval(AT_SECURE)) {
		shim_log("setuid/setgid program: memext stays out");
		return;
	}
	e = getenv("MEMEXT_BUDGET");
	if (e && *e) {
		r = parse_size(e, &budget);
		if (r < 0) {
			shim_log("invalid MEMEXT_BUDGET '%s' (want bytes with an optional K, M, G or "
				 "T suffix); running without memext",
				 e);
			return;
		}
	}
	S.budget_bytes = budget;
	e = getenv("MEMEXT_IGNORE_MLOCK");
	if (e && strcmp(e, "1") == 0)
		S.flags |= HELLO_IGNORE_MLOCK;
	e = getenv("MEMEXT_SOCKET");
	if (!e || !*e)
		e = DEFAULT_SOCKET;
	if (strlen(e) >= sizeof(S.socket_path)) {
		shim_log("MEMEXT_SOCKET path too long; running without memext");
		return;
	}
	strcpy(S.socket_path, e);
	dl_iterate_phdr(find_self, (void *)(uintptr_t)&memext_init);

	memext_start(0);
	if (S.active)
		pthread_atfork(fork_prepare, fork_parent, fork_child);
}
