/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The store: where evicted pages live. One page in, one integer handle out; the handle is
 * what a page-table entry keeps (STORE_HANDLE_BITS wide). The store owns compression, the
 * same-filled and incompressible ("huge") cases, the memory limit and the swap areas.
 * Thread-safe: fault threads call store_load() concurrently with reclaim's store_save().
 *
 * Backends (docs/swapfile.md):
 *   pool           compressed in memory (zram)
 *   swapfile       written as they are to swap areas (the kernel's swap)
 *   pool+swapfile  compressed in memory; when the pool reaches its limit, its coldest objects
 *                  are written back to the areas (zswap). A handle stays the same when its
 *                  page moves: the store keeps the indirection.
 * Same-filled pages never go to an area: they are kept as their word.
 *
 * A page in a swap area costs disk I/O to load. store_load_may_block() tells which; a fault
 * thread that must not wait for the disk uses store_try_load() and hands what it refuses to a
 * thread that may (invariant 3).
 */

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_HANDLE_BITS 56

struct store;

enum store_backend {
	STORE_BACKEND_POOL,	     /* compressed pool in memory only (zram) */
	STORE_BACKEND_SWAPFILE,	     /* swap areas only, pages written uncompressed */
	STORE_BACKEND_POOL_SWAPFILE, /* pool, coldest objects written back to the areas (zswap) */
};

/* struct store_swap_area.prio: below every priority given so far, as swapon without -p. */
#define STORE_SWAP_PRIO_DEFAULT INT_MIN

struct store_swap_area {
	const char *path; /* a file or block device with a swap header (memextctl mkswap) */
	int prio;	  /* higher first, equal ones take turns; or STORE_SWAP_PRIO_DEFAULT */
	bool direct_io;	  /* O_DIRECT: no second copy of swapped pages in the page cache */
};

struct store_config {
	const char *compressor;	       /* "lz4" (default) or "zstd" */
	int zstd_level;		       /* 1..19 */
	uint64_t mem_limit_bytes;      /* the pool's limit, 0: none; pool+swapfile: the tier
					* table counts too, and 0 is 20% of physical memory, as
					* zswap's max_pool_percent */
	bool compaction;	       /* compact the pool when it gets sparse */
	uint32_t huge_threshold_bytes; /* pages compressing to more are kept raw (< PAGE_SIZE);
					* 0: the pool's huge class size - 1, as zram does */

	enum store_backend backend;		  /* 0: pool */
	const struct store_swap_area *swap_areas; /* nr_swap_areas of them: at least one unless
						   * backend is pool, none for pool; the strings
						   * need not outlive store_new() */
	size_t nr_swap_areas;

	/* pool+swapfile only. Percentages of mem_limit_bytes; 0 takes the default. */
	unsigned writeback_high_pct; /* writeback starts when the pool passes it; default 95 */
	unsigned writeback_low_pct;  /* ... and stops below it (default 90). A pool that hit its
				      * limit takes no new page either until it is below this
				      * (zswap's accept_threshold_percent): the hysteresis */
	bool writeback_on_save;	     /* write back in store_save() (the caller's thread) instead
				      * of the store's own thread */
	bool huge_in_pool;	     /* keep incompressible pages in the pool; default: they go
				      * straight to an area, where they cost no memory */
};

/* Figures named and defined as zram's mm_stat, all in bytes unless the name says pages. */
struct store_stats {
	uint64_t orig_data_size;  /* uncompressed size of the stored pages */
	uint64_t compr_data_size; /* compressed size of the stored pages */
	uint64_t mem_used_total;  /* memory the store takes from the system, metadata included */
	uint64_t mem_limit;	  /* 0: none */
	uint64_t mem_used_max;	  /* high-water mark of mem_used_total */
	uint64_t same_pages;	  /* pages stored as one repeated word, no pool memory */
	uint64_t pages_compacted; /* pages given back by compaction, cumulative */
	uint64_t huge_pages;	  /* pages stored raw: they did not compress below the threshold */
	uint64_t stored_pages;	  /* pages held now */
	uint64_t limit_rejects;	  /* saves refused at mem_limit, cumulative */
	uint64_t failed_loads;	  /* loads of data that failed to decompress, cumulative */
	uint64_t mem_used_metadata; /* of mem_used_total: handle table, zspage descriptors and the
				     * like, which zram leaves out of its mem_used_total */
	uint64_t pages_freeable;    /* pages compaction could give back now */

	/* Swap areas, as zram's bd_stat, in 4 KiB pages. At rest,
	 * stored_pages == same_pages + pool_pages + bd_count. */
	uint64_t pool_pages;	     /* pages held in the pool now (compressed or huge) */
	uint64_t bd_count;	     /* pages held in swap areas now */
	uint64_t bd_reads;	     /* pages read from the areas, cumulative */
	uint64_t bd_writes;	     /* pages written to the areas, cumulative */
	uint64_t bd_read_errors;     /* pages whose read failed (EIO), cumulative */
	uint64_t bd_write_errors;    /* pages whose write failed (EIO, ENOSPC), cumulative */
	uint64_t bd_total_slots;     /* slots of the areas on now */
	uint64_t written_back;	     /* pages moved from the pool to an area, cumulative */
	uint64_t writeback_failures; /* pages writeback could not move (no free slot, a disk
				      * error): they stayed in the pool, cumulative */
	uint64_t pool_limit_hit;     /* saves that found the pool full and went to an area (zswap's
				      * pool_limit_hit), cumulative */
	uint64_t shared_handles;     /* stored pages held by more than one page-table entry now
				      * (a fork child shares its parent's), counted once each */
};

/* One swap area, for `memextctl stats`: figures in 4 KiB pages. */
struct store_swap_stats {
	char path[PATH_MAX];
	int prio;
	bool bdev;	      /* a block device, not a regular file */
	bool direct_io;	      /* opened O_DIRECT */
	bool has_holes;	      /* a sparse file: a write may meet a full file system */
	uint64_t total_slots; /* slots that can hold a page */
	uint64_t used_slots;  /* slots holding a page now */
	uint64_t bd_reads;    /* cumulative */
	uint64_t bd_writes;
	uint64_t read_errors;
	uint64_t write_errors;
};

#define STORE_NR_FULLNESS 11

/* One size class of the pool, as zsmalloc's debugfs "classes" file shows it. */
struct store_class_stats {
	uint32_t size;		   /* bytes per slot: the largest compressed page the class holds */
	uint32_t pages_per_zspage; /* 4 KiB pages in each zspage of the class */
	uint32_t objs_per_zspage;  /* slots in each zspage */
	uint64_t zspages;	   /* zspages now */
	uint64_t objs_allocated;   /* slots in them */
	uint64_t objs_used;	   /* slots holding a page */
	uint64_t pages_used;	   /* zspages * pages_per_zspage */
	uint64_t pages_freeable;   /* what compaction could give back now */
	uint64_t pages_compacted;  /* given back by compaction, cumulative */
	uint64_t fullness[STORE_NR_FULLNESS]; /* zspages with < 10%, < 20%, ..., < 100% of their
					       * slots used, then full ones */
};

/* Returns 0 and the new store in *ret, or -EINVAL (bad config), -ENOMEM. */
int store_new(const struct store_config *cfg, struct store **ret);
/*
 * The same, with one line naming the problem in err (may be NULL) on failure, for the daemon
 * to log: a bad setting, or a swap area that cannot be used (swapfile_swapon()'s errors:
 * -ENOENT, -EACCES, -EPERM, -EROFS, -EINVAL, -EFBIG, -EBUSY, -ENOSPC; the message names the
 * file). No area is left open on failure.
 */
int store_new_err(const struct store_config *cfg, struct store **ret, char *err, size_t errlen);
/* Stops the writeback thread and closes the areas; pages still stored are lost. */
void store_free(struct store *s);

/*
 * Keeps one 4 KiB page. Returns 0 and the handle, or, with nothing stored (the caller keeps the
 * page where it was): -ENOSPC when the pool is at its limit and no area has a free slot (or
 * the disk is full), -EIO or another disk error from writing an area, -ENOMEM. May write to an
 * area (the caller's thread waits for the disk): never call it from a fault thread.
 */
int store_save(struct store *s, const void *page, uint64_t *ret_handle);
/*
 * store_save() for a page adopted from a dead daemon, which held it: past the pool's limit
 * rather than -ENOSPC (the limit stops new evictions until it is below it again), and into
 * the pool when no swap area takes it (no slot, a disk error). *ret_past_limit says whether
 * it went past.
 */
int store_save_adopted(struct store *s, const void *page, bool *ret_past_limit,
		       uint64_t *ret_handle);

/* Decompresses the page behind handle into page (4 KiB). The handle stays valid. Returns 0, or
 * -EBADMSG when the stored data is corrupt (the bytes in page are then undefined), -EIO when a
 * swap area could not be read, -ENOENT for a handle that holds no page. A page in the pool
 * takes no lock: fault threads never wait for reclaim or compaction; a page in an area is
 * read with pread() (see store_load_may_block()). */
int store_load(struct store *s, uint64_t handle, void *page);

/*
 * Whether store_load() of handle would read a swap area now. A pool page can be written back
 * between this answer and the load: a caller that must never wait on the disk calls
 * store_try_load() instead, which refuses such a page.
 */
bool store_load_may_block(struct store *s, uint64_t handle);

/* store_load() that never reads a swap area: -EWOULDBLOCK (== -EAGAIN) when the page is in
 * one, nothing done. */
int store_try_load(struct store *s, uint64_t handle, void *page);

/*
 * Loads nr pages (swap-in readahead): the ones in swap areas are read together, runs of
 * consecutive slots in one preadv. ret_results[i] gets what store_load() would return for
 * handles[i]. Returns the number loaded (results 0). May block on the disk.
 */
unsigned store_load_batch(struct store *s, const uint64_t *handles, void *const *pages, unsigned nr,
			  int *ret_results);

/* Drops one reference to handle; the page is freed with the last one. The last drop must not
 * race with a load of the same handle. Takes a mutex for a page that may be written back (and
 * one while any handle is shared), never waits for the disk. */
void store_drop(struct store *s, uint64_t handle);

/*
 * Adds a reference to handle (swap_duplicate): the page stays until store_drop() has been
 * called once more than store_dup(). For a fork child, which shares its parent's evicted pages
 * until either side writes. Works for every kind of handle (same-filled, pool, tier, swap
 * area); the caller must hold a reference. Returns 0 or -ENOMEM (nothing added).
 * stored_pages and the other figures count a shared page once.
 */
int store_dup(struct store *s, uint64_t handle);

/* The references handle has now (1 when it is not shared), for tests and debugging. */
uint64_t store_handle_refs(struct store *s, uint64_t handle);

/*
 * Whether nr_pages more pages would find room now, counting every page as raw (worst case):
 * below the pool's limit, or free slots in the areas. Reclaim asks before it takes a batch.
 */
bool store_has_room_for(struct store *s, unsigned nr_pages);

/*
 * pool+swapfile: writes up to nr_pages of the pool's coldest pages back to the areas now, in
 * the caller's thread, whatever the watermarks say (zram's writeback). Returns the number
 * moved, -EOPNOTSUPP for another backend, or the error that stopped it before it moved any
 * (-ENOSPC: no free slot; -EIO). Pages that could not move stay in the pool.
 */
int64_t store_writeback(struct store *s, uint64_t nr_pages);

/*
 * While held, no swap slot is handed out (saves and writeback that need one fail as when the
 * areas are full; store_has_room_for() counts no free slot), but store_adopt() takes the slots
 * a dead daemon's pages are in. A restarted daemon holds its areas until every process its
 * predecessor served is adopted or gone (adopt.h). No-op without areas.
 */
void store_set_swap_held(struct store *s, bool held);
bool store_swap_held(struct store *s);

/* Compacts the pool, giving whole pages back to the system; returns the number of pages freed.
 * Always compacts, whatever cfg.compaction says (that only governs compaction on its own). */
uint64_t store_compact(struct store *s);

void store_get_stats(struct store *s, struct store_stats *ret);

/*
 * Copies the figures of the pool's size classes (ascending sizes) into ret[0 .. min(n, count)),
 * and returns count, the number of classes; for `memextctl stats --classes`.
 */
int store_get_class_stats(struct store *s, struct store_class_stats *ret, size_t n);

struct pmem_view;
/*
 * Loads the page behind handle from the store a dead daemon kept at old_store (an address in
 * the view), for a restarted daemon adopting its clients. Returns 0, -ENOENT (no such page),
 * -EBADMSG (the view does not hold what the handle says, or the data is corrupt),
 * -EOPNOTSUPP (a page in a swap area: not recovered yet).
 */
int store_view_load(const struct pmem_view *v, uint64_t old_store, uint64_t handle, void *page);

/* Whether a dead daemon's store had pages with more than one reference (a fork shared them):
 * true also when that cannot be read. */
bool store_view_shared(const struct pmem_view *v, uint64_t old_store);

/*
 * Whether old_handle of a dead daemon's store names a slot of a swap area (its page is not in
 * the pool in pmem): true also when that cannot be read, so that no caller trusts a slot that
 * may be another's.
 */
bool store_view_in_area(const struct pmem_view *v, uint64_t old_store, uint64_t old_handle);

/*
 * Takes the page behind old_handle in a dead daemon's store into this one: a compressed pool
 * object is copied as it is (the common case: nothing is decompressed or compressed again), a
 * page in a swap area stays in its slot, which becomes this store's (no I/O: the area, found
 * by device, inode and header UUID, must be one of this store's, and the slot free here: see
 * store_set_swap_held()), anything else is loaded into page (a 4 KiB buffer) and saved. With
 * ret_past_limit, as store_save_adopted() (it must be false on entry), else as store_save().
 * Returns 0 and the new handle, or store_view_load()'s and store_save()'s errors; for a page in
 * an area -ENODEV (the area is not on here) or -EBUSY (the slot is in use here).
 */
int store_adopt(struct store *s, const struct pmem_view *v, uint64_t old_store, uint64_t old_handle,
		void *page, bool *ret_past_limit, uint64_t *ret_handle);

/* Copies the figures of the swap areas on now into ret[0 .. min(n, count)) (in the order of
 * their type, as /proc/swaps), and returns count. */
int store_get_swap_stats(struct store *s, struct store_swap_stats *ret, size_t n);
