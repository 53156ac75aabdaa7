/* SPDX-License-Identifier: MIT */
#include "lru.h"

#include "macro.h"

#define VPN_END VPN_USER_END /* entries set aside beyond are on no list */
#define GIB_PAGES ((UINT64_C(1) << 30) / PAGE_SIZE)
/*
 * The active hand turns at least once per ACTIVE_AGING_TURNS * nr_present evictions, balanced
 * or not. The kernel ages the active list only when the inactive one is low, which happens
 * all the time there because references seen on the inactive list keep activating pages. We
 * see none, so a page activated once and never used again would stay active for good (a
 * process reading the rest of its memory would never push it out). Slow enough that a page
 * in use pays one refault per about 2 * ACTIVE_AGING_TURNS * nr_present evictions.
 */
#ifndef ACTIVE_AGING_TURNS
#define ACTIVE_AGING_TURNS 32
#endif

/* The pages on the active and inactive lists, of nr_present resident. */
static uint64_t evictable(const struct lru *l, uint64_t nr_present)
{
	return nr_present > l->nr_unevictable ? nr_present - l->nr_unevictable : 0;
}

static uint64_t int_sqrt(uint64_t x)
{
	uint64_t r = 0;

	while ((r + 1) * (r + 1) <= x)
		r++;
	return r;
}

/* mm/vmscan.c inactive_is_low(): big lists keep a smaller inactive share. */
static uint64_t inactive_ratio(uint64_t nr_pages)
{
	uint64_t gb = nr_pages / GIB_PAGES;

	return gb ? int_sqrt(10 * gb) : 1;
}

bool inactive_is_low(uint64_t nr_inactive, uint64_t nr_active)
{
	return nr_inactive * inactive_ratio(nr_inactive + nr_active) < nr_active;
}

/*
 * The kernel compares the refault distance with the active list (anon refaults, no file
 * pages). Its active list fills up through accessed bits seen on the inactive list; we have
 * none, so an empty active list would stay empty and no refault would ever count as recent.
 * Until the active list reaches the size inactive_is_low() lets it have, take that size: the
 * pages the page could have claimed had it been activated. Once warm both are the same.
 */
uint64_t lru_workingset_size(const struct lru *l, uint64_t nr_present)
{
	uint64_t nr = evictable(l, nr_present), ratio = inactive_ratio(nr);
	uint64_t target = nr / (ratio + 1) * ratio;

	return MAX(l->nr_active, target);
}

/* mm/workingset.c workingset_age_nonresident(). */
static void workingset_age_nonresident(struct lru *l, uint32_t nr_pages)
{
	l->nonresident_age = (l->nonresident_age + nr_pages) & EVICTION_MASK;
}

uint32_t workingset_eviction(struct lru *l, bool workingset)
{
	uint32_t shadow = l->nonresident_age | (workingset ? SHADOW_WORKINGSET : 0);

	workingset_age_nonresident(l, 1);
	return shadow;
}

uint32_t lru_refault_distance(const struct lru *l, uint32_t shadow)
{
	return (l->nonresident_age - (shadow & EVICTION_MASK)) & EVICTION_MASK;
}

uint64_t workingset_refault(struct lru *l, uint32_t shadow, uint64_t nr_present)
{
	uint64_t flags = PTE_ACTIVE;

	l->refault++;
	if (lru_refault_distance(l, shadow) > lru_workingset_size(l, nr_present))
		return 0;
	workingset_age_nonresident(l, 1);
	l->activate++;
	l->nr_active++;
	if (shadow & SHADOW_WORKINGSET) {
		l->restore++;
		flags |= PTE_WORKINGSET;
	}
	return flags;
}

void lru_mark_accessed(struct lru *l, pte_t *pte)
{
	if (pte_type(*pte) != PTE_PRESENT || (*pte & (PTE_ACTIVE | PTE_UNEVICTABLE)))
		return;
	if (!(*pte & PTE_REF)) {
		*pte |= PTE_REF;
		return;
	}
	/* Referenced twice while inactive: workingset_activation(). REF stays: the active
	 * hand spares it once (see deactivate_one()). */
	*pte |= PTE_ACTIVE;
	l->nr_active++;
	workingset_age_nonresident(l, 1);
}

void lru_del(struct lru *l, pte_t e)
{
	if (pte_type(e) != PTE_PRESENT)
		return;
	if (e & PTE_ACTIVE)
		l->nr_active--;
	if (e & PTE_UNEVICTABLE)
		l->nr_unevictable--;
}

pte_t lru_cull(struct lru *l, pte_t e)
{
	l->nr_unevictable++;
	return (e & ~(PTE_TYPE_MASK | PTE_ACTIVE | PTE_REF)) | PTE_PRESENT | PTE_UNEVICTABLE;
}

static int rescue_one(uint64_t vpn, pte_t *pte, void *userdata)
{
	uint64_t *nr = userdata;

	(void)vpn;
	if (pte_type(*pte) == PTE_PRESENT && (*pte & PTE_UNEVICTABLE)) {
		*pte &= ~(PTE_UNEVICTABLE | PTE_REF);
		(*nr)++;
	}
	return 0;
}

uint64_t lru_rescue(struct lru *l, struct pagetable *pt, uint64_t start_vpn, uint64_t end_vpn)
{
	uint64_t nr = 0;

	if (l->nr_unevictable)
		pagetable_walk(pt, start_vpn, end_vpn, rescue_one, &nr);
	l->nr_unevictable -= nr;
	return nr;
}

/* A clock hand: walks the table from where it stands, wrapping, for up to half_turns halves
 * of a turn or until fn returns non-zero, and stays after the last entry fn saw. */
struct hand_walk {
	pte_visit_fn fn;
	void *ctx;
	uint64_t last_vpn;
};

static int hand_visit(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct hand_walk *h = userdata;

	h->last_vpn = vpn;
	return h->fn(vpn, pte, h->ctx);
}

static void hand_run(struct pagetable *pt, uint64_t *hand, int half_turns, pte_visit_fn fn,
		     void *ctx)
{
	const uint64_t start = *hand;

	for (int pass = 0; pass < half_turns; pass++) {
		uint64_t from = pass % 2 == 0 ? start : 0, to = pass % 2 == 0 ? VPN_END : start;
		struct hand_walk h = {.fn = fn, .ctx = ctx};

		if (pagetable_walk(pt, from, to, hand_visit, &h) != 0) {
			*hand = h.last_vpn + 1 >= VPN_END ? 0 : h.last_vpn + 1;
			return;
		}
		*hand = to == VPN_END ? 0 : to;
	}
}

struct scan_ctx {
	struct lru *l;
	struct pagetable *pt;
	uint64_t nr_evictable; /* PRESENT entries on the active and inactive lists */
	uint64_t keep_inactive; /* shrink_active_list: stop once the inactive list has this */
	uint64_t active_quota;	/* ... and the active hand has looked at this many pages */
	uint64_t active_scanned;
	unsigned want, nr_taken;
	uint64_t scanned;
	lru_isolate_fn isolate;
	void *userdata;
};

static bool active_balanced(const struct scan_ctx *s)
{
	uint64_t nr_inactive =
		s->nr_evictable > s->l->nr_active ? s->nr_evictable - s->l->nr_active : 0;

	return s->l->nr_active == 0 ||
	       (nr_inactive >= s->keep_inactive &&
		!inactive_is_low(nr_inactive - s->keep_inactive, s->l->nr_active));
}

static bool active_done(const struct scan_ctx *s)
{
	return active_balanced(s) && s->active_scanned >= s->active_quota;
}

/*
 * shrink_active_list(). The kernel deactivates anon pages whether referenced or not, from the
 * tail of a list kept in activation order, so the longest active goes first. A clock has no
 * order: a page activated (REF set by its fault) since the hand last passed is spared once, so
 * the hand takes pages activated at least one turn ago, close to the kernel's order. Without
 * this, a page activated a moment ago could be demoted before one activated long ago.
 */
static int deactivate_one(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct scan_ctx *s = userdata;

	(void)vpn;
	if (pte_type(*pte) != PTE_PRESENT || !(*pte & PTE_ACTIVE))
		return 0;
	s->scanned++;
	s->active_scanned++;
	if (*pte & PTE_REF) {
		*pte &= ~PTE_REF;
		return active_done(s);
	}
	*pte = (*pte & ~PTE_ACTIVE) | PTE_WORKINGSET;
	s->l->nr_active--;
	s->l->deactivated++;
	return active_done(s);
}

static bool run_candidate(struct pagetable *pt, uint64_t vpn)
{
	pte_t *pte = vpn < VPN_END ? pagetable_lookup(pt, vpn) : NULL;

	return pte && pte_type(*pte) == PTE_PRESENT && !(*pte & (PTE_ACTIVE | PTE_UNEVICTABLE));
}

void lru_victim_run(struct pagetable *pt, uint64_t vpn, unsigned max, uint64_t *ret_first,
		    unsigned *ret_nr)
{
	uint64_t lo = vpn, hi = vpn + 1;

	while (hi - lo < max && lo > 0 && run_candidate(pt, lo - 1))
		lo--;
	while (hi - lo < max && run_candidate(pt, hi))
		hi++;
	*ret_first = lo;
	*ret_nr = (unsigned)(hi - lo);
}

/* shrink_inactive_list() with folio_check_references(): REF buys one more turn. */
static int shrink_one(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct scan_ctx *s = userdata;
	uint64_t first;
	unsigned nr;

	if (pte_type(*pte) != PTE_PRESENT || (*pte & (PTE_ACTIVE | PTE_UNEVICTABLE)))
		return 0;
	s->scanned++;
	if (*pte & PTE_REF) {
		*pte &= ~PTE_REF;
		return 0;
	}
	/* The victim takes its inactive neighbours along: one UFFDIO_MOVE a run. */
	lru_victim_run(s->pt, vpn, MIN(LRU_RUN_MAX, s->want - s->nr_taken), &first, &nr);
	s->scanned += first + nr - (vpn + 1); /* the hand has seen those before vpn */
	for (unsigned i = 0; i < nr; i++) {
		pte_t *p = first + i == vpn ? pte : pagetable_lookup(s->pt, first + i);

		s->nr_taken++;
		if (s->isolate(first + i, p, s->userdata))
			return 1;
	}
	return s->nr_taken == s->want;
}

unsigned lru_shrink(struct lru *l, struct pagetable *pt, uint64_t nr_present, unsigned want,
		    lru_isolate_fn isolate, void *userdata, uint64_t *ret_scanned)
{
	struct scan_ctx s = {
		.l = l,
		.pt = pt,
		.nr_evictable = evictable(l, nr_present),
		.keep_inactive = want, /* the inactive list stays balanced after this batch */
		.want = want,
		.isolate = isolate,
		.userdata = userdata,
	};

	if (want == 0 || s.nr_evictable == 0)
		return 0;
	/* A share of a page per eviction: the remainder carries over to the next batch. */
	l->aging_credit += (uint64_t)want * l->nr_active;
	s.active_quota = l->aging_credit / (ACTIVE_AGING_TURNS * s.nr_evictable);
	l->aging_credit -= s.active_quota * ACTIVE_AGING_TURNS * s.nr_evictable;
	/* Three half-turns at most, as the inactive hand: the first may only clear REF. */
	if (!active_done(&s))
		hand_run(pt, &l->active_hand, 3, deactivate_one, &s);
	/* Three half-turns at most: the first may only clear reference bits. */
	hand_run(pt, &l->inactive_hand, 3, shrink_one, &s);
	*ret_scanned += s.scanned;
	return s.nr_taken;
}
