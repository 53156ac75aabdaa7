/* SPDX-License-Identifier: MIT */
/*
 * The store over the pool, with lz4 and zstd: same-filled pages kept as their word, huge pages
 * kept raw, every zram mm_stat figure checked against what the test computes itself, the memory
 * limit, compaction on request and on its own, corrupted pool bytes refused with -EBADMSG, and
 * loads on several threads during compaction.
 *
 * The store is compiled into this test (store.c is included below) so the corruption test can
 * reach the pool bytes behind a handle; libmemextd's copy of store.o is then never linked in.
 */
#include "daemon/store.c"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "check.h"

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * A page that is a function of seed: 1 in 10 same-filled (zero or another word), 1 in 20
 * random, the rest text-like with a noise level that spreads compressed sizes over the classes.
 */
static void make_page(uint64_t seed, unsigned char *p)
{
	static const char *const words[] = {"memory", "page", "fault ", "zspage", "class",   " ",
					    "handle", "\n",   "swap",	"0x00",	  "{\"k\":", "lru"};
	uint64_t s = seed, r = rng_next(&s), noise;
	size_t i = 0;

	if (r % 10 == 0) {
		uint64_t w = r % 3 == 0 ? 0 : rng_next(&s) >> (r % 64);

		for (i = 0; i < PAGE_SIZE; i += 8)
			memcpy(p + i, &w, 8);
		return;
	}
	noise = r % 20 == 1 ? 100 : (r >> 8) % 40;
	while (i < PAGE_SIZE) {
		r = rng_next(&s);
		if (r % 100 < noise) {
			p[i++] = (unsigned char)(r >> 32);
			continue;
		}
		for (const char *w = words[(r >> 8) % ARRAY_SIZE(words)]; *w && i < PAGE_SIZE; w++)
			p[i++] = (unsigned char)*w;
	}
}

static bool is_same_filled(const unsigned char *p)
{
	uint64_t w;

	return page_same_filled(p, &w);
}

/* The size the store should give the page in the pool: compressed, or raw past the cut. */
static size_t expected_size(const struct store *s, const unsigned char *p)
{
	unsigned char buf[2 * PAGE_SIZE];
	int n;

	n = s->codec->compress(p, PAGE_SIZE, buf, sizeof(buf), s->level);
	check(n > 0);
	return (size_t)n > s->huge_threshold ? PAGE_SIZE : (size_t)n;
}

/* The size the pool really holds for a handle; 0 for a same-filled page. */
static size_t pool_size(struct store *s, uint64_t handle)
{
	const void *data;
	size_t len;

	if (handle & H_SAME)
		return 0;
	check(zpool_obj_map(s->pool, (uint32_t)(handle & H_POOL_MASK), &data, &len) == 0);
	zpool_obj_unmap(s->pool, (uint32_t)(handle & H_POOL_MASK));
	return len;
}

/* Codecs are deterministic: the pool holds exactly what compressing the page here gives. */
static void check_pool_size(struct store *s, uint64_t handle, const unsigned char *page)
{
	check(pool_size(s, handle) == expected_size(s, page));
}

static void check_load(struct store *s, uint64_t handle, uint64_t seed)
{
	unsigned char want[PAGE_SIZE], got[PAGE_SIZE];

	make_page(seed, want);
	memset(got, 0xa5, sizeof(got));
	check(store_load(s, handle, got) == 0);
	check(memcmp(want, got, PAGE_SIZE) == 0);
}

static struct store *new_store(const char *codec, int level, uint64_t limit, bool compaction)
{
	struct store_config cfg = {
		.compressor = codec,
		.zstd_level = level,
		.mem_limit_bytes = limit,
		.compaction = compaction,
	};
	struct store *s;

	check(store_new(&cfg, &s) == 0);
	return s;
}

static void test_config(void)
{
	struct store *s = NULL;

	check(store_new(&(struct store_config){.compressor = "gzip"}, &s) == -EINVAL);
	check(store_new(&(struct store_config){.compressor = "zstd", .zstd_level = 20}, &s) ==
	      -EINVAL);
	check(store_new(&(struct store_config){.huge_threshold_bytes = PAGE_SIZE}, &s) == -EINVAL);
	/* The zstd level means nothing to lz4. */
	check(store_new(&(struct store_config){.compressor = "lz4", .zstd_level = 9}, &s) == 0);
	store_free(s);
	check(store_new(&(struct store_config){}, &s) == 0);
	check(s->codec == &codec_lz4_ops);
	check(s->huge_threshold + 1 == zpool_huge_class_size(s->pool));
	store_free(s);
}

static void test_same_filled(const char *codec)
{
	static const uint64_t words[] = {
		0,
		UINT64_MAX,
		42,
		(uint64_t)-42,
		UINT64_C(0x5555555555555555),
		UINT64_C(0xdeadbeefdeadbeef),
		UINT64_C(0x7fff00007fff0000),
		UINT64_C(0xdeadbeefcafebabe),
		UINT64_C(1) << 52,
		(uint64_t) - (INT64_C(1) << 53),
		(uint64_t) - (INT64_C(1) << 53) - 1,
		UINT64_C(1) << 53,
	};
	unsigned char page[PAGE_SIZE], got[PAGE_SIZE];
	uint64_t handles[ARRAY_SIZE(words)], *many;
	struct store *s = new_store(codec, 0, 0, false);
	struct store_stats st, empty;
	const size_t nr_many = 6000;
	size_t in_pool = 0;

	store_get_stats(s, &empty);
	for (size_t k = 0; k < ARRAY_SIZE(words); k++) {
		for (size_t i = 0; i < PAGE_SIZE; i += 8)
			memcpy(page + i, &words[k], 8);
		check(store_save(s, page, &handles[k]) == 0);
		check(handles[k] != 0 && handles[k] < (UINT64_C(1) << STORE_HANDLE_BITS));
		check(handles[k] & H_SAME);
	}
	/* Kept in the handle where the word fits, in the table where not. */
	check((handles[0] & H_SAME_KIND_MASK) == H_SAME_VALUE);
	check((handles[3] & H_SAME_KIND_MASK) == H_SAME_VALUE);
	check((handles[4] & H_SAME_KIND_MASK) == H_SAME_HALVES);
	check((handles[6] & H_SAME_KIND_MASK) == H_SAME_HALVES);
	check((handles[7] & H_SAME_KIND_MASK) == H_SAME_TABLE);
	store_get_stats(s, &st);
	check(st.same_pages == ARRAY_SIZE(words));
	check(st.stored_pages == ARRAY_SIZE(words));
	check(st.orig_data_size == ARRAY_SIZE(words) * PAGE_SIZE);
	check(st.compr_data_size == 0 && st.huge_pages == 0);
	/* No pool memory: only the word table for the words that do not fit a handle. */
	check(st.mem_used_total - st.mem_used_metadata == 0);
	for (size_t k = 0; k < ARRAY_SIZE(words); k++) {
		check(store_load(s, handles[k], got) == 0);
		for (size_t i = 0; i < PAGE_SIZE; i += 8)
			check(memcmp(got + i, &words[k], 8) == 0);
	}
	for (size_t k = 0; k < ARRAY_SIZE(words); k++)
		store_drop(s, handles[k]);
	store_get_stats(s, &st);
	check(st.same_pages == 0 && st.stored_pages == 0 && st.orig_data_size == 0);

	/* More distinct words than the table holds: the rest are compressed, all come back. */
	many = calloc(nr_many, sizeof(*many));
	check(many);
	for (int round = 0; round < 2; round++) {
		in_pool = 0;
		for (size_t k = 0; k < nr_many; k++) {
			uint64_t w = UINT64_C(0xf00d000000000000) + k * 0x10001 + (uint64_t)round;

			for (size_t i = 0; i < PAGE_SIZE; i += 8)
				memcpy(page + i, &w, 8);
			check(store_save(s, page, &many[k]) == 0);
			in_pool += !(many[k] & H_SAME);
		}
		store_get_stats(s, &st);
		check(in_pool > 0 && in_pool < nr_many - SAME_WORDS / 2);
		check(st.same_pages == nr_many - in_pool);
		check(st.stored_pages == nr_many);
		for (size_t k = 0; k < nr_many; k++) {
			uint64_t w = UINT64_C(0xf00d000000000000) + k * 0x10001 + (uint64_t)round;

			check(store_load(s, many[k], got) == 0);
			for (size_t i = 0; i < PAGE_SIZE; i += 8)
				check(memcmp(got + i, &w, 8) == 0);
			store_drop(s, many[k]);
		}
		/* Freed entries of the table serve the next round's words. */
		store_get_stats(s, &st);
		check(st.same_pages == 0 && st.stored_pages == 0);
	}
	printf("%s same-filled: %zu of %zu distinct words compressed, table full\n", codec, in_pool,
	       nr_many);
	free(many);
	store_free(s);
}

static void test_huge(const char *codec)
{
	unsigned char page[PAGE_SIZE];
	struct store *s = new_store(codec, 0, 0, false);
	struct store_stats st;
	uint64_t h, seed = 1, expect_compr = 0, expect_huge = 0, handles[400];

	/* Random pages, and pages whose compressed size is close to the threshold, either side. */
	for (size_t k = 0; k < ARRAY_SIZE(handles); k++) {
		uint64_t r = seed;
		size_t n;

		for (size_t i = 0; i < PAGE_SIZE; i++)
			page[i] = (i % 64) < 40 + k % 25 ? (unsigned char)rng_next(&r) : 'x';
		check(store_save(s, page, &handles[k]) == 0);
		check_pool_size(s, handles[k], page);
		n = pool_size(s, handles[k]);
		expect_compr += n;
		expect_huge += n == PAGE_SIZE;
		check(store_load(s, handles[k], (unsigned char[PAGE_SIZE]){0}) == 0);
		seed++;
	}
	store_get_stats(s, &st);
	check(st.huge_pages == expect_huge);
	check(st.compr_data_size == expect_compr);
	check(expect_huge > 50 && expect_huge < ARRAY_SIZE(handles));
	printf("%s huge: %" PRIu64 " of %zu near-threshold pages kept raw\n", codec, expect_huge,
	       ARRAY_SIZE(handles));
	for (size_t k = 0; k < ARRAY_SIZE(handles); k++)
		store_drop(s, handles[k]);

	for (size_t i = 0; i < PAGE_SIZE; i++)
		page[i] = (unsigned char)rng_next(&seed);
	check(store_save(s, page, &h) == 0);
	store_get_stats(s, &st);
	check(st.huge_pages == 1 && st.compr_data_size == PAGE_SIZE && st.stored_pages == 1);
	unsigned char got[PAGE_SIZE];
	check(store_load(s, h, got) == 0 && memcmp(got, page, PAGE_SIZE) == 0);
	store_drop(s, h);
	store_get_stats(s, &st);
	check(st.huge_pages == 0 && st.compr_data_size == 0 && st.stored_pages == 0);
	store_free(s);
}

static void test_round_trip(const char *codec, int level)
{
	const size_t n = 6000;
	unsigned char page[PAGE_SIZE];
	struct store *s = new_store(codec, level, 0, false);
	struct store_stats st;
	uint64_t *h = calloc(n, sizeof(*h)), compr = 0, same = 0, huge = 0;
	double t0 = now_sec();

	check(h);
	for (size_t i = 0; i < n; i++) {
		size_t sz;

		make_page(i, page);
		check(store_save(s, page, &h[i]) == 0);
		/* Same-filled pages whose word found no room in the table are compressed. */
		check(!(h[i] & H_SAME) || is_same_filled(page));
		if (h[i] & H_SAME) {
			same++;
			continue;
		}
		check_pool_size(s, h[i], page);
		sz = pool_size(s, h[i]);
		compr += sz;
		huge += sz == PAGE_SIZE;
	}
	for (size_t i = 0; i < n; i++)
		check_load(s, h[i], i);
	store_get_stats(s, &st);
	check(st.stored_pages == n && st.orig_data_size == n * PAGE_SIZE);
	check(st.compr_data_size == compr);
	check(st.same_pages == same && st.huge_pages == huge);
	check(st.mem_used_total - st.mem_used_metadata >= compr);
	check(st.mem_used_max >= st.mem_used_total);
	check(st.failed_loads == 0 && st.limit_rejects == 0);
	printf("%s-%d: %zu pages, orig %.1f MiB, compr %.1f MiB, used %.1f MiB (metadata %.2f), "
	       "%" PRIu64 " same, %" PRIu64 " huge, %.1f s\n",
	       codec, level, n, (double)st.orig_data_size / (1 << 20),
	       (double)st.compr_data_size / (1 << 20), (double)st.mem_used_total / (1 << 20),
	       (double)st.mem_used_metadata / (1 << 20), same, huge, now_sec() - t0);

	for (size_t i = 0; i < n; i++)
		store_drop(s, h[i]);
	store_get_stats(s, &st);
	check(st.stored_pages == 0 && st.compr_data_size == 0 && st.same_pages == 0);
	check(st.huge_pages == 0 && st.mem_used_total == st.mem_used_metadata);
	free(h);
	store_free(s);
}

static void test_limit(bool compaction)
{
	const uint64_t limit = 2 << 20;
	unsigned char page[PAGE_SIZE];
	struct store *s = new_store("lz4", 0, limit, compaction);
	struct store_stats st;
	uint64_t h[4000];
	size_t n = 0;
	int r;

	for (uint64_t seed = 0; n < ARRAY_SIZE(h); seed++) {
		make_page(seed, page);
		if (is_same_filled(page))
			continue;
		r = store_save(s, page, &h[n]);
		if (r == -ENOSPC)
			break;
		check(r == 0);
		n++;
	}
	check(n < ARRAY_SIZE(h));
	store_get_stats(s, &st);
	check(st.limit_rejects == 1);
	check(st.mem_limit == limit);
	check(st.mem_used_total <= limit && st.mem_used_max <= limit);
	check(st.mem_used_total > limit * 3 / 4);
	check(st.stored_pages == n);
	/* A page adopted from a dead daemon is kept all the same (the one just refused). */
	bool past;

	check(store_save_adopted(s, page, &past, &h[n]) == 0);
	store_get_stats(s, &st);
	check(past && st.stored_pages == n + 1 && st.limit_rejects == 1);
	/* Nothing stored at the limit is lost. */
	for (size_t i = 0; i <= n; i++) {
		unsigned char got[PAGE_SIZE];

		check(store_load(s, h[i], got) == 0);
	}
	store_drop(s, h[n]);
	/* Room again after drops (and compaction). */
	for (size_t i = 0; i < n; i += 2)
		store_drop(s, h[i]);
	store_compact(s);
	make_page(3, page);
	check(store_save(s, page, &h[0]) == 0);
	check_load(s, h[0], 3);
	store_free(s);
}

static void test_corrupt(const char *codec)
{
	unsigned char page[PAGE_SIZE], got[PAGE_SIZE];
	struct store *s = new_store(codec, 0, 0, false);
	struct store_stats st;
	uint64_t h[300], seeds[300], rs = 11, bad = 0;
	size_t n = 0;

	for (uint64_t seed = 0; n < ARRAY_SIZE(h); seed++) {
		make_page(seed, page);
		if (is_same_filled(page) || expected_size(s, page) == PAGE_SIZE)
			continue;
		seeds[n] = seed;
		check(store_save(s, page, &h[n++]) == 0);
	}
	for (size_t i = 0; i < n; i += 2) {
		uint32_t ph = (uint32_t)(h[i] & H_POOL_MASK);
		unsigned char *data;
		size_t len;

		/* Damage the pool bytes in place, as a stray write would. */
		check(zpool_obj_map(s->pool, ph, (const void **)&data, &len) == 0);
		switch (i / 2 % 3) {
		case 0:
			memset(data, 0, len);
			break;
		case 1:
			for (size_t k = 0; k < len; k++)
				data[k] = (unsigned char)rng_next(&rs);
			break;
		default:
			memset(data + len / 2, 0xff, len - len / 2);
			break;
		}
		zpool_obj_unmap(s->pool, ph);
		check(store_load(s, h[i], got) == -EBADMSG);
		bad++;
	}
	store_get_stats(s, &st);
	check(st.failed_loads == bad);
	/* The others are untouched, and damaged pages can still be dropped. */
	for (size_t i = 1; i < n; i += 2)
		check_load(s, h[i], seeds[i]);
	for (size_t i = 0; i < n; i++)
		store_drop(s, h[i]);
	store_get_stats(s, &st);
	check(st.stored_pages == 0 && st.compr_data_size == 0);
	/* Handles that hold nothing. */
	check(store_load(s, h[0], got) == -ENOENT);
	check(store_load(s, UINT64_C(1) << 40, got) == -ENOENT);
	check(store_load(s, H_SAME | H_SAME_TABLE | (SAME_WORDS + 1), got) == -ENOENT);
	check(store_load(s, H_SAME | H_SAME_KIND_MASK, got) == -ENOENT);
	printf("%s corrupt: %" PRIu64 " damaged pages refused\n", codec, bad);
	store_free(s);
}

static void test_compaction(bool automatic)
{
	const size_t n = 24000;
	unsigned char page[PAGE_SIZE];
	struct store *s = new_store("lz4", 0, 0, automatic);
	struct store_stats full, packed;
	uint64_t *h = calloc(n, sizeof(*h)), rs = 5, freed = 0;
	size_t live = 0;

	check(h);
	for (size_t i = 0; i < n; i++) {
		make_page(i, page);
		check(store_save(s, page, &h[i]) == 0);
	}
	store_get_stats(s, &full);
	for (size_t i = 0; i < n; i++) {
		if (rng_next(&rs) % 4) {
			store_drop(s, h[i]);
			h[i] = 0;
		} else {
			live++;
		}
	}
	if (automatic) {
		/* Saving goes on, and the store compacts when it finds itself sparse. */
		for (size_t i = 0; i < 2048; i++) {
			uint64_t x;

			make_page(n + i, page);
			check(store_save(s, page, &x) == 0);
		}
	} else {
		freed = store_compact(s);
		check(freed > 0);
	}
	store_get_stats(s, &packed);
	if (!automatic)
		check(packed.pages_compacted == freed);
	check(packed.pages_compacted > 0);
	check(packed.mem_used_total < full.mem_used_total / 2);
	check(packed.mem_used_max >= full.mem_used_total);
	check(packed.pages_freeable < 64);
	for (size_t i = 0; i < n; i++)
		if (h[i])
			check_load(s, h[i], i);
	printf("compaction%s: %.1f MiB -> %.1f MiB, %" PRIu64 " pages given back, %zu live\n",
	       automatic ? " (automatic)" : "", (double)full.mem_used_total / (1 << 20),
	       (double)packed.mem_used_total / (1 << 20), packed.pages_compacted, live);
	free(h);
	store_free(s);

	/* Without the option, the store does not compact on its own. */
	if (automatic) {
		s = new_store("lz4", 0, 0, false);
		h = calloc(n, sizeof(*h));
		check(h);
		for (size_t i = 0; i < n; i++) {
			make_page(i, page);
			check(store_save(s, page, &h[i]) == 0);
		}
		for (size_t i = 0; i < n; i++)
			if (i % 4)
				store_drop(s, h[i]);
		store_get_stats(s, &packed);
		check(packed.pages_compacted == 0 && packed.pages_freeable > 64);
		free(h);
		store_free(s);
	}
}

static void test_class_stats(void)
{
	unsigned char page[PAGE_SIZE];
	struct store *s = new_store("lz4", 0, 0, false);
	struct store_class_stats *cs;
	struct store_stats st;
	uint64_t h, objs = 0, pages = 0;
	int count;

	for (uint64_t i = 0; i < 5000; i++) {
		make_page(i, page);
		check(store_save(s, page, &h) == 0);
	}
	count = store_get_class_stats(s, NULL, 0);
	check(count == (int)zpool_nr_classes(s->pool));
	cs = calloc((size_t)count, sizeof(*cs));
	check(cs);
	check(store_get_class_stats(s, cs, (size_t)count) == count);
	for (int i = 0; i < count; i++) {
		objs += cs[i].objs_used;
		pages += cs[i].pages_used;
		check(cs[i].pages_used == cs[i].zspages * cs[i].pages_per_zspage);
		check(!i || cs[i].size > cs[i - 1].size);
	}
	store_get_stats(s, &st);
	check(objs == st.stored_pages - st.same_pages);
	check(pages * PAGE_SIZE == st.mem_used_total - st.mem_used_metadata);
	free(cs);
	store_free(s);
}

struct loader {
	struct store *s;
	const uint64_t *h;
	size_t n;
	atomic_bool stop;
	_Atomic uint64_t loads;
};

static void *loader_main(void *p)
{
	struct loader *l = p;
	uint64_t rs = (uint64_t)pthread_self(), n = 0;

	while (!atomic_load_explicit(&l->stop, memory_order_relaxed)) {
		size_t i = rng_next(&rs) % l->n;

		check_load(l->s, l->h[i], i);
		n++;
	}
	atomic_fetch_add(&l->loads, n);
	return NULL;
}

static void test_concurrent_loads(const char *codec)
{
	const size_t n_stable = 3000, n_churn = 9000;
	unsigned char page[PAGE_SIZE];
	struct loader l = {.s = new_store(codec, 0, 0, false), .n = n_stable};
	uint64_t *stable = calloc(n_stable, sizeof(*stable)), *churn = calloc(n_churn, 8);
	uint64_t rs = 9, freed = 0;
	pthread_t t[2];
	double t0;

	check(stable && churn);
	l.h = stable;
	for (size_t i = 0; i < n_churn; i++) {
		make_page(n_stable + i, page);
		check(store_save(l.s, page, &churn[i]) == 0);
		if (i % 3 == 0) {
			make_page(i / 3, page);
			check(store_save(l.s, page, &stable[i / 3]) == 0);
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(t); i++)
		check(pthread_create(&t[i], NULL, loader_main, &l) == 0);
	t0 = now_sec();
	for (unsigned round = 0; round < 2 || now_sec() - t0 < 1.5; round++) {
		for (size_t i = 0; i < n_churn; i++)
			if (churn[i] && rng_next(&rs) % 4) {
				store_drop(l.s, churn[i]);
				churn[i] = 0;
			}
		freed += store_compact(l.s);
		for (size_t i = 0; i < n_churn; i++)
			if (!churn[i]) {
				make_page(n_stable + i, page);
				check(store_save(l.s, page, &churn[i]) == 0);
			}
	}
	atomic_store(&l.stop, true);
	for (size_t i = 0; i < ARRAY_SIZE(t); i++)
		check(pthread_join(t[i], NULL) == 0);
	printf("%s concurrent: %" PRIu64 " loads during compaction, %" PRIu64 " pages freed\n",
	       codec, atomic_load(&l.loads), freed);
	check(atomic_load(&l.loads) > 1000 && freed > 0);
	for (size_t i = 0; i < n_stable; i++)
		check_load(l.s, stable[i], i);
	free(stable);
	free(churn);
	store_free(l.s);
}

/*
 * Shared handles (fork): every kind of handle in the pool backend (same-filled as a value,
 * as halves, in same_words[], compressed, huge) survives drops until its last reference goes,
 * loads byte for byte meanwhile, and the figures count a shared page once. Thousands of shared
 * handles dropped in a shuffled order exercise the table's growth and deletions.
 */
static void test_dup(const char *codec)
{
	const unsigned n = 3000;
	struct store *s = new_store(codec, 0, 0, true);
	uint64_t *h = calloc(n, sizeof(*h)), *order = calloc(n, sizeof(*order)), rs = 7;
	unsigned char page[PAGE_SIZE];
	struct store_stats fresh, st, full;
	uint64_t kinds = 0;

	check(h && order);
	store_get_stats(s, &fresh);
	check(store_dup(s, 0) == -EINVAL);
	for (unsigned i = 0; i < n; i++) {
		make_page(i, page);
		check(store_save(s, page, &h[i]) == 0);
		kinds |= h[i] & H_SAME ? UINT64_C(1) << ((h[i] & H_SAME_KIND_MASK) >> 52) : 0;
		kinds |= !(h[i] & H_SAME) && pool_size(s, h[i]) == PAGE_SIZE ? 8 : 0;
		kinds |= !(h[i] & H_SAME) && pool_size(s, h[i]) < PAGE_SIZE ? 16 : 0;
	}
	/* A word kept in same_words[] and a huge page, whatever make_page gave. */
	{
		uint64_t w = UINT64_C(0x0123456789abcdef), hs, hh;

		for (size_t i = 0; i < PAGE_SIZE; i += 8)
			memcpy(page + i, &w, 8);
		check(store_save(s, page, &hs) == 0);
		check((hs & H_SAME_KIND_MASK) == H_SAME_TABLE);
		for (size_t i = 0; i < PAGE_SIZE; i++)
			page[i] = (unsigned char)rng_next(&rs);
		check(store_save(s, page, &hh) == 0);
		check(pool_size(s, hh) == PAGE_SIZE);
		check(store_dup(s, hs) == 0 && store_dup(s, hh) == 0);
		check(store_handle_refs(s, hs) == 2 && store_handle_refs(s, hh) == 2);
		store_drop(s, hs);
		store_drop(s, hh);
		check(store_handle_refs(s, hs) == 1 && store_handle_refs(s, hh) == 1);
		check(store_load(s, hh, page) == 0);
		store_drop(s, hs);
		store_drop(s, hh);
	}
	check((kinds & (1 | 16)) == (1 | 16)); /* value-kind same pages and compressed ones */

	store_get_stats(s, &full);
	/* One extra reference on every page, two on every third. */
	for (unsigned i = 0; i < n; i++) {
		check(store_dup(s, h[i]) == 0);
		if (i % 3 == 0)
			check(store_dup(s, h[i]) == 0);
	}
	for (unsigned i = 0; i < n; i++)
		if (!(h[i] & H_SAME))
			check(store_handle_refs(s, h[i]) == (i % 3 == 0 ? 3 : 2));
	store_get_stats(s, &st);
	check(st.stored_pages == full.stored_pages && st.compr_data_size == full.compr_data_size);
	check(st.shared_handles > 0);

	/* Drop every reference but the last, in a shuffled order: nothing is freed. */
	for (unsigned i = 0; i < n; i++)
		order[i] = i;
	for (unsigned i = n - 1; i > 0; i--) {
		unsigned j = (unsigned)(rng_next(&rs) % (i + 1));
		uint64_t t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (unsigned k = 0; k < n; k++) {
		unsigned i = (unsigned)order[k];

		store_drop(s, h[i]);
		if (i % 3 == 0)
			store_drop(s, h[i]);
		if (k % 97 == 0)
			for (unsigned j = 0; j < n; j += 101)
				check_load(s, h[j], j);
	}
	store_get_stats(s, &st);
	check(st.stored_pages == full.stored_pages && st.compr_data_size == full.compr_data_size);
	check(st.shared_handles == 0);
	for (unsigned i = 0; i < n; i++) {
		check(store_handle_refs(s, h[i]) == 1);
		check_load(s, h[i], i);
	}
	/* The last references free everything. */
	for (unsigned i = 0; i < n; i++)
		store_drop(s, h[i]);
	store_compact(s);
	store_get_stats(s, &st);
	check(st.stored_pages == 0 && st.same_pages == 0 && st.compr_data_size == 0);
	check(st.huge_pages == 0 && st.pool_pages == 0);
	check(st.mem_used_total == fresh.mem_used_total);
	free(h);
	free(order);
	store_free(s);
}

#define run(call)                                                \
	do {                                                     \
		double _t = now_sec();                           \
		call;                                            \
		printf("  %s: %.1f s\n", #call, now_sec() - _t); \
	} while (0)

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	run(test_config());
	run(test_same_filled("lz4"));
	run(test_same_filled("zstd"));
	run(test_huge("lz4"));
	run(test_huge("zstd"));
	run(test_round_trip("lz4", 0));
	run(test_round_trip("zstd", 1));
	run(test_round_trip("zstd", 3));
	run(test_limit(false));
	run(test_limit(true));
	run(test_corrupt("lz4"));
	run(test_corrupt("zstd"));
	run(test_compaction(false));
	run(test_compaction(true));
	run(test_class_stats());
	run(test_concurrent_loads("lz4"));
	run(test_concurrent_loads("zstd"));
	run(test_dup("lz4"));
	run(test_dup("zstd"));
	printf("ok\n");
	return 0;
}
