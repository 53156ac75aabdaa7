/* SPDX-License-Identifier: MIT */
/*
 * The one-thread-or-all decision of daemon/faulthome.h on traces of uffd reads (how many faults
 * each found): a client faulting one page at a time is never homed, one whose threads fault side
 * by side is homed after its first window and stays so, a change of phase is followed both
 * ways, reads that found nothing do not count, and a share between the two thresholds changes
 * nothing in either state.
 */
#include <stdbool.h>

#include "daemon/faulthome.h"

#include "check.h"

/* A client as fault.c keeps it: the counts, and whether it is homed (its registration). */
struct sim {
	struct faulthome h;
	bool homed;
};

/* One read; applies the change as fault.c's registration would. */
static enum faulthome_change read_one(struct sim *s, unsigned nr_faults)
{
	enum faulthome_change c = faulthome_read(&s->h, s->homed, nr_faults);

	if (c != FAULTHOME_KEEP)
		s->homed = c == FAULTHOME_ONE;
	return c;
}

/* n reads, every period-th of which found several faults (period 0: none did); counts the
 * changes to one thread and to all. */
static void replay(struct sim *h, unsigned n, unsigned period, unsigned *ret_ones,
		   unsigned *ret_alls)
{
	*ret_ones = *ret_alls = 0;
	for (unsigned i = 0; i < n; i++) {
		unsigned nr = period && i % period == 0 ? 3 : 1;

		switch (read_one(h, nr)) {
		case FAULTHOME_ONE:
			(*ret_ones)++;
			break;
		case FAULTHOME_ALL:
			(*ret_alls)++;
			break;
		case FAULTHOME_KEEP:
			break;
		}
	}
}

/* One window in which multi reads found several faults; what its last read decided. */
static enum faulthome_change window_with(struct sim *h, unsigned multi)
{
	enum faulthome_change last = FAULTHOME_KEEP;

	for (unsigned i = 0; i < FAULTHOME_WINDOW; i++) {
		enum faulthome_change c = read_one(h, i < multi ? 2 : 1);

		check(i == FAULTHOME_WINDOW - 1 || c == FAULTHOME_KEEP);
		last = c;
	}
	return last;
}

int main(void)
{
	unsigned ones, alls;

	/* One thread: never homed. */
	{
		struct sim h = {0};

		replay(&h, 100 * FAULTHOME_WINDOW, 0, &ones, &alls);
		check(ones == 0 && alls == 0 && !h.homed);
	}
	/* Four threads on two CPUs (a third of the reads found several): homed at the end of
	 * the first window, not before, and never let go. */
	{
		struct sim h = {0};

		replay(&h, FAULTHOME_WINDOW - 1, 3, &ones, &alls);
		check(ones == 0 && !h.homed);
		replay(&h, 1, 3, &ones, &alls);
		check(ones == 1 && h.homed);
		replay(&h, 50 * FAULTHOME_WINDOW, 3, &ones, &alls);
		check(ones == 0 && alls == 0 && h.homed);
	}
	/* Phases: side by side, then alone (all again after one window), then side by side. */
	{
		struct sim h = {0};

		replay(&h, 4 * FAULTHOME_WINDOW, 2, &ones, &alls);
		check(ones == 1 && h.homed);
		replay(&h, 4 * FAULTHOME_WINDOW, 0, &ones, &alls);
		check(alls == 1 && ones == 0 && !h.homed);
		replay(&h, 4 * FAULTHOME_WINDOW, 2, &ones, &alls);
		check(ones == 1 && alls == 0 && h.homed);
	}
	/* Between the thresholds (1 read in 16, 6%): whatever it was stays. */
	{
		struct sim h = {0};

		check(100 / 16 < FAULTHOME_ONE_PCT && 100 / 16 >= FAULTHOME_ALL_PCT);
		replay(&h, 20 * FAULTHOME_WINDOW, 16, &ones, &alls);
		check(ones == 0 && !h.homed);
		h.homed = true;
		replay(&h, 20 * FAULTHOME_WINDOW, 16, &ones, &alls);
		check(alls == 0 && h.homed);
	}
	/* The thresholds themselves: 31 reads of 256 with several faults (12.1%) home, 30
	 * (11.7%) do not; homed, 7 (2.7%) go back to all, 8 (3.1%) do not. */
	{
		struct sim h = {0};

		check(window_with(&h, 30) == FAULTHOME_KEEP && !h.homed);
		check(window_with(&h, 31) == FAULTHOME_ONE && h.homed);
		check(window_with(&h, 8) == FAULTHOME_KEEP && h.homed);
		check(window_with(&h, 7) == FAULTHOME_ALL && !h.homed);
	}
	/* Reads that found nothing (a wake-up for a fault another read took) do not count. */
	{
		struct sim h = {0};

		for (unsigned i = 0; i < 10 * FAULTHOME_WINDOW; i++)
			check(read_one(&h, 0) == FAULTHOME_KEEP);
		check(h.h.reads == 0 && h.h.multi == 0);
		replay(&h, FAULTHOME_WINDOW, 1, &ones, &alls);
		check(ones == 1 && h.homed);
	}
	return 0;
}
