/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Whether a reclaim thread must look among its round's clients for a fork that waits
 * (FORK_PREPARE). Each request bumps a sequence number after its client's fork_requested is
 * set; a round reads the number before it takes its snapshot of the clients. The main thread
 * handles a client's hello (which lists it) before any message of its, so every request up to
 * that number comes from a client of the snapshot, or from one dead since. A look that served
 * every request it found (none of their clients held by another thread) settles the requests
 * up to the snapshot's number for good, and those up to the number it read for the rest of
 * the round: a later request may come from a client the snapshot lacks (a new process that
 * forks at once), which only the next round can serve.
 *
 * A single flag that the first look of a round cleared lost such a request: the next round
 * found the flag down, and the fork waited until another process forked. The price of the
 * numbers: each request makes every reclaim thread go through its clients once, or twice if it
 * comes in the middle of a round.
 *
 * Always settled <= round <= the number now. Pure: each reclaim thread has its own.
 * Unit-tested in tests/unit/test-forklook.c.
 */

#include <stdbool.h>
#include <stdint.h>

struct forklook {
	uint64_t settled; /* requests up to this number need nothing more from this thread */
	uint64_t round;	  /* ... nor from the rest of its round */
};

/* A new round begins. */
static inline void forklook_round(struct forklook *l)
{
	l->round = l->settled;
}

/* Whether requests up to seq (the number now) may wait for this thread. */
static inline bool forklook_needed(const struct forklook *l, uint64_t seq)
{
	return seq != l->round;
}

/* After a look at the round's clients, seq read before it, snap before the snapshot. missed:
 * a client with a request was held by another thread (looked at again). */
static inline void forklook_done(struct forklook *l, uint64_t seq, uint64_t snap, bool missed)
{
	if (missed)
		return;
	l->round = seq;
	if (seq == snap) /* nothing came after the snapshot */
		l->settled = seq;
}
