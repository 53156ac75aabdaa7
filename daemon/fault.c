/* SPDX-License-Identifier: MIT */
#include "fault.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "adopt.h"
#include "client.h"
#include "log.h"
#include "manager.h"
#include "procfs.h"
#include "readahead.h"
#include "store.h"
#include "sysmem.h"
#include "uffd-compat.h"

#define READ_BATCH 32      /* uffd messages per read() */
#define RA_MAX_PAGES FAULT_RA_MAX_PAGES
#define EVENT_YIELD_TURNS 16 /* before wait_for_event() sleeps */

struct fault_thread {
	struct manager *m;
	pthread_t thread;
	unsigned cpu;
	int epfd;
	int kick_fd;
	_Atomic uint64_t epoch; /* advanced between two epoll_wait()s: see remove_client */
	void *page_buf;
};

/*
 * Faults read but not answered yet. It grows with what the uffd holds: a reader that stopped
 * because it was full could not reach an event queued behind the faults, and while an event
 * is unread every answer fails with EAGAIN.
 */
struct pending {
	struct fault_req *req;
	unsigned nr, cap;
};

/* Room for n more. False only when out of memory. */
static bool pending_reserve(struct pending *p, unsigned n)
{
	unsigned cap = p->cap ? p->cap : READ_BATCH * 4;
	struct fault_req *v;

	if (p->nr + n <= p->cap)
		return true;
	while (cap < p->nr + n)
		cap *= 2;
	v = realloc(p->req, cap * sizeof(*v));
	if (!v)
		return false;
	p->req = v;
	p->cap = cap;
	return true;
}

static void pending_free(struct pending *p)
{
	free(p->req);
	*p = (struct pending){0};
}

static int uffd_zeropage(int uffd, uint64_t start, uint64_t len, uint64_t *ret_done)
{
	struct uffdio_zeropage z = {.range = {.start = start, .len = len}};
	int r = ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;

	*ret_done = z.zeropage > 0 ? (uint64_t)z.zeropage : 0;
	return r;
}

static int uffd_copy_mode(int uffd, uint64_t dst, const void *src, uint64_t mode)
{
	struct uffdio_copy cp = {
		.dst = dst, .src = (uint64_t)(uintptr_t)src, .len = PAGE_SIZE, .mode = mode,
	};

	return ioctl(uffd, UFFDIO_COPY, &cp) < 0 ? -errno : 0;
}

static int uffd_copy(int uffd, uint64_t dst, const void *src)
{
	return uffd_copy_mode(uffd, dst, src, 0);
}

/* Lifts write protection from one page, which wakes the thread waiting on it. */
static int uffd_unprotect(int uffd, uint64_t start)
{
	struct uffdio_writeprotect wp = {.range = {.start = start, .len = PAGE_SIZE}, .mode = 0};

	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? -errno : 0;
}

static void uffd_wake(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_range range = {.start = start, .len = len};

	(void)ioctl(uffd, UFFDIO_WAKE, &range);
}

static int uffd_poison(int uffd, uint64_t start)
{
	struct uffdio_poison p = {.range = {.start = start, .len = PAGE_SIZE}};

	return ioctl(uffd, UFFDIO_POISON, &p) < 0 ? -errno : 0;
}

/* Whether the shim's agent raised this fault (it must never wait for reclaim, and should not
 * fault at all: see agent_faults). The kernel gives the thread's number in its own namespace. */
static bool fault_by_agent(const struct client *c, const struct uffd_msg *msg)
{
	return (pid_t)msg->arg.pagefault.feat.ptid == c->agent_tid_local;
}

/* c's last mremaps: in its pmem record, which a successor after a crash reads, if it has one. */
static struct remap_ring *ring_of(struct client *c)
{
	return c->record ? &c->record->ring : &c->own_ring;
}

/* Events: the application dropped, unmapped or moved memory. Resolve lock held exclusively. */

static int remove_one(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct client *c = userdata;

	(void)vpn;
	/* Entries stop naming a handle before it is freed: a successor adopting this table
	 * after a crash never follows a freed handle (pmem.h). */
	pte_t old = *pte;

	switch (pte_type(old)) {
	case PTE_PRESENT:
		*pte = 0;
		if (old & PTE_CLEAN) {
			store_drop(c->m->store, pte_payload(old));
			c->nr_cached--;
		}
		lru_del(&c->lru, old);
		c->nr_present--;
		break;
	case PTE_STORED:
		*pte = 0;
		store_drop(c->m->store, pte_payload(old));
		c->nr_stored--;
		break;
	case PTE_MOVING:
		/* The batch discards what it moved; the application expects zeroes now. The
		 * agent must not move it from here on: the address may hold new memory soon
		 * (shared/movegate.h). */
		*pte |= PTE_DEAD;
		move_gate_cancel(c->gate, (unsigned)pte_payload(old));
		break;
	case PTE_LOADING:
		/* An I/O worker is reading it from a swap file (a fault thread's LOADING never
		 * meets an event): it frees the copy instead of installing it. */
		*pte |= PTE_DEAD;
		break;
	default:
		break;
	}
	return 0;
}

/* Lock held. */
static void remove_range(struct client *c, uint64_t start, uint64_t end, bool unmap)
{
	pagetable_walk(c->pt, start / PAGE_SIZE, PAGE_ALIGN_UP(end) / PAGE_SIZE, remove_one, c);
	if (unmap)
		rangeset_remove(&c->registered, start, PAGE_ALIGN_UP(end));
}

static void handle_remove(struct client *c, uint64_t start, uint64_t end, bool unmap)
{
	pthread_mutex_lock(&c->lock);
	remove_range(c, start, end, unmap);
	pthread_mutex_unlock(&c->lock);
}

void fault_forget_range(struct client *c, uint64_t start, uint64_t end)
{
	handle_remove(c, start, end, true);
}

/*
 * Whether req was read before its address was handed to the application's own userfaultfd
 * (reclaim.c, hand_back_range). Such a fault is not answered: unregistering woke its thread,
 * which faults again to the application's handler, and the kernel would let an answer from us
 * map a page there behind that handler's back. A fault read later is ours to answer: the shim
 * registered new memory there (early_register). Resolve lock held.
 */
static bool handed_back(const struct client *c, const struct fault_req *req)
{
	uint64_t addr = req->msg.arg.pagefault.address;

	for (unsigned i = 0; i < c->nr_handed_back; i++)
		if (req->hand_back_epoch < c->handed_back[i].epoch &&
		    addr >= c->handed_back[i].range.start && addr < c->handed_back[i].range.end)
			return true;
	return false;
}

static int visit_nothing(uint64_t vpn, pte_t *pte, void *userdata)
{
	(void)vpn, (void)pte, (void)userdata;
	return 0;
}

/*
 * An mremap's progress, in its event in the client's pmem journal (the kernel leaves
 * reserved3 zero): twice the pages done, plus one while the next page's entry is being taken
 * (its destination may hold it already, its source too or not). One word, so that a crash
 * leaves one state whatever instruction it stops at.
 */
static void remap_progress(struct uffd_msg *msg, uint64_t done, bool taking)
{
	__atomic_store_n(&msg->reserved3, (uint32_t)(done * 2 + taking), __ATOMIC_RELEASE);
	/* Before the stores to the table that follow. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static int stop_at_entry(uint64_t vpn, pte_t *pte, void *userdata)
{
	(void)vpn, (void)pte, (void)userdata;
	return 1;
}

/* Where slot's entries are set aside (struct remap_aside): a span of fake addresses. */
#define ASIDE_SPAN_PAGES (UINT64_C(1) << 36)
static_assert(CLIENT_MAX_ASIDES * ASIDE_SPAN_PAGES <= VPN_USER_END, "room for the asides");

static uint64_t aside_addr(unsigned slot)
{
	return (VPN_USER_END + slot * ASIDE_SPAN_PAGES) * PAGE_SIZE;
}

/*
 * Never wait for a batch in flight when entries move (lock held): this thread holds the
 * resolve lock and the move gate, which the agent needs to go on. The batch finds its moved
 * pages through the remap log instead.
 */
static void log_moved(struct client *c, uint64_t from, uint64_t to, uint64_t nr)
{
	if (!c->batch_in_flight || nr == 0)
		return;
	if (c->nr_remaps == c->cap_remaps) {
		unsigned cap = c->cap_remaps ? c->cap_remaps * 2 : 8;
		struct mem_remap *v = realloc(c->remaps, cap * sizeof(*v));

		if (v) {
			c->remaps = v;
			c->cap_remaps = cap;
		}
	}
	if (c->nr_remaps < c->cap_remaps)
		c->remaps[c->nr_remaps++] = (struct mem_remap){from, to, nr * PAGE_SIZE};
	else
		log_error("client %d: out of memory logging an mremap during eviction", c->pid);
}

/* Moves the entry at *src to dst, page vpn to page to_vpn (lock held). */
static void move_one(struct client *c, pte_t *src, uint64_t vpn, pte_t *dst, uint64_t to_vpn)
{
	/* The agent was told the old address, which may hold new memory soon. */
	if (pte_type(*src) == PTE_MOVING)
		move_gate_cancel(c->gate, (unsigned)pte_payload(*src));
	/* An I/O worker reading it from a swap file looks for it there. */
	if (pte_type(*src) == PTE_LOADING)
		for (unsigned i = 0; i < CLIENT_MAX_IO; i++)
			if (c->io_busy[i] && c->io_vpn[i] == vpn)
				c->io_vpn[i] = to_vpn;
	*dst = *src;
	/* A stored page's workingset shadow moves with it. */
	*pagetable_shadow(c->pt, to_vpn) = *pagetable_shadow(c->pt, vpn);
	*src = 0;
}

/*
 * Moves nr pages' entries from address from to address to (lock held), page by page; with msg
 * (an mremap's own REMAP), recording its progress there: a successor that finds the event
 * unfinished after a crash replays it from there (adopt.c, resumed). Per page: the event says
 * the page is being taken, the destination takes the entry, the source lets go, then the event
 * advances. A destination entry met otherwise is stale, and dropped: the range was unmapped
 * before the move, and its UNMAP may reach us only after this REMAP (see late_unmap_of), for
 * the kernel sends an mremap's events once the mmap lock is let go. Kept, a stale entry would
 * hand a page its old bytes where zeroes belong.
 */
static void move_entries(struct client *c, uint64_t from, uint64_t to, uint64_t nr,
			 struct uffd_msg *msg, uint32_t state)
{
	uint64_t first = state / 2;

	log_moved(c, from, to, nr);
	for (uint64_t i = first; i < nr; i++) {
		uint64_t vpn = from / PAGE_SIZE + i, to_vpn = to / PAGE_SIZE + i;
		pte_t *src = pagetable_lookup(c->pt, vpn), *dst;
		/* Its destination may hold the entry taken: kept if the source has none. (A copy,
		 * the source having it still, is dropped: adoption gave it a handle or a reference
		 * of its own.) */
		bool taken = i == first && (state & 1);

		dst = pagetable_lookup(c->pt, to_vpn);
		if (dst && *dst && !(taken && (!src || !*src)))
			remove_one(to_vpn, dst, c);
		if (src && *src) {
			dst = pagetable_ensure(c->pt, to_vpn);
			if (!dst) {
				/* Say so loudly rather than serve stale data later. */
				log_error("client %d: out of memory in mremap, page %#lx lost",
					  c->pid, (unsigned long)(to_vpn * PAGE_SIZE));
				remove_one(vpn, src, c);
			} else {
				if (msg)
					remap_progress(msg, i, true);
				move_one(c, src, vpn, dst, to_vpn);
			}
		}
		if (msg)
			remap_progress(msg, i + 1, false);
	}
	/* Frees the source's leaves that are empty now. */
	pagetable_walk(c->pt, from / PAGE_SIZE, from / PAGE_SIZE + nr, visit_nothing, NULL);
}

/*
 * The set-aside entries of the mremap whose REMAP (from, to, len) is, or NULL. Without
 * MREMAP_FIXED, only a growing move moves: its REMAP gives its old length.
 */
static struct remap_aside *aside_of(struct client *c, uint64_t from, uint64_t to, uint64_t len)
{
	for (unsigned i = 0; i < CLIENT_MAX_ASIDES; i++) {
		struct remap_aside *a = &c->asides[i];

		if (a->used && a->from == from &&
		    (a->to ? a->to == to : PAGE_ALIGN_UP(len) == a->old_len))
			return a;
	}
	return NULL;
}

/* Drops what a holds still (lock held): the tail of a shrinking move. */
static void aside_free(struct client *c, struct remap_aside *a)
{
	uint64_t at = aside_addr((unsigned)(a - c->asides));

	remove_range(c, at, at + a->old_len, false);
	a->used = false;
	c->nr_asides--;
}

/*
 * Puts back what a holds (lock held): its thread left mremap() with no REMAP, so the move
 * failed and the pages are where they were, but where a later move put an entry, which is
 * newer (that part of the range had been unmapped: the reason the move failed). The batch log
 * names only the runs put back: a batch's page dropped here stays where it was set aside.
 */
static void aside_restore(struct client *c, struct remap_aside *a)
{
	uint64_t at = aside_addr((unsigned)(a - c->asides)) / PAGE_SIZE, home = a->from / PAGE_SIZE;
	uint64_t nr = a->old_len / PAGE_SIZE, run = 0;

	log_warning("client %d: thread %d left mremap() of %#" PRIx64 " with no REMAP", c->pid,
		    (int)a->tid, a->from);
	for (uint64_t i = 0; i <= nr; i++) {
		pte_t *src = i < nr ? pagetable_lookup(c->pt, at + i) : NULL, *dst;
		bool back = i < nr;

		if (src && *src) {
			dst = pagetable_ensure(c->pt, home + i);
			if (dst && !*dst) {
				move_one(c, src, at + i, dst, home + i);
			} else {
				remove_one(at + i, src, c);
				back = false;
			}
		}
		if (back) {
			run++;
		} else {
			log_moved(c, (at + i - run) * PAGE_SIZE, (home + i - run) * PAGE_SIZE, run);
			run = 0;
		}
	}
	aside_free(c, a);
}

enum aside_state {
	ASIDE_PENDING,	 /* its thread is in the call: its REMAP comes */
	ASIDE_ABANDONED, /* its thread left it, and no REMAP was read */
	ASIDE_UNKNOWN,	 /* its thread is running (its arguments cannot be read), or a changed */
};

/*
 * Lock held, dropped while /proc is read: a may be taken or reused meanwhile, and is then
 * ASIDE_UNKNOWN.
 */
static enum aside_state aside_state(struct client *c, const struct remap_aside *a)
{
	struct remap_aside was = *a;
	struct proc_mremap m;
	int r;

	if (!a->tid)
		return ASIDE_PENDING; /* its REMAP is in the read being applied */
	for (unsigned j = 0; j < c->nr_reading; j++)
		if (c->reading[j].event == UFFD_EVENT_REMAP &&
		    c->reading[j].arg.remap.from == a->from)
			return ASIDE_PENDING;
	pthread_mutex_unlock(&c->lock);
	r = proc_thread_mremap(c->pid, was.tid, &m);
	pthread_mutex_lock(&c->lock);
	if (!a->used || a->tid != was.tid || a->from != was.from)
		return ASIDE_UNKNOWN;
	if (r == 0 || (r > 0 && (m.from != a->from || m.to != a->to)))
		return ASIDE_ABANDONED;
	return r == -EAGAIN ? ASIDE_UNKNOWN : ASIDE_PENDING;
}

/*
 * Before a fault at vpn is answered (lock held, dropped while waiting): an aside whose source
 * holds vpn and whose move failed puts its entries back. Its thread, caught running, is
 * waited for, 10 ms at most. False if it still cannot be told: the fault waits (an answer
 * from the empty source could be zeroes where the page is set aside).
 */
static bool settle_asides_at(struct client *c, uint64_t vpn)
{
	uint64_t deadline = now_usec() + 10000;

	for (unsigned i = 0; i < CLIENT_MAX_ASIDES; i++) {
		struct remap_aside *a = &c->asides[i];
		enum aside_state st;

		while (a->used && vpn >= a->from / PAGE_SIZE &&
		       vpn < (a->from + a->old_len) / PAGE_SIZE &&
		       (st = aside_state(c, a)) != ASIDE_PENDING) {
			if (st == ASIDE_ABANDONED) {
				aside_restore(c, a);
				break;
			}
			if (now_usec() >= deadline)
				return false;
			pthread_mutex_unlock(&c->lock);
			sched_yield();
			pthread_mutex_lock(&c->lock);
		}
	}
	return true;
}

/* Puts back the entries of the moves that failed (lock held, dropped meanwhile). */
static void restore_abandoned(struct client *c)
{
	for (unsigned i = 0; i < CLIENT_MAX_ASIDES; i++)
		if (c->asides[i].used && aside_state(c, &c->asides[i]) == ASIDE_ABANDONED)
			aside_restore(c, &c->asides[i]);
}

/* Sets aside the entries of mover's source for its REMAP (lock held). */
static void set_aside(struct client *c, const struct proc_mremap *mover)
{
	uint64_t len = PAGE_ALIGN_UP(mover->old_len);
	unsigned slot;

	for (slot = 0; slot < CLIENT_MAX_ASIDES; slot++) {
		const struct remap_aside *a = &c->asides[slot];

		/* As another REMAP found, or the thread is in the read too (/proc gives no
		 * destination without MREMAP_FIXED). */
		if (a->used && a->from == mover->from &&
		    (!a->to || !mover->to || a->to == mover->to))
			return;
	}
	/* A slot still holding a batch's or an I/O worker's dropped entry waits for it. */
	for (slot = 0; slot < CLIENT_MAX_ASIDES; slot++)
		if (!c->asides[slot].used &&
		    !pagetable_walk(c->pt, aside_addr(slot) / PAGE_SIZE,
				    aside_addr(slot) / PAGE_SIZE + ASIDE_SPAN_PAGES, stop_at_entry,
				    NULL))
			break;
	if (slot == CLIENT_MAX_ASIDES || len / PAGE_SIZE > ASIDE_SPAN_PAGES) {
		log_error("client %d: cannot set aside the pages of an mremap of %#" PRIx64
			  ": it may read them wrong",
			  c->pid, mover->from);
		return;
	}
	log_debug("client %d: thread %d moved %#" PRIx64 "-%#" PRIx64 ", its REMAP comes late",
		  c->pid, (int)mover->tid, mover->from, mover->from + len);
	move_entries(c, mover->from, aside_addr(slot), len / PAGE_SIZE, NULL, 0);
	c->asides[slot] = (struct remap_aside){.tid = mover->tid,
					       .from = mover->from,
					       .old_len = len,
					       .to = mover->to,
					       .seq = ring_of(c)->nr,
					       .used = true};
	c->nr_asides++;
	atomic_fetch_add(&c->m->totals.remaps_set_aside, 1);
}

/* Whether the REMAP of mover, a thread /proc finds inside mremap(), has not been read yet. */
static bool remap_to_come(struct client *c, const struct proc_mremap *mover)
{
	uint64_t n = MIN(ring_of(c)->nr, (uint64_t)REMAP_RING_SIZE);

	/* Only a move sends one: one to a given place, or one that grows (and would have
	 * grown in place had its source not been freed). */
	if (!(mover->flags & MREMAP_FIXED) &&
	    !((mover->flags & MREMAP_MAYMOVE) && mover->new_len > mover->old_len))
		return false;
	/* Read already: it waits in the call to send its UNMAPs. (A kernel that sends no
	 * source UNMAP never says when a mover is out: any recent REMAP of it counts.) */
	for (uint64_t i = 0; i < n; i++) {
		const struct recent_remap *r = &ring_of(c)->r[i];

		if ((r->source_pending || !c->m->remap_unmaps_source) && r->from == mover->from &&
		    (!mover->to || r->to == mover->to))
			return false;
	}
	return true;
}

static bool overlaps(uint64_t start, uint64_t len, uint64_t range_start, uint64_t range_end)
{
	return start < range_end && start + PAGE_ALIGN_UP(len) > range_start;
}

/*
 * Before a REMAP moves entries into [start, end): entries there may be another thread's, whose
 * mremap moved its pages out and freed the range, but whose REMAP comes later (the kernel
 * sends it once the mmap lock is let go, and after the UNMAP of a destination that was
 * mapped). Applied first, this REMAP would drop them as stale, and that one would then move
 * this one's pages. /proc tells which threads are in mremap(): the entries of a mover's source
 * that meets the range are set aside for its REMAP. What no mover claims is stale. Resolve
 * lock held, the client lock not.
 */
static void set_aside_movers_into(struct client *c, uint64_t start, uint64_t end)
{
	struct proc_mremap m[PROC_MAX_MREMAPS];
	uint64_t deadline = now_usec() + 10000;
	int n, unread;
	bool entries, mover = false;

	pthread_mutex_lock(&c->lock);
	entries = pagetable_walk(c->pt, start / PAGE_SIZE, end / PAGE_SIZE, stop_at_entry, NULL);
	pthread_mutex_unlock(&c->lock);
	if (!entries)
		return;
	/* A thread caught running cannot be read: waited for, 10 ms at most. */
	for (;;) {
		n = proc_mremaps(c->pid, m, ARRAY_SIZE(m), &unread);
		for (int i = 0; i < n && !mover; i++)
			mover = overlaps(m[i].from, m[i].old_len, start, end);
		if (mover || unread != -EAGAIN || now_usec() >= deadline)
			break;
		sched_yield();
	}
	if (n < 0 || (unread && unread != -EAGAIN))
		log_debug_errno(n < 0 ? n : unread,
				"client %d: who moved pages out of %#" PRIx64 "-%#" PRIx64 ": %m",
				c->pid, start, end);
	pthread_mutex_lock(&c->lock);
	if (c->nr_asides)
		restore_abandoned(c);
	for (int i = 0; i < n; i++)
		if (overlaps(m[i].from, m[i].old_len, start, end) && remap_to_come(c, &m[i]))
			set_aside(c, &m[i]);
	/* Read with this one, the mover may have left the call already: its REMAP says only
	 * the length it moved, and an UNMAP right after it that starts where that ends may be
	 * the tail it cut off. Only the length moved is set aside (the tail's entries stay for
	 * that UNMAP), but the aside's REMAP count spares this move's pages from it. */
	for (unsigned i = 0; i < c->nr_reading; i++) {
		const struct uffd_msg *r = &c->reading[i], *next = r + 1;
		uint64_t from = r->arg.remap.from, len = PAGE_ALIGN_UP(r->arg.remap.len),
			 span = len;

		if (r->event != UFFD_EVENT_REMAP)
			continue;
		if (i + 1 < c->nr_reading && next->event == UFFD_EVENT_UNMAP &&
		    next->arg.remove.start == from + len && next->arg.remove.end > from + len)
			span = PAGE_ALIGN_UP(next->arg.remove.end) - from;
		if (overlaps(from, span, start, end))
			set_aside(c, &(struct proc_mremap){
					     .from = from, .old_len = len, .to = r->arg.remap.to});
	}
	pthread_mutex_unlock(&c->lock);
}

/*
 * An mremap's REMAP: its entries go to the destination, from its source or from where they
 * were set aside. Its destination may hold the entries of a move whose REMAP comes after.
 */
static void handle_remap(struct client *c, struct uffd_msg *msg, bool resumed)
{
	uint64_t from = msg->arg.remap.from, to = msg->arg.remap.to;
	uint64_t nr = PAGE_ALIGN_UP(msg->arg.remap.len) / PAGE_SIZE;
	uint32_t state = resumed ? __atomic_load_n(&msg->reserved3, __ATOMIC_ACQUIRE) : 0;
	struct remap_aside *aside = NULL;
	struct recent_remap *last;
	struct remap_ring *ring;
	uint64_t seq;

	/* A successor replaying the journal knows no dead daemon's asides. */
	if (!resumed) {
		pthread_mutex_lock(&c->lock);
		aside = aside_of(c, from, to, msg->arg.remap.len);
		if (aside)
			aside->tid = 0; /* here: never taken for a move that failed */
		pthread_mutex_unlock(&c->lock);
		set_aside_movers_into(c, to, to + nr * PAGE_SIZE);
	}
	pthread_mutex_lock(&c->lock);
	ring = ring_of(c);
	last = ring->nr ? &ring->r[(ring->nr - 1) % REMAP_RING_SIZE] : NULL;
	/* Replayed after a crash, it may be in the dead daemon's ring already (as its last). */
	if (resumed && last && last->from == from && last->to == to && last->len == nr * PAGE_SIZE)
		seq = ring->nr;
	else
		seq = ++ring->nr;
	if (aside) {
		move_entries(c, aside_addr((unsigned)(aside - c->asides)), to, nr, msg, state);
		aside_free(c, aside);
	} else {
		move_entries(c, from, to, nr, msg, state);
	}
	rangeset_remove(&c->registered, from, from + nr * PAGE_SIZE);
	rangeset_add(&c->registered, to, to + nr * PAGE_SIZE);
	/* Its tail's UNMAP spares what moves read after it brought; with its entries set
	 * aside, also what those read after that brought (its tail's went with them, or
	 * stayed as the same read said). */
	ring->r[(seq - 1) % REMAP_RING_SIZE] =
		(struct recent_remap){from,
				      to,
				      nr * PAGE_SIZE,
				      seq,
				      .spare_after = aside ? aside->seq : seq,
				      .tail_pending = c->m->remap_unmaps_source,
				      .source_pending = c->m->remap_unmaps_source};
	pthread_mutex_unlock(&c->lock);
}

/*
 * The mremap whose late UNMAP [start, end) is, or NULL (lock held). The kernel cuts off the
 * tail of a shrinking move, moves, unmaps the source, and only then, with the mmap lock let
 * go, sends REMAP, the tail's UNMAP and the source's, each once the one before was read.
 * Meanwhile another thread can map what was freed and mremap pages of its own there, and its
 * REMAP reaches us first: these two UNMAPs must not remove what a later REMAP put in their
 * range (the application read zeroes). The source's UNMAP matches the moved range exactly;
 * the tail's starts where it ends.
 */
static struct recent_remap *late_unmap_of(struct client *c, uint64_t start, uint64_t end,
					  bool *source)
{
	uint64_t n = MIN(ring_of(c)->nr, (uint64_t)REMAP_RING_SIZE);
	struct recent_remap *tail = NULL;

	/* A source before a tail: the range after one moved may be another's source. */
	for (uint64_t i = 0; i < n; i++) {
		struct recent_remap *r = &ring_of(c)->r[i];

		if (r->source_pending && r->from == start && r->from + r->len == end) {
			*source = true;
			return r;
		}
		if (r->tail_pending && r->from + r->len == start && (!tail || r->seq > tail->seq))
			tail = r;
	}
	*source = false;
	return tail;
}

enum tail_answer {
	NO_TAIL = -1, /* r's mremap cut off none, or is over: it sends none */
	NOT_THIS = 0, /* it may send one, but [start, end) is not it */
	TAIL = 1,
};

/*
 * Whether [start, end), which starts where r's range ends, is the tail r's mremap cut off, and
 * not another thread's munmap of the mapping after it: the mremapping thread is still in the
 * call (it returns once r's source UNMAP is read), and /proc gives its lengths. A thread
 * running when looked at (its arguments cannot be read then) is waited for, 10 ms at most; when
 * nothing can be read (another user's process: memextd keeps no CAP_DAC_READ_SEARCH), the guess
 * stands. Resolve lock held, the client lock not (the ring changes only under the former).
 */
static enum tail_answer is_tail_of(struct client *c, const struct recent_remap *r, uint64_t end)
{
	uint64_t old_len, new_len, deadline = now_usec() + 10000;
	int ret;

	/* Its source's UNMAP came in the same read: the thread may be out of the call already,
	 * and a tail comes just before it. */
	for (unsigned i = 0; i < c->nr_reading; i++)
		if (c->reading[i].event == UFFD_EVENT_UNMAP &&
		    c->reading[i].arg.remove.start == r->from &&
		    PAGE_ALIGN_UP(c->reading[i].arg.remove.end) == r->from + r->len)
			return TAIL;
	while ((ret = proc_mremap_lengths(c->pid, r->from, r->to, &old_len, &new_len)) == -EAGAIN &&
	       now_usec() < deadline)
		sched_yield();
	if (ret == 0 && (PAGE_ALIGN_UP(new_len) != r->len || PAGE_ALIGN_UP(old_len) <= r->len))
		return NO_TAIL; /* a move that grows or keeps its size */
	if (ret == 0)
		return r->from + PAGE_ALIGN_UP(old_len) == end ? TAIL : NOT_THIS;
	if (ret == -ENOENT)
		return NO_TAIL;
	log_debug_errno(ret, "client %d: whose UNMAP %#" PRIx64 "-%#" PRIx64 " is: %m", c->pid,
			r->from + r->len, end);
	return TAIL;
}

/* Removes [start, end) but the destinations of the REMAPs read after number seq (lock held):
 * their entries came after this range was unmapped. */
static void remove_but_later_moves(struct client *c, uint64_t start, uint64_t end, uint64_t seq,
				   unsigned first)
{
	uint64_t n = MIN(ring_of(c)->nr, (uint64_t)REMAP_RING_SIZE);

	if (start >= end)
		return;
	for (unsigned i = first; i < n; i++) {
		const struct recent_remap *r = &ring_of(c)->r[i];

		if (r->seq > seq && r->to < end && r->to + r->len > start) {
			remove_but_later_moves(c, start, r->to, seq, i + 1);
			remove_but_later_moves(c, r->to + r->len, end, seq, i + 1);
			return;
		}
	}
	remove_range(c, start, end, true);
}

static void handle_unmap(struct client *c, uint64_t start, uint64_t end)
{
	struct recent_remap *r;
	bool source;

	end = PAGE_ALIGN_UP(end);
	pthread_mutex_lock(&c->lock);
	r = late_unmap_of(c, start, end, &source);
	if (r && !source) {
		pthread_mutex_unlock(&c->lock);
		enum tail_answer tail = is_tail_of(c, r, end);

		pthread_mutex_lock(&c->lock);
		if (tail != TAIL) {
			if (tail == NO_TAIL) /* not asked again */
				r->tail_pending = false;
			r = NULL;
		}
	}
	if (!r) {
		remove_range(c, start, end, true);
	} else if (source) {
		/* The REMAP took every entry out already; what is there now is newer. */
		r->source_pending = r->tail_pending = false;
	} else {
		r->tail_pending = false;
		remove_but_later_moves(c, start, end, r->spare_after, 0);
	}
	pthread_mutex_unlock(&c->lock);
}

static void apply_event(struct client *c, struct uffd_msg *msg, bool resumed)
{
	switch (msg->event) {
	case UFFD_EVENT_REMOVE:
		/* The agent's own drops of its staging area arrive here too: nothing to do. */
		if (msg->arg.remove.start >= c->staging.start &&
		    msg->arg.remove.end <= c->staging.end)
			return;
		handle_remove(c, msg->arg.remove.start, msg->arg.remove.end, false);
		break;
	case UFFD_EVENT_UNMAP:
		handle_unmap(c, msg->arg.remove.start, msg->arg.remove.end);
		break;
	case UFFD_EVENT_REMAP:
		handle_remap(c, msg, resumed);
		break;
	default:
		log_debug("client %d: ignoring uffd event %u", c->pid, msg->event);
		break;
	}
}

void fault_adopt_ring(struct client *c, const struct remap_ring *ring)
{
	pthread_mutex_lock(&c->lock);
	*ring_of(c) = *ring;
	pthread_mutex_unlock(&c->lock);
}

void fault_apply_event(struct client *c, struct uffd_msg *msg)
{
	apply_event(c, msg, false);
}

void fault_replay_event(struct client *c, struct uffd_msg *msg)
{
	apply_event(c, msg, true);
}

#define GATE_WAIT_USEC 200

/*
 * Closes c's move gate for a read of its uffd (shared/movegate.h): false if the agent stays
 * inside it, in one UFFDIO_MOVE, for longer than GATE_WAIT_USEC (preempted or stopped). The
 * uffd is then left unread and read_deferred set: the reclaim thread, which gets the agent's
 * answer when its move ends, has it read again (fault_threads_rearm). An agent inside only to
 * make a page exclusive is waited for as long, then the uffd is read anyway: it may be waiting
 * for this very read, on a userfault of its own. Lock order: the resolve lock, then the gate.
 */

static bool close_gate(struct client *c)
{
	uint64_t start = 0, deadline = 0;
	bool closed = true;

	/* Put off already, and the agent still in its move (stopped, or not ours to trust): do
	 * not spin for it again on every wake-up; fault_threads_rearm() says when it is out. */
	if (atomic_load(&c->read_deferred) && move_gate_agent_moving(c->gate))
		return false;
	move_gate_close(c->gate);
	for (unsigned i = 0; !move_gate_agent_out(c->gate); i++) {
		cpu_relax();
		if (i % 64 != 63)
			continue;
		if (!deadline) {
			start = now_usec();
			deadline = start + GATE_WAIT_USEC;
		} else if (now_usec() >= deadline) {
			if (move_gate_agent_unsharing(c->gate))
				break; /* read with the agent inside (see above) */
			move_gate_open(c->gate);
			atomic_store(&c->read_deferred, true);
			/* Out just now, before the reclaim thread could see the flag: go on. */
			if (!move_gate_agent_out(c->gate) || !atomic_exchange(&c->read_deferred, false)) {
				closed = false;
				break;
			}
			move_gate_close(c->gate);
			deadline = now_usec() + GATE_WAIT_USEC;
		}
	}
	/* Waits shorter than 64 spins (a few microseconds) are not counted. */
	if (start) {
		atomic_fetch_add(&c->stats.gate_waits, 1);
		atomic_fetch_add(&c->stats.gate_wait_usec, now_usec() - start);
		if (!closed)
			atomic_fetch_add(&c->stats.gate_deferred, 1);
	}
	return closed;
}

/* For tests (--crash-at remove-read): dies with a MADV_DONTNEED of evicted pages read and not
 * yet applied, which its successor finds in the journal. */
static void crash_point_remove(struct client *c, const struct uffd_msg *msg)
{
	uint64_t v, end = PAGE_ALIGN_UP(msg->arg.remove.end) / PAGE_SIZE;

	if (!c->m->cfg.crash_at || msg->event != UFFD_EVENT_REMOVE)
		return;
	pthread_mutex_lock(&c->lock);
	for (v = msg->arg.remove.start / PAGE_SIZE; v < end; v++) {
		pte_t *pte = pagetable_lookup(c->pt, v);

		if (pte && pte_type(*pte) == PTE_STORED)
			break;
	}
	pthread_mutex_unlock(&c->lock);
	if (v < end)
		crash_point(c->m, "remove-read");
}

/*
 * Reads what the uffd holds: applies events at once, appends faults to p. Takes the resolve
 * lock exclusively (see client.h) and the move gate. Returns the number of messages read, or
 * -errno (-EBUSY: the agent is moving, see close_gate); *ret_full
 * (if given) says whether it stopped before the uffd was empty (out of memory for p).
 */
static int read_uffd_full(struct client *c, struct pending *p, bool *ret_full)
{
	struct uffd_msg local[READ_BATCH];
	/* Read into the client's pmem journal: a message read is gone from the kernel, so
	 * an event must be where a successor finds it until it is applied (adopt.c). */
	struct uffd_msg *msgs = c->record ? c->record->journal : local;
	uint64_t now = now_usec();
	int total = 0;

	static_assert(READ_BATCH == CLIENT_JOURNAL_MSGS, "one read fills the journal");
	if (ret_full)
		*ret_full = false;
	client_resolve_wrlock(c);
	if (!close_gate(c)) {
		pthread_rwlock_unlock(&c->resolve_lock);
		return -EBUSY;
	}
	for (;;) {
		if (!pending_reserve(p, READ_BATCH)) {
			if (ret_full)
				*ret_full = true;
			break;
		}
		ssize_t n = read(c->uffd, msgs, READ_BATCH * sizeof(*msgs));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				total = total ? total : -errno;
			break;
		}
		if (n == 0 || n % (ssize_t)sizeof(msgs[0]) != 0)
			break;
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
			c->reading = msgs + i + 1;
			c->nr_reading = (unsigned)(n / (ssize_t)sizeof(msgs[0]) - i - 1);
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
				bool unsharing = fault_by_agent(c, &msgs[i]) &&
						 move_gate_agent_unsharing(c->gate);

				/* The one moment the agent cannot reconnect by itself. */
				if (unsharing)
					crash_point(c->m, "agent-unshare-fault");
				p->req[p->nr++] = (struct fault_req){msgs[i], now, unsharing,
								     c->hand_back_epoch};
			} else {
				crash_point_remove(c, &msgs[i]);
				fault_apply_event(c, &msgs[i]);
			}
			/* Applied (or queued: a lost fault is raised again by the successor's
			 * wake-up); the journal slot is free. */
			__atomic_store_n(&msgs[i].event, 0, __ATOMIC_RELEASE);
			total++;
		}
		c->nr_reading = 0;
		/* A short read emptied the queue: spare the read that would say EAGAIN. */
		if (n < (ssize_t)(READ_BATCH * sizeof(*msgs)))
			break;
	}
	move_gate_open(c->gate);
	pthread_rwlock_unlock(&c->resolve_lock);
	return total;
}

static int read_uffd(struct client *c, struct pending *p)
{
	return read_uffd_full(c, p, NULL);
}

/*
 * Whether a fault that would add a resident page must wait for reclaim (lock held): less than
 * client-watermark-min of the budget is free, as the kernel's direct reclaim. Never while reclaim
 * cannot help (no agent, a fork under way, batches that evict nothing). Strictly above the min
 * watermark, so that reclaim, which wakes strictly above the low one (at or below min), always
 * runs for a throttled fault: with both at the same page count (any budget under 50 pages
 * with the default percentages, or client-watermark-min = client-watermark-low), a fault at
 * exactly that count waited for ever.
 */
static bool should_throttle(struct client *c)
{
	if (c->agent_gone || c->evict_paused || c->dead || c->fruitless_batches >= 3 ||
	    c->drain_requested)
		return false;
	/* The whole system is at its min watermark: every client waits (direct reclaim). */
	if (atomic_load(&c->m->sys_level) == SYSMEM_MIN && c->nr_present)
		return true;
	return c->budget_pages &&
	       c->nr_present > client_wmark_pages(c, c->m->cfg.client_wmark_min_pct);
}

/* Forgets the claim of map_zero() on [from, to) but keep (lock held). */
static void unclaim_zero_run(struct client *c, uint64_t from, uint64_t to, uint64_t keep)
{
	for (uint64_t v = from; v < to; v++) {
		pte_t *pte = pagetable_lookup(c->pt, v);

		if (v != keep && pte && pte_type(*pte) == PTE_PRESENT) {
			lru_del(&c->lru, *pte);
			*pte = 0;
			c->nr_present--;
		}
	}
}

/* Maps zero pages over the faulting page and its never-evicted neighbours (lock held on entry,
 * dropped for the ioctl). Returns 0 or -EAGAIN. */
static int map_zero(struct client *c, uint64_t vpn, unsigned window)
{
	uint64_t lo = vpn, hi = vpn + 1, base = vpn & ~(uint64_t)(window - 1);
	uint64_t done = 0, lo_mapped;
	pte_t *pte;
	int r;

	/* The run of NONE entries around vpn inside its aligned window and its registered
	 * range (a zeropage ioctl cannot cross mappings). */
	while (lo > base && rangeset_contains(&c->registered, (lo - 1) * PAGE_SIZE)) {
		pte = pagetable_lookup(c->pt, lo - 1);
		if (pte && *pte)
			break;
		lo--;
	}
	while (hi < base + window && rangeset_contains(&c->registered, hi * PAGE_SIZE)) {
		pte = pagetable_lookup(c->pt, hi);
		if (pte && *pte)
			break;
		hi++;
	}
	/* Claim the run so a concurrent fault does not count it twice. */
	for (uint64_t v = lo; v < hi; v++) {
		pte = pagetable_ensure(c->pt, v);
		if (!pte) {
			hi = v;
			break;
		}
		*pte = pte_make(PTE_PRESENT, v == vpn ? PTE_REF : 0, 0);
		c->nr_present++;
	}
	if (hi <= vpn) {
		/* Out of memory for the table: still answer the fault, untracked. */
		pthread_mutex_unlock(&c->lock);
		r = uffd_zeropage(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE, &done);
		if (r == -EEXIST)
			uffd_wake(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE);
		return r == -EAGAIN ? -EAGAIN : 0;
	}
	pthread_mutex_unlock(&c->lock);

	r = uffd_zeropage(c->uffd, lo * PAGE_SIZE, (hi - lo) * PAGE_SIZE, &done);
	if (r == 0)
		return 0;
	/*
	 * The run stopped short: a neighbour got mapped meanwhile (EEXIST, or EAGAIN after some
	 * pages), the run crossed two mappings (ENOENT: a registered range may span a stack and
	 * its guard page, or an arena and its reservation), events are pending (EAGAIN) or the
	 * range is gone (ENOENT, ESRCH). The pages it mapped stay claimed; the faulting page is
	 * tried alone (EEXIST: it is there, wake the thread); the rest is unclaimed.
	 */
	lo_mapped = lo + done / PAGE_SIZE;
	if (vpn >= lo_mapped) {
		r = uffd_zeropage(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE, &done);
		if (r == -EEXIST) {
			uffd_wake(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE);
			r = 0;
		}
	} else {
		r = 0;
	}
	pthread_mutex_lock(&c->lock);
	unclaim_zero_run(c, lo_mapped, hi, r == 0 ? vpn : UINT64_MAX);
	pthread_mutex_unlock(&c->lock);
	return r == -EAGAIN ? -EAGAIN : 0;
}

static int swap_in_loaded(struct client *c, uint64_t vpn, uint64_t handle, void *buf, bool keep,
			  bool drain, int load_r);

/*
 * Brings a stored page back (lock held on entry, dropped). keep: map it write-protected and
 * keep the stored copy (PTE_CLEAN), which stays valid until the first write, as the kernel's
 * swap cache; else the copy is freed. drain: every page comes back (fork, memextctl drain,
 * shutdown), which says nothing about the working set: no refault. Returns 0 or -EAGAIN.
 */
static int swap_in(struct client *c, uint64_t vpn, pte_t *pte, void *buf, bool keep, bool drain)
{
	uint64_t handle = pte_payload(*pte);

	*pte = pte_make(PTE_LOADING, 0, handle);
	pthread_mutex_unlock(&c->lock);
	return swap_in_loaded(c, vpn, handle, buf, keep, drain,
			      store_load(c->m->store, handle, buf));
}

/*
 * The LRU flags of a page coming back whose entry is still STORED or LOADING (lock held):
 * workingset_refault() on its shadow; a drained page joins the inactive list uncounted.
 */
static uint64_t refault_flags(struct client *c, uint64_t vpn, bool drain)
{
	uint64_t flags;

	if (drain)
		return 0;
	flags = workingset_refault(&c->lru, *pagetable_shadow(c->pt, vpn), c->nr_present);
	atomic_fetch_add(&c->m->totals.workingset_refault, 1);
	if (flags & PTE_ACTIVE)
		atomic_fetch_add(&c->m->totals.workingset_activate, 1);
	if (flags & PTE_WORKINGSET)
		atomic_fetch_add(&c->m->totals.workingset_restore, 1);
	return flags;
}

/*
 * The rest of a swap-in once the page is loaded (load_r: what the load returned): install it
 * and settle the entry, which is LOADING. Resolve lock held shared. Returns 0 or -EAGAIN.
 */
static int swap_in_loaded(struct client *c, uint64_t vpn, uint64_t handle, void *buf, bool keep,
			  bool drain, int load_r)
{
	pte_t *pte;
	int r = load_r;

	if (r < 0) {
		log_error("client %d: stored page %#lx is corrupt, poisoning it", c->pid,
			  (unsigned long)(vpn * PAGE_SIZE));
		keep = false;
		r = uffd_poison(c->uffd, vpn * PAGE_SIZE);
		if (r < 0 && r != -EAGAIN)
			r = uffd_copy(c->uffd, vpn * PAGE_SIZE, memset(buf, 0, PAGE_SIZE));
	} else {
		r = uffd_copy_mode(c->uffd, vpn * PAGE_SIZE, buf, keep ? UFFDIO_COPY_MODE_WP : 0);
	}
	if (r == -EEXIST) {
		/* Someone else's page is there: ours is not the content, do not keep it. */
		keep = false;
		uffd_wake(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE);
	}

	pthread_mutex_lock(&c->lock);
	pte = pagetable_lookup(c->pt, vpn);
	if (r == 0 || r == -EEXIST) {
		uint64_t lru_flags = refault_flags(c, vpn, drain);

		*pte = keep ? pte_make(PTE_PRESENT, PTE_REF | PTE_CLEAN | lru_flags, handle)
			    : pte_make(PTE_PRESENT, PTE_REF | lru_flags, 0);
		c->nr_stored--;
		c->nr_present++;
		c->nr_cached += keep;
		pthread_mutex_unlock(&c->lock);
		if (!keep)
			store_drop(c->m->store, handle);
		atomic_fetch_add(&c->stats.pswpin, 1);
		atomic_fetch_add(&c->m->totals.pswpin, 1);
		return 0;
	}
	/* EAGAIN: events first. ENOENT/ESRCH: the range or the process is going away, and
	 * the event that says so drops the page. Either way it stays stored. */
	*pte = pte_make(PTE_STORED, 0, handle);
	pthread_mutex_unlock(&c->lock);
	return r == -EAGAIN ? -EAGAIN : 0;
}

/*
 * A write to a page brought back clean: its stored copy is stale from now on. Drop it, then
 * lift the write protection (which wakes the writer) — in that order, so the page is never
 * writable while we still count its copy as valid. Returns 0, 1 (parked) or -EAGAIN.
 */
static int handle_wp_fault(struct client *c, const struct fault_req *req)
{
	uint64_t vpn = req->msg.arg.pagefault.address / PAGE_SIZE, handle = 0;
	bool is_agent = fault_by_agent(c, &req->msg);
	pte_t *pte;
	int r;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		pte = pagetable_lookup(c->pt, vpn);
		if (!pte || pte_type(*pte) != PTE_LOADING)
			break;
		/* Its loader is about to settle it (it holds the resolve lock as we do). */
		pthread_mutex_unlock(&c->lock);
		sched_yield();
		pthread_mutex_lock(&c->lock);
	}
	switch (pte ? pte_type(*pte) : PTE_NONE) {
	case PTE_PRESENT:
		if (*pte & PTE_CLEAN) {
			handle = pte_payload(*pte);
			*pte = pte_make(PTE_PRESENT,
					*pte & (PTE_REF | PTE_ACTIVE | PTE_WORKINGSET | PTE_UNEVICTABLE),
					0);
			c->nr_cached--;
			writetrack_written(&c->wtrack);
		}
		/* The write is a reference we get to see: a second one activates. */
		lru_mark_accessed(&c->lru, pte);
		pthread_mutex_unlock(&c->lock);
		if (handle) {
			store_drop(c->m->store, handle);
			atomic_fetch_add(&c->stats.wp_faults, 1);
			atomic_fetch_add(&c->m->totals.wp_faults, 1);
		}
		r = uffd_unprotect(c->uffd, vpn * PAGE_SIZE);
		if (r == -EAGAIN)
			return -EAGAIN;
		if (r < 0)
			uffd_wake(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE);
		return 0;
	case PTE_MOVING:
		if (is_agent) {
			/* The agent's MADV_POPULATE_WRITE on a page it is about to move (to make
			 * it exclusive after a fork): it must not wait for its own batch. The
			 * agent lifts the protection itself first (make_exclusive in the shim),
			 * so this is a shim that did not, and it reports the page written. */
			pthread_mutex_unlock(&c->lock);
			break;
		}
		/* Being evicted: answered once the batch lands (the page is gone by then). */
		client_park_locked(c, req);
		pthread_mutex_unlock(&c->lock);
		return 1;
	case PTE_NONE:
		/*
		 * A write-protect fault means the page is mapped: after MADV_FREE (whose REMOVE
		 * event made the entry NONE) the kernel may not have freed it yet. Track it
		 * again and let the write through, or the writer would fault forever.
		 */
		pte = pagetable_ensure(c->pt, vpn);
		if (pte && *pte == 0) {
			*pte = pte_make(PTE_PRESENT, PTE_REF, 0);
			c->nr_present++;
		}
		pthread_mutex_unlock(&c->lock);
		break;
	default:
		pthread_mutex_unlock(&c->lock);
		break;
	}
	/* Lifting the protection of a page that is gone does nothing; the wake makes the
	 * writer fault again as a missing page. */
	r = uffd_unprotect(c->uffd, vpn * PAGE_SIZE);
	if (r == -EAGAIN)
		return -EAGAIN;
	uffd_wake(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE);
	return 0;
}

/*
 * Swap-in readahead, as the kernel's swap_vma_readahead: a fault right after the pages the
 * previous one brought in is sequential, and the window doubles (up to RA_MAX_PAGES); any
 * other fault halves it, so random access quickly reads nothing ahead. Picks the run of
 * STORED pages after vpn, marks them LOADING and returns how many (lock held).
 */
static unsigned readahead_plan(struct client *c, uint64_t vpn, uint64_t *ret_vpn)
{
	unsigned n = 0;

	c->ra_window = readahead_window_next(c->ra_window, vpn == c->ra_next_vpn, RA_MAX_PAGES);
	for (unsigned i = 1; i <= c->ra_window && vpn + i < VPN_USER_END; i++) {
		pte_t *pte = pagetable_lookup(c->pt, vpn + i);

		if (!pte || pte_type(*pte) != PTE_STORED)
			break;
		*pte = pte_make(PTE_LOADING, 0, pte_payload(*pte));
		ret_vpn[n++] = vpn + i;
	}
	c->ra_next_vpn = vpn + n + 1;
	return n;
}

/*
 * Settles readahead pages [from, to) after their install: r[i] is what UFFDIO_COPY said for
 * page i (-EAGAIN: not tried). Installed pages are present, the others stored again.
 */
static void readahead_settle(struct client *c, const uint64_t *vpn, const uint64_t *handle,
			     const bool *keep, const int *r, unsigned from, unsigned to)
{
	pthread_mutex_lock(&c->lock);
	for (unsigned i = from; i < to; i++) {
		pte_t *pte = pagetable_lookup(c->pt, vpn[i]);

		if (r[i] == 0 || r[i] == -EEXIST) {
			/* Referenced, as the faulting page: a sequential reader is about to use it.
			 * A refault too, as the kernel's swap cache counts readahead pages. */
			uint64_t lru_flags = refault_flags(c, vpn[i], false);
			bool kept = keep[i] && r[i] == 0;

			uint64_t flags = PTE_REF | lru_flags;

			*pte = kept ? pte_make(PTE_PRESENT, flags | PTE_CLEAN, handle[i])
				    : pte_make(PTE_PRESENT, flags, 0);
			c->nr_stored--;
			c->nr_present++;
			c->nr_cached += kept;
		} else {
			*pte = pte_make(PTE_STORED, 0, handle[i]);
		}
	}
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = from; i < to; i++) {
		if (r[i] != 0 && r[i] != -EEXIST)
			continue;
		if (r[i] == -EEXIST)
			uffd_wake(c->uffd, vpn[i] * PAGE_SIZE, PAGE_SIZE);
		if (!(keep[i] && r[i] == 0))
			store_drop(c->m->store, handle[i]);
		atomic_fetch_add(&c->stats.pswpin, 1);
		atomic_fetch_add(&c->stats.readahead, 1);
		atomic_fetch_add(&c->m->totals.pswpin, 1);
		atomic_fetch_add(&c->m->totals.readahead, 1);
	}
}

/*
 * Brings the pages readahead_plan() picked back in; those it cannot go back to STORED. They
 * are decompressed into buf side by side and installed with one UFFDIO_COPY per run that
 * comes back the same way (kept or writable), not one per page: a copy of n pages costs less
 * than n copies (0.83 against 1.18 µs a page at 16, DESIGN.md). In chunks of 4, 8, 16 pages,
 * each settled before the next is read: the reader wants the first pages after its fault
 * first, and a write to one waits for its entry to settle (handle_wp_fault).
 */
static void readahead_install(struct client *c, const uint64_t *vpn, unsigned n, void *buf)
{
	uint64_t handle[RA_MAX_PAGES];
	bool keep[RA_MAX_PAGES];
	int r[RA_MAX_PAGES];
	bool stop = false;
	unsigned i = 0;

	pthread_mutex_lock(&c->lock);
	for (unsigned k = 0; k < n; k++) {
		handle[k] = pte_payload(*pagetable_lookup(c->pt, vpn[k]));
		keep[k] = c->track_writes && writetrack_keep(&c->wtrack);
		r[k] = -EAGAIN;
	}
	pthread_mutex_unlock(&c->lock);
	for (unsigned chunk = 4; i < n && !stop; chunk *= 2) {
		unsigned from = i, end = MIN(n, i + chunk), loaded = i;

		/* Readahead never waits for a disk: a page in a swap file stops it. */
		while (loaded < end && store_try_load(c->m->store, handle[loaded],
						      (char *)buf + loaded * PAGE_SIZE) == 0)
			loaded++;
		stop = loaded < end;
		while (i < loaded) {
			unsigned j = i + 1, done;
			struct uffdio_copy cp;
			int err;

			while (j < loaded && vpn[j] == vpn[j - 1] + 1 && keep[j] == keep[i])
				j++;
			cp = (struct uffdio_copy){
				.dst = vpn[i] * PAGE_SIZE,
				.src = (uint64_t)(uintptr_t)buf + i * PAGE_SIZE,
				.len = (uint64_t)(j - i) * PAGE_SIZE,
				.mode = keep[i] ? UFFDIO_COPY_MODE_WP : 0,
			};
			err = ioctl(c->uffd, UFFDIO_COPY, &cp) < 0 ? -errno : 0;
			done = cp.copy > 0 ? MIN((unsigned)(cp.copy / PAGE_SIZE), j - i) : 0;
			for (unsigned k = i; k < i + done; k++)
				r[k] = 0;
			if (!err || i + done >= j) {
				i = j;
				continue;
			}
			/* The page after the last one copied failed. EEXIST: it is someone else's,
			 * go on after it; EAGAIN (events pending) or anything else: leave the rest
			 * for their faults. */
			r[i + done] = err;
			i += done + 1;
			if (err != -EEXIST) {
				stop = true;
				break;
			}
		}
		readahead_settle(c, vpn, handle, keep, r, from, i);
	}
	/* What was not installed is stored again. */
	readahead_settle(c, vpn, handle, keep, r, i, n);
}

/*
 * A fault on a page of a batch that cannot land normally: the agent itself touched it (glibc
 * internals it calls may read application memory), or the agent failed and its batch is
 * orphaned. A fault means the page is not in the application, so it is in staging (moved) or
 * gone (removed meanwhile): copy it back from staging, else map zeroes. UFFDIO_MOVE moves a
 * page atomically, so whatever the agent still does, the page is in one place or the other.
 * Lock held on entry, dropped.
 */
static int serve_from_staging(struct client *c, uint64_t vpn, pte_t *pte, void *buf)
{
	uint64_t slot = pte_payload(*pte), done, stage, e;
	bool in_staging = false, dead = *pte & PTE_DEAD;
	int r;

	if (c->agent_gone) {
		/* Orphaned: no batch will land, the entry is ours to settle. */
		if (dead) {
			*pte = 0;
			c->nr_present--;
		} else {
			*pte = pte_make(PTE_PRESENT, PTE_REF, 0);
		}
	} else {
		/* The batch skips it when it lands, and the agent does not move it: what this
		 * installs is the application's page again (the agent may be making it exclusive,
		 * and the application write it, before its move). The agent waits in this fault
		 * until the install below wakes it, which orders the mark before its next look. */
		*pte |= PTE_CANCEL;
		if (c->gate)
			move_gate_cancel(c->gate, (unsigned)slot);
	}
	pthread_mutex_unlock(&c->lock);
	/* Slot i of staging, or of its mlocked half (MEMEXT_IGNORE_MLOCK). */
	for (int half = 0; half < 2 && !dead && !in_staging && slot < MEMEXT_STAGING_PAGES; half++) {
		stage = c->staging.start + (slot + (uint64_t)half * MEMEXT_STAGING_PAGES) * PAGE_SIZE;
		if (stage >= c->staging.end)
			break;
		if (pread(c->pagemap_fd, &e, sizeof(e), (off_t)(stage / PAGE_SIZE * 8)) == sizeof(e))
			in_staging = e & (1ULL << 63);
	}
	if (in_staging) {
		struct iovec local = {buf, PAGE_SIZE}, remote = {(void *)(uintptr_t)stage, PAGE_SIZE};

		if (process_vm_readv(c->pid, &local, 1, &remote, 1, 0) == (ssize_t)PAGE_SIZE) {
			r = uffd_copy(c->uffd, vpn * PAGE_SIZE, buf);
			if (r == -EEXIST)
				uffd_wake(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE);
			return r == -EAGAIN ? -EAGAIN : 0;
		}
		log_error("client %d: page %#lx is in staging but cannot be read back", c->pid,
			  (unsigned long)(vpn * PAGE_SIZE));
	}
	r = uffd_zeropage(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE, &done);
	if (r == -EEXIST)
		uffd_wake(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE);
	return r == -EAGAIN ? -EAGAIN : 0;
}

/*
 * I/O workers: a page in a swap file costs a disk read, which must not hold up a fault thread
 * (it serves every client). The fault thread marks the entry LOADING, records the page in the
 * client's io slots and hands the fault over; the worker reads, then installs and settles it
 * as swap_in() would, under the resolve lock. When the client has all its slots in flight, the
 * fault goes to the workers as it is (IO_NO_SLOT), and the worker that takes it resolves it
 * like a fault thread, reading the page itself.
 */
#define NR_IO_WORKERS 2
#define IO_NO_SLOT UINT_MAX

static __thread bool in_io_worker; /* this thread may read a swap file itself */

struct io_job {
	struct io_job *next;
	struct client *c; /* a reference */
	struct fault_req req;
	unsigned slot;
	uint64_t handle;
	bool keep;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct io_job *head, *tail;
	bool stop;
	unsigned nr_threads;
	pthread_t threads[NR_IO_WORKERS];
} io = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void count_answered(struct client *c, const struct fault_req *req)
{
	uint64_t usec = now_usec() - req->read_usec;

	atomic_fetch_add(&c->stats.faults, 1);
	atomic_fetch_add(&c->m->totals.faults, 1);
	if (fault_by_agent(c, &req->msg)) {
		atomic_fetch_add(&c->stats.agent_faults, 1);
		if (req->agent_unsharing)
			atomic_fetch_add(&c->stats.agent_unshare_faults, 1);
		log_debug("client %d: its agent faulted at %#llx", c->pid,
			  (unsigned long long)req->msg.arg.pagefault.address);
	}
	atomic_fetch_add(&c->stats.fault_usec_total, usec);
	atomic_fetch_add(&c->m->totals.fault_usec_total, usec);
	hist_add(&c->stats.fault_usec, usec);
	hist_add(&c->m->totals.fault_usec, usec);
}

/* Hands a fault on a page in a swap file to a worker (lock held on entry, dropped).
 * Returns 1 (handed over) or -EBUSY (no worker, no memory: the caller reads it itself). */
static int io_submit(struct client *c, const struct fault_req *req, uint64_t vpn, pte_t *pte,
		     bool keep)
{
	struct io_job *job;
	unsigned slot;

	if (!io.nr_threads || !(job = calloc(1, sizeof(*job))))
		return -EBUSY;
	for (slot = 0; slot < CLIENT_MAX_IO && c->io_busy[slot]; slot++)
		;
	*job = (struct io_job){.c = client_ref(c), .req = *req, .slot = IO_NO_SLOT};
	if (slot < CLIENT_MAX_IO) {
		job->slot = slot;
		job->handle = pte_payload(*pte);
		job->keep = keep;
		c->io_busy[slot] = true;
		c->io_vpn[slot] = vpn;
		*pte = pte_make(PTE_LOADING, 0, job->handle);
	} else {
		/* The entry stays STORED: whatever happens to it meanwhile, the worker's
		 * resolve sees. */
		atomic_fetch_add(&c->m->totals.io_overflow, 1);
	}
	pthread_mutex_unlock(&c->lock);

	pthread_mutex_lock(&io.lock);
	if (io.tail)
		io.tail->next = job;
	else
		io.head = job;
	io.tail = job;
	pthread_cond_signal(&io.cond);
	pthread_mutex_unlock(&io.lock);
	return 1;
}

static void io_run(struct io_job *job, void *buf)
{
	struct client *c = job->c;
	int load_r, r;
	uint64_t vpn;
	pte_t *pte;

	if (job->slot == IO_NO_SLOT) {
		fault_resolve(c, &job->req, 1, buf, false);
		return;
	}
	load_r = store_load(c->m->store, job->handle, buf);
	pthread_rwlock_rdlock(&c->resolve_lock);
	pthread_mutex_lock(&c->lock);
	vpn = c->io_vpn[job->slot]; /* where an mremap may have moved it */
	c->io_busy[job->slot] = false;
	pte = pagetable_lookup(c->pt, vpn);
	if (!pte || pte_type(*pte) != PTE_LOADING || pte_payload(*pte) != job->handle) {
		pthread_mutex_unlock(&c->lock);
		pthread_rwlock_unlock(&c->resolve_lock);
		log_error("client %d: lost track of page %#lx read from a swap file", c->pid,
			  (unsigned long)(vpn * PAGE_SIZE));
		return;
	}
	if (*pte & PTE_DEAD) {
		/* Dropped by the application while we read it: zeroes, not this copy. */
		*pte = 0;
		c->nr_stored--;
		pthread_mutex_unlock(&c->lock);
		pthread_rwlock_unlock(&c->resolve_lock);
		store_drop(c->m->store, job->handle);
		uffd_wake(c->uffd, job->req.msg.arg.pagefault.address & PAGE_MASK, PAGE_SIZE);
		count_answered(c, &job->req);
		return;
	}
	if (vpn >= VPN_USER_END) {
		/* Set aside for another thread's mremap (set_aside): the page waits there, stored,
		 * for its REMAP, and the faulting thread faults again. */
		*pte = pte_make(PTE_STORED, 0, job->handle);
		pthread_mutex_unlock(&c->lock);
		pthread_rwlock_unlock(&c->resolve_lock);
		uffd_wake(c->uffd, job->req.msg.arg.pagefault.address & PAGE_MASK, PAGE_SIZE);
		count_answered(c, &job->req);
		return;
	}
	pthread_mutex_unlock(&c->lock);
	r = swap_in_loaded(c, vpn, job->handle, buf, job->keep, false, load_r);
	pthread_rwlock_unlock(&c->resolve_lock);
	if (r == -EAGAIN)
		fault_resolve(c, &job->req, 1, buf, false); /* events first, then again */
	else
		count_answered(c, &job->req);
}

static void *io_worker_main(void *arg)
{
	void *buf = aligned_alloc(PAGE_SIZE, FAULT_BUF_PAGES * PAGE_SIZE);

	(void)arg;
	in_io_worker = true;
	pthread_setname_np(pthread_self(), "swap-io");
	for (;;) {
		struct io_job *job;

		pthread_mutex_lock(&io.lock);
		while (!io.head && !io.stop)
			pthread_cond_wait(&io.cond, &io.lock);
		job = io.head;
		if (job) {
			io.head = job->next;
			if (!io.head)
				io.tail = NULL;
		}
		pthread_mutex_unlock(&io.lock);
		if (!job)
			break; /* stopping, and nothing left */
		if (buf)
			io_run(job, buf);
		client_unref(job->c);
		free(job);
	}
	free(buf);
	return NULL;
}

/*
 * Answers one fault. Returns 0 (answered), 1 (parked: answered later by reclaim) or -EAGAIN
 * (read the uffd and retry).
 * Resolve lock held shared.
 */
static int resolve_one(struct client *c, const struct fault_req *req, void *buf, bool from_reclaim)
{
	const struct uffd_msg *msg = &req->msg;
	uint64_t vpn = msg->arg.pagefault.address / PAGE_SIZE;
	unsigned window = c->m->cfg.faultaround_pages;
	/* The agent never waits: reclaim waits for the agent. */
	bool is_agent = fault_by_agent(c, msg);
	pte_t *pte;
	int r;

	if (handed_back(c, req)) {
		/* Woken already if the range was ours when it was unregistered; if it was not,
		 * the thread waits on a mapping made since (early_register), which this wakes. */
		uffd_wake(c->uffd, PAGE_ALIGN_DOWN(msg->arg.pagefault.address), PAGE_SIZE);
		return 0;
	}
	if (msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
		return handle_wp_fault(c, req);
	pthread_mutex_lock(&c->lock);
	if (c->nr_asides && !settle_asides_at(c, vpn)) {
		pthread_mutex_unlock(&c->lock);
		return -EAGAIN;
	}
	pte = pagetable_lookup(c->pt, vpn);
	switch (pte ? pte_type(*pte) : PTE_NONE) {
	case PTE_MOVING:
		/* The agent must not wait for the batch it is carrying; nobody waits for an
		 * orphaned one. */
		if (is_agent || c->agent_gone)
			return serve_from_staging(c, vpn, pte, buf);
		client_park_locked(c, req);
		pthread_mutex_unlock(&c->lock);
		return 1;
	case PTE_LOADING:
		/* Another thread is installing it; its UFFDIO_COPY wakes this one too. */
		pthread_mutex_unlock(&c->lock);
		return 0;
	case PTE_STORED: {
		uint64_t ra[RA_MAX_PAGES];
		unsigned nr_ra;
		bool keep;

		if (!from_reclaim && !is_agent && should_throttle(c))
			goto throttle;
		keep = c->track_writes && !(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) &&
		       writetrack_keep(&c->wtrack);
		/* A page in a swap file: a worker reads it; this thread serves others. */
		if (!in_io_worker && store_load_may_block(c->m->store, pte_payload(*pte)) &&
		    io_submit(c, req, vpn, pte, keep) > 0)
			return 1;
		nr_ra = is_agent ? 0 : readahead_plan(c, vpn, ra);
		/* The faulting page first: its thread runs on while the rest comes in. A read
		 * keeps the stored copy until the first write; a write makes it stale at once. */
		r = swap_in(c, vpn, pte, buf, keep, false);
		if (nr_ra)
			readahead_install(c, ra, nr_ra, buf);
		return r;
	}
	case PTE_PRESENT: {
		uint64_t done;

		/* Our state said present: another thread's answer is in flight, or the page
		 * went away unseen. A zero page is right in both cases. */
		pthread_mutex_unlock(&c->lock);
		r = uffd_zeropage(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE, &done);
		if (r == -EEXIST)
			uffd_wake(c->uffd, vpn * PAGE_SIZE, PAGE_SIZE);
		return r == -EAGAIN ? -EAGAIN : 0;
	}
	case PTE_NONE:
	default:
		if (!rangeset_contains(&c->registered, vpn * PAGE_SIZE))
			atomic_store(&c->scan_wanted, true);
		if (!from_reclaim && !is_agent && should_throttle(c))
			goto throttle;
		r = map_zero(c, vpn, window ? window : 1);
		if (r != -EAGAIN) { /* else tried again after the events: counted then */
			atomic_fetch_add(&c->stats.zero_faults, 1);
			atomic_fetch_add(&c->m->totals.zero_faults, 1);
		}
		return r;
	}
throttle:
	atomic_fetch_add(&c->stats.throttled, 1);
	atomic_fetch_add(&c->m->totals.throttled, 1);
	client_park_locked(c, req);
	pthread_mutex_unlock(&c->lock);
	manager_kick_reclaim(c->m);
	return 1;
}

/*
 * An answer failed with EAGAIN, and read_uffd() then read nr messages (or failed: -errno).
 * None: the kernel counts an event it has not queued yet, whose thread is between the two
 * steps (an munmap or MADV_DONTNEED of registered memory, a fork copying the address space)
 * and may wait for a CPU. A few yields catch the short gaps; then sleep until the uffd is
 * readable, a millisecond at most (a fork that fails takes its count back without an event).
 * Yielding alone went on for up to 8 ms and 6 000 turns, while threads exiting after a fill
 * waited to queue the REMOVE of their stacks.
 */
static void wait_for_event(struct client *c, int nr, unsigned *turns)
{
	struct pollfd pfd = {.fd = c->uffd, .events = POLLIN};

	if (nr > 0)
		*turns = 0;
	else if (nr < 0)
		/* The read failed (a FORK event we cannot take: the kernel keeps it, and the
		 * uffd stays readable): retried at a millisecond's pace, not spun on. */
		usleep(1000);
	else if ((*turns)++ < EVENT_YIELD_TURNS)
		sched_yield();
	else
		(void)poll(&pfd, 1, 1);
}

/* Parks the faults p->req[from..] (read_uffd found the move gate taken). */
static void park_rest(struct client *c, struct pending *p, unsigned from)
{
	pthread_mutex_lock(&c->lock);
	for (unsigned i = from; i < p->nr; i++)
		if (client_park_locked(c, &p->req[i]) < 0)
			log_error("client %d: out of memory parking a fault", c->pid);
	pthread_mutex_unlock(&c->lock);
	manager_kick_reclaim(c->m);
}

/* Answers the faults in p, reading the uffd again whenever the kernel asks for it. */
static void resolve_pending(struct client *c, struct pending *p, void *buf, bool from_reclaim)
{
	unsigned turns = 0;

	for (unsigned i = 0; i < p->nr;) {
		int r;

		client_resolve_rdlock(c);
		r = resolve_one(c, &p->req[i], buf, from_reclaim);
		pthread_rwlock_unlock(&c->resolve_lock);
		if (r == -EAGAIN) {
			/* Events are pending: apply them, then retry this fault. */
			int n = read_uffd(c, p);

			if (n == -EBUSY) {
				/* The agent is inside its gate: the events wait for its batch,
				 * and so do these faults, which reclaim answers after it. */
				park_rest(c, p, i);
				break;
			}
			wait_for_event(c, n, &turns);
			continue;
		}
		i++;
		if (r == 0)
			count_answered(c, &p->req[i - 1]);
		/* r > 0: parked or handed to an I/O worker, counted when answered. */
	}
	p->nr = 0;
}

void fault_resolve(struct client *c, const struct fault_req *reqs, unsigned n, void *buf,
		   bool from_reclaim)
{
	struct pending p = {0};

	if (!pending_reserve(&p, n)) {
		log_error("out of memory answering %u parked faults of client %d", n, c->pid);
		return;
	}
	memcpy(p.req, reqs, n * sizeof(*reqs));
	p.nr = n;
	resolve_pending(c, &p, buf, from_reclaim);
	pending_free(&p);
}

int fault_read_pending(struct client *c, void *buf)
{
	struct pending p = {0};
	int r = read_uffd(c, &p);

	resolve_pending(c, &p, buf, true);
	pending_free(&p);
	return r < 0 ? r : 0;
}

int fault_settle_asides(struct client *c, void *buf)
{
	for (uint64_t deadline = now_usec() + 1000000; now_usec() < deadline;) {
		unsigned n;

		pthread_mutex_lock(&c->lock);
		n = c->nr_asides;
		pthread_mutex_unlock(&c->lock);
		if (!n)
			return 0;
		(void)fault_read_pending(c, buf);
		client_resolve_wrlock(c);
		pthread_mutex_lock(&c->lock);
		restore_abandoned(c);
		pthread_mutex_unlock(&c->lock);
		pthread_rwlock_unlock(&c->resolve_lock);
		usleep(1000);
	}
	log_error("client %d: pages set aside for an mremap whose REMAP does not come", c->pid);
	return -EAGAIN;
}

int fault_swapin_vpn(struct client *c, uint64_t vpn, void *buf)
{
	unsigned turns = 0;

	for (;;) {
		struct pending p = {0};
		pte_t *pte;
		int r = 0;

		pthread_rwlock_rdlock(&c->resolve_lock);
		pthread_mutex_lock(&c->lock);
		pte = pagetable_lookup(c->pt, vpn);
		if (pte && pte_type(*pte) == PTE_STORED)
			r = swap_in(c, vpn, pte, buf, false, true);
		else
			pthread_mutex_unlock(&c->lock);
		pthread_rwlock_unlock(&c->resolve_lock);
		if (r != -EAGAIN)
			return r;
		r = read_uffd(c, &p);
		if (r == -EBUSY) /* the agent holds its gate: the caller tries again later */
			return r;
		wait_for_event(c, r, &turns);
		resolve_pending(c, &p, buf, true);
		pending_free(&p);
	}
}

/* Serializes changes of the epoll sets that hold a client with its removal. */
static pthread_mutex_t registration_lock = PTHREAD_MUTEX_INITIALIZER;

/* How a fault thread's epoll set holds a client's uffd. */
static struct epoll_event uffd_event(struct client *c)
{
	return (struct epoll_event){.events = EPOLLIN | EPOLLET, .data.ptr = c};
}

/*
 * Puts c's uffd in the epoll set of every fault thread (home < 0), or of home's only. False
 * when an ADD failed (out of memory): c stays with its home, which still gets every wake-up;
 * a failed DEL only leaves a thread woken for nothing.
 */
static bool set_fault_home(struct manager *m, struct client *c, int home)
{
	struct epoll_event ev = uffd_event(c);
	bool ok = true;

	pthread_mutex_lock(&registration_lock);
	for (unsigned i = 0; i < m->nr_fault_threads && !c->fault_removed && ok; i++) {
		int epfd = m->fault_threads[i].epfd;

		/* Added before another lets go: ET reports at ADD what is pending already. */
		if (home < 0 && (int)i != c->fault_home_thread)
			ok = epoll_ctl(epfd, EPOLL_CTL_ADD, c->uffd, &ev) == 0 || errno == EEXIST;
		else if (home >= 0 && (int)i != home)
			(void)epoll_ctl(epfd, EPOLL_CTL_DEL, c->uffd, NULL);
	}
	if (ok)
		c->fault_home_thread = home;
	pthread_mutex_unlock(&registration_lock);
	return ok;
}

/* Counts a read of c's uffd by t, which holds c, and changes who waits on it (faulthome.h). */
static void watch_fault_home(struct fault_thread *t, struct client *c, unsigned nr_faults)
{
	bool homed = atomic_load(&c->fault_home_thread) >= 0;

	switch (faulthome_read(&c->fault_home, homed, nr_faults)) {
	case FAULTHOME_ONE:
		set_fault_home(t->m, c, (int)(t - t->m->fault_threads));
		atomic_fetch_add(&t->m->totals.fault_homed, 1);
		break;
	case FAULTHOME_ALL:
		if (set_fault_home(t->m, c, -1))
			atomic_fetch_add(&t->m->totals.fault_unhomed, 1);
		else /* still homed: the next window asks again */
			log_debug_errno(-errno, "client %d: back to every fault thread: %m", c->pid);
		break;
	case FAULTHOME_KEEP:
		break;
	}
}

/* Whether c has messages waiting to be read. */
static bool uffd_readable(struct client *c)
{
	struct pollfd pfd = {.fd = c->uffd, .events = POLLIN};

	return poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN);
}

/*
 * Called by a thread that let go of c and is not its home: the wake-ups that came meanwhile
 * went to the home alone and found c taken. If anything waits, EPOLL_CTL_MOD makes the home's
 * epoll set look at the uffd again and wake the home. Taking c again instead could keep a
 * client that faults without pause on this thread for ever.
 */
static void wake_home(struct manager *m, struct client *c, int self)
{
	struct epoll_event ev = uffd_event(c);
	int home;

	pthread_mutex_lock(&registration_lock);
	home = c->fault_home_thread;
	if (!c->fault_removed && home >= 0 && home != self && uffd_readable(c))
		(void)epoll_ctl(m->fault_threads[home].epfd, EPOLL_CTL_MOD, c->uffd, &ev);
	pthread_mutex_unlock(&registration_lock);
}

void fault_threads_rearm(struct manager *m, struct client *c)
{
	struct epoll_event ev = uffd_event(c);
	int home;

	/* Still inside a move: nothing to read yet, and the next look would only spin. */
	if (!atomic_load(&c->read_deferred) || move_gate_agent_moving(c->gate) ||
	    !atomic_exchange(&c->read_deferred, false))
		return;
	pthread_mutex_lock(&registration_lock);
	home = c->fault_home_thread;
	for (unsigned i = 0; i < m->nr_fault_threads && !c->fault_removed; i++)
		if (home < 0 || (int)i == home)
			(void)epoll_ctl(m->fault_threads[i].epfd, EPOLL_CTL_MOD, c->uffd, &ev);
	pthread_mutex_unlock(&registration_lock);
}

/*
 * A client's uffd is in every fault thread's epoll set, edge-triggered, so every fault wakes
 * them all: the one on the CPU that faulted usually runs first, and answers there. One thread
 * at a time drains a client; a thread that finds it taken goes back to sleep instead of
 * waiting for the lock. Nothing is stranded: the wake-up that found the client taken is in the
 * holder's epoll set as well, so the holder reads again after it lets go.
 *
 * While a client's threads fault side by side, the uffd is in one thread's set only, its home
 * (faulthome.h). Another thread may still hold the client then, from a wake-up before: the
 * wake-ups that find it taken are the home's alone, so that thread wakes the home when it lets
 * go (wake_home).
 *
 * Returns whether it read any fault.
 */
static bool process_client(struct fault_thread *t, struct client *c, struct pending *p)
{
	int self = (int)(t - t->m->fault_threads), home;
	bool faulted = false, full;

	if (atomic_exchange_explicit(&c->fault_owned, true, memory_order_acquire))
		return false;
	do {
		int r = read_uffd_full(c, p, &full);

		if (r < 0 && r != -EAGAIN && r != -EBUSY)
			log_debug_errno(r, "client %d: reading its userfaultfd: %m", c->pid);
		faulted |= p->nr > 0;
		watch_fault_home(t, c, p->nr);
		resolve_pending(c, p, t->page_buf, false);
	} while (full); /* out of memory for p: edge-triggered, so read until empty */
	atomic_store_explicit(&c->fault_owned, false, memory_order_seq_cst);
	home = atomic_load(&c->fault_home_thread);
	if (home >= 0 && home != self)
		wake_home(t->m, c, self);
	return faulted;
}

static void pin_to_cpu(unsigned cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *fault_thread_main(void *arg)
{
	struct fault_thread *t = arg;
	struct pending *p = calloc(1, sizeof(*p));
	uint64_t poll_until = 0;

	if (!p || !pending_reserve(p, READ_BATCH)) {
		log_error("fault thread %u: out of memory", t->cpu);
		free(p);
		return NULL;
	}
	pin_to_cpu(t->cpu);
	{
		char name[16];

		snprintf(name, sizeof(name), "fault/%u", t->cpu);
		pthread_setname_np(pthread_self(), name);
	}
	for (;;) {
		struct epoll_event ev[16];
		bool faulted = false;
		int n, timeout = -1;

		/* fault-poll-us: after a fault, look again without sleeping for a while, giving
		 * the CPU to whoever wants it in between: the next fault needs no wake-up. */
		if (poll_until && now_usec() < poll_until)
			timeout = 0;
		else
			poll_until = 0;
		atomic_fetch_add(&t->epoch, 1);
		n = epoll_wait(t->epfd, ev, ARRAY_SIZE(ev), timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error_errno(-errno, "fault thread %u: epoll_wait: %m", t->cpu);
			break;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.ptr == NULL) {
				uint64_t v;

				(void)!read(t->kick_fd, &v, sizeof(v));
				continue;
			}
			faulted |= process_client(t, ev[i].data.ptr, p);
		}
		if (atomic_load(&t->m->stopping))
			break;
		if (faulted && t->m->cfg.fault_poll_us)
			poll_until = now_usec() + t->m->cfg.fault_poll_us;
		else if (n == 0)
			sched_yield();
	}
	pending_free(p);
	free(p);
	return NULL;
}

static void io_workers_start(void)
{
	io.stop = false;
	for (unsigned i = 0; i < NR_IO_WORKERS; i++) {
		if (pthread_create(&io.threads[i], NULL, io_worker_main, NULL) != 0)
			break;
		io.nr_threads = i + 1;
	}
}

static void io_workers_stop(void)
{
	pthread_mutex_lock(&io.lock);
	io.stop = true;
	pthread_cond_broadcast(&io.cond);
	pthread_mutex_unlock(&io.lock);
	for (unsigned i = 0; i < io.nr_threads; i++)
		pthread_join(io.threads[i], NULL);
	io.nr_threads = 0;
}

int fault_threads_start(struct manager *m)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = m->cfg.nr_fault_threads ? m->cfg.nr_fault_threads : (unsigned)MAX(ncpu, 1L);

	m->fault_threads = calloc(n, sizeof(struct fault_thread));
	if (!m->fault_threads)
		return -ENOMEM;
	io_workers_start();
	for (unsigned i = 0; i < n; i++) {
		struct fault_thread *t = &m->fault_threads[i];
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
		int r;

		t->m = m;
		t->cpu = i % (unsigned)MAX(ncpu, 1L);
		t->epfd = epoll_create1(EPOLL_CLOEXEC);
		t->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		t->page_buf = aligned_alloc(PAGE_SIZE, FAULT_BUF_PAGES * PAGE_SIZE);
		if (t->epfd < 0 || t->kick_fd < 0 || !t->page_buf)
			return log_error_errno(-ENOMEM, "cannot set up fault thread %u", i);
		if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->kick_fd, &ev) < 0)
			return log_error_errno(-errno, "epoll_ctl: %m");
		r = pthread_create(&t->thread, NULL, fault_thread_main, t);
		if (r)
			return log_error_errno(-r, "cannot start fault thread %u: %m", i);
		m->nr_fault_threads = i + 1;
	}
	return 0;
}

static void kick(struct fault_thread *t)
{
	uint64_t one = 1;

	(void)!write(t->kick_fd, &one, sizeof(one));
}

void fault_threads_stop(struct manager *m)
{
	io_workers_stop();
	atomic_store(&m->stopping, true);
	for (unsigned i = 0; i < m->nr_fault_threads; i++)
		kick(&m->fault_threads[i]);
	for (unsigned i = 0; i < m->nr_fault_threads; i++) {
		struct fault_thread *t = &m->fault_threads[i];

		pthread_join(t->thread, NULL);
		close(t->epfd);
		close(t->kick_fd);
		free(t->page_buf);
	}
	free(m->fault_threads);
	m->fault_threads = NULL;
	m->nr_fault_threads = 0;
}

int fault_threads_add_client(struct manager *m, struct client *c)
{
	c->fault_home_thread = -1;
	for (unsigned i = 0; i < m->nr_fault_threads; i++) {
		struct epoll_event ev = uffd_event(c);

		if (epoll_ctl(m->fault_threads[i].epfd, EPOLL_CTL_ADD, c->uffd, &ev) < 0) {
			int r = -errno;

			while (i-- > 0)
				epoll_ctl(m->fault_threads[i].epfd, EPOLL_CTL_DEL, c->uffd, NULL);
			return r;
		}
	}
	return 0;
}

void fault_threads_remove_client(struct manager *m, struct client *c)
{
	uint64_t seen[64];

	pthread_mutex_lock(&registration_lock);
	c->fault_removed = true;
	for (unsigned i = 0; i < m->nr_fault_threads; i++)
		epoll_ctl(m->fault_threads[i].epfd, EPOLL_CTL_DEL, c->uffd, NULL);
	pthread_mutex_unlock(&registration_lock);
	/* A thread may hold c from an epoll_wait() that returned before the DEL. Once its epoch
	 * moves on, it has finished that round and cannot see c again. Every thread, 64 at a
	 * time. */
	for (unsigned base = 0; base < m->nr_fault_threads; base += ARRAY_SIZE(seen)) {
		unsigned n = MIN(m->nr_fault_threads - base, (unsigned)ARRAY_SIZE(seen));

		for (unsigned i = 0; i < n; i++) {
			seen[i] = atomic_load(&m->fault_threads[base + i].epoch);
			kick(&m->fault_threads[base + i]);
		}
		for (unsigned i = 0; i < n; i++)
			while (atomic_load(&m->fault_threads[base + i].epoch) == seen[i])
				usleep(100);
	}
}
