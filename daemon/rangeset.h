/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A set of disjoint address ranges, sorted and merged: the parts of a client's address space
 * registered with its userfaultfd. Not thread-safe; the client's lock protects it.
 */

#include <stdbool.h>
#include <stdint.h>

#include "protocol.h"

struct rangeset {
	struct mem_range *r;
	unsigned nr, cap;
};

int rangeset_add(struct rangeset *s, uint64_t start, uint64_t end); /* 0 or -ENOMEM */
int rangeset_remove(struct rangeset *s, uint64_t start, uint64_t end);
bool rangeset_contains(const struct rangeset *s, uint64_t addr);

/* Calls fn for each part of [start, end) not in the set. Returns fn's non-zero return or 0. */
typedef int (*rangeset_fn)(uint64_t start, uint64_t end, void *userdata);
int rangeset_for_each_gap(const struct rangeset *s, uint64_t start, uint64_t end, rangeset_fn fn,
			  void *userdata);
void rangeset_done(struct rangeset *s);
