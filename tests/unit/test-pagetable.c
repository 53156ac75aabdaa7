/* SPDX-License-Identifier: MIT */
/* The page table against a flat reference model, under random operations. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "pagetable.h"
#include "rangeset.h"

#define SPAN (1U << 20) /* vpns in the reference model */

static pte_t model[SPAN];
static const uint64_t base = 0x7f0000000ULL; /* a high, realistic vpn */

static int count_cb(uint64_t vpn, pte_t *pte, void *ud)
{
	uint64_t *n = ud;

	assert(vpn >= base && vpn < base + SPAN);
	assert(*pte == model[vpn - base]);
	assert(*pte != 0);
	(*n)++;
	return 0;
}

static int clear_cb(uint64_t vpn, pte_t *pte, void *ud)
{
	(void)ud;
	model[vpn - base] = 0;
	*pte = 0;
	return 0;
}

static int stop_cb(uint64_t vpn, pte_t *pte, void *ud)
{
	(void)pte;
	*(uint64_t *)ud = vpn;
	return 1;
}

static void test_random(void)
{
	struct pagetable *pt = pagetable_new();
	uint64_t n, want;

	assert(pt);
	srand(42);
	for (int round = 0; round < 200000; round++) {
		uint64_t off = (uint64_t)rand() % SPAN;
		pte_t *pte;

		switch (rand() % 4) {
		case 0:
		case 1:
			pte = pagetable_ensure(pt, base + off);
			assert(pte && *pte == model[off]);
			*pte = pte_make(PTE_STORED, 0, (uint64_t)round);
			model[off] = *pte;
			break;
		case 2:
			pte = pagetable_lookup(pt, base + off);
			assert(pte ? *pte == model[off] : model[off] == 0);
			break;
		case 3: {
			uint64_t len = (uint64_t)rand() % 5000;

			pagetable_walk(pt, base + off, base + off + len, clear_cb, NULL);
			for (uint64_t i = off; i < off + len && i < SPAN; i++)
				assert(model[i] == 0);
			break;
		}
		}
	}
	n = 0;
	pagetable_walk(pt, 0, UINT64_MAX >> 12, count_cb, &n);
	want = 0;
	for (uint64_t i = 0; i < SPAN; i++)
		want += model[i] != 0;
	assert(n == want);

	/* A walk visits in address order and stops on request. */
	uint64_t first = 0;
	assert(pagetable_walk(pt, base, base + SPAN, stop_cb, &first) == 1);
	for (uint64_t i = 0; i < first - base; i++)
		assert(model[i] == 0);

	/* Clearing everything frees the leaves. */
	pagetable_walk(pt, 0, UINT64_MAX >> 12, clear_cb, NULL);
	assert(pagetable_mem_bytes(pt) == 4096 /* the root alone */);
	pagetable_free(pt);
}

static void test_entry_encoding(void)
{
	pte_t e = pte_make(PTE_STORED, PTE_DEAD, (1ULL << 56) - 1);

	assert(pte_type(e) == PTE_STORED);
	assert(e & PTE_DEAD);
	assert(!(e & PTE_REF));
	assert(pte_payload(e) == (1ULL << 56) - 1);
}

static int gap_cb(uint64_t s, uint64_t e, void *ud)
{
	uint64_t *v = ud;

	v[v[0] * 2 + 1] = s;
	v[v[0] * 2 + 2] = e;
	v[0]++;
	return 0;
}

static void test_rangeset(void)
{
	struct rangeset s = {0};
	uint64_t gaps[16] = {0};

	assert(rangeset_add(&s, 100, 200) == 0);
	assert(rangeset_add(&s, 300, 400) == 0);
	assert(rangeset_add(&s, 200, 250) == 0); /* touches: merges */
	assert(s.nr == 2 && s.r[0].start == 100 && s.r[0].end == 250);
	assert(rangeset_contains(&s, 100) && rangeset_contains(&s, 249));
	assert(!rangeset_contains(&s, 250) && !rangeset_contains(&s, 99));
	rangeset_for_each_gap(&s, 0, 500, gap_cb, gaps);
	assert(gaps[0] == 3);
	assert(gaps[1] == 0 && gaps[2] == 100);
	assert(gaps[3] == 250 && gaps[4] == 300);
	assert(gaps[5] == 400 && gaps[6] == 500);
	assert(rangeset_remove(&s, 150, 160) == 0); /* splits */
	assert(s.nr == 3 && s.r[0].end == 150 && s.r[1].start == 160);
	assert(rangeset_remove(&s, 0, 1000) == 0);
	assert(s.nr == 0);
	assert(rangeset_add(&s, 0, 10) == 0 && rangeset_add(&s, 20, 30) == 0 &&
	       rangeset_add(&s, 5, 25) == 0);
	assert(s.nr == 1 && s.r[0].start == 0 && s.r[0].end == 30);
	rangeset_done(&s);
}

int main(void)
{
	test_entry_encoding();
	test_random();
	test_rangeset();
	printf("pagetable: all checks passed\n");
	return 0;
}
