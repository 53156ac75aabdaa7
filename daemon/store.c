/* SPDX-License-Identifier: MIT */
/*
 * The store: zram's write and read paths over the zpool. A page that is one repeated 8-byte word
 * is kept as that word, in its handle when it fits, with no pool memory; other pages are
 * compressed by the configured codec, and those that compress to more than the huge threshold
 * are kept raw in the pool's one-page class. Everything read back from the pool is decompressed
 * with bounds checks: corrupt bytes give -EBADMSG, never a crash.
 *
 * Handles, STORE_HANDLE_BITS wide and never 0:
 *
 *   bit 55 = 1: a same-filled page; bits 52..53 say how the word is kept:
 *       0: bits 0..51 are the word, sign-extended (0, -1, small values)
 *       1: bits 0..31 are both halves of the word (repeated bytes, 16- and 32-bit patterns)
 *       2: bits 0..51 index same_words[], which keeps the word and a count of pages
 *   bit 55 = 0: a pool object
 *       bits 48..50: the codec that compressed it (an object of PAGE_SIZE bytes is a raw page)
 *       bits 0..30: the zpool handle
 *
 * Locking: same_lock guards same_words[] allocation and reference counts; a load reads a word
 * without it, since an entry's word only changes while no handle refers to it. Nothing else in
 * the store locks; the pool's locking is described in zpool.c.
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "macro.h"
#include "zpool.h"

#define H_SAME (UINT64_C(1) << 55)
#define H_SAME_KIND_SHIFT 52
#define H_SAME_VALUE (UINT64_C(0) << H_SAME_KIND_SHIFT)
#define H_SAME_HALVES (UINT64_C(1) << H_SAME_KIND_SHIFT)
#define H_SAME_TABLE (UINT64_C(2) << H_SAME_KIND_SHIFT)
#define H_SAME_KIND_MASK (UINT64_C(3) << H_SAME_KIND_SHIFT)
#define H_SAME_WORD_BITS 52
#define H_CODEC_SHIFT 48
#define H_CODEC_MASK UINT64_C(7)
#define H_POOL_MASK ((UINT64_C(1) << 31) - 1)

static_assert(H_SAME < (UINT64_C(1) << STORE_HANDLE_BITS), "handles must fit the page table");

#define SAME_WORDS 4096 /* distinct words of same-filled pages that do not fit a handle */
#define SAME_PROBES 32	/* beyond this, such a page is compressed instead (to a few bytes) */

/* Codecs by the id kept in a handle: ids only grow, so stored pages stay readable. */
static const struct codec_ops *const store_codecs[] = {
	&codec_lz4_ops,
	&codec_zstd_ops,
};
static_assert(ARRAY_SIZE(store_codecs) <= H_CODEC_MASK + 1, "codec ids fit 3 bits");

/* Every 1024 saves, compaction runs when at least this many pages are freeable ... */
#define AUTO_COMPACT_MIN_PAGES 64
/* ... and they are at least 1/AUTO_COMPACT_FRACTION of the pool's pages. */
#define AUTO_COMPACT_FRACTION 8

struct same_word {
	uint64_t word;
	uint64_t refs; /* pages kept as this word; 0: free for another word */
};

struct store {
	struct store_config cfg;
	const struct codec_ops *codec;
	uint64_t codec_bits; /* codec id, placed in handles */
	int level;
	size_t huge_threshold; /* compressed sizes above it are kept raw */
	struct zpool *pool;

	pthread_mutex_t same_lock;
	/* Shared by saves and drops, exclusive for store_compact()'s trim of an empty store:
	 * zpool_trim() must run alone. Loads need nothing: an empty store has none. */
	pthread_rwlock_t trim_lock;
	struct same_word *same_words; /* SAME_WORDS, allocated on first use */

	_Atomic uint64_t stored_pages; /* every page held, same-filled included */
	_Atomic uint64_t same_pages;
	_Atomic uint64_t huge_pages;
	_Atomic uint64_t compr_data_size; /* bytes: compressed sizes, PAGE_SIZE for huge pages */
	_Atomic uint64_t same_bytes;	  /* same_words[] memory, 0 until first used */
	_Atomic uint64_t mem_used_max;
	_Atomic uint64_t limit_rejects;
	_Atomic uint64_t failed_loads;
	_Atomic uint64_t saves; /* paces compaction on its own */
};

int store_new(const struct store_config *cfg, struct store **ret)
{
	/* The store's own memory counts against the limit too: the pool gets what is left. */
	const uint64_t own = sizeof(struct store) + SAME_WORDS * sizeof(struct same_word) + 64;
	struct zpool_config pc = {};
	struct store *s;
	size_t huge;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->cfg.compressor = NULL; /* the caller's string need not outlive this call */
	s->codec = codec_find(cfg->compressor);
	if (!s->codec) {
		r = -EINVAL;
		goto out_free_store;
	}
	for (size_t i = 0; i < ARRAY_SIZE(store_codecs); i++)
		if (store_codecs[i] == s->codec)
			s->codec_bits = (uint64_t)i << H_CODEC_SHIFT;
	s->level = cfg->zstd_level ? cfg->zstd_level : s->codec->level_default;
	if (s->level < s->codec->level_min || s->level > s->codec->level_max) {
		if (s->codec->level_min != s->codec->level_max) {
			r = -EINVAL;
			goto out_free_store;
		}
		s->level = s->codec->level_default; /* the zstd level means nothing to lz4 */
	}
	if (cfg->huge_threshold_bytes >= PAGE_SIZE) {
		r = -EINVAL;
		goto out_free_store;
	}

	if (cfg->mem_limit_bytes)
		pc.mem_limit_bytes = cfg->mem_limit_bytes > own ? cfg->mem_limit_bytes - own : 1;
	r = zpool_new(&pc, &s->pool);
	if (r < 0)
		goto out_free_store;
	huge = zpool_huge_class_size(s->pool);
	s->huge_threshold = cfg->huge_threshold_bytes ? cfg->huge_threshold_bytes
						      : (huge > 1 ? huge - 1 : PAGE_SIZE - 1);
	pthread_mutex_init(&s->same_lock, NULL);
	pthread_rwlock_init(&s->trim_lock, NULL);
	*ret = s;
	return 0;

out_free_store:
	free(s);
	return r;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	zpool_free(s->pool);
	free(s->same_words);
	pthread_rwlock_destroy(&s->trim_lock);
	pthread_mutex_destroy(&s->same_lock);
	free(s);
}

/* ---- same-filled pages ---- */

static bool page_same_filled(const void *page, uint64_t *ret_word)
{
	const uint64_t *w = page;
	uint64_t v = w[0];

	/* Most pages differ within the first words, so the common case costs almost nothing. */
	for (size_t i = 1; i < PAGE_SIZE / sizeof(uint64_t); i++)
		if (w[i] != v)
			return false;
	*ret_word = v;
	return true;
}

static uint64_t sign_extend(uint64_t v)
{
	return (uint64_t)((int64_t)(v << (64 - H_SAME_WORD_BITS)) >> (64 - H_SAME_WORD_BITS));
}

static inline size_t same_hash(uint64_t word)
{
	return (size_t)((word * UINT64_C(0x9e3779b97f4a7c15)) >> 52) & (SAME_WORDS - 1);
}

/* Returns 0 and a handle for a same-filled page of word, or -ENOSPC when the table is full. */
static int same_get(struct store *s, uint64_t word, uint64_t *ret_handle)
{
	size_t h = same_hash(word), spare = SIZE_MAX;
	int r = -ENOSPC;

	if (sign_extend(word) == word) {
		*ret_handle =
			H_SAME | H_SAME_VALUE | (word & ((UINT64_C(1) << H_SAME_WORD_BITS) - 1));
		return 0;
	}
	if ((word >> 32) == (word & UINT32_MAX)) {
		*ret_handle = H_SAME | H_SAME_HALVES | (word & UINT32_MAX);
		return 0;
	}

	pthread_mutex_lock(&s->same_lock);
	if (!s->same_words) {
		s->same_words = calloc(SAME_WORDS, sizeof(*s->same_words));
		if (!s->same_words) {
			r = -ENOMEM;
			goto out;
		}
		atomic_store(&s->same_bytes, malloc_usable_size(s->same_words));
	}
	for (size_t i = 0; i < SAME_PROBES; i++) {
		size_t k = (h + i) & (SAME_WORDS - 1);
		struct same_word *e = &s->same_words[k];

		if (e->refs && e->word == word) {
			spare = k;
			break;
		}
		if (!e->refs && spare == SIZE_MAX)
			spare = k;
	}
	if (spare != SIZE_MAX) {
		struct same_word *e = &s->same_words[spare];

		if (!e->refs)
			e->word = word;
		e->refs++;
		*ret_handle = H_SAME | H_SAME_TABLE | spare;
		r = 0;
	}
out:
	pthread_mutex_unlock(&s->same_lock);
	return r;
}

static int same_word_of(struct store *s, uint64_t handle, uint64_t *ret_word)
{
	uint64_t v = handle & ((UINT64_C(1) << H_SAME_WORD_BITS) - 1);

	switch (handle & H_SAME_KIND_MASK) {
	case H_SAME_VALUE:
		*ret_word = sign_extend(v);
		return 0;
	case H_SAME_HALVES:
		*ret_word = (v & UINT32_MAX) * UINT64_C(0x100000001);
		return 0;
	case H_SAME_TABLE:
		if (v >= SAME_WORDS || !s->same_words)
			return -ENOENT;
		*ret_word = s->same_words[v].word;
		return 0;
	default:
		return -ENOENT;
	}
}

static void same_put(struct store *s, uint64_t handle)
{
	uint64_t v = handle & ((UINT64_C(1) << H_SAME_WORD_BITS) - 1);

	if ((handle & H_SAME_KIND_MASK) != H_SAME_TABLE || v >= SAME_WORDS || !s->same_words)
		return;
	pthread_mutex_lock(&s->same_lock);
	if (s->same_words[v].refs)
		s->same_words[v].refs--;
	pthread_mutex_unlock(&s->same_lock);
}

/* ---- save, load, drop ---- */

static uint64_t store_mem_used(struct store *s, uint64_t *ret_metadata)
{
	struct zpool_stats ps;
	uint64_t own = sizeof(*s) + atomic_load(&s->same_bytes);

	zpool_get_stats(s->pool, &ps);
	if (ret_metadata)
		*ret_metadata = ps.metadata_bytes + own;
	return ps.mem_used_bytes + own;
}

static void store_track_max(struct store *s)
{
	uint64_t now = store_mem_used(s, NULL), max = atomic_load(&s->mem_used_max);

	while (now > max && !atomic_compare_exchange_weak(&s->mem_used_max, &max, now))
		;
}

/* Compaction on its own: from the save path, that is from reclaim, never from a fault. */
static void store_maybe_compact(struct store *s)
{
	struct zpool_stats ps;
	uint64_t freeable;

	if ((atomic_fetch_add_explicit(&s->saves, 1, memory_order_relaxed) & 1023) != 1023)
		return;
	freeable = zpool_freeable_pages(s->pool);
	zpool_get_stats(s->pool, &ps);
	if (freeable >= AUTO_COMPACT_MIN_PAGES && freeable * AUTO_COMPACT_FRACTION >= ps.pages)
		zpool_compact(s->pool);
}

static int save_locked(struct store *s, const void *page, uint64_t *ret_handle)
{
	unsigned char buf[PAGE_SIZE];
	const void *data = buf;
	uint64_t word, handle;
	uint32_t ph;
	int n, r;

	if (page_same_filled(page, &word)) {
		r = same_get(s, word, &handle);
		if (r == 0) {
			atomic_fetch_add(&s->same_pages, 1);
			atomic_fetch_add(&s->stored_pages, 1);
			*ret_handle = handle;
			return 0;
		}
		if (r != -ENOSPC)
			return r;
		/* The table is full: compressed, such a page takes a few bytes of the pool. */
	}

	/*
	 * A little room past the threshold: zstd refuses output that would nearly fill its
	 * buffer, which would keep pages raw that compress to just under the threshold.
	 */
	n = s->codec->compress(page, PAGE_SIZE, buf, MIN(s->huge_threshold + 64, sizeof(buf)),
			       s->level);
	if (n == -E2BIG || (n > 0 && (size_t)n > s->huge_threshold)) {
		data = page;
		n = PAGE_SIZE;
	} else if (n < 0) {
		return n;
	}

	r = zpool_obj_store(s->pool, data, (size_t)n, &ph);
	if (r == -ENOSPC && s->cfg.compaction && zpool_compact(s->pool) > 0)
		r = zpool_obj_store(s->pool, data, (size_t)n, &ph);
	if (r < 0) {
		if (r == -ENOSPC)
			atomic_fetch_add(&s->limit_rejects, 1);
		return r;
	}

	if (n == PAGE_SIZE)
		atomic_fetch_add(&s->huge_pages, 1);
	atomic_fetch_add(&s->compr_data_size, (uint64_t)n);
	atomic_fetch_add(&s->stored_pages, 1);
	store_track_max(s);
	if (s->cfg.compaction)
		store_maybe_compact(s);
	*ret_handle = s->codec_bits | ph;
	return 0;
}

static void fill_words(void *page, uint64_t word)
{
	uint64_t *w = page;

	if (word == 0) {
		memset(page, 0, PAGE_SIZE);
		return;
	}
	for (size_t i = 0; i < PAGE_SIZE / sizeof(uint64_t); i++)
		w[i] = word;
}

int store_load(struct store *s, uint64_t handle, void *page)
{
	const struct codec_ops *codec;
	const void *data;
	uint64_t word, id;
	size_t len;
	int r;

	if (handle & H_SAME) {
		r = same_word_of(s, handle, &word);
		if (r < 0)
			return r;
		fill_words(page, word);
		return 0;
	}
	id = (handle >> H_CODEC_SHIFT) & H_CODEC_MASK;
	if (id >= ARRAY_SIZE(store_codecs) ||
	    (handle & ~(H_POOL_MASK | H_CODEC_MASK << H_CODEC_SHIFT)))
		return -ENOENT;
	codec = store_codecs[id];

	r = zpool_obj_map(s->pool, (uint32_t)(handle & H_POOL_MASK), &data, &len);
	if (r < 0)
		return r;
	/* Decompressed straight out of the pool: the pin keeps compaction off these bytes. */
	if (len == PAGE_SIZE)
		memcpy(page, data, PAGE_SIZE);
	else
		r = codec->decompress(data, len, page, PAGE_SIZE);
	zpool_obj_unmap(s->pool, (uint32_t)(handle & H_POOL_MASK));
	if (r == -EBADMSG)
		atomic_fetch_add(&s->failed_loads, 1);
	return r;
}

static void drop_locked(struct store *s, uint64_t handle)
{
	int len;

	if (handle & H_SAME) {
		same_put(s, handle);
		atomic_fetch_sub(&s->same_pages, 1);
		atomic_fetch_sub(&s->stored_pages, 1);
		return;
	}
	len = zpool_obj_drop(s->pool, (uint32_t)(handle & H_POOL_MASK));
	if (len < 0)
		return; /* not a page of ours: nothing to undo */
	if (len == PAGE_SIZE)
		atomic_fetch_sub(&s->huge_pages, 1);
	atomic_fetch_sub(&s->compr_data_size, (uint64_t)len);
	atomic_fetch_sub(&s->stored_pages, 1);
}

int store_save(struct store *s, const void *page, uint64_t *ret_handle)
{
	int r;

	pthread_rwlock_rdlock(&s->trim_lock);
	r = save_locked(s, page, ret_handle);
	pthread_rwlock_unlock(&s->trim_lock);
	return r;
}

void store_drop(struct store *s, uint64_t handle)
{
	pthread_rwlock_rdlock(&s->trim_lock);
	drop_locked(s, handle);
	pthread_rwlock_unlock(&s->trim_lock);
}

/* An empty store gives back its metadata too, so the daemon returns to where it started. */
static void trim_if_empty(struct store *s)
{
	if (atomic_load(&s->stored_pages) || pthread_rwlock_trywrlock(&s->trim_lock) != 0)
		return;
	if (atomic_load(&s->stored_pages) == 0 && zpool_trim(s->pool) == 0) {
		pthread_mutex_lock(&s->same_lock);
		free(s->same_words);
		s->same_words = NULL;
		atomic_store(&s->same_bytes, 0);
		pthread_mutex_unlock(&s->same_lock);
	}
	pthread_rwlock_unlock(&s->trim_lock);
}

uint64_t store_compact(struct store *s)
{
	uint64_t freed = zpool_compact(s->pool);

	trim_if_empty(s);
	return freed;
}

/* ---- figures ---- */

void store_get_stats(struct store *s, struct store_stats *ret)
{
	struct zpool_stats ps;
	uint64_t metadata, used = store_mem_used(s, &metadata);
	uint64_t stored = atomic_load(&s->stored_pages), max = atomic_load(&s->mem_used_max);

	zpool_get_stats(s->pool, &ps);
	*ret = (struct store_stats){
		.orig_data_size = stored * PAGE_SIZE,
		.compr_data_size = atomic_load(&s->compr_data_size),
		.mem_used_total = used,
		.mem_limit = s->cfg.mem_limit_bytes,
		.mem_used_max = MAX(max, used),
		.same_pages = atomic_load(&s->same_pages),
		.pages_compacted = ps.pages_compacted,
		.huge_pages = atomic_load(&s->huge_pages),
		.stored_pages = stored,
		.limit_rejects = atomic_load(&s->limit_rejects),
		.failed_loads = atomic_load(&s->failed_loads),
		.mem_used_metadata = metadata,
		.pages_freeable = zpool_freeable_pages(s->pool),
	};
}

int store_get_class_stats(struct store *s, struct store_class_stats *ret, size_t n)
{
	unsigned count = zpool_nr_classes(s->pool);

	for (unsigned i = 0; i < count && i < n; i++) {
		struct zpool_class_stats c;

		if (zpool_get_class_stats(s->pool, i, &c) < 0)
			return -ENOENT;
		ret[i] = (struct store_class_stats){
			.size = c.size,
			.pages_per_zspage = c.pages_per_zspage,
			.objs_per_zspage = c.objs_per_zspage,
			.zspages = c.zspages,
			.objs_allocated = c.objs_allocated,
			.objs_used = c.objs_inuse,
			.pages_used = c.pages_used,
			.pages_freeable = c.pages_freeable,
			.pages_compacted = c.pages_compacted,
		};
		static_assert(STORE_NR_FULLNESS == ZPOOL_NR_FULLNESS, "same fullness groups");
		memcpy(ret[i].fullness, c.fullness, sizeof(ret[i].fullness));
	}
	return (int)count;
}
