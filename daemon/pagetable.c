/* SPDX-License-Identifier: MIT */
#include "pagetable.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "pmem.h"

#define LEVEL_BITS 9
#define LEVEL_SIZE (1U << LEVEL_BITS)
#define LEVELS 5 /* 45 bits of page number: 57-bit addresses (5-level paging) */

struct node {
	void *slot[LEVEL_SIZE]; /* next level, or at the last level a struct leaf */
};

struct leaf {
	pte_t pte[LEVEL_SIZE];
	uint32_t shadow[LEVEL_SIZE]; /* workingset shadows of STORED entries, see pagetable.h */
};

struct pagetable {
	struct node *root;
	uint64_t nr_nodes, nr_leaves;
};

static_assert(sizeof(struct node) == PAGE_SIZE, "nodes are pages");
static_assert(offsetof(struct leaf, pte) == 0, "a leaf's entries come first");

/* Nodes live in pmem when the daemon has it: a restarted daemon walks the tree (pmem.h). A
 * leaf takes two pages there, its shadows the first half of the second. */
static void *node_alloc(size_t bytes)
{
	return pmem_enabled() ? pmem_alloc(bytes) : calloc(1, bytes);
}

static void node_free(void *p, size_t bytes)
{
	if (pmem_contains(p))
		pmem_free(p, bytes);
	else
		free(p);
}

static unsigned index_at(uint64_t vpn, int level)
{
	return (unsigned)(vpn >> (LEVEL_BITS * (LEVELS - 1 - level))) & (LEVEL_SIZE - 1);
}

struct pagetable *pagetable_new(void)
{
	struct pagetable *pt = calloc(1, sizeof(*pt));

	if (!pt)
		return NULL;
	pt->root = node_alloc(sizeof(struct node));
	if (!pt->root) {
		free(pt);
		return NULL;
	}
	pt->nr_nodes = 1;
	return pt;
}

static void free_level(void *p, int level)
{
	if (!p)
		return;
	if (level < LEVELS - 1) {
		struct node *n = p;

		for (unsigned i = 0; i < LEVEL_SIZE; i++)
			free_level(n->slot[i], level + 1);
	}
	node_free(p, level < LEVELS - 1 ? sizeof(struct node) : sizeof(struct leaf));
}

void pagetable_free(struct pagetable *pt)
{
	if (!pt)
		return;
	free_level(pt->root, 0);
	free(pt);
}

pte_t *pagetable_lookup(struct pagetable *pt, uint64_t vpn)
{
	void *p = pt->root;

	for (int level = 0; level < LEVELS - 1 && p; level++)
		p = ((struct node *)p)->slot[index_at(vpn, level)];
	if (!p)
		return NULL;
	return &((struct leaf *)p)->pte[index_at(vpn, LEVELS - 1)];
}

uint32_t *pagetable_shadow(struct pagetable *pt, uint64_t vpn)
{
	pte_t *pte = pagetable_lookup(pt, vpn);

	/* pte[] is the leaf's first member: its base is the leaf. */
	if (!pte)
		return NULL;
	return &((struct leaf *)(pte - index_at(vpn, LEVELS - 1)))->shadow[index_at(vpn, LEVELS - 1)];
}

pte_t *pagetable_ensure(struct pagetable *pt, uint64_t vpn)
{
	struct node *n = pt->root;

	for (int level = 0; level < LEVELS - 1; level++) {
		void **slot = &n->slot[index_at(vpn, level)];

		if (!*slot) {
			bool last = level == LEVELS - 2;

			/* Zeroed before it is linked. */
			*slot = node_alloc(last ? sizeof(struct leaf) : sizeof(struct node));
			if (!*slot)
				return NULL;
			if (last)
				pt->nr_leaves++;
			else
				pt->nr_nodes++;
		}
		n = *slot;
	}
	return &((struct leaf *)n)->pte[index_at(vpn, LEVELS - 1)];
}

static bool leaf_empty(const struct leaf *l)
{
	for (unsigned i = 0; i < LEVEL_SIZE; i++)
		if (l->pte[i] != 0)
			return false;
	return true;
}

static bool node_empty(const struct node *n)
{
	for (unsigned i = 0; i < LEVEL_SIZE; i++)
		if (n->slot[i])
			return false;
	return true;
}

struct walk {
	struct pagetable *pt;
	uint64_t start, end;
	pte_visit_fn fn;
	void *userdata;
};

/* Walks the subtree p, which covers page numbers [base, base + span). */
static int walk_level(struct walk *w, void **pp, int level, uint64_t base)
{
	uint64_t span = 1ULL << (LEVEL_BITS * (LEVELS - level));
	uint64_t child_span = span >> LEVEL_BITS;
	int r = 0;

	if (level == LEVELS - 1) {
		struct leaf *l = *pp;
		uint64_t lo = w->start > base ? w->start - base : 0;
		uint64_t hi = (w->end - base < LEVEL_SIZE ? w->end - base : LEVEL_SIZE);

		for (uint64_t i = lo; i < hi && r == 0; i++)
			if (l->pte[i] != 0)
				r = w->fn(base + i, &l->pte[i], w->userdata);
		if (leaf_empty(l)) {
			/* Unlinked before it is freed (and perhaps reused by another tree). */
			*pp = NULL;
			node_free(l, sizeof(*l));
			w->pt->nr_leaves--;
		}
		return r;
	}

	struct node *n = *pp;
	uint64_t first = w->start > base ? (w->start - base) / child_span : 0;

	for (uint64_t i = first; i < LEVEL_SIZE && r == 0; i++) {
		uint64_t child_base = base + i * child_span;

		if (child_base >= w->end)
			break;
		if (n->slot[i])
			r = walk_level(w, &n->slot[i], level + 1, child_base);
	}
	if (level > 0 && node_empty(n)) {
		*pp = NULL;
		node_free(n, sizeof(*n));
		w->pt->nr_nodes--;
	}
	return r;
}

int pagetable_walk(struct pagetable *pt, uint64_t start_vpn, uint64_t end_vpn, pte_visit_fn fn,
		   void *userdata)
{
	struct walk w = {.pt = pt, .start = start_vpn, .end = end_vpn, .fn = fn, .userdata = userdata};
	void *root = pt->root;

	if (start_vpn >= end_vpn)
		return 0;
	return walk_level(&w, &root, 0, 0);
}

uint64_t pagetable_mem_bytes(const struct pagetable *pt)
{
	return pt->nr_nodes * sizeof(struct node) + pt->nr_leaves * sizeof(struct leaf);
}

uint64_t pagetable_root_addr(const struct pagetable *pt)
{
	return (uint64_t)(uintptr_t)pt->root;
}

/* Recovery: the dead daemon's tree under old_root, read through the view. */
static int view_walk_level(const struct pmem_view *v, uint64_t old, int level, uint64_t base,
			   pte_view_fn fn, void *userdata)
{
	uint64_t child_span = 1ULL << (LEVEL_BITS * (LEVELS - 1 - level));
	const void *p = pmem_view_ptr(v, old, level == LEVELS - 1 ? sizeof(struct leaf) : PAGE_SIZE);
	int r = 0;

	if (!p)
		return -EBADMSG;
	if (level == LEVELS - 1) {
		const struct leaf *l = p;

		for (unsigned i = 0; i < LEVEL_SIZE && r == 0; i++)
			if (l->pte[i] != 0)
				r = fn(base + i, l->pte[i], userdata);
		return r;
	}
	const struct node *n = p;

	for (unsigned i = 0; i < LEVEL_SIZE && r == 0; i++)
		if (n->slot[i])
			r = view_walk_level(v, (uint64_t)(uintptr_t)n->slot[i], level + 1,
					    base + i * child_span, fn, userdata);
	return r;
}

int pagetable_view_walk(const struct pmem_view *v, uint64_t old_root, pte_view_fn fn,
			void *userdata)
{
	return view_walk_level(v, old_root, 0, 0, fn, userdata);
}
