/* SPDX-License-Identifier: MIT */
/* The fault-latency histogram: buckets tile the line, quantiles come from the right bucket. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "histogram.h"

int main(void)
{
	struct histogram h;
	uint64_t snap[HIST_BUCKETS];

	/* Every value falls in exactly one bucket, buckets are contiguous and in order, and a
	 * bucket is at most 25% wide relative to its lower bound. */
	for (uint64_t v = 0; v < (1ULL << 27); v += v < 200 ? 1 : v / 53) {
		unsigned b = hist_bucket(v);
		uint64_t lo = b ? hist_bucket_max(b - 1) + 1 : 0;

		assert(v <= hist_bucket_max(b));
		assert(v >= lo);
		if (lo >= 4)
			assert(hist_bucket_max(b) - lo + 1 <= lo / 4 + 1);
	}
	assert(hist_bucket(UINT64_MAX) == HIST_BUCKETS - 1);

	memset(&h, 0, sizeof(h));
	hist_snapshot(&h, snap);
	assert(hist_quantile(snap, 0.5) == 0);
	/* 98 fast faults of 10 µs, one of 1000 µs, one of 100000 µs. */
	for (int i = 0; i < 98; i++)
		hist_add(&h, 10);
	hist_add(&h, 1000);
	hist_add(&h, 100000);
	hist_snapshot(&h, snap);
	assert(hist_quantile(snap, 0.50) == hist_bucket_max(hist_bucket(10)));
	assert(hist_quantile(snap, 0.98) == hist_bucket_max(hist_bucket(10)));
	assert(hist_quantile(snap, 0.99) == hist_bucket_max(hist_bucket(1000)));
	assert(hist_quantile(snap, 1.0) == hist_bucket_max(hist_bucket(100000)));
	assert(hist_quantile(snap, 0.99) >= 1000 && hist_quantile(snap, 0.99) < 1250);
	printf("histogram: all checks passed\n");
	return 0;
}
