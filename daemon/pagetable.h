/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A client's page table: one 64-bit entry per virtual page of its registered memory, in a
 * radix tree shaped like the hardware's (5 levels of 512), so range operations (munmap of a
 * huge reservation, mremap) skip the parts that hold nothing. Like swp_entry_t, an entry is a
 * type and a payload:
 *
 *   NONE     nothing known: never touched, or dropped by the application. A fault maps zeroes.
 *   PRESENT  the page is mapped in the process. REF: faulted in (or written) since its list's
 *            clock hand passed. ACTIVE: on the active list, else the inactive (daemon/lru.h).
 *            CLEAN: brought back write-protected and not written since; payload = the stored
 *            copy, which evicting it again reuses (no compression). UNEVICTABLE: the kernel
 *            refused to move it out (mlocked, pinned, or not read-write): on neither list
 *            (lru.h).
 *   MOVING   in a reclaim batch: the agent may have moved it to staging; payload = its
 *            staging slot. Faults wait for the batch; DEAD: the application removed the
 *            range meanwhile, discard the content; CANCEL: copied back for the agent itself.
 *   STORED   evicted; payload = store handle. Its shadow (the eviction's workingset age,
 *            daemon/lru.h) sits in the leaf beside the entry: pagetable_shadow().
 *   LOADING  a fault thread (or an I/O worker, for a page in a swap file) is bringing it
 *            back; payload = store handle, owned by that thread. DEAD: removed while an
 *            I/O worker read it; the worker frees the handle instead of installing it.
 *
 * Not thread-safe: the owning client's lock protects it.
 */

#include <stdbool.h>
#include <stdint.h>

typedef uint64_t pte_t;

enum pte_type {
	PTE_NONE = 0,
	PTE_PRESENT = 1,
	PTE_MOVING = 2,
	PTE_STORED = 3,
	PTE_LOADING = 4,
};

#define PTE_TYPE_MASK 0x7ULL
#define PTE_REF (1ULL << 3)
#define PTE_DEAD (1ULL << 4)
#define PTE_CANCEL (1ULL << 5) /* MOVING: the page is back in the process; the batch drops it */
#define PTE_CLEAN (1ULL << 6)  /* PRESENT: write-protected since it came back; payload = its
				* still valid stored copy (the swap cache) */
#define PTE_ACTIVE (1ULL << 7) /* PRESENT: on the active list (daemon/lru.h); else inactive */
/* PRESENT: was active once (PG_workingset). Every bit below the payload is taken, so it shares
 * bit 5 with CANCEL, which only MOVING entries carry. */
#define PTE_WORKINGSET PTE_CANCEL
/* PRESENT: on the unevictable list (daemon/lru.h); shares bit 4 with DEAD, which only MOVING and
 * LOADING entries carry. */
#define PTE_UNEVICTABLE PTE_DEAD
#define PTE_PAYLOAD_SHIFT 8

static inline enum pte_type pte_type(pte_t e)
{
	return (enum pte_type)(e & PTE_TYPE_MASK);
}

static inline uint64_t pte_payload(pte_t e)
{
	return e >> PTE_PAYLOAD_SHIFT;
}

static inline pte_t pte_make(enum pte_type t, uint64_t flags, uint64_t payload)
{
	return (payload << PTE_PAYLOAD_SHIFT) | flags | (uint64_t)t;
}

struct pagetable;

/*
 * Page numbers from here on name no process's page (user addresses end below 2^56, with
 * 5-level paging too): the daemon keeps there the entries of an mremap whose REMAP has not
 * come yet (fault.c, set_aside). Walks over a process's memory end here.
 */
#define VPN_USER_END (UINT64_C(1) << (56 - PAGE_SHIFT))

struct pagetable *pagetable_new(void);
void pagetable_free(struct pagetable *pt);

/* The entry of vpn, or NULL when its leaf does not exist (the entry is then NONE). */
pte_t *pagetable_lookup(struct pagetable *pt, uint64_t vpn);

/* The entry of vpn, creating its leaf; NULL only when out of memory. */
pte_t *pagetable_ensure(struct pagetable *pt, uint64_t vpn);

/*
 * Calls fn for every entry that is not NONE in [start_vpn, end_vpn), in address order. fn may
 * change the entry. A non-zero return from fn stops the walk and is returned. Leaves that hold
 * only NONE entries when the walk leaves them are freed.
 */
typedef int (*pte_visit_fn)(uint64_t vpn, pte_t *pte, void *userdata);
int pagetable_walk(struct pagetable *pt, uint64_t start_vpn, uint64_t end_vpn, pte_visit_fn fn,
		   void *userdata);

/* The root node's address: what a client's pmem record keeps. */
uint64_t pagetable_root_addr(const struct pagetable *pt);

/*
 * Recovery: calls fn for every entry that is not NONE in the tree a dead daemon kept at
 * old_root, read through a pmem view. Returns the first non-zero return of fn, or -EBADMSG
 * when a node is not in the view.
 */
struct pmem_view;
typedef int (*pte_view_fn)(uint64_t vpn, pte_t pte, void *userdata);
int pagetable_view_walk(const struct pmem_view *v, uint64_t old_root, pte_view_fn fn,
			void *userdata);

/*
 * The shadow slot of vpn, beside its entry in the same leaf, or NULL when the leaf does not
 * exist. Meaningful only while the entry is STORED (or LOADING): eviction writes it, refault
 * reads it; it is garbage otherwise, and freed with the leaf. The 64-bit entry has no room
 * left for it (3 type bits, 5 flag bits, a 56-bit store handle), hence this side array.
 */
uint32_t *pagetable_shadow(struct pagetable *pt, uint64_t vpn);

/* Bytes of memory the tree itself takes. */
uint64_t pagetable_mem_bytes(const struct pagetable *pt);
