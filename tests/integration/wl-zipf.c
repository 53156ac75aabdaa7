/* SPDX-License-Identifier: MIT */
/*
 * wl-zipf SIZE OPS [MAX_FAULT_PCT]
 *
 * A skewed working set, as bench/zram-compare's zipf case: after the fill, OPS touches of
 * pages drawn from a Zipf distribution (s = 1.2, ranks scattered over the region by a fixed
 * permutation), half of them rewrites (a new generation), half reads that check the page. The
 * hot pages fit in a budget a quarter of SIZE, so reclaim that keeps them resident refaults
 * on a few percent of the touches (the harness checks the daemon's workingset counters). At
 * the end every page is checked. Deterministic: the same touches on every run.
 *
 * The first half of the touches warms up (phase "zipf-warm"); in the second ("zipf") each
 * touch first asks mincore() whether its page is resident, and the share that was not, the
 * touches that faulted once warm, is printed and must stay at most MAX_FAULT_PCT if given.
 */
#include <math.h>

#include "wl-common.h"

static char *region;
static size_t nr_pages;
static uint32_t *gen;	  /* per page */
static double *cdf;	  /* per rank */
static uint32_t *page_of; /* rank -> page */

static void zipf_init(double s, uint64_t *rng)
{
	double sum = 0;

	cdf = malloc(nr_pages * sizeof(*cdf));
	page_of = malloc(nr_pages * sizeof(*page_of));
	if (!cdf || !page_of)
		wl_die("malloc: %m");
	for (size_t k = 0; k < nr_pages; k++) {
		sum += 1.0 / pow((double)(k + 1), s);
		cdf[k] = sum;
		page_of[k] = (uint32_t)k;
	}
	for (size_t k = 0; k < nr_pages; k++)
		cdf[k] /= sum;
	for (size_t k = nr_pages - 1; k > 0; k--) {
		size_t j = wl_rand_below(rng, k + 1);
		uint32_t t = page_of[k];

		page_of[k] = page_of[j];
		page_of[j] = t;
	}
}

/* Whether the page at a is resident, so that touching it takes no fault. */
static bool resident(void *a)
{
	unsigned char v;

	if (mincore(a, WL_PAGE_SIZE, &v) < 0)
		wl_die("mincore %p: %m", a);
	return v & 1;
}

static size_t zipf_next(uint64_t *rng)
{
	double u = (double)(wl_rand(rng) >> 11) / 9007199254740992.0;
	size_t lo = 0, hi = nr_pages - 1;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return page_of[lo];
}

/* nr touches; returns how many found their page not resident (counted only if count). */
static uint64_t touch(uint64_t *rng, uint64_t nr, bool count, uint64_t *reads, uint64_t *writes)
{
	uint64_t faults = 0;

	for (uint64_t i = 0; i < nr; i++) {
		size_t p = zipf_next(rng);
		char *a = region + p * WL_PAGE_SIZE;

		if (count)
			faults += !resident(a);
		if (wl_rand(rng) & 1) {
			wl_page_fill(a, p, ++gen[p], 0);
			(*writes)++;
		} else {
			wl_page_check("read", a, p, gen[p], 0, 0);
			(*reads)++;
		}
	}
	return faults;
}

int main(int argc, char **argv)
{
	uint64_t rng = wl_mix(0x5eed2f), nr_ops, reads = 0, writes = 0, measured, faults;
	double max_pct = -1, pct;

	wl_set_prog(argv[0]);
	if (argc != 3 && argc != 4)
		wl_die("usage: %s SIZE OPS [MAX_FAULT_PCT]", argv[0]);
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	nr_ops = wl_parse_u64(argv[2]);
	if (argc == 4 && sscanf(argv[3], "%lf", &max_pct) != 1)
		wl_die("bad MAX_FAULT_PCT '%s'", argv[3]);
	if (nr_pages < 2 || nr_ops < 2)
		wl_die("bad SIZE or OPS");
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);
	gen = calloc(nr_pages, sizeof(*gen));
	if (!gen)
		wl_die("calloc: %m");
	zipf_init(1.2, &rng);
	wl_log("%zu pages (%zu MiB), %" PRIu64 " zipf touches", nr_pages,
	       nr_pages * WL_PAGE_SIZE >> 20, nr_ops);

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(region + p * WL_PAGE_SIZE, p, 0, 0);

	wl_phase("zipf-warm");
	touch(&rng, nr_ops / 2, false, &reads, &writes);
	wl_phase("zipf");
	measured = nr_ops - nr_ops / 2;
	faults = touch(&rng, measured, true, &reads, &writes);
	pct = 100.0 * (double)faults / (double)measured;
	wl_log("%" PRIu64 " reads, %" PRIu64 " rewrites; once warm, %" PRIu64 " of %" PRIu64
	       " touches faulted (%.2f%%)",
	       reads, writes, faults, measured, pct);
	if (max_pct >= 0 && pct > max_pct)
		wl_die("%.2f%% of the touches faulted once warm, more than %.2f%%: the hot pages "
		       "were not kept",
		       pct, max_pct);

	wl_phase("verify");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check("final", region + p * WL_PAGE_SIZE, p, gen[p], 0, 0);
	wl_log("all %zu pages verified", nr_pages);
	return 0;
}
