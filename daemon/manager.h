/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The daemon's state: the store, the clients, the fault threads and the reclaim threads.
 *
 * Threads:
 *   main      accepts clients, reads their control sockets and pidfds, rescans their maps,
 *             serves the stats socket, creates and destroys clients.
 *   fault/N   one per CPU, pinned, each waiting on every client's userfaultfd, so the thread on
 *             the faulting CPU usually answers (see DESIGN.md, "The physics of this machine").
 *   reclaim   (reclaim/N beside it with reclaim-threads > 1) evicts pages of clients over
 *             their budget, drains clients before fork, and answers faults that had to wait
 *             for a batch; one thread works on a client at a time (client.reclaim_owned).
 *
 * Lock order: manager.clients_lock -> client.resolve_lock -> client.lock. fault.c's
 * registration_lock is taken with no other lock held.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "histogram.h"

struct client;
struct store;
struct fault_thread;
struct fork_share;

struct manager_config {
	unsigned nr_fault_threads;    /* 0: one per CPU */
	unsigned nr_reclaim_threads;  /* at least 1 */
	unsigned fault_poll_us;       /* reading on after a client's last fault before sleeping */
	unsigned batch_pages;         /* pages evicted per batch, <= MEMEXT_STAGING_PAGES */
	unsigned unevictable_retry_sec; /* a client's unevictable pages are tried again this often */
	bool evict_stopped;	      /* evict from stopped processes (agenthold.h) */
	uint64_t fork_claim_timeout_usec; /* fork snapshots whose child cannot be watched */
	unsigned faultaround_pages;   /* window for mapping never-evicted neighbours at once */
	uint64_t default_budget_bytes; /* for clients that name none; 0: unlimited */
	/* Free headroom in percent of a client's budget, as the kernel's zone watermarks:
	 * reclaim wakes below low and sleeps above high; below min faults wait for reclaim. */
	unsigned client_wmark_min_pct, client_wmark_low_pct, client_wmark_high_pct;
	/* The same in percent of MemTotal, for the system as a whole (MemAvailable). */
	unsigned wmark_min_pct, wmark_low_pct, wmark_high_pct;
	unsigned pressure_avg10_pct; /* 0: PSI ignored */
	unsigned track_above_pct;    /* of the budget: resident memory at which a client is armed */
	const char *meminfo_path;    /* /proc/meminfo, or a stand-in for tests */
	const char *psi_path;	     /* /proc/pressure/memory; NULL with a stand-in meminfo */
	const char *crash_at;	     /* a crash_point() that kills the daemon (tests), or NULL */
	unsigned test_reclaim_pause_ms; /* reclaim sleeps after each snapshot (tests), or 0 */
};

struct manager_totals {
	_Atomic uint64_t pswpin;       /* pages brought back from the store */
	_Atomic uint64_t pswpout;      /* pages evicted into the store */
	_Atomic uint64_t readahead;    /* of pswpin: pages brought back ahead of a fault */
	_Atomic uint64_t pswpout_clean; /* of pswpout: evicted clean, no compression needed */
	_Atomic uint64_t wp_faults;    /* first writes to pages brought back clean */
	_Atomic uint64_t faults;       /* page faults answered */
	_Atomic uint64_t zero_faults;  /* ... of which with zero pages */
	_Atomic uint64_t clients_seen; /* clients ever accepted */
	_Atomic uint64_t clients_no_uffd; /* processes that could not make a userfaultfd */
	_Atomic uint64_t clients_left;	  /* ... that left (a seccomp filter, a user ns) */
	_Atomic uint64_t reclaim_scanned;  /* entries the two clock hands looked at */
	_Atomic uint64_t reclaim_failed;   /* pages the kernel refused to move */
	_Atomic uint64_t move_unreported;  /* pages the kernel moved but said it had not */
	_Atomic uint64_t io_overflow; /* faults handed to an I/O worker with every slot busy */
	_Atomic uint64_t unevictable_culled;  /* ... of those, set aside: mlocked, pinned, not read-write */
	_Atomic uint64_t unevictable_rescued; /* unevictable pages put back on the lists */
	_Atomic uint64_t reclaim_stalled;  /* batches a stopped process held (reclaim.c) */
	_Atomic uint64_t stopped_holds;	   /* rounds a stopped process's agent was let run */
	_Atomic uint64_t stalled_landed_stopped; /* ... stalled batches that landed so */
	_Atomic uint64_t throttled;	   /* faults parked below a min watermark (fault.c) */
	_Atomic uint64_t sys_reclaim_rounds; /* reclaim rounds run for the system's watermarks */
	_Atomic uint64_t reclaim_deactivated; /* pages moved from the active to the inactive list */
	_Atomic uint64_t workingset_refault;  /* of pswpin: stored pages brought back */
	_Atomic uint64_t workingset_activate; /* ... within the workingset size: activated */
	_Atomic uint64_t workingset_restore;  /* ... of those, active before their eviction */
	_Atomic uint64_t adopt_swap_pages; /* pages adopted from a dead daemon where they were, in
					    * a swap area slot (no I/O) */
	_Atomic uint64_t adopt_poisoned;   /* pages of a dead daemon's clients found nowhere and
					    * poisoned (SIGBUS on access); should stay 0 */
	_Atomic uint64_t adopt_past_limit; /* ... kept past the store's limit, which refused them */
	_Atomic uint64_t remaps_set_aside; /* mremaps whose REMAP came after another move into
					    * their source: entries set aside (fault.c) */
	_Atomic uint64_t fault_usec_total; /* summed fault service time */
	struct histogram fault_usec;       /* fault service time of every client, µs */
	_Atomic uint64_t forks_shared;  /* forks whose child shared the evicted pages */
	_Atomic uint64_t forks_drained; /* forks that brought every page back first */
	_Atomic uint64_t fork_pages_shared; /* evicted pages handed to fork children */
	_Atomic uint64_t fork_pages_unshared; /* resident pages the agent made exclusive again
					       * (shared with a fork child) to evict them */
	_Atomic uint64_t fault_homed;	/* times a client's uffd went to one fault thread
					 * (its threads faulted side by side, faulthome.h) */
	_Atomic uint64_t fault_unhomed; /* ... and back to every fault thread */
	_Atomic uint64_t hand_backs;	  /* ranges handed to the application's own userfaultfd */
	_Atomic uint64_t hand_back_pages; /* ... their evicted pages brought back for that */
	_Atomic uint64_t taken_back;	  /* ... taken back once the application let go of them */
};

struct manager {
	struct manager_config cfg;
	struct store *store;

	pthread_mutex_t clients_lock; /* protects clients, nr_clients, next_client_id */
	struct client *clients;
	_Atomic unsigned nr_clients; /* ... changed under it, read without it by reclaim's wait */
	uint64_t next_client_id;

	unsigned nr_fault_threads;
	struct fault_thread *fault_threads;

	pthread_mutex_t reclaim_lock; /* protects reclaim_kick */
	pthread_cond_t reclaim_cond;
	bool reclaim_kick;
	bool remap_unmaps_source; /* the kernel sends an UNMAP for an mremap's source (remapprobe.h)
				   */
	_Atomic bool stopping;  /* the daemon is shutting down */
	_Atomic bool draining;  /* reclaim gives every client its pages back, then lets go */
	_Atomic uint64_t fork_seq;  /* bumped by each FORK_PREPARE (forklook.h) */
	_Atomic uint32_t agent_seq; /* the last sequence number of a request to an agent */
	/* The whole system's memory (sysmem.h), read by reclaim every round. */
	_Atomic int sys_level;	/* enum sysmem_level */
	_Atomic uint64_t sys_available_bytes, sys_total_bytes;

	struct manager_totals totals;
	uint64_t start_usec;

	/* Fork snapshots waiting for their child (forkshare.c); taken with no other lock. */
	pthread_mutex_t forks_lock;
	struct fork_share *forks;
};

void manager_kick_reclaim(struct manager *m);
/* Tests (--crash-at): SIGKILLs the daemon when point is the one named. */
void crash_point(const struct manager *m, const char *point);
uint64_t now_usec(void);
