/* SPDX-License-Identifier: MIT */
#include "pagetable.h"

#include <stdlib.h>
#include <string.h>

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

static unsigned index_at(uint64_t vpn, int level)
{
	return (unsigned)(vpn >> (LEVEL_BITS * (LEVELS - 1 - level))) & (LEVEL_SIZE - 1);
}

struct pagetable *pagetable_new(void)
{
	struct pagetable *pt = calloc(1, sizeof(*pt));

	if (!pt)
		return NULL;
	pt->root = calloc(1, sizeof(struct node));
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
	free(p);
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

			*slot = calloc(1, last ? sizeof(struct leaf) : sizeof(struct node));
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
			free(l);
			*pp = NULL;
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
		free(n);
		*pp = NULL;
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
