/* SPDX-License-Identifier: MIT */
/*
 * memextd: accepts applications running under libmemext.so, answers their page faults,
 * evicts their memory beyond budget into a compressed store, and serves statistics.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "caps.h"
#include "adopt.h"
#include "client.h"
#include "config.h"
#include "fault.h"
#include "forkshare.h"
#include "log.h"
#include "manager.h"
#include "pmem.h"
#include "procfs.h"
#include "maps.h"
#include "memext-build.h"
#include "protocol.h"
#include "reclaim.h"
#include "remapprobe.h"
#include "size.h"
#include "stats.h"
#include "store.h"
#include "sysmem.h"

#define SCAN_INTERVAL_USEC 10000   /* how often clients' resident size is checked */
#define IDLE_INTERVAL_USEC 1000000 /* how often the timer ticks without clients */
#define SCAN_MAX_AGE_USEC 1000000  /* a client's maps are rescanned at least this often */
#define SCAN_WANTED_USEC 50000     /* ... and when a fault asks (scan_wanted), at most this often */
/* Address space for pmem: the pool's arena chunks reserve up to 1 GiB each. */
#define PMEM_WINDOW_BYTES (UINT64_C(4) << 40)
#define SCAN_GROWTH_PAGES 256      /* ... or when its untracked memory grew this much */
#define FIRST_MESSAGE_USEC 2000000 /* a connection's hello (or stats request) comes within this */
#define MAX_PENDING 64              /* connections waiting for it */

enum watch_kind {
	WATCH_CLIENT_LISTEN,
	WATCH_STATS_LISTEN,
	WATCH_CONTROL,
	WATCH_PIDFD,
	WATCH_TIMER,
	WATCH_SIGNAL,
	WATCH_HELLO,	      /* a client connection, its hello not there yet */
	WATCH_STATS_REQUEST, /* a stats connection, its request not there yet */
};

struct watch {
	enum watch_kind kind;
	struct client *client;
};

/* A connection whose first message has not come yet: watched, never waited for (a process
 * stopped between connect() and its hello must not hold up the main thread). */
struct pending_conn {
	struct watch watch; /* first: epoll's data.ptr points at it */
	int fd;
	uint64_t deadline_usec;
};

/* Command-line settings; each overrides the configuration file's key of the same name. */
struct options {
	const char *config_path; /* NULL: MEMEXTD_CONFIG_PATH if it exists, else built-ins */
	const char *check_config_path;
	const char *socket_path;
	const char *stats_socket_path;
	const char *default_budget;
	const char *store_limit;
	const char *compressor;
	const char *zstd_level;
	const char *store_backend;
	const char *swap_files[CONFIG_MAX_SWAPFILES]; /* "PATH[:PRIO]" */
	unsigned nr_swap_files;
	const char *fault_threads;
	const char *reclaim_threads;
	const char *fault_poll_us;
	const char *batch_pages;
	const char *unevictable_retry_sec;
	const char *evict_stopped;
	const char *faultaround_pages;
	const char *log_level;
	const char *meminfo_path; /* a stand-in for /proc/meminfo (tests) */
	const char *crash_at;	  /* crash_point() that kills us (tests) */
	unsigned reclaim_pause_ms; /* reclaim's pause after a snapshot (tests) */
};

/* Exit codes, as memextd(8) documents them. */
enum {
	EXIT_RUNTIME = 1,
	EXIT_USAGE = 2,
	EXIT_CONFIG = 3,
	EXIT_CAPS = 4,
	EXIT_SOCKETS = 5,
};

struct daemon {
	struct manager m;
	struct memextd_config *cfg;
	const char *config_path; /* what SIGHUP re-reads; NULL: built-in defaults */
	struct options opts;
	uint64_t watchdog_usec, last_watchdog_usec, last_status_usec;
	/* Clients to destroy once the current round of events is handled: later events of the
	 * round may still point at their watches. */
	struct client *doomed[64];
	const char *doomed_why[64];
	unsigned nr_doomed;
	struct pending_conn *pending[MAX_PENDING];
	unsigned nr_pending;
	/* Users whose processes could not make a userfaultfd: said once each in the log. */
	uid_t no_uffd_uids[16];
	unsigned nr_no_uffd_uids;
	int epfd;
	int client_listen_fd, stats_listen_fd, timer_fd, signal_fd;
	uint64_t timer_usec; /* its interval (pace_timer()) */
	struct watch client_listen_watch, stats_listen_watch, timer_watch, signal_watch;
	bool quit;
};

static void reload_config(struct daemon *d);
static void pace_timer(struct daemon *d);

uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void crash_point(const struct manager *m, const char *point)
{
	if (m->cfg.crash_at && strcmp(m->cfg.crash_at, point) == 0) {
		log_notice("--crash-at %s: SIGKILL", point);
		raise(SIGKILL);
	}
}

void manager_kick_reclaim(struct manager *m)
{
	pthread_mutex_lock(&m->reclaim_lock);
	if (!m->reclaim_kick) {
		m->reclaim_kick = true;
		pthread_cond_signal(&m->reclaim_cond);
	}
	pthread_mutex_unlock(&m->reclaim_lock);
}

/* Every reclaim thread, not just one, takes a round. */
static void manager_wake_reclaim_all(struct manager *m)
{
	pthread_mutex_lock(&m->reclaim_lock);
	m->reclaim_kick = true;
	pthread_cond_broadcast(&m->reclaim_cond);
	pthread_mutex_unlock(&m->reclaim_lock);
}

static int listen_unix(const char *path, int type, mode_t mode)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_close_ int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path))
		return log_error_errno(-ENAMETOOLONG, "socket path too long: %s", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return log_error_errno(-errno, "socket: %m");
	(void)unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return log_error_errno(-errno, "cannot bind %s: %m", path);
	if (chmod(path, mode) < 0)
		return log_error_errno(-errno, "cannot chmod %s: %m", path);
	if (listen(fd, 64) < 0)
		return log_error_errno(-errno, "cannot listen on %s: %m", path);
	return TAKE_FD(fd);
}

static int watch_add(struct daemon *d, int fd, struct watch *w)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};

	return epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* What the kernel says an fd is: "anon_inode:[userfaultfd]", "anon_inode:[pidfd]". */
static bool fd_is(int fd, const char *what)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	return strcmp(target, what) == 0;
}

static pid_t pidfd_pid(int pidfd)
{
	char path[64], line[128];
	FILE *f;
	pid_t pid = -1;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pid:\t%d", &pid) == 1)
			break;
	fclose(f);
	return pid;
}

/* The shim's /proc/self/pagemap, opened by the process itself: "/proc/PID/pagemap". */
static bool fd_is_pagemap_of(int fd, pid_t pid)
{
	char path[64], target[64], want[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	snprintf(want, sizeof(want), "/proc/%d/pagemap", (int)pid);
	return strcmp(target, want) == 0;
}

/*
 * The smallest budget a client gets. One instruction, or one system call copying from several
 * user pages, may need a few pages resident at once; below that, a budget thrashes for ever:
 * at one page, `timeout` made 5 million faults on the same 9 pages without getting further.
 */
#define MIN_BUDGET_BYTES (UINT64_C(1) << 20)

/* MEMEXT_BUDGET wins, then the [app:NAME] section of the executable, then default-budget. */
static uint64_t client_budget(struct daemon *d, const struct msg_hello *hello)
{
	struct config_app_settings app;
	char path[64], exe[PATH_MAX];
	const char *name = hello->comm;
	ssize_t n;

	if (hello->budget_bytes)
		return hello->budget_bytes;
	snprintf(path, sizeof(path), "/proc/%d/exe", hello->pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		name = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
	}
	if (config_lookup_app(d->cfg, name, &app) > 0 && app.budget_bytes)
		return app.budget_bytes;
	return d->m.cfg.default_budget_bytes;
}

static void client_destroy(struct daemon *d, struct client *c, const char *why)
{
	struct manager *m = &d->m;

	pthread_mutex_lock(&m->clients_lock);
	for (struct client **p = &m->clients; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			m->nr_clients--;
			break;
		}
	pthread_mutex_unlock(&m->clients_lock);
	pthread_mutex_lock(&c->lock);
	c->dead = true;
	pthread_mutex_unlock(&c->lock);
	if (c->control_fd >= 0)
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->control_fd, NULL);
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->pidfd, NULL);
	fault_threads_remove_client(m, c);
	/* A shell or a build starts clients by the thousand: only one memext did something for
	 * is news. */
	log_full_errno(atomic_load(&c->stats.pswpout) ? LOG_INFO : LOG_DEBUG, 0,
		       "client %d (%s) %s: %" PRIu64 " faults, %" PRIu64 " pages evicted, %" PRIu64
		       " brought back",
		       c->pid, c->comm, why, atomic_load(&c->stats.faults),
		       atomic_load(&c->stats.pswpout), atomic_load(&c->stats.pswpin));
	client_unref(c);
}

static bool is_doomed(struct daemon *d, struct client *c)
{
	for (unsigned i = 0; i < d->nr_doomed; i++)
		if (d->doomed[i] == c)
			return true;
	return false;
}

/* Destroys c at the end of this round of events (at once if the list is full, which cannot
 * happen with 32 events a round). */
static void doom_client(struct daemon *d, struct client *c, const char *why)
{
	if (is_doomed(d, c))
		return;
	if (d->nr_doomed == ARRAY_SIZE(d->doomed)) {
		client_destroy(d, c, why);
		return;
	}
	d->doomed_why[d->nr_doomed] = why;
	d->doomed[d->nr_doomed++] = c;
}

struct client_watches {
	struct watch control, pidfd;
};

static struct client_watches *watches_of(struct client *c)
{
	return (struct client_watches *)c->user;
}

/*
 * A client back after its daemon died: adopt its evicted pages from the dead daemon's pmem
 * before it is served (adopt.h). Its agent is idle: it is the thread that reconnected.
 */
static void resume_client(struct client *c, int old_pmem_fd)
{
	uint64_t t0 = now_usec();
	int64_t n = adopt_client(c, old_pmem_fd);
	struct msg_agent_free f = {.range = c->staging};

	if (n == -ENOENT)
		log_info("client %d (%s) reconnected; nothing of it was evicted", c->pid, c->comm);
	else if (n < 0)
		log_error_errno((int)n, "client %d (%s): adopting its evicted pages failed: %m",
				c->pid, c->comm);
	else
		log_info("client %d (%s) adopted: %" PRId64 " evicted pages restored in %.1f ms",
			 c->pid, c->comm, n, (double)(now_usec() - t0) / 1000.0);
	/* What the dead daemon's last batch left in staging is in our store now. */
	proto_init_header(&f.h, MSG_AGENT_FREE, sizeof(f), 0);
	(void)proto_send(c->agent_fd, &f, sizeof(f), NULL, 0);
}

/* Wakes every thread of a resumed client that waits on a fault the dead daemon read and never
 * answered: each faults again, and we see it. */
static void wake_all(struct client *c)
{
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < c->registered.nr; i++) {
		struct uffdio_range r = {
			.start = c->registered.r[i].start,
			.len = c->registered.r[i].end - c->registered.r[i].start,
		};

		(void)ioctl(c->uffd, UFFDIO_WAKE, &r);
	}
	pthread_mutex_unlock(&c->lock);
}

/*
 * Whether to start tracking a client (main thread): its resident memory reached track-above
 * percent of its budget, or the system as a whole is short of memory.
 */
static bool should_arm(struct manager *m, struct client *c)
{
	int64_t rss = maps_resident_pages(c->statm_fd);

	if (rss >= 0)
		c->rss_pages = (uint64_t)rss;
	if (atomic_load(&m->sys_level) != SYSMEM_OK)
		return true;
	return c->budget_pages && rss >= 0 &&
	       (uint64_t)rss * 100 >= c->budget_pages * m->cfg.track_above_pct;
}

/* Registers the client's memory and has its shim register large new mappings at once. */
static void arm_client(struct client *c)
{
	struct msg_agent_arm msg;
	int r;

	c->armed = true;
	r = client_scan(c);
	if (r < 0 && r != -ESRCH)
		log_warning_errno(r, "client %d: scanning its memory: %m", c->pid);
	proto_init_header(&msg.h, MSG_AGENT_ARM, sizeof(msg), 0);
	(void)proto_send(c->agent_fd, &msg, sizeof(msg), NULL, 0);
	log_debug("client %d: tracking its memory (%" PRIu64 " pages resident)", c->pid,
		  c->rss_pages);
}

/*
 * A new control socket for a client we serve (its old one was closed, or belonged to a daemon
 * that died): it takes the old one's number, so the reclaim thread, which answers fork
 * requests on it, never writes to a number that is free or reused meanwhile.
 */
/* Whether the process the daemon numbers peer calls itself local (in a PID namespace of its
 * own, a process knows itself by another number: NSpid). */
static bool is_process(pid_t peer, pid_t local)
{
	return peer == local || (peer > 0 && local > 0 && proc_ns_local(peer, 0) == local);
}

/*
 * A hello from a process in a PID namespace of its own (unshare --pid, a container, Chromium's
 * zygote) names itself, its agent and its parent by that namespace's numbers: they become ours,
 * or the hello is refused (false).
 */
static bool hello_pids_ours(struct msg_hello *hello, pid_t peer, bool *namespaced)
{
	pid_t agent = hello->agent_tid;

	*namespaced = false;
	if (peer <= 0) /* outside our namespace */
		return false;
	/* By namespace, not by number: the two numbers may be equal by chance. */
	if (hello->pid != peer || !proc_in_our_pid_ns(peer)) {
		if (!is_process(peer, hello->pid))
			return false;
		if (agent && !(agent = proc_tid_from_local(peer, agent)))
			return false;
		log_info("client %d: pid %d in a PID namespace of its own", (int)peer, hello->pid);
		*namespaced = true;
		hello->pid = peer;
		hello->parent_pid = proc_ppid(peer);
	}
	/* A thread of this process: the daemon ptraces it. */
	if (agent && proc_tgid(agent) != peer)
		return false;
	hello->agent_tid = agent;
	return true;
}

static int attach_control(struct daemon *d, int fd, const struct msg_control_attach *m)
{
	struct msg_hello_ack ack = {.status = -ESRCH, .flags = ACK_HAND_BACK | ACK_LEAVE | ACK_FORK_CHILD};
	struct client *c = NULL;
	struct ucred cred;
	socklen_t len = sizeof(cred);

	proto_init_header(&ack.h, MSG_HELLO_ACK, sizeof(ack), m->h.seq);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    !is_process(cred.pid, m->pid)) {
		log_warning("control socket claims pid %d but is pid %d: dropped", m->pid,
			    (int)cred.pid);
		close(fd);
		return 0;
	}
	pthread_mutex_lock(&d->m.clients_lock);
	for (struct client *o = d->m.clients; o; o = o->next)
		if (o->pid == cred.pid && !o->dead)
			c = client_ref(o);
	pthread_mutex_unlock(&d->m.clients_lock);
	if (c && c->control_fd >= 0) {
		(void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->control_fd, NULL);
		if (dup3(fd, c->control_fd, O_CLOEXEC) >= 0 &&
		    watch_add(d, c->control_fd, &watches_of(c)->control) == 0)
			ack.status = 0;
		else
			ack.status = negative_errno();
	}
	(void)proto_send(fd, &ack, sizeof(ack), NULL, 0);
	close(fd);
	if (c) {
		log_info("client %d: new control socket%s", c->pid, ack.status ? " refused" : "");
		client_unref(c);
	}
	return 0;
}

/* The move gate, before the client is anyone's to evict: the agent handles its messages in
 * order, so it has the gate before the first MOVE. Only to a shim that asks for one. */
static void send_gate(struct client *c)
{
	struct msg_agent_gate g;

	if (c->flags & HELLO_MOVE_GATE) {
		proto_init_header(&g.h, MSG_AGENT_GATE, sizeof(g), 0);
		if (proto_send(c->agent_fd, &g, sizeof(g), &c->gate_fd, 1) < 0)
			log_warning("client %d: cannot send the move gate: nothing of it will be "
				    "evicted", c->pid);
	}
	close(TAKE_FD(c->gate_fd));
}

/*
 * A fork child whose hello came with a dead daemon's pmem: its parent's fork left a snapshot
 * there that no daemon gave it (we died before its answer). Returns whether it was found.
 */
static bool adopt_fork_share(struct client *c, const struct msg_hello *hello, uid_t uid,
			     int old_pmem_fd)
{
	struct adopt_pages later = {0};
	int64_t n =
		adopt_fork_child(c, old_pmem_fd, hello->parent_pid, hello->fork_token, uid, &later);
	int r, r2;

	if (n < 0) {
		adopt_pages_free(&later);
		if (n != -ETIME) /* said why */
			log_error_errno((int)n, "client %d: the pages its parent %d shared at fork "
						"are not in the dead daemon's memory: %m",
					c->pid, hello->parent_pid);
		return false;
	}
	r = fork_share_settle(c);
	r2 = fork_share_place(c, &later);
	adopt_pages_free(&later);
	if (r < 0 && r != -ESRCH)
		log_warning_errno(r, "client %d: registering its memory: %m", c->pid);
	if (r2 < 0 && r2 != -ESRCH) {
		log_error_errno(r2,
				"client %d: pages its parent shared at fork could be neither "
				"put back nor poisoned: %m; refused",
				c->pid);
		return false;
	}
	log_info("client %d: adopted %" PRId64 " pages its parent %d shared at fork", c->pid, n,
		 hello->parent_pid);
	return true;
}

static int take_hello(struct daemon *d, int fd_in);
static void answer_stats(struct daemon *d, int fd);

/* Forgets pending connection i (its watch too); returns its fd. */
static int pending_remove(struct daemon *d, unsigned i)
{
	struct pending_conn *h = d->pending[i];
	int fd = h->fd;

	(void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
	d->pending[i] = d->pending[--d->nr_pending];
	free(h);
	return fd;
}

/* Whether fd's first message (or its end) is there: reading it will not wait. */
static bool first_message_ready(int fd)
{
	char byte;

	return recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) >= 0 || errno != EAGAIN;
}

/* Handles a connection's first message, which is there (or its end); owns fd. kind:
 * WATCH_HELLO or WATCH_STATS_REQUEST. */
static void first_message(struct daemon *d, int fd, enum watch_kind kind)
{
	if (kind == WATCH_HELLO)
		(void)take_hello(d, fd);
	else
		answer_stats(d, fd);
}

/* A pending connection is readable. h is looked up, not trusted: an earlier event of the
 * same round may have taken it, and a new connection reused its memory. */
static void on_pending(struct daemon *d, struct pending_conn *h)
{
	for (unsigned i = 0; i < d->nr_pending; i++)
		if (d->pending[i] == h) {
			enum watch_kind kind = h->watch.kind;

			if (first_message_ready(h->fd))
				first_message(d, pending_remove(d, i), kind);
			return;
		}
}

/* Drops the connections whose first message did not come in time (main's timer). */
static void expire_pending(struct daemon *d, uint64_t now)
{
	for (unsigned i = 0; i < d->nr_pending;) {
		enum watch_kind kind = d->pending[i]->watch.kind;

		if (now < d->pending[i]->deadline_usec) {
			i++;
			continue;
		}
		close(pending_remove(d, i));
		if (kind == WATCH_HELLO)
			log_warning("a client connected but sent no hello in %d s: dropped",
				    FIRST_MESSAGE_USEC / 1000000);
		else
			log_debug("a stats connection sent no request in %d s: dropped",
				  FIRST_MESSAGE_USEC / 1000000);
	}
}

static void drop_pending(struct daemon *d)
{
	while (d->nr_pending)
		close(pending_remove(d, d->nr_pending - 1));
}

/* Watches fd (taken over) until its first message comes; kind: WATCH_HELLO or
 * WATCH_STATS_REQUEST. */
static int pend(struct daemon *d, int fd, enum watch_kind kind)
{
	struct pending_conn *h = d->nr_pending < MAX_PENDING ? calloc(1, sizeof(*h)) : NULL;
	int r;

	if (!h) {
		close(fd);
		return log_warning_errno(-EMFILE, "%u connections wait for their first message: a "
					 "new one is dropped", d->nr_pending);
	}
	*h = (struct pending_conn){{kind, NULL}, fd, now_usec() + FIRST_MESSAGE_USEC};
	r = watch_add(d, fd, &h->watch);
	if (r < 0) {
		free(h);
		close(fd);
		return log_warning_errno(r, "cannot watch a new connection: %m");
	}
	d->pending[d->nr_pending++] = h;
	return 0;
}

/*
 * A new connection on listen_fd: its first message is handled at once if it is there (as it
 * nearly always is: the shim and memextctl send it right after connect()), else when it
 * comes, from the event loop.
 */
static void accept_conn(struct daemon *d, int listen_fd, enum watch_kind kind)
{
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno != EAGAIN)
			log_warning_errno(-errno, "accept: %m");
	} else if (first_message_ready(fd)) {
		first_message(d, fd, kind);
	} else {
		(void)pend(d, fd, kind);
	}
}

/* Whether uid is new to the no-userfaultfd log (remembered if so; the first 16 users). */
static bool first_no_uffd(struct daemon *d, uid_t uid)
{
	for (unsigned i = 0; i < d->nr_no_uffd_uids; i++)
		if (d->no_uffd_uids[i] == uid)
			return false;
	if (d->nr_no_uffd_uids == ARRAY_SIZE(d->no_uffd_uids))
		return false;
	d->no_uffd_uids[d->nr_no_uffd_uids++] = uid;
	return true;
}

/*
 * A process said MSG_NO_UFFD instead of hello: it runs without memext. Said in the log once per
 * user at warning level, with what to do, then at debug level: a server forking a process per
 * connection would otherwise fill the log.
 */
static int note_no_uffd(struct daemon *d, int fd, const struct msg_no_uffd *msg)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	const char *comm = msg->comm; /* NUL-terminated: proto_check() */
	int error = msg->error < 0 && msg->error > -4096 ? msg->error : -EINVAL;
	const char *hint = error == -EPERM || error == -EACCES
				   ? "; /dev/userfaultfd is for group memext: add the user to it "
				     "(libmemext(7), ACCESS TO USERFAULTFD)"
			   : error == -ENOTSUP ? "; this kernel lacks UFFDIO_MOVE (Linux 6.8 or later)"
					       : "";

	atomic_fetch_add(&d->m.totals.clients_no_uffd, 1);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return log_warning_errno(-errno, "a process without a userfaultfd: SO_PEERCRED: %m");
	if (first_no_uffd(d, cred.uid))
		log_full_errno(LOG_WARNING, error,
			       "process %d (%s, uid %u) runs without memext: it cannot make a "
			       "userfaultfd (%m)%s; further processes of this user are only counted "
			       "(clients_no_uffd)",
			       (int)cred.pid, comm, (unsigned)cred.uid, hint);
	else
		log_full_errno(LOG_DEBUG, error,
			       "process %d (%s, uid %u) runs without memext: no userfaultfd (%m)",
			       (int)cred.pid, comm, (unsigned)cred.uid);
	return 0;
}

/* Takes the hello of a connection whose first message (or end) is there; owns fd_in. */
static int take_hello(struct daemon *d, int fd_in)
{
	struct manager *m = &d->m;
	struct msg_hello hello;
	struct msg_hello_ack ack = {.flags = ACK_HAND_BACK | ACK_LEAVE | ACK_FORK_CHILD};
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fds[MEMEXT_MAX_FDS] = {-1, -1, -1, -1, -1};
	uint64_t budget;
	unsigned nr_fds = MEMEXT_MAX_FDS;
	_cleanup_close_ int fd = fd_in;
	struct client *c = NULL;
	struct fork_share *share = NULL;
	pid_t local_pid, local_agent;
	bool namespaced, first;
	ssize_t n;
	int r;

	n = proto_recv(fd, &hello, sizeof(hello), fds, &nr_fds);
	if (n <= 0)
		return log_warning_errno(n < 0 ? (int)n : -ECONNRESET, "bad hello from a client: %m");
	if (hello.h.type == MSG_CONTROL_ATTACH && nr_fds == 0)
		return attach_control(d, TAKE_FD(fd), (const struct msg_control_attach *)&hello);
	if (hello.h.type == MSG_NO_UFFD && nr_fds == 0)
		return note_no_uffd(d, fd, (const struct msg_no_uffd *)&hello);
	r = -EBADMSG;
	/* A fifth fd: the pmem of the daemon that had the client's pages (resume), or that holds
	 * a fork child's share of its parent's. */
	if (hello.h.type != MSG_HELLO ||
	    !(nr_fds == 4 || (nr_fds == 5 && (hello.flags & (HELLO_RESUME | HELLO_FORK_CHILD))))) {
		log_warning("client hello malformed (type %u, %u fds): dropped", hello.h.type, nr_fds);
		goto fail;
	}
	local_pid = hello.pid;
	local_agent = hello.agent_tid;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    !hello_pids_ours(&hello, cred.pid, &namespaced)) {
		log_warning("client claims pid %d but is pid %d: dropped", hello.pid, (int)cred.pid);
		goto fail;
	}
	/* Its pagemap, opened through /proc/self: its namespace's /proc may name it by the
	 * number the process has there. */
	if (!fd_is(fds[0], "anon_inode:[userfaultfd]") || pidfd_pid(fds[1]) != hello.pid ||
	    !(fd_is_pagemap_of(fds[3], hello.pid) || fd_is_pagemap_of(fds[3], local_pid))) {
		log_warning("client %d sent fds that are not its userfaultfd, pidfd and pagemap: "
			    "dropped",
			    hello.pid);
		goto fail;
	}
	if (fcntl(fds[0], F_SETFL, O_NONBLOCK) < 0)
		goto fail;

	/* A process that exec()s comes back with the same pid and a new address space. */
	pthread_mutex_lock(&m->clients_lock);
	for (struct client *o = m->clients; o; o = o->next)
		if (o->pid == hello.pid)
			c = o;
	pthread_mutex_unlock(&m->clients_lock);
	if (c && (hello.flags & HELLO_RESUME)) {
		/* Resuming is for a daemon that died; this one serves the process. */
		log_warning("client %d asks to resume but is connected: dropped", hello.pid);
		goto fail;
	}
	if (c)
		doom_client(d, c, "was replaced (exec)");
	c = NULL;

	/* A fork child: its parent's evicted pages, if a snapshot waits for it (forkshare.h).
	 * One that sends a pmem has pages to claim; a dead daemon's pmem: adopted below. */
	if ((hello.flags & HELLO_FORK_CHILD) && !(hello.flags & HELLO_RESUME)) {
		share = fork_share_claim(m, hello.parent_pid, hello.fork_token, cred.uid);
		/* In a namespace, a parent that exited has left the child to a reaper: its
		 * share is the one with the child's (unguessable) token. */
		if (!share && namespaced)
			share = fork_share_claim(m, 0, hello.fork_token, cred.uid);
		if (nr_fds == 5 && (share || pmem_is_own(fds[4]))) {
			close(fds[4]);
			fds[4] = -1;
		}
		if (!share && fds[4] < 0 && (hello.flags & HELLO_FORK_SHARED)) {
			log_error("client %d: the pages its parent %d shared at fork are gone "
				  "(expired?): refused",
				  hello.pid, hello.parent_pid);
			ack.status = -ENOENT;
			goto refuse;
		}
	}

	budget = client_budget(d, &hello);
	if (budget && budget < MIN_BUDGET_BYTES) {
		char b[32];

		log_warning("client %d (%s): its budget of %s is raised to the minimum, 1.0 MiB",
			    hello.pid, hello.comm, format_size(budget, b, sizeof(b)));
		budget = MIN_BUDGET_BYTES;
	}
	r = client_new(m, &hello, budget, fd, fds, &c);
	if (r < 0) {
		log_warning_errno(r, "cannot take client %d: %m", hello.pid);
		goto fail;
	}
	c->agent_tid_local = local_agent;
	fd = -1;
	for (unsigned i = 0; i < 4; i++)
		fds[i] = -1; /* the client's now */
	send_gate(c);
	r = client_record_attach(c);
	if (r < 0)
		log_warning_errno(r, "client %d: no pmem record, a crash of this daemon would lose "
				     "its evicted pages: %m",
				  c->pid);
	if (hello.flags & HELLO_RESUME)
		resume_client(c, TAKE_FD(fds[4]));
	else if (fds[4] >= 0 && !adopt_fork_share(c, &hello, cred.uid, TAKE_FD(fds[4]))) {
		ack.status = -ENOENT;
		goto refuse_client;
	}
	/* No agent yet (a fork child starts it after the hello): nothing can be evicted. */
	if (!c->agent_tid)
		c->evict_paused = true;
	c->user = calloc(1, sizeof(struct client_watches));
	if (!c->user)
		goto fail_client;
	watches_of(c)->control = (struct watch){WATCH_CONTROL, c};
	watches_of(c)->pidfd = (struct watch){WATCH_PIDFD, c};
	c->id = ++m->next_client_id;
	r = fault_threads_add_client(m, c);
	if (r < 0)
		goto fail_client;
	if (watch_add(d, c->control_fd, &watches_of(c)->control) < 0 ||
	    watch_add(d, c->pidfd, &watches_of(c)->pidfd) < 0) {
		fault_threads_remove_client(m, c);
		goto fail_client;
	}
	pthread_mutex_lock(&m->clients_lock);
	c->next = m->clients;
	m->clients = c;
	first = m->nr_clients++ == 0;
	pthread_mutex_unlock(&m->clients_lock);
	atomic_fetch_add(&m->totals.clients_seen, 1);
	/* The timer and reclaim, paced for no client, look at once: every reclaim thread (the
	 * first reads the system's watermarks). */
	if (first) {
		pace_timer(d);
		manager_wake_reclaim_all(m);
	}

	/* Before the answer: the child waits for it and touches none of its memory until then,
	 * so its memory is registered before it can read a shared page. */
	if (share) {
		r = fork_share_attach(c, share);
		if (r < 0 && r != -ESRCH)
			log_warning_errno(r, "client %d: sharing its parent's evicted pages: %m",
					  c->pid);
		log_full_errno(c->nr_stored ? LOG_INFO : LOG_DEBUG, 0,
			       "client %d: shares %" PRIu64 " evicted pages with its parent %d",
			       c->pid, c->nr_stored, (int)c->parent_pid);
	}
	if (share)
		crash_point(m, "fork-claim");
	proto_init_header(&ack.h, MSG_HELLO_ACK, sizeof(ack), hello.h.seq);
	ack.client_id = c->id;
	(void)proto_send(c->control_fd, &ack, sizeof(ack), NULL, 0);
	/* Retired only now: had we died before the answer, the child would have asked our
	 * successor for the snapshot. */
	fork_share_free(m->store, TAKE_PTR(share));
	if (pmem_fd() >= 0) {
		/* To the agent, which keeps it in a fd table of its own. */
		struct msg_agent_pmem pm;
		int pfd = pmem_fd();

		proto_init_header(&pm.h, MSG_AGENT_PMEM, sizeof(pm), 0);
		(void)proto_send(c->agent_fd, &pm, sizeof(pm), &pfd, 1);
	}
	{
		struct msg_agent_budget mb = {.budget_bytes = c->budget_pages * PAGE_SIZE};

		proto_init_header(&mb.h, MSG_AGENT_BUDGET, sizeof(mb), 0);
		(void)proto_send(c->agent_fd, &mb, sizeof(mb), NULL, 0);
	}
	/* A resumed client's memory is registered already: its uffd outlived the daemon. A fork
	 * child that shares pages has it registered by now. */
	if ((hello.flags & HELLO_RESUME) || c->armed || should_arm(m, c))
		arm_client(c);
	if (hello.flags & HELLO_RESUME)
		wake_all(c);
	{
		char b[32];
		log_debug("client %d (%s) connected%s, budget %s", c->pid, c->comm,
			 c->flags & HELLO_FORK_CHILD ? " (forked child)" : "",
			 c->budget_pages ? format_size(c->budget_pages * PAGE_SIZE, b, sizeof(b))
					 : "none");
	}
	return 0;

fail_client:
	log_warning("cannot take client %d: out of resources", hello.pid);
	/* Its child tries again: the snapshot waits for it as before. */
	fork_share_return(m, TAKE_PTR(share));
	if (c->control_fd >= 0)
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->control_fd, NULL);
	client_unref(c);
	return 0;
refuse_client:
	/* The child must not run on: it would read zeroes where its parent had evicted pages.
	 * It aborts on this answer. */
	proto_init_header(&ack.h, MSG_HELLO_ACK, sizeof(ack), hello.h.seq);
	(void)proto_send(c->control_fd, &ack, sizeof(ack), NULL, 0);
	client_unref(c);
	return 0;
refuse:
	proto_init_header(&ack.h, MSG_HELLO_ACK, sizeof(ack), hello.h.seq);
	(void)proto_send(fd, &ack, sizeof(ack), NULL, 0);
fail:
	fork_share_return(m, share);
	for (unsigned i = 0; i < nr_fds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return 0;
}

static bool overlaps(struct mem_range a, struct mem_range b)
{
	return a.start < b.end && b.start < a.end;
}

/*
 * MSG_HAND_BACK: the application registers range with a userfaultfd of its own. A reclaim
 * thread brings its pages back and unregisters it (reclaim.c); from now on no scan registers
 * it, which this thread alone does.
 */
static void queue_hand_back(struct daemon *d, struct client *c, struct mem_range range,
			    uint32_t seq)
{
	int r;

	/* Never the shim's own memory (staging above all: its agent would move nothing more). */
	bool shims = overlaps(range, c->staging);

	for (unsigned i = 0; i < c->nr_exclude; i++)
		shims |= overlaps(range, c->exclude[i]);
	if (range.start >= range.end || range.start % PAGE_SIZE || range.end % PAGE_SIZE || shims) {
		client_answer_hand_back(c, seq, -EINVAL);
		return;
	}
	pthread_mutex_lock(&c->lock);
	r = ARRAY_RESERVE_ONE(c->hand_back_reqs, c->nr_hand_back_reqs, c->cap_hand_back_reqs, 4);
	if (r == 0)
		c->hand_back_reqs[c->nr_hand_back_reqs++] = (struct hand_back_req){range, seq};
	pthread_mutex_unlock(&c->lock);
	if (r < 0)
		client_answer_hand_back(c, seq, r);
	else
		manager_kick_reclaim(&d->m);
}

/*
 * MSG_FORK_CHILD: the parent named the child of its fork, by its own number (0: the fork
 * failed). A parent in another PID namespace than ours is left to the claim timeout.
 */
static void watch_fork_child(struct manager *m, struct client *c, uint32_t token, pid_t child)
{
	bool exited;
	pid_t ppid;
	int pidfd;

	if (child == 0) {
		fork_share_drop(m, c->pid, token);
		return;
	}
	if (child < 0 || !proc_in_our_pid_ns(c->pid))
		return;
	pidfd = (int)syscall(SYS_pidfd_open, child, 0);
	if (pidfd < 0) {
		/* Reaped already; or it never was (the parent lies): its claim would have come. */
		if (errno == ESRCH)
			fork_share_watch_child(m, c->pid, token, -1);
		return;
	}
	ppid = proc_ppid(child);
	/* ppid 0: reaped since pidfd_open() (or /proc unreadable). If the pidfd says its process
	 * exited, the snapshot goes at once (left to the timeout, it held memextd's stop up:
	 * test fork-child-dies, 1 run in 3). */
	exited = ppid == 0 && poll(&(struct pollfd){.fd = pidfd, .events = POLLIN}, 1, 0) > 0;
	if (!exited && ppid != c->pid) {
		close(pidfd); /* reaped, and the number taken by another process */
		return;
	}
	fork_share_watch_child(m, c->pid, token, pidfd);
}

static void handle_control(struct daemon *d, struct client *c)
{
	union {
		struct msg_header h;
		struct msg_fork fork;
		struct msg_fork_child fork_child;
		struct msg_agent_started agent;
		struct msg_evictable evictable;
		struct msg_hand_back hand_back;
	} msg;
	ssize_t n = proto_recv(c->control_fd, &msg, sizeof(msg), NULL, NULL);

	if (n == -EAGAIN || n == -EINTR)
		return;
	if (n <= 0) {
		/* Closed (exec, closefrom) or garbage: the pidfd, not the socket, decides when
		 * the client is gone; faults keep being answered. */
		if (n < 0)
			log_warning_errno((int)n, "client %d: bad control message, ignoring it: %m",
					  c->pid);
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->control_fd, NULL);
		return;
	}
	switch (msg.h.type) {
	case MSG_FORK_PREPARE: {
		bool again;
		uint32_t earlier;

		pthread_mutex_lock(&c->lock);
		/* Again before FORK_DONE, saying the first one will have no child. */
		again = (msg.fork.flags & FORK_REPLACES) && c->fork_under_way &&
			!c->fork_requested && c->fork_token != msg.h.seq;
		earlier = c->fork_token;
		c->fork_under_way = true;
		c->evict_paused = true;
		c->fork_requested = true;
		c->fork_token = msg.h.seq;
		c->fork_drain = msg.fork.flags & FORK_DRAIN;
		pthread_mutex_unlock(&c->lock);
		if (again)
			fork_share_drop(&d->m, c->pid, earlier);
		/* After fork_requested, and the client listed since its hello: forklook.h. */
		atomic_fetch_add(&d->m.fork_seq, 1);
		manager_kick_reclaim(&d->m);
		break;
	}
	case MSG_FORK_CHILD:
		watch_fork_child(&d->m, c, msg.h.seq, msg.fork_child.pid);
		break;
	case MSG_FORK_DONE:
		pthread_mutex_lock(&c->lock);
		c->fork_under_way = false;
		c->evict_paused = false;
		pthread_mutex_unlock(&c->lock);
		manager_kick_reclaim(&d->m);
		break;
	case MSG_EVICTABLE:
		/* munlock() or mprotect(): the unevictable pages there may move again. */
		if (msg.evictable.range.start < msg.evictable.range.end) {
			uint64_t rescued;

			pthread_mutex_lock(&c->lock);
			rescued = lru_rescue(&c->lru, c->pt, msg.evictable.range.start / PAGE_SIZE,
					     msg.evictable.range.end / PAGE_SIZE);
			pthread_mutex_unlock(&c->lock);
			atomic_fetch_add(&d->m.totals.unevictable_rescued, rescued);
		}
		break;
	case MSG_HAND_BACK:
		queue_hand_back(d, c, msg.hand_back.range, msg.h.seq);
		break;
	case MSG_LEAVE:
		/* A seccomp filter is coming (shared/protocol.h): reclaim releases it. Once
		 * left, a request again (another thread's filter) is answered at once. */
		if (atomic_load(&c->left)) {
			client_answer_leave(c, msg.h.seq, c->leave_status);
			break;
		}
		pthread_mutex_lock(&c->lock);
		c->leave_requested = true;
		c->leave_seq = msg.h.seq;
		pthread_mutex_unlock(&c->lock);
		manager_kick_reclaim(&d->m);
		break;
	case MSG_AGENT_STARTED: {
		/* A fork child's agent, started after its hello: eviction may begin. Our number
		 * for it: the process may be in a PID namespace of its own. */
		pid_t agent = msg.agent.agent_tid > 0 && !c->agent_tid
				      ? proc_tid_from_local(c->pid, msg.agent.agent_tid)
				      : 0;

		if (!agent) { /* gone already (an exec, an exit) */
			log_debug("client %d: its agent %d is not among its threads: not evicted",
				  c->pid, msg.agent.agent_tid);
			break;
		}
		pthread_mutex_lock(&c->lock);
		if (!c->agent_tid && proc_tgid(agent) == c->pid) {
			c->agent_tid = agent;
			c->agent_tid_local = msg.agent.agent_tid;
			c->evict_paused = false;
		}
		pthread_mutex_unlock(&c->lock);
		manager_kick_reclaim(&d->m);
		break;
	}
	default:
		log_warning("client %d: unexpected message type %u", c->pid, msg.h.type);
		break;
	}
}

/* "drain PID": root, or the owner of PID, may ask for its pages back. */
static void request_drain(struct daemon *d, int fd, pid_t pid, FILE *f)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct client *target = NULL;
	char path[64];
	struct stat st;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		fprintf(f, "error: cannot tell who is asking\n");
		return;
	}
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (cred.uid != 0 && (stat(path, &st) < 0 || st.st_uid != cred.uid)) {
		fprintf(f, "error: only root or the owner of process %d may drain it\n", (int)pid);
		return;
	}
	pthread_mutex_lock(&d->m.clients_lock);
	for (struct client *c = d->m.clients; c; c = c->next)
		if (c->pid == pid)
			target = c;
	if (target) {
		pthread_mutex_lock(&target->lock);
		target->drain_requested = true;
		target->evict_paused = true;
		pthread_mutex_unlock(&target->lock);
	}
	pthread_mutex_unlock(&d->m.clients_lock);
	if (!target) {
		fprintf(f, "error: process %d is not a memext client\n", (int)pid);
		return;
	}
	log_info("client %d: draining on request of uid %u", (int)pid, (unsigned)cred.uid);
	manager_kick_reclaim(&d->m);
	stats_write_client(&d->m, pid, f);
}

/* Answers the request of a stats connection whose request (or end) is there; owns fd. */
static void answer_stats(struct daemon *d, int fd)
{
	static const struct {
		const char *request;
		enum stats_format format;
	} reports[] = {
		{"stats", STATS_TEXT},
		{"stats json", STATS_JSON},
		{"stats prometheus", STATS_PROMETHEUS},
		{"clients", STATS_CLIENTS},
		{"classes", STATS_CLASSES},
	};
	struct timeval tv = {.tv_sec = 2};
	char req[128] = {0};
	bool done = false;
	FILE *f;
	int pid;

	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (recv(fd, req, sizeof(req) - 1, MSG_DONTWAIT) <= 0) {
		close(fd);
		return;
	}
	req[strcspn(req, "\r\n")] = 0;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(reports) && !done; i++)
		if (strcmp(req, reports[i].request) == 0) {
			stats_write(&d->m, reports[i].format, f);
			done = true;
		}
	if (!done && sscanf(req, "client %d", &pid) == 1) {
		if (stats_write_client(&d->m, pid, f) < 0)
			fprintf(f, "error: process %d is not a memext client\n", pid);
	} else if (!done && sscanf(req, "drain %d", &pid) == 1) {
		request_drain(d, fd, pid, f);
	} else if (!done) {
		fprintf(f, "error: unknown request '%s'\n", req);
	}
	fclose(f);
}

/* The watchdog ping from the event loop (so a stuck loop is noticed) and a STATUS line. */
static void notify_systemd(struct daemon *d, uint64_t now)
{
	if (d->watchdog_usec && now - d->last_watchdog_usec >= d->watchdog_usec / 2) {
		(void)sd_notify(0, "WATCHDOG=1");
		d->last_watchdog_usec = now;
	}
	if (now - d->last_status_usec >= 1000000) {
		struct store_stats st;
		char a[32], b[32];
		unsigned n;

		pthread_mutex_lock(&d->m.clients_lock);
		n = d->m.nr_clients;
		pthread_mutex_unlock(&d->m.clients_lock);
		store_get_stats(d->m.store, &st);
		(void)sd_notifyf(0, "STATUS=%u client%s, %s evicted in %s", n, n == 1 ? "" : "s",
				 format_size(st.orig_data_size, a, sizeof(a)),
				 format_size(st.mem_used_total, b, sizeof(b)));
		d->last_status_usec = now;
	}
}

/*
 * The timer ticks every SCAN_INTERVAL_USEC while there are clients to watch, fork snapshots
 * or a stop. Without any, once a second is enough for the rest (hellos that expire in
 * seconds, a dead daemon's pmem, systemd's watchdog), and an idle daemon sleeps.
 */
static void pace_timer(struct daemon *d)
{
	uint64_t usec = SCAN_INTERVAL_USEC;
	struct itimerspec its;

	/* A snapshot whose parent has gone waits for a child that may be gone too, or is late;
	 * a watched child held stopped may take hours. */
	if (atomic_load(&d->m.nr_clients) == 0 && !d->quit && !fork_share_unwatched(&d->m)) {
		usec = IDLE_INTERVAL_USEC;
		if (d->watchdog_usec)
			usec = MIN(usec, MAX(d->watchdog_usec / 4, (uint64_t)SCAN_INTERVAL_USEC));
	}
	if (usec == d->timer_usec)
		return;
	its.it_interval = (struct timespec){.tv_sec = (time_t)(usec / 1000000),
					    .tv_nsec = (long)(usec % 1000000) * 1000};
	its.it_value = its.it_interval;
	if (timerfd_settime(d->timer_fd, 0, &its, NULL) == 0)
		d->timer_usec = usec;
}

static void on_timer(struct daemon *d)
{
	struct manager *m = &d->m;
	uint64_t expirations, now = now_usec();
	struct client *v[256];
	unsigned n = 0;
	bool kick = false;

	(void)!read(d->timer_fd, &expirations, sizeof(expirations));
	adopt_reap();
	expire_pending(d, now);
	pthread_mutex_lock(&m->clients_lock);
	for (struct client *c = m->clients; c && n < ARRAY_SIZE(v); c = c->next)
		v[n++] = client_ref(c);
	pthread_mutex_unlock(&m->clients_lock);
	for (unsigned i = 0; i < n; i++) {
		struct client *c = v[i];
		int64_t untracked;
		bool took_back;

		if (atomic_load(&c->left)) { /* nothing of it is ours any more */
			client_unref(c);
			continue;
		}
		if (!c->armed) {
			/* A fault means the shim registered a mapping that could not wait. */
			if (should_arm(m, c) || atomic_load(&c->stats.faults))
				arm_client(c);
			client_unref(c);
			continue;
		}
		/* A read put off while the agent was moving, if the reclaim thread missed it. */
		fault_threads_rearm(m, c);
		/* New memory shows as resident pages we do not track: register it soon. */
		untracked = client_untracked_pages(c);
		/* So is memory its own userfaultfd let go of. */
		took_back = client_take_back(c, now) > 0;
		/* A fault in memory no scan has seen; not more often than SCAN_WANTED_USEC, as
		 * a range a scan does not take (mprotect()ed read-only since) would ask again. */
		if (took_back ||
		    (atomic_load(&c->scan_wanted) && now - c->scan_usec >= SCAN_WANTED_USEC) ||
		    (untracked >= 0 && (untracked > c->scan_untracked_pages + SCAN_GROWTH_PAGES ||
					now - c->scan_usec > SCAN_MAX_AGE_USEC))) {
			atomic_store(&c->scan_wanted, false);
			(void)client_scan(c);
		}
		pthread_mutex_lock(&c->lock);
		kick |= client_over_low_wmark(c) || c->nr_parked;
		pthread_mutex_unlock(&c->lock);
		client_unref(c);
	}
	if (kick)
		manager_kick_reclaim(m);
	fork_share_expire(m, now, d->quit ? FORK_EXPIRE_STOPPING : FORK_EXPIRE_RUNNING);
	notify_systemd(d, now);
	pace_timer(d);
}

/*
 * Whether the machine has room for every evicted page to come back, as swapoff checks before
 * it starts. If not, the stop is refused: nothing would be lost (the pages stay in pmem), but
 * the applications could not run on without memext either.
 */
static bool stop_fits(struct daemon *d)
{
	struct store_stats st;
	struct sysmem sys;
	uint64_t need, room;
	char a[32], b[32];

	store_get_stats(d->m.store, &st);
	/* Coming back, the pages take their size and give back the store's memory. */
	need = st.orig_data_size > st.mem_used_total ? st.orig_data_size - st.mem_used_total : 0;
	if (need == 0 || sysmem_read(d->m.cfg.meminfo_path, NULL, &sys) < 0)
		return true;
	/* Keep the min watermark free, as the kernel would. */
	room = sys.available_bytes > sys.total_bytes / 100 * d->m.cfg.wmark_min_pct
		       ? sys.available_bytes - sys.total_bytes / 100 * d->m.cfg.wmark_min_pct
		       : 0;
	if (need <= room)
		return true;
	format_size(need, a, sizeof(a));
	format_size(room, b, sizeof(b));
	log_error("stop refused: the evicted pages need %s more memory to come back, %s is "
		  "available; stop some clients (or free memory) and try again",
		  a, b);
	(void)sd_notifyf(0, "STATUS=stop refused: evicted pages need %s, %s available", a, b);
	return false;
}

static int on_signal(struct daemon *d)
{
	struct signalfd_siginfo si;

	if (read(d->signal_fd, &si, sizeof(si)) != sizeof(si))
		return 0;
	switch (si.ssi_signo) {
	case SIGTERM:
	case SIGINT:
		if (!stop_fits(d))
			break;
		log_info("stopping: giving every client its pages back");
		d->quit = true;
		pace_timer(d); /* the stop waits for fork snapshots, which the tick expires */
		break;
	case SIGHUP:
		reload_config(d);
		break;
	default:
		break;
	}
	return 0;
}

static void drain_all(struct manager *m)
{
	pthread_mutex_lock(&m->reclaim_lock);
	atomic_store(&m->draining, true);
	pthread_cond_broadcast(&m->reclaim_cond);
	while (atomic_load(&m->draining))
		pthread_cond_wait(&m->reclaim_cond, &m->reclaim_lock);
	pthread_mutex_unlock(&m->reclaim_lock);
}

/*
 * Whether a fork is between its parent's FORK_PREPARE and its child's claim. In this order: a
 * snapshot is on the list before its parent's fork_requested is cleared.
 */
static bool forks_in_flight(struct manager *m)
{
	bool any = false;

	pthread_mutex_lock(&m->clients_lock);
	for (struct client *c = m->clients; c && !any; c = c->next) {
		pthread_mutex_lock(&c->lock);
		any = c->fork_requested && !c->dead;
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&m->clients_lock);
	return any || fork_share_pending(m);
}

static int run(struct daemon *d)
{
	for (;;) {
		struct epoll_event ev[32];
		int n = epoll_wait(d->epfd, ev, ARRAY_SIZE(ev), -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return log_error_errno(-errno, "epoll_wait: %m");
		}
		for (int i = 0; i < n; i++) {
			struct watch *w = ev[i].data.ptr;

			switch (w->kind) {
			case WATCH_CLIENT_LISTEN:
				accept_conn(d, d->client_listen_fd, WATCH_HELLO);
				break;
			case WATCH_STATS_LISTEN:
				accept_conn(d, d->stats_listen_fd, WATCH_STATS_REQUEST);
				break;
			case WATCH_CONTROL:
				if (!is_doomed(d, w->client))
					handle_control(d, w->client);
				break;
			case WATCH_PIDFD:
				doom_client(d, w->client, "exited");
				break;
			case WATCH_TIMER:
				on_timer(d);
				break;
			case WATCH_SIGNAL:
				on_signal(d);
				break;
			case WATCH_HELLO:
			case WATCH_STATS_REQUEST:
				on_pending(d, (struct pending_conn *)w);
				break;
			}
		}
		while (d->nr_doomed) {
			d->nr_doomed--;
			client_destroy(d, d->doomed[d->nr_doomed], d->doomed_why[d->nr_doomed]);
		}
		/* A fork child that has not claimed its parent's pages yet would find no daemon
		 * and wait for the next one: it comes within milliseconds (or the snapshot
		 * expires). */
		if (d->quit && !forks_in_flight(&d->m))
			return 0;
	}
}

static void help(void)
{
	printf("Usage: memextd [OPTIONS]\n\n"
	       "Lets applications started with LD_PRELOAD=libmemext.so use more memory than\n"
	       "their budget: pages beyond it are compressed and brought back on access.\n\n"
	       "  --config FILE           configuration (default %s, if it exists)\n"
	       "  --check-config FILE     check FILE and exit: 0 valid, 3 invalid\n"
	       "  --socket PATH           client socket (default %s/memextd.sock)\n"
	       "  --stats-socket PATH     statistics socket (default %s/stats.sock)\n"
	       "  --default-budget SIZE   budget for clients that set no MEMEXT_BUDGET\n"
	       "  --store-limit SIZE      memory the store may use (0: no limit)\n"
	       "  --compressor NAME       lz4 or zstd\n"
	       "  --zstd-level N          1-19\n"
	       "  --store-backend B       pool, swapfile or pool+swapfile\n"
	       "  --swap-file PATH[:PRIO] a swap area (repeatable; see memextctl mkswap)\n"
	       "  --fault-threads N       fault threads (0: one per CPU)\n"
	       "  --fault-poll-us N       microseconds a fault thread polls after a fault\n"
	       "  --reclaim-threads N     threads that evict pages (default 1)\n"
	       "  --batch-pages N         pages evicted per batch (1-%d)\n"
	       "  --unevictable-retry-sec N  seconds between tries of pages the kernel refused\n"
	       "  --evict-stopped BOOL    evict from processes stopped by a signal (yes)\n"
	       "  --faultaround-pages N   zero pages mapped per fault (a power of 2)\n"
	       "  --log-level LEVEL       err, warning, notice, info, debug\n"
	       "  --meminfo FILE          read MemTotal and MemAvailable from FILE, not\n"
	       "                          /proc/meminfo, and no PSI (to test the system's\n"
	       "                          watermarks)\n"
	       "  --crash-at POINT        SIGKILL itself at POINT (fork-ready, fork-claim,\n"
	       "                          agent-unshare-fault, remove-read), to test that a\n"
	       "                          crash there loses nothing\n"
	       "  --test-reclaim-pause-ms N  reclaim pauses N ms (0-10000) after each snapshot of\n"
	       "                          its clients, to test what comes meanwhile\n"
	       "  --foreground            accepted for clarity: memextd never forks\n"
	       "  -h, --help              this text\n"
	       "  --version               print the version\n\n"
	       "Each option overrides the configuration key of the same name; see\n"
	       "memextd(8) and memextd.conf(5).\n",
	       MEMEXTD_CONFIG_PATH, MEMEXT_RUNSTATEDIR, MEMEXT_RUNSTATEDIR, MEMEXT_STAGING_PAGES);
}

static int parse_options(int argc, char **argv, struct options *o)
{
	enum {
		OPT_CONFIG = 256,
		OPT_CHECK_CONFIG,
		OPT_SOCKET,
		OPT_STATS_SOCKET,
		OPT_DEFAULT_BUDGET,
		OPT_STORE_LIMIT,
		OPT_COMPRESSOR,
		OPT_ZSTD_LEVEL,
		OPT_STORE_BACKEND,
		OPT_SWAP_FILE,
		OPT_FAULT_THREADS,
		OPT_FAULT_POLL,
		OPT_RECLAIM_THREADS,
		OPT_BATCH_PAGES,
		OPT_UNEVICTABLE_RETRY,
		OPT_EVICT_STOPPED,
		OPT_FAULTAROUND,
		OPT_LOG_LEVEL,
		OPT_MEMINFO,
		OPT_CRASH_AT,
		OPT_RECLAIM_PAUSE,
		OPT_FOREGROUND,
		OPT_VERSION,
	};
	static const struct option longopts[] = {
		{"config", required_argument, NULL, OPT_CONFIG},
		{"check-config", required_argument, NULL, OPT_CHECK_CONFIG},
		{"socket", required_argument, NULL, OPT_SOCKET},
		{"stats-socket", required_argument, NULL, OPT_STATS_SOCKET},
		{"default-budget", required_argument, NULL, OPT_DEFAULT_BUDGET},
		{"store-limit", required_argument, NULL, OPT_STORE_LIMIT},
		{"compressor", required_argument, NULL, OPT_COMPRESSOR},
		{"zstd-level", required_argument, NULL, OPT_ZSTD_LEVEL},
		{"store-backend", required_argument, NULL, OPT_STORE_BACKEND},
		{"swap-file", required_argument, NULL, OPT_SWAP_FILE},
		{"fault-threads", required_argument, NULL, OPT_FAULT_THREADS},
		{"fault-poll-us", required_argument, NULL, OPT_FAULT_POLL},
		{"reclaim-threads", required_argument, NULL, OPT_RECLAIM_THREADS},
		{"batch-pages", required_argument, NULL, OPT_BATCH_PAGES},
		{"unevictable-retry-sec", required_argument, NULL, OPT_UNEVICTABLE_RETRY},
		{"evict-stopped", required_argument, NULL, OPT_EVICT_STOPPED},
		{"faultaround-pages", required_argument, NULL, OPT_FAULTAROUND},
		{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
		{"meminfo", required_argument, NULL, OPT_MEMINFO},
		{"crash-at", required_argument, NULL, OPT_CRASH_AT},
		{"test-reclaim-pause-ms", required_argument, NULL, OPT_RECLAIM_PAUSE},
		{"foreground", no_argument, NULL, OPT_FOREGROUND},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, OPT_VERSION},
		{},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
		switch (c) {
		case OPT_CONFIG: o->config_path = optarg; break;
		case OPT_CHECK_CONFIG: o->check_config_path = optarg; break;
		case OPT_SOCKET: o->socket_path = optarg; break;
		case OPT_STATS_SOCKET: o->stats_socket_path = optarg; break;
		case OPT_DEFAULT_BUDGET: o->default_budget = optarg; break;
		case OPT_STORE_LIMIT: o->store_limit = optarg; break;
		case OPT_COMPRESSOR: o->compressor = optarg; break;
		case OPT_ZSTD_LEVEL: o->zstd_level = optarg; break;
		case OPT_STORE_BACKEND: o->store_backend = optarg; break;
		case OPT_SWAP_FILE:
			if (o->nr_swap_files == CONFIG_MAX_SWAPFILES) {
				fprintf(stderr, "memextd: at most %d --swap-file\n",
					CONFIG_MAX_SWAPFILES);
				return -EINVAL;
			}
			o->swap_files[o->nr_swap_files++] = optarg;
			break;
		case OPT_FAULT_THREADS: o->fault_threads = optarg; break;
		case OPT_FAULT_POLL: o->fault_poll_us = optarg; break;
		case OPT_RECLAIM_THREADS: o->reclaim_threads = optarg; break;
		case OPT_BATCH_PAGES: o->batch_pages = optarg; break;
		case OPT_UNEVICTABLE_RETRY: o->unevictable_retry_sec = optarg; break;
		case OPT_EVICT_STOPPED: o->evict_stopped = optarg; break;
		case OPT_FAULTAROUND: o->faultaround_pages = optarg; break;
		case OPT_LOG_LEVEL: o->log_level = optarg; break;
		case OPT_MEMINFO: o->meminfo_path = optarg; break;
		case OPT_CRASH_AT: o->crash_at = optarg; break;
		case OPT_RECLAIM_PAUSE: {
			uint64_t ms;

			if (config_parse_uint64(optarg, &ms) < 0 || ms > 10000) {
				fprintf(stderr,
					"memextd: --test-reclaim-pause-ms wants 0 to 10000, not "
					"'%s'\n",
					optarg);
				return -EINVAL;
			}
			o->reclaim_pause_ms = (unsigned)ms;
			break;
		}
		case OPT_FOREGROUND: break;
		case 'h':
			help();
			exit(EXIT_SUCCESS);
		case OPT_VERSION:
			printf("memextd %s\n", MEMEXT_VERSION);
			exit(EXIT_SUCCESS);
		default:
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "memextd: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/* The command line's settings, applied over the file's. Returns 0 or -errno (logged). */
static int apply_overrides(const struct options *o, struct memextd_config *cfg)
{
	const struct {
		const char *section, *key, *value;
	} overrides[] = {
		{"daemon", "socket", o->socket_path},
		{"daemon", "stats-socket", o->stats_socket_path},
		{"daemon", "log-level", o->log_level},
		{"daemon", "fault-threads", o->fault_threads},
		{"daemon", "fault-poll-us", o->fault_poll_us},
		{"daemon", "reclaim-threads", o->reclaim_threads},
		{"daemon", "faultaround-pages", o->faultaround_pages},
		{"reclaim", "default-budget", o->default_budget},
		{"reclaim", "batch-pages", o->batch_pages},
		{"reclaim", "unevictable-retry-sec", o->unevictable_retry_sec},
		{"reclaim", "evict-stopped", o->evict_stopped},
		{"store", "memory-limit", o->store_limit},
		{"store", "compressor", o->compressor},
		{"store", "zstd-level", o->zstd_level},
		{"store", "backend", o->store_backend},
	};
	char err[1024];
	int r;

	for (size_t i = 0; i < ARRAY_SIZE(overrides); i++) {
		if (!overrides[i].value)
			continue;
		r = config_set(cfg, overrides[i].section, overrides[i].key, overrides[i].value, err,
			       sizeof(err));
		if (r < 0) {
			log_error("%s", err);
			return r;
		}
	}
	for (unsigned i = 0; i < o->nr_swap_files; i++) {
		char v[PATH_MAX + 16], *colon;

		/* --swap-file PATH[:PRIO] is the key's "PATH [PRIO]". */
		snprintf(v, sizeof(v), "%s", o->swap_files[i]);
		colon = strrchr(v, ':');
		if (colon)
			*colon = ' ';
		r = config_set(cfg, "swap", "file", v, err, sizeof(err));
		if (r < 0) {
			log_error("%s", err);
			return r;
		}
	}
	r = config_validate(cfg, err, sizeof(err));
	if (r < 0)
		log_error("%s", err);
	return r;
}

/*
 * The configuration: built-in defaults, then the file (the one named, or the default path if
 * it exists), then the command line. Returns 0 or -errno with the reason logged.
 */
static int load_config(struct daemon *d)
{
	struct memextd_config *cfg = NULL;
	char err[1024];
	int r;

	d->config_path = d->opts.config_path;
	if (!d->config_path && access(MEMEXTD_CONFIG_PATH, F_OK) == 0)
		d->config_path = MEMEXTD_CONFIG_PATH;
	if (d->config_path)
		r = config_load(d->config_path, &cfg, err, sizeof(err));
	else
		r = config_new_default(&cfg);
	if (r < 0) {
		log_error("%s", d->config_path ? err : "out of memory");
		return r;
	}
	r = apply_overrides(&d->opts, cfg);
	if (r < 0) {
		config_free(cfg);
		return r;
	}
	if (cfg->system_watermarks_only)
		log_notice("%s: [reclaim] watermark-min/low/high apply to the system as a whole "
			   "only; a client's budget has client-watermark-min/low/high (now %u/%u/%u)",
			   d->config_path, cfg->client_watermark_min_pct,
			   cfg->client_watermark_low_pct, cfg->client_watermark_high_pct);
	d->cfg = cfg;
	return 0;
}

/* The settings that take effect at once, at start and on reload. */
static void apply_runtime_config(struct daemon *d)
{
	const struct memextd_config *cfg = d->cfg;
	struct manager_config *mc = &d->m.cfg;

	log_set_max_level(cfg->log_level);
	mc->faultaround_pages = cfg->faultaround_pages;
	mc->batch_pages = cfg->batch_pages;
	mc->unevictable_retry_sec = cfg->unevictable_retry_sec;
	mc->evict_stopped = cfg->evict_stopped;
	mc->fork_claim_timeout_usec = (uint64_t)cfg->fork_claim_timeout_sec * 1000000;
	mc->default_budget_bytes = cfg->default_budget_bytes;
	mc->client_wmark_min_pct = cfg->client_watermark_min_pct;
	mc->client_wmark_low_pct = cfg->client_watermark_low_pct;
	mc->client_wmark_high_pct = cfg->client_watermark_high_pct;
	mc->wmark_min_pct = cfg->watermark_min_pct;
	mc->wmark_low_pct = cfg->watermark_low_pct;
	mc->wmark_high_pct = cfg->watermark_high_pct;
	mc->pressure_avg10_pct = cfg->pressure_avg10_pct;
	mc->track_above_pct = cfg->track_above_pct;
	mc->meminfo_path = d->opts.meminfo_path ? d->opts.meminfo_path : "/proc/meminfo";
	/* A stand-in is the system's whole state: the kernel's pressure would belie it. */
	mc->psi_path = d->opts.meminfo_path ? NULL : "/proc/pressure/memory";
	mc->crash_at = d->opts.crash_at;
	mc->test_reclaim_pause_ms = d->opts.reclaim_pause_ms;
}

static void reload_config(struct daemon *d)
{
	char err[1024], restart[512], desc[512];
	struct memextd_config *old = d->cfg;
	int r;

	if (!d->config_path) {
		log_notice("reload: no configuration file in use, nothing to re-read");
		return;
	}
	(void)sd_notify(0, "RELOADING=1");
	r = config_load(d->config_path, &d->cfg, err, sizeof(err));
	if (r == 0)
		r = apply_overrides(&d->opts, d->cfg);
	if (r < 0) {
		if (d->cfg != old)
			config_free(d->cfg);
		d->cfg = old;
		log_error("reload refused, keeping the running configuration: %s", err);
	} else {
		if (config_restart_keys(old, d->cfg, restart, sizeof(restart)) > 0)
			log_warning("reload: %s take effect at the next start", restart);
		config_free(old);
		apply_runtime_config(d);
		config_describe(d->cfg, desc, sizeof(desc));
		log_info("configuration reloaded from %s: %s", d->config_path, desc);
	}
	(void)sd_notify(0, "READY=1");
}

/* Sockets passed by systemd (memextd.socket, memextd-stats.socket), by name. */
static void take_listen_fds(struct daemon *d)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(true, &names);

	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names ? names[i] : NULL;

		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		(void)fcntl(fd, F_SETFL, O_NONBLOCK);
		if ((name && strcmp(name, "client") == 0) || (!name && i == 0))
			d->client_listen_fd = fd;
		else if ((name && strcmp(name, "stats") == 0) || (!name && i == 1))
			d->stats_listen_fd = fd;
		else
			close(fd);
	}
	if (names)
		for (int i = 0; i < n; i++)
			free(names[i]);
	free(names);
}

/* The swap state file (swapstate.h): memextd.state beside the client socket. */
static void state_file_path(const char *socket_path, char *buf, size_t len)
{
	const char *slash = strrchr(socket_path, '/');

	if (!slash)
		snprintf(buf, len, "memextd.state");
	else
		snprintf(buf, len, "%.*s/memextd.state", (int)(slash - socket_path), socket_path);
}

static int setup(struct daemon *d)
{
	const struct memextd_config *cfg = d->cfg;
	struct store_swap_area areas[CONFIG_MAX_SWAPFILES];
	struct store_config scfg = {
		.compressor = config_compressor_to_string(cfg->compressor),
		.zstd_level = cfg->zstd_level,
		.mem_limit_bytes = cfg->store_mem_limit_bytes,
		.compaction = cfg->compaction,
		.backend = cfg->store_backend == CONFIG_STORE_SWAPFILE ? STORE_BACKEND_SWAPFILE
			   : cfg->store_backend == CONFIG_STORE_POOL_SWAPFILE
				   ? STORE_BACKEND_POOL_SWAPFILE
				   : STORE_BACKEND_POOL,
		.swap_areas = areas,
		.nr_swap_areas = cfg->n_swapfiles,
	};
	char serr[1024];
	char caps[512];
	sigset_t mask;
	int r;

	/* Only CAP_SYS_PTRACE from here on; it must happen while we are one thread. */
	r = caps_drop_memextd(caps, sizeof(caps));
	if (r < 0) {
		log_error("%s", caps);
		return EXIT_CAPS;
	}
	log_info("%s", caps);

	d->m.cfg.nr_fault_threads = cfg->fault_threads;
	d->m.cfg.nr_reclaim_threads = cfg->reclaim_threads;
	d->m.cfg.fault_poll_us = cfg->fault_poll_us;
	apply_runtime_config(d);
	d->m.start_usec = now_usec();
	pthread_mutex_init(&d->m.clients_lock, NULL);
	pthread_mutex_init(&d->m.forks_lock, NULL);
	pthread_mutex_init(&d->m.reclaim_lock, NULL);
	pthread_cond_init(&d->m.reclaim_cond, NULL);
	for (size_t i = 0; i < cfg->n_swapfiles; i++)
		areas[i] = (struct store_swap_area){
			.path = cfg->swapfiles[i].path,
			.prio = cfg->swapfiles[i].priority,
		};
	/* Before the store, whose memory comes from it (pmem.h). */
	r = pmem_init(PMEM_WINDOW_BYTES);
	if (r == 0)
		r = adopt_init();
	if (r < 0) {
		log_warning_errno(r, "no persistent memory (%m): a crash of this daemon would lose "
				     "the evicted pages of its clients");
		pmem_exit();
	}
	r = store_new_err(&scfg, &d->m.store, serr, sizeof(serr));
	if (r < 0) {
		log_error("cannot set up the store: %s", serr);
		return EXIT_RUNTIME;
	}
	pmem_set_root(PMEM_ROOT_STORE, d->m.store);
	d->m.remap_unmaps_source = remap_unmaps_source();
	log_debug("the kernel %s an UNMAP for the source of an mremap",
		  d->m.remap_unmaps_source ? "sends" : "does not send");
	/* Before any slot can go out: no client, no reclaim yet. */
	if (scfg.nr_swap_areas) {
		char path[PATH_MAX];

		state_file_path(cfg->socket_path, path, sizeof(path));
		r = adopt_swap_init(d->m.store, path, d->m.cfg.fork_claim_timeout_usec);
		if (r < 0)
			log_warning_errno(r,
					  "%s: no swap state file (%m): after a crash, pages in "
					  "swap areas would be poisoned",
					  path);
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	/* Blocked before any thread starts, so every thread inherits the mask. */
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	d->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (d->epfd < 0 || d->signal_fd < 0 || d->timer_fd < 0) {
		log_error_errno(-errno, "cannot set up the event loop: %m");
		return EXIT_RUNTIME;
	}

	d->client_listen_fd = d->stats_listen_fd = -1;
	take_listen_fds(d);
	if (d->client_listen_fd < 0)
		d->client_listen_fd = listen_unix(cfg->socket_path, SOCK_SEQPACKET, 0666);
	if (d->client_listen_fd < 0)
		return EXIT_SOCKETS;
	if (d->stats_listen_fd < 0)
		d->stats_listen_fd = listen_unix(cfg->stats_socket_path, SOCK_STREAM, 0666);
	if (d->stats_listen_fd < 0)
		return EXIT_SOCKETS;

	r = fault_threads_start(&d->m);
	if (r < 0)
		return EXIT_RUNTIME;
	r = reclaim_start(&d->m);
	if (r < 0) {
		log_error_errno(r, "cannot start reclaim: %m");
		return EXIT_RUNTIME;
	}

	d->client_listen_watch = (struct watch){WATCH_CLIENT_LISTEN, NULL};
	d->stats_listen_watch = (struct watch){WATCH_STATS_LISTEN, NULL};
	d->timer_watch = (struct watch){WATCH_TIMER, NULL};
	d->signal_watch = (struct watch){WATCH_SIGNAL, NULL};
	if (watch_add(d, d->client_listen_fd, &d->client_listen_watch) < 0 ||
	    watch_add(d, d->stats_listen_fd, &d->stats_listen_watch) < 0 ||
	    watch_add(d, d->timer_fd, &d->timer_watch) < 0 ||
	    watch_add(d, d->signal_fd, &d->signal_watch) < 0) {
		log_error_errno(-errno, "epoll_ctl: %m");
		return EXIT_RUNTIME;
	}
	if (sd_watchdog_enabled(false, &d->watchdog_usec) <= 0)
		d->watchdog_usec = 0;
	pace_timer(d);
	return 0;
}

static void teardown(struct daemon *d)
{
	struct manager *m = &d->m;
	unsigned kept = 0;

	drop_pending(d);
	drain_all(m);
	for (struct client *c = m->clients; c; c = c->next)
		kept += c->release_failed && !c->dead;
	if (kept) {
		/*
		 * Freeing their pages would lose them: leave the store and the page tables in pmem
		 * as a crash would, for the next memextd to adopt (the clients wait for it).
		 */
		log_error("%u client(s) still have evicted pages: they wait for the next memextd, "
			  "which adopts them",
			  kept);
		/* The others are let go: nothing of theirs for a successor to adopt. */
		for (struct client *c = m->clients; c; c = c->next)
			if (!c->release_failed)
				client_record_detach(c);
		adopt_swap_exit();
		return;
	}
	reclaim_stop(m);
	fault_threads_stop(m);
	while (m->clients) {
		struct client *c = m->clients;

		m->clients = c->next;
		client_unref(c);
	}
	fork_share_expire(m, 0, FORK_EXPIRE_ALL);
	store_free(m->store);
	adopt_swap_exit();
}

int main(int argc, char **argv)
{
	static struct daemon d;
	char err[1024];
	int r;

	if (parse_options(argc, argv, &d.opts) < 0) {
		fprintf(stderr, "Try 'memextd --help'.\n");
		return EXIT_USAGE;
	}
	if (d.opts.check_config_path) {
		r = config_check(d.opts.check_config_path, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "%s\n", err);
			return EXIT_CONFIG;
		}
		printf("%s: valid\n", d.opts.check_config_path);
		return EXIT_SUCCESS;
	}
	if (load_config(&d) < 0)
		return EXIT_CONFIG;
	r = setup(&d);
	if (r != 0)
		return r;
	log_info("memextd %s ready (configuration: %s)", MEMEXT_VERSION,
		 d.config_path ? d.config_path : "built-in defaults");
	if (d.opts.reclaim_pause_ms)
		log_notice("--test-reclaim-pause-ms %u: reclaim pauses after each snapshot of its "
			   "clients (for tests only)",
			   d.opts.reclaim_pause_ms);
	(void)sd_notify(0, "READY=1\nSTATUS=serving, no clients yet");
	r = run(&d);
	(void)sd_notify(0, "STOPPING=1\nSTATUS=giving every client its pages back");
	teardown(&d);
	/* Sockets we created ourselves; systemd removes its own. */
	if (!getenv("LISTEN_FDS")) {
		unlink(d.cfg->socket_path);
		unlink(d.cfg->stats_socket_path);
	}
	config_free(d.cfg);
	log_info("stopped");
	return r < 0 ? EXIT_RUNTIME : EXIT_SUCCESS;
}
