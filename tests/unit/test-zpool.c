/* SPDX-License-Identifier: MIT */
/*
 * The pool: geometry of its size classes; randomized store/drop/compact over hundreds of
 * thousands of objects of every size 1..4096, every object's bytes checked through its handle
 * after every compaction; memory (the pool's figure and the process's RSS) falling after drop
 * and compaction; the memory limit; misuse refused; and readers on several threads while
 * compaction moves the very objects they read.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/zpool.h"
#include "macro.h"

#include "check.h"

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* The bytes of an object are a function of its seed, so they can be checked without a copy. */
static void fill(unsigned char *p, size_t len, uint64_t seed)
{
	uint64_t s = seed;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rng_next(&s);

		memcpy(p + i, &v, MIN(8, len - i));
	}
}

static bool same_bytes(const unsigned char *p, size_t len, uint64_t seed)
{
	unsigned char buf[PAGE_SIZE];

	fill(buf, len, seed);
	return memcmp(p, buf, len) == 0;
}

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	check(f);
	check(fscanf(f, "%lu %lu", &size, &resident) == 2);
	fclose(f);
	return (uint64_t)resident * PAGE_SIZE;
}

/* Object sizes as compressed pages come: many around a third of a page, some of every size. */
static size_t random_size(uint64_t *s)
{
	uint64_t r = rng_next(s);

	switch (r % 10) {
	case 0:
	case 1:
		return 1 + (r >> 8) % PAGE_SIZE;
	case 2:
		return 1 + (r >> 8) % 256;
	case 3:
		return PAGE_SIZE;
	default:
		return 900 + (r >> 8) % 1100;
	}
}

/* What the test knows about every object it stored. */
struct shadow {
	uint32_t *handle; /* 0: none */
	uint16_t *len_m1;
	uint64_t *seed;
	size_t cap, nr_live;
	uint64_t live_bytes;
};

static void shadow_init(struct shadow *sh, size_t cap)
{
	sh->cap = cap;
	sh->handle = calloc(cap, sizeof(*sh->handle));
	sh->len_m1 = calloc(cap, sizeof(*sh->len_m1));
	sh->seed = calloc(cap, sizeof(*sh->seed));
	check(sh->handle && sh->len_m1 && sh->seed);
	sh->nr_live = 0;
	sh->live_bytes = 0;
}

static void shadow_free(struct shadow *sh)
{
	free(sh->handle);
	free(sh->len_m1);
	free(sh->seed);
}

static int obj_add_opt(struct zpool *pool, struct shadow *sh, size_t i, size_t len, uint64_t seed,
		       bool *past_limit)
{
	unsigned char buf[PAGE_SIZE];
	int r;

	check(!sh->handle[i]);
	fill(buf, len, seed);
	r = zpool_obj_store(pool, buf, len, past_limit, &sh->handle[i]);
	if (r < 0)
		return r;
	check(sh->handle[i] != 0);
	sh->len_m1[i] = (uint16_t)(len - 1);
	sh->seed[i] = seed;
	sh->nr_live++;
	sh->live_bytes += len;
	return 0;
}

static int obj_add(struct zpool *pool, struct shadow *sh, size_t i, size_t len, uint64_t seed)
{
	return obj_add_opt(pool, sh, i, len, seed, NULL);
}

static void obj_del(struct zpool *pool, struct shadow *sh, size_t i)
{
	check(sh->handle[i]);
	check(zpool_obj_drop(pool, sh->handle[i]) == (int)sh->len_m1[i] + 1);
	sh->handle[i] = 0;
	sh->nr_live--;
	sh->live_bytes -= (size_t)sh->len_m1[i] + 1;
}

static void obj_verify(struct zpool *pool, const struct shadow *sh, size_t i)
{
	const void *data;
	size_t len;

	check(zpool_obj_map(pool, sh->handle[i], &data, &len) == 0);
	check(len == (size_t)sh->len_m1[i] + 1);
	check(same_bytes(data, len, sh->seed[i]));
	zpool_obj_unmap(pool, sh->handle[i]);
}

/* Every object's bytes, and the pool's figures against what the test knows. */
static void verify_all(struct zpool *pool, const struct shadow *sh, bool compacted)
{
	struct zpool_stats st;
	uint64_t pages = 0, inuse = 0;

	for (size_t i = 0; i < sh->cap; i++)
		if (sh->handle[i])
			obj_verify(pool, sh, i);
	zpool_get_stats(pool, &st);
	check(st.objs == sh->nr_live);
	check(st.obj_bytes == sh->live_bytes);
	check(st.pages * PAGE_SIZE >= st.obj_bytes);
	check(st.mem_used_bytes == st.pages * PAGE_SIZE + st.metadata_bytes);
	check(st.mem_used_max_bytes >= st.mem_used_bytes);
	for (unsigned c = 0; c < zpool_nr_classes(pool); c++) {
		struct zpool_class_stats cs;
		uint64_t groups = 0;

		check(zpool_get_class_stats(pool, c, &cs) == 0);
		pages += cs.pages_used;
		inuse += cs.objs_inuse;
		for (unsigned g = 0; g < ZPOOL_NR_FULLNESS; g++)
			groups += cs.fullness[g];
		check(groups == cs.zspages);
		check(cs.objs_inuse <= cs.objs_allocated);
		/* Nothing is mapped now, so compaction left no freeable zspage behind. */
		if (compacted)
			check(cs.pages_freeable == 0);
	}
	check(pages == st.pages);
	check(inuse == st.objs);
}

static void test_classes(void)
{
	struct zpool *pool;
	uint32_t prev = 0, h;
	unsigned n;
	char buf[PAGE_SIZE] = {0};

	check(zpool_new(NULL, &pool) == 0);
	n = zpool_nr_classes(pool);
	check(n > 16 && n <= PAGE_SIZE / 16);
	for (unsigned c = 0; c < n; c++) {
		struct zpool_class_stats cs;

		check(zpool_get_class_stats(pool, c, &cs) == 0);
		check(cs.size > prev);
		check(cs.pages_per_zspage >= 1 && cs.pages_per_zspage <= ZPOOL_MAX_ZSPAGE_PAGES);
		check(cs.objs_per_zspage >= 1);
		check((uint64_t)cs.objs_per_zspage * cs.size <= cs.pages_per_zspage * PAGE_SIZE);
		/* No slot waste beyond what one more object would need. */
		check(cs.pages_per_zspage * PAGE_SIZE - cs.objs_per_zspage * cs.size < cs.size);
		prev = cs.size;
	}
	check(prev == PAGE_SIZE);
	check(zpool_get_class_stats(pool, n, &(struct zpool_class_stats){}) == -ENOENT);
	/* Above the huge size a class holds one object per page; below it, more. */
	size_t huge = zpool_huge_class_size(pool);
	check(huge > PAGE_SIZE * 3 / 4 && huge < PAGE_SIZE);
	printf("%u classes, huge class from %zu bytes\n", n, huge);

	/* Each size lands in the smallest class that holds it. */
	for (size_t len = 1; len <= PAGE_SIZE; len++) {
		unsigned found = 0;

		check(zpool_obj_store(pool, buf, len, NULL, &h) == 0);
		for (unsigned c = 0; c < n; c++) {
			struct zpool_class_stats cs, before = {};

			check(zpool_get_class_stats(pool, c, &cs) == 0);
			if (cs.objs_inuse) {
				if (c)
					check(zpool_get_class_stats(pool, c - 1, &before) == 0);
				check(cs.size >= len && (!c || before.size < len));
				found++;
			}
		}
		check(found == 1);
		check(zpool_obj_drop(pool, h) == (int)len);
	}
	zpool_free(pool);
}

static void test_misuse(void)
{
	struct zpool *pool;
	unsigned char buf[PAGE_SIZE + 1] = {1, 2, 3};
	const void *data;
	size_t len;
	uint32_t h;

	check(zpool_new(&(struct zpool_config){.max_zspage_pages = 17}, &pool) == -EINVAL);
	check(zpool_new(&(struct zpool_config){.class_delta_bytes = 12}, &pool) == -EINVAL);
	check(zpool_new(NULL, &pool) == 0);
	check(zpool_obj_store(pool, buf, 0, NULL, &h) == -EINVAL);
	check(zpool_obj_store(pool, buf, PAGE_SIZE + 1, NULL, &h) == -EINVAL);
	check(zpool_obj_drop(pool, 0) == -ENOENT);
	check(zpool_obj_drop(pool, 12345) == -ENOENT);
	check(zpool_obj_map(pool, 0, &data, &len) == -ENOENT);
	check(zpool_obj_map(pool, 777, &data, &len) == -ENOENT);
	check(zpool_obj_map(pool, UINT32_MAX, &data, &len) == -ENOENT);
	check(zpool_obj_store(pool, buf, 3, NULL, &h) == 0);
	check(zpool_obj_read(pool, h, buf + 100, 2) == -ENOBUFS);
	check(zpool_obj_read(pool, h, buf + 100, 3) == 3);
	check(memcmp(buf + 100, buf, 3) == 0);
	check(zpool_obj_drop(pool, h) == 3);
	check(zpool_obj_drop(pool, h) == -ENOENT);
	check(zpool_obj_map(pool, h, &data, &len) == -ENOENT);
	zpool_free(pool);
}

/* An emptied pool trims back to exactly what a new one costs, and works on afterwards. */
static void test_trim(void)
{
	enum { N = 50000 };
	static uint32_t h[N];
	unsigned char buf[PAGE_SIZE], out[PAGE_SIZE];
	struct zpool_stats fresh, st;
	struct zpool *pool;

	check(zpool_new(NULL, &pool) == 0);
	zpool_get_stats(pool, &fresh);
	for (int round = 0; round < 3; round++) {
		for (unsigned i = 0; i < N; i++) {
			size_t len = 1 + (i * 7919u) % PAGE_SIZE;

			memset(buf, (int)(i + round), len);
			check(zpool_obj_store(pool, buf, len, NULL, &h[i]) == 0);
		}
		check(zpool_trim(pool) == -EBUSY); /* not empty: nothing happens */
		for (unsigned i = 0; i < N; i += 997) {
			size_t len = 1 + (i * 7919u) % PAGE_SIZE;

			memset(buf, (int)(i + round), len);
			check(zpool_obj_read(pool, h[i], out, sizeof(out)) == (int)len);
			check(memcmp(out, buf, len) == 0);
		}
		for (unsigned i = 0; i < N; i++)
			check(zpool_obj_drop(pool, h[i]) > 0);
		zpool_get_stats(pool, &st);
		check(st.objs == 0 && st.pages == 0);
		check(st.mem_used_bytes > fresh.mem_used_bytes); /* metadata still held */
		check(zpool_trim(pool) == 0);
		zpool_get_stats(pool, &st);
		check(st.mem_used_bytes == fresh.mem_used_bytes);
		check(st.metadata_bytes == fresh.metadata_bytes);
	}
	zpool_free(pool);
}

static void test_random(unsigned delta, unsigned max_pages, size_t nr_objs, unsigned rounds)
{
	struct zpool_config cfg = {.class_delta_bytes = delta, .max_zspage_pages = max_pages};
	struct zpool *pool;
	struct zpool_stats st;
	struct shadow sh;
	uint64_t s = delta * 1000 + max_pages, seq = 1, freed = 0;
	double t0 = now_sec();

	check(zpool_new(&cfg, &pool) == 0);
	shadow_init(&sh, nr_objs);
	/* Every size at least once. */
	for (size_t len = 1; len <= PAGE_SIZE; len++)
		check(obj_add(pool, &sh, len - 1, len, seq++) == 0);

	for (unsigned round = 0; round < rounds; round++) {
		/* Fill up, then thin out to a different level each round, then churn. */
		size_t target = round % 2 ? nr_objs / 5 : nr_objs * 9 / 10;
		size_t ops = nr_objs * 3 / 2;

		for (size_t k = 0; k < ops; k++) {
			size_t i = rng_next(&s) % nr_objs;
			bool add =
				sh.nr_live < target ? rng_next(&s) % 8 != 0 : rng_next(&s) % 8 == 0;

			if (!sh.handle[i] && add)
				check(obj_add(pool, &sh, i, random_size(&s), seq++) == 0);
			else if (sh.handle[i] && !add)
				obj_del(pool, &sh, i);
			if (k % (nr_objs / 2) == nr_objs / 2 - 1) {
				freed += zpool_compact(pool);
				verify_all(pool, &sh, true);
			}
		}
		verify_all(pool, &sh, false);
		freed += zpool_compact(pool);
		verify_all(pool, &sh, true);
		zpool_get_stats(pool, &st);
		check(st.pages_compacted == freed);
	}
	zpool_get_stats(pool, &st);
	printf("random delta %u, %u pages: %zu live, %.1f MiB live, %.1f MiB used, "
	       "%" PRIu64 " pages compacted, %.1f s\n",
	       delta, max_pages, sh.nr_live, (double)sh.live_bytes / (1 << 20),
	       (double)st.mem_used_bytes / (1 << 20), freed, now_sec() - t0);
	check(freed > 0);

	/* Drop everything: the pool gives every page back. */
	for (size_t i = 0; i < nr_objs; i++)
		if (sh.handle[i])
			obj_del(pool, &sh, i);
	zpool_get_stats(pool, &st);
	check(st.objs == 0 && st.obj_bytes == 0 && st.pages == 0);
	check(st.mem_used_bytes == st.metadata_bytes);
	shadow_free(&sh);
	zpool_free(pool);
}

static void test_memory_falls(void)
{
	const size_t n = 200000;
	struct zpool_stats full, thin, packed;
	struct zpool *pool;
	struct shadow sh;
	uint64_t s = 99, rss_full, rss_packed, freed;
	size_t classes_used = 0;

	check(zpool_new(NULL, &pool) == 0);
	shadow_init(&sh, n);
	for (size_t i = 0; i < n; i++)
		check(obj_add(pool, &sh, i, 600 + rng_next(&s) % 1500, i + 1) == 0);
	zpool_get_stats(pool, &full);
	rss_full = rss_bytes();

	for (size_t i = 0; i < n; i++)
		if (rng_next(&s) % 4)
			obj_del(pool, &sh, i);
	zpool_get_stats(pool, &thin);
	freed = zpool_compact(pool);
	zpool_get_stats(pool, &packed);
	rss_packed = rss_bytes();
	verify_all(pool, &sh, true);

	for (unsigned c = 0; c < zpool_nr_classes(pool); c++) {
		struct zpool_class_stats cs;

		check(zpool_get_class_stats(pool, c, &cs) == 0);
		classes_used += cs.objs_inuse > 0;
	}
	printf("memory: full %.1f MiB (live %.1f), after 75%% dropped %.1f MiB, compacted %.1f "
	       "MiB (live %.1f, %zu classes); rss %.1f -> %.1f MiB\n",
	       (double)full.mem_used_bytes / (1 << 20), (double)full.obj_bytes / (1 << 20),
	       (double)thin.mem_used_bytes / (1 << 20), (double)packed.mem_used_bytes / (1 << 20),
	       (double)packed.obj_bytes / (1 << 20), classes_used, (double)rss_full / (1 << 20),
	       (double)rss_packed / (1 << 20));

	/* Full, the packing is tight: slot rounding and part-filled zspages only. */
	check(full.mem_used_bytes < full.obj_bytes * 105 / 100);
	/* Random drops empty few zspages; compaction gives back the rest. */
	check(freed == thin.pages - packed.pages);
	check(packed.pages_compacted == freed);
	/* Left: live bytes, slot rounding and at most one part-filled zspage per class. */
	check(packed.pages * PAGE_SIZE <=
	      packed.obj_bytes * 105 / 100 + classes_used * ZPOOL_MAX_ZSPAGE_PAGES * PAGE_SIZE);
	/* And the process really has that memory back. */
	check(rss_full - rss_packed >= (full.pages - packed.pages) * PAGE_SIZE * 9 / 10);

	for (size_t i = 0; i < n; i++)
		if (sh.handle[i])
			obj_del(pool, &sh, i);
	shadow_free(&sh);
	zpool_free(pool);
}

static void test_limit(void)
{
	const uint64_t limit = 4 << 20;
	struct zpool_stats st;
	struct zpool *pool;
	struct shadow sh;
	size_t i = 0;
	int r;

	check(zpool_new(&(struct zpool_config){.mem_limit_bytes = limit}, &pool) == 0);
	shadow_init(&sh, 100000);
	while ((r = obj_add(pool, &sh, i, 100 + i * 37 % 3000, i + 1)) == 0)
		i++;
	check(r == -ENOSPC);
	zpool_get_stats(pool, &st);
	check(st.mem_used_bytes <= limit);
	check(st.mem_used_max_bytes <= limit);
	check(st.mem_used_bytes > limit * 3 / 4);
	check(st.limit_rejects == 1);
	verify_all(pool, &sh, false);

	/* Past the limit when asked (pages adopted from a dead daemon): kept, and the limit still
	 * refuses what needs a new zspage (the refused size; the others are in other classes). */
	size_t refused = 100 + i * 37 % 3000, other = refused > 2000 ? 1000 : 3000;

	bool past = false;

	for (size_t k = 1; k <= 64; k++)
		check(obj_add_opt(pool, &sh, i + k, other, i + k + 1, &past) == 0);
	check(past);
	check(obj_add(pool, &sh, i + 65, refused, 1) == -ENOSPC);
	zpool_get_stats(pool, &st);
	check(st.mem_used_bytes > limit);
	check(st.limit_rejects == 2);
	verify_all(pool, &sh, false);

	/* Room again after drops. */
	for (size_t k = 0; k < i; k += 2)
		obj_del(pool, &sh, k);
	zpool_compact(pool);
	check(obj_add(pool, &sh, 0, 3000, 7) == 0);
	verify_all(pool, &sh, true);
	for (size_t k = 0; k < sh.cap; k++)
		if (sh.handle[k])
			obj_del(pool, &sh, k);
	shadow_free(&sh);
	zpool_free(pool);
}

/* ---- readers during compaction ---- */

struct concurrent {
	struct zpool *pool;
	struct shadow stable; /* never dropped while readers run: they read these */
	atomic_bool stop;
	_Atomic uint64_t reads;
};

static void *reader_main(void *p)
{
	struct concurrent *cc = p;
	uint64_t s = (uint64_t)pthread_self(), n = 0;
	unsigned char buf[PAGE_SIZE];

	while (!atomic_load_explicit(&cc->stop, memory_order_relaxed)) {
		size_t i = rng_next(&s) % cc->stable.cap, len = (size_t)cc->stable.len_m1[i] + 1;

		if (n % 2) {
			obj_verify(cc->pool, &cc->stable, i);
		} else {
			check(zpool_obj_read(cc->pool, cc->stable.handle[i], buf, sizeof(buf)) ==
			      (int)len);
			check(same_bytes(buf, len, cc->stable.seed[i]));
		}
		n++;
	}
	atomic_fetch_add(&cc->reads, n);
	return NULL;
}

/* A second writer: its own objects, stored and dropped in the same classes. */
static void *writer_main(void *p)
{
	struct concurrent *cc = p;
	struct shadow own;
	uint64_t s = 5, seq = 1u << 30;

	shadow_init(&own, 20000);
	while (!atomic_load_explicit(&cc->stop, memory_order_relaxed)) {
		size_t i = rng_next(&s) % own.cap;

		if (own.handle[i]) {
			obj_verify(cc->pool, &own, i);
			obj_del(cc->pool, &own, i);
		} else {
			check(obj_add(cc->pool, &own, i, 800 + rng_next(&s) % 1000, seq++) == 0);
		}
	}
	for (size_t i = 0; i < own.cap; i++)
		if (own.handle[i]) {
			obj_verify(cc->pool, &own, i);
			obj_del(cc->pool, &own, i);
		}
	shadow_free(&own);
	return NULL;
}

static void test_concurrent(void)
{
	const size_t nr_stable = 40000, nr_churn = 120000;
	struct concurrent cc = {};
	struct shadow churn;
	pthread_t readers[3], writer;
	uint64_t s = 3, seq = 1, freed = 0;
	double t0 = now_sec();
	unsigned rounds = 0;

	check(zpool_new(NULL, &cc.pool) == 0);
	shadow_init(&cc.stable, nr_stable);
	shadow_init(&churn, nr_churn);
	/* Interleaved, so dropping the churn leaves stable objects in sparse zspages. */
	for (size_t i = 0; i < nr_churn; i++) {
		check(obj_add(cc.pool, &churn, i, 800 + rng_next(&s) % 1000, seq++) == 0);
		if (i % 3 == 0)
			check(obj_add(cc.pool, &cc.stable, i / 3, 800 + rng_next(&s) % 1000,
				      seq++) == 0);
	}

	for (unsigned i = 0; i < ARRAY_SIZE(readers); i++)
		check(pthread_create(&readers[i], NULL, reader_main, &cc) == 0);
	check(pthread_create(&writer, NULL, writer_main, &cc) == 0);
	while (now_sec() - t0 < 3 || rounds < 3) {
		for (size_t i = 0; i < nr_churn; i++)
			if (churn.handle[i] && rng_next(&s) % 4)
				obj_del(cc.pool, &churn, i);
		freed += zpool_compact(cc.pool);
		for (size_t i = 0; i < nr_churn; i++)
			if (!churn.handle[i])
				check(obj_add(cc.pool, &churn, i, 800 + rng_next(&s) % 1000,
					      seq++) == 0);
		rounds++;
	}
	atomic_store(&cc.stop, true);
	for (unsigned i = 0; i < ARRAY_SIZE(readers); i++)
		check(pthread_join(readers[i], NULL) == 0);
	check(pthread_join(writer, NULL) == 0);

	for (size_t i = 0; i < nr_stable; i++)
		obj_verify(cc.pool, &cc.stable, i);
	printf("concurrent: %u rounds, %" PRIu64 " reads, %" PRIu64 " pages compacted\n", rounds,
	       atomic_load(&cc.reads), freed);
	check(atomic_load(&cc.reads) > 10000);
	check(freed > 0);

	for (size_t i = 0; i < nr_churn; i++)
		if (churn.handle[i])
			obj_del(cc.pool, &churn, i);
	for (size_t i = 0; i < nr_stable; i++)
		obj_del(cc.pool, &cc.stable, i);
	shadow_free(&churn);
	shadow_free(&cc.stable);
	zpool_free(cc.pool);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_classes();
	test_misuse();
	test_limit();
	test_trim();
	test_random(16, 16, 300000, 4);
	test_random(8, 4, 60000, 2);
	test_random(64, 1, 60000, 2);
	test_memory_falls();
	test_concurrent();
	printf("ok\n");
	return 0;
}
