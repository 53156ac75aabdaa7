/* SPDX-License-Identifier: MIT */
/*
 * wl-zipf SIZE OPS
 *
 * A skewed working set, as bench/zram-compare's zipf case: after the fill, OPS touches of
 * pages drawn from a Zipf distribution (s = 1.2, ranks scattered over the region by a fixed
 * permutation), half of them rewrites (a new generation), half reads that check the page. The
 * hot pages fit in a budget a quarter of SIZE, so reclaim that keeps them resident refaults
 * on a few percent of the touches (the harness checks the daemon's workingset counters). At
 * the end every page is checked. Deterministic: the same touches on every run.
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

int main(int argc, char **argv)
{
	uint64_t rng = wl_mix(0x5eed2f), nr_ops, reads = 0, writes = 0;

	wl_set_prog(argv[0]);
	if (argc != 3)
		wl_die("usage: %s SIZE OPS", argv[0]);
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	nr_ops = wl_parse_u64(argv[2]);
	if (nr_pages < 2)
		wl_die("bad SIZE");
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

	wl_phase("zipf");
	for (uint64_t i = 0; i < nr_ops; i++) {
		size_t p = zipf_next(&rng);
		char *a = region + p * WL_PAGE_SIZE;

		if (wl_rand(&rng) & 1) {
			wl_page_fill(a, p, ++gen[p], 0);
			writes++;
		} else {
			wl_page_check("read", a, p, gen[p], 0, 0);
			reads++;
		}
	}
	wl_log("%" PRIu64 " reads, %" PRIu64 " rewrites", reads, writes);

	wl_phase("verify");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check("final", region + p * WL_PAGE_SIZE, p, gen[p], 0, 0);
	wl_log("all %zu pages verified", nr_pages);
	return 0;
}
