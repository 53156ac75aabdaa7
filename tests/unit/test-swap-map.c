/* SPDX-License-Identifier: MIT */
/*
 * swap_map: reference counts, bad slots, cluster allocation, reserving given slots (a restarted
 * daemon's), and random alloc/free from several threads checked against a shadow map (no slot
 * handed out twice, bad slots never).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/sysinfo.h>

#include "macro.h"
#include "swap-map.h"
#include "swap-test.h"

static void test_counts(void)
{
	const uint32_t bad[] = {5, 600, 999, 5, 0, 2000};
	struct swap_map *m;
	uint32_t s;

	CHECK_EQ(swap_map_new(1, NULL, 0, 1, &m), -EINVAL);
	CHECK_EQ(swap_map_new(2, (const uint32_t[]){1}, 1, 1, &m), -EINVAL);
	CHECK_EQ(swap_map_new(1000, bad, ARRAY_SIZE(bad), 1, &m), 0);
	CHECK_EQ(swap_map_nr_slots(m), 1000);
	CHECK_EQ(swap_map_nr_usable(m), 1000 - 1 - 3);
	CHECK_EQ(swap_map_nr_used(m), 0);
	CHECK_EQ(swap_map_count(m, 0), SWAP_MAP_BAD);
	CHECK_EQ(swap_map_count(m, 5), SWAP_MAP_BAD);
	CHECK_EQ(swap_map_count(m, 999), SWAP_MAP_BAD);
	CHECK_EQ(swap_map_count(m, 1), 0);
	CHECK_EQ(swap_map_count(m, 1000), -EINVAL);

	/* Nothing can be done to a free, bad or out-of-range slot. */
	CHECK_EQ(swap_map_duplicate(m, 1), -EINVAL);
	CHECK_EQ(swap_map_put(m, 1), -EINVAL);
	CHECK_EQ(swap_map_duplicate(m, 0), -EINVAL);
	CHECK_EQ(swap_map_put(m, 0), -EINVAL);
	CHECK_EQ(swap_map_put(m, 5), -EINVAL);
	CHECK_EQ(swap_map_put(m, 1000), -EINVAL);
	CHECK_EQ(swap_map_count(m, 5), SWAP_MAP_BAD);

	CHECK_EQ(swap_map_alloc(m, 0, &s), -EINVAL);
	CHECK_EQ(swap_map_alloc(m, 1, &s), 1);
	CHECK_EQ(s, 1);
	CHECK_EQ(swap_map_count(m, s), 1);
	CHECK_EQ(swap_map_nr_used(m), 1);
	CHECK_EQ(swap_map_duplicate(m, s), 0);
	CHECK_EQ(swap_map_count(m, s), 2);
	CHECK_EQ(swap_map_put(m, s), 1);
	CHECK_EQ(swap_map_nr_used(m), 1);
	CHECK_EQ(swap_map_put(m, s), 0);
	CHECK_EQ(swap_map_nr_used(m), 0);
	CHECK_EQ(swap_map_put(m, s), -EINVAL);

	/* Counts stop at SWAP_MAP_MAX, short of the bad marker. */
	CHECK_EQ(swap_map_alloc(m, 1, &s), 1);
	for (int i = 1; i < SWAP_MAP_MAX; i++)
		CHECK_EQ(swap_map_duplicate(m, s), 0);
	CHECK_EQ(swap_map_count(m, s), SWAP_MAP_MAX);
	CHECK_EQ(swap_map_duplicate(m, s), -EOVERFLOW);
	for (int i = SWAP_MAP_MAX - 1; i >= 0; i--)
		CHECK_EQ(swap_map_put(m, s), i);
	swap_map_free(m);
}

/*
 * Slots reserved by offset (what a dead daemon's pages are in) are never handed out by the
 * allocator, whether their cluster was free, nonfull or ends up full; once put, they are.
 */
static void test_reserve(void)
{
	enum { NR = 3 * SWAP_CLUSTER_SLOTS };
	const uint32_t bad[] = {7};
	static uint8_t reserved[NR];
	struct swap_map *m;
	uint32_t got[64], n = 0, nr_reserved = 0;
	int r;

	CHECK_EQ(swap_map_new(NR, bad, ARRAY_SIZE(bad), 1, &m), 0);
	CHECK_EQ(swap_map_reserve(m, 0), -EINVAL); /* the header */
	CHECK_EQ(swap_map_reserve(m, 7), -EINVAL);
	CHECK_EQ(swap_map_reserve(m, NR), -EINVAL);
	/* Every third slot of cluster 0, all of cluster 1 (it becomes full), one of cluster 2. */
	for (uint32_t s = 1; s < NR; s++) {
		if (s == 7 || !((s < SWAP_CLUSTER_SLOTS && s % 3 == 0) ||
				(s >= SWAP_CLUSTER_SLOTS && s < 2 * SWAP_CLUSTER_SLOTS) ||
				s == 2 * SWAP_CLUSTER_SLOTS + 100))
			continue;
		CHECK_EQ(swap_map_reserve(m, s), 0);
		reserved[s] = 1;
		nr_reserved++;
	}
	CHECK_EQ(swap_map_reserve(m, 3), -EBUSY);
	CHECK_EQ(swap_map_count(m, 3), 1);
	CHECK_EQ(swap_map_nr_used(m), nr_reserved);
	/* The allocator hands out exactly the other slots, each once. */
	while ((r = swap_map_alloc(m, 64, got)) > 0)
		for (int i = 0; i < r; i++, n++) {
			CHECK(got[i] > 0 && got[i] < NR && got[i] != 7);
			CHECK_EQ(reserved[got[i]], 0);
			reserved[got[i]] = 2;
		}
	CHECK_EQ(r, -ENOSPC);
	CHECK_EQ(n + nr_reserved, swap_map_nr_usable(m));
	/* A reserved slot put back is free for the allocator like any other. */
	CHECK_EQ(swap_map_put(m, SWAP_CLUSTER_SLOTS + 5), 0);
	CHECK_EQ(swap_map_alloc(m, 1, got), 1);
	CHECK_EQ(got[0], SWAP_CLUSTER_SLOTS + 5);
	swap_map_free(m);
}

/* One CPU slot: the allocation order is deterministic. */
static void test_clusters(void)
{
	const uint32_t bad[] = {3, 513};
	uint32_t got[64], all[2048];
	struct swap_map *m;
	int n, total = 0;

	/* Three clusters: 1..511 (0 and 3 bad), 512..1023 (513 bad), 1024..1199. */
	CHECK_EQ(swap_map_new(1200, bad, 2, 1, &m), 0);
	n = swap_map_alloc(m, 64, all);
	CHECK_EQ(n, 64);
	/* Consecutive slots of the first cluster, skipping the header and the bad slot. */
	CHECK_EQ(all[0], 1);
	CHECK_EQ(all[1], 2);
	CHECK_EQ(all[2], 4);
	CHECK_EQ(all[63], 65);
	for (total = 64; total < 600; total++)
		CHECK_EQ(swap_map_alloc(m, 1, &all[total]), 1);
	/* 510 good slots in the first cluster, then 512 and 514 (513 is bad). */
	CHECK_EQ(all[509], 511);
	CHECK_EQ(all[510], 512);
	CHECK_EQ(all[511], 514);

	/*
	 * A hole in the full first cluster puts it on the nonfull list, but this CPU keeps
	 * allocating from its current cluster: the next slot follows the last one.
	 */
	CHECK_EQ(swap_map_put(m, 100), 0);
	CHECK_EQ(swap_map_alloc(m, 1, got), 1);
	CHECK_EQ(got[0], all[599] + 1);

	/* Free clusters before nonfull ones: fill the second cluster, then the third comes. */
	while (got[0] < 1023)
		CHECK_EQ(swap_map_alloc(m, 1, got), 1);
	CHECK_EQ(swap_map_alloc(m, 1, got), 1);
	CHECK_EQ(got[0], 1024);
	/* Fill the third; the hole at 100 is the last free slot. */
	while (got[0] < 1199)
		CHECK_EQ(swap_map_alloc(m, 1, got), 1);
	CHECK_EQ(swap_map_alloc(m, 4, got), 1);
	CHECK_EQ(got[0], 100);
	CHECK_EQ(swap_map_alloc(m, 1, got), -ENOSPC);
	CHECK_EQ(swap_map_nr_used(m), swap_map_nr_usable(m));

	/*
	 * A cluster emptied completely goes back to the free list and is taken whole again,
	 * before the nonfull second cluster.
	 */
	CHECK_EQ(swap_map_put(m, 700), 0);
	for (uint32_t s = 1024; s < 1200; s++)
		CHECK_EQ(swap_map_put(m, s), 0);
	n = swap_map_alloc(m, 64, got);
	CHECK_EQ(n, 64);
	CHECK_EQ(got[0], 1024);
	CHECK_EQ(got[63], 1087);
	swap_map_free(m);
}

/* Random single-threaded alloc/dup/free against a shadow copy of every count. */
static void test_random_model(void)
{
	enum { NR = 5000, OPS = 400000 };
	static uint8_t shadow[NR];
	static uint32_t held[NR];
	uint32_t bad[40], got[32];
	unsigned nr_held = 0, nr_used = 0;
	struct swap_map *m;
	uint64_t x = 88172645463325252ULL;

	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++)
		bad[i] = 1 + (uint32_t)((i * 7919) % (NR - 1));
	CHECK_EQ(swap_map_new(NR, bad, ARRAY_SIZE(bad), 3, &m), 0);
	shadow[0] = SWAP_MAP_BAD;
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++)
		shadow[bad[i]] = SWAP_MAP_BAD;

	for (unsigned op = 0; op < OPS; op++) {
		unsigned r;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		r = (unsigned)(x % 100);
		if (r < 50) {
			unsigned want = 1 + (unsigned)((x >> 8) % 32);
			int n = swap_map_alloc(m, want, got);

			if (nr_used == swap_map_nr_usable(m)) {
				CHECK_EQ(n, -ENOSPC);
				continue;
			}
			CHECK(n >= 1 && (unsigned)n <= want);
			for (int i = 0; i < n; i++) {
				CHECK(got[i] < NR);
				CHECK_EQ(shadow[got[i]], 0); /* never a used or bad slot */
				shadow[got[i]] = 1;
				held[nr_held++] = got[i];
				nr_used++;
			}
		} else if (r < 60 && nr_held) {
			uint32_t s = held[(x >> 16) % nr_held];
			int d = swap_map_duplicate(m, s);

			if (shadow[s] == SWAP_MAP_MAX) {
				CHECK_EQ(d, -EOVERFLOW);
			} else {
				CHECK_EQ(d, 0);
				shadow[s]++;
			}
		} else if (nr_held) {
			unsigned i = (unsigned)((x >> 16) % nr_held);
			uint32_t s = held[i];

			CHECK_EQ(swap_map_put(m, s), shadow[s] - 1);
			if (--shadow[s] == 0) {
				held[i] = held[--nr_held];
				nr_used--;
			}
		}
		if (op % 1000 == 0) {
			CHECK_EQ(swap_map_nr_used(m), nr_used);
			for (uint32_t s = 0; s < NR; s += 97)
				CHECK_EQ(swap_map_count(m, s), shadow[s]);
		}
	}
	for (uint32_t s = 0; s < NR; s++)
		CHECK_EQ(swap_map_count(m, s), shadow[s]);
	swap_map_free(m);
}

/* Several threads allocating and freeing at once; owner[] catches a slot given twice. */
enum { MT_SLOTS = 20000, MT_THREADS = 4, MT_OPS = 200000 };
static _Atomic int owner[MT_SLOTS];
static uint32_t mt_bad[64];
static struct swap_map *mt_map;

static void *mt_worker(void *arg)
{
	int me = (int)(intptr_t)arg + 1;
	uint32_t *held = calloc(MT_SLOTS, sizeof(*held));
	uint32_t got[16];
	unsigned nr_held = 0;
	uint64_t x = 0x1234567ULL * (uint64_t)me;

	CHECK(held);
	for (unsigned op = 0; op < MT_OPS; op++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if ((x % 100) < 52 || !nr_held) {
			int n = swap_map_alloc(mt_map, 1 + (unsigned)((x >> 8) % 16), got);

			if (n == -ENOSPC)
				continue;
			CHECK(n > 0);
			for (int i = 0; i < n; i++) {
				int expect = 0;

				CHECK(got[i] > 0 && got[i] < MT_SLOTS);
				CHECK(atomic_compare_exchange_strong(&owner[got[i]], &expect, me));
				held[nr_held++] = got[i];
			}
		} else {
			unsigned i = (unsigned)((x >> 16) % nr_held);
			uint32_t s = held[i];

			/* Cleared before the put: after it another thread may get the slot. */
			CHECK_EQ(atomic_exchange(&owner[s], 0), me);
			CHECK_EQ(swap_map_put(mt_map, s), 0);
			held[i] = held[--nr_held];
		}
	}
	for (unsigned i = 0; i < nr_held; i++) {
		CHECK_EQ(atomic_exchange(&owner[held[i]], 0), me);
		CHECK_EQ(swap_map_put(mt_map, held[i]), 0);
	}
	free(held);
	return NULL;
}

static void test_threads(void)
{
	pthread_t t[MT_THREADS];
	uint32_t got[64];
	unsigned total = 0;

	for (unsigned i = 0; i < ARRAY_SIZE(mt_bad); i++)
		mt_bad[i] = 1 + (uint32_t)((i * 104729) % (MT_SLOTS - 1));
	/* More CPU slots than CPUs, so that threads also meet in one slot's lock. */
	CHECK_EQ(swap_map_new(MT_SLOTS, mt_bad, ARRAY_SIZE(mt_bad), 3, &mt_map), 0);
	for (unsigned i = 0; i < ARRAY_SIZE(mt_bad); i++)
		atomic_store(&owner[mt_bad[i]], -1);
	atomic_store(&owner[0], -1);

	for (intptr_t i = 0; i < MT_THREADS; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, mt_worker, (void *)i), 0);
	for (int i = 0; i < MT_THREADS; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(swap_map_nr_used(mt_map), 0);

	/*
	 * Every usable slot can be had again from one thread, though other CPU slots still own
	 * current clusters: the allocator takes from those when the lists run dry.
	 */
	for (;;) {
		int n = swap_map_alloc(mt_map, 64, got);

		if (n == -ENOSPC)
			break;
		CHECK(n > 0);
		for (int i = 0; i < n; i++) {
			int expect = 0;

			CHECK(atomic_compare_exchange_strong(&owner[got[i]], &expect, 99));
		}
		total += (unsigned)n;
	}
	CHECK_EQ(total, swap_map_nr_usable(mt_map));
	CHECK_EQ(total, MT_SLOTS - 1 - ARRAY_SIZE(mt_bad));
	swap_map_free(mt_map);
}

/* A cluster current on one CPU is still found by another when nothing else is left. */
static void test_steal(void)
{
	cpu_set_t set;
	uint32_t got[64];
	struct swap_map *m;
	unsigned total = 1;

	if (get_nprocs() < 2) {
		printf("test_steal: skipped, one CPU\n");
		return;
	}
	CHECK_EQ(swap_map_new(3 * SWAP_CLUSTER_SLOTS, NULL, 0, 2, &m), 0);
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		printf("test_steal: skipped, cannot pin: %m\n");
		swap_map_free(m);
		return;
	}
	CHECK_EQ(swap_map_alloc(m, 1, got), 1); /* CPU 0 owns cluster 0 now */
	CPU_ZERO(&set);
	CPU_SET(1, &set);
	CHECK_EQ(sched_setaffinity(0, sizeof(set), &set), 0);
	for (int n; (n = swap_map_alloc(m, 64, got)) > 0;)
		total += (unsigned)n;
	CHECK_EQ(total, 3 * SWAP_CLUSTER_SLOTS - 1);
	swap_map_free(m);
}

int main(void)
{
	test_counts();
	test_clusters();
	test_reserve();
	test_random_model();
	test_threads();
	test_steal();
	printf("test-swap-map: ok\n");
	return 0;
}
