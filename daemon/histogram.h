/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Fault service times: a log-linear histogram of microseconds, four buckets per power of two
 * (so a percentile read from it is within 25% of the measured value), lock-free.
 */

#include <stdatomic.h>
#include <stdint.h>

#define HIST_SUB_BITS 2
#define HIST_SUB (1U << HIST_SUB_BITS)
#define HIST_BUCKETS (28 * HIST_SUB) /* up to about 2^28 µs, ~4.5 minutes */

struct histogram {
	_Atomic uint64_t count[HIST_BUCKETS];
};

static inline unsigned hist_bucket(uint64_t usec)
{
	unsigned e, i;

	if (usec < HIST_SUB)
		return (unsigned)usec;
	e = 63U - (unsigned)__builtin_clzll(usec); /* >= HIST_SUB_BITS */
	i = (e - HIST_SUB_BITS + 1) * HIST_SUB + (unsigned)((usec >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
	return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1;
}

/* The largest value that falls into bucket i (inclusive), in µs. */
static inline uint64_t hist_bucket_max(unsigned i)
{
	unsigned e, sub;

	if (i < HIST_SUB)
		return i;
	e = i / HIST_SUB + HIST_SUB_BITS - 1;
	sub = i % HIST_SUB;
	return ((uint64_t)(HIST_SUB + sub + 1) << (e - HIST_SUB_BITS)) - 1;
}

static inline void hist_add(struct histogram *h, uint64_t usec)
{
	atomic_fetch_add_explicit(&h->count[hist_bucket(usec)], 1, memory_order_relaxed);
}

static inline void hist_snapshot(const struct histogram *h, uint64_t out[HIST_BUCKETS])
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		out[i] = atomic_load_explicit(&h->count[i], memory_order_relaxed);
}

/* The upper bound of the bucket holding the p-th quantile (0 < p <= 1); 0 when empty. */
static inline uint64_t hist_quantile(const uint64_t snap[HIST_BUCKETS], double p)
{
	uint64_t total = 0, seen = 0, want;

	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		total += snap[i];
	if (!total)
		return 0;
	want = (uint64_t)((double)total * p + 0.999999);
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += snap[i];
		if (seen >= want)
			return hist_bucket_max(i);
	}
	return hist_bucket_max(HIST_BUCKETS - 1);
}
