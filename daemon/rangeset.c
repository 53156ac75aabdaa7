/* SPDX-License-Identifier: MIT */
#include "rangeset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int reserve(struct rangeset *s, unsigned n)
{
	struct mem_range *r;
	unsigned cap;

	if (n <= s->cap)
		return 0;
	cap = s->cap ? s->cap * 2 : 16;
	while (cap < n)
		cap *= 2;
	r = realloc(s->r, cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	s->r = r;
	s->cap = cap;
	return 0;
}

int rangeset_add(struct rangeset *s, uint64_t start, uint64_t end)
{
	unsigned i = 0, j;

	if (start >= end)
		return 0;
	/* First range that ends at or after start (touching ranges merge). */
	while (i < s->nr && s->r[i].end < start)
		i++;
	j = i;
	while (j < s->nr && s->r[j].start <= end) {
		start = start < s->r[j].start ? start : s->r[j].start;
		end = end > s->r[j].end ? end : s->r[j].end;
		j++;
	}
	if (i == j) {
		if (reserve(s, s->nr + 1) < 0)
			return -ENOMEM;
		memmove(&s->r[i + 1], &s->r[i], (s->nr - i) * sizeof(s->r[0]));
		s->nr++;
	} else if (j > i + 1) {
		memmove(&s->r[i + 1], &s->r[j], (s->nr - j) * sizeof(s->r[0]));
		s->nr -= j - i - 1;
	}
	s->r[i] = (struct mem_range){start, end};
	return 0;
}

int rangeset_remove(struct rangeset *s, uint64_t start, uint64_t end)
{
	for (unsigned i = 0; i < s->nr;) {
		struct mem_range *c = &s->r[i];

		if (c->end <= start || c->start >= end) {
			i++;
			continue;
		}
		if (c->start < start && c->end > end) {
			/* Split in two. */
			uint64_t old_end = c->end;

			if (reserve(s, s->nr + 1) < 0)
				return -ENOMEM;
			c = &s->r[i];
			memmove(&s->r[i + 2], &s->r[i + 1], (s->nr - i - 1) * sizeof(s->r[0]));
			s->nr++;
			c->end = start;
			s->r[i + 1] = (struct mem_range){end, old_end};
			return 0;
		}
		if (c->start < start) {
			c->end = start;
			i++;
		} else if (c->end > end) {
			c->start = end;
			i++;
		} else {
			memmove(&s->r[i], &s->r[i + 1], (s->nr - i - 1) * sizeof(s->r[0]));
			s->nr--;
		}
	}
	return 0;
}

bool rangeset_contains(const struct rangeset *s, uint64_t addr)
{
	unsigned lo = 0, hi = s->nr;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (addr < s->r[mid].start)
			hi = mid;
		else if (addr >= s->r[mid].end)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

int rangeset_for_each_gap(const struct rangeset *s, uint64_t start, uint64_t end, rangeset_fn fn,
			  void *userdata)
{
	uint64_t a = start;
	int r;

	for (unsigned i = 0; i < s->nr && a < end; i++) {
		if (s->r[i].end <= a)
			continue;
		if (s->r[i].start >= end)
			break;
		if (s->r[i].start > a) {
			r = fn(a, s->r[i].start, userdata);
			if (r)
				return r;
		}
		a = s->r[i].end;
	}
	if (a < end)
		return fn(a, end, userdata);
	return 0;
}

void rangeset_done(struct rangeset *s)
{
	free(s->r);
	*s = (struct rangeset){0};
}
