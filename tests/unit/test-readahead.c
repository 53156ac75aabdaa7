/* SPDX-License-Identifier: MIT */
/*
 * Swap-in readahead's window on traces of faults: it grows on sequential access (2, 4, 8, ...
 * up to the maximum), shrinks to nothing on random access, and recovers when a sequential run
 * starts again. The pages read ahead over a trace are counted as fault.c would count them.
 */
#include <stdio.h>
#include <stdlib.h>

#include "daemon/readahead.h"

#include "check.h"

#define MAX 32

/*
 * Replays faults at the given pages, as fault.c does: a fault at the page right after the
 * previous fault's window is sequential; each fault reads `window` pages ahead and the next
 * sequential fault is expected after them. Returns the pages read ahead.
 */
static unsigned replay(const unsigned long *vpn, unsigned n, unsigned *windows)
{
	unsigned long next = (unsigned long)-1;
	unsigned window = 0, total = 0;

	for (unsigned i = 0; i < n; i++) {
		window = readahead_window_next(window, vpn[i] == next, MAX);
		windows[i] = window;
		total += window;
		next = vpn[i] + 1 + window;
	}
	return total;
}

int main(void)
{
	unsigned w[64];

	/* Sequential: the reader faults right after what the previous fault read ahead. */
	{
		unsigned long seq[10], next = 1000;
		unsigned window = 0;

		for (unsigned i = 0; i < 10; i++) {
			seq[i] = next;
			window = readahead_window_next(window, i > 0, MAX);
			next = seq[i] + 1 + window;
		}
		check(replay(seq, 10, w) == 2 + 4 + 8 + 16 + 32 * 5);
		check(w[0] == 0);
		check(w[1] == 2 && w[2] == 4 && w[3] == 8 && w[4] == 16 && w[5] == 32);
		for (unsigned i = 6; i < 10; i++)
			check(w[i] == MAX);
	}
	/* Random: nothing is ever read ahead. */
	{
		unsigned long rnd[32], s = 12345;

		for (unsigned i = 0; i < 32; i++) {
			s = s * 6364136223846793005UL + 1442695040888963407UL;
			rnd[i] = (s >> 20) % 100000 * 7;
		}
		check(replay(rnd, 32, w) == 0);
	}
	/* Sequential, then random: the window halves each time, down to 0 in log2(MAX) + 1. */
	{
		unsigned window = MAX;

		for (unsigned i = 0; i < 6; i++)
			window = readahead_window_next(window, false, MAX);
		check(window == 0);
		check(readahead_window_next(32, false, MAX) == 16);
		check(readahead_window_next(1, false, MAX) == 0);
	}
	/* ... and a new sequential run starts again from 2; a small maximum caps it. */
	check(readahead_window_next(0, true, MAX) == 2);
	check(readahead_window_next(0, true, 1) == 1);
	check(readahead_window_next(16, true, 24) == 24);
	printf("readahead: the window grows on sequential faults, shrinks to 0 on random ones\n");
	return 0;
}
