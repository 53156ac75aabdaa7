/* SPDX-License-Identifier: MIT */
/*
 * The keep-or-writable decision of daemon/writetrack.h on traces of swap-ins: a workload that
 * writes every page it reads back soon gets its pages writable (one fault per page instead of
 * two), one that only reads keeps every copy, and one that changes phase is followed both
 * ways. Writable mode still keeps one page in WRITETRACK_SAMPLE, so the share is measured.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/writetrack.h"

#include "check.h"

/*
 * n swap-ins, the page written after it is brought back when write() says so; returns how
 * many were kept. A kept page that is written raises the write-protect fault that reports it.
 */
static unsigned replay(struct writetrack *wt, unsigned n, bool (*write)(unsigned i))
{
	unsigned kept = 0;

	for (unsigned i = 0; i < n; i++) {
		bool keep = writetrack_keep(wt);

		kept += keep;
		if (keep && write(i))
			writetrack_written(wt);
	}
	return kept;
}

static bool always(unsigned i)
{
	(void)i;
	return true;
}

static bool never(unsigned i)
{
	(void)i;
	return false;
}

static bool one_in_ten(unsigned i)
{
	return i % 10 == 3;
}

static bool half(unsigned i)
{
	return i % 2;
}

int main(void)
{
	/* Reads only: every copy kept, forever. */
	{
		struct writetrack wt = {0};

		check(replay(&wt, 100000, never) == 100000);
		check(!wt.writable);
	}
	/* Every page written: writable after the first window; then 1 in SAMPLE is kept. */
	{
		struct writetrack wt = {0};
		unsigned kept = replay(&wt, WRITETRACK_WINDOW, always);

		check(kept == WRITETRACK_WINDOW);
		check(wt.writable);
		kept = replay(&wt, 16000, always);
		check(kept == 16000 / WRITETRACK_SAMPLE);
		check(wt.writable);
	}
	/* A few writes (10%): below the threshold, copies are kept. */
	{
		struct writetrack wt = {0};

		check(replay(&wt, 50000, one_in_ten) == 50000);
		check(!wt.writable);
	}
	/* Half the pages written (zipf's mix): writable. */
	{
		struct writetrack wt = {0};

		replay(&wt, 50000, half);
		check(wt.writable);
	}
	/* Phases: writes, then reads only: kept again within a few windows of samples. */
	{
		struct writetrack wt = {0};
		unsigned n = 0;

		replay(&wt, 10000, always);
		check(wt.writable);
		while (wt.writable && n < 100 * WRITETRACK_WINDOW * WRITETRACK_SAMPLE) {
			replay(&wt, 1, never);
			n++;
		}
		check(!wt.writable);
		/* Halving per window: the stale writes weigh less than the threshold after a
		 * couple of windows of samples. */
		check(n <= 3 * WRITETRACK_WINDOW * WRITETRACK_SAMPLE);
		check(replay(&wt, 1000, never) == 1000);
		/* And back: writable again. */
		replay(&wt, 10 * WRITETRACK_WINDOW, always);
		check(wt.writable);
	}
	/* Hysteresis: a share between the two thresholds changes nothing either way. */
	{
		struct writetrack wt = {.writable = true};
		static_assert(WRITETRACK_KEEP_PCT < 25 && 25 < WRITETRACK_WRITABLE_PCT, "");

		unsigned kept = 0;

		/* One kept page in four is written. */
		for (unsigned i = 0; i < 50 * WRITETRACK_WINDOW * WRITETRACK_SAMPLE; i++)
			if (writetrack_keep(&wt) && kept++ % 4 == 0)
				writetrack_written(&wt);
		check(wt.writable);
		wt = (struct writetrack){0};
		for (unsigned i = 0; i < 50 * WRITETRACK_WINDOW; i++)
			if (writetrack_keep(&wt) && kept++ % 4 == 0)
				writetrack_written(&wt);
		check(!wt.writable);
	}
	printf("ok\n");
	return 0;
}
