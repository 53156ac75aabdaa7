/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The move gate: a page the daemon shares with a client's agent (a memfd, MSG_AGENT_GATE) that
 * keeps the agent's UFFDIO_MOVEs and the daemon's reads of the client's uffd apart.
 *
 * Why: the agent moves pages by address, some time after the daemon picked them. If the
 * application unmaps (or mremaps) a picked page's mapping meanwhile and maps new memory at the
 * same address (glibc's malloc does, from another thread, before the UNMAP event is even read),
 * a move by address takes the new mapping's page, which the daemon then drops as the old
 * one's: the application reads zeroes. Two things close that:
 *
 *  - The agent moves through the main uffd. The kernel refuses a move on a uffd while one of
 *    its non-cooperative events (UNMAP, REMAP, REMOVE) is raised and not read yet (EAGAIN):
 *    from the event's start until the daemon reads it, no move happens.
 *  - From that read on, the daemon's answer to the event must reach the agent before its next
 *    move: the daemon marks the batch's slots the event took away (cancelled), and the gate
 *    makes "read the uffd, apply its events, mark" and "check the marks, move" exclusive.
 *
 * The agent also enters the gate to make a page shared with a fork child exclusive: a look at
 * the marks and the page, then a write fault, marked MOVE_GATE_UNSHARING. No event read in
 * between means no zap in between, so the write fault does not find the page missing
 * (preload/shim.c, make_exclusive). Not every removal waits for its event to be read, though
 * (munmap and a new mapping at once, mremap with MREMAP_DONTUNMAP): the write fault may then be
 * a userfault, which the daemon must read to answer. So it waits for an unsharing agent only as
 * long as for a move, then reads anyway: the agent's moves check the marks again on their own
 * entry.
 *
 * A Dekker pair of flags: each side raises its own flag, then looks at the other's (all
 * sequentially consistent, so the store-load order holds). The daemon keeps its flag while it
 * waits for the agent's move to end (one ioctl); the agent backs off while the daemon reads.
 * Neither side waits without a bound: the agent skips the page (not moving is always safe),
 * the daemon reads later. The marks are plain data published by the flags' release/acquire;
 * clearing them outside the gate relies on no request being out then (the agent only moves
 * while it works on one, and the socket orders the two).
 */

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "protocol.h"

enum {
	MOVE_GATE_OUT,
	MOVE_GATE_MOVING,    /* between a look at the marks and the end of one UFFDIO_MOVE */
	MOVE_GATE_UNSHARING, /* making one page exclusive: the daemon may read after a while */
};

struct move_gate {
	uint32_t moving;  /* agent: MOVE_GATE_* */
	uint32_t reading; /* daemon: reading the uffd and applying what it read */
	/* Slot i (staging page i, either half) of the batch in flight must not move. Set by the
	 * daemon under its flag, cleared by it (under its client lock, with no request out)
	 * before each request. */
	uint64_t cancelled[MEMEXT_STAGING_PAGES / 64];
};

/* Agent: one attempt to enter. False: the daemon is reading, back off and wait. */
static inline bool move_gate_try_enter(struct move_gate *g)
{
	__atomic_store_n(&g->moving, MOVE_GATE_MOVING, __ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&g->reading, __ATOMIC_SEQ_CST))
		return true;
	__atomic_store_n(&g->moving, MOVE_GATE_OUT, __ATOMIC_SEQ_CST);
	return false;
}

/* Agent, inside: from here on it only makes a page exclusive (see above). */
static inline void move_gate_unsharing(struct move_gate *g)
{
	__atomic_store_n(&g->moving, MOVE_GATE_UNSHARING, __ATOMIC_SEQ_CST);
}

static inline void move_gate_leave(struct move_gate *g)
{
	__atomic_store_n(&g->moving, MOVE_GATE_OUT, __ATOMIC_RELEASE);
}

/* Agent: whether the daemon is reading (wait for this to clear before trying again). */
static inline bool move_gate_reading(const struct move_gate *g)
{
	return __atomic_load_n(&g->reading, __ATOMIC_ACQUIRE);
}

/* Daemon: raises its flag. Then it waits, flag up, until move_gate_agent_out(). */
static inline void move_gate_close(struct move_gate *g)
{
	__atomic_store_n(&g->reading, 1, __ATOMIC_SEQ_CST);
}

static inline bool move_gate_agent_out(const struct move_gate *g)
{
	return !__atomic_load_n(&g->moving, __ATOMIC_SEQ_CST);
}

/* Daemon: the agent is inside only to make a page exclusive (it may be stuck in a userfault). */
static inline bool move_gate_agent_unsharing(const struct move_gate *g)
{
	return __atomic_load_n(&g->moving, __ATOMIC_SEQ_CST) == MOVE_GATE_UNSHARING;
}

/* Daemon: the agent is inside a move, which no read may overlap. */
static inline bool move_gate_agent_moving(const struct move_gate *g)
{
	return __atomic_load_n(&g->moving, __ATOMIC_SEQ_CST) == MOVE_GATE_MOVING;
}

static inline void move_gate_open(struct move_gate *g)
{
	__atomic_store_n(&g->reading, 0, __ATOMIC_RELEASE);
}

static inline void move_gate_cancel(struct move_gate *g, unsigned slot)
{
	slot %= MEMEXT_STAGING_PAGES;
	__atomic_fetch_or(&g->cancelled[slot / 64], 1ULL << (slot % 64), __ATOMIC_RELAXED);
}

static inline bool move_gate_cancelled(const struct move_gate *g, unsigned slot)
{
	slot %= MEMEXT_STAGING_PAGES;
	return __atomic_load_n(&g->cancelled[slot / 64], __ATOMIC_RELAXED) & (1ULL << (slot % 64));
}

static inline void move_gate_clear(struct move_gate *g)
{
	for (unsigned i = 0; i < MEMEXT_STAGING_PAGES / 64; i++)
		__atomic_store_n(&g->cancelled[i], 0, __ATOMIC_RELAXED);
}
