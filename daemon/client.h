/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One application process under memext: its userfaultfd, its agent, its page table.
 *
 * Locks (see manager.h for the order):
 *   resolve_lock  rwlock. Shared while a fault is resolved (from the entry lookup to the end of
 *                 the UFFDIO_COPY/ZEROPAGE), exclusive while the uffd is read and the events in
 *                 it applied. Reading an event lets the application thread that caused it run
 *                 on (and zap, unmap or move the range), so no resolve based on the state before
 *                 the event may still be issued after the read: the exclusive lock guarantees it.
 *   lock          mutex for the page table, the registered ranges, the counters below it and
 *                 the parked faults; never held across a system call that can block.
 */

#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "fault.h"
#include "faulthome.h"
#include "histogram.h"
#include "lru.h"
#include "manager.h"
#include "movegate.h"
#include "pagetable.h"
#include "protocol.h"
#include "rangeset.h"
#include "remapring.h"
#include "writetrack.h"

/* An mremap seen while a batch was in flight: the batch finds its pages at their new place. */
struct mem_remap {
	uint64_t from, to, len; /* bytes */
};

#define CLIENT_MAX_IO 16 /* disk reads in flight per client */
#define CLIENT_MAX_ASIDES 8

/*
 * An mremap of another thread's, done but its REMAP not read yet, whose freed source a REMAP
 * read first moved pages into (fault.c, set_aside): its entries wait at fake page numbers
 * (VPN_USER_END on, a span per slot) for its REMAP, which takes them from there.
 */
struct remap_aside {
	pid_t tid;		/* the thread inside the call */
	uint64_t from, old_len; /* its source, as the call has it */
	uint64_t to;		/* its destination with MREMAP_FIXED, else 0 */
	uint64_t seq;		/* REMAPs read before it was set aside (recent_remap.seq) */
	bool used;
};

struct client_counters {
	_Atomic uint64_t pswpin;      /* pages brought back */
	_Atomic uint64_t pswpout;     /* pages evicted */
	_Atomic uint64_t faults;      /* faults answered */
	_Atomic uint64_t zero_faults; /* ... with zero pages (never evicted) */
	_Atomic uint64_t parked;      /* faults that waited for a batch or for reclaim */
	_Atomic uint64_t throttled;   /* ... of them, for reclaim: less than the min watermark free */
	_Atomic uint64_t move_failed; /* pages the kernel refused to move */
	_Atomic uint64_t readahead;   /* of pswpin: pages brought back ahead of a fault */
	_Atomic uint64_t pswpout_clean; /* of pswpout: evicted clean, their copy reused */
	_Atomic uint64_t wp_faults;   /* first writes to pages brought back clean */
	_Atomic uint64_t fault_usec_total; /* summed fault service time, for the mean */
	/* Of faults: the agent's own. Each would hang the agent for good had the daemon died
	 * before answering, so the shim keeps the agent off registered memory: should be 0. */
	_Atomic uint64_t agent_faults;
	/* Of agent_faults: taken while it made a page exclusive, answered with the agent inside
	 * the move gate (shared/movegate.h). Possible, rarely, when the application unmaps a
	 * page at that instant; the same hang were the daemon to die then. */
	_Atomic uint64_t agent_unshare_faults;
	_Atomic uint64_t gate_waits;     /* uffd reads that found the agent moving (movegate.h) */
	_Atomic uint64_t gate_wait_usec; /* ... and the time they waited for it */
	_Atomic uint64_t gate_deferred;  /* ... and those put off, its faults parked */
	struct histogram fault_usec;       /* fault service time, read to answer, µs */
};

struct batch;

/* MSG_HAND_BACK: a range the application wants for a userfaultfd of its own, and the seq its
 * answer carries. */
struct hand_back_req {
	struct mem_range range;
	uint32_t seq;
};

/* A range handed to the application's own userfaultfd, at hand_back_epoch epoch. */
struct handed_back {
	struct mem_range range;
	uint32_t epoch;
	uint64_t usec; /* when (now_usec) */
};

struct client {
	struct manager *m;
	struct client *next; /* manager.clients */
	_Atomic int ref;

	uint64_t id;
	pid_t pid;
	pid_t parent_pid;
	char comm[16];
	int uffd, pidfd, control_fd, agent_fd, pagemap_fd;
	int statm_fd; /* /proc/PID/statm, or -errno if it could not be opened */
	uint64_t budget_pages; /* 0: unlimited */
	uint64_t features;     /* granted by UFFDIO_API in the shim */
	pid_t agent_tid;
	pid_t agent_tid_local; /* ... as the process numbers it (a PID namespace of its own) */
	uint32_t flags; /* HELLO_* */
	bool track_writes; /* the uffd reports write-protect faults: keep clean copies */
	struct mem_range staging;
	struct mem_range exclude[MEMEXT_MAX_EXCLUDE];
	unsigned nr_exclude;

	pthread_rwlock_t resolve_lock;
	/* Shared with the agent (shared/movegate.h); gate_fd goes to the agent once, then is
	 * closed. read_deferred: a read found the agent inside the gate and left the uffd
	 * unread; whoever sees the agent out again makes a fault thread look at it
	 * (fault_threads_rearm). */
	struct move_gate *gate;
	int gate_fd;
	_Atomic bool read_deferred;
	/* A fault thread is draining the uffd: the others leave it alone (fault.c). */
	_Atomic bool fault_owned;
	/* A reclaim thread works on this client: the others leave it alone (reclaim.c). */
	_Atomic bool reclaim_owned;
	/* fault_home: the holder's count of its reads (faulthome.h). fault_home_thread: the
	 * one fault thread that waits on the uffd (-1: all); written under fault.c's
	 * registration lock.
	 * fault_removed: read and written only under that lock; once set, no fault thread
	 * waits on the uffd again. */
	struct faulthome fault_home;
	_Atomic int fault_home_thread;
	bool fault_removed;
	pthread_mutex_t lock;
	pthread_cond_t batch_done;

	/* Under lock. */
	struct pagetable *pt;
	struct rangeset registered;
	uint64_t nr_present; /* PRESENT and MOVING entries */
	uint64_t nr_stored;  /* STORED and LOADING entries */
	uint64_t nr_cached;  /* PRESENT|CLEAN entries: resident pages whose stored copy is kept */
	struct lru lru;      /* active/inactive lists and workingset age (daemon/lru.h) */
	uint64_t ra_next_vpn; /* a fault here continues a sequential run */
	unsigned ra_window;   /* pages read ahead on the next sequential fault */
	struct writetrack wtrack; /* keep the copies of pages read back? (writetrack.h) */
	bool batch_in_flight;
	/* A batch whose process stopped before its agent answered the request for it: in
	 * flight until the process runs again. Only the reclaim thread holding the client
	 * (reclaim_owned) touches it. */
	struct batch *_Atomic stalled_batch; /* atomic: the stats look whether it is set */
	struct mem_remap *remaps; /* mremaps applied while the batch is in flight, in order */
	unsigned nr_remaps, cap_remaps;
	/* The last mremaps (remapring.h), when the client has no pmem record to keep them in
	 * (fault.c, ring_of). Their UNMAPs are waited for only when the kernel sends the
	 * source's (remapprobe.h). */
	struct remap_ring own_ring;
	/* Changed under the lock and the resolve lock, shared (a fault puts back a failed
	 * move's) or not; looked at under either. */
	struct remap_aside asides[CLIENT_MAX_ASIDES];
	unsigned nr_asides;
	/* The messages of the uffd read being applied, those after the current one not yet
	 * (fault.c, is_tail_of): under the resolve lock. */
	const struct uffd_msg *reading;
	unsigned nr_reading;
	struct fault_req *parked;
	unsigned nr_parked, cap_parked;
	/* Pages an I/O worker is reading from a swap file: their LOADING entries are not
	 * covered by the resolve lock, so an mremap moves the address here too. */
	uint64_t io_vpn[CLIENT_MAX_IO];
	bool io_busy[CLIENT_MAX_IO];
	bool evict_paused;   /* a fork is under way */
	bool fork_requested; /* FORK_PREPARE received, reclaim thread drains */
	uint32_t fork_token; /* of that FORK_PREPARE: the child names it in its hello */
	bool fork_drain;     /* that FORK_PREPARE asked for every page back (FORK_DRAIN) */
	bool fork_under_way; /* from FORK_PREPARE to FORK_DONE */
	bool drain_requested; /* memextctl drain: bring everything back, evict no more */
	bool leave_requested; /* MSG_LEAVE: release it (leave_seq answers), then leave it be */
	atomic_bool left;     /* ... done: nothing of it is registered, the agent has ended */
	uint32_t leave_seq;
	int leave_status;     /* the answer given, for a request that comes again */
	/* Ranges the application registers with a userfaultfd of its own: asked for, waiting
	 * for a reclaim thread (hand_back_reqs), and handed back (handed_back: unregistered, never
	 * registered again by a scan; reclaim.c, hand_back_range). handed_back and
	 * hand_back_epoch change under the resolve lock held exclusively as well: a fault read
	 * before the epoch of a range that holds it is not answered (fault.c, handed_back). */
	struct hand_back_req *hand_back_reqs;
	unsigned nr_hand_back_reqs, cap_hand_back_reqs;
	struct handed_back *handed_back;
	unsigned nr_handed_back, cap_handed_back;
	uint32_t hand_back_epoch;
	uint64_t take_back_usec; /* main thread: handed_back last looked at (client_take_back) */
	/* The reclaim thread holding the client lets the agent of its stopped process run
	 * (agenthold.h); one that could not waits until hold_retry_ns (CLOCK_MONOTONIC). */
	bool agent_held;
	uint64_t hold_retry_ns;
	bool agent_gone;     /* the agent failed: no more eviction; MOVING pages of its last
			      * batch are served from staging */
	bool dead;           /* the process exited; being torn down */
	/* Main thread: its memory is registered (see track-above); before, nothing of it goes
	 * through us, and rss_pages is what it has resident. */
	bool armed;
	uint64_t rss_pages;
	bool release_failed; /* the daemon stops but could not give it every page back */
	unsigned fruitless_batches; /* in a row; stops throttling while reclaim cannot help */
	uint64_t unevictable_retry_ns; /* CLOCK_MONOTONIC: its unevictable pages are tried
					* again then (0: none yet) */

	/* A fault came from memory the shim registered early (its mmap()) that no scan has
	 * seen: the main thread scans the maps at its next tick, not a second later, so that
	 * fault-around and reclaim know the range. */
	atomic_bool scan_wanted;

	struct client_counters stats;
	struct client_record *record; /* in pmem, for a successor after a crash (adopt.h) */

	/* Main thread only. */
	void *user; /* main's event-loop watches; freed with the client */
	int64_t scan_untracked_pages; /* resident pages not in our table, at the last scan */
	uint64_t scan_usec;
};

/* Creates a client from a checked hello and its four fds (uffd, pidfd, agent socket,
 * pagemap), which it takes over on success. budget_bytes: what the client gets (its own
 * MEMEXT_BUDGET, else its [app:NAME] section's, else the default). Returns 0 or -errno. */
int client_new(struct manager *m, const struct msg_hello *hello, uint64_t budget_bytes,
	       int control_fd, int fds[4], struct client **ret);
struct client *client_ref(struct client *c);
void client_unref(struct client *c);

/* Registers the process's eligible mappings not registered yet and learns their present pages.
 * Main thread. Returns 0 or -errno (-ESRCH: process gone). */
int client_scan(struct client *c);

/* The same for [start, end) only, whatever the mapping's kind (a fork child registers what
 * its parent had registered). Main thread. Returns 0 or -errno. */
int client_scan_range(struct client *c, uint64_t start, uint64_t end);

/* UFFDIO_REGISTER of [start, end) with c's uffd, in the modes c uses. Returns 0 or -errno. */
int client_uffd_register(struct client *c, uint64_t start, uint64_t end);

/* MSG_HAND_BACK_DONE for the MSG_HAND_BACK of seq. */
void client_answer_hand_back(struct client *c, uint32_t seq, int status);
void client_answer_leave(struct client *c, uint32_t seq, int status);

/*
 * Takes back the ranges handed to the application's own userfaultfd (reclaim.c) a second ago or
 * more that no userfaultfd holds (it let go of them, or they are unmapped): the next scan
 * registers them again. Main thread; looks at most once a second. Returns the number of ranges
 * taken back.
 */
int client_take_back(struct client *c, uint64_t now);

/* Resident pages of the process that are not PRESENT in its table (libraries, memory not
 * registered yet), or -errno. Grows when the process maps memory we have not seen. */
int64_t client_untracked_pages(struct client *c);

/* Frees every stored page and the page table (the process is gone). */
void client_release_pages(struct client *c);

/* Where the page that was at addr when the batch started is now (lock held). */
uint64_t client_batch_addr_now(const struct client *c, uint64_t addr);

/* Appends a fault to the parked list (lock held). Returns 0 or -ENOMEM. */
int client_park_locked(struct client *c, const struct fault_req *req);

/*
 * The resolve lock as fault threads take it: spinning for up to CLIENT_LOCK_SPIN_USEC before
 * sleeping on it. Its holder is usually the other fault thread, for microseconds (one read of
 * the uffd, one resolve), while a futex sleep costs a wake-up from another CPU, ~50 µs on this
 * kind of VM (DESIGN.md): longer than the wait it replaces, and the faulting thread waits
 * through both.
 */
#define CLIENT_LOCK_SPIN_USEC 20
void client_resolve_rdlock(struct client *c);
void client_resolve_wrlock(struct client *c);

/* The resident pages at which a client has pct percent of its budget free. */
static inline uint64_t client_wmark_pages(const struct client *c, unsigned pct)
{
	return c->budget_pages - c->budget_pages * pct / 100;
}

/* Reclaim should run: less than client-watermark-low of the budget is free. */
static inline bool client_over_low_wmark(const struct client *c)
{
	return c->budget_pages &&
	       c->nr_present > client_wmark_pages(c, c->m->cfg.client_wmark_low_pct);
}
