/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Which fault threads wait on a client's uffd. Normally all of them: every fault wakes every
 * fault thread, the one on the faulting CPU usually runs first and answers there (a wake-up of
 * the other, idle CPU costs ~50 µs here, DESIGN.md), and the others find the client taken and
 * sleep again. That is right while the client faults one page at a time. When its threads
 * fault side by side, the thread that holds the client serves them all anyway, and each fault
 * only costs the other CPUs a wake-up and two context switches for nothing, often preempting
 * the application there (rand-read-4t: a third of all wake-ups of fault threads found the
 * client taken). Then the uffd waits in one thread's epoll set only, its home.
 *
 * The sign of faults side by side: a read of the uffd finds several faults, that is several
 * threads stopped at once (measured over whole runs: 32-38% of the reads of rand-read-4t,
 * 0.001% of rand-read's). Above FAULTHOME_ONE_PCT of the reads in a window, one thread; below
 * FAULTHOME_ALL_PCT, all again; in between, as it was.
 *
 * Pure: the caller serializes (the thread that holds the client). Unit-tested in
 * tests/unit/test-faulthome.c.
 */

#include <stdbool.h>
#include <stdint.h>

#define FAULTHOME_WINDOW 256 /* reads that found faults, between two decisions */
#define FAULTHOME_ONE_PCT 12 /* reads with several faults above which one thread serves */
#define FAULTHOME_ALL_PCT 3  /* ... and below which every thread waits again */

struct faulthome {
	uint32_t reads; /* reads that found faults, in this window */
	uint32_t multi; /* ... of them, reads that found several */
};

enum faulthome_change {
	FAULTHOME_KEEP, /* nothing to change */
	FAULTHOME_ONE,	/* wait on the uffd in one thread only */
	FAULTHOME_ALL,	/* in every thread again */
};

/*
 * Counts a read of the uffd that found nr_faults faults; says what to change. homed: one
 * thread waits on it now. The caller's registration is the state, so a change it could not
 * make is simply asked for again at the end of the next window.
 */
static inline enum faulthome_change faulthome_read(struct faulthome *h, bool homed,
						   unsigned nr_faults)
{
	uint32_t pct;

	if (nr_faults == 0)
		return FAULTHOME_KEEP;
	h->multi += nr_faults >= 2;
	if (++h->reads < FAULTHOME_WINDOW)
		return FAULTHOME_KEEP;
	pct = h->multi * 100 / h->reads;
	h->reads = h->multi = 0;
	if (!homed && pct >= FAULTHOME_ONE_PCT)
		return FAULTHOME_ONE;
	if (homed && pct < FAULTHOME_ALL_PCT)
		return FAULTHOME_ALL;
	return FAULTHOME_KEEP;
}
