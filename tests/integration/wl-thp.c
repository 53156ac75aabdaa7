/* SPDX-License-Identifier: MIT */
/*
 * wl-thp SIZE OPS
 *
 * Transparent huge pages in memory memext manages. The region (2 MiB aligned, MADV_HUGEPAGE)
 * is filled 2 MiB at a time, and each chunk, resident right after its fill, is collapsed into
 * a huge page with MADV_COLLAPSE, as khugepaged does in its own time to memory whose every
 * page is present (it never fills holes in userfaultfd-registered memory). memext then evicts
 * from those huge pages 4 KiB at a time: a UFFDIO_MOVE of part of a huge page makes the
 * kernel split it. Then OPS random reads and rewrites, each checked, and every page checked
 * at the end. Prints "collapsed N of M chunks"; at least one must collapse, and under the
 * shim (MEMEXT_WL_EXPECT_EVICTION=1) fewer huge pages must be left at the end. Exit 77 when the
 * machine has no transparent huge pages ("never") or no MADV_COLLAPSE (before Linux 6.1).
 */
#include <sys/mman.h>

#include "wl-common.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define CHUNK (2UL << 20)
#define CHUNK_PAGES (CHUNK / WL_PAGE_SIZE)

/* AnonHugePages of the mapping that holds addr, in KiB (/proc/self/smaps), or -1. */
static long anon_huge_kib(const void *addr)
{
	char line[256];
	long kib = -1;
	bool in = false;
	FILE *f = fopen("/proc/self/smaps", "r");
	unsigned long lo, hi;

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
		else if (in && sscanf(line, "AnonHugePages: %ld kB", &kib) == 1)
			break;
	}
	if (f)
		fclose(f);
	return kib;
}

static bool thp_never(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");

	if (!f)
		return true;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return strstr(buf, "[never]") != NULL;
}

int main(int argc, char **argv)
{
	size_t size, nr_pages, nr_chunks, collapsed = 0, no_room = 0;
	uint64_t ops, rng = wl_mix(0x7407);
	uint32_t *gen;
	char *raw, *region;

	wl_set_prog(argv[0]);
	if (argc != 3)
		wl_die("usage: wl-thp SIZE OPS");
	size = wl_parse_size(argv[1]) / CHUNK * CHUNK;
	ops = wl_parse_u64(argv[2]);
	if (size == 0)
		wl_die("SIZE must be at least 2 MiB");
	if (thp_never()) {
		wl_log("transparent huge pages are off here: nothing to test");
		return 77;
	}
	nr_pages = size / WL_PAGE_SIZE;
	nr_chunks = size / CHUNK;
	raw = wl_mmap_anon(size + CHUNK);
	region = (char *)(((uintptr_t)raw + CHUNK - 1) & ~(uintptr_t)(CHUNK - 1));
	if (madvise(region, size, MADV_HUGEPAGE) < 0)
		wl_die("madvise(MADV_HUGEPAGE): %m");
	/* An empty range: EINVAL only where the kernel has no MADV_COLLAPSE (before 6.1). */
	if (madvise(region, 0, MADV_COLLAPSE) < 0 && errno == EINVAL) {
		wl_log("no MADV_COLLAPSE here (before Linux 6.1?): nothing to test");
		return 77;
	}
	gen = calloc(nr_pages, sizeof(*gen));
	if (!gen)
		wl_die("calloc");

	wl_phase("fill");
	for (size_t c = 0; c < nr_chunks; c++) {
		char *chunk = region + c * CHUNK;

		for (size_t i = 0; i < CHUNK_PAGES; i++)
			wl_page_fill(chunk + i * WL_PAGE_SIZE, c * CHUNK_PAGES + i, 0, 0);
		if (madvise(chunk, CHUNK, MADV_COLLAPSE) == 0)
			collapsed++;
		else if (errno == ENOMEM)
			no_room++; /* no free huge page (fragmented memory, a memory cgroup) */
		/* EBUSY: a page is evicted (not all present); EAGAIN: one is being moved;
		 * EINVAL: one is write-protected (a page brought back clean). */
	}
	if (!collapsed && no_room == nr_chunks) {
		wl_log("no free huge page for any chunk: nothing to test");
		return 77;
	}
	wl_log("collapsed %zu of %zu chunks; AnonHugePages %ld kB", collapsed, nr_chunks,
	       anon_huge_kib(region));
	if (!collapsed)
		wl_mismatch("no chunk collapsed into a huge page: nothing was tested");

	wl_phase("random");
	for (uint64_t i = 0; i < ops; i++) {
		size_t p = wl_rand_below(&rng, nr_pages);
		char *a = region + p * WL_PAGE_SIZE;

		wl_page_check("random read", a, p, gen[p], 0, 0);
		if (wl_rand_below(&rng, 2))
			wl_page_fill(a, p, ++gen[p], 0);
	}

	wl_phase("verify");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check("final check", region + p * WL_PAGE_SIZE, p, gen[p], 0, 0);
	wl_log("all %zu pages verified; AnonHugePages %ld kB", nr_pages, anon_huge_kib(region));
	/* Under memext the region was evicted 4 KiB at a time, which splits huge pages (here
	 * all of them; khugepaged may collapse a few again, so fewer is all that is asked). */
	if (wl_expect_eviction() && anon_huge_kib(region) >= (long)(collapsed * CHUNK / 1024))
		wl_mismatch("AnonHugePages %ld kB after eviction, as many as were collapsed: "
			    "memext evicted around the huge pages, not from them", anon_huge_kib(region));
	return 0;
}
