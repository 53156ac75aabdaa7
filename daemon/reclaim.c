/* SPDX-License-Identifier: MIT */
#include "reclaim.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "agenthold.h"
#include "client.h"
#include "fault.h"
#include "forklook.h"
#include "forkshare.h"
#include "log.h"
#include "manager.h"
#include "maps.h"
#include "pmem.h"
#include "procfs.h"
#include "size.h"
#include "store.h"
#include "sysmem.h"
#include "uffd-compat.h"

#define AGENT_TIMEOUT_MSEC 10000 /* of time the agent could run without answering */
#define AGENT_POLL_MSEC 200	 /* how often a wait looks whether the process is stopped */
#define MAX_BATCHES_PER_ROUND 64 /* per client, so one client cannot starve the others */

struct batch {
	unsigned nr;
	uint32_t seq; /* of the request that moves it out, once sent */
	uint64_t vpn[MEMEXT_STAGING_PAGES];
	uint64_t handle[MEMEXT_STAGING_PAGES];
	uint64_t moved[MEMEXT_STAGING_PAGES / 64];
	uint64_t locked[MEMEXT_STAGING_PAGES / 64]; /* moved into the mlocked half of staging */
	uint64_t clean[MEMEXT_STAGING_PAGES / 64];  /* handle[i] is its kept copy: no compression */
	uint64_t written[MEMEXT_STAGING_PAGES / 64]; /* the agent lifted its write protection */
	uint64_t unevictable[MEMEXT_STAGING_PAGES / 64]; /* the kernel refused it for good */
	uint64_t saved[MEMEXT_STAGING_PAGES / 64];
	uint64_t workingset[MEMEXT_STAGING_PAGES / 64]; /* PTE_WORKINGSET: goes into the shadow */
	unsigned char *data; /* MEMEXT_STAGING_PAGES pages read from staging */
};

/*
 * A reclaim thread (reclaim-threads of them). Each goes through every client in turn and works
 * on those it can claim (client.reclaim_owned), so one client is never worked on by two, and a
 * client whose agent is slow holds up only the thread that has it. The first thread also
 * reads the system's memory and gives every client its pages back when the daemon stops.
 */
struct reclaimer {
	struct manager *m;
	unsigned id;
	pthread_t thread;
	struct batch *b; /* the next batch; one a stopped process holds is its client's */
	void *page_buf;	 /* FAULT_BUF_PAGES pages, for fault_resolve() */
	struct forklook forks; /* which fork requests need a look (forklook.h) */
};

static struct batch *batch_new(void)
{
	struct batch *b = calloc(1, sizeof(*b));

	if (b && !(b->data = aligned_alloc(PAGE_SIZE, (size_t)MEMEXT_STAGING_PAGES * PAGE_SIZE))) {
		free(b);
		b = NULL;
	}
	return b;
}

static void batch_free(struct batch *b)
{
	if (b)
		free(b->data);
	free(b);
}

/* Sequence numbers of requests to agents: unique across reclaim threads, so that a reply a
 * thread gave up on cannot pass for the answer another thread waits for. */
static uint32_t next_seq(struct manager *m)
{
	uint32_t seq;

	do /* 0 means "nothing sent" to agent_move_send()'s callers */
		seq = atomic_fetch_add(&m->agent_seq, 1) + 1;
	while (seq == 0);
	return seq;
}

/* Whether rc may work on c now; it must unclaim() it after. */
static bool claim(struct client *c)
{
	return !atomic_exchange_explicit(&c->reclaim_owned, true, memory_order_acquire);
}

static void unclaim(struct client *c)
{
	atomic_store_explicit(&c->reclaim_owned, false, memory_order_release);
}

static bool test_bit(const uint64_t *map, unsigned i)
{
	return map[i / 64] & (1ULL << (i % 64));
}

static void set_bit(uint64_t *map, unsigned i)
{
	map[i / 64] |= 1ULL << (i % 64);
}

/* Where batch page i sits in staging: slot i, or slot i of the mlocked half. */
static uint64_t stage_addr(const struct client *c, const struct batch *b, unsigned i)
{
	return c->staging.start +
	       ((test_bit(b->locked, i) ? MEMEXT_STAGING_PAGES : 0) + (uint64_t)i) * PAGE_SIZE;
}

/* Victim selection: the inactive list's clock (daemon/lru.c). */

static int isolate_one(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct batch *b = userdata;

	if (*pte & PTE_CLEAN) {
		/* Not written since it came back: its stored copy is still its content. */
		set_bit(b->clean, b->nr);
		b->handle[b->nr] = pte_payload(*pte);
	}
	if (*pte & PTE_WORKINGSET)
		set_bit(b->workingset, b->nr);
	*pte = pte_make(PTE_MOVING, 0, b->nr); /* payload: its staging slot */
	b->vpn[b->nr++] = vpn;
	return 0;
}

/* Picks up to want victims and marks them MOVING. Lock held. */
static void select_victims(struct client *c, struct batch *b, unsigned want)
{
	uint64_t scanned = 0, deactivated = c->lru.deactivated;

	b->nr = 0;
	memset(b->clean, 0, sizeof(b->clean));
	memset(b->workingset, 0, sizeof(b->workingset));
	lru_shrink(&c->lru, c->pt, c->nr_present, want, isolate_one, b, &scanned);
	atomic_fetch_add(&c->m->totals.reclaim_scanned, scanned);
	atomic_fetch_add(&c->m->totals.reclaim_deactivated, c->lru.deactivated - deactivated);
}

/* Talking to the agent. */

/*
 * The process the agent is in cannot run now (Ctrl-Z, a debugger, a frozen cgroup). An agent
 * held (agenthold.h) runs while its process is stopped, unless it is frozen: restarted first,
 * should a signal or a new group stop have stopped it again.
 */
static bool agent_stopped(const struct client *c)
{
	if (c->agent_held) {
		(void)agent_hold_kick(c->agent_tid);
		return proc_frozen(c->agent_tid);
	}
	return proc_stopped(c->agent_tid > 0 ? c->agent_tid : c->pid);
}

/*
 * Waits for the agent's answer to request seq. Only time in which the agent could run counts
 * towards AGENT_TIMEOUT_MSEC: a stopped process answers once it runs again. -EAGAIN when it
 * is stopped and may_stall: the caller may come back for the answer later.
 */
static int agent_wait_reply(struct client *c, struct msg_agent_move_done *reply, uint32_t seq,
			    bool may_stall)
{
	int waited = 0;

	for (;;) {
		struct pollfd p[2] = {
			{.fd = c->agent_fd, .events = POLLIN},
			{.fd = c->pidfd, .events = POLLIN},
		};
		unsigned nr_fds = 0;
		ssize_t n;
		int r = poll(p, 2, AGENT_POLL_MSEC);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) {
			if (agent_stopped(c)) {
				if (may_stall)
					return -EAGAIN;
				waited = 0;
			} else if ((waited += AGENT_POLL_MSEC) >= AGENT_TIMEOUT_MSEC) {
				return -ETIMEDOUT;
			}
			continue;
		}
		if ((p[1].revents & POLLIN) && !(p[0].revents & POLLIN))
			return -ESRCH;
		memset(reply, 0, sizeof(*reply)); /* an older shim's reply is shorter */
		n = proto_recv(c->agent_fd, reply, sizeof(*reply), NULL, &nr_fds);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return (int)n;
		if (reply->h.type != MSG_AGENT_MOVE_DONE || reply->h.seq != seq)
			return -EBADMSG;
		return 0;
	}
}

/*
 * Sends one MOVE request for the batch slots in mask (forward: application -> staging; back:
 * staging -> application). Returns its sequence number, 0 when mask holds nothing to move,
 * or -errno.
 */
static int64_t agent_move_send(struct client *c, struct batch *b, const uint64_t *mask, bool back)
{
	struct {
		struct msg_agent_move m;
		struct move_range r[MEMEXT_MAX_MOVE_RANGES];
	} req;
	unsigned nr = 0;
	int r;

	memset(&req.m, 0, sizeof(req.m));
	for (unsigned i = 0; i < b->nr; i++) {
		uint64_t app = b->vpn[i] * PAGE_SIZE;
		uint64_t stage = back ? stage_addr(c, b, i) : c->staging.start + (uint64_t)i * PAGE_SIZE;

		if (!test_bit(mask, i))
			continue;
		if (back) {
			/* The application may have mremapped it since the batch started. */
			pthread_mutex_lock(&c->lock);
			app = client_batch_addr_now(c, app);
			pthread_mutex_unlock(&c->lock);
		}
		/* Extend the previous range when both sides continue it. */
		if (nr > 0) {
			struct move_range *last = &req.r[nr - 1];
			uint64_t src = back ? stage : app, dst = back ? app : stage;

			if (last->src + last->len == src && last->dst + last->len == dst) {
				last->len += PAGE_SIZE;
				continue;
			}
		}
		req.r[nr++] = (struct move_range){
			.src = back ? stage : app,
			.dst = back ? app : stage,
			.len = PAGE_SIZE,
		};
	}
	if (nr == 0)
		return 0;
	req.m.nr = nr;
	req.m.flags = back ? AGENT_MOVE_BACK : 0;
	proto_init_header(&req.m.h, MSG_AGENT_MOVE,
			  (uint32_t)(sizeof(req.m) + nr * sizeof(struct move_range)),
			  next_seq(c->m));
	r = proto_send(c->agent_fd, &req, req.m.h.len, NULL, 0);
	return r < 0 ? (int64_t)r : (int64_t)req.m.h.seq;
}

/*
 * Takes in the agent's answer to the request seq agent_move_send() made of the same
 * arguments: the moved bitmap in ret_moved. -EAGAIN: the process is stopped and may_stall;
 * the answer is still to come.
 */
static int agent_move_done(struct client *c, struct batch *b, const uint64_t *mask, bool back,
			   uint32_t seq, bool may_stall, uint64_t *ret_moved)
{
	struct msg_agent_move_done reply;
	int r = agent_wait_reply(c, &reply, seq, may_stall);

	if (r == -EAGAIN)
		return r;
	/* The agent is out of its gate (or gone): a read put off meanwhile can happen now. */
	fault_threads_rearm(c->m, c);
	if (r < 0)
		return r;
	memcpy(ret_moved, reply.moved, sizeof(reply.moved));
	if (!back) {
		memcpy(b->locked, reply.locked, sizeof(reply.locked));
		memcpy(b->written, reply.written, sizeof(reply.written));
		memcpy(b->unevictable, reply.unevictable, sizeof(reply.unevictable));
	}
	for (unsigned i = 0; i < MEMEXT_STAGING_PAGES; i++)
		if (test_bit(ret_moved, i) && (i >= b->nr || !test_bit(mask, i)))
			return -EBADMSG; /* the agent claims a page we did not ask for */
	atomic_fetch_add(&c->m->totals.move_unreported, reply.nr_unreported);
	if (reply.nr_failed) {
		atomic_fetch_add(&c->stats.move_failed, reply.nr_failed);
		atomic_fetch_add(&c->m->totals.reclaim_failed, reply.nr_failed);
		log_debug_errno(reply.first_err, "client %d: %u pages not moved: %m", c->pid,
				reply.nr_failed);
	}
	return 0;
}

/* agent_move_send() and agent_move_done(), waiting for as long as the process is stopped. */
static int agent_move(struct client *c, struct batch *b, const uint64_t *mask, bool back,
		      uint64_t *ret_moved)
{
	int64_t seq = agent_move_send(c, b, mask, back);

	if (seq == 0)
		memset(ret_moved, 0, sizeof(b->moved));
	if (seq <= 0)
		return (int)seq;
	return agent_move_done(c, b, mask, back, (uint32_t)seq, false, ret_moved);
}

static void agent_free_staging(struct client *c, uint32_t seq)
{
	struct msg_agent_free f = {.range = c->staging};

	proto_init_header(&f.h, MSG_AGENT_FREE, sizeof(f), seq);
	(void)proto_send(c->agent_fd, &f, sizeof(f), NULL, 0);
}

/* Reads the moved pages out of staging. Clears moved bits of pages it could not read. */
static void read_staging(struct client *c, struct batch *b)
{
	for (unsigned i = 0; i < b->nr;) {
		struct iovec local, remote;
		unsigned j = i;
		ssize_t n;

		if (!test_bit(b->moved, i) || test_bit(b->clean, i)) {
			i++;
			continue;
		}
		/* A run of moved dirty pages in the same half of staging. */
		while (j < b->nr && test_bit(b->moved, j) && !test_bit(b->clean, j) &&
		       test_bit(b->locked, j) == test_bit(b->locked, i))
			j++;
		local = (struct iovec){b->data + (size_t)i * PAGE_SIZE, (size_t)(j - i) * PAGE_SIZE};
		remote = (struct iovec){(void *)(uintptr_t)stage_addr(c, b, i), local.iov_len};
		n = process_vm_readv(c->pid, &local, 1, &remote, 1, 0);
		if (n < 0 && errno == ESRCH) /* it exited meanwhile: its pages go with it */
			log_debug("client %d: exited while its staging was read", c->pid);
		else if (n != (ssize_t)local.iov_len) /* not saved: the pages go back */
			log_warning_errno(n < 0 ? -errno : -EIO,
					  "client %d: reading staging failed: %m", c->pid);
		for (unsigned k = i; k < j; k++)
			if (n < 0 || (ssize_t)((k - i + 1) * PAGE_SIZE) > n)
				b->moved[k / 64] &= ~(1ULL << (k % 64));
			else
				set_bit(b->saved, k); /* read; store_save may still refuse */
		i = j;
	}
}

/*
 * Pages the agent had to make exclusive (shared with a fork child) are writable now, moved or
 * not: their kept copies may be stale. They are read from staging and compressed like any
 * dirty page, or stay resident untracked.
 */
static void forget_written_copies(struct client *c, struct batch *b)
{
	uint64_t unshared = 0;

	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < b->nr; i++) {
		if (!test_bit(b->written, i))
			continue;
		unshared += test_bit(b->moved, i);
		if (test_bit(b->clean, i)) {
			b->clean[i / 64] &= ~(1ULL << (i % 64));
			store_drop(c->m->store, b->handle[i]);
			c->nr_cached--;
		}
	}
	pthread_mutex_unlock(&c->lock);
	atomic_fetch_add(&c->m->totals.fork_pages_unshared, unshared);
}

/* Lands the batch in the page table: lock held. Returns the pages it set aside as
 * unevictable. */
static unsigned complete_batch(struct client *c, struct batch *b, const uint64_t *back)
{
	struct store *s = c->m->store;
	unsigned culled = 0;

	for (unsigned i = 0; i < b->nr; i++) {
		uint64_t vpn = client_batch_addr_now(c, b->vpn[i] * PAGE_SIZE) / PAGE_SIZE;
		pte_t *pte = pagetable_lookup(c->pt, vpn);
		bool dead;

		if (!pte || pte_type(*pte) != PTE_MOVING || pte_payload(*pte) != i) {
			/* Cannot happen: events keep MOVING entries, mremap included. */
			log_error("client %d: batch page %#lx lost track of", c->pid,
				  (unsigned long)(vpn * PAGE_SIZE));
			if (test_bit(b->moved, i) && test_bit(b->saved, i))
				store_drop(s, b->handle[i]);
			continue;
		}
		dead = *pte & PTE_DEAD;
		if (test_bit(b->clean, i))
			c->nr_cached--; /* the kept copy goes to STORED, or is dropped below */
		if (*pte & PTE_CANCEL) {
			/* The agent needed it: it is back in the process (not write-protected), its
			 * copy is stale. */
			if (test_bit(b->moved, i) && test_bit(b->saved, i))
				store_drop(s, b->handle[i]);
			else if (test_bit(b->clean, i))
				store_drop(s, b->handle[i]);
			if (dead) {
				*pte = 0;
				c->nr_present--;
			} else {
				*pte = pte_make(PTE_PRESENT, PTE_REF, 0);
			}
		} else if (test_bit(b->moved, i) && test_bit(b->saved, i)) {
			if (dead) {
				store_drop(s, b->handle[i]);
				*pte = 0;
			} else {
				*pte = pte_make(PTE_STORED, 0, b->handle[i]);
				*pagetable_shadow(c->pt, vpn) =
					workingset_eviction(&c->lru, test_bit(b->workingset, i));
				c->nr_stored++;
				atomic_fetch_add(&c->stats.pswpout, 1);
				atomic_fetch_add(&c->m->totals.pswpout, 1);
				if (test_bit(b->clean, i)) {
					atomic_fetch_add(&c->stats.pswpout_clean, 1);
					atomic_fetch_add(&c->m->totals.pswpout_clean, 1);
				}
			}
			c->nr_present--;
		} else if (test_bit(b->moved, i) && !test_bit(back, i)) {
			/* Moved but neither saved nor moved back: only for dead pages. */
			if (!dead)
				log_error("client %d: page %#lx lost in eviction", c->pid,
					  (unsigned long)(vpn * PAGE_SIZE));
			*pte = 0;
			c->nr_present--;
		} else if (dead) {
			if (test_bit(b->clean, i))
				store_drop(s, b->handle[i]);
			*pte = 0;
			c->nr_present--;
		} else {
			/* Still (or again) resident: skip it on the next turn of the hand. Not
			 * moved and clean: still write-protected, the copy holds. */
			*pte = test_bit(b->clean, i)
				       ? pte_make(PTE_PRESENT, PTE_REF | PTE_CLEAN, b->handle[i])
				       : pte_make(PTE_PRESENT, PTE_REF, 0);
			c->nr_cached += test_bit(b->clean, i);
			if (test_bit(b->unevictable, i) && !test_bit(b->moved, i)) {
				/* Refused for a reason of its mapping: not again until it
				 * changes (lru.h, unevictable). */
				*pte = lru_cull(&c->lru, *pte);
				culled++;
			}
		}
	}
	atomic_fetch_add(&c->m->totals.unevictable_culled, culled);
	return culled;
}

/*
 * Answers the parked faults: those that waited for a batch, and those throttled. The latter
 * are throttled again if the client is still at its min watermark: answering them all after
 * every batch let each map a fault-around window (16 pages), and 32 threads grew the process
 * by 512 pages for every 256 evicted (test random-swapfile-32t reached 70 MiB on a 32 MiB
 * budget). should_throttle() lets them through once reclaim stops helping.
 */
static void resolve_parked(struct reclaimer *rc, struct client *c)
{
	struct fault_req *parked;
	unsigned nr;

	pthread_mutex_lock(&c->lock);
	parked = c->parked;
	nr = c->nr_parked;
	c->parked = NULL;
	c->nr_parked = c->cap_parked = 0;
	pthread_mutex_unlock(&c->lock);
	if (nr)
		fault_resolve(c, parked, nr, rc->page_buf, false);
	free(parked);
}

/*
 * Pages moved out but not saved go back (back: the slots that did), unless the application
 * dropped them. An mremap during the request cancels the move (the agent had the old address,
 * shared/movegate.h): it is asked again, with the new one.
 */
static void move_back_unsaved(struct client *c, struct batch *b, uint64_t *back)
{
	/* Each try that finds work again follows an mremap the application made meanwhile. */
	for (int tries = 0; tries < 64; tries++) {
		uint64_t want[MEMEXT_STAGING_PAGES / 64] = {0}, got[MEMEXT_STAGING_PAGES / 64];
		bool any = false, aside = false;

		pthread_mutex_lock(&c->lock);
		move_gate_clear(c->gate); /* events mark again from here on, under this lock */
		for (unsigned i = 0; i < b->nr; i++) {
			uint64_t vpn = client_batch_addr_now(c, b->vpn[i] * PAGE_SIZE) / PAGE_SIZE;
			pte_t *pte = pagetable_lookup(c->pt, vpn);

			if (test_bit(b->moved, i) && !test_bit(b->saved, i) && !test_bit(back, i) &&
			    pte && !(*pte & (PTE_DEAD | PTE_CANCEL))) {
				/* Set aside for a REMAP still to come (fault.c): no address yet. */
				if (vpn >= VPN_USER_END) {
					aside = true;
					continue;
				}
				set_bit(want, i);
				any = true;
			}
		}
		pthread_mutex_unlock(&c->lock);
		if (!any && aside) {
			usleep(1000); /* a fault thread reads the REMAP */
			continue;
		}
		if (!any || agent_move(c, b, want, true, got) < 0)
			return;
		for (unsigned w = 0; w < MEMEXT_STAGING_PAGES / 64; w++)
			back[w] |= got[w];
	}
}

/* The request that moves every page of b out. */
static void batch_all(const struct batch *b, uint64_t *all)
{
	memset(all, 0, MEMEXT_STAGING_PAGES / 8);
	for (unsigned i = 0; i < b->nr; i++)
		set_bit(all, i);
}

/* Drops the kept copies of b's clean pages; returns how many. */
static unsigned drop_kept_copies(struct store *s, const struct batch *b)
{
	unsigned n = 0;

	for (unsigned i = 0; i < b->nr; i++)
		if (test_bit(b->clean, i)) {
			store_drop(s, b->handle[i]);
			n++;
		}
	return n;
}

/*
 * The agent never answered (r): we cannot know what it moved, nor whether it is still moving.
 * The batch's pages stay MOVING: a fault on one finds it in staging or maps zeroes
 * (serve_from_staging), which is right whatever the agent still does.
 */
static int batch_failed(struct reclaimer *rc, struct client *c, struct batch *b, int r)
{
	if (r == -ESRCH || r == -ECONNRESET || r == -EPIPE)
		log_debug_errno(r, "client %d: agent gone: %m", c->pid);
	else
		log_warning_errno(r, "client %d: the agent did not answer, eviction stops for this "
				     "process: %m",
				  c->pid);
	pthread_mutex_lock(&c->lock);
	/* An agent still at it must move no more: events no longer mark these slots (a fault
	 * on one makes it PRESENT again, serve_from_staging). */
	for (unsigned i = 0; i < MEMEXT_STAGING_PAGES; i++)
		move_gate_cancel(c->gate, i);
	/* Faults on these pages are served from staging, never from their copies. */
	c->nr_cached -= drop_kept_copies(c->m->store, b);
	c->agent_gone = true;
	c->batch_in_flight = false;
	pthread_cond_broadcast(&c->batch_done);
	pthread_mutex_unlock(&c->lock);
	resolve_parked(rc, c);
	return r;
}

/* The agent moved b's pages out (b->moved): save them, land the batch. Returns the number of
 * pages evicted or culled to the unevictable list. */
static int batch_moved(struct reclaimer *rc, struct client *c, struct batch *b)
{
	uint64_t back[MEMEXT_STAGING_PAGES / 64] = {0};
	unsigned evicted = 0, culled;

	forget_written_copies(c, b);
	/* Clean pages need neither reading nor compressing: their copy is kept. */
	for (unsigned i = 0; i < b->nr; i++)
		if (test_bit(b->moved, i) && test_bit(b->clean, i))
			set_bit(b->saved, i);
	read_staging(c, b);
	for (unsigned i = 0; i < b->nr; i++) {
		int r;

		if (!test_bit(b->saved, i) || test_bit(b->clean, i))
			continue;
		r = store_save(c->m->store, b->data + (size_t)i * PAGE_SIZE, &b->handle[i]);
		if (r < 0) {
			b->saved[i / 64] &= ~(1ULL << (i % 64));
			log_warning_errno(r, "client %d: cannot store page: %m", c->pid);
		}
	}
	move_back_unsaved(c, b, back);

	pthread_mutex_lock(&c->lock);
	culled = complete_batch(c, b, back);
	c->batch_in_flight = false;
	pthread_cond_broadcast(&c->batch_done);
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < b->nr; i++)
		evicted += test_bit(b->moved, i) && test_bit(b->saved, i);
	if (!c->agent_gone)
		agent_free_staging(c, next_seq(c->m));
	resolve_parked(rc, c);
	/* Culled pages are progress too: the next batch takes others, so reclaim can help. */
	return (int)(evicted + culled);
}

/*
 * The process stopped (Ctrl-Z, a debugger, a frozen cgroup) before its agent answered the
 * request seq for rc's batch: the batch stays with the client, in flight, until it runs again
 * (batch_resume), and rc goes on with a new one. False when there is no memory for that: rc
 * then waits for the answer.
 */
static bool batch_stall(struct reclaimer *rc, struct client *c, uint32_t seq)
{
	struct batch *next = batch_new();

	if (!next)
		return false;
	rc->b->seq = seq;
	c->stalled_batch = rc->b;
	rc->b = next;
	atomic_fetch_add(&c->m->totals.reclaim_stalled, 1);
	log_info("client %d: stopped before its agent moved a batch out; the batch waits until it "
		 "runs again",
		 c->pid);
	return true;
}

/*
 * The answer to c's stalled batch, if its process runs again (wait: however long it stays
 * stopped). Returns the number of pages evicted or culled, 0 while it is still stopped, or
 * -errno when the agent is gone.
 */
static int batch_resume(struct reclaimer *rc, struct client *c, bool wait)
{
	struct batch *b = c->stalled_batch;
	uint64_t all[MEMEXT_STAGING_PAGES / 64];
	int r;

	if (!wait && agent_stopped(c))
		return 0;
	batch_all(b, all);
	r = agent_move_done(c, b, all, false, b->seq, !wait, b->moved);
	if (r == -EAGAIN)
		return 0;
	c->stalled_batch = NULL;
	if (c->agent_held) {
		/* Its process is still stopped: memextd let the agent run (agenthold.h). */
		atomic_fetch_add(&rc->m->totals.stalled_landed_stopped, 1);
		log_info("client %d: stopped; its stalled batch goes on with its agent held",
			 c->pid);
	} else {
		log_info("client %d: runs again; its stalled batch goes on", c->pid);
	}
	r = r < 0 ? batch_failed(rc, c, b, r) : batch_moved(rc, c, b);
	batch_free(b);
	return r;
}

/*
 * A batch of a client that ended while it was stopped: its kept copies are dropped with it
 * (the client's teardown frees the rest).
 */
void reclaim_client_gone(struct client *c)
{
	struct batch *b = c->stalled_batch;

	if (!b)
		return;
	drop_kept_copies(c->m->store, b);
	batch_free(b);
	c->stalled_batch = NULL;
}

/* Evicts one batch. Returns the number of pages evicted or culled to the unevictable list, or
 * -errno when the agent is gone. */
static int evict_batch(struct reclaimer *rc, struct client *c, unsigned want)
{
	struct batch *b = rc->b;
	uint64_t all[MEMEXT_STAGING_PAGES / 64];
	int64_t seq;
	int r;

	if (c->stalled_batch)
		return batch_resume(rc, c, false);
	if (!store_has_room_for(c->m->store, want)) {
		static _Atomic bool said;

		/* Slots held while a dead daemon's clients come back: a moment, no news. */
		if (!store_swap_held(c->m->store) && !atomic_exchange(&said, true))
			log_warning("store is at its limit: eviction stops until pages come back");
		return 0;
	}
	pthread_mutex_lock(&c->lock);
	if (c->agent_gone || c->evict_paused || c->dead) {
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	select_victims(c, b, want);
	c->batch_in_flight = b->nr > 0;
	c->nr_remaps = 0;
	/* No move is asked for until the request below: the marks of the last batch go. */
	move_gate_clear(c->gate);
	pthread_mutex_unlock(&c->lock);
	if (b->nr == 0)
		return 0;

	batch_all(b, all);
	memset(b->locked, 0, sizeof(b->locked));
	memset(b->unevictable, 0, sizeof(b->unevictable));
	memset(b->saved, 0, sizeof(b->saved));
	seq = agent_move_send(c, b, all, false);
	if (seq == 0) /* b->nr > 0: there was something to send */
		seq = -EINVAL;
	r = seq < 0 ? (int)seq : agent_move_done(c, b, all, false, (uint32_t)seq, true, b->moved);
	if (r == -EAGAIN) {
		if (batch_stall(rc, c, (uint32_t)seq))
			return 0;
		r = agent_move_done(c, b, all, false, (uint32_t)seq, false, b->moved);
	}
	return r < 0 ? batch_failed(rc, c, b, r) : batch_moved(rc, c, b);
}

/*
 * Batches every client gives per round while the system as a whole is short of memory: one
 * below the low watermark (50 rounds a second spread the work over the clients, as kswapd
 * spreads its scan over the LRUs), as many as a round allows below min.
 */
static int system_batches(const struct manager *m)
{
	switch ((enum sysmem_level)atomic_load(&m->sys_level)) {
	case SYSMEM_LOW:
		return 1;
	case SYSMEM_MIN:
		return MAX_BATCHES_PER_ROUND;
	default:
		return 0;
	}
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/*
 * Every unevictable-retry-sec, a client's unevictable pages go back on the inactive list: the
 * shim tells of munlock() and mprotect() through libc (MSG_EVICTABLE), this of the system
 * calls made without it. Pages still locked are culled again on their next try.
 */
static void retry_unevictable(struct reclaimer *rc, struct client *c)
{
	uint64_t every = (uint64_t)rc->m->cfg.unevictable_retry_sec * 1000000000;
	uint64_t now = monotonic_ns(), n = 0;

	pthread_mutex_lock(&c->lock);
	if (!c->lru.nr_unevictable) {
		c->unevictable_retry_ns = 0;
	} else if (!c->unevictable_retry_ns) {
		c->unevictable_retry_ns = now + every;
	} else if (now >= c->unevictable_retry_ns) {
		n = lru_rescue(&c->lru, c->pt, 0, UINT64_MAX / PAGE_SIZE);
		c->unevictable_retry_ns = 0;
	}
	pthread_mutex_unlock(&c->lock);
	if (n) {
		atomic_fetch_add(&rc->m->totals.unevictable_rescued, n);
		log_debug("client %d: %" PRIu64 " unevictable pages tried again", c->pid, n);
	}
}

#define HOLD_RETRY_NS (10 * 1000000000ULL)

/*
 * A process stopped by a signal moves nothing: its agent is stopped with it. When eviction is
 * wanted from it (wanted), or a batch waits for its agent, memextd lets that one thread run
 * for the round (agenthold.h). Returns whether it holds the agent now; agent_release() ends it.
 */
static bool agent_take(struct reclaimer *rc, struct client *c, bool wanted)
{
	uint64_t now;
	int r;

	if (!rc->m->cfg.evict_stopped || c->agent_tid <= 0 || !(wanted || c->stalled_batch) ||
	    !proc_signal_stopped(c->agent_tid))
		return false;
	now = monotonic_ns();
	if (now < c->hold_retry_ns)
		return false;
	r = agent_hold(c->agent_tid, c->pid);
	if (r < 0) {
		/* A debugger attached meanwhile, or ptrace is refused (seccomp, Yama). */
		c->hold_retry_ns = now + HOLD_RETRY_NS;
		log_info("client %d: stopped, and its agent cannot be let run to evict from it: %s",
			 c->pid, strerror(-r));
		return false;
	}
	c->agent_held = true;
	atomic_fetch_add(&rc->m->totals.stopped_holds, 1);
	return true;
}

static void agent_release(struct client *c)
{
	agent_unhold(c->agent_tid);
	c->agent_held = false;
}

static void reclaim_client(struct reclaimer *rc, struct client *c)
{
	unsigned batch = MIN(rc->m->cfg.batch_pages, (unsigned)MEMEXT_STAGING_PAGES);
	int sys = system_batches(rc->m);
	bool wanted, held;

	retry_unevictable(rc, c);
	/* Only where a batch can go out: a hold costs an attach, and keeps debuggers out. */
	pthread_mutex_lock(&c->lock);
	wanted = (sys > 0 || (c->budget_pages && client_over_low_wmark(c))) && c->nr_present &&
		 !c->agent_gone && !c->evict_paused && !c->dead;
	pthread_mutex_unlock(&c->lock);
	held = agent_take(rc, c, wanted && store_has_room_for(rc->m->store, batch));
	/* Its batch lands now, wanted or not. */
	if (held && c->stalled_batch)
		(void)batch_resume(rc, c, false);

	for (int i = 0; i < MAX_BATCHES_PER_ROUND; i++) {
		uint64_t high, present, want;
		bool own;
		int n;

		pthread_mutex_lock(&c->lock);
		present = c->nr_present;
		high = client_wmark_pages(c, rc->m->cfg.client_wmark_high_pct);
		own = c->budget_pages && (i > 0 ? present > high : client_over_low_wmark(c));
		pthread_mutex_unlock(&c->lock);
		/* Over its budget, down to its high watermark; else only for the system. */
		if (own)
			want = MIN((uint64_t)batch, present - high + 1);
		else if (i < sys && present > 0)
			want = batch;
		else
			break;
		n = evict_batch(rc, c, (unsigned)want);
		pthread_mutex_lock(&c->lock);
		c->fruitless_batches = n > 0 ? 0 : c->fruitless_batches + 1;
		pthread_mutex_unlock(&c->lock);
		if (n <= 0)
			break;
		/* A process waits in fork() for serve_forks(): it does not wait for the rest of
		 * this one's batches (up to 64), which the next round evicts. */
		if (forklook_needed(&rc->forks, atomic_load(&rc->m->fork_seq)))
			break;
	}
	if (held)
		agent_release(c);
	/* Faults parked for throttling while reclaim could not help: answer them. */
	resolve_parked(rc, c);
}

struct collect_ctx {
	uint64_t *vpn; /* STORED entries */
	size_t nr, cap;
	uint64_t loading; /* LOADING entries: an I/O worker is reading them from a swap file */
};

static int collect_stored(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct collect_ctx *cc = userdata;

	if (pte_type(*pte) == PTE_LOADING)
		cc->loading++;
	if (pte_type(*pte) != PTE_STORED)
		return 0;
	if (cc->nr == cc->cap) {
		size_t cap = cc->cap ? cc->cap * 2 : 1024;
		uint64_t *v = realloc(cc->vpn, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		cc->vpn = v;
		cc->cap = cap;
	}
	cc->vpn[cc->nr++] = vpn;
	return 0;
}

/* Whether c's process has exited (its pidfd is readable), whether or not the main thread has
 * seen it yet: it does not while the daemon stops. */
static bool process_exited(const struct client *c)
{
	struct pollfd p = {.fd = c->pidfd, .events = POLLIN};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/*
 * Brings every stored page of c in [from, to) (page numbers) back (swapoff's try_to_unuse).
 * Eviction must be paused, or c claimed. Pages an I/O worker is reading from a swap file are
 * LOADING: wait for them (at most 10 s). *ret_pages, if not NULL, counts the pages brought back.
 */
static int drain_range(struct reclaimer *rc, struct client *c, uint64_t from, uint64_t to,
		       uint64_t *ret_pages)
{
	for (int round = 0;; round++) {
		struct collect_ctx cc = {0};
		int r;

		/* Its pages cannot go back into a process that is gone (UFFDIO_COPY fails, and
		 * they stay stored): no more rounds for nothing. */
		if (process_exited(c))
			return -ESRCH;
		pthread_mutex_lock(&c->lock);
		r = pagetable_walk(c->pt, from, to, collect_stored, &cc);
		pthread_mutex_unlock(&c->lock);
		if (r == 0 && !cc.nr && !cc.loading)
			return 0;
		for (size_t i = 0; r == 0 && i < cc.nr; i++) {
			r = fault_swapin_vpn(c, cc.vpn[i], rc->page_buf);
			if (r == 0 && ret_pages)
				(*ret_pages)++;
		}
		free(cc.vpn);
		/* -EBUSY: the agent holds its move gate (stopped?): another round. */
		if (r < 0 && r != -EBUSY)
			return r;
		if (round == 10000)
			return -EAGAIN;
		usleep(1000);
	}
}

static int drain_client(struct reclaimer *rc, struct client *c)
{
	(void)fault_settle_asides(c, rc->page_buf);
	return drain_range(rc, c, 0, VPN_USER_END, NULL);
}

/*
 * What the child runs before its atfork handler can have its memory registered: glibc's fork
 * walks every thread's descriptor (struct pthread, with the static TLS at the top of each
 * thread's stack mapping) and resets locks in libc's data. An evicted page touched then would
 * read as zeroes in the child, so these come back first: the top pages of every eligible
 * mapping (thread stacks) and small mappings whole (libc's anonymous .bss and the like).
 * Mappings, not the registered ranges: a thread's stack often adjoins other memory, and the
 * ranges merge.
 */
#define FORK_TOUCHED_TOP_PAGES 4
#define FORK_TOUCHED_SMALL_PAGES 16

struct touched_ctx {
	struct mem_range *r;
	size_t nr, cap;
};

static int collect_touched(const struct maps_entry *e, void *userdata)
{
	struct touched_ctx *t = userdata;
	uint64_t lo = e->start;

	if ((e->end - e->start) / PAGE_SIZE > FORK_TOUCHED_SMALL_PAGES)
		lo = e->end - FORK_TOUCHED_TOP_PAGES * PAGE_SIZE;
	if (t->nr == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct mem_range *v = realloc(t->r, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		t->r = v;
		t->cap = cap;
	}
	t->r[t->nr++] = (struct mem_range){lo, e->end};
	return 0;
}

static int fork_bring_back_touched(struct reclaimer *rc, struct client *c)
{
	struct touched_ctx t = {0};
	int r = maps_for_each_eligible(c->pid, collect_touched, &t);

	for (size_t i = 0; i < t.nr && r == 0; i++)
		for (uint64_t vpn = t.r[i].start / PAGE_SIZE; vpn < t.r[i].end / PAGE_SIZE && r == 0;
		     vpn++)
			r = fault_swapin_vpn(c, vpn, rc->page_buf);
	free(t.r);
	return r;
}

/*
 * FORK_PREPARE: eviction is paused and, this being the thread that runs batches, none of c's is
 * in flight. The child shares the evicted pages (forkshare.h); only when they cannot be
 * shared (an orphaned batch, out of memory) does every page come back first, as before.
 */
static void prepare_fork(struct reclaimer *rc, struct client *c)
{
	struct msg_fork ready = {0};
	int pfd = pmem_fd(), r;

	/* It forks, so it runs: its agent answers (unless a debugger holds that one thread). */
	if (c->stalled_batch)
		(void)batch_resume(rc, c, true);

	pthread_mutex_lock(&c->lock);
	uint32_t token = c->fork_token;
	bool drain = c->fork_drain;
	pthread_mutex_unlock(&c->lock);
	/* The snapshot would miss pages set aside for a REMAP still to come (a drain too:
	 * settled, not drained, if that does not come). */
	(void)fault_settle_asides(c, rc->page_buf);
	r = drain ? -EMFILE : fork_bring_back_touched(rc, c);
	if (r == 0)
		r = fork_share_take(c, token);
	if (r >= 0) {
		atomic_fetch_add(&c->m->totals.forks_shared, 1);
		atomic_fetch_add(&c->m->totals.fork_pages_shared, (uint64_t)r);
	} else {
		if (drain)
			log_info("client %d: bringing every page back before a fork that shares "
				 "none (clone() without CLONE_VM, or a full fd table)",
				 c->pid);
		else
			log_warning_errno(r, "client %d: cannot share evicted pages with the fork "
					     "child, bringing them back: %m",
					  c->pid);
		atomic_fetch_add(&c->m->totals.forks_drained, 1);
		r = drain_client(rc, c);
		if (r < 0)
			log_warning_errno(r, "client %d: not every page came back before fork: %m",
					  c->pid);
	}
	proto_init_header(&ready.h, MSG_FORK_READY, sizeof(ready), token);
	ready.status = r;
	pthread_mutex_lock(&c->lock);
	c->fork_requested = false;
	pthread_mutex_unlock(&c->lock);
	/* With shared pages, our pmem: the child sends it with its hello, so that a successor
	 * finds the snapshot should we die first (forkshare.h). */
	(void)proto_send(c->control_fd, &ready, sizeof(ready), &pfd, r > 0 && pfd >= 0 ? 1 : 0);
	if (r > 0)
		crash_point(c->m, "fork-ready");
}

/* memextctl drain: every page back; the client stays managed but is never evicted again. */
static void drain_on_request(struct reclaimer *rc, struct client *c)
{
	int r;

	/* A batch still held by a stopped process lands first: the next round tries again. */
	if (c->stalled_batch && (batch_resume(rc, c, false), c->stalled_batch))
		return;
	/* Nothing is evicted from it any more: faults parked for throttling go on. */
	resolve_parked(rc, c);
	pthread_mutex_lock(&c->lock);
	bool pending = c->nr_stored > 0;
	pthread_mutex_unlock(&c->lock);
	if (!pending)
		return;
	r = drain_client(rc, c);
	if (r < 0 && r != -ESRCH)
		log_warning_errno(r, "client %d: drain incomplete, retrying: %m", c->pid);
	else if (r == 0)
		log_info("client %d: drained, every page is back", c->pid);
}

struct evicted_count {
	uint64_t evicted; /* STORED and LOADING entries */
	uint64_t moving;  /* MOVING: a batch's, with no batch in flight an orphaned one's */
};

static int count_evicted(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct evicted_count *n = userdata;

	(void)vpn;
	if (pte_type(*pte) == PTE_STORED || pte_type(*pte) == PTE_LOADING)
		n->evicted++;
	else if (pte_type(*pte) == PTE_MOVING)
		n->moving++;
	return 0;
}

/*
 * Drops the parked faults in [start, end). Unregistering woke their threads if the range was
 * ours; if it was not, a thread may wait on a mapping made since (early_register): woken too.
 * Lock held.
 */
static void unpark_range(struct client *c, uint64_t start, uint64_t end)
{
	unsigned n = 0;

	for (unsigned i = 0; i < c->nr_parked; i++) {
		uint64_t addr = c->parked[i].msg.arg.pagefault.address;
		struct uffdio_range page = {PAGE_ALIGN_DOWN(addr), PAGE_SIZE};

		if (addr < start || addr >= end)
			c->parked[n++] = c->parked[i];
		else
			(void)ioctl(c->uffd, UFFDIO_WAKE, &page);
	}
	c->nr_parked = n;
}

/* Whether the uffd holds messages nobody has read (resolve lock exclusive: nobody reads). */
static bool uffd_unread(const struct client *c)
{
	struct pollfd p = {.fd = c->uffd, .events = POLLIN};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Room for one more handed-back range, made before the range is unregistered. */
static int reserve_handed_back(struct client *c)
{
	int r;

	pthread_mutex_lock(&c->lock);
	r = ARRAY_RESERVE_ONE(c->handed_back, c->nr_handed_back, c->cap_handed_back, 4);
	pthread_mutex_unlock(&c->lock);
	return r;
}

/*
 * Unregisters [start, end) once no page of it is evicted (resolve lock exclusive, so no fault
 * is being answered and no event applied meanwhile), forgets its entries, and records it as
 * handed back. Returns 0, -EAGAIN (pages evicted or loading, or events not applied yet: again
 * after the drain) or -errno (-EBUSY: another userfaultfd of the process holds part of it, or
 * an orphaned batch holds pages of it in staging).
 */
static int unregister_for_hand_back(struct reclaimer *rc, struct client *c, uint64_t start,
				    uint64_t end)
{
	struct uffdio_range range = {.start = start, .len = end - start};
	struct evicted_count n = {0};
	int r;

	client_resolve_wrlock(c);
	/* An event not applied yet (an mremap of evicted pages into the range) would bring
	 * entries in after the count: apply it, and answer the faults read with it, first. */
	if (uffd_unread(c)) {
		pthread_rwlock_unlock(&c->resolve_lock);
		(void)fault_read_pending(c, rc->page_buf);
		return -EAGAIN;
	}
	pthread_mutex_lock(&c->lock);
	(void)pagetable_walk(c->pt, start / PAGE_SIZE, end / PAGE_SIZE, count_evicted, &n);
	pthread_mutex_unlock(&c->lock);
	if (n.evicted || n.moving) {
		pthread_rwlock_unlock(&c->resolve_lock);
		return n.moving ? -EBUSY : -EAGAIN;
	}
	/*
	 * Registering the whole range with our uffd first says, on any kernel, that no other
	 * userfaultfd holds any of it (EBUSY otherwise; the application's registration would
	 * fail the same way): before Linux 6.17 UFFDIO_UNREGISTER took another userfaultfd's
	 * mapping as well. It also takes in mappings the shim registered before any scan saw
	 * them (early_register), and holes are skipped.
	 */
	r = reserve_handed_back(c);
	if (r == 0)
		r = client_uffd_register(c, start, end);
	if (r < 0) {
		pthread_rwlock_unlock(&c->resolve_lock);
		return r;
	}
	/*
	 * The entries go first (their table is in pmem): a memextd killed before the unregister
	 * leaves its successor a range it still has registered and no entries there, which its
	 * scan finds again; the other way round, the successor would hold entries of memory the
	 * application has registered since, and could evict from it. An unregister that fails
	 * halfway leaves such a range too, untracked until the next scan.
	 */
	fault_forget_range(c, start, end);
	if (ioctl(c->uffd, UFFDIO_UNREGISTER, &range) < 0) {
		r = -errno;
		log_error_errno(r, "client %d: %#" PRIx64 "-%#" PRIx64 " registered but not "
				   "unregistered: %m",
				c->pid, start, end);
	}
	if (r == 0) {
		pthread_mutex_lock(&c->lock);
		unpark_range(c, start, end);
		c->handed_back[c->nr_handed_back++] =
			(struct handed_back){{start, end}, ++c->hand_back_epoch, now_usec()};
		pthread_mutex_unlock(&c->lock);
	}
	pthread_rwlock_unlock(&c->resolve_lock);
	return r;
}

/*
 * MSG_HAND_BACK: the application registers [start, end) with a userfaultfd of its own, which
 * the kernel refuses while ours holds it. Its evicted pages come back and the range is
 * unregistered; c is claimed, so none of its pages leaves meanwhile. Returns 0 or -errno.
 */
static int hand_back_range(struct reclaimer *rc, struct client *c, uint64_t start, uint64_t end)
{
	uint64_t pages = 0;
	int r, tries = 0;

	/* A thread of the process waits for the answer, but its agent may be stopped (a
	 * Ctrl-Z since): never wait for it here. */
	if (c->stalled_batch)
		(void)batch_resume(rc, c, false);
	if (c->stalled_batch)
		return -EBUSY;
	/* Events read, or a page an I/O worker was loading, between the two: again. */
	do {
		r = drain_range(rc, c, start / PAGE_SIZE, end / PAGE_SIZE, &pages);
		if (r == 0)
			r = unregister_for_hand_back(rc, c, start, end);
	} while (r == -EAGAIN && ++tries < 1000);
	atomic_fetch_add(&rc->m->totals.hand_back_pages, pages);
	if (r == 0) {
		atomic_fetch_add(&rc->m->totals.hand_backs, 1);
		log_info("client %d: %#" PRIx64 "-%#" PRIx64 " handed to its own userfaultfd, "
			 "%" PRIu64 " evicted pages brought back",
			 c->pid, start, end, pages);
	} else {
		log_warning_errno(r, "client %d: cannot hand %#" PRIx64 "-%#" PRIx64 " to its own "
				     "userfaultfd: %m",
				  c->pid, start, end);
	}
	return r;
}

static void serve_hand_backs(struct reclaimer *rc, struct client *c)
{
	for (;;) {
		struct hand_back_req req;
		int r;

		pthread_mutex_lock(&c->lock);
		if (!c->nr_hand_back_reqs) {
			pthread_mutex_unlock(&c->lock);
			return;
		}
		req = c->hand_back_reqs[0];
		pthread_mutex_unlock(&c->lock);
		r = hand_back_range(rc, c, req.range.start, req.range.end);
		/* Off the queue only now: until then no scan registers the range again. */
		pthread_mutex_lock(&c->lock);
		memmove(c->hand_back_reqs, c->hand_back_reqs + 1,
			--c->nr_hand_back_reqs * sizeof(*c->hand_back_reqs));
		pthread_mutex_unlock(&c->lock);
		client_answer_hand_back(c, req.seq, r);
	}
}

/* Gives a client all its pages back and unregisters its memory, so it runs on without us. */
static void release_client(struct reclaimer *rc, struct client *c)
{
	int r;

	pthread_mutex_lock(&c->lock);
	c->evict_paused = true;
	pthread_mutex_unlock(&c->lock);
	/* A stopped process still holding a batch keeps it all for the next memextd, as if we
	 * had crashed: its agent may move those pages any time it runs again. */
	if (c->stalled_batch)
		(void)batch_resume(rc, c, false);
	r = c->stalled_batch ? -EAGAIN : drain_client(rc, c);
	if (r == -ESRCH)
		log_info("client %d: exited while memextd stopped; its pages go with it", c->pid);
	if (r < 0 && r != -ESRCH) {
		/* Its pages stay in pmem for the next memextd, which it waits for (adopt.h). */
		if (c->stalled_batch)
			log_warning("client %d: stopped in the middle of an eviction: keeping its "
				    "pages for the next memextd, which it connects to when it runs "
				    "again",
				    c->pid);
		else
			log_error_errno(r, "client %d: pages could not all be given back, keeping "
					   "them for the next memextd: %m",
					c->pid);
		pthread_mutex_lock(&c->lock);
		c->release_failed = true;
		pthread_mutex_unlock(&c->lock);
		return;
	}
	pthread_rwlock_wrlock(&c->resolve_lock);
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < c->registered.nr; i++) {
		struct uffdio_range range = {
			.start = c->registered.r[i].start,
			.len = c->registered.r[i].end - c->registered.r[i].start,
		};
		(void)ioctl(c->uffd, UFFDIO_UNREGISTER, &range);
	}
	rangeset_done(&c->registered);
	pthread_mutex_unlock(&c->lock);
	pthread_rwlock_unlock(&c->resolve_lock);
	/* Tells the shim not to wait for a next daemon: there is nothing left to adopt. */
	{
		struct msg_agent_release rel;

		proto_init_header(&rel.h, MSG_AGENT_RELEASE, sizeof(rel), next_seq(rc->m));
		(void)proto_send(c->agent_fd, &rel, sizeof(rel), NULL, 0);
	}
}

/*
 * MSG_LEAVE: the process confines itself with a seccomp filter next, which may forbid what its
 * agent does. It gets every page back and nothing of it stays registered (release_client), and
 * the client is left alone until it exits. The process waits for the answer.
 */
static void leave_on_request(struct reclaimer *rc, struct client *c)
{
	bool failed;

	if (atomic_load(&c->left))
		return;
	release_client(rc, c);
	pthread_mutex_lock(&c->lock);
	failed = c->release_failed;
	pthread_mutex_unlock(&c->lock);
	c->leave_status = failed ? -EIO : 0;
	atomic_store(&c->left, true);
	atomic_fetch_add(&rc->m->totals.clients_left, 1);
	/* Eviction is over for it: faults parked for throttling go on. */
	resolve_parked(rc, c);
	if (failed)
		log_warning("client %d (%s): leaves memext (a seccomp filter or a user namespace "
			    "comes) with some pages not given back: memextd goes on serving its "
			    "faults",
			    c->pid, c->comm);
	else
		log_info("client %d (%s): left memext with every page: a seccomp filter or a user "
			 "namespace comes",
			 c->pid, c->comm);
	client_answer_leave(c, c->leave_seq, failed ? -EIO : 0);
}

/*
 * A forking process waits, its eviction paused: it goes before anyone else, also when its
 * FORK_PREPARE arrives in the middle of a round, so every thread looks for one before each
 * client it takes. v[0..n): the round's clients, snapshot after reading fork_seq = snap.
 */
/* Whether c's FORK_PREPARE waits for an answer. */
static bool fork_waits(struct client *c)
{
	bool waits;

	pthread_mutex_lock(&c->lock);
	waits = c->fork_requested && !c->dead;
	pthread_mutex_unlock(&c->lock);
	return waits;
}

static void serve_forks(struct reclaimer *rc, struct client **v, unsigned n, uint64_t snap)
{
	uint64_t seq = atomic_load(&rc->m->fork_seq);
	bool missed = false;

	if (!forklook_needed(&rc->forks, seq))
		return;
	for (unsigned i = 0; i < n; i++) {
		if (!fork_waits(v[i]))
			continue;
		if (!claim(v[i])) {
			missed = true;
			continue;
		}
		/* Another thread may have served it between the look and the claim: a second
		 * snapshot under the same token could be the one the child adopts. */
		if (fork_waits(v[i]))
			prepare_fork(rc, v[i]);
		unclaim(v[i]);
	}
	forklook_done(&rc->forks, seq, snap, missed);
}

static struct client **snapshot_clients(struct manager *m, unsigned *ret_nr)
{
	struct client **v;
	unsigned n = 0;

	pthread_mutex_lock(&m->clients_lock);
	v = calloc(m->nr_clients + 1, sizeof(*v));
	if (v)
		for (struct client *c = m->clients; c; c = c->next)
			v[n++] = client_ref(c);
	pthread_mutex_unlock(&m->clients_lock);
	*ret_nr = n;
	return v;
}

/* Reads the system's memory and sets m->sys_level, saying so when it changes. */
static void update_system_level(struct manager *m)
{
	const struct sysmem_wmarks w = {
		.min_pct = m->cfg.wmark_min_pct,
		.low_pct = m->cfg.wmark_low_pct,
		.high_pct = m->cfg.wmark_high_pct,
		.psi_pct = m->cfg.pressure_avg10_pct,
	};
	enum sysmem_level prev = (enum sysmem_level)atomic_load(&m->sys_level), now;
	static bool said_unreadable;
	struct sysmem s;
	char a[32], b[32];
	int r;

	r = sysmem_read(m->cfg.meminfo_path, m->cfg.psi_path, &s);
	if (r < 0) {
		if (!said_unreadable)
			log_warning_errno(r, "cannot read %s: the system's watermarks are not "
					     "watched: %m",
					  m->cfg.meminfo_path);
		said_unreadable = true;
		atomic_store(&m->sys_level, SYSMEM_OK);
		return;
	}
	now = sysmem_level(&s, &w, prev);
	atomic_store(&m->sys_total_bytes, s.total_bytes);
	atomic_store(&m->sys_available_bytes, s.available_bytes);
	atomic_store(&m->sys_level, now);
	if (now != SYSMEM_OK)
		atomic_fetch_add(&m->totals.sys_reclaim_rounds, 1);
	if (now == prev)
		return;
	format_size(s.available_bytes, a, sizeof(a));
	format_size(s.total_bytes, b, sizeof(b));
	if (now == SYSMEM_OK)
		log_info("system memory: %s of %s available, above the high watermark again", a, b);
	else
		log_notice("system memory: %s of %s available (memory pressure %.1f%%), below the "
			   "%s watermark: reclaiming from every client%s",
			   a, b, s.psi_some_avg10 < 0 ? 0.0 : s.psi_some_avg10,
			   now == SYSMEM_MIN ? "min" : "low",
			   now == SYSMEM_MIN ? ", their growth throttled" : "");
}

/*
 * Waits for a kick or 20 ms, without clients a second (an idle daemon sleeps); the first
 * thread also for a drain. The first client's hello wakes every thread after it counted
 * itself, under reclaim_lock: one that found no client here is waiting by then.
 */
static void wait_for_work(struct reclaimer *rc)
{
	struct manager *m = rc->m;

	pthread_mutex_lock(&m->reclaim_lock);
	if (!m->reclaim_kick && !atomic_load(&m->stopping) &&
	    !(rc->id == 0 && atomic_load(&m->draining))) {
		long wait_ns = atomic_load(&m->nr_clients) ? 20 * 1000000 : 1000000000 - 1;
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += wait_ns;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&m->reclaim_cond, &m->reclaim_lock, &ts);
	}
	m->reclaim_kick = false;
	pthread_mutex_unlock(&m->reclaim_lock);
}

/* The daemon stops: every client gets its pages back (the first thread only). A client
 * another thread holds is waited for: that thread takes no new one while draining. */
static void release_all(struct reclaimer *rc, struct client **v, unsigned n)
{
	struct manager *m = rc->m;

	for (unsigned i = 0; i < n; i++) {
		while (!claim(v[i]))
			usleep(1000);
		if (!v[i]->dead && !atomic_load(&v[i]->left))
			release_client(rc, v[i]);
		unclaim(v[i]);
	}
	/* main waits for this: every client has its pages back. */
	pthread_mutex_lock(&m->reclaim_lock);
	atomic_store(&m->draining, false);
	pthread_cond_broadcast(&m->reclaim_cond);
	pthread_mutex_unlock(&m->reclaim_lock);
}

/* One round over the clients, each thread starting at its own place among them. snap: fork_seq
 * before the snapshot v was taken. */
static void reclaim_round(struct reclaimer *rc, struct client **v, unsigned n, uint64_t snap)
{
	unsigned nr_threads = MAX(rc->m->cfg.nr_reclaim_threads, 1u);
	unsigned first = n ? (unsigned)((uint64_t)rc->id * n / nr_threads) : 0;

	for (unsigned k = 0; k < n; k++) {
		struct client *c = v[(first + k) % n];

		if (atomic_load(&rc->m->draining))
			break;
		serve_forks(rc, v, n, snap);
		if (c->dead || !claim(c))
			continue;
		serve_hand_backs(rc, c);
		if (c->leave_requested)
			leave_on_request(rc, c);
		else if (c->drain_requested)
			drain_on_request(rc, c);
		else
			reclaim_client(rc, c);
		unclaim(c);
	}
}

/* --test-reclaim-pause-ms: a pause after the snapshot, cut short by a stop. */
static void test_pause(struct manager *m)
{
	const struct timespec slice = {0, 10 * 1000 * 1000};

	for (unsigned ms = 0; ms < m->cfg.test_reclaim_pause_ms && !atomic_load(&m->stopping);
	     ms += 10)
		(void)nanosleep(&slice, NULL);
}

static void *reclaim_main(void *arg)
{
	struct reclaimer *rc = arg;
	struct manager *m = rc->m;
	char name[16];

	snprintf(name, sizeof(name), rc->id ? "reclaim/%u" : "reclaim", rc->id);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		struct client **v;
		uint64_t snap;
		unsigned n;
		bool draining;

		wait_for_work(rc);
		if (atomic_load(&m->stopping))
			break;
		draining = atomic_load(&m->draining);
		if (draining && rc->id != 0)
			continue; /* the first thread gives the pages back */
		if (rc->id == 0 && !draining)
			update_system_level(m);
		snap = atomic_load(&m->fork_seq);
		v = snapshot_clients(m, &n);
		forklook_round(&rc->forks);
		if (draining) {
			release_all(rc, v, v ? n : 0);
		} else if (v) {
			test_pause(m);
			reclaim_round(rc, v, n, snap);
		}
		for (unsigned i = 0; v && i < n; i++)
			client_unref(v[i]);
		free(v);
	}
	return NULL;
}

static struct reclaimer **reclaimers;
static unsigned nr_reclaimers;

static void reclaimer_free(struct reclaimer *rc)
{
	batch_free(rc->b);
	free(rc->page_buf);
	free(rc);
}

int reclaim_start(struct manager *m)
{
	unsigned n = MAX(m->cfg.nr_reclaim_threads, 1u);

	reclaimers = calloc(n, sizeof(*reclaimers));
	if (!reclaimers)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct reclaimer *rc = calloc(1, sizeof(*rc));
		int r = -ENOMEM;

		if (rc) {
			rc->m = m;
			rc->id = i;
			rc->b = batch_new();
			rc->page_buf = aligned_alloc(PAGE_SIZE, FAULT_BUF_PAGES * PAGE_SIZE);
			if (rc->b && rc->page_buf)
				r = -pthread_create(&rc->thread, NULL, reclaim_main, rc);
		}
		if (r < 0) {
			if (rc)
				reclaimer_free(rc);
			reclaim_stop(m);
			return r;
		}
		reclaimers[nr_reclaimers++] = rc;
	}
	return 0;
}

void reclaim_stop(struct manager *m)
{
	pthread_mutex_lock(&m->reclaim_lock);
	atomic_store(&m->stopping, true);
	pthread_cond_broadcast(&m->reclaim_cond);
	pthread_mutex_unlock(&m->reclaim_lock);
	for (unsigned i = 0; i < nr_reclaimers; i++) {
		pthread_join(reclaimers[i]->thread, NULL);
		reclaimer_free(reclaimers[i]);
	}
	free(reclaimers);
	reclaimers = NULL;
	nr_reclaimers = 0;
}
