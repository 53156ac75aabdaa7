/* SPDX-License-Identifier: MIT */
/*
 * The store over swap areas: backend swapfile (pages in slots, same-filled pages never there,
 * priorities, a full area, a truncated one) and pool+swapfile (writeback of the coldest pool
 * pages with the handles the daemon holds unchanged, hysteresis between the watermarks, the
 * second chance of a loaded page, loads racing with writeback on several threads, a full area,
 * a disk error on load and ENOSPC from a full file system on save and on writeback). Every page
 * is checked byte for byte, and the stats must add up:
 * stored_pages == same_pages + pool_pages + bd_count.
 *
 * store.c is compiled in, as in test-store.c, to see where a handle's page is.
 */
#include "daemon/store.c"

#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <sys/mount.h>

#include "mkswap.h"
#include "swap-test.h"

#define MiB (1024ULL * 1024)

static const char *dir;

static char *path_in(const char *name)
{
	static char bufs[8][512];
	static unsigned next;
	char *p = bufs[next++ % 8];

	snprintf(p, 512, "%s/%s", dir, name);
	return p;
}

static void make_area(const char *path, uint64_t size)
{
	struct mkswap_options o = {.size_bytes = size};
	char err[512];

	unlink(path);
	if (mkswap_format(path, &o, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "mkswap_format: %s\n", err);
		exit(1);
	}
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

enum page_kind { PAGE_TEXT, PAGE_SAME, PAGE_RANDOM };

/* A page that is a function of seed and kind: text-like (compresses about 3x), same-filled
 * (zero, a small value or a word that needs same_words[]), or random (incompressible). */
static void make_page(uint64_t seed, enum page_kind kind, unsigned char *p)
{
	static const char *const words[] = {"memory", "page", "fault ", "zspage", "class", " ",
					    "handle", "\n",   "swap",	"0x00",	  "lru"};
	uint64_t s = seed, r = rng_next(&s);
	size_t i = 0;

	if (kind == PAGE_SAME) {
		uint64_t w = r % 3 == 0 ? 0 : r % 3 == 1 ? r % 1000 : rng_next(&s) | 1ULL << 63;

		for (i = 0; i < PAGE_SIZE; i += 8)
			memcpy(p + i, &w, 8);
		return;
	}
	if (kind == PAGE_RANDOM) {
		for (i = 0; i < PAGE_SIZE; i += 8) {
			r = rng_next(&s);
			memcpy(p + i, &r, 8);
		}
		return;
	}
	while (i < PAGE_SIZE) {
		r = rng_next(&s);
		if (r % 100 < 20) {
			p[i++] = (unsigned char)(r >> 32);
			continue;
		}
		for (const char *w = words[(r >> 8) % ARRAY_SIZE(words)]; *w && i < PAGE_SIZE; w++)
			p[i++] = (unsigned char)*w;
	}
}

/* 1 in 8 same-filled, 1 in 16 random, the rest text. */
static enum page_kind kind_of(uint64_t seed)
{
	return seed % 8 == 3 ? PAGE_SAME : seed % 16 == 5 ? PAGE_RANDOM : PAGE_TEXT;
}

static void check_load(struct store *s, uint64_t handle, uint64_t seed, enum page_kind kind)
{
	unsigned char want[PAGE_SIZE], got[PAGE_SIZE];

	make_page(seed, kind, want);
	memset(got, 0xa5, sizeof(got));
	CHECK_EQ(store_load(s, handle, got), 0);
	CHECK(memcmp(want, got, PAGE_SIZE) == 0);
}

static void check_adds_up(struct store *s)
{
	struct store_stats st;

	store_get_stats(s, &st);
	CHECK_EQ(st.stored_pages, st.same_pages + st.pool_pages + st.bd_count);
	CHECK_EQ(st.orig_data_size, st.stored_pages * PAGE_SIZE);
}

/* The figures of an empty store, as a new one has them. */
static void check_empty(struct store *s, uint64_t mem_fresh)
{
	struct store_stats st;
	struct store_swap_stats as[4];
	int n;

	store_compact(s);
	store_get_stats(s, &st);
	CHECK_EQ(st.stored_pages, 0);
	CHECK_EQ(st.bd_count, 0);
	CHECK_EQ(st.pool_pages, 0);
	CHECK_EQ(st.same_pages, 0);
	CHECK_EQ(st.compr_data_size, 0);
	CHECK_EQ(st.mem_used_total, mem_fresh);
	n = store_get_swap_stats(s, as, ARRAY_SIZE(as));
	for (int i = 0; i < n && i < 4; i++)
		CHECK_EQ(as[i].used_slots, 0);
}

static uint64_t mem_used(struct store *s)
{
	struct store_stats st;

	store_get_stats(s, &st);
	return st.mem_used_total;
}

/* ---- configuration ---- */

static void test_config(void)
{
	struct store_swap_area a = {.path = path_in("cfg"), .prio = STORE_SWAP_PRIO_DEFAULT};
	struct store_swap_area missing = {.path = path_in("no-such-file")};
	struct store_swap_area notswap = {.path = path_in("notswap")};
	struct store *s = NULL;
	char err[512];
	int fd;

	make_area(a.path, 1 * MiB);
	fd = open(notswap.path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, 1 * MiB), 0);
	close(fd);

	CHECK_EQ(store_new_err(&(struct store_config){.backend = STORE_BACKEND_SWAPFILE}, &s, err,
			       sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "needs at least one swap area"));
	CHECK_EQ(store_new_err(&(struct store_config){.swap_areas = &a, .nr_swap_areas = 1}, &s,
			       err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "uses no swap area"));
	CHECK_EQ(store_new_err(&(struct store_config){.backend = STORE_BACKEND_SWAPFILE,
						      .swap_areas = &missing,
						      .nr_swap_areas = 1},
			       &s, err, sizeof(err)),
		 -ENOENT);
	CHECK_MSG(err, missing.path, "No such file");
	CHECK_EQ(store_new_err(&(struct store_config){.backend = STORE_BACKEND_SWAPFILE,
						      .swap_areas = &notswap,
						      .nr_swap_areas = 1},
			       &s, err, sizeof(err)),
		 -EINVAL);
	CHECK_MSG(err, notswap.path, "swap");
	CHECK_EQ(store_new_err(&(struct store_config){.backend = STORE_BACKEND_POOL_SWAPFILE,
						      .swap_areas = &a,
						      .nr_swap_areas = 1,
						      .writeback_high_pct = 80,
						      .writeback_low_pct = 90},
			       &s, err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "low <= high"));
	CHECK_EQ(store_new_err(&(struct store_config){.backend = STORE_BACKEND_POOL_SWAPFILE,
						      .compressor = "gzip",
						      .swap_areas = &a,
						      .nr_swap_areas = 1},
			       &s, err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "gzip"));
	/* The area was let go on every failure: a store can have it now. */
	CHECK_EQ(store_new_err(&(struct store_config){.backend = STORE_BACKEND_POOL_SWAPFILE,
						      .swap_areas = &a,
						      .nr_swap_areas = 1},
			       &s, err, sizeof(err)),
		 0);
	{
		struct store_stats st;

		/* No limit given: 20% of physical memory, as zswap. */
		store_get_stats(s, &st);
		CHECK_EQ(st.mem_limit, (uint64_t)sysconf(_SC_PHYS_PAGES) * PAGE_SIZE *
					       TIER_DEFAULT_LIMIT_PCT / 100);
	}
	/* ... and only that store: a second one is refused, as a second swapon. */
	{
		struct store *s2;

		CHECK_EQ(store_new_err(&(struct store_config){.backend = STORE_BACKEND_SWAPFILE,
							      .swap_areas = &a,
							      .nr_swap_areas = 1},
				       &s2, err, sizeof(err)),
			 -EBUSY);
		CHECK_MSG(err, a.path, "in use");
	}
	store_free(s);
	printf("config: ok\n");
}

/* ---- backend swapfile ---- */

static void test_swapfile_backend(void)
{
	const unsigned n = 1500;
	struct store_swap_area areas[] = {
		{.path = path_in("low"), .prio = 1},
		{.path = path_in("high"), .prio = 5, .direct_io = true},
	};
	struct store_config cfg = {
		.backend = STORE_BACKEND_SWAPFILE,
		.swap_areas = areas,
		.nr_swap_areas = 2,
	};
	struct store_swap_stats as[4];
	struct store_stats st;
	unsigned char page[PAGE_SIZE];
	uint64_t *h = calloc(n, sizeof(*h)), mem_fresh, nr_same = 0, nr_area = 0;
	unsigned char *bufs = aligned_alloc(PAGE_SIZE, (size_t)n * PAGE_SIZE);
	void **pp = calloc(n, sizeof(*pp));
	int *res = calloc(n, sizeof(*res));
	struct store *s;
	char err[512];

	CHECK(h && bufs && pp && res);
	make_area(areas[0].path, 8 * MiB);
	make_area(areas[1].path, 4 * MiB); /* 1023 slots: full before the n pages are in */
	CHECK_EQ(store_new_err(&cfg, &s, err, sizeof(err)), 0);
	mem_fresh = mem_used(s);

	for (unsigned i = 0; i < n; i++) {
		make_page(i, kind_of(i), page);
		CHECK_EQ(store_save(s, page, &h[i]), 0);
		if (kind_of(i) == PAGE_SAME) {
			nr_same++;
			CHECK(!store_load_may_block(s, h[i]));
		} else {
			nr_area++;
			CHECK(store_load_may_block(s, h[i]));
			CHECK(h[i] & H_SWAP);
		}
	}
	store_get_stats(s, &st);
	CHECK_EQ(st.stored_pages, n);
	CHECK_EQ(st.same_pages, nr_same);
	CHECK_EQ(st.bd_count, nr_area);
	CHECK_EQ(st.bd_writes, nr_area); /* same-filled pages never go to an area */
	CHECK_EQ(st.pool_pages, 0);
	CHECK_EQ(st.bd_total_slots, 2047 + 1023);
	check_adds_up(s);
	/* The higher priority fills first. */
	CHECK_EQ(store_get_swap_stats(s, as, ARRAY_SIZE(as)), 2);
	CHECK(strcmp(as[0].path, areas[0].path) == 0 && as[0].prio == 1 && !as[0].direct_io);
	CHECK(strcmp(as[1].path, areas[1].path) == 0 && as[1].prio == 5 && as[1].direct_io);
	CHECK_EQ(as[1].used_slots, as[1].total_slots);
	CHECK_EQ(as[1].total_slots, 1023);
	CHECK_EQ(as[0].used_slots, nr_area - 1023);
	CHECK_EQ(as[0].bd_writes + as[1].bd_writes, nr_area);

	/* A fault thread's load refuses the disk; an I/O thread's reads it. */
	for (unsigned i = 0; i < n; i++) {
		if (kind_of(i) == PAGE_SAME) {
			CHECK_EQ(store_try_load(s, h[i], page), 0);
		} else {
			CHECK_EQ(store_try_load(s, h[i], page), -EWOULDBLOCK);
		}
		check_load(s, h[i], i, kind_of(i));
	}
	store_get_stats(s, &st);
	CHECK_EQ(st.bd_reads, nr_area);

	/* The batch: consecutive slots read together; unaligned buffers for O_DIRECT too. */
	for (unsigned i = 0; i < n; i++) {
		if (i % 7) {
			pp[i] = bufs + (size_t)i * PAGE_SIZE;
		} else {
			pp[i] = malloc(PAGE_SIZE + 8);
			CHECK(pp[i]);
			pp[i] = (char *)pp[i] + 8;
		}
	}
	CHECK_EQ(store_load_batch(s, h, pp, n, res), n);
	for (unsigned i = 0; i < n; i++) {
		make_page(i, kind_of(i), page);
		CHECK_EQ(res[i], 0);
		CHECK(memcmp(pp[i], page, PAGE_SIZE) == 0);
	}
	store_get_stats(s, &st);
	CHECK_EQ(st.bd_reads, 2 * nr_area);

	for (unsigned i = 0; i < n; i++)
		store_drop(s, h[i]);
	check_empty(s, mem_fresh);
	/* A handle that holds nothing any more. */
	CHECK_EQ(store_load(s, h[1], page), -ENOENT);
	CHECK_EQ(store_load(s, H_SWAP | UINT64_C(1) << 40, page), -ENOENT);
	store_free(s);
	for (unsigned i = 0; i < n; i++)
		if (i % 7 == 0)
			free((char *)pp[i] - 8);
	free(h);
	free(bufs);
	free(pp);
	free(res);
	printf("swapfile: %" PRIu64 " pages in 2 areas, %" PRIu64 " same-filled kept out\n",
	       nr_area, nr_same);
}

/* A full area: the page that finds no slot stays with the caller, nothing is lost. */
static void test_swapfile_full(void)
{
	struct store_swap_area a = {.path = path_in("tiny")};
	struct store_config cfg = {
		.backend = STORE_BACKEND_SWAPFILE,
		.swap_areas = &a,
		.nr_swap_areas = 1,
	};
	unsigned char page[PAGE_SIZE];
	struct store_stats st;
	uint64_t h[15], extra, same, adopted;
	bool past;
	struct store *s;

	make_area(a.path, 64 * 1024); /* 16 pages: the header and 15 slots */
	CHECK_EQ(store_new(&cfg, &s), 0);
	for (unsigned i = 0; i < 15; i++) {
		CHECK(store_has_room_for(s, 15 - i));
		CHECK(!store_has_room_for(s, 16 - i));
		make_page(i, PAGE_TEXT, page);
		CHECK_EQ(store_save(s, page, &h[i]), 0);
	}
	make_page(99, PAGE_TEXT, page);
	CHECK_EQ(store_save(s, page, &extra), -ENOSPC);
	CHECK(!store_has_room_for(s, 1));
	/* A same-filled page needs no slot. */
	make_page(100, PAGE_SAME, page);
	CHECK_EQ(store_save(s, page, &same), 0);
	/* A page adopted from a dead daemon goes to the pool when no slot is free. */
	make_page(101, PAGE_TEXT, page);
	CHECK_EQ(store_save_adopted(s, page, &past, &adopted), 0);
	CHECK(past);
	store_get_stats(s, &st);
	CHECK_EQ(st.stored_pages, 17);
	CHECK_EQ(st.bd_count, 15); /* the adopted page is in the pool */
	CHECK_EQ(st.limit_rejects, 1);
	CHECK_EQ(st.bd_write_errors, 0);
	check_adds_up(s);
	for (unsigned i = 0; i < 15; i++)
		check_load(s, h[i], i, PAGE_TEXT);
	check_load(s, adopted, 101, PAGE_TEXT);
	store_drop(s, adopted);
	store_drop(s, h[3]);
	CHECK(store_has_room_for(s, 1));
	make_page(99, PAGE_TEXT, page);
	CHECK_EQ(store_save(s, page, &extra), 0);
	check_load(s, extra, 99, PAGE_TEXT);
	store_free(s);
	printf("swapfile full: ENOSPC, page kept by the caller\n");
}

/* A read that fails (the file shrank under the store) is -EIO, counted; the rest goes on. */
static void test_swapfile_eio(void)
{
	struct store_swap_area a = {.path = path_in("shrinks")};
	struct store_config cfg = {
		.backend = STORE_BACKEND_SWAPFILE,
		.swap_areas = &a,
		.nr_swap_areas = 1,
	};
	unsigned char page[PAGE_SIZE], bufs[64][PAGE_SIZE];
	void *pp[64];
	int res[64];
	struct store_stats st;
	uint64_t h[64], mem_fresh;
	unsigned bad = 0, loaded;
	struct store *s;

	make_area(a.path, 4 * MiB);
	CHECK_EQ(store_new(&cfg, &s), 0);
	mem_fresh = mem_used(s);
	for (unsigned i = 0; i < 64; i++) {
		make_page(i, PAGE_TEXT, page);
		CHECK_EQ(store_save(s, page, &h[i]), 0);
		pp[i] = bufs[i];
	}
	CHECK_EQ(truncate(a.path, 32 * PAGE_SIZE), 0);
	for (unsigned i = 0; i < 64; i++) {
		if (swp_offset(h[i] & H_SWAP_ENTRY_MASK) < 32) {
			check_load(s, h[i], i, PAGE_TEXT);
		} else {
			CHECK_EQ(store_load(s, h[i], page), -EIO);
			bad++;
		}
	}
	CHECK(bad > 16);
	store_get_stats(s, &st);
	CHECK_EQ(st.bd_read_errors, bad);
	/* In a batch, each page gets its own answer. */
	loaded = store_load_batch(s, h, pp, 64, res);
	CHECK_EQ(loaded, 64 - bad);
	for (unsigned i = 0; i < 64; i++) {
		CHECK_EQ(res[i], swp_offset(h[i] & H_SWAP_ENTRY_MASK) < 32 ? 0 : -EIO);
		make_page(i, PAGE_TEXT, page);
		if (!res[i])
			CHECK(memcmp(pp[i], page, PAGE_SIZE) == 0);
	}
	for (unsigned i = 0; i < 64; i++)
		store_drop(s, h[i]);
	check_empty(s, mem_fresh);
	store_free(s);
	printf("swapfile EIO: %u unreadable pages reported\n", bad);
}

/* ---- backend pool+swapfile ---- */

static struct store *new_tiered(const char *area, uint64_t area_bytes, uint64_t limit,
				unsigned high, unsigned low, bool on_save)
{
	static struct store_swap_area a;
	struct store_config cfg = {
		.backend = STORE_BACKEND_POOL_SWAPFILE,
		.mem_limit_bytes = limit,
		.compaction = true,
		.swap_areas = &a,
		.nr_swap_areas = 1,
		.writeback_high_pct = high,
		.writeback_low_pct = low,
		.writeback_on_save = on_save,
	};
	struct store *s;
	char err[512];

	a = (struct store_swap_area){.path = area};
	make_area(area, area_bytes);
	if (store_new_err(&cfg, &s, err, sizeof(err)) < 0) {
		fprintf(stderr, "store_new: %s\n", err);
		exit(1);
	}
	return s;
}

/* Where a tier handle's page is: 'p' pool, 'w' writeback in flight, 's' an area. */
static char where(struct store *s, uint64_t handle)
{
	struct tier_entry *e = tier_lookup(s, handle & ~H_TIER);
	uint64_t st;

	CHECK(e);
	st = atomic_load(&e->state);
	switch (st & TS_KIND_MASK) {
	case TS_POOL:
		return 'p';
	case TS_WB:
		return 'w';
	case TS_SWAP:
		return 's';
	}
	CHECK(!"a free entry behind a live handle");
	return 0;
}

/*
 * Writeback on save, so every step can be watched: the pool never passes its limit, each
 * writeback brings it below the low watermark and the next waits until it passes the high one
 * again (at least (high - low) of the pool's memory saved in between), the pages written back
 * are the oldest, handles never change, and every page comes back byte for byte.
 */
static void test_tier_hysteresis(void)
{
	const unsigned n = 6000;
	const uint64_t limit = 2 * MiB;
	struct store *s = new_tiered(path_in("tier"), 64 * MiB, limit, 95, 75, true);
	uint64_t *h = calloc(n, sizeof(*h)), *h_saved = calloc(n, sizeof(*h));
	uint64_t wb_prev = 0, mem_fresh, nr_huge = 0, nr_same = 0, gap_min = UINT64_MAX;
	unsigned char page[PAGE_SIZE];
	unsigned bursts = 0, last_burst = 0, newest_out = 0, oldest_in = n;
	struct store_stats st;

	CHECK(h && h_saved);
	mem_fresh = mem_used(s);
	for (unsigned i = 0; i < n; i++) {
		enum page_kind k = kind_of(i);

		make_page(i, k, page);
		CHECK_EQ(store_save(s, page, &h[i]), 0);
		h_saved[i] = h[i];
		nr_huge += k == PAGE_RANDOM;
		nr_same += k == PAGE_SAME;
		CHECK(tier_used(s) <= s->pool_limit + TIER_CHUNK * sizeof(struct tier_entry));
		CHECK(mem_used(s) <= limit + TIER_CHUNK * sizeof(struct tier_entry));
		store_get_stats(s, &st);
		if (st.written_back != wb_prev) {
			/* A writeback ran in this save: it went all the way down. */
			CHECK(tier_used(s) < s->wb_low + PAGE_SIZE * ZPOOL_MAX_ZSPAGE_PAGES);
			if (bursts)
				gap_min = MIN(gap_min, (uint64_t)(i - last_burst));
			bursts++;
			last_burst = i;
			wb_prev = st.written_back;
		}
	}
	store_get_stats(s, &st);
	printf("tier hysteresis: %u writebacks, %" PRIu64 " pages written back, fewest saves "
	       "between two %" PRIu64 "\n",
	       bursts, st.written_back, gap_min);
	CHECK(bursts >= 3);
	/* Between two writebacks, the pool grew from below low to high again. The pages are
	 * text (about 1.3 KiB compressed): at least (high - low) / 4 KiB saves, conservatively. */
	CHECK(gap_min >= (s->wb_high - s->wb_low) / PAGE_SIZE);
	CHECK_EQ(st.pool_limit_hit, 0);
	CHECK_EQ(st.same_pages, nr_same);
	/* Incompressible pages went straight to the area; the rest of it is writeback. */
	CHECK_EQ(st.bd_count, st.written_back + nr_huge);
	CHECK_EQ(st.bd_writes, st.bd_count);
	CHECK_EQ(st.writeback_failures, 0);
	check_adds_up(s);

	/* The coldest went: every page written back was saved before every page still in the
	 * pool (no page was loaded, so the LRU is the save order). */
	for (unsigned i = 0; i < n; i++) {
		if (kind_of(i) != PAGE_TEXT)
			continue;
		CHECK(h[i] & H_TIER);
		if (where(s, h[i]) == 's') {
			newest_out = i;
			CHECK(store_load_may_block(s, h[i]));
		} else {
			oldest_in = MIN(oldest_in, i);
			CHECK(!store_load_may_block(s, h[i]));
		}
	}
	CHECK(newest_out < oldest_in);

	/* Handles unchanged; every page byte for byte, from the pool or the area. */
	for (unsigned i = 0; i < n; i++) {
		CHECK_EQ(h[i], h_saved[i]);
		check_load(s, h[i], i, kind_of(i));
	}
	/* Drop in an order unlike the save order, then the store is as new. */
	for (unsigned i = 0; i < n; i += 2)
		store_drop(s, h[i]);
	check_adds_up(s);
	for (unsigned i = 1; i < n; i += 2)
		store_drop(s, h[i]);
	check_empty(s, mem_fresh);
	store_free(s);
	free(h);
	free(h_saved);
}

/* A loaded page gets a second chance: writeback takes the next coldest instead. */
static void test_tier_second_chance(void)
{
	struct store *s = new_tiered(path_in("tier2"), 8 * MiB, 4 * MiB, 0, 0, true);
	unsigned char page[PAGE_SIZE];
	uint64_t h[8];

	for (unsigned i = 0; i < 8; i++) {
		make_page(i, PAGE_TEXT, page);
		CHECK_EQ(store_save(s, page, &h[i]), 0);
	}
	check_load(s, h[0], 0, PAGE_TEXT); /* REF */
	CHECK_EQ(store_writeback(s, 1), 1);
	CHECK_EQ(where(s, h[0]), 'p');
	CHECK_EQ(where(s, h[1]), 's');
	CHECK_EQ(store_writeback(s, 2), 2);
	CHECK_EQ(where(s, h[2]), 's');
	CHECK_EQ(where(s, h[3]), 's');
	CHECK_EQ(where(s, h[0]), 'p'); /* its chance moved it to the warm end */
	CHECK_EQ(store_try_load(s, h[1], page), -EWOULDBLOCK);
	CHECK_EQ(store_try_load(s, h[0], page), 0);
	for (unsigned i = 0; i < 8; i++)
		check_load(s, h[i], i, PAGE_TEXT);
	/* Everything out: the pool is empty of pages. */
	CHECK_EQ(store_writeback(s, 100), 5);
	CHECK_EQ(store_writeback(s, 100), 0);
	for (unsigned i = 0; i < 8; i++) {
		CHECK_EQ(where(s, h[i]), 's');
		check_load(s, h[i], i, PAGE_TEXT);
		store_drop(s, h[i]);
	}
	check_adds_up(s);
	store_free(s);
	printf("tier second chance: ok\n");
}

/* ---- loads racing with writeback on its own thread ---- */

struct race {
	struct store *s;
	const uint64_t *h; /* stable handles: loaded, never dropped while the loaders run */
	unsigned n;
	_Atomic bool stop;
	_Atomic uint64_t loads, from_area;
};

static void *loader_main(void *p)
{
	struct race *rc = p;
	uint64_t rs = (uint64_t)(uintptr_t)&rs;
	unsigned char want[PAGE_SIZE], got[PAGE_SIZE];

	while (!atomic_load(&rc->stop)) {
		unsigned i = (unsigned)(rng_next(&rs) % rc->n);
		bool blocky = store_load_may_block(rc->s, rc->h[i]);

		make_page(i, kind_of(i), want);
		CHECK_EQ(store_load(rc->s, rc->h[i], got), 0);
		CHECK(memcmp(want, got, PAGE_SIZE) == 0);
		atomic_fetch_add(&rc->loads, 1);
		atomic_fetch_add(&rc->from_area, blocky);
	}
	return NULL;
}

static void test_tier_thread_race(void)
{
	const unsigned n_stable = 3000, n_churn = 12000;
	const uint64_t limit = 2 * MiB;
	struct store *s = new_tiered(path_in("race"), 128 * MiB, limit, 0, 0, false);
	uint64_t *h = calloc(n_stable, sizeof(*h)), *churn = calloc(n_churn, sizeof(*churn));
	uint64_t mem_fresh = mem_used(s), rs = 17;
	struct race rc = {.s = s, .h = h, .n = n_stable};
	unsigned char page[PAGE_SIZE];
	struct store_stats st;
	pthread_t t[2];
	double waited = 0;

	CHECK(h && churn);
	for (unsigned i = 0; i < n_stable; i++) {
		make_page(i, kind_of(i), page);
		CHECK_EQ(store_save(s, page, &h[i]), 0);
	}
	for (unsigned i = 0; i < ARRAY_SIZE(t); i++)
		CHECK_EQ(pthread_create(&t[i], NULL, loader_main, &rc), 0);
	/* Saves and drops of other pages push the pool past its limit again and again. */
	for (unsigned i = 0; i < n_churn; i++) {
		uint64_t seed = 1000000 + i;

		make_page(seed, kind_of(seed), page);
		CHECK_EQ(store_save(s, page, &churn[i]), 0);
		if (i > 100 && rng_next(&rs) % 3 == 0) {
			unsigned k = (unsigned)(rng_next(&rs) % i);

			if (churn[k]) {
				check_load(s, churn[k], 1000000 + k, kind_of(1000000 + k));
				store_drop(s, churn[k]);
				churn[k] = 0;
			}
		}
	}
	/* The thread catches up: the pool ends below the high watermark. */
	while (tier_used(s) >= s->wb_high && waited < 30) {
		usleep(10000);
		waited += 0.01;
	}
	atomic_store(&rc.stop, true);
	for (unsigned i = 0; i < ARRAY_SIZE(t); i++)
		pthread_join(t[i], NULL);
	CHECK(tier_used(s) < s->wb_high);
	store_get_stats(s, &st);
	printf("tier race: %" PRIu64 " loads (%" PRIu64 " from the area) during %" PRIu64
	       " pages written back, %" PRIu64 " sent straight to the area at the limit\n",
	       atomic_load(&rc.loads), atomic_load(&rc.from_area), st.written_back,
	       st.pool_limit_hit);
	CHECK(st.written_back > 1000);
	CHECK(atomic_load(&rc.loads) > 1000);
	CHECK_EQ(st.writeback_failures, 0);
	check_adds_up(s);
	for (unsigned i = 0; i < n_stable; i++) {
		check_load(s, h[i], i, kind_of(i));
		store_drop(s, h[i]);
	}
	for (unsigned i = 0; i < n_churn; i++)
		if (churn[i]) {
			check_load(s, churn[i], 1000000 + i, kind_of(1000000 + i));
			store_drop(s, churn[i]);
		}
	check_empty(s, mem_fresh);
	store_free(s);
	free(h);
	free(churn);
}

/*
 * The area fills up: writeback leaves the pages in the pool (counted), the pool fills up too,
 * and then a save returns -ENOSPC with nothing stored; every page stored still loads.
 */
static void test_tier_full(void)
{
	struct store *s = new_tiered(path_in("tierfull"), 256 * 1024, 1 * MiB, 0, 0, true);
	unsigned char page[PAGE_SIZE];
	struct store_stats st;
	uint64_t h[4000];
	unsigned n = 0;
	int r = 0;

	while (n < ARRAY_SIZE(h)) {
		make_page(n, PAGE_TEXT, page);
		r = store_save(s, page, &h[n]);
		if (r < 0)
			break;
		n++;
	}
	CHECK_EQ(r, -ENOSPC);
	CHECK(!store_has_room_for(s, 1));
	/* A page adopted from a dead daemon is kept all the same, past the pool's limit. */
	bool past;

	CHECK_EQ(store_save_adopted(s, page, &past, &h[n]), 0);
	CHECK(past);
	n++;
	store_get_stats(s, &st);
	CHECK_EQ(st.bd_count, 63); /* every slot */
	CHECK(st.writeback_failures > 0);
	CHECK_EQ(st.limit_rejects, 1);
	CHECK_EQ(st.stored_pages, n);
	CHECK_EQ(store_writeback(s, 10), -ENOSPC);
	check_adds_up(s);
	for (unsigned i = 0; i < n; i++)
		check_load(s, h[i], i, PAGE_TEXT);
	/* Dropping pages in the area frees slots for writeback again. */
	for (unsigned i = 0; i < 10; i++) {
		CHECK_EQ(where(s, h[i]), 's');
		store_drop(s, h[i]);
	}
	CHECK_EQ(store_writeback(s, 10), 10);
	for (unsigned i = 10; i < n; i++)
		check_load(s, h[i], i, PAGE_TEXT);
	store_free(s);
	printf("tier full: %u pages stored, then ENOSPC; writeback failures %" PRIu64 "\n", n,
	       st.writeback_failures);
}

/* A written-back page whose area shrank: -EIO on load, counted; pool pages unaffected. */
static void test_tier_eio(void)
{
	struct store *s = new_tiered(path_in("tiereio"), 4 * MiB, 8 * MiB, 0, 0, true);
	unsigned char page[PAGE_SIZE];
	struct store_stats st;
	uint64_t h[100];
	unsigned bad = 0;

	for (unsigned i = 0; i < 100; i++) {
		make_page(i, PAGE_TEXT, page);
		CHECK_EQ(store_save(s, page, &h[i]), 0);
	}
	CHECK_EQ(store_writeback(s, 50), 50);
	CHECK_EQ(truncate(path_in("tiereio"), PAGE_SIZE), 0);
	for (unsigned i = 0; i < 100; i++) {
		if (i < 50) {
			CHECK_EQ(where(s, h[i]), 's');
			CHECK_EQ(store_load(s, h[i], page), -EIO);
			bad++;
		} else {
			check_load(s, h[i], i, PAGE_TEXT);
		}
	}
	store_get_stats(s, &st);
	CHECK_EQ(st.bd_read_errors, bad);
	for (unsigned i = 0; i < 100; i++)
		store_drop(s, h[i]);
	check_adds_up(s);
	store_get_stats(s, &st);
	CHECK_EQ(st.stored_pages, 0);
	store_free(s);
	printf("tier EIO: ok\n");
}

/*
 * ENOSPC from the file system (a sparse area on a full tmpfs), in a mount namespace of a
 * child: a save straight to the area fails with the page kept by the caller; a writeback
 * fails with the pages kept in the pool. Skipped where mounting is not allowed.
 */
static void test_disk_enospc(void)
{
	pid_t pid;
	int wst;

	fflush(NULL);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		const char *mnt = path_in("small");
		char file[600], err[512];
		unsigned char page[PAGE_SIZE];
		union swap_header hdr;
		struct store_swap_area a = {.path = file};
		struct store_config cfg = {
			.backend = STORE_BACKEND_SWAPFILE,
			.swap_areas = &a,
			.nr_swap_areas = 1,
		};
		struct store_stats st;
		struct store *s;
		uint64_t h[200];
		unsigned n = 0;
		int fd, r = 0;

		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || mkdir(mnt, 0700) < 0 ||
		    mount("memext-test", mnt, "tmpfs", 0, "size=256k") < 0) {
			printf("disk ENOSPC: skipped, %m\n");
			fflush(stdout);
			_exit(EXIT_SKIP);
		}
		snprintf(file, sizeof(file), "%s/sparse", mnt);
		fd = open(file, O_CREAT | O_RDWR, 0600);
		CHECK(fd >= 0);
		CHECK_EQ(swap_header_encode(&hdr, 1024, NULL, NULL, NULL, 0, err, sizeof(err)), 0);
		CHECK_EQ(pwrite(fd, &hdr, sizeof(hdr), 0), PAGE_SIZE);
		CHECK_EQ(ftruncate(fd, 4 * MiB), 0);
		close(fd);

		/* swapfile: the save that meets the full file system keeps nothing. */
		CHECK_EQ(store_new(&cfg, &s), 0);
		while (n < ARRAY_SIZE(h)) {
			make_page(n, PAGE_TEXT, page);
			r = store_save(s, page, &h[n]);
			if (r < 0)
				break;
			n++;
		}
		CHECK_EQ(r, -ENOSPC);
		CHECK(n >= 32 && n < 64);
		store_get_stats(s, &st);
		CHECK_EQ(st.stored_pages, n);
		CHECK_EQ(st.bd_count, n);
		CHECK(st.bd_write_errors > 0);
		CHECK_EQ(st.limit_rejects, 1);
		for (unsigned i = 0; i < n; i++)
			check_load(s, h[i], i, PAGE_TEXT);
		store_free(s);

		/* pool+swapfile: writeback fails, the pages stay in the pool. The blocks written
		 * above stay allocated, so the file system is still full. */
		cfg.backend = STORE_BACKEND_POOL_SWAPFILE;
		cfg.mem_limit_bytes = 8 * MiB;
		cfg.writeback_on_save = true;
		CHECK_EQ(store_new(&cfg, &s), 0);
		for (unsigned i = 0; i < 100; i++) {
			make_page(i, PAGE_TEXT, page);
			CHECK_EQ(store_save(s, page, &h[i]), 0);
		}
		/* Slots whose blocks exist take pages; the others fail with ENOSPC. */
		while ((r = (int)store_writeback(s, 10)) > 0)
			;
		CHECK_EQ(r, -ENOSPC);
		store_get_stats(s, &st);
		CHECK(st.writeback_failures > 0);
		CHECK(st.bd_write_errors > 0);
		check_adds_up(s);
		for (unsigned i = 0; i < 100; i++)
			check_load(s, h[i], i, PAGE_TEXT);
		printf("disk ENOSPC: swapfile kept %u pages then refused; writeback moved %" PRIu64
		       ", left %" PRIu64 " in the pool\n",
		       n, st.written_back, st.pool_pages);
		fflush(stdout);
		store_free(s);
		_exit(0);
	}
	CHECK_EQ(waitpid(pid, &wst, 0), pid);
	CHECK(WIFEXITED(wst) && (WEXITSTATUS(wst) == 0 || WEXITSTATUS(wst) == EXIT_SKIP));
	rmdir(path_in("small"));
}

/* ---- shared handles (fork) in swap areas and the tier table ---- */

/*
 * A handle shared by two page tables keeps its slot (swapfile) or its tier entry
 * (pool+swapfile) until the last reference goes, including while writeback moves it from the
 * pool to an area; loads stay byte for byte; the store ends empty.
 */
static void test_dup_areas(void)
{
	struct store_swap_area area = {.path = path_in("dup")};
	struct store_config cfg = {
		.backend = STORE_BACKEND_SWAPFILE,
		.swap_areas = &area,
		.nr_swap_areas = 1,
	};
	unsigned char page[PAGE_SIZE];
	struct store_swap_stats as[1];
	struct store_stats st;
	uint64_t h[64], mem_fresh;
	struct store *s;
	char err[512];

	make_area(area.path, 4 * MiB);
	CHECK_EQ(store_new_err(&cfg, &s, err, sizeof(err)), 0);
	mem_fresh = mem_used(s);
	for (unsigned i = 0; i < 64; i++) {
		make_page(i, PAGE_TEXT, page);
		CHECK_EQ(store_save(s, page, &h[i]), 0);
		CHECK(h[i] & H_SWAP);
		CHECK_EQ(store_dup(s, h[i]), 0);
	}
	for (unsigned i = 0; i < 64; i++)
		store_drop(s, h[i]);
	CHECK_EQ(store_get_swap_stats(s, as, 1), 1);
	CHECK_EQ(as[0].used_slots, 64);
	for (unsigned i = 0; i < 64; i++) {
		CHECK_EQ(store_handle_refs(s, h[i]), 1);
		check_load(s, h[i], i, PAGE_TEXT);
		store_drop(s, h[i]);
	}
	CHECK_EQ(store_get_swap_stats(s, as, 1), 1);
	CHECK_EQ(as[0].used_slots, 0);
	check_empty(s, mem_fresh);
	store_free(s);

	/* pool+swapfile: shared, then written back, then dropped side by side. */
	s = new_tiered(path_in("dup-tier"), 8 * MiB, 4 * MiB, 0, 0, true);
	mem_fresh = mem_used(s);
	for (unsigned i = 0; i < 64; i++) {
		make_page(i, PAGE_TEXT, page);
		CHECK_EQ(store_save(s, page, &h[i]), 0);
		CHECK(h[i] & H_TIER);
		CHECK_EQ(store_dup(s, h[i]), 0);
	}
	CHECK_EQ(store_writeback(s, 32), 32);
	for (unsigned i = 0; i < 64; i++) {
		CHECK_EQ(where(s, h[i]), i < 32 ? 's' : 'p');
		store_drop(s, h[i]);
		CHECK_EQ(where(s, h[i]), i < 32 ? 's' : 'p');
		check_load(s, h[i], i, PAGE_TEXT);
	}
	store_get_stats(s, &st);
	CHECK_EQ(st.stored_pages, 64);
	CHECK_EQ(st.shared_handles, 0);
	check_adds_up(s);
	for (unsigned i = 0; i < 64; i++)
		store_drop(s, h[i]);
	check_empty(s, mem_fresh);
	store_free(s);
	printf("dup in areas and the tier table: ok\n");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	dir = swap_test_mkdtemp();
	test_config();
	test_swapfile_backend();
	test_swapfile_full();
	test_swapfile_eio();
	test_tier_hysteresis();
	test_tier_second_chance();
	test_tier_thread_race();
	test_tier_full();
	test_tier_eio();
	test_disk_enospc();
	test_dup_areas();
	printf("ok\n");
	return 0;
}
