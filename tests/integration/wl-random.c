/* SPDX-License-Identifier: MIT */
/*
 * wl-random SIZE THREADS OPS [--pause-after-fill | --wait-after-fill]
 *
 * Several threads fault at once over one region of SIZE bytes. Every fourth page is read-only
 * after the fill and read by every thread (so several threads fault the same evicted page at
 * once); the others belong to one thread each, which rewrites them (a new generation), makes
 * small in-place writes to them (a 24-bit counter in the header: a lost write shows) or
 * checks them. At the end the main thread checks every page against what it must hold.
 *
 * --pause-after-fill: print "phase filled" and wait to be killed (the crash test).
 * --wait-after-fill: print "phase filled", wait for SIGUSR1, then go on (the stop test).
 */
#include <pthread.h>
#include <signal.h>

#include "wl-common.h"

struct page_state {
	uint32_t gen;
	uint32_t counter;
};

static char *region;
static size_t nr_pages;
static unsigned nr_threads;
static uint64_t nr_ops;
static struct page_state *state; /* per page; written only by the owning thread */

static bool page_read_only(size_t p)
{
	return p % 4 == 3;
}

static unsigned page_owner(size_t p)
{
	return (unsigned)((p / 4) % nr_threads);
}

static char *page_addr(size_t p)
{
	return region + p * WL_PAGE_SIZE;
}

static void *fill_thread(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;

	/* Interleaved 64-page chunks: the threads take first-touch faults side by side. */
	for (size_t c = t; c * 64 < nr_pages; c += nr_threads)
		for (size_t p = c * 64; p < nr_pages && p < (c + 1) * 64; p++)
			wl_page_fill(page_addr(p), p, 0, 0);
	return NULL;
}

static void *op_thread(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;
	uint64_t rng = wl_mix(0xabcdef ^ t);
	uint64_t reads = 0, writes = 0, bumps = 0, shared = 0;

	for (uint64_t i = 0; i < nr_ops; i++) {
		size_t p = wl_rand_below(&rng, nr_pages);
		unsigned op = (unsigned)wl_rand_below(&rng, 8);

		if (page_read_only(p)) {
			wl_page_check("shared read", page_addr(p), p, 0, 0, 0);
			shared++;
			continue;
		}
		/* Move to a page this thread owns: the same 4-page group of the owning thread. */
		p = (p / 4 / nr_threads * nr_threads + t) * 4 + p % 4;
		if (p >= nr_pages || page_read_only(p))
			continue;
		if (page_owner(p) != t)
			wl_die("internal: page %zu is not thread %u's", p, t);
		struct page_state *s = &state[p];
		char *a = page_addr(p);
		if (op < 3) {
			wl_page_check("read", a, p, s->gen, 0, s->counter);
			reads++;
		} else if (op < 6) {
			s->gen++;
			s->counter = 0;
			wl_page_fill(a, p, s->gen, 0);
			writes++;
		} else {
			/* A 4-byte read-modify-write in place: the page may be evicted under it. */
			struct wl_page_header *h = (struct wl_page_header *)a;
			s->counter = (s->counter + 1) & 0xffffff;
			h->aux = wl_aux(0, s->counter);
			bumps++;
		}
	}
	wl_log("thread %u: %" PRIu64 " reads, %" PRIu64 " rewrites, %" PRIu64
	       " in-place writes, %" PRIu64 " shared reads",
	       t, reads, writes, bumps, shared);
	return NULL;
}

static void run_threads(void *(*fn)(void *))
{
	pthread_t tid[64];

	for (unsigned t = 0; t < nr_threads; t++)
		if ((errno = pthread_create(&tid[t], NULL, fn, (void *)(uintptr_t)t)))
			wl_die("pthread_create: %m");
	for (unsigned t = 0; t < nr_threads; t++)
		pthread_join(tid[t], NULL);
}

int main(int argc, char **argv)
{
	bool pause_after_fill = false, wait_after_fill = false;

	wl_set_prog(argv[0]);
	if (argc < 4 || argc > 5)
		wl_die("usage: %s SIZE THREADS OPS_PER_THREAD [--pause-after-fill | --wait-after-fill]",
		       argv[0]);
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	nr_threads = (unsigned)wl_parse_u64(argv[2]);
	nr_ops = wl_parse_u64(argv[3]);
	if (argc == 5) {
		if (strcmp(argv[4], "--pause-after-fill") == 0)
			pause_after_fill = true;
		else if (strcmp(argv[4], "--wait-after-fill") == 0)
			wait_after_fill = true;
		else
			wl_die("unknown option %s", argv[4]);
	}
	if (!nr_pages || !nr_threads || nr_threads > 64)
		wl_die("bad SIZE or THREADS");

	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);
	state = calloc(nr_pages, sizeof(*state));
	if (!state)
		wl_die("calloc: %m");
	wl_log("%zu pages (%zu MiB), %u threads, %" PRIu64 " ops each", nr_pages,
	       nr_pages * WL_PAGE_SIZE >> 20, nr_threads, nr_ops);

	wl_phase("fill");
	run_threads(fill_thread);
	if (pause_after_fill) {
		wl_phase("filled");
		for (;;)
			pause();
	}
	if (wait_after_fill) {
		/* Until SIGUSR1 (the stop test: the daemon goes away meanwhile). */
		sigset_t set;
		int sig;

		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		pthread_sigmask(SIG_BLOCK, &set, NULL);
		wl_phase("filled");
		sigwait(&set, &sig);
	}

	wl_phase("random");
	run_threads(op_thread);

	wl_phase("verify");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check("final", page_addr(p), p, state[p].gen, 0, state[p].counter);
	wl_log("all %zu pages verified", nr_pages);
	return 0;
}
