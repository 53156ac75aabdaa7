/* SPDX-License-Identifier: MIT */
/*
 * wl-heap SIZE EVACUATIONS [REGION_PAGES]
 *
 * A heap managed as a garbage collector such as the JVM's G1 manages its own: one large
 * PROT_NONE reservation, in which regions are committed with mmap(MAP_FIXED, PROT_READ |
 * PROT_WRITE) and uncommitted with mmap(MAP_FIXED, PROT_NONE, MAP_NORESERVE) over the same
 * addresses, never munmap(). SIZE bytes of live data, in regions of REGION_PAGES pages (64:
 * the shim registers such a commit at once; below 64, as G1's mark bitmap, only the daemon's
 * scan finds it), live in a reservation twice that size. While the daemon evicts:
 *
 *   mutators (2 threads)  read and check, or rewrite (a new generation), random live pages;
 *   the collector         evacuates a random live region: commits a free one, checks that it
 *                         reads zero (half the time; the other half it is written straight
 *                         away, as a collector trusts fresh memory to be zero), copies the
 *                         live region into it and hands the old one to the uncommitter;
 *   the uncommitter       uncommits the regions handed to it, in runs, and frees them for
 *                         the collector to commit again.
 *
 * So pages evicted, kept clean, in flight or never touched are uncommitted and committed again
 * at the same address under the daemon; a page of an old mapping coming back in a new one, or a
 * live page lost, is caught by the checks (each page names its logical page and generation).
 * Every live page is checked at the end.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "wl-common.h"

static size_t region_pages = 64; /* 256 KiB regions unless told */
#define REGION_BYTES (region_pages * WL_PAGE_SIZE)
#define NR_MUTATORS 2

struct live_region {
	pthread_mutex_t lock;
	size_t slot; /* where in the reservation it lives now */
};

static char *heap;
static size_t nr_live, nr_slots;
static struct live_region *live;
static uint32_t *gen; /* per logical page */
static atomic_bool done;

/* Free slots (uncommitted) and slots waiting to be uncommitted, each a stack. */
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_cond = PTHREAD_COND_INITIALIZER;
static size_t *free_slots, nr_free, *dead_slots, nr_dead;

static char *slot_addr(size_t slot)
{
	return heap + slot * REGION_BYTES;
}

static char *page_addr(size_t page)
{
	return slot_addr(live[page / region_pages].slot) + page % region_pages * WL_PAGE_SIZE;
}

/* Through libc's mmap, as a collector calls it (the shim sees these calls). */
static void commit(size_t slot)
{
	if (mmap(slot_addr(slot), REGION_BYTES, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		wl_die("commit: mmap: %m");
}

static void uncommit(size_t slot, size_t n)
{
	if (mmap(slot_addr(slot), n * REGION_BYTES, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED)
		wl_die("uncommit: mmap: %m");
}

static void *mutator(void *arg)
{
	uint64_t rng = wl_mix(0x6d7574 ^ (uintptr_t)arg), reads = 0, writes = 0;

	while (!atomic_load(&done)) {
		size_t p = wl_rand_below(&rng, nr_live * region_pages);
		struct live_region *r = &live[p / region_pages];

		pthread_mutex_lock(&r->lock);
		if (wl_rand_below(&rng, 4)) {
			wl_page_check("mutator read", page_addr(p), p, gen[p], 0, 0);
			reads++;
		} else {
			wl_page_fill(page_addr(p), p, ++gen[p], 0);
			writes++;
		}
		pthread_mutex_unlock(&r->lock);
	}
	wl_log("mutator %u: %" PRIu64 " reads, %" PRIu64 " rewrites", (unsigned)(uintptr_t)arg,
	       reads, writes);
	return NULL;
}

/* Uncommits dead slots, a run of adjacent ones at a time when it can. */
static void *uncommitter(void *arg)
{
	uint64_t runs = 0, regions = 0;

	(void)arg;
	pthread_mutex_lock(&slots_lock);
	for (;;) {
		size_t first, n = 1;

		while (!nr_dead && !atomic_load(&done))
			pthread_cond_wait(&slots_cond, &slots_lock);
		if (!nr_dead)
			break;
		first = dead_slots[--nr_dead];
		while (nr_dead && dead_slots[nr_dead - 1] == first + n)
			n++, nr_dead--;
		pthread_mutex_unlock(&slots_lock);
		uncommit(first, n);
		pthread_mutex_lock(&slots_lock);
		for (size_t i = 0; i < n; i++)
			free_slots[nr_free++] = first + i;
		runs++;
		regions += n;
		pthread_cond_broadcast(&slots_cond);
	}
	pthread_mutex_unlock(&slots_lock);
	wl_log("uncommitter: %" PRIu64 " regions in %" PRIu64 " runs", regions, runs);
	return NULL;
}

static size_t take_free_slot(uint64_t *rng)
{
	size_t i, slot;

	pthread_mutex_lock(&slots_lock);
	while (!nr_free)
		pthread_cond_wait(&slots_cond, &slots_lock);
	i = wl_rand_below(rng, nr_free);
	slot = free_slots[i];
	free_slots[i] = free_slots[--nr_free];
	pthread_mutex_unlock(&slots_lock);
	return slot;
}

static void evacuate(size_t l, uint64_t *rng)
{
	struct live_region *r = &live[l];
	size_t to = take_free_slot(rng), from;
	char *dst = slot_addr(to);

	commit(to);
	if (wl_rand_below(rng, 2))
		for (size_t i = 0; i < region_pages; i++)
			wl_zero_check("freshly committed region", dst + i * WL_PAGE_SIZE,
				      l * region_pages + i);
	pthread_mutex_lock(&r->lock);
	from = r->slot;
	memcpy(dst, slot_addr(from), REGION_BYTES);
	r->slot = to;
	for (size_t i = 0; i < region_pages; i++) {
		size_t p = l * region_pages + i;

		wl_page_check("evacuated", page_addr(p), p, gen[p], 0, 0);
	}
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_lock(&slots_lock);
	dead_slots[nr_dead++] = from;
	pthread_cond_broadcast(&slots_cond);
	pthread_mutex_unlock(&slots_lock);
}

int main(int argc, char **argv)
{
	pthread_t mut[NR_MUTATORS], unc;
	uint64_t nr_evac, rng = 0x6763;

	wl_set_prog(argv[0]);
	if (argc != 3 && argc != 4)
		wl_die("usage: %s SIZE EVACUATIONS [REGION_PAGES]", argv[0]);
	if (argc == 4)
		region_pages = wl_parse_u64(argv[3]);
	if (region_pages == 0 || region_pages > 4096)
		wl_die("REGION_PAGES must be 1-4096");
	nr_live = wl_parse_size(argv[1]) / REGION_BYTES;
	nr_evac = wl_parse_u64(argv[2]);
	if (nr_live < 2)
		wl_die("SIZE below two regions (%lu bytes)", 2 * REGION_BYTES);
	nr_slots = 2 * nr_live;
	heap = mmap(NULL, nr_slots * REGION_BYTES, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (heap == MAP_FAILED)
		wl_die("reserve: mmap: %m");
	live = calloc(nr_live, sizeof(*live));
	gen = calloc(nr_live * region_pages, sizeof(*gen));
	free_slots = calloc(nr_slots, sizeof(*free_slots));
	dead_slots = calloc(nr_slots, sizeof(*dead_slots));
	if (!live || !gen || !free_slots || !dead_slots)
		wl_die("calloc: %m");

	wl_phase("fill");
	for (size_t l = 0; l < nr_live; l++) {
		pthread_mutex_init(&live[l].lock, NULL);
		/* Every other slot: evacuation targets are spread through the heap. */
		live[l].slot = 2 * l;
		free_slots[nr_free++] = 2 * l + 1;
		commit(live[l].slot);
		for (size_t i = 0; i < region_pages; i++)
			wl_page_fill(page_addr(l * region_pages + i), l * region_pages + i, 0, 0);
	}
	wl_wait_evicted("heap before collecting", heap, nr_slots * REGION_BYTES, 750,
			wl_expect_eviction(), 60);

	wl_phase("collect");
	for (unsigned t = 0; t < NR_MUTATORS; t++)
		if ((errno = pthread_create(&mut[t], NULL, mutator, (void *)(uintptr_t)t)))
			wl_die("pthread_create: %m");
	if ((errno = pthread_create(&unc, NULL, uncommitter, NULL)))
		wl_die("pthread_create: %m");
	for (uint64_t e = 0; e < nr_evac; e++) {
		evacuate(wl_rand_below(&rng, nr_live), &rng);
		if (e % 1000 == 999)
			wl_log("%" PRIu64 " of %" PRIu64 " evacuations", e + 1, nr_evac);
	}
	atomic_store(&done, true);
	pthread_mutex_lock(&slots_lock);
	pthread_cond_broadcast(&slots_cond);
	pthread_mutex_unlock(&slots_lock);
	for (unsigned t = 0; t < NR_MUTATORS; t++)
		pthread_join(mut[t], NULL);
	pthread_join(unc, NULL);

	wl_phase("verify");
	for (size_t p = 0; p < nr_live * region_pages; p++)
		wl_page_check("final", page_addr(p), p, gen[p], 0, 0);
	wl_log("%" PRIu64 " evacuations; all %zu live pages verified", nr_evac,
	       nr_live * region_pages);
	return 0;
}
