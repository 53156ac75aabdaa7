/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The store: where evicted pages live. One page in, one integer handle out; the handle is
 * what a page-table entry keeps (STORE_HANDLE_BITS wide). The store owns compression, the
 * same-filled and incompressible ("huge") cases and the memory limit. Thread-safe: fault
 * threads call store_load() concurrently with reclaim's store_save().
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_HANDLE_BITS 56

struct store;

struct store_config {
	const char *compressor;	       /* "lz4" (default) or "zstd" */
	int zstd_level;		       /* 1..19 */
	uint64_t mem_limit_bytes;      /* 0: no limit */
	bool compaction;	       /* compact the pool when it gets sparse */
	uint32_t huge_threshold_bytes; /* pages compressing to more are kept raw (< PAGE_SIZE);
					* 0: the pool's huge class size - 1, as zram does */
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
void store_free(struct store *s);

/*
 * Compresses one 4 KiB page and keeps it. Returns 0 and the handle, -ENOSPC when mem_limit
 * would be passed (nothing is stored), -ENOMEM.
 */
int store_save(struct store *s, const void *page, uint64_t *ret_handle);

/* Decompresses the page behind handle into page (4 KiB). The handle stays valid. Returns 0, or
 * -EBADMSG when the stored data is corrupt (the bytes in page are then undefined), -ENOENT for a
 * handle that holds no page. Takes no lock: fault threads never wait for reclaim or compaction. */
int store_load(struct store *s, uint64_t handle, void *page);

/* Frees the page behind handle. Must not race with a load of the same handle. */
void store_drop(struct store *s, uint64_t handle);

/* Compacts the pool, giving whole pages back to the system; returns the number of pages freed.
 * Always compacts, whatever cfg.compaction says (that only governs compaction on its own). */
uint64_t store_compact(struct store *s);

void store_get_stats(struct store *s, struct store_stats *ret);

/*
 * Copies the figures of the pool's size classes (ascending sizes) into ret[0 .. min(n, count)),
 * and returns count, the number of classes; for `memextctl stats --classes`.
 */
int store_get_class_stats(struct store *s, struct store_class_stats *ret, size_t n);
