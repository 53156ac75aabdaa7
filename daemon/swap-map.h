/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The slots of one swap area: the kernel's si->swap_map (one reference count per slot) and its
 * cluster allocator (mm/swapfile.c: cluster_alloc_swap_entry, alloc_swap_scan_cluster).
 *
 * Slot 0 holds the swap header and bad slots are marked SWAP_MAP_BAD; neither is ever handed
 * out. Slots are grouped into clusters of SWAP_CLUSTER_SLOTS. Each CPU allocates from a cluster
 * of its own, so a reclaim batch lands on consecutive slots (one large write) and allocators on
 * different CPUs do not share a lock; when that cluster is full, the CPU takes a free cluster,
 * else a nonfull one. No I/O here: this is bookkeeping only, and all of it is thread-safe.
 */

#include <stdint.h>

#define SWAP_CLUSTER_SLOTS 512 /* slots per cluster: 2 MiB, a PMD, as the kernel's */
#define SWAP_MAP_MAX 0xfe      /* highest reference count a slot can hold */
#define SWAP_MAP_BAD 0xff      /* the header and bad slots */

struct swap_map;

/*
 * A map of nr_slots slots (the header's last_page + 1), slot 0 being the header, the nr_bad
 * slots in bad[] marked bad (duplicates and 0 are ignored). nr_cpus is the number of per-CPU
 * current clusters (0: the number of configured CPUs). Returns 0 and the map in *ret, -EINVAL
 * (nr_slots < 2, or no good slot), -ENOMEM.
 */
int swap_map_new(uint32_t nr_slots, const uint32_t *bad, uint32_t nr_bad, unsigned nr_cpus,
		 struct swap_map **ret);
void swap_map_free(struct swap_map *m);

/*
 * Takes up to nr free slots, each with a reference count of 1, preferring consecutive slots of
 * the calling CPU's current cluster. Returns the number taken (1..nr), their offsets in
 * ret_offsets (ascending within a run), or -ENOSPC when no slot is free.
 */
int swap_map_alloc(struct swap_map *m, unsigned nr, uint32_t *ret_offsets);

/*
 * Takes the free slot at offset with a reference count of 1, as swap_map_alloc() would have:
 * a restarted daemon keeps the slots its predecessor's page tables name (adopt.h). Returns 0,
 * -EBUSY when the slot is in use already, -EINVAL when offset is out of range or bad.
 */
int swap_map_reserve(struct swap_map *m, uint32_t offset);

/*
 * swap_duplicate(): one more reference to an allocated slot. Returns 0, -EINVAL when offset is
 * out of range, free or bad, -EOVERFLOW when the count is already SWAP_MAP_MAX (the caller
 * copies the page to a slot of its own instead).
 */
int swap_map_duplicate(struct swap_map *m, uint32_t offset);

/*
 * swap_free(): drops one reference. Returns the references left (0: the slot is free again), or
 * -EINVAL when offset is out of range, free or bad.
 */
int swap_map_put(struct swap_map *m, uint32_t offset);

/* The slot's count: 0 (free), 1..SWAP_MAP_MAX, SWAP_MAP_BAD; -EINVAL when out of range. */
int swap_map_count(struct swap_map *m, uint32_t offset);

uint32_t swap_map_nr_slots(const struct swap_map *m);  /* header and bad slots included */
uint32_t swap_map_nr_usable(const struct swap_map *m); /* slots that can hold a page */
uint32_t swap_map_nr_used(const struct swap_map *m);   /* slots holding a page now */
