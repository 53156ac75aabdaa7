/* SPDX-License-Identifier: MIT */
#include "client.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "adopt.h"
#include "log.h"
#include "maps.h"
#include "reclaim.h"
#include "store.h"
#include "uffd-compat.h"

/* The move gate: one page of a sealed memfd, mapped here and, once sent, by the agent. */
static int make_gate(struct client *c)
{
	int fd = memfd_create("memext-gate", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *p;

	static_assert(sizeof(struct move_gate) <= PAGE_SIZE, "the gate is one page");
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, PAGE_SIZE) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	p = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int r = -errno;

		close(fd);
		return r;
	}
	c->gate = p;
	c->gate_fd = fd;
	return 0;
}

int client_new(struct manager *m, const struct msg_hello *hello, uint64_t budget_bytes,
	       int control_fd, int fds[4], struct client **ret)
{
	pthread_rwlockattr_t attr;
	pthread_mutexattr_t mattr;
	struct client *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->pt = pagetable_new();
	if (!c->pt) {
		free(c);
		return -ENOMEM;
	}
	r = make_gate(c);
	if (r < 0) {
		pagetable_free(c->pt);
		free(c);
		return r;
	}
	c->pagemap_fd = fds[3];
	c->statm_fd = maps_open_statm(hello->pid);
	c->m = m;
	c->ref = 1;
	c->pid = hello->pid;
	c->parent_pid = hello->parent_pid;
	memcpy(c->comm, hello->comm, sizeof(c->comm));
	c->comm[sizeof(c->comm) - 1] = 0;
	c->uffd = fds[0];
	c->pidfd = fds[1];
	c->agent_fd = fds[2];
	c->control_fd = control_fd;
	/* Rounded up: a budget below a page is one page, not none. */
	c->budget_pages = budget_bytes / PAGE_SIZE + (budget_bytes % PAGE_SIZE != 0);
	c->features = hello->uffd_features;
	c->track_writes = c->features & UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	c->agent_tid = hello->agent_tid;
	c->flags = hello->flags;
	c->staging = hello->staging;
	c->nr_exclude = hello->nr_exclude;
	memcpy(c->exclude, hello->exclude, sizeof(c->exclude));

	pthread_rwlockattr_init(&attr);
	/* Readers of the uffd must not starve behind a stream of resolves. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&c->resolve_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutexattr_init(&mattr);
	/* Held for microseconds by the fault threads: spin a little before sleeping. */
	pthread_mutexattr_settype(&mattr, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&c->lock, &mattr);
	pthread_mutexattr_destroy(&mattr);
	pthread_cond_init(&c->batch_done, NULL);
	*ret = c;
	return 0;
}

/* Tries take() until it succeeds or CLIENT_LOCK_SPIN_USEC have passed. */
static bool spin_trylock(pthread_rwlock_t *l, int (*take)(pthread_rwlock_t *))
{
	uint64_t deadline = 0;

	for (unsigned i = 0;; i++) {
		if (take(l) == 0)
			return true;
		cpu_relax();
		if (i % 64 == 63) {
			uint64_t now = now_usec();

			if (!deadline)
				deadline = now + CLIENT_LOCK_SPIN_USEC;
			else if (now >= deadline)
				return false;
		}
	}
}

void client_resolve_rdlock(struct client *c)
{
	if (!spin_trylock(&c->resolve_lock, pthread_rwlock_tryrdlock))
		pthread_rwlock_rdlock(&c->resolve_lock);
}

void client_resolve_wrlock(struct client *c)
{
	if (!spin_trylock(&c->resolve_lock, pthread_rwlock_trywrlock))
		pthread_rwlock_wrlock(&c->resolve_lock);
}

struct client *client_ref(struct client *c)
{
	atomic_fetch_add(&c->ref, 1);
	return c;
}

static int drop_stored(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct client *c = userdata;

	(void)vpn;
	if (pte_type(*pte) == PTE_STORED || pte_type(*pte) == PTE_LOADING ||
	    (pte_type(*pte) == PTE_PRESENT && (*pte & PTE_CLEAN)))
		store_drop(c->m->store, pte_payload(*pte));
	*pte = 0;
	return 0;
}

void client_release_pages(struct client *c)
{
	pthread_mutex_lock(&c->lock);
	pagetable_walk(c->pt, 0, UINT64_MAX / PAGE_SIZE, drop_stored, c);
	c->nr_present = 0;
	c->nr_stored = 0;
	c->nr_cached = 0;
	c->lru.nr_active = 0;
	c->lru.nr_unevictable = 0;
	pthread_mutex_unlock(&c->lock);
}

void client_unref(struct client *c)
{
	if (!c || atomic_fetch_sub(&c->ref, 1) != 1)
		return;
	reclaim_client_gone(c);
	client_release_pages(c);
	/* Give the freed pool pages (and an empty pool's metadata) back to the system now. */
	store_compact(c->m->store);
	client_record_detach(c);
	pagetable_free(c->pt);
	rangeset_done(&c->registered);
	free(c->handed_back);
	free(c->hand_back_reqs);
	free(c->parked);
	free(c->remaps);
	free(c->user);
	close(c->uffd);
	close(c->pidfd);
	close(c->agent_fd);
	close(c->pagemap_fd);
	if (c->statm_fd >= 0)
		close(c->statm_fd);
	munmap(c->gate, PAGE_SIZE);
	if (c->gate_fd >= 0)
		close(c->gate_fd);
	if (c->control_fd >= 0)
		close(c->control_fd);
	pthread_rwlock_destroy(&c->resolve_lock);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->batch_done);
	free(c);
}

uint64_t client_batch_addr_now(const struct client *c, uint64_t addr)
{
	for (unsigned i = 0; i < c->nr_remaps; i++) {
		const struct mem_remap *r = &c->remaps[i];

		if (addr >= r->from && addr < r->from + r->len)
			addr = r->to + (addr - r->from);
	}
	return addr;
}

int client_park_locked(struct client *c, const struct fault_req *req)
{
	if (c->nr_parked == c->cap_parked) {
		unsigned cap = c->cap_parked ? c->cap_parked * 2 : 16;
		struct fault_req *p = realloc(c->parked, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		c->parked = p;
		c->cap_parked = cap;
	}
	c->parked[c->nr_parked++] = *req;
	atomic_fetch_add(&c->stats.parked, 1);
	return 0;
}

static int mark_present(uint64_t start, uint64_t end, void *userdata)
{
	struct client *c = userdata;

	for (uint64_t vpn = start / PAGE_SIZE; vpn < end / PAGE_SIZE; vpn++) {
		pte_t *pte = pagetable_ensure(c->pt, vpn);

		if (!pte)
			return -ENOMEM;
		if (*pte == 0) {
			*pte = pte_make(PTE_PRESENT, 0, 0);
			c->nr_present++;
		} else if (pte_type(*pte) == PTE_STORED) {
			/* Only in a fork child (forkshare.c): the parent brought the page back
			 * between its snapshot and fork(), so the child has it too. */
			uint64_t h = pte_payload(*pte);

			*pte = pte_make(PTE_PRESENT, 0, 0);
			store_drop(c->m->store, h);
			c->nr_stored--;
			c->nr_present++;
		}
	}
	return 0;
}

int client_uffd_register(struct client *c, uint64_t start, uint64_t end)
{
	struct uffdio_register reg = {
		.range = {.start = start, .len = end - start},
		.mode = UFFDIO_REGISTER_MODE_MISSING |
			(c->track_writes ? UFFDIO_REGISTER_MODE_WP : 0),
	};

	return ioctl(c->uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

void client_answer_hand_back(struct client *c, uint32_t seq, int status)
{
	struct msg_hand_back_done done = {.status = status};

	proto_init_header(&done.h, MSG_HAND_BACK_DONE, sizeof(done), seq);
	(void)proto_send(c->control_fd, &done, sizeof(done), NULL, 0);
}

void client_answer_leave(struct client *c, uint32_t seq, int status)
{
	struct msg_leave_done done = {.status = status};

	proto_init_header(&done.h, MSG_LEAVE_DONE, sizeof(done), seq);
	(void)proto_send(c->control_fd, &done, sizeof(done), NULL, 0);
}

static int register_gap(uint64_t start, uint64_t end, void *userdata)
{
	struct client *c = userdata;
	int r;

	/*
	 * Shared, against the reads of the uffd: an UNMAP of the range read between the
	 * ioctl and our bookkeeping would be applied before it, and leave us tracking pages of
	 * whatever is mapped there next, unregistered — reclaim would take them, and a fault on
	 * them would never reach us.
	 */
	client_resolve_rdlock(c);
	r = client_uffd_register(c, start, end);
	if (r < 0) {
		pthread_rwlock_unlock(&c->resolve_lock);
		/* The mapping changed since maps was read, or is of a kind uffd refuses
		 * (e.g. VM_PFNMAP): leave it alone, the next scan sees the new layout. */
		log_debug_errno(r, "client %d: cannot register %#lx-%#lx: %m", c->pid,
				(unsigned long)start, (unsigned long)end);
		return r == -ESRCH ? -ESRCH : 0;
	}
	pthread_mutex_lock(&c->lock);
	r = rangeset_add(&c->registered, start, end);
	if (r == 0)
		r = maps_scan_present(c->pagemap_fd, start, end, mark_present, c);
	pthread_mutex_unlock(&c->lock);
	pthread_rwlock_unlock(&c->resolve_lock);
	return r;
}

static int scan_one(const struct maps_entry *e, void *userdata)
{
	struct client *c = userdata;
	struct rangeset snapshot = {0};
	int r;

	if (strcmp(e->name, "[stack]") == 0)
		return 0;
	/*
	 * Register only what is not registered yet (the rangeset mirrors the registrations) and
	 * never the shim's own memory, which the kernel may have merged into one mapping with
	 * the application's, nor what the application has or asks for a userfaultfd of its own.
	 */
	r = rangeset_add(&snapshot, c->staging.start, c->staging.end);
	for (unsigned i = 0; i < c->nr_exclude && r == 0; i++)
		r = rangeset_add(&snapshot, c->exclude[i].start, c->exclude[i].end);
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < c->nr_handed_back && r == 0; i++)
		r = rangeset_add(&snapshot, c->handed_back[i].range.start, c->handed_back[i].range.end);
	for (unsigned i = 0; i < c->nr_hand_back_reqs && r == 0; i++)
		r = rangeset_add(&snapshot, c->hand_back_reqs[i].range.start,
				 c->hand_back_reqs[i].range.end);
	for (unsigned i = 0; i < c->registered.nr && r == 0; i++)
		if (c->registered.r[i].end > e->start && c->registered.r[i].start < e->end)
			r = rangeset_add(&snapshot, c->registered.r[i].start, c->registered.r[i].end);
	pthread_mutex_unlock(&c->lock);
	if (r == 0)
		r = rangeset_for_each_gap(&snapshot, e->start, e->end, register_gap, c);
	rangeset_done(&snapshot);
	return r;
}

#define TAKE_BACK_AFTER_USEC 1000000

/*
 * Whether no userfaultfd of the process holds [start, end) any more: registering it with ours
 * succeeds (and is undone at once; the next scan registers it as it registers any memory).
 * EBUSY: another holds part of it. Any other refusal (unmapped, a mapping no userfaultfd takes)
 * means no other can hold it either. Resolve lock exclusive.
 */
static bool let_go(struct client *c, uint64_t start, uint64_t end)
{
	struct uffdio_range range = {.start = start, .len = end - start};
	int r = client_uffd_register(c, start, end);

	if (r == 0)
		(void)ioctl(c->uffd, UFFDIO_UNREGISTER, &range);
	return r != -EBUSY;
}

int client_take_back(struct client *c, uint64_t now)
{
	int n = 0;

	pthread_mutex_lock(&c->lock);
	bool look = c->nr_handed_back && now - c->take_back_usec >= TAKE_BACK_AFTER_USEC;
	pthread_mutex_unlock(&c->lock);
	if (!look)
		return 0;
	c->take_back_usec = now;
	client_resolve_wrlock(c);
	pthread_mutex_lock(&c->lock);
	for (unsigned k = 0; k < c->nr_handed_back;) {
		struct handed_back *h = &c->handed_back[k];

		/* Handed over a second ago or more: past the moment between our unregistering
		 * and the application's registering (should a look fall there anyway, the shim
		 * asks again). Signed: h->usec may be later than now, read before the timer ran. */
		if ((int64_t)(now - h->usec) < TAKE_BACK_AFTER_USEC ||
		    !let_go(c, h->range.start, h->range.end)) {
			k++;
			continue;
		}
		log_info("client %d: %#" PRIx64 "-%#" PRIx64 " taken back: no userfaultfd of its "
			 "own holds it any more",
			 c->pid, h->range.start, h->range.end);
		memmove(h, h + 1, (--c->nr_handed_back - k) * sizeof(*h));
		n++;
	}
	pthread_mutex_unlock(&c->lock);
	pthread_rwlock_unlock(&c->resolve_lock);
	atomic_fetch_add(&c->m->totals.taken_back, (uint64_t)n);
	return n;
}

int client_scan_range(struct client *c, uint64_t start, uint64_t end)
{
	struct maps_entry e = {.start = start, .end = end, .readable = true, .writable = true};

	return scan_one(&e, c);
}

int64_t client_untracked_pages(struct client *c)
{
	int64_t rss = maps_resident_pages(c->statm_fd);
	int64_t tracked;

	if (rss < 0)
		return rss;
	pthread_mutex_lock(&c->lock);
	tracked = (int64_t)c->nr_present;
	pthread_mutex_unlock(&c->lock);
	return rss - tracked;
}

int client_scan(struct client *c)
{
	int r = maps_for_each_eligible(c->pid, scan_one, c);

	c->scan_untracked_pages = client_untracked_pages(c);
	c->scan_usec = now_usec();
	return r;
}
