/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Whether a page brought back by a read keeps its stored copy (installed write-protected, the
 * swap cache of docs/ARCHITECTURE.md) or comes back writable without it, as the kernel's
 * do_swap_page maps an exclusive page. Keeping pays when the page is evicted again before it
 * is written: no compression then. It costs a write-protect fault, a second round trip to
 * memextd for the same page, when the page is written first — every touch of a workload that
 * reads a page and then writes it (measured: rand-write took two faults per swap-in).
 *
 * Per client, the share of kept pages that were then written decides. Above
 * WRITETRACK_WRITABLE_PCT pages come back writable, all but one in WRITETRACK_SAMPLE, which is
 * kept so that the share is still measured; below WRITETRACK_KEEP_PCT every page is kept
 * again. A write-protect fault costs about as much as two compressions (one round trip against
 * 3.6-6.8 µs of lz4, DESIGN.md), and a kept page saves a compression only if it is evicted
 * again while clean, hence a third. Counts halve after each window, so the estimate follows
 * the workload's phases.
 *
 * Pure and lock-free by itself: the caller holds the client's lock. Unit-tested in
 * tests/unit/test-writetrack.c.
 */

#include <stdbool.h>
#include <stdint.h>

#define WRITETRACK_WINDOW 128	   /* kept pages between two decisions */
#define WRITETRACK_SAMPLE 16	   /* in writable mode, one page in this many is kept */
#define WRITETRACK_WRITABLE_PCT 33 /* written share above which pages come back writable */
#define WRITETRACK_KEEP_PCT 20	   /* ... and below which they are kept again */

struct writetrack {
	uint32_t kept;	  /* pages kept (installed write-protected) in this window */
	uint32_t written; /* write-protect faults that dropped a kept copy, in this window */
	uint32_t skipped; /* pages brought back writable since the last sampled one */
	bool writable;	  /* pages come back writable, but for the samples */
};

static inline void writetrack_decide(struct writetrack *wt)
{
	uint32_t written = wt->written < wt->kept ? wt->written : wt->kept;
	uint32_t pct = wt->kept ? written * 100 / wt->kept : 0;

	if (!wt->writable && pct > WRITETRACK_WRITABLE_PCT)
		wt->writable = true;
	else if (wt->writable && pct < WRITETRACK_KEEP_PCT)
		wt->writable = false;
	wt->kept /= 2;
	wt->written = written / 2;
}

/* A page comes back after a read fault (or by readahead): keep its stored copy? */
static inline bool writetrack_keep(struct writetrack *wt)
{
	if (wt->writable && ++wt->skipped < WRITETRACK_SAMPLE)
		return false;
	wt->skipped = 0;
	if (++wt->kept >= WRITETRACK_WINDOW)
		writetrack_decide(wt);
	return true;
}

/* A write-protect fault found a kept copy and dropped it. */
static inline void writetrack_written(struct writetrack *wt)
{
	wt->written++;
}
