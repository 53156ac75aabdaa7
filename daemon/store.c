/* SPDX-License-Identifier: MIT */
/*
 * The store: zram's write and read paths over the zpool, and zswap's writeback to swap areas.
 * A page that is one repeated 8-byte word is kept as that word, in its handle when it fits,
 * with no pool memory; other pages are compressed by the configured codec, and those that
 * compress to more than the huge threshold are kept raw in the pool's one-page class.
 * Everything read back from the pool is decompressed with bounds checks: corrupt bytes give
 * -EBADMSG, never a crash. Swap areas (swapfile.c) hold pages uncompressed, one per slot.
 *
 * Handles, STORE_HANDLE_BITS wide and never 0:
 *
 *   bit 55 = 1: a same-filled page; bits 52..53 say how the word is kept:
 *       0: bits 0..51 are the word, sign-extended (0, -1, small values)
 *       1: bits 0..31 are both halves of the word (repeated bytes, 16- and 32-bit patterns)
 *       2: bits 0..51 index same_words[], which keeps the word and a count of pages
 *   bit 54 = 1: a page in a swap area for good (backend swapfile; in pool+swapfile, a huge
 *       page or one that found the pool full): bits 0..36 are its swp_entry
 *   bit 53 = 1: pool+swapfile, a page that may move from the pool to an area: bits 0..31
 *       index the tier table, whose entry says where the page is now (see below)
 *   else: a page in the pool for good (backend pool; same-filled pages that found
 *       same_words[] full, in every backend)
 *       bits 48..50: the codec that compressed it (an object of PAGE_SIZE bytes is a raw page)
 *       bits 0..30: the zpool handle
 *
 * The tier table (pool+swapfile) is the indirection that lets writeback move a page without
 * touching the page tables that hold its handle, as zswap's entries do for the kernel's swap
 * cache. An entry's state is one atomic word: POOL (payload: codec and zpool handle, as
 * above), WB (being written back; still readable in the pool), SWAP (payload: swp_entry), or
 * FREE. Entries in POOL are on an LRU list in save order: evicted pages are not touched until
 * they are loaded, so the oldest saved is the coldest. A load sets REF, a second chance, as
 * zswap's referenced bit. Writeback takes entries from the cold end, marks them WB, takes
 * slots, decompresses and writes the pages in one pwritev, and only then marks them SWAP and
 * frees their pool objects (zpool_obj_drop() waits for loads that pinned them).
 *
 * Loads take no lock. A load of a tier entry reads its state, pins the pool object it names,
 * and reads the state again: still naming that object, the pin holds it; changed (written
 * back, and the object freed and its zpool handle perhaps reused), it unpins and looks again.
 * States only move POOL -> WB -> SWAP (or back to POOL when writeback fails), and a handle
 * cannot be dropped while it is loaded, so this ends.
 *
 * Hysteresis, as zswap: writeback starts when the pool passes writeback_high_pct of its limit
 * and goes on until it is below writeback_low_pct; a pool that refused a page at its limit is
 * "full" and sends new pages straight to an area until it is below writeback_low_pct again,
 * so saves do not alternate between the pool and the disk at the boundary.
 *
 * Locks, in this order:
 *   trim_lock (rwlock)  shared by saves, drops and writeback, exclusive for store_compact()'s
 *                       trim of an empty store: zpool_trim() and the tier table's must run alone
 *   wb_run_lock         one writeback at a time (the thread, store_writeback(), or on save);
 *                       guards wb_buf
 *   lru_lock            the tier table's LRU and free list, its growth, and every change of an
 *                       entry's state but the REF bit that loads set
 *   same_lock           same_words[] allocation and reference counts; a load reads a word
 *                       without it, since an entry's word only changes while no handle refers
 *                       to it
 *   wb_lock             the writeback thread's wake-ups; taken with no other lock held
 *   dup_lock            the table of shared handles (store_dup()); taken with no other lock
 *                       held, and released before the drop it decides on
 * The pool's and the areas' own locks come after all of these (zpool.c, swapfile.c).
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "macro.h"
#include "pmem.h"
#include "swapfile.h"
#include "zpool.h"

#define H_SAME (UINT64_C(1) << 55)
#define H_SAME_KIND_SHIFT 52
#define H_SAME_VALUE (UINT64_C(0) << H_SAME_KIND_SHIFT)
#define H_SAME_HALVES (UINT64_C(1) << H_SAME_KIND_SHIFT)
#define H_SAME_TABLE (UINT64_C(2) << H_SAME_KIND_SHIFT)
#define H_SAME_KIND_MASK (UINT64_C(3) << H_SAME_KIND_SHIFT)
#define H_SAME_WORD_BITS 52
#define H_SWAP (UINT64_C(1) << 54)
#define H_SWAP_ENTRY_MASK ((UINT64_C(1) << 37) - 1) /* 32 areas, 2^32 slots */
#define H_TIER (UINT64_C(1) << 53)
#define H_TIER_INDEX_MASK UINT64_C(0xffffffff)
#define H_CODEC_SHIFT 48
#define H_CODEC_MASK UINT64_C(7)
#define H_POOL_MASK ((UINT64_C(1) << 31) - 1)

static_assert(H_SAME < (UINT64_C(1) << STORE_HANDLE_BITS), "handles must fit the page table");
static_assert(SWAPFILE_MAX_AREAS <= 32 && SWP_TYPE_SHIFT == 32, "swp_entry fits H_SWAP_ENTRY_MASK");
static_assert(H_TIER > H_CODEC_MASK << H_CODEC_SHIFT, "tier bit clear of the codec bits");
static_assert(STORE_SWAP_PRIO_DEFAULT == SWAPFILE_PRIO_DEFAULT, "same default priority");

/* A tier entry's state: kind, flags, payload (codec | zpool handle, or swp_entry). */
#define TS_KIND_MASK (UINT64_C(3) << 62)
#define TS_FREE (UINT64_C(0) << 62)
#define TS_POOL (UINT64_C(1) << 62)
#define TS_WB (UINT64_C(2) << 62)
#define TS_SWAP (UINT64_C(3) << 62)
#define TS_REF (UINT64_C(1) << 61)  /* loaded since it was saved: a second chance */
#define TS_DROP (UINT64_C(1) << 60) /* dropped while in WB: writeback frees it */
#define TS_PAYLOAD_MASK ((UINT64_C(1) << 56) - 1)

/* The tier table: a directory of chunks, so entries never move under a lock-free load. */
#define TIER_CHUNK_SHIFT 12
#define TIER_CHUNK (UINT32_C(1) << TIER_CHUNK_SHIFT)
#define TIER_CHUNK_MASK (TIER_CHUNK - 1)
/* 2^32 entries; the directory is 8 MiB of address space, of which only the pages used are
 * touched. */
#define TIER_MAX_CHUNKS (UINT32_C(1) << 20)

#define SAME_WORDS 4096 /* distinct words of same-filled pages that do not fit a handle */
#define SAME_PROBES 32	/* beyond this, such a page is compressed instead (to a few bytes) */

/* Pages written back in one pwritev. */
#define WB_BATCH 32
/* LRU entries writeback looks at under lru_lock in one go. */
#define WB_SCAN_RUN 256
/* pool+swapfile without a memory limit: this share of physical memory (zswap's default). */
#define TIER_DEFAULT_LIMIT_PCT 20
#define WB_HIGH_PCT_DEFAULT 95
#define WB_LOW_PCT_DEFAULT 90
/* After a writeback that could move nothing (no free slot, a failing disk): rest this long. */
#define WB_BACKOFF_MSEC 1000

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

/*
 * A handle held by more than one page-table entry (a fork child shares its parent's evicted
 * pages): the references beyond the first, as the kernel's swap_map counts them. Keyed by the
 * handle itself, so it works alike for every kind; same-filled handles with the same word are
 * interchangeable, so their references may pool under one key. handle 0: an empty slot.
 */
struct dup_slot {
	uint64_t handle;
	uint64_t extra; /* references beyond the first */
};

struct tier_entry {
	_Atomic uint64_t state; /* TS_* */
	uint32_t prev, next;	/* lru_lock: the LRU (POOL entries, coldest first; 0: none) or,
				 * for FREE entries, the free list (next only) */
};

struct store {
	struct store_config cfg; /* its strings and swap_areas are not kept */
	const struct codec_ops *codec;
	uint64_t codec_bits; /* codec id, placed in handles */
	int level;
	size_t huge_threshold; /* compressed sizes above it are kept raw */
	struct zpool *pool;
	struct swapfile *sf; /* NULL for the pool backend */
	bool tiered;	     /* pool+swapfile */
	uint64_t pool_limit; /* bytes of pool memory (zpool's mem_used), 0: none */
	uint64_t wb_high;    /* bytes of pool memory: writeback starts at ... */
	uint64_t wb_low;     /* ... and stops below */

	pthread_mutex_t same_lock;
	pthread_rwlock_t trim_lock;
	struct same_word *same_words; /* SAME_WORDS, allocated on first use */

	/* The tier table (pool+swapfile). */
	pthread_mutex_t lru_lock;
	struct tier_entry *_Atomic *tier_dir; /* TIER_MAX_CHUNKS chunk pointers, mmap'd */
	uint32_t tier_chunks;		      /* lru_lock: chunks allocated */
	uint32_t tier_next;		      /* lru_lock: next never-used index (0 is never one) */
	uint32_t free_head;		      /* lru_lock: free entries */
	uint32_t lru_first, lru_last;	      /* lru_lock: coldest, warmest */
	uint32_t lru_len;		      /* lru_lock: entries on the LRU */
	_Atomic uint64_t tier_bytes;	      /* chunks and the directory pages they use */

	/* Writeback (pool+swapfile). */
	pthread_mutex_t wb_run_lock;
	unsigned char *wb_buf; /* WB_BATCH pages, page-aligned (O_DIRECT) */
	pthread_mutex_t wb_lock;
	pthread_cond_t wb_cond; /* CLOCK_MONOTONIC */
	bool wb_kick;		/* wb_lock */
	_Atomic bool wb_stop;
	bool wb_thread_started;
	pthread_t wb_thread;
	_Atomic bool pool_full; /* the pool refused a page and is not below wb_low yet */

	_Atomic uint64_t stored_pages; /* every page held, same-filled included */
	_Atomic uint64_t same_pages;
	_Atomic uint64_t pool_pages; /* objects in the pool (same-filled ones included) */
	_Atomic uint64_t swap_pages; /* pages in areas, not counting slots of a write in flight */
	_Atomic uint64_t huge_pages;
	_Atomic uint64_t compr_data_size; /* bytes: compressed sizes, PAGE_SIZE for huge pages */
	_Atomic uint64_t same_bytes;	  /* same_words[] memory, 0 until first used */
	_Atomic uint64_t mem_used_max;
	_Atomic uint64_t limit_rejects;
	_Atomic uint64_t failed_loads;
	_Atomic uint64_t written_back;
	_Atomic uint64_t writeback_failures;
	_Atomic uint64_t pool_limit_hit;
	_Atomic uint64_t saves; /* paces compaction on its own */

	/* Shared handles, open addressing with linear probing; dup_lock. */
	pthread_mutex_t dup_lock;
	struct dup_slot *dup; /* dup_cap slots, a power of two, or NULL */
	size_t dup_cap;
	_Atomic uint64_t dup_handles; /* slots in use: a drop takes dup_lock only when not 0 */
	/* Which file each area type is: a successor finds the slots our handles name by this,
	 * whatever type the file has there (store_adopt()). */
	struct store_area_id {
		uint64_t dev, ino; /* swapfile_area_stats's */
		unsigned char uuid[SWAP_UUID_LEN];
		bool valid;
	} area_ids[SWAPFILE_MAX_AREAS];
};

static _printf_(4, 5) int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

static const char *backend_name(enum store_backend b)
{
	switch (b) {
	case STORE_BACKEND_POOL:
		return "pool";
	case STORE_BACKEND_SWAPFILE:
		return "swapfile";
	case STORE_BACKEND_POOL_SWAPFILE:
		return "pool+swapfile";
	}
	return "?";
}

static void *writeback_main(void *arg);

/* The writeback thread, with every signal blocked: the daemon's signals go to its own. */
static int writeback_start(struct store *s)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&s->wb_thread, NULL, writeback_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r == 0) {
		pthread_setname_np(s->wb_thread, "store-wb");
		s->wb_thread_started = true;
	}
	return r;
}

static int swap_areas_record(struct store *s, char *err, size_t errlen)
{
	_cleanup_free_ struct swapfile_area_stats *a = malloc(sizeof(*a));

	if (!a)
		return fail(err, errlen, -ENOMEM, "cannot set up the swap areas: out of memory");
	for (unsigned t = 0; t < SWAPFILE_MAX_AREAS; t++) {
		struct store_area_id *id = &s->area_ids[t];

		if (swapfile_get_area_stats(s->sf, t, a) < 0)
			continue;
		id->dev = a->dev;
		id->ino = a->ino;
		memcpy(id->uuid, a->uuid, SWAP_UUID_LEN);
		id->valid = true;
	}
	return 0;
}

static int swap_areas_open(struct store *s, const struct store_config *cfg, char *err,
			   size_t errlen)
{
	int r = swapfile_new(&s->sf);

	if (r < 0)
		return fail(err, errlen, r, "cannot set up the swap areas: out of memory");
	for (size_t i = 0; i < cfg->nr_swap_areas; i++) {
		const struct store_swap_area *a = &cfg->swap_areas[i];

		if (!a->path || !*a->path)
			return fail(err, errlen, -EINVAL, "swap area %zu has no path", i + 1);
		r = swapfile_swapon(s->sf, a->path, a->prio, a->direct_io ? SWAPFILE_DIRECT_IO : 0,
				    err, errlen);
		if (r < 0)
			return r;
	}
	return swap_areas_record(s, err, errlen);
}

int store_new_err(const struct store_config *cfg, struct store **ret, char *err, size_t errlen)
{
	/* The store's own memory counts against the limit too: the pool gets what is left. */
	uint64_t own = sizeof(struct store) + SAME_WORDS * sizeof(struct same_word) + 64;
	struct zpool_config pc = {};
	pthread_condattr_t ca;
	struct store *s;
	unsigned hi, lo;
	size_t huge;
	int r;

	if (err && errlen)
		err[0] = '\0';
	if (cfg->backend > STORE_BACKEND_POOL_SWAPFILE)
		return fail(err, errlen, -EINVAL, "unknown store backend %d", (int)cfg->backend);
	if (cfg->backend != STORE_BACKEND_POOL && cfg->nr_swap_areas == 0)
		return fail(err, errlen, -EINVAL, "store backend %s needs at least one swap area",
			    backend_name(cfg->backend));
	if (cfg->backend == STORE_BACKEND_POOL && cfg->nr_swap_areas > 0)
		return fail(err, errlen, -EINVAL,
			    "store backend pool uses no swap area, but %zu were given",
			    cfg->nr_swap_areas);
	hi = cfg->writeback_high_pct ? cfg->writeback_high_pct : WB_HIGH_PCT_DEFAULT;
	lo = cfg->writeback_low_pct ? cfg->writeback_low_pct : WB_LOW_PCT_DEFAULT;
	if (hi > 100 || lo > hi)
		return fail(err, errlen, -EINVAL,
			    "writeback watermarks %u%% (low) and %u%% (high) of the pool's limit: "
			    "accepted: low <= high <= 100",
			    lo, hi);
	if (cfg->huge_threshold_bytes >= PAGE_SIZE)
		return fail(err, errlen, -EINVAL,
			    "huge threshold %u bytes: accepted: less than a page (%lu)",
			    cfg->huge_threshold_bytes, PAGE_SIZE);

	/* In pmem, with the tables it points to: a restarted daemon reads them (pmem.h). */
	s = pmem_alloc(sizeof(*s));
	if (!s)
		return fail(err, errlen, -ENOMEM, "cannot set up the store: out of memory");
	s->cfg = *cfg;
	s->cfg.compressor = NULL; /* the caller's strings need not outlive this call */
	s->cfg.swap_areas = NULL;
	s->cfg.writeback_high_pct = hi;
	s->cfg.writeback_low_pct = lo;
	s->codec = codec_find(cfg->compressor);
	if (!s->codec) {
		r = fail(err, errlen, -EINVAL, "unknown compressor \"%s\"; accepted: lz4, zstd",
			 cfg->compressor);
		goto out_free_store;
	}
	for (size_t i = 0; i < ARRAY_SIZE(store_codecs); i++)
		if (store_codecs[i] == s->codec)
			s->codec_bits = (uint64_t)i << H_CODEC_SHIFT;
	s->level = cfg->zstd_level ? cfg->zstd_level : s->codec->level_default;
	if (s->level < s->codec->level_min || s->level > s->codec->level_max) {
		if (s->codec->level_min != s->codec->level_max) {
			r = fail(err, errlen, -EINVAL, "%s level %d: accepted: %d..%d",
				 cfg->compressor, s->level, s->codec->level_min,
				 s->codec->level_max);
			goto out_free_store;
		}
		s->level = s->codec->level_default; /* the zstd level means nothing to lz4 */
	}
	s->tiered = cfg->backend == STORE_BACKEND_POOL_SWAPFILE;
	if (s->tiered && !s->cfg.mem_limit_bytes)
		s->cfg.mem_limit_bytes = (uint64_t)sysconf(_SC_PHYS_PAGES) * PAGE_SIZE *
					 TIER_DEFAULT_LIMIT_PCT / 100;

	pthread_mutex_init(&s->same_lock, NULL);
	pthread_mutex_init(&s->dup_lock, NULL);
	pthread_rwlock_init(&s->trim_lock, NULL);
	pthread_mutex_init(&s->lru_lock, NULL);
	pthread_mutex_init(&s->wb_run_lock, NULL);
	pthread_mutex_init(&s->wb_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wb_cond, &ca);
	pthread_condattr_destroy(&ca);
	s->tier_next = 1;

	if (cfg->backend != STORE_BACKEND_POOL) {
		r = swap_areas_open(s, cfg, err, errlen);
		if (r < 0)
			goto out_free_areas;
	}

	if (s->tiered)
		own += WB_BATCH * PAGE_SIZE; /* wb_buf */
	if (s->cfg.mem_limit_bytes)
		pc.mem_limit_bytes =
			s->cfg.mem_limit_bytes > own ? s->cfg.mem_limit_bytes - own : 1;
	s->pool_limit = pc.mem_limit_bytes;
	s->wb_high = s->pool_limit * hi / 100;
	s->wb_low = s->pool_limit * lo / 100;
	r = zpool_new(&pc, &s->pool);
	if (r < 0) {
		fail(err, errlen, r, "cannot set up the pool: %s", strerror(-r));
		goto out_free_areas;
	}
	huge = zpool_huge_class_size(s->pool);
	s->huge_threshold = cfg->huge_threshold_bytes ? cfg->huge_threshold_bytes
						      : (huge > 1 ? huge - 1 : PAGE_SIZE - 1);

	if (s->tiered) {
		void *dir = pmem_alloc(TIER_MAX_CHUNKS * sizeof(*s->tier_dir));

		if (!dir) {
			r = fail(err, errlen, -ENOMEM, "cannot set up the tier table: %m");
			goto out_free_pool;
		}
		s->tier_dir = dir;
		s->wb_buf = aligned_alloc(PAGE_SIZE, WB_BATCH * PAGE_SIZE);
		if (!s->wb_buf) {
			r = fail(err, errlen, -ENOMEM, "cannot set up writeback: out of memory");
			goto out_unmap_dir;
		}
		if (!cfg->writeback_on_save) {
			r = writeback_start(s);
			if (r < 0) {
				fail(err, errlen, r, "cannot start the writeback thread: %s",
				     strerror(-r));
				goto out_free_buf;
			}
		}
	}
	*ret = s;
	return 0;

out_free_buf:
	free(s->wb_buf);
out_unmap_dir:
	munmap(s->tier_dir, TIER_MAX_CHUNKS * sizeof(*s->tier_dir));
out_free_pool:
	zpool_free(s->pool);
out_free_areas:
	swapfile_free(s->sf);
	pthread_cond_destroy(&s->wb_cond);
	pthread_mutex_destroy(&s->wb_lock);
	pthread_mutex_destroy(&s->wb_run_lock);
	pthread_mutex_destroy(&s->lru_lock);
	pthread_rwlock_destroy(&s->trim_lock);
	pthread_mutex_destroy(&s->dup_lock);
	pthread_mutex_destroy(&s->same_lock);
out_free_store:
	pmem_free(s, sizeof(*s));
	return r;
}

int store_new(const struct store_config *cfg, struct store **ret)
{
	return store_new_err(cfg, ret, NULL, 0);
}

static void tier_free_chunks(struct store *s)
{
	for (uint32_t c = 0; c < s->tier_chunks; c++) {
		pmem_free(atomic_load(&s->tier_dir[c]), TIER_CHUNK * sizeof(struct tier_entry));
		atomic_store(&s->tier_dir[c], NULL);
	}
	s->tier_chunks = 0;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	if (s->wb_thread_started) {
		pthread_mutex_lock(&s->wb_lock);
		atomic_store(&s->wb_stop, true);
		pthread_cond_signal(&s->wb_cond);
		pthread_mutex_unlock(&s->wb_lock);
		pthread_join(s->wb_thread, NULL);
	}
	if (s->tier_dir) {
		tier_free_chunks(s);
		pmem_free(s->tier_dir, TIER_MAX_CHUNKS * sizeof(*s->tier_dir));
	}
	free(s->wb_buf);
	zpool_free(s->pool);
	swapfile_free(s->sf);
	pmem_free(s->same_words, SAME_WORDS * sizeof(*s->same_words));
	free(s->dup);
	pthread_cond_destroy(&s->wb_cond);
	pthread_mutex_destroy(&s->wb_lock);
	pthread_mutex_destroy(&s->wb_run_lock);
	pthread_mutex_destroy(&s->lru_lock);
	pthread_rwlock_destroy(&s->trim_lock);
	pthread_mutex_destroy(&s->dup_lock);
	pthread_mutex_destroy(&s->same_lock);
	pmem_free(s, sizeof(*s));
}

/* ---- the tier table ---- */

/* The entry of index idx, or NULL when there is none. Takes no lock. */
static struct tier_entry *tier_lookup(struct store *s, uint64_t idx)
{
	struct tier_entry *chunk;

	if (!s->tier_dir || idx == 0 || idx > H_TIER_INDEX_MASK)
		return NULL;
	chunk = atomic_load_explicit(&s->tier_dir[idx >> TIER_CHUNK_SHIFT], memory_order_acquire);
	return chunk ? &chunk[idx & TIER_CHUNK_MASK] : NULL;
}

/* lru_lock held. */
static void lru_add_tail(struct store *s, uint32_t idx, struct tier_entry *e)
{
	e->prev = s->lru_last;
	e->next = 0;
	if (s->lru_last)
		tier_lookup(s, s->lru_last)->next = idx;
	else
		s->lru_first = idx;
	s->lru_last = idx;
	s->lru_len++;
}

static void lru_add_head(struct store *s, uint32_t idx, struct tier_entry *e)
{
	e->prev = 0;
	e->next = s->lru_first;
	if (s->lru_first)
		tier_lookup(s, s->lru_first)->prev = idx;
	else
		s->lru_last = idx;
	s->lru_first = idx;
	s->lru_len++;
}

static void lru_del(struct store *s, uint32_t idx, struct tier_entry *e)
{
	if (e->prev)
		tier_lookup(s, e->prev)->next = e->next;
	else
		s->lru_first = e->next;
	if (e->next)
		tier_lookup(s, e->next)->prev = e->prev;
	else
		s->lru_last = e->prev;
	(void)idx;
	e->prev = e->next = 0;
	s->lru_len--;
}

static void tier_put_locked(struct store *s, uint32_t idx, struct tier_entry *e)
{
	atomic_store(&e->state, TS_FREE);
	e->prev = 0;
	e->next = s->free_head;
	s->free_head = idx;
}

static uint64_t tier_dir_bytes(uint32_t chunks)
{
	return PAGE_ALIGN_UP((uint64_t)chunks * sizeof(struct tier_entry *));
}

/* A new entry in POOL for payload, at the warm end of the LRU. Returns 0, -ENOMEM. */
static int tier_new(struct store *s, uint64_t payload, uint32_t *ret_idx)
{
	struct tier_entry *e;
	uint32_t idx;

	pthread_mutex_lock(&s->lru_lock);
	idx = s->free_head;
	if (idx) {
		e = tier_lookup(s, idx);
		s->free_head = e->next;
	} else {
		idx = s->tier_next;
		if ((idx >> TIER_CHUNK_SHIFT) >= s->tier_chunks) {
			struct tier_entry *chunk;

			if (s->tier_chunks == TIER_MAX_CHUNKS ||
			    !(chunk = pmem_alloc(TIER_CHUNK * sizeof(*chunk)))) {
				pthread_mutex_unlock(&s->lru_lock);
				return -ENOMEM;
			}
			atomic_store_explicit(&s->tier_dir[s->tier_chunks], chunk,
					      memory_order_release);
			s->tier_chunks++;
			atomic_store(&s->tier_bytes,
				     (uint64_t)s->tier_chunks * TIER_CHUNK * sizeof(*chunk) +
					     tier_dir_bytes(s->tier_chunks));
		}
		s->tier_next++;
		e = tier_lookup(s, idx);
	}
	atomic_store(&e->state, TS_POOL | payload);
	lru_add_tail(s, idx, e);
	pthread_mutex_unlock(&s->lru_lock);
	*ret_idx = idx;
	return 0;
}

/* Called with trim_lock held exclusively and nothing stored: gives the table's memory back. */
static void tier_trim(struct store *s)
{
	if (!s->tier_dir)
		return;
	pthread_mutex_lock(&s->lru_lock);
	tier_free_chunks(s);
	pmem_discard(s->tier_dir, TIER_MAX_CHUNKS * sizeof(*s->tier_dir));
	s->tier_next = 1;
	s->free_head = s->lru_first = s->lru_last = s->lru_len = 0;
	atomic_store(&s->tier_bytes, 0);
	pthread_mutex_unlock(&s->lru_lock);
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
		s->same_words = pmem_alloc(SAME_WORDS * sizeof(*s->same_words));
		if (!s->same_words) {
			r = -ENOMEM;
			goto out;
		}
		atomic_store(&s->same_bytes, SAME_WORDS * sizeof(*s->same_words));
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

/* ---- memory ---- */

static uint64_t pool_used(struct store *s)
{
	struct zpool_stats ps;

	zpool_get_stats(s->pool, &ps);
	return ps.mem_used_bytes;
}

/*
 * pool+swapfile: what counts against the pool's limit, the watermarks and the hysteresis. The
 * tier table is metadata of the pool's pages and of those written back, so it counts too (a
 * table of many pages in an area leaves less room for the pool, never more memory in all).
 */
static uint64_t tier_used(struct store *s)
{
	return pool_used(s) + atomic_load(&s->tier_bytes);
}

static uint64_t store_mem_used(struct store *s, uint64_t *ret_metadata)
{
	struct zpool_stats ps;
	uint64_t own = sizeof(*s) + atomic_load(&s->same_bytes) + atomic_load(&s->tier_bytes) +
		       (s->wb_buf ? WB_BATCH * PAGE_SIZE : 0);

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

/* ---- the pool ---- */

/*
 * Keeps n bytes that codec_bits's codec made (a raw page when n is PAGE_SIZE) in the pool and
 * counts them. Returns 0 and the payload (codec bits | zpool handle), -ENOSPC at the limit,
 * -ENOMEM. past_limit: NULL, or for a page adopted from a dead daemon, which is kept past the
 * limit (*past_limit set then: store_save_adopted()).
 */
static int pool_put(struct store *s, const void *data, size_t n, uint64_t codec_bits,
		    bool *past_limit, uint64_t *ret_payload)
{
	uint32_t ph;
	int r;

	r = zpool_obj_store(s->pool, data, n, NULL, &ph);
	if (r == -ENOSPC && s->cfg.compaction && zpool_compact(s->pool) > 0)
		r = zpool_obj_store(s->pool, data, n, NULL, &ph);
	if (r == -ENOSPC && past_limit)
		r = zpool_obj_store(s->pool, data, n, past_limit, &ph);
	if (r < 0)
		return r;
	if (n == PAGE_SIZE)
		atomic_fetch_add(&s->huge_pages, 1);
	atomic_fetch_add(&s->compr_data_size, (uint64_t)n);
	atomic_fetch_add(&s->pool_pages, 1);
	*ret_payload = codec_bits | ph;
	return 0;
}

/* Frees a pool object. Returns 0, or -ENOENT when payload names none. */
static int pool_drop(struct store *s, uint64_t payload)
{
	int len = zpool_obj_drop(s->pool, (uint32_t)(payload & H_POOL_MASK));

	if (len < 0)
		return len;
	if (len == PAGE_SIZE)
		atomic_fetch_sub(&s->huge_pages, 1);
	atomic_fetch_sub(&s->compr_data_size, (uint64_t)len);
	atomic_fetch_sub(&s->pool_pages, 1);
	return 0;
}

/* Whether tier entry e still names pool object payload (in POOL or WB). */
static bool tier_names(struct tier_entry *e, uint64_t payload)
{
	uint64_t st = atomic_load(&e->state), kind = st & TS_KIND_MASK;

	return (kind == TS_POOL || kind == TS_WB) && (st & TS_PAYLOAD_MASK) == payload;
}

/* Whether payload is a codec id and a zpool handle and nothing else. */
static bool pool_payload_valid(uint64_t payload)
{
	return ((payload >> H_CODEC_SHIFT) & H_CODEC_MASK) < ARRAY_SIZE(store_codecs) &&
	       !(payload & ~(H_POOL_MASK | H_CODEC_MASK << H_CODEC_SHIFT));
}

/* A pool object of payload's codec back into a page: a PAGE_SIZE object is the raw page. */
static int object_to_page(uint64_t payload, const void *data, size_t len, void *page)
{
	if (len == PAGE_SIZE) {
		memcpy(page, data, PAGE_SIZE);
		return 0;
	}
	return store_codecs[(payload >> H_CODEC_SHIFT) & H_CODEC_MASK]->decompress(data, len, page,
										     PAGE_SIZE);
}

/*
 * Decompresses the pool object payload names into page. With e, the object is the page's only
 * while e still names it, which is checked once it is pinned: -ESTALE when not (look again).
 * Returns 0, -EBADMSG (counted), -ENOENT.
 */
static int pool_load(struct store *s, uint64_t payload, void *page, struct tier_entry *e)
{
	uint32_t ph = (uint32_t)(payload & H_POOL_MASK);
	const void *data;
	size_t len;
	int r;

	if (!pool_payload_valid(payload))
		return -ENOENT;
	r = zpool_obj_map(s->pool, ph, &data, &len);
	if (e && !tier_names(e, payload)) {
		if (r == 0)
			zpool_obj_unmap(s->pool, ph);
		return -ESTALE;
	}
	if (r < 0)
		return r;
	/* Decompressed straight out of the pool: the pin keeps compaction off these bytes. */
	r = object_to_page(payload, data, len, page);
	zpool_obj_unmap(s->pool, ph);
	if (r == -EBADMSG)
		atomic_fetch_add(&s->failed_loads, 1);
	return r;
}

/* ---- swap areas ---- */

/* Writes page to a new slot. Returns 0 and the handle, -ENOSPC (no slot, or the file system is
 * full), -EIO. Nothing is kept on failure. */
static int area_save(struct store *s, const void *page, uint64_t *ret_handle)
{
	uint64_t entry;
	int r;

	r = swapfile_alloc(s->sf, 1, &entry);
	if (r < 0)
		return r;
	r = swapfile_write_page(s->sf, entry, page);
	if (r < 0) {
		swap_free(s->sf, entry);
		return r;
	}
	atomic_fetch_add(&s->swap_pages, 1);
	atomic_fetch_add(&s->stored_pages, 1);
	*ret_handle = H_SWAP | entry;
	return 0;
}

/* Returns 0, -ENOENT (not a slot holding a page), -EIO (whatever the disk said). */
static int area_load(struct store *s, uint64_t entry, void *page)
{
	int r;

	if (!s->sf)
		return -ENOENT;
	r = swapfile_read_page(s->sf, entry, page);
	if (r == -EINVAL)
		return -ENOENT;
	return r < 0 ? -EIO : 0;
}

static void area_drop(struct store *s, uint64_t entry)
{
	if (s->sf && swap_free(s->sf, entry) == 0) {
		atomic_fetch_sub(&s->swap_pages, 1);
		atomic_fetch_sub(&s->stored_pages, 1);
	}
}

static uint64_t area_free_slots(struct store *s)
{
	struct swapfile_stats st;

	if (!s->sf || swapfile_held(s->sf))
		return 0;
	swapfile_get_stats(s->sf, &st);
	return st.total_slots > st.bd_count ? st.total_slots - st.bd_count : 0;
}

/* ---- writeback ---- */

static void writeback_kick(struct store *s)
{
	if (!s->wb_thread_started)
		return;
	pthread_mutex_lock(&s->wb_lock);
	if (!s->wb_kick) {
		s->wb_kick = true;
		pthread_cond_signal(&s->wb_cond);
	}
	pthread_mutex_unlock(&s->wb_lock);
}

/*
 * Moves up to want (<= WB_BATCH) of the coldest pool pages to an area. wb_run_lock and
 * trim_lock (shared) held. Returns the number moved, 0 when the LRU is empty, or -errno
 * when none could move: -ENOSPC (no free slot), -EIO (the disk), -EBADMSG (corrupt in the
 * pool). Pages that did not move stay in the pool, readable all along.
 */
static int writeback_batch(struct store *s, unsigned want)
{
	uint32_t idx[WB_BATCH];
	uint64_t payload[WB_BATCH], slots[WB_BATCH], entries[WB_BATCH] = {};
	const void *pages[WB_BATCH];
	unsigned of[WB_BATCH]; /* victim of the j-th page written */
	bool corrupt[WB_BATCH] = {}, dropped[WB_BATCH] = {};
	unsigned n = 0, got = 0, ready = 0, done = 0, nr_moved = 0, nr_failed = 0;
	uint64_t scanned = 0, scan_max;
	int r, err = 0;

	want = MIN(want, (unsigned)WB_BATCH);
	pthread_mutex_lock(&s->lru_lock);
	/* One turn of the clock clears every REF: a victim is found within two. */
	scan_max = 2 * (uint64_t)s->lru_len + want;
	while (n < want && s->lru_first && scanned++ < scan_max) {
		uint32_t i = s->lru_first;
		struct tier_entry *e = tier_lookup(s, i);
		uint64_t st = atomic_load(&e->state);

		lru_del(s, i, e);
		if (st & TS_REF) {
			/* Loaded since it was saved: one more turn, as zswap's referenced bit. */
			atomic_fetch_and(&e->state, ~TS_REF);
			lru_add_tail(s, i, e);
			/* Saves and drops (fault threads) wait for this lock: let them in. */
			if (scanned % WB_SCAN_RUN == 0) {
				pthread_mutex_unlock(&s->lru_lock);
				pthread_mutex_lock(&s->lru_lock);
			}
			continue;
		}
		atomic_store(&e->state, TS_WB | (st & TS_PAYLOAD_MASK));
		idx[n] = i;
		payload[n] = st & TS_PAYLOAD_MASK;
		n++;
	}
	pthread_mutex_unlock(&s->lru_lock);
	if (!n)
		return 0;

	/* Slots first: with none free, nothing is decompressed for nothing. */
	while (got < n) {
		r = swapfile_alloc(s->sf, n - got, slots + got);
		if (r < 0) {
			err = r;
			break;
		}
		got += (unsigned)r;
	}
	/* Pages that decompress go in slot order, so that consecutive slots make one write. */
	for (unsigned k = 0; k < got; k++) {
		void *buf = s->wb_buf + (size_t)ready * PAGE_SIZE;

		r = pool_load(s, payload[k], buf, NULL);
		if (r < 0) {
			corrupt[k] = true;
			err = err ? err : r;
			continue;
		}
		pages[ready] = buf;
		of[ready++] = k;
	}
	for (unsigned j = 0; j < ready; j++)
		entries[j] = slots[of[j]];
	if (ready) {
		r = swapfile_write_pages(s->sf, entries, pages, ready, &done);
		if (r < 0)
			err = r;
	}
	/* Slots not written to: those of failed writes and of pages that did not decompress. */
	for (unsigned j = done; j < ready; j++)
		swap_free(s->sf, entries[j]);
	for (unsigned k = 0; k < got; k++)
		if (corrupt[k])
			swap_free(s->sf, slots[k]);
	for (unsigned k = 0; k < n; k++)
		slots[k] = 0;
	for (unsigned j = 0; j < done; j++)
		slots[of[j]] = entries[j];

	pthread_mutex_lock(&s->lru_lock);
	for (unsigned k = 0; k < n; k++) {
		struct tier_entry *e = tier_lookup(s, idx[k]);
		uint64_t st = atomic_load(&e->state);

		if (st & TS_DROP) {
			dropped[k] = true;
			tier_put_locked(s, idx[k], e);
		} else if (slots[k]) {
			/* Counted first, so that a drop right after the unlock finds it counted. */
			atomic_fetch_add(&s->swap_pages, 1);
			atomic_store(&e->state, TS_SWAP | slots[k]);
		} else {
			atomic_store(&e->state, TS_POOL | payload[k]);
			/* Still the coldest: back at the cold end, unless it cannot be read, which
			 * would stop every writeback at it. */
			if (corrupt[k])
				lru_add_tail(s, idx[k], e);
			else
				lru_add_head(s, idx[k], e);
		}
	}
	pthread_mutex_unlock(&s->lru_lock);

	/* The pool objects of moved pages go only now: a load that pinned one is waited for. */
	for (unsigned k = 0; k < n; k++) {
		if (slots[k]) {
			nr_moved++;
			pool_drop(s, payload[k]);
			if (dropped[k]) {
				atomic_fetch_add(&s->swap_pages, 1);
				area_drop(s, slots[k]);
			}
		} else if (dropped[k]) {
			pool_drop(s, payload[k]);
			atomic_fetch_sub(&s->stored_pages, 1);
		} else {
			nr_failed++;
		}
	}
	atomic_fetch_add(&s->written_back, nr_moved);
	atomic_fetch_add(&s->writeback_failures, nr_failed);
	if (nr_moved)
		return (int)nr_moved;
	return err ? err : -EIO;
}

/*
 * Writes back until the pool is below wb_low (trim_lock shared and wb_run_lock held). Freed
 * objects leave holes in zspages, which only compaction gives back, so compaction runs when
 * what it could give back brings the pool below wb_low. Returns 0 or the error that stopped it.
 */
static int writeback_to_low_locked(struct store *s)
{
	bool compacted = false;
	int r = 0;

	while (!atomic_load(&s->wb_stop)) {
		uint64_t used = tier_used(s), freeable;

		if (used < s->wb_low)
			break;
		if (!compacted) {
			freeable = zpool_freeable_pages(s->pool) * PAGE_SIZE;
			if (used - MIN(used, freeable) < s->wb_low) {
				compacted = true;
				if (zpool_compact(s->pool) > 0)
					continue;
			}
		}
		compacted = false;
		r = writeback_batch(s, WB_BATCH);
		if (r <= 0)
			break;
		r = 0;
	}
	if (tier_used(s) < s->wb_low)
		atomic_store(&s->pool_full, false);
	return r;
}

static int writeback_to_low(struct store *s)
{
	int r;

	pthread_rwlock_rdlock(&s->trim_lock);
	pthread_mutex_lock(&s->wb_run_lock);
	r = writeback_to_low_locked(s);
	pthread_mutex_unlock(&s->wb_run_lock);
	pthread_rwlock_unlock(&s->trim_lock);
	return r;
}

static void *writeback_main(void *arg)
{
	struct store *s = arg;

	pthread_mutex_lock(&s->wb_lock);
	while (!atomic_load(&s->wb_stop)) {
		struct timespec until;
		int r;

		if (!s->wb_kick) {
			pthread_cond_wait(&s->wb_cond, &s->wb_lock);
			continue;
		}
		s->wb_kick = false;
		pthread_mutex_unlock(&s->wb_lock);
		r = writeback_to_low(s);
		pthread_mutex_lock(&s->wb_lock);
		if (r >= 0 || r == -EBADMSG)
			continue;
		/* No free slot or a failing disk: not again on every save; kicks wait. */
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += WB_BACKOFF_MSEC / 1000;
		until.tv_nsec += (WB_BACKOFF_MSEC % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!atomic_load(&s->wb_stop) &&
		       pthread_cond_timedwait(&s->wb_cond, &s->wb_lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&s->wb_lock);
	return NULL;
}

void store_set_swap_held(struct store *s, bool held)
{
	if (s->sf)
		swapfile_set_held(s->sf, held);
}

bool store_swap_held(struct store *s)
{
	return s->sf && swapfile_held(s->sf);
}

int64_t store_writeback(struct store *s, uint64_t nr_pages)
{
	uint64_t moved = 0;
	int r = 0;

	if (!s->tiered)
		return -EOPNOTSUPP;
	pthread_rwlock_rdlock(&s->trim_lock);
	pthread_mutex_lock(&s->wb_run_lock);
	while (moved < nr_pages) {
		r = writeback_batch(s, (unsigned)MIN(nr_pages - moved, (uint64_t)WB_BATCH));
		if (r <= 0)
			break;
		moved += (uint64_t)r;
	}
	if (tier_used(s) < s->wb_low)
		atomic_store(&s->pool_full, false);
	pthread_mutex_unlock(&s->wb_run_lock);
	pthread_rwlock_unlock(&s->trim_lock);
	return moved ? (int64_t)moved : r;
}

/* ---- save, load, drop ---- */

/* pool+swapfile: data is the page compressed (n bytes) or the page itself (n == PAGE_SIZE). */
static int save_tiered(struct store *s, const void *page, const void *data, size_t n,
		       bool *past_limit, uint64_t *ret_handle)
{
	uint64_t payload;
	uint32_t idx;
	int r;

	/* Raw in the pool, a huge page would cost as much memory as it does in the process. */
	if (n == PAGE_SIZE && !s->cfg.huge_in_pool && area_save(s, page, ret_handle) == 0)
		return 0;
	if (s->cfg.writeback_on_save && tier_used(s) >= s->wb_high)
		writeback_to_low(s);
	if (atomic_load(&s->pool_full)) {
		if (tier_used(s) < s->wb_low) {
			atomic_store(&s->pool_full, false);
		} else {
			atomic_fetch_add(&s->pool_limit_hit, 1);
			writeback_kick(s);
			if (area_save(s, page, ret_handle) == 0)
				return 0;
			/* No slot or a disk error: the pool may still have room. */
		}
	}

	/* zpool enforces its limit on its own memory; the table's share is checked here. */
	r = tier_used(s) + n > s->pool_limit ? -ENOSPC
					     : pool_put(s, data, n, s->codec_bits, NULL, &payload);
	if (r == -ENOSPC) {
		if (!atomic_exchange(&s->pool_full, true))
			atomic_fetch_add(&s->pool_limit_hit, 1);
		writeback_kick(s);
		r = area_save(s, page, ret_handle);
		if (r == 0 || !past_limit)
			return r;
		/* No slot, or a disk error: the pool, past its share. */
		*past_limit = true;
		r = pool_put(s, data, n, s->codec_bits, past_limit, &payload);
	}
	if (r < 0)
		return r;
	r = tier_new(s, payload, &idx);
	if (r < 0) {
		pool_drop(s, payload);
		return r;
	}
	atomic_fetch_add(&s->stored_pages, 1);
	store_track_max(s);
	if (s->cfg.compaction)
		store_maybe_compact(s);
	if (tier_used(s) >= s->wb_high)
		writeback_kick(s);
	*ret_handle = H_TIER | idx;
	return 0;
}

static int save_locked(struct store *s, const void *page, bool *past_limit, uint64_t *ret_handle)
{
	unsigned char buf[PAGE_SIZE];
	const void *data = buf;
	uint64_t word, handle, payload;
	bool same;
	int n, r;

	same = page_same_filled(page, &word);
	if (same) {
		r = same_get(s, word, &handle);
		if (r == 0) {
			atomic_fetch_add(&s->same_pages, 1);
			atomic_fetch_add(&s->stored_pages, 1);
			*ret_handle = handle;
			return 0;
		}
		if (r != -ENOSPC)
			return r;
		/* The table is full: compressed, such a page takes a few bytes of the pool, and
		 * stays there whatever the backend (same-filled pages never go to an area). */
	} else if (s->cfg.backend == STORE_BACKEND_SWAPFILE) {
		r = area_save(s, page, ret_handle);
		if (r == 0 || !past_limit)
			return r;
		/* No slot, or a disk error: the pool, which this backend keeps for same-filled
		 * pages alone. */
		*past_limit = true;
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

	if (s->tiered && !same)
		return save_tiered(s, page, data, (size_t)n, past_limit, ret_handle);

	r = pool_put(s, data, (size_t)n, s->codec_bits, past_limit, &payload);
	if (r < 0)
		return r;
	atomic_fetch_add(&s->stored_pages, 1);
	store_track_max(s);
	if (s->cfg.compaction)
		store_maybe_compact(s);
	*ret_handle = payload;
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

static int tier_load(struct store *s, uint64_t handle, void *page, bool nowait)
{
	struct tier_entry *e = tier_lookup(s, handle & ~H_TIER);

	if (!e || (handle & ~(H_TIER | H_TIER_INDEX_MASK)))
		return -ENOENT;
	for (;;) {
		uint64_t st = atomic_load(&e->state);
		int r;

		switch (st & TS_KIND_MASK) {
		case TS_SWAP:
			if (nowait)
				return -EWOULDBLOCK;
			return area_load(s, st & TS_PAYLOAD_MASK, page);
		case TS_POOL:
		case TS_WB:
			r = pool_load(s, st & TS_PAYLOAD_MASK, page, e);
			if (r == -ESTALE)
				continue; /* written back meanwhile */
			if (r == 0 && !(st & TS_REF))
				atomic_fetch_or(&e->state, TS_REF);
			return r;
		default:
			return -ENOENT;
		}
	}
}

static int load(struct store *s, uint64_t handle, void *page, bool nowait)
{
	uint64_t word;
	int r;

	if (handle & H_SAME) {
		r = same_word_of(s, handle, &word);
		if (r < 0)
			return r;
		fill_words(page, word);
		return 0;
	}
	if (handle & H_SWAP) {
		if (handle & ~(H_SWAP | H_SWAP_ENTRY_MASK))
			return -ENOENT;
		if (nowait)
			return -EWOULDBLOCK;
		return area_load(s, handle & H_SWAP_ENTRY_MASK, page);
	}
	if (handle & H_TIER)
		return tier_load(s, handle, page, nowait);
	return pool_load(s, handle, page, NULL);
}

int store_load(struct store *s, uint64_t handle, void *page)
{
	return load(s, handle, page, false);
}

int store_try_load(struct store *s, uint64_t handle, void *page)
{
	return load(s, handle, page, true);
}

bool store_load_may_block(struct store *s, uint64_t handle)
{
	struct tier_entry *e;

	if (handle & H_SAME)
		return false;
	if (handle & H_SWAP)
		return true;
	if (!(handle & H_TIER))
		return false;
	e = tier_lookup(s, handle & ~H_TIER);
	return e && (atomic_load(&e->state) & TS_KIND_MASK) == TS_SWAP;
}

/* The slot a handle's page is in, or 0 when it is not in an area. */
static uint64_t handle_area_entry(struct store *s, uint64_t handle)
{
	struct tier_entry *e;
	uint64_t st;

	if (handle & H_SAME)
		return 0;
	if (handle & H_SWAP)
		return handle & ~(H_SWAP | H_SWAP_ENTRY_MASK) ? 0 : handle & H_SWAP_ENTRY_MASK;
	if (!(handle & H_TIER) || !(e = tier_lookup(s, handle & ~H_TIER)))
		return 0;
	st = atomic_load(&e->state);
	return (st & TS_KIND_MASK) == TS_SWAP ? st & TS_PAYLOAD_MASK : 0;
}

unsigned store_load_batch(struct store *s, const uint64_t *handles, void *const *pages, unsigned nr,
			  int *ret_results)
{
	unsigned loaded = 0;

	for (unsigned base = 0; base < nr; base += WB_BATCH) {
		uint64_t entries[WB_BATCH];
		void *bufs[WB_BATCH];
		unsigned which[WB_BATCH], m = 0, done = 0;

		for (unsigned i = base; i < nr && i < base + WB_BATCH; i++) {
			uint64_t entry = s->sf ? handle_area_entry(s, handles[i]) : 0;

			if (!entry) {
				ret_results[i] = load(s, handles[i], pages[i], false);
				continue;
			}
			entries[m] = entry;
			bufs[m] = pages[i];
			which[m++] = i;
		}
		while (done < m) {
			unsigned d = 0;
			int r = swapfile_read_pages(s->sf, entries + done, bufs + done, m - done,
						    &d);

			for (unsigned k = done; k < done + d; k++)
				ret_results[which[k]] = 0;
			done += d;
			if (r == 0)
				break;
			/* Some entry holds no page, or a read of a run failed: each page on its
			 * own, to say which. */
			for (; done < m; done++)
				ret_results[which[done]] = area_load(s, entries[done], bufs[done]);
		}
	}
	for (unsigned i = 0; i < nr; i++)
		loaded += ret_results[i] == 0;
	return loaded;
}

static void tier_drop(struct store *s, uint64_t handle)
{
	uint32_t idx = (uint32_t)(handle & H_TIER_INDEX_MASK);
	struct tier_entry *e = tier_lookup(s, handle & ~H_TIER);
	uint64_t st;

	if (!e || (handle & ~(H_TIER | H_TIER_INDEX_MASK)))
		return;
	pthread_mutex_lock(&s->lru_lock);
	st = atomic_load(&e->state);
	switch (st & TS_KIND_MASK) {
	case TS_POOL:
		lru_del(s, idx, e);
		tier_put_locked(s, idx, e);
		pthread_mutex_unlock(&s->lru_lock);
		if (pool_drop(s, st & TS_PAYLOAD_MASK) == 0)
			atomic_fetch_sub(&s->stored_pages, 1);
		return;
	case TS_WB:
		/* Being written back: writeback frees it when it lands. */
		atomic_fetch_or(&e->state, TS_DROP);
		pthread_mutex_unlock(&s->lru_lock);
		return;
	case TS_SWAP:
		tier_put_locked(s, idx, e);
		pthread_mutex_unlock(&s->lru_lock);
		area_drop(s, st & TS_PAYLOAD_MASK);
		return;
	default:
		pthread_mutex_unlock(&s->lru_lock); /* not a page of ours */
		return;
	}
}

static void drop_locked(struct store *s, uint64_t handle)
{
	if (handle & H_SAME) {
		same_put(s, handle);
		atomic_fetch_sub(&s->same_pages, 1);
		atomic_fetch_sub(&s->stored_pages, 1);
		return;
	}
	if (handle & H_SWAP) {
		if (!(handle & ~(H_SWAP | H_SWAP_ENTRY_MASK)))
			area_drop(s, handle & H_SWAP_ENTRY_MASK);
		return;
	}
	if (handle & H_TIER) {
		tier_drop(s, handle);
		return;
	}
	if (pool_drop(s, handle) == 0) /* else not a page of ours: nothing to undo */
		atomic_fetch_sub(&s->stored_pages, 1);
}

static int save(struct store *s, const void *page, bool *past_limit, uint64_t *ret_handle)
{
	int r;

	pthread_rwlock_rdlock(&s->trim_lock);
	r = save_locked(s, page, past_limit, ret_handle);
	pthread_rwlock_unlock(&s->trim_lock);
	if (r == -ENOSPC)
		atomic_fetch_add(&s->limit_rejects, 1);
	return r;
}

int store_save(struct store *s, const void *page, uint64_t *ret_handle)
{
	return save(s, page, NULL, ret_handle);
}

int store_save_adopted(struct store *s, const void *page, bool *ret_past_limit,
		       uint64_t *ret_handle)
{
	*ret_past_limit = false;
	return save(s, page, ret_past_limit, ret_handle);
}

/* ---- shared handles (fork) ---- */

static size_t dup_hash(uint64_t handle, size_t cap)
{
	return (size_t)((handle * UINT64_C(0x9e3779b97f4a7c15)) >> 20) & (cap - 1);
}

/* The slot of handle, or of the empty slot where it would go. dup_lock held, dup not NULL. */
static struct dup_slot *dup_slot_of(struct store *s, uint64_t handle)
{
	size_t i = dup_hash(handle, s->dup_cap);

	while (s->dup[i].handle && s->dup[i].handle != handle)
		i = (i + 1) & (s->dup_cap - 1);
	return &s->dup[i];
}

/* Keeps the table at most half full. dup_lock held. Returns 0 or -ENOMEM. */
static int dup_grow(struct store *s)
{
	struct dup_slot *old = s->dup;
	size_t old_cap = s->dup_cap, cap = old_cap ? old_cap * 2 : 64;

	if (old && (atomic_load(&s->dup_handles) + 1) * 2 <= old_cap)
		return 0;
	s->dup = calloc(cap, sizeof(*s->dup));
	if (!s->dup) {
		s->dup = old;
		return -ENOMEM;
	}
	s->dup_cap = cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].handle)
			*dup_slot_of(s, old[i].handle) = old[i];
	free(old);
	return 0;
}

/* Empties slot, moving back the entries of its probe run that would no longer be found. */
static void dup_slot_clear(struct store *s, struct dup_slot *slot)
{
	size_t mask = s->dup_cap - 1, hole = (size_t)(slot - s->dup), i = hole;

	for (;;) {
		size_t home;

		i = (i + 1) & mask;
		if (!s->dup[i].handle)
			break;
		home = dup_hash(s->dup[i].handle, s->dup_cap);
		/* Move it into the hole unless its home lies cyclically in (hole, i]. */
		if ((i > hole && (home <= hole || home > i)) || (i < hole && home <= hole && home > i)) {
			s->dup[hole] = s->dup[i];
			hole = i;
		}
	}
	s->dup[hole] = (struct dup_slot){0};
}

int store_dup(struct store *s, uint64_t handle)
{
	struct dup_slot *slot;
	int r;

	if (!handle)
		return -EINVAL;
	pthread_mutex_lock(&s->dup_lock);
	r = dup_grow(s);
	if (r == 0) {
		slot = dup_slot_of(s, handle);
		if (!slot->handle) {
			slot->handle = handle;
			atomic_fetch_add(&s->dup_handles, 1);
		}
		slot->extra++;
	}
	pthread_mutex_unlock(&s->dup_lock);
	return r;
}

/* Takes one of handle's extra references if it has one: true when the page must stay. */
static bool dup_put(struct store *s, uint64_t handle)
{
	struct dup_slot *slot;
	bool shared = false;

	pthread_mutex_lock(&s->dup_lock);
	if (s->dup) {
		slot = dup_slot_of(s, handle);
		if (slot->handle) {
			shared = true;
			if (--slot->extra == 0) {
				dup_slot_clear(s, slot);
				atomic_fetch_sub(&s->dup_handles, 1);
			}
		}
	}
	pthread_mutex_unlock(&s->dup_lock);
	return shared;
}

uint64_t store_handle_refs(struct store *s, uint64_t handle)
{
	uint64_t refs = 1;

	pthread_mutex_lock(&s->dup_lock);
	if (s->dup && handle) {
		struct dup_slot *slot = dup_slot_of(s, handle);

		if (slot->handle)
			refs += slot->extra;
	}
	pthread_mutex_unlock(&s->dup_lock);
	return refs;
}

void store_drop(struct store *s, uint64_t handle)
{
	/*
	 * Nothing shared (the common case): no lock. A handle is only ever duplicated by a
	 * holder of one of its references, so a drop of another reference that raced with it
	 * would see dup_handles set already.
	 */
	if (atomic_load(&s->dup_handles) && dup_put(s, handle))
		return;
	pthread_rwlock_rdlock(&s->trim_lock);
	drop_locked(s, handle);
	pthread_rwlock_unlock(&s->trim_lock);
}

bool store_has_room_for(struct store *s, unsigned nr_pages)
{
	/* Worst case every page is stored raw, plus a page of metadata per 64 pages. */
	uint64_t need = (uint64_t)nr_pages * (PAGE_SIZE + PAGE_SIZE / 64);

	switch (s->cfg.backend) {
	case STORE_BACKEND_POOL:
		return !s->cfg.mem_limit_bytes ||
		       store_mem_used(s, NULL) + need <= s->cfg.mem_limit_bytes;
	case STORE_BACKEND_SWAPFILE:
		return area_free_slots(s) >= nr_pages;
	case STORE_BACKEND_POOL_SWAPFILE:
		return area_free_slots(s) >= nr_pages ||
		       (!atomic_load(&s->pool_full) && tier_used(s) + need <= s->pool_limit);
	}
	return false;
}

/* An empty store gives back its metadata too, so the daemon returns to where it started. */
static void trim_if_empty(struct store *s)
{
	if (atomic_load(&s->stored_pages) || pthread_rwlock_trywrlock(&s->trim_lock) != 0)
		return;
	if (atomic_load(&s->stored_pages) == 0 && zpool_trim(s->pool) == 0) {
		pthread_mutex_lock(&s->same_lock);
		pmem_free(s->same_words, SAME_WORDS * sizeof(*s->same_words));
		s->same_words = NULL;
		atomic_store(&s->same_bytes, 0);
		pthread_mutex_unlock(&s->same_lock);
		tier_trim(s);
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
	struct swapfile_stats ss = {0};
	uint64_t metadata, used = store_mem_used(s, &metadata);
	uint64_t stored = atomic_load(&s->stored_pages), max = atomic_load(&s->mem_used_max);

	zpool_get_stats(s->pool, &ps);
	if (s->sf)
		swapfile_get_stats(s->sf, &ss);
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
		.pool_pages = atomic_load(&s->pool_pages),
		.bd_count = atomic_load(&s->swap_pages),
		.bd_reads = ss.bd_reads,
		.bd_writes = ss.bd_writes,
		.bd_read_errors = ss.read_errors,
		.bd_write_errors = ss.write_errors,
		.bd_total_slots = ss.total_slots,
		.written_back = atomic_load(&s->written_back),
		.writeback_failures = atomic_load(&s->writeback_failures),
		.pool_limit_hit = atomic_load(&s->pool_limit_hit),
		.shared_handles = atomic_load(&s->dup_handles),
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

int store_get_swap_stats(struct store *s, struct store_swap_stats *ret, size_t n)
{
	struct swapfile_area_stats *a;
	size_t count = 0;

	if (!s->sf)
		return 0;
	a = malloc(sizeof(*a));
	if (!a)
		return -ENOMEM;
	for (unsigned t = 0; t < SWAPFILE_MAX_AREAS; t++) {
		if (swapfile_get_area_stats(s->sf, t, a) < 0)
			continue;
		if (count < n)
			ret[count] = (struct store_swap_stats){
				.prio = a->prio,
				.bdev = a->bdev,
				.direct_io = a->direct_io,
				.has_holes = a->has_holes,
				.total_slots = a->total_slots,
				.used_slots = a->used_slots,
				.bd_reads = a->bd_reads,
				.bd_writes = a->bd_writes,
				.read_errors = a->read_errors,
				.write_errors = a->write_errors,
			};
		if (count < n)
			memcpy(ret[count].path, a->path, sizeof(ret[count].path));
		count++;
	}
	free(a);
	return (int)count;
}

/*
 * Recovery (pmem.h): loading a page from the store a dead daemon kept at old_store. Follows
 * only what names data: the pool's handle table and arena, same_words[] and the tier table.
 * Pages in swap areas are not read here: a slot's content is the page only while the slot is
 * kept from the new store's allocator, which store_adopt() does (-EOPNOTSUPP here).
 */
static int view_pool_load(const struct pmem_view *v, const struct store *old, uint64_t payload,
			  void *page)
{
	_Alignas(8) unsigned char obj[PAGE_SIZE];
	int len;

	if (!pool_payload_valid(payload))
		return -ENOENT;
	len = zpool_view_read(v, (uint64_t)(uintptr_t)old->pool, (uint32_t)(payload & H_POOL_MASK),
			      obj, sizeof(obj));
	return len < 0 ? len : object_to_page(payload, obj, (size_t)len, page);
}

static int view_same_load(const struct pmem_view *v, const struct store *old, uint64_t handle,
			  void *page)
{
	uint64_t idx = handle & ((UINT64_C(1) << H_SAME_WORD_BITS) - 1);
	const struct same_word *words;

	if ((handle & H_SAME_KIND_MASK) != H_SAME_TABLE) {
		uint64_t word;
		int r = same_word_of(NULL, handle, &word); /* needs no table */

		if (r == 0)
			fill_words(page, word);
		return r;
	}
	words = pmem_view_ptr(v, (uint64_t)(uintptr_t)old->same_words,
			      SAME_WORDS * sizeof(*words));
	if (!words || idx >= SAME_WORDS || !words[idx].refs)
		return -EBADMSG;
	fill_words(page, words[idx].word);
	return 0;
}

/* The state of the dead daemon's tier entry behind handle. Returns 0, -ENOENT, -EBADMSG. */
static int view_tier_state(const struct pmem_view *v, const struct store *old, uint64_t handle,
			   uint64_t *ret_state)
{
	uint64_t idx = handle & H_TIER_INDEX_MASK;
	const struct tier_entry *const *dir;
	const struct tier_entry *chunk;

	if (idx == 0 || (handle & ~(H_TIER | H_TIER_INDEX_MASK)))
		return -ENOENT;
	dir = pmem_view_ptr(v, (uint64_t)(uintptr_t)old->tier_dir,
			    TIER_MAX_CHUNKS * sizeof(*dir));
	if (!dir)
		return -EBADMSG;
	chunk = pmem_view_ptr(v, (uint64_t)(uintptr_t)dir[idx >> TIER_CHUNK_SHIFT],
			      TIER_CHUNK * sizeof(*chunk));
	if (!chunk)
		return -EBADMSG;
	*ret_state =
		atomic_load_explicit(&chunk[idx & TIER_CHUNK_MASK].state, memory_order_relaxed);
	return 0;
}

static int view_tier_load(const struct pmem_view *v, const struct store *old, uint64_t handle,
			  void *page)
{
	uint64_t st;
	int r = view_tier_state(v, old, handle, &st);

	if (r < 0)
		return r;
	switch (st & TS_KIND_MASK) {
	case TS_POOL:
	case TS_WB:
		return view_pool_load(v, old, st & TS_PAYLOAD_MASK, page);
	case TS_SWAP:
		return -EOPNOTSUPP;
	default:
		return -ENOENT;
	}
}

int store_view_load(const struct pmem_view *v, uint64_t old_store, uint64_t handle, void *page)
{
	const struct store *old = pmem_view_ptr(v, old_store, sizeof(*old));

	if (!old)
		return -EBADMSG;
	if (handle & H_SAME)
		return view_same_load(v, old, handle, page);
	if (handle & H_SWAP)
		return -EOPNOTSUPP;
	if (handle & H_TIER)
		return view_tier_load(v, old, handle, page);
	return view_pool_load(v, old, handle, page);
}

/* A pool object of the dead daemon's, copied as it is into our pool: no decompression and no
 * compression (the codec id stays in the handle). Returns 0, or -errno to take the slow way. */
static int adopt_pool_object(struct store *s, const struct pmem_view *v, const struct store *old,
			     uint64_t old_handle, bool *past_limit, uint64_t *ret_handle)
{
	_Alignas(8) unsigned char obj[PAGE_SIZE];
	int len, r;

	if (s->cfg.backend != STORE_BACKEND_POOL || !pool_payload_valid(old_handle))
		return -EOPNOTSUPP;
	len = zpool_view_read(v, (uint64_t)(uintptr_t)old->pool, (uint32_t)(old_handle & H_POOL_MASK),
			      obj, sizeof(obj));
	if (len < 0)
		return len;
	r = pool_put(s, obj, (size_t)len, old_handle & (H_CODEC_MASK << H_CODEC_SHIFT), past_limit,
		     ret_handle);
	if (r < 0)
		return r;
	atomic_fetch_add(&s->stored_pages, 1);
	store_track_max(s);
	return 0;
}

/* The slot the dead daemon's handle names (its swp_entry there), or 0 for a page elsewhere. */
static int view_area_entry(const struct pmem_view *v, const struct store *old, uint64_t handle,
			   uint64_t *ret_entry)
{
	uint64_t st;
	int r;

	*ret_entry = 0;
	if (handle & H_SAME)
		return 0;
	if (handle & H_SWAP) {
		if (handle & ~(H_SWAP | H_SWAP_ENTRY_MASK))
			return -ENOENT;
		*ret_entry = handle & H_SWAP_ENTRY_MASK;
		return 0;
	}
	if (!(handle & H_TIER))
		return 0;
	r = view_tier_state(v, old, handle, &st);
	if (r == 0 && (st & TS_KIND_MASK) == TS_SWAP)
		*ret_entry = st & TS_PAYLOAD_MASK & H_SWAP_ENTRY_MASK;
	return r == -ENOENT ? 0 : r; /* -ENOENT: store_view_load() says it again */
}

/*
 * A page the dead daemon left in a swap area stays where it is: the same slot of the same file
 * (by device, inode and header UUID; its type here may differ) becomes ours, as a page in an
 * area for good. The slot must not have been handed out meanwhile: the daemon holds the areas
 * until every client its predecessors had is adopted or gone (adopt.h).
 */
static int adopt_area_slot(struct store *s, const struct store *old, uint64_t old_entry,
			   uint64_t *ret_handle)
{
	const struct store_area_id *id;
	uint64_t entry;
	int type, r;

	if (swp_type(old_entry) >= SWAPFILE_MAX_AREAS || !old->area_ids[swp_type(old_entry)].valid)
		return -EBADMSG;
	id = &old->area_ids[swp_type(old_entry)];
	type = s->sf ? swapfile_find(s->sf, id->dev, id->ino, id->uuid) : -ENOENT;
	if (type < 0)
		return -ENODEV;
	entry = swp_entry((unsigned)type, swp_offset(old_entry));
	r = swapfile_reserve(s->sf, entry);
	if (r < 0)
		return r;
	atomic_fetch_add(&s->swap_pages, 1);
	atomic_fetch_add(&s->stored_pages, 1);
	*ret_handle = H_SWAP | entry;
	return 0;
}

bool store_view_shared(const struct pmem_view *v, uint64_t old_store)
{
	const struct store *old = pmem_view_ptr(v, old_store, sizeof(*old));

	return !old || atomic_load(&old->dup_handles) > 0;
}

bool store_view_in_area(const struct pmem_view *v, uint64_t old_store, uint64_t old_handle)
{
	const struct store *old = pmem_view_ptr(v, old_store, sizeof(*old));
	uint64_t entry;

	return !old || view_area_entry(v, old, old_handle, &entry) < 0 || entry;
}

int store_adopt(struct store *s, const struct pmem_view *v, uint64_t old_store, uint64_t old_handle,
		void *page, bool *ret_past_limit, uint64_t *ret_handle)
{
	const struct store *old = pmem_view_ptr(v, old_store, sizeof(*old));
	uint64_t entry;
	int r;

	if (!old)
		return -EBADMSG;
	if ((old_handle & H_SAME) && (old_handle & H_SAME_KIND_MASK) != H_SAME_TABLE) {
		/* The word is in the handle: valid in any store. */
		uint64_t word;

		r = same_word_of(NULL, old_handle, &word);
		if (r < 0)
			return r;
		atomic_fetch_add(&s->same_pages, 1);
		atomic_fetch_add(&s->stored_pages, 1);
		*ret_handle = old_handle;
		return 0;
	}
	r = view_area_entry(v, old, old_handle, &entry);
	if (r < 0)
		return r;
	if (entry)
		return adopt_area_slot(s, old, entry, ret_handle);
	pthread_rwlock_rdlock(&s->trim_lock);
	r = adopt_pool_object(s, v, old, old_handle, ret_past_limit, ret_handle);
	pthread_rwlock_unlock(&s->trim_lock);
	if (r == 0)
		return 0;
	r = store_view_load(v, old_store, old_handle, page);
	if (r < 0)
		return r;
	if (ret_past_limit)
		*ret_past_limit = false; /* whatever the failed copy said */
	return save(s, page, ret_past_limit, ret_handle);
}
