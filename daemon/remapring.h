/* SPDX-License-Identifier: MIT */
#pragma once
/*
 * The last mremaps a client's REMAPs told of, whose late UNMAPs may not have come yet
 * (fault.c, late_unmap_of). In the client's pmem record (adopt.h), so that a successor after
 * a crash knows the dead daemon's moves when their UNMAPs reach it.
 */
#include <stdbool.h>
#include <stdint.h>

#define REMAP_RING_SIZE 16

/*
 * An mremap whose REMAP was read, and the UNMAPs the kernel sends after it: first the tail a
 * shrinking move cut off, which starts where the moved range ends, then the source. Both were
 * unmapped before the move, but reach us after it.
 */
struct recent_remap {
	uint64_t from, to, len; /* bytes */
	uint64_t seq;		/* 1 for the client's first REMAP, in the order read */
	uint64_t spare_after;	/* its tail's UNMAP spares what REMAPs after this one put there */
	bool tail_pending, source_pending;
};

/* Under the client's resolve lock and its lock. */
struct remap_ring {
	struct recent_remap r[REMAP_RING_SIZE]; /* REMAP number seq at r[(seq - 1) % size] */
	uint64_t nr;				/* REMAPs read */
};
