/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The fault path: do_swap_page and do_anonymous_page for userfaultfd clients. One fault thread
 * per CPU, pinned, each waiting on every client's uffd, so the thread on the CPU of the
 * faulting application thread is usually the one that answers; a client whose threads fault
 * side by side is waited on by one of them only (faulthome.h).
 */

#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stdint.h>

struct manager;
struct client;

/* A fault read from a uffd and not answered yet. */
struct fault_req {
	struct uffd_msg msg;
	uint64_t read_usec; /* when it was read: its service time runs from here */
	/* The agent's, taken while it made a page exclusive (client.h, agent_unshare_faults):
	 * seen as it was read, while the agent still waited in it. */
	bool agent_unsharing;
	uint32_t hand_back_epoch; /* client.hand_back_epoch when it was read */
};

#define FAULT_RA_MAX_PAGES 32 /* swap-in readahead window, at most */
#define FAULT_BUF_PAGES FAULT_RA_MAX_PAGES /* scratch pages fault_resolve() needs */

int fault_threads_start(struct manager *m);
void fault_threads_stop(struct manager *m);

/* Makes every fault thread wait on the client's uffd. Returns 0 or -errno. */
int fault_threads_add_client(struct manager *m, struct client *c);

/* Stops waiting on the client's uffd; returns once no fault thread can still be using it. */
void fault_threads_remove_client(struct manager *m, struct client *c);

/* If a read of the client's uffd was put off (client.read_deferred: its agent was moving),
 * makes the fault threads that wait on it look again. */
void fault_threads_rearm(struct manager *m, struct client *c);

/*
 * Answers faults (already read from the uffd): maps a zero page (with fault-around) or brings
 * the stored page back. Faults on pages of a batch in flight are parked on the client and
 * answered by reclaim when the batch is done. from_reclaim: never park for throttling. buf is
 * a scratch buffer of FAULT_BUF_PAGES pages (readahead decompresses a run into it). Reads the uffd itself when the kernel reports that the address
 * space is changing (EAGAIN), applying the events before it retries.
 */
void fault_resolve(struct client *c, const struct fault_req *reqs, unsigned n, void *buf,
		   bool from_reclaim);

/*
 * Brings the stored page at vpn back into the process (drain, fork). Returns 0 (back, or there
 * was nothing to bring back), or -errno (-ESRCH: process gone).
 */
int fault_swapin_vpn(struct client *c, uint64_t vpn, void *buf);

/*
 * Applies a REMOVE, UNMAP or REMAP event to the client's table (resolve lock held exclusively,
 * or the client not served yet). A REMAP records its progress in msg, so applying an
 * interrupted one again finishes it: fault_replay_event(), for an event a dead daemon read
 * (adopt.c).
 */
void fault_apply_event(struct client *c, struct uffd_msg *msg);
void fault_replay_event(struct client *c, struct uffd_msg *msg);
/* A successor takes the dead daemon's ring of c's last mremaps (remapring.h), before the
 * replay: their late UNMAPs may still come. */
struct remap_ring;
void fault_adopt_ring(struct client *c, const struct remap_ring *ring);

/*
 * Reads what the client's uffd holds: applies the events, answers the faults (as reclaim does:
 * never parked for throttling). Returns 0 or -errno (-EBUSY: the agent holds its move gate).
 */
int fault_read_pending(struct client *c, void *buf);

/*
 * For whoever walks c's whole table next (a fork snapshot, a drain): waits until no entries
 * are set aside for a REMAP still to come (fault.c, set_aside), reading the uffd, where the
 * REMAPs wait, and putting back those of moves that failed; 1 s at most. Returns 0 or -EAGAIN.
 * No lock held.
 */
int fault_settle_asides(struct client *c, void *buf);

/*
 * Forgets [start, end) as an UNMAP would: entries dropped (stored copies freed), the range no
 * longer registered. For memory memextd unregistered itself (resolve lock held exclusively).
 */
void fault_forget_range(struct client *c, uint64_t start, uint64_t end);
