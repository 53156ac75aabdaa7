/* SPDX-License-Identifier: MIT */
/*
 * libmemext.so: loaded with LD_PRELOAD into an unmodified application. It hands the process's
 * userfaultfd to memextd and runs the agent thread that moves pages out on the daemon's behalf.
 *
 * Hostile ground (STYLE.md rule 7): the environment is read once in the constructor; the agent
 * thread never calls malloc, never takes a lock an application thread can hold and touches only
 * its own stack, staging and the static data of the shim, libc and the loader, none of which is
 * ever registered with the uffd (find_own_objects()).
 * Anything that goes wrong before the daemon has the uffd leaves the application exactly as it
 * would run without the shim (fail-open), with one line on stderr when MEMEXT_DEBUG=1.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <link.h>
#include <linux/futex.h>
#include <linux/nsfs.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "movegate.h"
#include "protocol.h"
#include "size.h"
#include "uffd-compat.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* 5.14 */
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24 /* 5.18 */
#endif
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL /* 6.9 */
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

#define DEFAULT_SOCKET "/run/memext/memextd.sock"
#define AGENT_STACK_BYTES (128 * 1024)
#define WATCHDOG_STACK_BYTES (64 * 1024)
/* One mapping, excluded from memext: [guard][watchdog's stack][guard][agent's stack]. */
#define AGENT_AREA_BYTES (PAGE_SIZE + WATCHDOG_STACK_BYTES + PAGE_SIZE + AGENT_STACK_BYTES)
#define HELLO_TIMEOUT_MSEC 5000
#define MOVE_EAGAIN_NSEC 1000000LL /* how long a move waits for a pending event's read */

static struct {
	bool debug;
	/* MEMEXT_TEST_MOVE_DELAY_US: the agent waits this long before it moves a batch out, so
	 * the tests can make the application change its memory under a batch in flight. */
	uint32_t test_move_delay_usec;
	/* MEMEXT_TEST_ZAP_SHARED=START-END[:WHEN] (hex, as in /proc/PID/maps): in this process
	 * (not its fork children), the agent zaps each page of [START, END) it found shared with a
	 * child as it makes the page exclusive, as an application thread could (make_exclusive):
	 * just before (default), or inside the gate after its look at the page (:after-look). */
	pid_t test_zap_shared_pid;
	uint64_t test_zap_shared_start, test_zap_shared_end;
	enum zap_when { ZAP_BEFORE, ZAP_AFTER_LOOK } test_zap_shared_when;
	/* MEMEXT_TEST_STOP_AT_MOVE=N: in this process (not its fork children), the agent stops
	 * the whole process (SIGSTOP, as Ctrl-Z would) in the middle of the Nth batch it moves
	 * out, after its first range: someone else must send SIGCONT. */
	pid_t test_stop_pid;
	uint32_t test_stop_at_move, test_moves;
	/* MEMEXT_TEST_UNREPORTED_MOVE=N: every Nth UFFDIO_MOVE that moves pages is answered as
	 * Linux 6.18 may answer one (reconcile_moves): EEXIST, nothing moved, yet all moved. */
	uint32_t test_unreported_every, test_move_calls;
	/* MEMEXT_TEST_CHILD_DIES_AT_FORK=1: a fork child exits in its first atfork handler,
	 * before it claims the pages it shares with its parent (a child killed right away). */
	bool test_child_dies;
	/* MEMEXT_TEST_CHILD_STOPS_AT_FORK=1: ... stops itself there instead (as a debugger holds
	 * a child at fork), before it claims them. */
	bool test_child_stops;
	bool active; /* the daemon has our uffd */
	uint32_t flags;
	uint64_t budget_bytes;
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

	int uffd;       /* our own copy, kept for the life of the process */
	int control_fd; /* to the daemon */
	int agent_fd;   /* the agent's end of the agent socketpair, until the agent has its own */
	uint64_t features;
	dev_t control_dev; /* control_fd's socket, to tell it from a file that took its number */
	ino_t control_ino;
	pid_t pid;   /* the process the fds above belong to (not a vfork child sharing S) */
	int fd_base; /* the shim's fds live at this number or above; 0: where they were made */
	unsigned generation;	 /* connections the agent made to a daemon; a reconnection bumps it */
	unsigned control_gen;	 /* the generation control_fd was made for */
	bool released; /* the daemon let go of us for good (it stopped cleanly) */
	bool armed;    /* the daemon tracks our memory: register large mappings early */
	uint64_t daemon_budget_bytes; /* what the daemon gives us (MSG_AGENT_BUDGET); 0: none */
	char comm[16]; /* the main thread's name, for hellos the agent sends */

	void *staging;
	void *agent_stack; /* the agent's and the watchdog's stacks: AGENT_AREA_BYTES */
	pthread_t agent;
	pid_t agent_tid;
	struct mem_range self;   /* this library's own mappings */
	struct mem_range libc;   /* libc's and the loader's, .bss included: see find_own_objects() */
	struct mem_range loader;

	pthread_mutex_t fork_lock;
	uint32_t fork_token; /* of the last MSG_FORK_PREPARE; the child names it in its hello */
	pid_t fork_parent;   /* the pid that sent it: getppid() in the child may already be a
			      * reaper's, when the parent exits at once (daemon(3)) */
	int fork_shared;     /* evicted pages the daemon keeps for the child (FORK_READY) */
	int fork_status;     /* FORK_READY's status: < 0, not every page came back for a drain */
	int fork_pmem_fd;    /* the daemon's pmem, from FORK_READY: the child hands it on */
	bool fork_prepared;  /* fork_prepare() ran for the fork under way (fork_lock held): the
			      * child handlers have work to do */
	pid_t fork_owner;    /* the thread that holds fork_lock (a fork, a control request) */
	bool fork_busy;      /* ... and is waiting for the daemon's answer */
	bool agent_late;     /* a fork child whose hello was answered: fork_child_late() starts
			      * its agent */
	bool hello_refused;  /* the last hello was answered, with an error */
	bool daemon_hands_back; /* the daemon answers MSG_HAND_BACK (ACK_HAND_BACK) */
	bool daemon_leaves;	/* ... and MSG_LEAVE (ACK_LEAVE) */
	bool daemon_names_children; /* ... and takes MSG_FORK_CHILD (ACK_FORK_CHILD) */
	bool agent_ended;	/* the agent made its last system call (released) */
	/* The agent reported a page the kernel would not move (mlocked, pinned, not read-write): from
	 * now on munlock(), munlockall() and mprotect() tell the daemon (MSG_EVICTABLE). */
	bool told_unevictable;
} S = {
	.uffd = -1,
	.control_fd = -1,
	.agent_fd = -1,
	.fork_lock = PTHREAD_MUTEX_INITIALIZER,
	.fork_pmem_fd = -1,
};

/*
 * The agent's fds. The agent thread unshares its fd table (unshare(CLONE_FILES)) and keeps
 * only these three in it, so nothing the application does to its fds -- close_range(),
 * closefrom(), a close() loop, dup2() onto the number, even the raw system calls -- can take
 * them away or make the agent read the application's files. private is false when unshare
 * failed: then they are the same numbers as in S, in the application's table, and only the
 * interposed calls below protect them.
 */
static struct {
	int fd;           /* the agent's end of the socketpair */
	int uffd;         /* moves, both ways */
	/* The daemon's pmem memfd (daemon/pmem.h), held, never mapped: after a daemon crash it
	 * holds our evicted pages, and the next daemon adopts them from it (reconnect()). */
	int pmem_fd;
	bool private; /* in the agent's own fd table */
	/* The move gate the daemon shares (shared/movegate.h); NULL: move nothing. gate_failed:
	 * it stayed closed, the rest of this request moves nothing. Agent only. */
	struct move_gate *gate;
	bool gate_failed;
	bool staging_registered; /* with uffd: set up by the shim, then drop_staging() */
	/* Whether the agent may be waiting on a userfault of its own: risk_word(). Shared with
	 * the watchdog, which reconnects for an agent stuck so (watchdog_main()). */
	int risk;
	bool batch_dropped; /* the watchdog reconnected during this request: it was a dead daemon's */
} A = {.fd = -1, .uffd = -1, .pmem_fd = -1};

enum agent_risk {
	RISK_NONE,  /* the agent touches no registered memory */
	RISK_FAULT, /* it may wait on a userfault of its own (make_exclusive) */
	RISK_TAKEN, /* its daemon died meanwhile: the watchdog reconnects for it */
	RISK_DONE,  /* ... and has: the request the agent was working on is a dead daemon's */
};
#define RISK_STATE(w) ((enum agent_risk)((w) & 3))

/* A.risk: the state, and the connection (S.generation) it is about, so that the watchdog,
 * which saw one connection hang up, cannot take over from an agent serving the next. */
static int risk_word(unsigned generation, enum agent_risk state)
{
	return (int)(((generation & 0x3fffffffU) << 2) | state);
}

static void futex_wait(int *word, int val)
{
	(void)syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(int *word)
{
	(void)syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void agent_take_socket(void);

extern int __close(int fd);
extern int __dup2(int oldfd, int newfd);

/*
 * glibc's syscall(): the shim's own syscall() (near the end) takes the name, and every call in
 * this file goes through it. Found at start-up (memext_init), before any signal handler could
 * be the first to ask.
 */
typedef long (*syscall_fn)(long, ...);
static syscall_fn real_syscall;

static syscall_fn libc_syscall_fn(void)
{
	syscall_fn fn = __atomic_load_n(&real_syscall, __ATOMIC_ACQUIRE);

	if (!fn) {
		fn = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
		if (!fn)
			abort(); /* no libc under us: nothing could work */
		__atomic_store_n(&real_syscall, fn, __ATOMIC_RELEASE);
	}
	return fn;
}

static long libc_syscall(long nr, long a, long b, long c, long d, long e, long f)
{
	return libc_syscall_fn()(nr, a, b, c, d, e, f);
}

/* The shim's own ioctls are system calls: ioctl() is interposed (below). */
#define sys_ioctl(fd, request, arg)                                                         \
	((int)libc_syscall(SYS_ioctl, (long)(fd), (long)(request), (long)(arg), 0, 0, 0))

/* The shim closes its own fds with the system call: close() is interposed (below). */
static void sys_close(int fd)
{
	(void)syscall(SYS_close, fd);
}

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

/* Sets the bit in map of the slot of staging_addr (in the unlocked half); false if outside. */
static bool mark_slot(uint64_t *map, uint64_t staging_addr)
{
	uint64_t slot = (staging_addr - (uint64_t)(uintptr_t)S.staging) / PAGE_SIZE;

	if (slot >= MEMEXT_STAGING_PAGES)
		return false;
	map[slot / 64] |= 1ULL << (slot % 64);
	return true;
}

/* The page bound for staging_addr is no longer write-protected. */
static void set_written(struct msg_agent_move_done *reply, uint64_t staging_addr)
{
	mark_slot(reply->written, staging_addr);
}

/* The kernel refused the page bound for staging_addr for a reason of its mapping (EINVAL), or
 * for a pin on it. */
static void set_unevictable(struct msg_agent_move_done *reply, uint64_t staging_addr)
{
	if (mark_slot(reply->unevictable, staging_addr))
		__atomic_store_n(&S.told_unevictable, true, __ATOMIC_RELEASE);
}

/* Pages one move takes at most: the daemon may wait for the end of one (GATE_WAIT_USEC). */
#define GATE_MAX_PAGES 32
/* How long the agent waits for the daemon to let go of the gate before it skips a page. */
#define GATE_WAIT_NSEC 1000000000LL

static int64_t monotonic_nsec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Whether the daemon's end of the agent socket is gone (it died). */
static bool daemon_gone(void)
{
	struct pollfd p = {.fd = __atomic_load_n(&A.fd, __ATOMIC_RELAXED), .events = POLLRDHUP};

	return syscall(SYS_poll, &p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/*
 * Enters the move gate, waiting while the daemon reads the uffd. False when the daemon is gone
 * or GATE_WAIT_NSEC passed (a daemon stopped or dead inside): moving nothing is always safe, and
 * the rest of the request is then not tried (A.gate_failed).
 */
static bool gate_enter(struct move_gate *g)
{
	int64_t deadline = 0;

	if (A.gate_failed)
		return false;
	for (unsigned i = 0; !move_gate_try_enter(g); i++) {
		while (move_gate_reading(g)) {
			if (++i % 256 != 0) {
				cpu_relax();
				continue;
			}
			if (!deadline)
				deadline = monotonic_nsec() + GATE_WAIT_NSEC;
			else if (monotonic_nsec() >= deadline || daemon_gone())
				return !(A.gate_failed = true);
			sched_yield();
		}
	}
	return true;
}

/* MEMEXT_TEST_ZAP_SHARED: the application zaps the page the agent found shared (S), at the
 * moment the test asked for. */
static void test_zap_shared(uint64_t addr, enum zap_when when)
{
	if (S.test_zap_shared_pid && S.test_zap_shared_when == when &&
	    S.test_zap_shared_pid == syscall(SYS_getpid) && addr >= S.test_zap_shared_start &&
	    addr < S.test_zap_shared_end)
		(void)madvise((void *)(uintptr_t)addr, PAGE_SIZE, MADV_DONTNEED);
}

/*
 * Ends a stretch in which the agent could fault (RISK_FAULT). True if nothing happened. False
 * if its daemon died meanwhile and the watchdog took over: once the watchdog has reconnected,
 * the agent drops the dead daemon's gate and the rest of its request (the new daemon adopted
 * the batch from the process as it is), and sends no reply, which the new daemon would take
 * for the answer to a request of its own.
 */
static bool agent_risk_over(int risk)
{
	int expect = risk;

	if (__atomic_compare_exchange_n(&A.risk, &expect, RISK_NONE, false, __ATOMIC_SEQ_CST,
					__ATOMIC_SEQ_CST))
		return true;
	while (RISK_STATE(expect = __atomic_load_n(&A.risk, __ATOMIC_ACQUIRE)) != RISK_DONE)
		futex_wait(&A.risk, expect);
	agent_take_socket();
	if (A.gate)
		(void)munmap(A.gate, PAGE_SIZE);
	A.gate = NULL;
	A.batch_dropped = true;
	__atomic_store_n(&A.risk, RISK_NONE, __ATOMIC_RELEASE);
	futex_wake(&A.risk);
	return false;
}

/*
 * Makes a page shared with a fork child exclusive again, content unchanged: a write fault
 * without a write (MADV_POPULATE_WRITE). That fault should not be a userfault: the agent would
 * wait for the daemon, and if it died meanwhile, for ever, and never reconnect. So the agent
 * prepares it inside the move gate, where the daemon reads no event (shared/movegate.h):
 *  - A page brought back clean is write-protected: the agent lifts the protection itself,
 *    through the uffd it holds, and says so in its reply, moved or not: the application may
 *    write the page from then on. (The daemon protects no page that is present: it only
 *    installs protected ones.) With no event read, the page there is still the batch's: any
 *    other change of the mapping makes the ioctl fail (EAGAIN) until its event is read, and
 *    the read cancels the page's slot.
 *  - A page the application zapped is missing. A zap (MADV_DONTNEED, MADV_FREE) waits for its
 *    REMOVE event to be read, and the daemon cancels the page's slot as it reads it: the agent
 *    leaves a cancelled slot alone, and a page not there (mincore). Past that look, no REMOVE
 *    is read before the write fault.
 * What the gate cannot hold off (munmap and a new mapping at once, mremap with
 * MREMAP_DONTUNMAP) still makes the write fault a userfault: for that, the agent says it is
 * unsharing, and the daemon reads and answers after GATE_WAIT_USEC; should the daemon die
 * then, the watchdog reconnects for the agent (RISK_FAULT). Does nothing, without a signal, on
 * a mapping that is not writable. stage: the page's staging address (its slot). *wrote: the
 * write fault was made (the page is exclusive now). False when the watchdog did: the rest of
 * the request is a dead daemon's, and is dropped.
 */
static bool make_exclusive(uint64_t addr, uint64_t stage, bool *wrote)
{
	struct uffdio_writeprotect wp = {.range = {.start = addr, .len = PAGE_SIZE}, .mode = 0};
	unsigned slot = (unsigned)((stage - (uint64_t)(uintptr_t)S.staging) / PAGE_SIZE);
	unsigned char present = 0;

	if (!A.gate || !gate_enter(A.gate))
		return true;
	/* An event pending (EAGAIN): the page stays this time. Any other error means the range
	 * is not write-protected at all (registered without WP): nothing to lift. */
	if (!move_gate_cancelled(A.gate, slot) &&
	    (sys_ioctl(__atomic_load_n(&A.uffd, __ATOMIC_RELAXED), UFFDIO_WRITEPROTECT, &wp) == 0 ||
	     errno != EAGAIN) &&
	    mincore((void *)(uintptr_t)addr, PAGE_SIZE, &present) == 0 && (present & 1)) {
		int risk = risk_word(__atomic_load_n(&S.generation, __ATOMIC_ACQUIRE), RISK_FAULT);

		move_gate_unsharing(A.gate);
		__atomic_store_n(&A.risk, risk, __ATOMIC_SEQ_CST);
		test_zap_shared(addr, ZAP_AFTER_LOOK);
		*wrote = madvise((void *)(uintptr_t)addr, PAGE_SIZE, MADV_POPULATE_WRITE) == 0;
		if (!agent_risk_over(risk))
			return false;
	}
	move_gate_leave(A.gate);
	return true;
}

/*
 * Moves the start of one contiguous run through the main uffd, inside the move gate, and stops
 * before the first page whose batch slot the daemon cancelled (shared/movegate.h): returns
 * bytes moved from its start, and the error that stopped it (ECANCELED: the first page was
 * cancelled; ETIMEDOUT: the gate stayed closed). The slot is the staging page's: dst going out,
 * src coming back. EAGAIN (an event is pending) is retried for up to MOVE_EAGAIN_NSEC, outside
 * the gate, where the daemon reads the event.
 */
static uint64_t move_once(uint64_t dst, uint64_t src, uint64_t len, bool back, int *ret_err)
{
	struct move_gate *g = A.gate;
	uint64_t stage = back ? src : dst, st = (uint64_t)(uintptr_t)S.staging;
	int uffd = __atomic_load_n(&A.uffd, __ATOMIC_RELAXED);
	int64_t deadline = 0;

	if (!g) {
		*ret_err = ENOTCONN;
		return 0;
	}
	len = MIN(len, (uint64_t)GATE_MAX_PAGES * PAGE_SIZE);
	for (;;) {
		struct uffdio_move mv = {.dst = dst, .src = src};
		int r;

		if (!gate_enter(g)) {
			*ret_err = ETIMEDOUT;
			return 0;
		}
		while (mv.len < len &&
		       !move_gate_cancelled(g, (unsigned)((stage + mv.len - st) / PAGE_SIZE)))
			mv.len += PAGE_SIZE;
		if (mv.len == 0) {
			move_gate_leave(g);
			*ret_err = ECANCELED;
			return 0;
		}
		r = sys_ioctl(uffd, UFFDIO_MOVE, &mv);
		move_gate_leave(g);
		if (r == 0 && S.test_unreported_every &&
		    ++S.test_move_calls % S.test_unreported_every == 0) {
			r = -1;
			errno = EEXIST;
			mv.move = -EEXIST;
		}
		if (r == 0) {
			*ret_err = 0;
			return mv.len;
		}
		if (errno == EAGAIN && mv.move <= 0) {
			if (!deadline)
				deadline = monotonic_nsec() + MOVE_EAGAIN_NSEC;
			if (monotonic_nsec() < deadline) {
				sched_yield();
				continue;
			}
		}
		*ret_err = errno;
		return mv.move > 0 ? (uint64_t)mv.move : 0;
	}
}

static void move_range(const struct move_range *r, bool back, struct msg_agent_move_done *reply)
{
	uint64_t done = 0;

	while (done < r->len) {
		uint64_t len = r->len - done, moved;
		bool pinned = false;
		int err;

		moved = move_once(r->dst + done, r->src + done, len, back, &err);
		if (err && moved == 0 && len > PAGE_SIZE && err != ECANCELED && err != ETIMEDOUT &&
		    err != EAGAIN && err != ENOTCONN) {
			/* A run may cross two mappings (EINVAL) or hold one page the kernel refuses:
			 * find out page by page. */
			moved = move_once(r->dst + done, r->src + done, PAGE_SIZE, back, &err);
		}
		if (err == EBUSY && moved == 0 && !back) {
			/* Still shared with a fork child (or the child has exited and the page was
			 * not written since): the kernel moves only pages exclusive to us. Tried
			 * again whatever came of it: the page may be gone meanwhile (ECANCELED). */
			bool wrote = false;

			set_written(reply, r->dst + done);
			test_zap_shared(r->src + done, ZAP_BEFORE);
			if (!make_exclusive(r->src + done, r->dst + done, &wrote))
				return;
			moved = move_once(r->dst + done, r->src + done, PAGE_SIZE, back, &err);
			/* Exclusive now and still refused: pinned (io_uring's registered buffers,
			 * RDMA, vfio: folio_maybe_dma_pinned()), which another turn of the daemon's
			 * hand would not change. */
			pinned = wrote && err == EBUSY && moved == 0;
		}
		if (err == ECANCELED && moved == 0) {
			/* An event took the page away from the batch: it is not ours to move. */
			done += PAGE_SIZE;
			continue;
		}
		if (err == EINVAL && moved == 0 && !back && (S.flags & HELLO_IGNORE_MLOCK)) {
			/* Mlocked memory moves only into locked memory: the locked half. */
			uint64_t dst = r->dst + done + MEMEXT_STAGING_PAGES * PAGE_SIZE;

			moved = move_once(dst, r->src + done, PAGE_SIZE, back, &err);
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
			 * protection, pinned, gone). */
			if ((err == EINVAL || pinned) && !back)
				set_unevictable(reply, r->dst + done);
			if (!reply->first_err)
				reply->first_err = -err;
			reply->nr_failed++;
			done += PAGE_SIZE;
		}
	}
}

static bool register_staging(void);

/* Only ever between staging and memory outside the shim's own. */
static bool move_range_ok(const struct move_range *r, bool back)
{
	uint64_t st = (uint64_t)(uintptr_t)S.staging, st_end = st + staging_bytes();
	uint64_t stage = back ? r->src : r->dst, app = back ? r->dst : r->src;

	return r->len != 0 && r->len % PAGE_SIZE == 0 && stage % PAGE_SIZE == 0 &&
	       app % PAGE_SIZE == 0 && inside(stage, r->len, st, st_end) &&
	       !inside(app, PAGE_SIZE, st, st_end) &&
	       !inside(app, PAGE_SIZE, S.self.start, S.self.end);
}

/* Which staging pages (both halves) hold a page; false when mincore cannot say. */
static bool staging_resident(unsigned char *vec)
{
	return mincore(S.staging, staging_bytes(), vec) == 0;
}

static bool slot_moved(const struct msg_agent_move_done *reply, uint64_t slot)
{
	return reply->moved[slot / 64] & (1ULL << (slot % 64));
}

/*
 * Pages the kernel moved without saying so. Linux 6.18's UFFDIO_MOVE may answer EEXIST, nothing
 * moved, for a run it moved (docs/ARCHITECTURE.md: its batched move_pages() can keep the -EAGAIN
 * of a step whose retry moved the run, retry once more and count nothing). Reported as not
 * moved, the daemon would mark those pages resident and drop them with staging (seen as a JVM
 * whose heap lost pages). What moved shows in staging, which only the agent moves into or out of:
 * a page of the request that was empty before it and holds a page now received it; one that held
 * a page going back and is empty now gave it. before: staging's residency when the request came.
 */
/*
 * The staging page that received slot k's page in this request (going back: gave it back), as
 * its residency changed between before and now; UINT64_MAX when none did (reconcile_moves).
 */
static uint64_t staging_page_moved(const unsigned char *before, const unsigned char *now,
				   uint64_t k, bool back)
{
	if (back)
		return (before[k] & 1) && !(now[k] & 1) ? k : UINT64_MAX;
	/* Going out, an mlocked page may have gone to the locked half instead. */
	for (uint64_t j = k; j < staging_bytes() / PAGE_SIZE; j += MEMEXT_STAGING_PAGES)
		if (!(before[j] & 1) && (now[j] & 1))
			return j;
	return UINT64_MAX;
}

static void reconcile_moves(const struct msg_agent_move *m, bool back, const unsigned char *before,
			    struct msg_agent_move_done *reply)
{
	unsigned char now[2 * MEMEXT_STAGING_PAGES];
	uint64_t st = (uint64_t)(uintptr_t)S.staging;
	unsigned found = 0;

	if (!staging_resident(now))
		return;
	for (uint32_t i = 0; i < m->nr; i++) {
		const struct move_range *r = &m->r[i];
		uint64_t stage = back ? r->src : r->dst;

		if (!move_range_ok(r, back))
			continue;
		for (uint64_t off = 0; off < r->len; off += PAGE_SIZE) {
			uint64_t k = (stage + off - st) / PAGE_SIZE, j;

			if (slot_moved(reply, k % MEMEXT_STAGING_PAGES))
				continue;
			j = staging_page_moved(before, now, k, back);
			if (j == UINT64_MAX)
				continue;
			set_moved(reply, st + j * PAGE_SIZE);
			found++;
		}
	}
	reply->nr_unreported += found;
	reply->nr_failed -= MIN(found, reply->nr_failed);
}

static void agent_move(const struct msg_agent_move *m)
{
	bool back = m->flags & AGENT_MOVE_BACK, know_before;
	unsigned char before[2 * MEMEXT_STAGING_PAGES];
	struct msg_agent_move_done reply;

	memset(&reply, 0, sizeof(reply));
	A.gate_failed = false;
	A.batch_dropped = false;
	if (!back && !register_staging())
		A.gate_failed = true; /* nowhere to move to: every page fails, ETIMEDOUT */
	if (S.test_move_delay_usec && !back) {
		struct timespec ts = {0, (long)S.test_move_delay_usec * 1000};

		(void)syscall(SYS_nanosleep, &ts, NULL);
	}
	know_before = staging_resident(before);
	proto_init_header(&reply.h, MSG_AGENT_MOVE_DONE, sizeof(reply), m->h.seq);
	for (uint32_t i = 0; i < m->nr && !A.batch_dropped; i++) {
		const struct move_range *r = &m->r[i];

		if (!move_range_ok(r, back)) {
			reply.nr_failed++;
			reply.first_err = -EINVAL;
			continue;
		}
		move_range(r, back, &reply);
		if (i == 0 && !back && S.test_stop_at_move &&
		    ++S.test_moves == S.test_stop_at_move && S.test_stop_pid == syscall(SYS_getpid))
			/* To this thread: it stops on the way out of the call, before it
			 * answers, as every thread does in a group stop. */
			(void)syscall(SYS_tgkill, S.test_stop_pid, syscall(SYS_gettid), SIGSTOP);
	}
	if (know_before && !A.batch_dropped)
		reconcile_moves(m, back, before, &reply);
	if (!A.batch_dropped)
		(void)proto_send(__atomic_load_n(&A.fd, __ATOMIC_RELAXED), &reply, sizeof(reply),
				 NULL, 0);
}

/* Closes every fd of the agent's (unshared) table but the sorted keep[0..n). */
static void close_all_but(const int *keep, int n)
{
	unsigned lo = 0;

	for (int i = 0; i < n; i++) {
		if ((unsigned)keep[i] > lo)
			(void)syscall(SYS_close_range, lo, (unsigned)keep[i] - 1, 0);
		lo = (unsigned)keep[i] + 1;
	}
	(void)syscall(SYS_close_range, lo, ~0U, 0);
}

/* Gives the agent a table of its own holding only its fds (see A). */
static void agent_own_fds(void)
{
	int keep[3] = {A.fd, A.uffd, A.pmem_fd}, n = A.pmem_fd >= 0 ? 3 : 2;

	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];

			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	if (unshare(CLONE_FILES) < 0)
		return;
	/* The copy holds every fd the process had: keeping them would keep the
	 * application's pipes and sockets open behind its back. */
	close_all_but(keep, n);
	A.private = true;
}

static void reconnect(void);

/* MSG_AGENT_PMEM: the daemon's pmem, which replaces any we held (the dead daemon's, which the
 * new one has adopted from by now). */
static void agent_take_pmem(const int *fds, unsigned nr_fds)
{
	if (nr_fds != 1)
		return;
	if (A.pmem_fd >= 0)
		(void)syscall(SYS_close, A.pmem_fd);
	A.pmem_fd = fds[0];
}

/* Registers staging with the main uffd again (moves into it need that); tried again before
 * every move out while it fails. */
static bool register_staging(void)
{
	struct uffdio_register reg = {
		.range = {(uint64_t)(uintptr_t)S.staging, staging_bytes()},
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};

	if (!A.staging_registered)
		A.staging_registered =
			sys_ioctl(__atomic_load_n(&A.uffd, __ATOMIC_RELAXED), UFFDIO_REGISTER, &reg) == 0;
	return A.staging_registered;
}

static bool unregister_staging(void)
{
	struct uffdio_range range = {(uint64_t)(uintptr_t)S.staging, staging_bytes()};

	if (A.staging_registered &&
	    sys_ioctl(__atomic_load_n(&A.uffd, __ATOMIC_RELAXED), UFFDIO_UNREGISTER, &range) < 0)
		return false;
	A.staging_registered = false;
	return true;
}

/*
 * MSG_AGENT_FREE: the daemon has read staging, give the memory back. Staging is registered
 * with the main uffd, and MADV_DONTNEED on it would raise a REMOVE event that the agent then
 * waits to see read: by a daemon that died meanwhile never, and the agent would never
 * reconnect. So the range is unregistered around the drop (no event), and registered again
 * for the next batch's moves. If it cannot be unregistered, staging stays as it is: the next
 * batch's moves into its full slots fail, and the next FREE tries again.
 */
static void drop_staging(void)
{
	if (!unregister_staging())
		return;
	(void)madvise(S.staging, MEMEXT_STAGING_PAGES * PAGE_SIZE, MADV_DONTNEED);
	if (S.flags & HELLO_IGNORE_MLOCK)
		(void)madvise((char *)S.staging + MEMEXT_STAGING_PAGES * PAGE_SIZE,
			      MEMEXT_STAGING_PAGES * PAGE_SIZE, MADV_DONTNEED_LOCKED);
	register_staging();
}

/* MSG_AGENT_GATE: the move gate of the daemon that sent it, which replaces any we had (a dead
 * daemon's, or the fork parent's). Without one, nothing moves. */
static void agent_take_gate(const int *fds, unsigned nr_fds)
{
	void *p = MAP_FAILED;

	if (nr_fds == 1) {
		p = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
		(void)syscall(SYS_close, fds[0]);
	}
	if (A.gate)
		(void)munmap(A.gate, PAGE_SIZE);
	A.gate = p == MAP_FAILED ? NULL : p;
}

static void *agent_main(void *arg)
{
	/* Aligned for the largest message; lives on the agent's own (unregistered) stack. */
	uint64_t buf[(MEMEXT_MSG_MAX + 7) / 8];

	(void)arg;
	agent_own_fds();
	(void)prctl(PR_SET_NAME, "memext-agent");
	__atomic_store_n(&S.agent_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	for (;;) {
		const struct msg_header *h = (const struct msg_header *)buf;
		int fds[MEMEXT_MAX_FDS];
		unsigned nr_fds = MEMEXT_MAX_FDS;
		ssize_t n = proto_recv(A.fd, buf, sizeof(buf), fds, &nr_fds);

		if (n == -EINTR)
			continue;
		if (n <= 0) {
			/* The daemon died: our uffd still holds the registrations and threads
			 * that fault wait in the kernel until the next daemon serves them. */
			if (__atomic_load_n(&S.released, __ATOMIC_ACQUIRE))
				break;
			reconnect();
			continue;
		}
		if (h->type != MSG_AGENT_PMEM && h->type != MSG_AGENT_GATE)
			for (unsigned i = 0; i < nr_fds; i++)
				(void)syscall(SYS_close, fds[i]);
		switch (h->type) {
		case MSG_AGENT_PMEM:
			agent_take_pmem(fds, nr_fds);
			break;
		case MSG_AGENT_GATE:
			agent_take_gate(fds, nr_fds);
			break;
		case MSG_AGENT_ARM:
			__atomic_store_n(&S.armed, true, __ATOMIC_RELEASE);
			break;
		case MSG_AGENT_BUDGET:
			__atomic_store_n(&S.daemon_budget_bytes,
					 ((const struct msg_agent_budget *)buf)->budget_bytes,
					 __ATOMIC_RELEASE);
			break;
		case MSG_AGENT_RELEASE:
			/* Every page is back and nothing is registered: run on without memext.
			 * Staging too: nobody reads the uffd from now on. */
			(void)unregister_staging();
			__atomic_store_n(&S.released, true, __ATOMIC_RELEASE);
			/* The watchdog wakes up (POLLRDHUP) and sees released. */
			(void)syscall(SYS_shutdown, A.fd, SHUT_RD);
			__atomic_store_n(&S.armed, false, __ATOMIC_RELEASE);
			__atomic_store_n(&S.active, false, __ATOMIC_RELEASE);
			__atomic_store_n(&S.agent_ended, true, __ATOMIC_RELEASE);
			return NULL;
		case MSG_AGENT_MOVE:
			agent_move((const struct msg_agent_move *)buf);
			break;
		case MSG_AGENT_FREE:
			drop_staging();
			break;
		default:
			break;
		}
	}
	__atomic_store_n(&S.agent_ended, true, __ATOMIC_RELEASE);
	return NULL;
}

/* Set-up. */

struct object_query {
	uint64_t addr;	       /* an address inside the object */
	struct mem_range *ret; /* its loaded segments, .bss included */
};

static int find_object(struct dl_phdr_info *info, size_t size, void *data)
{
	struct object_query *q = data;
	uint64_t lo = UINT64_MAX, hi = 0;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD)
			continue;
		lo = MIN(lo, (uint64_t)(info->dlpi_addr + ph->p_vaddr));
		hi = MAX(hi, (uint64_t)(info->dlpi_addr + ph->p_vaddr + ph->p_memsz));
	}
	if (q->addr < lo || q->addr >= hi)
		return 0;
	*q->ret = (struct mem_range){PAGE_ALIGN_DOWN(lo), PAGE_ALIGN_UP(hi)};
	return 1;
}

/*
 * The memory the agent runs on, which the daemon must never register (sent in the hello): a
 * fault of the agent's waits for the daemon, and after the daemon died nothing would answer it
 * and the agent would never reconnect. Besides its stack and staging, that is this library and
 * the two the agent's system calls and thread go through, libc and the dynamic loader: their
 * .bss ends in anonymous memory (glibc's wrappers read __libc_single_threaded there, pthread
 * keeps its counts there), which would otherwise be managed like the application's.
 */
static void find_own_objects(void)
{
	struct object_query q[] = {
		{(uint64_t)(uintptr_t)&find_own_objects, &S.self},
		{(uint64_t)(uintptr_t)&getauxval, &S.libc},
		{getauxval(AT_BASE), &S.loader}, /* 0 when the loader is the program itself */
	};

	for (size_t i = 0; i < ARRAY_SIZE(q); i++)
		if (q[i].addr)
			dl_iterate_phdr(find_object, &q[i]);
}

static int open_uffd(void)
{
	int fd, dev;

	/* /dev/userfaultfd gives a uffd that also handles faults taken inside system calls,
	 * to anyone with access to the device (the package grants it to group memext). */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = sys_ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		sys_close(dev);
		if (fd >= 0)
			return fd;
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd >= 0 ? fd : -errno;
}

static int uffd_api(int fd, uint64_t features, uint64_t *ret_features)
{
	struct uffdio_api api = {.api = UFFD_API, .features = features};

	if (sys_ioctl(fd, UFFDIO_API, &api) < 0)
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
	sys_close(fd);
	if (r < 0)
		return r;
	if ((supported & MEMEXT_UFFD_REQUIRED) != MEMEXT_UFFD_REQUIRED)
		return -ENOTSUP;
	fd = open_uffd();
	if (fd < 0)
		return fd;
	r = uffd_api(fd, supported & MEMEXT_UFFD_WANTED, ret_features);
	if (r < 0) {
		sys_close(fd);
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

		sys_close(fd);
		return r;
	}
	return fd;
}

static void start_watchdog(void);

static int start_agent(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int r;

	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, (char *)S.agent_stack + AGENT_AREA_BYTES - AGENT_STACK_BYTES,
			      AGENT_STACK_BYTES);
	/* The agent takes no signal meant for the application. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	S.agent_tid = 0;
	__atomic_store_n(&S.agent_ended, false, __ATOMIC_RELEASE);
	A.fd = S.agent_fd;
	A.uffd = S.uffd;
	A.staging_registered = true; /* by memext_start() */
	A.private = false;
	A.risk = RISK_NONE;
	r = -pthread_create(&S.agent, &attr, agent_main, NULL);
	pthread_attr_destroy(&attr);
	if (r == 0) {
		pthread_detach(S.agent);
		/* Its tid goes into the hello. */
		while (!__atomic_load_n(&S.agent_tid, __ATOMIC_ACQUIRE))
			sched_yield();
		start_watchdog();
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

/*
 * poll() for one fd, through signal handlers: after fork() the child inherits the
 * application's handlers, and a signal during the hello must not make it give up on a daemon
 * that has already taken its uffd. System calls only: the agent runs this when no daemon
 * serves faults (reconnect()). -1 waits for ever. 0, -ETIMEDOUT or -errno.
 */
static int wait_readable(int fd, int timeout_msec)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	struct timespec now, end;

	(void)clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += timeout_msec / 1000;
	end.tv_nsec += (long)(timeout_msec % 1000) * 1000000L;
	for (;;) {
		long left_msec = -1, r;

		if (timeout_msec >= 0) {
			(void)clock_gettime(CLOCK_MONOTONIC, &now);
			left_msec = MAX((end.tv_sec - now.tv_sec) * 1000 +
						(end.tv_nsec - now.tv_nsec) / 1000000,
					0L);
		}
		r = syscall(SYS_poll, &p, 1, (int)left_msec);
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/*
 * Says hello on the control socket ctl with our uffd and waits for the answer. Also run by the
 * agent after a daemon died (reconnect(), resume: the dead daemon's pmem goes along): it makes
 * only system calls and touches only its stack and the shim's data, never memory of the
 * application's, where a fault would stop it for good.
 */
static int send_hello(int ctl, int uffd, int pidfd, int daemon_end, pid_t parent,
		      int resume_pmem)
{
	struct msg_hello hello;
	struct msg_hello_ack ack;
	int pagemap = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	bool resume = resume_pmem >= 0;
	int fds[5] = {uffd, pidfd, daemon_end, pagemap, resume ? resume_pmem : S.fork_pmem_fd};
	ssize_t n;
	int r;

	S.hello_refused = false;
	memset(&hello, 0, sizeof(hello));
	proto_init_header(&hello.h, MSG_HELLO, sizeof(hello), 1);
	hello.pid = (pid_t)syscall(SYS_getpid);
	hello.parent_pid = parent;
	hello.agent_tid = S.agent_tid;
	hello.flags = S.flags | HELLO_MOVE_GATE | (parent ? HELLO_FORK_CHILD : 0) |
		      (resume ? HELLO_RESUME : 0);
	hello.fork_token = parent ? S.fork_token : 0;
	if (parent && S.fork_shared > 0)
		hello.flags |= HELLO_FORK_SHARED;
	hello.budget_bytes = S.budget_bytes;
	hello.uffd_features = S.features;
	hello.staging = (struct mem_range){(uint64_t)(uintptr_t)S.staging,
					   (uint64_t)(uintptr_t)S.staging + staging_bytes()};
	hello.exclude[hello.nr_exclude++] = S.self;
	/* Empty when not found: the daemon excludes nothing for it. */
	hello.exclude[hello.nr_exclude++] = S.libc;
	hello.exclude[hello.nr_exclude++] = S.loader;
	hello.exclude[hello.nr_exclude++] = (struct mem_range){
		(uint64_t)(uintptr_t)S.agent_stack,
		(uint64_t)(uintptr_t)S.agent_stack + AGENT_AREA_BYTES};
	memcpy(hello.comm, S.comm, sizeof(hello.comm));

	if (pagemap < 0)
		return -errno;
	r = proto_send(ctl, &hello, sizeof(hello), fds, fds[4] >= 0 && (resume || parent) ? 5 : 4);
	sys_close(pagemap);
	if (r < 0)
		return r;
	/* Adopting our pages after a crash takes the daemon a while: no timeout then. */
	r = wait_readable(ctl, resume || fds[4] >= 0 ? -1 : HELLO_TIMEOUT_MSEC);
	if (r < 0)
		return r;
	do
		n = proto_recv(ctl, &ack, sizeof(ack), NULL, NULL);
	while (n == -EINTR);
	if (n <= 0)
		return n < 0 ? (int)n : -ECONNRESET;
	if (ack.h.type != MSG_HELLO_ACK)
		return -EBADMSG;
	S.hello_refused = ack.status < 0;
	__atomic_store_n(&S.daemon_hands_back, !!(ack.flags & ACK_HAND_BACK), __ATOMIC_RELEASE);
	__atomic_store_n(&S.daemon_leaves, !!(ack.flags & ACK_LEAVE), __ATOMIC_RELEASE);
	__atomic_store_n(&S.daemon_names_children, !!(ack.flags & ACK_FORK_CHILD),
			 __ATOMIC_RELEASE);
	return ack.status;
}

/* What the agent may print: a fixed string, write(2) and nothing else (see send_hello()). */
static void agent_say(const char *msg)
{
	if (S.debug)
		(void)syscall(SYS_write, STDERR_FILENO, msg, strlen(msg));
}

/*
 * After our daemon died: connects to the next one (as systemd restarts it) and hands over our
 * uffd and the dead daemon's pmem, retrying for as long as it takes: the application's evicted
 * pages exist nowhere else. Returns the new agent socket, or -1 once the process is released
 * (S.released: it runs on without memext). uffd, pmem and the result are in the
 * caller's own fd table (the agent's or the watchdog's), and it makes system calls only. The
 * socket it says hello on is closed after the answer: fork_prepare() makes the application's
 * control socket anew (control_reattach()).
 */
static int connect_again(int uffd, int pmem)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timespec delay = {0, 50 * 1000 * 1000};

	memcpy(sa.sun_path, S.socket_path, sizeof(sa.sun_path));
	for (;;) {
		int fd, pidfd = -1, pair[2] = {-1, -1}, r = -1;

		/* Let go of (a hello refused, MSG_LEAVE): the process runs on without memext. */
		if (__atomic_load_n(&S.released, __ATOMIC_ACQUIRE))
			return -1;
		fd = (int)syscall(SYS_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd >= 0 && syscall(SYS_connect, fd, &sa, sizeof(sa)) == 0) {
			pidfd = (int)syscall(SYS_pidfd_open, syscall(SYS_getpid), 0);
			if (pidfd >= 0 &&
			    syscall(SYS_socketpair, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0)
				r = send_hello(fd, uffd, pidfd, pair[1], 0, pmem);
		}
		if (fd >= 0)
			sys_close(fd);
		if (pidfd >= 0)
			sys_close(pidfd);
		if (pair[1] >= 0)
			sys_close(pair[1]);
		if (r == 0)
			return pair[0];
		if (pair[0] >= 0)
			sys_close(pair[0]);
		(void)syscall(SYS_nanosleep, &delay, NULL);
		if (delay.tv_nsec < 500 * 1000 * 1000)
			delay.tv_nsec *= 2;
	}
}

/* The agent's socket is now end (in its table), a new daemon's: it takes the old number. */
static void agent_reconnected(int end)
{
	if (syscall(SYS_dup3, end, A.fd, O_CLOEXEC) >= 0)
		sys_close(end);
	else
		__atomic_store_n(&A.fd, end, __ATOMIC_RELEASE);
	__atomic_fetch_add(&S.generation, 1, __ATOMIC_RELEASE);
	agent_say("memext: reconnected to the daemon\n");
}

static void reconnect(void)
{
	agent_say("memext: the daemon is gone; waiting for it to come back\n");
	/* The dead daemon's gate: the next one sends its own before asking for any move. */
	if (A.gate)
		(void)munmap(A.gate, PAGE_SIZE);
	A.gate = NULL;
	int end = connect_again(A.uffd, A.pmem_fd);

	/* None when released: the agent's next read ends it. */
	if (end >= 0)
		agent_reconnected(end);
}

/*
 * The watchdog: a thread that only reconnects, for an agent that cannot. The agent may wait on
 * a userfault of its own in make_exclusive() (a page the application unmapped and mapped again
 * between its look and its write); if memextd dies then, nobody would hand our uffd to the
 * next one, and the process would hang. The watchdog sleeps until the agent's socket hangs up.
 * If the agent is in such a stretch then (RISK_FAULT), it reconnects in its place: the new
 * daemon adopts our pages and wakes every fault, the agent's too, and the agent takes the new
 * socket from the watchdog's table (pidfd_getfd()). Otherwise the agent reconnects by itself.
 *
 * Like the agent, it is started by the application's thread in start_agent() (a thread the
 * agent started would allocate its thread data from the application's heap, which may be
 * evicted or locked by a thread that waits for the agent), takes no signal, keeps a table of
 * its own with only its fds, and makes system calls only. It needs pidfds of threads
 * (PIDFD_THREAD, Linux 6.9); without them there is no watchdog.
 */
static struct {
	pid_t tid;
	int agent; /* pidfd of the agent thread */
	int uffd;  /* its copy of the uffd, for a hello */
	int end;   /* the new agent socket, in its table, until the agent has it (RISK_DONE) */
} W = {.agent = -1, .uffd = -1, .end = -1};

/*
 * Reconnects for the agent, which waits in its fault (RISK_TAKEN of connection gen), and
 * hands it the socket. Its pages are in the pmem it holds: without a copy of it the next daemon
 * could not adopt them, so that is retried for as long as the agent is stuck anyway.
 */
static void watchdog_take_over(unsigned gen)
{
	struct timespec pause = {0, 10 * 1000 * 1000};
	int done = risk_word(gen, RISK_DONE), pmem = -1;

	agent_say("memext: the daemon died while the agent waited on a fault of its own; "
		  "reconnecting for it\n");
	while (A.pmem_fd >= 0 && (pmem = (int)syscall(SYS_pidfd_getfd, W.agent, A.pmem_fd, 0)) < 0)
		(void)syscall(SYS_nanosleep, &pause, NULL);
	W.end = connect_again(W.uffd, pmem);
	if (pmem >= 0)
		sys_close(pmem);
	__atomic_store_n(&A.risk, done, __ATOMIC_RELEASE);
	futex_wake(&A.risk);
	while (__atomic_load_n(&A.risk, __ATOMIC_ACQUIRE) == done)
		futex_wait(&A.risk, done);
	sys_close(W.end);
	W.end = -1;
}

/*
 * RISK_DONE: the agent takes the socket the watchdog made to the new daemon into its own table.
 * Should that fail, its old socket stays, closed: it then reconnects by itself.
 */
static void agent_take_socket(void)
{
	int wd = (int)syscall(SYS_pidfd_open, W.tid, PIDFD_THREAD);
	int end = wd >= 0 ? (int)syscall(SYS_pidfd_getfd, wd, W.end, 0) : -1;

	if (wd >= 0)
		sys_close(wd);
	if (end >= 0)
		agent_reconnected(end);
}

static void *watchdog_main(void *arg)
{
	/* With MEMEXT_DEBUG, the application's stderr as it was, for agent_say(). */
	int keep[2] = {STDERR_FILENO, S.uffd};

	(void)arg;
	(void)prctl(PR_SET_NAME, "memext-watch");
	__atomic_store_n(&W.tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	if (unshare(CLONE_FILES) < 0)
		return NULL;
	if (S.debug && S.uffd > STDERR_FILENO)
		close_all_but(keep, 2);
	else
		close_all_but(&keep[1], 1);
	W.uffd = S.uffd;
	W.agent = (int)syscall(SYS_pidfd_open, S.agent_tid, PIDFD_THREAD);
	if (W.agent < 0) {
		agent_say("memext: no pidfd for a thread (Linux 6.9+): the agent has no watchdog\n");
		return NULL;
	}
	for (;;) {
		unsigned gen = __atomic_load_n(&S.generation, __ATOMIC_ACQUIRE);
		int fd = __atomic_load_n(&A.fd, __ATOMIC_ACQUIRE);
		struct pollfd p = {.fd = (int)syscall(SYS_pidfd_getfd, W.agent, fd, 0),
				   .events = POLLRDHUP};
		struct timespec pause = {0, 20 * 1000 * 1000};
		long r;

		/* The agent has exited (released), or its socket cannot be had. */
		if (p.fd < 0)
			return NULL;
		while ((r = syscall(SYS_poll, &p, 1, -1)) < 0 && errno == EINTR)
			;
		sys_close(p.fd);
		if (r < 0)
			return NULL;
		/* That connection is over: the agent makes the next, unless it is stuck. */
		while (__atomic_load_n(&S.generation, __ATOMIC_ACQUIRE) == gen) {
			int expect = risk_word(gen, RISK_FAULT);

			if (__atomic_load_n(&S.released, __ATOMIC_ACQUIRE))
				return NULL;
			if (__atomic_compare_exchange_n(&A.risk, &expect, risk_word(gen, RISK_TAKEN),
							false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
				watchdog_take_over(gen);
				break;
			}
			(void)syscall(SYS_nanosleep, &pause, NULL);
		}
	}
}

/* With the agent's signals blocked: see watchdog_main(). Failure only costs the watchdog. */
static void start_watchdog(void)
{
	pthread_attr_t attr;
	pthread_t t;
	int r;

	__atomic_store_n(&W.tid, 0, __ATOMIC_RELEASE);
	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, (char *)S.agent_stack + PAGE_SIZE, WATCHDOG_STACK_BYTES);
	r = pthread_create(&t, &attr, watchdog_main, NULL);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		shim_log("cannot start the agent's watchdog thread: %s", errstr(r));
		return;
	}
	pthread_detach(t);
	/* Its tid, for whoever waits for its end (shim_threads_open()): known from here on. */
	while (!__atomic_load_n(&W.tid, __ATOMIC_ACQUIRE))
		sched_yield();
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		sys_close(*fd);
	*fd = -1;
}

/*
 * Where the shim's fds live. Made at the lowest free numbers (3, 4, ...), they would be the
 * first a program reuses after closing "everything but 0-2", and the numbers shells and
 * daemons dup2() onto. They are moved to the top of the soft RLIMIT_NOFILE, capped at 1024:
 * a table that large costs the kernel 8 bytes a slot (a 1M limit would cost 8 MiB).
 */
#define FD_CEILING 1024
#define FD_ROOM 32 /* numbers below the ceiling the shim may use */

static int fd_base(void)
{
	struct rlimit rl;
	uint64_t top;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	top = MIN((uint64_t)rl.rlim_cur, FD_CEILING);
	return top >= 4 * FD_ROOM ? (int)(top - FD_ROOM) : 0;
}

/* fd moved to S.fd_base or above, close-on-exec, or fd itself if it cannot move. */
static int move_high(int fd)
{
	int nfd;

	if (fd < 0 || S.fd_base <= 0 || fd >= S.fd_base)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, S.fd_base);
	if (nfd < 0)
		return fd;
	sys_close(fd);
	return nfd;
}

/* The shim's fds in the application's table (the agent's own table is out of its reach). */
#define NR_FD_SLOTS 5

static int nr_fd_slots(int **slots)
{
	int n = 0;

	slots[n++] = &S.uffd;
	slots[n++] = &S.control_fd;
	slots[n++] = &S.fork_pmem_fd;
	if (!__atomic_load_n(&A.private, __ATOMIC_ACQUIRE)) {
		slots[n++] = &A.fd;
		slots[n++] = &A.uffd;
	}
	return n;
}

/* fd is one of the shim's in the table of the calling process. A vfork child shares S but
 * not the table: there the number is the child's to do with as it likes. */
static bool shim_fd_here(int fd)
{
	int *slots[NR_FD_SLOTS], n = nr_fd_slots(slots);

	if (fd < 0)
		return false;
	for (int i = 0; i < n; i++)
		if (__atomic_load_n(slots[i], __ATOMIC_ACQUIRE) == fd)
			return getpid() == S.pid;
	return false;
}

/* Before dup2()/dup3() onto the shim's fd: moves it to another high number. 0 or -errno. */
static int fd_evacuate(int fd)
{
	int *slots[NR_FD_SLOTS], n = nr_fd_slots(slots);
	int nfd = fcntl(fd, F_DUPFD_CLOEXEC, MAX(S.fd_base, 3));

	if (nfd < 0)
		return -errno;
	/* A thread that loaded the old number just before this store uses it once more, on the
	 * application's new file: early registration (an ioctl the file refuses) or a fork()
	 * at that very moment. dup2() onto a number near 1000 racing a fork() is left at that. */
	for (int i = 0; i < n; i++)
		__atomic_compare_exchange_n(slots[i], &(int){fd}, nfd, false, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED);
	return 0;
}

/*
 * Interposed: close(), close_range(), closefrom(), dup2(), dup3(). The application cannot
 * take the shim's fds: closing one succeeds and leaves it open, ranges are closed around
 * them, and a dup onto one moves it first. Success, not EBADF, because a program that closes
 * what it found in /proc/self/fd expects success for each (Chromium's crash reporter warns,
 * Chromium's ScopedFD aborts); one that closes numbers it never opened ignores the answer. Not caught: the raw system calls
 * (syscall(SYS_close_range, ...)), and glibc's internal calls, e.g. the close_range of
 * posix_spawn's addclosefrom action, which runs in the child. The agent's own table keeps
 * eviction going either way; what the raw calls can take is the uffd early registration
 * uses and the control socket fork() asks the daemon through.
 */
_public_ int close(int fd)
{
	if (shim_fd_here(fd))
		return 0;
	return __close(fd);
}

/* The shim's fds in [first, last], sorted, into fds; returns how many. */
static int shim_fds_in(unsigned first, unsigned last, int *fds)
{
	int *slots[NR_FD_SLOTS], n = nr_fd_slots(slots), k = 0;

	if (getpid() != S.pid)
		return 0;
	for (int i = 0; i < n; i++) {
		int fd = __atomic_load_n(slots[i], __ATOMIC_ACQUIRE), j;

		if (fd < 0 || (unsigned)fd < first || (unsigned)fd > last)
			continue;
		for (j = 0; j < k && fds[j] != fd; j++)
			;
		if (j < k)
			continue; /* the same number in two slots */
		for (j = k++; j > 0 && fds[j - 1] > fd; j--)
			fds[j] = fds[j - 1];
		fds[j] = fd;
	}
	return k;
}

/* close_range() of [first, last] around the shim's fds. 0 or -errno. */
static int close_range_around(unsigned first, unsigned last, int flags)
{
	int fds[NR_FD_SLOTS], n = shim_fds_in(first, last, fds);
	unsigned lo = first;

	for (int i = 0; i <= n; i++) {
		unsigned hi = i < n ? (unsigned)fds[i] - 1 : last;

		if ((i == n || (unsigned)fds[i] > lo) &&
		    syscall(SYS_close_range, lo, hi, flags) < 0)
			return -errno;
		if (i < n)
			lo = (unsigned)fds[i] + 1;
	}
	return 0;
}

_public_ int close_range(unsigned first, unsigned last, int flags)
{
	int r;

	if (first > last) /* the kernel's answer (EINVAL), not ours */
		return (int)syscall(SYS_close_range, first, last, flags);
	r = close_range_around(first, last, flags);
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return 0;
}

_public_ void closefrom(int lowfd)
{
	struct rlimit rl;
	int saved = errno;

	lowfd = MAX(lowfd, 0);
	if (close_range_around((unsigned)lowfd, ~0U, 0) == 0 ||
	    getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		errno = saved;
		return;
	}
	/* No close_range (before 5.9): one at a time, as glibc falls back to. */
	for (uint64_t fd = (uint64_t)lowfd; fd < MIN(rl.rlim_cur, (rlim_t)INT_MAX); fd++)
		if (!shim_fd_here((int)fd))
			(void)syscall(SYS_close, (int)fd);
	errno = saved;
}

/* What dup2() and dup3() do before the kernel's: never hand out a shim fd, and move one that
 * sits at the target number. 0, or -errno. */
static int dup_prepare(int oldfd, int newfd)
{
	if (shim_fd_here(oldfd))
		return -EBADF;
	if (oldfd != newfd && shim_fd_here(newfd))
		return fd_evacuate(newfd);
	return 0;
}

_public_ int dup2(int oldfd, int newfd)
{
	int r = dup_prepare(oldfd, newfd);

	if (r < 0) {
		errno = -r;
		return -1;
	}
	return __dup2(oldfd, newfd);
}

_public_ int dup3(int oldfd, int newfd, int flags)
{
	int r = dup_prepare(oldfd, newfd);

	if (r < 0) {
		errno = -r;
		return -1;
	}
	return (int)syscall(SYS_dup3, oldfd, newfd, flags);
}

/* A connection to the daemon at a high number, its identity noted (control_fd()), or -errno. */
static int control_connect(void)
{
	int fd = move_high(connect_daemon());
	struct stat st;

	if (fd >= 0 && fstat(fd, &st) == 0) {
		S.control_dev = st.st_dev;
		S.control_ino = st.st_ino;
	}
	return fd;
}

/*
 * The hello of a fork child that shares evicted pages of its parent's (S.fork_shared): no
 * daemon holds them but the one the parent asked, or, should that one die, its successor. Until
 * one answers, the child waits: running on, it would read zeroes where its parent had evicted
 * pages.
 */
static int hello_waiting(int pidfd, int daemon_end, pid_t parent)
{
	struct timespec delay = {0, 50 * 1000 * 1000};
	bool said = false;

	for (;;) {
		int r = S.control_fd >= 0 ? send_hello(S.control_fd, S.uffd, pidfd, daemon_end, parent,
							-1)
					  : S.control_fd;

		if (r == 0 || S.hello_refused)
			return r;
		if (!said)
			shim_log("waiting for memextd (%s): it keeps %d evicted pages of this "
				 "process's parent",
				 errstr(r), S.fork_shared);
		said = true;
		close_fd(&S.control_fd);
		(void)nanosleep(&delay, NULL);
		if (delay.tv_nsec < 500 * 1000 * 1000)
			delay.tv_nsec *= 2;
		S.control_fd = control_connect();
	}
}

/*
 * A fork child's agent, once the daemon has registered the child's memory: pthread_create()
 * allocates, and the heap may hold pages evicted in the parent, which read as zeroes until
 * then. It keeps the pmem FORK_READY brought (a successor adopts the child from it). Without
 * an agent the daemon still serves the child's faults; it only evicts nothing.
 */
static void start_agent_late(void)
{
	struct msg_agent_started m = {0};
	int r;

	A.pmem_fd = S.fork_pmem_fd;
	r = start_agent();
	if (A.private || r < 0)
		close_fd(&S.fork_pmem_fd); /* the agent has its own copy */
	else
		S.fork_pmem_fd = -1; /* the agent's, in the table it shares with us */
	if (r < 0) {
		A.pmem_fd = -1;
		shim_log("cannot start the agent thread: %s; memory stays resident", errstr(r));
		return;
	}
	proto_init_header(&m.h, MSG_AGENT_STARTED, sizeof(m), 0);
	m.agent_tid = S.agent_tid;
	r = proto_send(S.control_fd, &m, sizeof(m), NULL, 0);
	if (r < 0)
		shim_log("cannot name the agent to the daemon: %s", errstr(r));
}

/*
 * A fork child that cannot get the evicted pages its parent shared with it: running on, it
 * would read zeroes where they were.
 */
static _Noreturn void lost_shared_pages(const char *why, int r)
{
	shim_log("%s%s%s: the evicted pages this process shares with its parent would read as "
		 "zeroes; aborting",
		 why, r ? ": " : "", r ? errstr(r) : "");
	abort();
}

/* Tells the daemon, instead of a hello, why this process runs without it: its log is where an
 * administrator looks (shim_log() is silent without MEMEXT_DEBUG). */
static void tell_no_uffd(int error)
{
	struct msg_no_uffd m = {.error = error};

	if (S.control_fd < 0)
		return;
	memcpy(m.comm, S.comm, sizeof(m.comm));
	m.comm[sizeof(m.comm) - 1] = 0;
	proto_init_header(&m.h, MSG_NO_UFFD, sizeof(m), 0);
	(void)proto_send(S.control_fd, &m, sizeof(m), NULL, 0);
}

/* The agent's and the watchdog's threads, whose end shim_threads_wait() waits for. */
struct shim_threads {
	struct pollfd p[2]; /* their pidfds (Linux 6.9+), -1 where there is none; an agent
			     * without one: events 0 */
	pid_t tid[2];
};

static void shim_threads_open(struct shim_threads *t)
{
	struct pollfd *p = t->p;
	pid_t agent = __atomic_load_n(&S.agent_tid, __ATOMIC_ACQUIRE);

	t->tid[0] = agent;
	t->tid[1] = __atomic_load_n(&W.tid, __ATOMIC_ACQUIRE);
	p[0] = (struct pollfd){.fd = agent ? (int)syscall(SYS_pidfd_open, agent, PIDFD_THREAD) : -1,
			       .events = POLLIN};
	if (agent && p[0].fd < 0 && errno != ESRCH)
		p[0].events = 0; /* Linux 6.8: its flag, then a moment for its exit */
	p[1] = (struct pollfd){.fd = t->tid[1] ? (int)syscall(SYS_pidfd_open, t->tid[1],
								      PIDFD_THREAD)
					       : -1,
			       .events = POLLIN};
}

/* Forgets them: nothing to wait for. */
static void shim_threads_close(struct shim_threads *t)
{
	for (unsigned i = 0; i < 2; i++)
		if (t->p[i].fd >= 0)
			sys_close(t->p[i].fd);
	t->p[0] = t->p[1] = (struct pollfd){.fd = -1, .events = POLLIN};
	t->tid[0] = t->tid[1] = 0;
}

/* Waits for both to end and to leave the thread group (a namespace change that wants a single
 * thread counts them until then), a few seconds at most, and closes the pidfds. */
static void shim_threads_wait(struct shim_threads *t)
{
	struct pollfd *p = t->p;
	struct timespec ms = {0, 1000 * 1000};

	if (p[0].fd < 0 && p[0].events == 0)
		for (int i = 0; i < 2000 && !__atomic_load_n(&S.agent_ended, __ATOMIC_ACQUIRE); i++)
			(void)syscall(SYS_nanosleep, &ms, NULL);
	for (unsigned i = 0; i < 2; i++) {
		while (p[i].fd >= 0 && syscall(SYS_poll, &p[i], 1, 5000) < 0 && errno == EINTR)
			;
		if (p[i].fd >= 0)
			sys_close(p[i].fd);
		/* Exited is not yet gone from the group: released right after. */
		for (int n = 0; t->tid[i] && n < 1000; n++) {
			char path[48];
			struct stat st;

			snprintf(path, sizeof(path), "/proc/self/task/%d", (int)t->tid[i]);
			if (syscall(SYS_newfstatat, AT_FDCWD, path, &st, 0) < 0)
				break;
			(void)syscall(SYS_nanosleep, &ms, NULL);
		}
	}
}

/* Connects this process to the daemon. parent: 0, or the pid we were forked from. */
static void memext_start(pid_t parent)
{
	int pidfd = -1, pair[2] = {-1, -1}, r;
	bool must_wait = parent && S.fork_shared > 0;
	struct uffdio_register reg;

	S.pid = getpid();
	S.fd_base = fd_base();
	S.control_gen = __atomic_load_n(&S.generation, __ATOMIC_ACQUIRE);
	(void)prctl(PR_GET_NAME, S.comm);
	S.comm[sizeof(S.comm) - 1] = 0;
	S.control_fd = control_connect();
	if (S.control_fd < 0 && !must_wait) {
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
		/* A fork child sharing evicted pages does not run on without memext: it stops
		 * (lost_shared_pages below), which is no news for the daemon's log. */
		if (!must_wait)
			tell_no_uffd(S.uffd);
		S.uffd = -1;
		goto fail;
	}
	S.uffd = move_high(S.uffd);
	if (!S.staging) {
		S.staging = mmap(NULL, staging_bytes(), PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		S.agent_stack = mmap(NULL, AGENT_AREA_BYTES, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (S.staging == MAP_FAILED || S.agent_stack == MAP_FAILED) {
			shim_log("cannot map the agent's memory; running without memext");
			goto fail;
		}
		/* guard pages */
		(void)mprotect(S.agent_stack, PAGE_SIZE, PROT_NONE);
		(void)mprotect((char *)S.agent_stack + PAGE_SIZE + WATCHDOG_STACK_BYTES, PAGE_SIZE,
			       PROT_NONE);
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
	/*
	 * UFFDIO_MOVE only moves into memory registered with the uffd it is issued on, and
	 * moves into staging go through the main uffd: the kernel refuses them while an
	 * UNMAP, REMAP or REMOVE event of the application's is not read (shared/movegate.h).
	 * Dropping staging unregisters it first, so that raises no event (drop_staging()).
	 */
	reg = (struct uffdio_register){
		.range = {(uint64_t)(uintptr_t)S.staging, staging_bytes()},
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (sys_ioctl(S.uffd, UFFDIO_REGISTER, &reg) < 0) {
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
	S.agent_fd = move_high(pair[0]);
	pair[0] = -1;
	/* A fork child starts its agent after the hello, in fork_child_late(). */
	r = parent ? 0 : start_agent();
	if (r < 0) {
		shim_log("cannot start the agent thread: %s; running without memext", errstr(r));
		goto fail;
	}
	if (must_wait)
		r = hello_waiting(pidfd, pair[1], parent);
	else
		r = S.control_fd >= 0 ? send_hello(S.control_fd, S.uffd, pidfd, pair[1], parent, -1)
				      : S.control_fd;
	close_fd(&pair[1]);
	close_fd(&pidfd);
	if (r < 0 && must_wait)
		lost_shared_pages("the daemon has lost them", r);
	if (r < 0) {
		struct shim_threads threads;

		shim_log("the daemon did not accept us: %s; running without memext", errstr(r));
		/* The agent sees its socket close and, released, ends rather than reconnect; so
		 * does its watchdog. Waited for: the program runs on with no thread of ours (a
		 * sandbox's zygote checks it has a single thread: Chromium's, whose hello from a
		 * PID namespace the daemon refuses). */
		if (!parent) /* a fork child's agent would start later */
			shim_threads_open(&threads);
		__atomic_store_n(&S.released, true, __ATOMIC_RELEASE);
		shutdown(S.agent_fd, SHUT_RDWR);
		if (parent)
			close_fd(&S.agent_fd);
		else
			shim_threads_wait(&threads);
		goto fail_agent;
	}
	if (parent)
		S.agent_late = true; /* after the other child handlers: fork_child_late() */
	else if (A.private)
		close_fd(&S.agent_fd); /* the agent has its own copies */
	__atomic_store_n(&S.active, true, __ATOMIC_RELEASE);
	if (S.budget_bytes)
		shim_log("managed by memextd (budget %llu bytes)", (unsigned long long)S.budget_bytes);
	else
		shim_log("managed by memextd (no MEMEXT_BUDGET: memextd.conf's [app:NAME] or "
			 "default-budget applies)");
	return;

fail:
	if (must_wait)
		lost_shared_pages("this fork child cannot be managed (see above)", 0);
	close_fd(&S.agent_fd);
	close_fd(&pair[1]);
	close_fd(&pidfd);
fail_agent:
	/* The agent may still be reading it: left open (one fd, once). With a table of its
	 * own, the agent closes its copies when it ends. */
	S.agent_fd = -1;
	close_fd(&S.control_fd);
	/* Unregister whatever we registered: an uffd nobody serves would hang the process. */
	close_fd(&S.uffd);
}

/* fork(): the child does not inherit the registrations (no UFFD_FEATURE_EVENT_FORK without
 * CAP_SYS_PTRACE), so every evicted page must be back in the parent before the address space
 * is copied; eviction of the parent pauses until fork returns. */

/* The control socket, or -1 if its number now holds another file: closed by a raw
 * close_range() and reused by the application, whose file fork must not write to. */
static int control_fd(void)
{
	int fd = __atomic_load_n(&S.control_fd, __ATOMIC_ACQUIRE);
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0 || st.st_dev != S.control_dev ||
	    st.st_ino != S.control_ino)
		return -1;
	return fd;
}

/*
 * A control socket anew (the daemon died and a new one serves us, or the application closed
 * ours with a raw system call): attached to our client with MSG_CONTROL_ATTACH, at the old
 * number when that still holds our dead socket. Returns the fd or -errno.
 */
static int control_reattach(void)
{
	unsigned gen = __atomic_load_n(&S.generation, __ATOMIC_ACQUIRE);
	struct msg_control_attach m = {.pid = getpid()};
	struct msg_hello_ack ack;
	int old = control_fd(), fd = move_high(connect_daemon()), r;
	struct stat st;
	ssize_t n;

	if (fd < 0)
		return fd;
	if (old >= 0 && syscall(SYS_dup3, fd, old, O_CLOEXEC) >= 0) {
		sys_close(fd);
		fd = old;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	proto_init_header(&m.h, MSG_CONTROL_ATTACH, sizeof(m), 0);
	r = proto_send(fd, &m, sizeof(m), NULL, 0);
	if (r == 0)
		r = wait_readable(fd, HELLO_TIMEOUT_MSEC);
	if (r < 0)
		goto fail;
	do
		n = proto_recv(fd, &ack, sizeof(ack), NULL, NULL);
	while (n == -EINTR);
	r = n <= 0 ? (n < 0 ? (int)n : -ECONNRESET)
		   : ack.h.type != MSG_HELLO_ACK ? -EBADMSG : ack.status;
	if (r < 0)
		goto fail;
	__atomic_store_n(&S.daemon_hands_back, !!(ack.flags & ACK_HAND_BACK), __ATOMIC_RELEASE);
	__atomic_store_n(&S.daemon_leaves, !!(ack.flags & ACK_LEAVE), __ATOMIC_RELEASE);
	__atomic_store_n(&S.daemon_names_children, !!(ack.flags & ACK_FORK_CHILD),
			 __ATOMIC_RELEASE);
	S.control_dev = st.st_dev;
	S.control_ino = st.st_ino;
	__atomic_store_n(&S.control_fd, fd, __ATOMIC_RELEASE);
	S.control_gen = gen;
	return fd;
fail:
	if (fd != old)
		sys_close(fd);
	return r;
}

/* The control socket of connection generation gen, made anew when it is gone. Returns the fd
 * or -errno. */
static int control_current(unsigned gen)
{
	int fd = gen == S.control_gen ? control_fd() : -1;

	return fd >= 0 ? fd : control_reattach();
}

static uint32_t fork_token_new(void)
{
	uint32_t t;

	/* Unguessable, so another process of the user cannot claim the child's pages. */
	if (syscall(SYS_getrandom, &t, sizeof(t), 0x1 /* GRND_NONBLOCK */) != sizeof(t))
		t = (uint32_t)syscall(SYS_gettid) ^ (uint32_t)(uintptr_t)&t;
	return t;
}

/*
 * Whether the child will have the fds it needs to say hello (the uffd, a pidfd, a socketpair,
 * its pagemap, the control socket, the pmem, the move gate for a moment): without them it could
 * not claim shared pages.
 */
static bool room_for_child_fds(int ctl)
{
	enum { CHILD_FDS = 8 };
	int fd[CHILD_FDS], n;

	for (n = 0; n < CHILD_FDS; n++) {
		fd[n] = fcntl(ctl, F_DUPFD_CLOEXEC, 0);
		if (fd[n] < 0)
			break;
	}
	for (int i = 0; i < n; i++)
		sys_close(fd[i]);
	return n == CHILD_FDS;
}

/*
 * FORK_PREPARE on fd, then FORK_READY: how many evicted pages the daemon keeps for the child
 * and, with any, its pmem memfd (S.fork_pmem_fd) for the child to hand on. Returns false when
 * the daemon went away meanwhile.
 */
static bool fork_request(int fd, uint32_t flags)
{
	struct msg_fork m = {0};
	struct pollfd p = {.fd = fd, .events = POLLIN};

	S.fork_token = fork_token_new();
	S.fork_parent = getpid();
	S.fork_shared = 0;
	S.fork_status = 0;
	proto_init_header(&m.h, MSG_FORK_PREPARE, sizeof(m), S.fork_token);
	m.flags = flags;
	if (!room_for_child_fds(fd))
		m.flags |= FORK_DRAIN;
	if (proto_send(fd, &m, sizeof(m), NULL, 0) < 0)
		return false;
	for (;;) {
		int fds[MEMEXT_MAX_FDS];
		unsigned nr_fds = MEMEXT_MAX_FDS;
		ssize_t n;

		if (poll(&p, 1, -1) < 0 && errno == EINTR)
			continue;
		n = proto_recv(fd, &m, sizeof(m), fds, &nr_fds);
		if (n == -EINTR || n == -EAGAIN)
			continue;
		if (n <= 0)
			return false;
		/* A READY for an earlier request (sent to a control socket we made anew) is
		 * not ours. Without the pmem (our fd table was full) the child still claims its
		 * pages from this daemon, only not from a successor. */
		bool ours = m.h.type == MSG_FORK_READY && m.h.seq == S.fork_token;

		for (unsigned i = 0; i < nr_fds; i++)
			if (i == 0 && ours && S.fork_pmem_fd < 0)
				S.fork_pmem_fd = move_high(fds[0]);
			else
				sys_close(fds[i]);
		if (ours) {
			S.fork_shared = MAX(m.status, 0);
			S.fork_status = m.status;
			return true;
		}
	}
}

/*
 * FORK_PREPARE until a daemon answers it, fork_lock held. drain: every evicted page back
 * before the copy, the child shares none (clone_prepare()). The child must not copy an
 * address space whose evicted pages only a daemon has: while no daemon serves us (it died,
 * the next one is not there yet) this waits for the agent to reconnect.
 */
static void fork_ask(uint32_t flags)
{
	S.fork_busy = true;
	S.fork_status = 0;
	S.fork_token = 0; /* none asked for, should no daemon serve us */
	while (__atomic_load_n(&S.active, __ATOMIC_ACQUIRE)) {
		unsigned gen = __atomic_load_n(&S.generation, __ATOMIC_ACQUIRE);
		int fd = control_current(gen);

		if (fd >= 0 && fork_request(fd, flags))
			break;
		for (int i = 0; i < 10 && gen == __atomic_load_n(&S.generation, __ATOMIC_ACQUIRE) &&
				__atomic_load_n(&S.active, __ATOMIC_ACQUIRE);
		     i++)
			usleep(10000);
	}
	S.fork_busy = false;
}

/* fork_lock, and who holds it (clone_prepare() asks): a fork, or a control request. */
static void fork_lock_take(void)
{
	pthread_mutex_lock(&S.fork_lock);
	__atomic_store_n(&S.fork_owner, (pid_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
}

static void fork_lock_give(void)
{
	__atomic_store_n(&S.fork_owner, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&S.fork_lock);
}

static void fork_prepare_as(bool drain)
{
	fork_lock_take();
	S.fork_prepared = true;
	fork_ask(drain ? FORK_DRAIN : 0);
}

static void fork_prepare(void)
{
	fork_prepare_as(false);
}

static void fork_unlock(void)
{
	S.fork_prepared = false;
	fork_lock_give();
}

/* The token of this thread's last fork, for fork() to name the child (MSG_FORK_CHILD); 0
 * if no daemon was asked. */
static __thread __attribute__((tls_model("initial-exec"))) uint32_t shared_fork_token;

static void fork_parent(void)
{
	struct msg_fork m = {0};
	int fd = control_fd();

	if (S.active && fd >= 0) {
		proto_init_header(&m.h, MSG_FORK_DONE, sizeof(m), 0);
		(void)proto_send(fd, &m, sizeof(m), NULL, 0);
	}
	shared_fork_token = S.fork_token;
	close_fd(&S.fork_pmem_fd); /* the child's to hand on */
	fork_unlock();
}

/*
 * The child's first atfork handler (register_child_first()): it says hello, and the daemon
 * registers the child's memory, before any other handler runs. Handlers run in the order they
 * were registered, and libraries register theirs before our constructor runs (jemalloc's, in
 * redis-server, is registered while libgpg-error's constructor allocates): one of those run
 * first reads or writes application memory that is still unregistered here, and where the
 * parent had evicted a page the child gets a zero page, which the daemon then takes for the
 * child's own (it is present) and drops the shared copy for. No malloc from here to the hello
 * (an allocator's locks are released by its own handler, which runs after this one); the
 * agent, whose pthread_create() allocates, starts in fork_child_late().
 */
static void fork_child(void)
{
	pid_t parent = S.fork_parent ? S.fork_parent : getppid();
	bool was_active = S.active;

	if (!S.fork_prepared)
		return; /* the shim is not managing this process: no fork_prepare() ran */
	if (S.test_child_dies && S.fork_shared > 0)
		_exit(0);
	if (S.test_child_stops && S.fork_shared > 0)
		(void)syscall(SYS_kill, getpid(), SIGSTOP);

	/* These are the parent's: its connection, its agent's socket, its uffd. A private agent
	 * table is not copied into the child: its numbers are not ours here. */
	close_fd(&S.control_fd);
	close_fd(&S.agent_fd);
	close_fd(&S.uffd);
	A.fd = A.uffd = A.pmem_fd = -1;
	/* The parent's gate, shared with its daemon: ours comes with our hello. Left alone in a
	 * process memext let go of: a seccomp filter it inherited may forbid the calls. */
	if (A.gate && was_active)
		(void)munmap(A.gate, PAGE_SIZE);
	A.gate = NULL;
	A.private = false;
	S.agent_tid = 0;
	S.armed = false;
	S.active = false;
	/* Staging may still hold the parent's last batch if its agent had not freed it yet. */
	if (S.staging && was_active) {
		(void)madvise(S.staging, MEMEXT_STAGING_PAGES * PAGE_SIZE, MADV_DONTNEED);
		if (S.flags & HELLO_IGNORE_MLOCK)
			(void)madvise((char *)S.staging + MEMEXT_STAGING_PAGES * PAGE_SIZE,
				      MEMEXT_STAGING_PAGES * PAGE_SIZE, MADV_DONTNEED_LOCKED);
	}
	if (was_active) {
		sigset_t all, old;

		/* A handler run before the daemon has registered our memory would read zeroes
		 * where the parent had evicted pages, or write to a page the daemon then takes
		 * for the child's own: signals wait until fork returns. */
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		memext_start(parent);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
}

/* The child's handler in the usual place, after those registered before our constructor ran:
 * the allocator works again, so the agent can start. */
static void fork_child_late(void)
{
	if (!S.fork_prepared)
		return;
	if (S.agent_late) {
		S.agent_late = false;
		start_agent_late();
		if (A.private)
			close_fd(&S.agent_fd); /* the agent has its own copies */
	}
	close_fd(&S.fork_pmem_fd);
	S.fork_shared = 0;
	S.fork_parent = 0;
	fork_unlock();
}

/*
 * A child that copies the address space without fork()'s handlers: glibc's clone() without
 * CLONE_VM (Firefox starts its sandboxed processes so, with namespace flags), and clone,
 * clone3 and fork by number through syscall() (Chromium's zygote launch). Its memory is not
 * registered with any userfaultfd (no UFFD_FEATURE_EVENT_FORK), so where the parent had
 * evicted a page it would read zeroes. Every evicted page comes back before the copy
 * (FORK_DRAIN, eviction paused until the parent's clone returns), and the child runs
 * unmanaged: no agent can start in a process whose glibc was not told it forked. It is
 * managed again once it executes a program.
 */
static bool clone_copies_memory(unsigned long flags)
{
	return !(flags & CLONE_VM) && __atomic_load_n(&S.active, __ATOMIC_ACQUIRE) &&
	       S.pid == getpid();
}

enum clone_prep {
	CLONE_TOOK_LOCK, /* clone_parent() ends it */
	CLONE_PROGRAM_HOLDS, /* the program's parent handler ends it */
	CLONE_REFUSED,   /* the call fails with EAGAIN */
};

/*
 * Every evicted page back before the copy. The program may run the atfork handlers itself
 * around its clone (Firefox, whose __register_atfork() keeps a list of its own):
 * fork_prepare() then holds fork_lock for this thread and asked for a shared snapshot, which
 * no child will claim; asked again, to drain, and memextd drops that snapshot. A signal
 * handler that interrupted this thread's own exchange with memextd cannot ask: refused, as
 * when not every page could come back.
 */
static enum clone_prep clone_prepare(void)
{
	enum clone_prep how = CLONE_TOOK_LOCK;

	if (__atomic_load_n(&S.fork_owner, __ATOMIC_RELAXED) == (pid_t)syscall(SYS_gettid)) {
		if (S.fork_busy)
			return CLONE_REFUSED;
		fork_ask(FORK_DRAIN | FORK_REPLACES);
		how = CLONE_PROGRAM_HOLDS;
	} else {
		fork_prepare_as(true);
	}
	if (S.fork_status >= 0)
		return how;
	shim_log("not every evicted page came back (%s): clone() refused", errstr(S.fork_status));
	if (how == CLONE_TOOK_LOCK)
		fork_parent();
	return CLONE_REFUSED;
}

/*
 * In the child: the parent's fds are let go of, and the parent's move gate unmapped (a
 * sandboxed child must not write to it). A child that shares the parent's table (CLONE_FILES)
 * keeps the numbers, and takes S.pid, so that the interposers keep its close() and dup2() off
 * them; execve() gives it a table of its own first.
 */
static void clone_child(unsigned long flags)
{
	int saved = errno;

	if (!(flags & CLONE_FILES)) {
		close_fd(&S.control_fd);
		close_fd(&S.agent_fd);
		close_fd(&S.uffd);
		close_fd(&S.fork_pmem_fd);
		A.fd = A.uffd = A.pmem_fd = -1;
	} else {
		S.pid = getpid();
	}
	if (A.gate)
		(void)munmap(A.gate, PAGE_SIZE);
	A.gate = NULL;
	S.active = false;
	S.armed = false;
	S.fork_shared = 0;
	S.fork_parent = 0;
	fork_unlock(); /* the program's child handlers, if it runs them, find nothing to do */
	errno = saved;
}

/* After the call, in the parent (or with no child): eviction goes on. */
static void clone_parent(enum clone_prep how)
{
	int saved = errno;

	if (how == CLONE_TOOK_LOCK)
		fork_parent();
	errno = saved;
}

typedef int (*clone_fn)(int (*)(void *), void *, int, void *, ...);
typedef pid_t (*fork_fn)(void);

/* glibc's, found in the constructor: a signal handler may call _Fork(), not dlsym(). */
static clone_fn real_clone;
static fork_fn real_fork, real_libc_fork;

static void find_real_clones(void)
{
	if (!__atomic_load_n(&real_clone, __ATOMIC_ACQUIRE))
		__atomic_store_n(&real_clone, (clone_fn)dlsym(RTLD_NEXT, "clone"),
				 __ATOMIC_RELEASE);
	if (!__atomic_load_n(&real_fork, __ATOMIC_ACQUIRE))
		__atomic_store_n(&real_fork, (fork_fn)dlsym(RTLD_NEXT, "_Fork"), __ATOMIC_RELEASE);
	if (!__atomic_load_n(&real_libc_fork, __ATOMIC_ACQUIRE))
		__atomic_store_n(&real_libc_fork, (fork_fn)dlsym(RTLD_NEXT, "fork"),
				 __ATOMIC_RELEASE);
}

struct clone_call {
	int (*fn)(void *);
	void *arg;
	unsigned long flags;
};

/* The child's first code, on its new stack: the struct is in its copy of our memory. */
static int clone_trampoline(void *p)
{
	struct clone_call *c = p;

	clone_child(c->flags);
	return c->fn(c->arg);
}

_public_ int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	struct clone_call call = {fn, arg, (unsigned)flags};
	enum clone_prep how;
	int saved = errno, r;
	pid_t *ptid, *ctid;
	void *tls;
	va_list ap;

	/* Read whether passed or not, as glibc's clone() does: flags say which the kernel uses. */
	va_start(ap, arg);
	ptid = va_arg(ap, pid_t *);
	tls = va_arg(ap, void *);
	ctid = va_arg(ap, pid_t *);
	va_end(ap);
	find_real_clones();
	if (!real_clone) {
		errno = ENOSYS;
		return -1;
	}
	if (!fn || !clone_copies_memory((unsigned)flags))
		return real_clone(fn, stack, flags, arg, ptid, tls, ctid);
	how = clone_prepare();
	if (how == CLONE_REFUSED) {
		errno = EAGAIN;
		return -1;
	}
	errno = saved;
	r = real_clone(clone_trampoline, stack, flags, &call, ptid, tls, ctid);
	clone_parent(how);
	return r;
}

/* The head of clone3()'s struct clone_args (CLONE_ARGS_SIZE_VER0: 64 bytes). */
struct clone3_head {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

/* The flags of a clone, clone3 or fork by number whose child runs on the caller's stack
 * (another stack cannot return from syscall()); false for any other call. */
static bool clone_by_number_flags(long nr, const long *a, unsigned long *flags)
{
	const struct clone3_head *args = (const void *)a[0];

#ifdef SYS_fork
	if (nr == SYS_fork) {
		*flags = SIGCHLD;
		return true;
	}
#endif
	if (nr == SYS_clone && a[1] == 0) {
		*flags = (unsigned long)a[0];
		return true;
	}
	if (nr == SYS_clone3 && args && (size_t)a[1] >= sizeof(*args) && args->stack == 0) {
		*flags = args->flags;
		return true;
	}
	return false;
}

/* One that copies our memory: true, and its result in *ret. */
static bool clone_by_number(long nr, const long *a, long *ret)
{
	enum clone_prep how;
	unsigned long flags;
	int saved = errno;

	if (!clone_by_number_flags(nr, a, &flags) || !clone_copies_memory(flags))
		return false;
	how = clone_prepare();
	if (how == CLONE_REFUSED) {
		errno = EAGAIN;
		*ret = -1;
		return true;
	}
	errno = saved;
	*ret = libc_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	if (*ret == 0)
		clone_child(flags);
	else
		clone_parent(how);
	return true;
}

/*
 * fork() itself, to name the child to memextd once fork() returned in the parent: should the
 * child die before it claims the evicted pages it shares (killed at once, say), memextd drops
 * them then, not after a minute (and its stop does not wait that long for them).
 */
_public_ pid_t fork(void)
{
	struct msg_fork_child m = {0};
	uint32_t token;
	int saved, fd;
	pid_t pid;

	find_real_clones();
	if (!real_libc_fork) {
		errno = ENOSYS;
		return -1;
	}
	shared_fork_token = 0;
	pid = real_libc_fork();
	token = shared_fork_token;
	shared_fork_token = 0;
	if (pid == 0 || !token || !__atomic_load_n(&S.daemon_names_children, __ATOMIC_ACQUIRE))
		return pid;
	/* A failed fork names no child: its snapshot goes at once too. */
	saved = errno;
	fd = control_fd();
	if (fd >= 0 && __atomic_load_n(&S.active, __ATOMIC_ACQUIRE)) {
		proto_init_header(&m.h, MSG_FORK_CHILD, sizeof(m), token);
		m.pid = pid > 0 ? pid : 0;
		(void)proto_send(fd, &m, sizeof(m), NULL, 0);
	}
	errno = saved;
	return pid;
}

/* glibc 2.34's fork() without the atfork handlers: it copies the address space all the same. */
_public_ pid_t _Fork(void)
{
	enum clone_prep how;
	int saved = errno;
	pid_t r;

	find_real_clones();
	if (!real_fork) {
		errno = ENOSYS;
		return -1;
	}
	if (!clone_copies_memory(SIGCHLD))
		return real_fork();
	how = clone_prepare();
	if (how == CLONE_REFUSED) {
		errno = EAGAIN;
		return -1;
	}
	errno = saved;
	r = real_fork();
	if (r == 0)
		clone_child(SIGCHLD);
	else
		clone_parent(how);
	return r;
}

/*
 * The child handler that must run before every other (fork_child()) is registered before
 * anyone else's: at the first registration in the process, whoever makes it. Libraries
 * initialized before us (the dependencies of the program are, a preloaded library comes
 * last) may have registered theirs already by the time our constructor runs, so we stand in
 * for glibc's __register_atfork(), which pthread_atfork() calls (and for pthread_atfork()
 * itself, which programs linked against a glibc older than 2.28 call in libc). The real one
 * is found once, with dlsym(); jemalloc calls pthread_atfork() from its own initialization,
 * which is ready for a recursive malloc.
 */
typedef int (*register_atfork_fn)(void (*)(void), void (*)(void), void (*)(void), void *);

/* Its address is what pthread_atfork() passes for the calling object (crtbegin). */
extern void *__dso_handle __attribute__((weak, visibility("hidden")));

static register_atfork_fn real_register_atfork;
static pthread_once_t child_first_once = PTHREAD_ONCE_INIT;

static void register_child_first(void)
{
	void *libc;

	real_register_atfork = (register_atfork_fn)dlsym(RTLD_NEXT, "__register_atfork");
	if (!real_register_atfork && (libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD))) {
		real_register_atfork = (register_atfork_fn)dlsym(libc, "__register_atfork");
		dlclose(libc);
	}
	if (real_register_atfork)
		(void)real_register_atfork(NULL, NULL, fork_child, &__dso_handle);
}

_public_ int __register_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void),
			       void *dso_handle);

int __register_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void),
		      void *dso_handle)
{
	pthread_once(&child_first_once, register_child_first);
	if (!real_register_atfork)
		return ENOMEM;
	return real_register_atfork(prepare, parent, child, dso_handle);
}

_public_ int pthread_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));

int pthread_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
	return __register_atfork(prepare, parent, child, NULL);
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

/* Resident bytes of this process, from /proc/self/statm; 0 when it cannot be read. */
static uint64_t self_rss_bytes(void)
{
	/* By hand, no stdio: mmap() is async-signal-safe and so must its interposer be. */
	char buf[128];
	int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/statm", O_RDONLY | O_CLOEXEC);
	uint64_t resident = 0;
	ssize_t n;
	char *p;

	if (fd < 0)
		return 0;
	n = syscall(SYS_read, fd, buf, sizeof(buf) - 1);
	sys_close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* "size resident shared ...": the second field, in pages. */
	p = memchr(buf, ' ', (size_t)n);
	if (!p)
		return 0;
	for (p++; *p >= '0' && *p <= '9'; p++)
		resident = resident * 10 + (uint64_t)(*p - '0');
	return resident * PAGE_SIZE;
}

/*
 * Whether to register a new mapping at once. Once the daemon tracks us, always. Before
 * (below track-above), only a mapping that could take us past the budget by itself: the
 * daemon looks at our resident size every 10 ms, and a program that maps and fills such a
 * buffer (stress-ng, memtester's mlock) would run far past its budget in that time.
 */
static bool register_now(uint64_t len)
{
	uint64_t budget = __atomic_load_n(&S.daemon_budget_bytes, __ATOMIC_ACQUIRE);

	if (__atomic_load_n(&S.armed, __ATOMIC_ACQUIRE))
		return true;
	if (!budget)
		budget = S.budget_bytes;
	return budget && self_rss_bytes() + len > budget;
}

static void early_register(uint64_t start, uint64_t len)
{
	struct uffdio_register reg = {
		.range = {PAGE_ALIGN_DOWN(start), PAGE_ALIGN_UP(start + len) - PAGE_ALIGN_DOWN(start)},
		.mode = UFFDIO_REGISTER_MODE_MISSING |
			(S.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP ? UFFDIO_REGISTER_MODE_WP : 0),
	};
	int saved = errno, uffd = __atomic_load_n(&S.uffd, __ATOMIC_ACQUIRE);

	if (len >= EARLY_REGISTER_MIN_BYTES && uffd >= 0 &&
	    __atomic_load_n(&S.active, __ATOMIC_ACQUIRE) && register_now(len))
		(void)sys_ioctl(uffd, UFFDIO_REGISTER, &reg);
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

/*
 * Pages the daemon set aside as unevictable (the kernel would not move them) may move again
 * after these: it is told, once the agent has reported such a page. A program that makes the
 * system calls itself is caught up with later (the daemon retries them now and then).
 */
static void tell_evictable(const void *addr, size_t len)
{
	struct msg_evictable m = {
		.range = {PAGE_ALIGN_DOWN((uint64_t)(uintptr_t)addr),
			  PAGE_ALIGN_UP((uint64_t)(uintptr_t)addr + len)},
	};
	int saved = errno, fd;

	if (!__atomic_load_n(&S.told_unevictable, __ATOMIC_ACQUIRE) || S.pid != getpid() ||
	    !__atomic_load_n(&S.active, __ATOMIC_ACQUIRE))
		return;
	fd = control_fd();
	if (fd >= 0) {
		proto_init_header(&m.h, MSG_EVICTABLE, sizeof(m), 0);
		(void)proto_send(fd, &m, sizeof(m), NULL, 0);
	}
	errno = saved;
}

_public_ int munlock(const void *addr, size_t len)
{
	int r = (int)syscall(SYS_munlock, addr, len);

	if (r == 0)
		tell_evictable(addr, len);
	return r;
}

_public_ int munlockall(void)
{
	int r = (int)syscall(SYS_munlockall);

	if (r == 0)
		tell_evictable(NULL, UINT64_MAX - PAGE_SIZE);
	return r;
}

_public_ int mprotect(void *addr, size_t len, int prot)
{
	int r = (int)syscall(SYS_mprotect, addr, len, prot);

	if (r == 0 && (prot & PROT_READ) && (prot & PROT_WRITE))
		tell_evictable(addr, len);
	return r;
}

/*
 * Sends the daemon a request on the control socket and waits, however long it takes, for its
 * answer: a message of type want with the request's seq, whose status is returned (or -errno;
 * -EOPNOTSUPP when the hello's ack did not offer the request: ack_flag). fork_lock keeps the
 * exchange from a fork's on the same socket; a daemon that goes away ends it.
 */
_Static_assert(sizeof(struct msg_leave_done) == sizeof(struct msg_hand_back_done) &&
		       offsetof(struct msg_leave_done, status) ==
			       offsetof(struct msg_hand_back_done, status),
	       "control_request() reads both answers as msg_hand_back_done");

static int control_request(struct msg_header *req, size_t len, uint16_t type, uint16_t want,
			   bool offered)
{
	/* Room for whatever else the control socket may hold (an answer nobody waited for). */
	union {
		struct msg_header h;
		struct msg_hand_back_done done; /* MSG_LEAVE_DONE has the same layout */
		struct msg_hello_ack ack;
		struct msg_fork fork;
	} in;
	uint32_t seq = fork_token_new();
	int fd, r, cancel_state;

	if (!__atomic_load_n(&S.active, __ATOMIC_ACQUIRE) || S.pid != getpid())
		return -ENOTCONN;
	/* poll() is a cancellation point: a thread cancelled in it would keep fork_lock. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
	fork_lock_take();
	S.fork_busy = true;
	r = fd = control_current(__atomic_load_n(&S.generation, __ATOMIC_ACQUIRE));
	if (fd >= 0 && !offered)
		r = -EOPNOTSUPP;
	if (r >= 0) {
		proto_init_header(req, type, (uint32_t)len, seq);
		r = proto_send(fd, req, len, NULL, 0);
	}
	while (r == 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, -1) < 0 && errno == EINTR)
			continue;
		n = proto_recv(fd, &in, sizeof(in), NULL, NULL);
		/* -EBADMSG: a message not for us (one with an fd, say), already dropped. */
		if (n == -EINTR || n == -EAGAIN || n == -EBADMSG)
			continue;
		if (n <= 0)
			r = n < 0 ? (int)n : -ECONNRESET;
		else if (in.h.type == want && in.h.seq == seq)
			break;
	}
	S.fork_busy = false;
	fork_lock_give();
	pthread_setcancelstate(cancel_state, NULL);
	return r < 0 ? r : in.done.status;
}

/*
 * Asks the daemon for [start, end), which the application registers with a userfaultfd of its
 * own (MSG_HAND_BACK): it brings the evicted pages of it back and unregisters it. Returns 0 or
 * -errno.
 */
static int hand_back(uint64_t start, uint64_t end)
{
	struct msg_hand_back m = {.range = {start, end}};

	return control_request(&m.h, sizeof(m), MSG_HAND_BACK, MSG_HAND_BACK_DONE,
			       __atomic_load_n(&S.daemon_hands_back, __ATOMIC_ACQUIRE));
}

/*
 * The process is about to make a call memext's threads are in the way of, and memext lets it
 * go first (MSG_LEAVE): memextd gives every page back and unregisters everything, and the agent
 * and its watchdog end; the program runs on without memext, as when the daemon stops. The
 * caller waits for both threads to end. Two such calls (why, for the log):
 *  - a seccomp filter, which may forbid what the agent does (ioctl, madvise) and would have the
 *    kernel kill the process at the agent's next move (Chrome's renderers, Firefox's content
 *    processes, services with SystemCallFilter=): no call of ours may come after it;
 *  - a new user namespace (unshare(CLONE_NEWUSER), setns() into a user or mount namespace),
 *    which the kernel grants a single-threaded process only (EINVAL otherwise): unshare -U,
 *    bwrap, rootless containers, Chromium's zygote.
 */
static void leave_memext(const char *why)
{
	struct msg_leave m;
	struct shim_threads threads;
	int saved = errno, r;

	if (!__atomic_load_n(&S.active, __ATOMIC_ACQUIRE) || S.pid != getpid())
		return;
	shim_threads_open(&threads);
	r = control_request(&m.h, sizeof(m), MSG_LEAVE, MSG_LEAVE_DONE,
			    __atomic_load_n(&S.daemon_leaves, __ATOMIC_ACQUIRE));
	if (r < 0)
		shim_log("%s comes, and memextd could not let the process go (%s)", why, errstr(r));
	if (r == 0) {
		/* The agent does the same as it ends; no mapping is registered from now on. */
		__atomic_store_n(&S.armed, false, __ATOMIC_RELEASE);
		__atomic_store_n(&S.active, false, __ATOMIC_RELEASE);
	}
	/* The agent reads MSG_AGENT_RELEASE, unregisters staging and ends; the watchdog sees it
	 * go and ends too. A few seconds at most: the filter is the program's to install. */
	if (r < 0)
		shim_threads_close(&threads);
	shim_threads_wait(&threads);
	if (r == 0)
		shim_log("left memextd before %s: every page is back", why);
	errno = saved;
}

#define BEFORE_SECCOMP "a seccomp filter"
#define BEFORE_USERNS "a namespace change that wants a single thread"

/* unshare() and setns() calls that the kernel grants a single-threaded process only. */
static bool wants_one_thread_unshare(unsigned long flags)
{
	/* CLONE_NEWUSER implies CLONE_THREAD; each of these wants the thread group empty. */
	return flags & (CLONE_NEWUSER | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM);
}

static bool wants_one_thread_setns(int fd, int nstype)
{
	/* No call of ours once memext is not there: a filter may forbid the ioctl. */
	if (!__atomic_load_n(&S.active, __ATOMIC_ACQUIRE) || S.pid != getpid())
		return false;
	/* nstype 0: whatever namespace fd is (NS_GET_NSTYPE); a pidfd's flags name several. */
	if (nstype == 0)
		nstype = (int)libc_syscall(SYS_ioctl, fd, NS_GET_NSTYPE, 0, 0, 0, 0);
	return nstype > 0 && (nstype & (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWTIME));
}

_public_ int unshare(int flags)
{
	if (wants_one_thread_unshare((unsigned)flags))
		leave_memext(BEFORE_USERNS);
	return (int)libc_syscall(SYS_unshare, flags, 0, 0, 0, 0, 0);
}

_public_ int setns(int fd, int nstype)
{
	if (wants_one_thread_setns(fd, nstype))
		leave_memext(BEFORE_USERNS);
	return (int)libc_syscall(SYS_setns, fd, nstype, 0, 0, 0, 0);
}

/*
 * Whether the call may install a filter (or strict mode). Not a probe bound to fail: libseccomp,
 * Firefox and Chromium ask what the kernel supports with a NULL program (EFAULT) or strict mode
 * with flags (EINVAL), in processes that never confine themselves.
 */
static bool seccomp_filters(long nr, long a0, long a1, long a2)
{
	if (nr == SYS_seccomp)
		return ((unsigned)a0 == SECCOMP_SET_MODE_STRICT && a1 == 0 && a2 == 0) ||
		       ((unsigned)a0 == SECCOMP_SET_MODE_FILTER && a2 != 0);
	if (nr == SYS_prctl && (int)a0 == PR_SET_SECCOMP)
		return (unsigned long)a1 == SECCOMP_MODE_STRICT ||
		       ((unsigned long)a1 == SECCOMP_MODE_FILTER && a2 != 0);
	return false;
}

_public_ int prctl(int option, ...)
{
	unsigned long a[4];
	va_list ap;

	va_start(ap, option);
	for (unsigned i = 0; i < 4; i++)
		a[i] = va_arg(ap, unsigned long);
	va_end(ap);
	if (seccomp_filters(SYS_prctl, option, (long)a[0], (long)a[1]))
		leave_memext(BEFORE_SECCOMP);
	return (int)libc_syscall(SYS_prctl, option, (long)a[0], (long)a[1], (long)a[2], (long)a[3], 0);
}

/*
 * syscall(): for seccomp(2), which glibc has no wrapper for, and for prctl(), unshare(),
 * setns(), clone(), clone3(), fork() and a UFFDIO_REGISTER ioctl() by number. Reads six
 * arguments, as glibc's syscall() passes on six registers whatever the call takes.
 */
_public_ long syscall(long nr, ...)
{
	long a[6], r;
	va_list ap;

	va_start(ap, nr);
	for (unsigned i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	/* A program's own userfaultfd registration, by number: handed over as through ioctl(). */
	if (nr == SYS_ioctl && (unsigned)a[1] == UFFDIO_REGISTER)
		return ioctl((int)a[0], (unsigned long)a[1], (void *)a[2]);
	if (clone_by_number(nr, a, &r))
		return r;
	if (seccomp_filters(nr, a[0], a[1], a[2]))
		leave_memext(BEFORE_SECCOMP);
	else if ((nr == SYS_unshare && wants_one_thread_unshare((unsigned long)a[0])) ||
		 (nr == SYS_setns && wants_one_thread_setns((int)a[0], (int)a[1])))
		leave_memext(BEFORE_USERNS);
	return libc_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/*
 * A program that registers its memory with a userfaultfd of its own (a live migration's
 * receiver, a checkpoint restorer, a collector) finds ours holding it: the kernel answers
 * EBUSY. The daemon then hands the range over, and the registration is made again; should
 * that fail, the program sees the kernel's error, as without memext.
 */
_public_ int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	void *arg;
	int r;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	r = sys_ioctl(fd, request, arg);
	/*
	 * The kernel takes the request as an unsigned int: so do we. Again should memextd have
	 * taken the range back before our registration (a thread stopped in between for a
	 * second: client_take_back); once more after a failed exchange, since a daemon that went
	 * away may have let go of the range first.
	 */
	for (int tries = 0; r < 0 && errno == EBUSY && (unsigned)request == UFFDIO_REGISTER &&
			    fd != S.uffd && tries < 3;
	     tries++) {
		const struct uffdio_register *reg = arg;
		uint64_t start = PAGE_ALIGN_DOWN(reg->range.start);
		uint64_t end = PAGE_ALIGN_UP(reg->range.start + reg->range.len);
		int e = hand_back(start, end);

		if (e < 0)
			shim_log("cannot hand %#" PRIx64 "-%#" PRIx64 " to the program's "
				 "userfaultfd: %s",
				 start, end, errstr(-e));
		r = sys_ioctl(fd, request, arg);
		if (e < 0)
			break;
	}
	return r;
}

/*
 * Whether a seccomp filter (or strict mode) confines the process already, inherited across
 * execve(). Read from /proc/self/status, as PR_GET_SECCOMP may itself be forbidden.
 */
static bool confined_by_seccomp(void)
{
	char buf[16384], *p;
	size_t len = 0;
	int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return true; /* cannot tell: the safe answer */
	for (ssize_t n; len < sizeof(buf) - 1 &&
			(n = syscall(SYS_read, fd, buf + len, sizeof(buf) - 1 - len)) > 0;)
		len += (size_t)n;
	sys_close(fd);
	buf[len] = 0;
	p = strstr(buf, "\nSeccomp:");
	if (!p) /* a kernel without seccomp, or a status too long to read to there */
		return len == sizeof(buf) - 1;
	return strtol(p + strlen("\nSeccomp:"), NULL, 10) != 0;
}

/*
 * Programs that check they have a single thread, and stop if they have more, before any call
 * the shim could leave memext at. Chromium's zygote (and Electron's, and CEF's: all are
 * started with --type=zygote) counts its threads in /proc/self/task right after start-up and
 * traps on more than one; it then only forks renderers, which leave memext anyway when they
 * install their seccomp filter.
 */
static const char *needs_one_thread(int argc, char **argv)
{
	for (int i = 1; argv && i < argc && argv[i]; i++)
		if (strcmp(argv[i], "--type=zygote") == 0)
			return "a zygote (--type=zygote), which must have a single thread";
	return NULL;
}

__attribute__((constructor)) static void memext_init(int argc, char **argv)
{
	const char *e;
	uint64_t budget = 0;
	int r;

	(void)libc_syscall_fn();
	find_real_clones();
	e = getenv("MEMEXT_DEBUG");
	S.debug = e && *e && strcmp(e, "0") != 0;
	if (getauxval(AT_SECURE)) {
		shim_log("setuid/setgid program: memext stays out");
		return;
	}
	/* Containers (Docker, podman, systemd-nspawn) and services (SystemCallFilter=,
	 * SystemCallArchitectures=) run under filters that allow what memext does: managed.
	 * MEMEXT_UNDER_SECCOMP=0 is for one that forbids it (ioctl, madvise, mincore, sockets)
	 * and would kill the program at the shim's first call. */
	e = needs_one_thread(argc, argv);
	if (e) {
		shim_log("%s: memext stays out", e);
		return;
	}
	e = getenv("MEMEXT_UNDER_SECCOMP");
	if (e && strcmp(e, "0") == 0 && confined_by_seccomp()) {
		shim_log("a seccomp filter confines this process and MEMEXT_UNDER_SECCOMP=0: memext "
			 "stays out");
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
	e = getenv("MEMEXT_TEST_MOVE_DELAY_US");
	if (e && *e)
		S.test_move_delay_usec = (uint32_t)MIN(strtoul(e, NULL, 10), 500000UL);
	e = getenv("MEMEXT_TEST_ZAP_SHARED");
	if (e && sscanf(e, "%" SCNx64 "-%" SCNx64, &S.test_zap_shared_start,
			&S.test_zap_shared_end) == 2) {
		S.test_zap_shared_pid = getpid();
		if (strstr(e, ":after-look"))
			S.test_zap_shared_when = ZAP_AFTER_LOOK;
	}
	e = getenv("MEMEXT_TEST_STOP_AT_MOVE");
	if (e && *e) {
		S.test_stop_at_move = (uint32_t)strtoul(e, NULL, 10);
		S.test_stop_pid = getpid();
	}
	e = getenv("MEMEXT_TEST_UNREPORTED_MOVE");
	if (e && *e)
		S.test_unreported_every = (uint32_t)strtoul(e, NULL, 10);
	e = getenv("MEMEXT_TEST_CHILD_DIES_AT_FORK");
	S.test_child_dies = e && strcmp(e, "1") == 0;
	e = getenv("MEMEXT_TEST_CHILD_STOPS_AT_FORK");
	S.test_child_stops = e && strcmp(e, "1") == 0;
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
	find_own_objects();

	/* First of all the child handlers, if no library has registered one yet. */
	pthread_once(&child_first_once, register_child_first);
	memext_start(0);
	if (S.active)
		__register_atfork(fork_prepare, fork_parent, fork_child_late, &__dso_handle);
}
