/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Victim selection: the kernel's two-list CLOCK (mm/vmscan.c) and workingset refault detection
 * (mm/workingset.c), over one client's page table. Pure policy: no process, no store, no locks
 * of its own (the caller holds the client's lock), so tests drive it with synthetic traces.
 *
 * The lists are not lists: a PRESENT entry is on the active list when it has PTE_ACTIVE, else
 * on the inactive one, and each list has a clock hand that walks the table in address order,
 * looking only at its own entries. No per-page nodes: a client of millions of pages costs
 * nothing more than its page table.
 *
 * References: memext cannot see accessed bits. It sees a fault-in (zero fill, swap-in,
 * readahead: PTE_REF set on the new entry, like the instantiating fault's young PTE) and a
 * write-protect fault on a clean page (folio_mark_accessed: a second reference activates).
 *
 *   new pages          inactive, REF
 *   activation         refault within the workingset size, or a second reference while
 *                      inactive; REF stays set
 *   shrink_active_list runs while the inactive list is low (inactive_is_low), and slowly
 *                      all the time (lru.c: ACTIVE_AGING_TURNS): the active hand clears REF
 *                      (activated since it last passed), or moves the page to the inactive
 *                      list without REF, PTE_WORKINGSET set
 *   shrink_inactive    the inactive hand: REF -> cleared, one more turn (second chance);
 *                      no REF -> isolated as a victim
 *   eviction           nonresident_age++; the shadow (age, workingset bit) is stored beside the
 *                      STORED entry (pagetable_shadow())
 *   refault            refault_distance = age now - age at eviction; <= workingset size:
 *                      activate at once (nonresident_age++), and with the workingset bit,
 *                      count a restore
 *   unevictable        a victim the kernel refused to move for a reason of its mapping
 *                      (mlocked, or not read-write: UFFDIO_MOVE's EINVAL; pinned: its EBUSY
 *                      on a page made exclusive) is culled to the
 *                      unevictable list (PTE_UNEVICTABLE), which no hand looks at, instead of
 *                      being tried again on every turn (the kernel's PG_mlocked and
 *                      unevictable LRU). munlock, munlockall or mprotect back to read-write
 *                      rescue it (lru_rescue); so does a slow timer (reclaim.c), for programs
 *                      that make those calls without libc
 *
 * Shadows are 32 bits: EVICTION_BITS (31) of age, bucket_order 0, and the workingset bit. The
 * age wraps after 2^31 evictions + activations of one client; a page evicted that long ago and
 * then refaulting may be misjudged, as in the kernel, where EVICTION_BITS also truncate.
 */

#include <stdbool.h>
#include <stdint.h>

#include "pagetable.h"

#define EVICTION_BITS 31
#define EVICTION_MASK ((UINT32_C(1) << EVICTION_BITS) - 1)
#define SHADOW_WORKINGSET (UINT32_C(1) << EVICTION_BITS)

/* One client's lists. Plain integers: the client's lock protects them. */
struct lru {
	uint64_t nr_active;	  /* PRESENT entries with PTE_ACTIVE */
	uint64_t nr_unevictable;  /* PRESENT entries with PTE_UNEVICTABLE; the rest are inactive */
	uint64_t active_hand;	  /* vpn where the active list's next scan starts */
	uint64_t inactive_hand;	  /* vpn where the inactive list's next scan starts */
	uint32_t nonresident_age; /* evictions + activations, EVICTION_BITS wide */
	uint64_t refault;	  /* workingset_refault: STORED pages brought back */
	uint64_t activate;	  /* workingset_activate: ... close enough to be activated */
	uint64_t restore;	  /* workingset_restore: ... of those, active before eviction */
	uint64_t deactivated;	  /* pages the active hand moved to the inactive list */
	uint64_t aging_credit;	  /* active pages owed to the active hand's slow turn, times
				   * ACTIVE_AGING_TURNS * nr_present (lru.c) */
};

/*
 * Isolates a victim: the callback takes the PRESENT entry out of the lists (the daemon marks it
 * MOVING). Returns 0 to go on, non-zero when it wants no more.
 */
typedef int (*lru_isolate_fn)(uint64_t vpn, pte_t *pte, void *userdata);

/*
 * Picks up to want victims among the nr_present PRESENT entries of pt (the unevictable ones
 * included: lru.c leaves them out): ages the active list if
 * the inactive one is low, then runs the inactive hand. Returns the number isolated; adds the
 * entries the hands looked at to *ret_scanned.
 */
unsigned lru_shrink(struct lru *l, struct pagetable *pt, uint64_t nr_present, unsigned want,
		    lru_isolate_fn isolate, void *userdata, uint64_t *ret_scanned);

/*
 * The run of inactive PRESENT entries around the victim vpn, at most max long (max >= 1):
 * its first vpn and length. The inactive hand takes the run instead of the victim alone, REF
 * or not (docs/ARCHITECTURE.md, "Victims in runs"), so that one UFFDIO_MOVE covers it.
 */
#ifndef LRU_RUN_MAX
#define LRU_RUN_MAX 16
#endif
void lru_victim_run(struct pagetable *pt, uint64_t vpn, unsigned max, uint64_t *ret_first,
		    unsigned *ret_nr);

/* Whether the inactive list should grow at the active one's expense (the kernel's ratio:
 * inactive * int_sqrt(10 * GiB) >= active, 1 below 1 GiB). */
bool inactive_is_low(uint64_t nr_inactive, uint64_t nr_active);

/* The pages a refaulting page competes with: the active list, or what it may grow to while
 * it is smaller (see lru.c for why). */
uint64_t lru_workingset_size(const struct lru *l, uint64_t nr_present);

/* A page leaves memory: ages and returns its shadow. workingset: PTE_WORKINGSET was set. */
uint32_t workingset_eviction(struct lru *l, bool workingset);

/*
 * A STORED page with this shadow comes back, with nr_present pages resident before it. Counts
 * the refault and returns the LRU flags of its new PRESENT entry: 0 (inactive), PTE_ACTIVE
 * (activated), PTE_ACTIVE | PTE_WORKINGSET (activated and restored). nr_active follows.
 */
uint64_t workingset_refault(struct lru *l, uint32_t shadow, uint64_t nr_present);

/* A reference to a resident page (a write-protect fault): folio_mark_accessed. */
void lru_mark_accessed(struct lru *l, pte_t *pte);

/* A PRESENT entry leaves the lists (dropped, unmapped, reset): keeps the counts right. */
void lru_del(struct lru *l, pte_t e);

/* The kernel refused to move this page out for good: the entry it gets (PRESENT, other flags
 * kept, on the unevictable list), counted. e must be on no list yet (a victim's). */
pte_t lru_cull(struct lru *l, pte_t e);

/* Unevictable entries in [start_vpn, end_vpn) go back to the inactive list, unreferenced, so
 * the next shrink tries them first. Returns how many. */
uint64_t lru_rescue(struct lru *l, struct pagetable *pt, uint64_t start_vpn, uint64_t end_vpn);

/* The refault distance of a shadow now, mod 2^EVICTION_BITS. */
uint32_t lru_refault_distance(const struct lru *l, uint32_t shadow);
