/* SPDX-License-Identifier: MIT */
/*
 * wl-threads SIZE THREADS OPS
 *
 * Many threads (32 in the test) fault at once on evicted memory. After the fill and a wait
 * until half of it is evicted, all threads are released together by a barrier. Pages
 * p % 4 == 3 are read-only and checked by everyone; pages p % 4 == 2 are shared and written
 * by everyone: an atomic bump of the header's counter (the bumps per page are counted in a
 * separate array, so the final check knows the value); the other pages belong to one thread
 * each, which rewrites (new generation) and checks them. Every page is checked at the end.
 */
#include <pthread.h>

#include "wl-common.h"

#define MAX_THREADS 64

struct page_state {
	uint32_t gen;
};

static char *region;
static size_t nr_pages;
static unsigned nr_threads;
static uint64_t nr_ops;
static struct page_state *state; /* own pages: written by the owner only */
static uint32_t *bumps;          /* shared written pages: atomic */
static pthread_barrier_t start;

static char *page_addr(size_t p)
{
	return region + p * WL_PAGE_SIZE;
}

static bool page_shared_ro(size_t p)
{
	return p % 4 == 3;
}

static bool page_shared_rw(size_t p)
{
	return p % 4 == 2;
}

/* The page of thread t nearest p (same 4-page group stride), or SIZE_MAX. */
static size_t own_page(size_t p, unsigned t)
{
	size_t q = (p / 4 / nr_threads * nr_threads + t) * 4 + p % 2;

	return q < nr_pages ? q : SIZE_MAX;
}

static void *op_thread(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;
	uint64_t rng = wl_mix(0x7412 ^ t), reads = 0, writes = 0, shared = 0, bumped = 0;

	pthread_barrier_wait(&start);
	for (uint64_t i = 0; i < nr_ops; i++) {
		size_t p = wl_rand_below(&rng, nr_pages), q;

		if (page_shared_ro(p)) {
			wl_page_check("shared read", page_addr(p), p, 0, 0, 0);
			shared++;
		} else if (page_shared_rw(p)) {
			wl_page_bump(page_addr(p));
			__atomic_fetch_add(&bumps[p], 1, __ATOMIC_RELAXED);
			bumped++;
		} else if ((q = own_page(p, t)) != SIZE_MAX) {
			if (wl_rand_below(&rng, 2)) {
				wl_page_check("own read", page_addr(q), q, state[q].gen, 0, 0);
				reads++;
			} else {
				wl_page_fill(page_addr(q), q, ++state[q].gen, 0);
				writes++;
			}
		}
	}
	wl_log("thread %u: %" PRIu64 " reads, %" PRIu64 " rewrites of its own pages, %" PRIu64
	       " shared reads, %" PRIu64 " shared bumps",
	       t, reads, writes, shared, bumped);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t tid[MAX_THREADS];

	wl_set_prog(argv[0]);
	if (argc != 4)
		wl_die("usage: %s SIZE THREADS OPS_PER_THREAD", argv[0]);
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	nr_threads = (unsigned)wl_parse_u64(argv[2]);
	nr_ops = wl_parse_u64(argv[3]);
	if (!nr_pages || !nr_threads || nr_threads > MAX_THREADS)
		wl_die("bad SIZE or THREADS (at most %d)", MAX_THREADS);
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);
	state = calloc(nr_pages, sizeof(*state));
	bumps = calloc(nr_pages, sizeof(*bumps));
	if (!state || !bumps)
		wl_die("calloc: %m");

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(page_addr(p), p, 0, 0);
	wl_wait_evicted("region before the threads start", region, nr_pages * WL_PAGE_SIZE, 500,
			wl_expect_eviction(), 60);

	wl_phase("threads");
	pthread_barrier_init(&start, NULL, nr_threads);
	for (unsigned t = 0; t < nr_threads; t++)
		if ((errno = pthread_create(&tid[t], NULL, op_thread, (void *)(uintptr_t)t)))
			wl_die("pthread_create: %m");
	for (unsigned t = 0; t < nr_threads; t++)
		pthread_join(tid[t], NULL);

	wl_phase("verify");
	for (size_t p = 0; p < nr_pages; p++) {
		if (page_shared_rw(p))
			wl_page_check("final shared", page_addr(p), p, 0, 0, bumps[p]);
		else
			wl_page_check("final", page_addr(p), p, state[p].gen, 0, 0);
	}
	wl_log("all %zu pages verified (%u threads)", nr_pages, nr_threads);
	return 0;
}
