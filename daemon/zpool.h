/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * zpool: a zsmalloc-like allocator for compressed pages. Objects of 1..PAGE_SIZE bytes are packed
 * by size class into zspages of 1..16 pages; the caller holds an integer handle, never a pointer,
 * so compaction can move objects into fuller zspages and give whole pages back to the system.
 * Thread-safe: any number of threads may store, map and drop at once; zpool_obj_map() takes no
 * lock. Lock order and the reader/compaction protocol are at the top of zpool.c.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zpool;

#define ZPOOL_MAX_ZSPAGE_PAGES 16 /* a zspage's offsets fit 16 bits */
#define ZPOOL_NR_FULLNESS 11 /* groups 0..9: under 10%, 20%, ..., 100% of slots used; 10: full */

struct zpool_config {
	uint64_t mem_limit_bytes;   /* 0: none; past it zpool_obj_store() returns -ENOSPC */
	unsigned max_zspage_pages;  /* 1..ZPOOL_MAX_ZSPAGE_PAGES; 0: the default, 16 */
	unsigned class_delta_bytes; /* size class step: 8, 16, 32 or 64; 0: the default, 16 */
};

struct zpool_stats {
	uint64_t pages;		 /* 4 KiB pages held by zspages now */
	uint64_t metadata_bytes; /* handle table, zspage descriptors, arena tables, pool struct */
	uint64_t mem_used_bytes; /* pages * PAGE_SIZE + metadata_bytes: what the pool holds */
	uint64_t mem_used_max_bytes; /* high-water mark of mem_used_bytes */
	uint64_t objs;		     /* objects stored now */
	uint64_t obj_bytes;	     /* their sizes summed: what a perfect packer would need */
	uint64_t pages_compacted;    /* pages given back by compaction, cumulative */
	uint64_t limit_rejects;	     /* stores refused at mem_limit_bytes, cumulative */
};

struct zpool_class_stats {
	uint32_t size; /* bytes per object slot: the largest object of the class */
	uint32_t pages_per_zspage;
	uint32_t objs_per_zspage;
	uint64_t zspages;		      /* zspages now */
	uint64_t objs_allocated;	      /* object slots in them */
	uint64_t objs_inuse;		      /* slots holding an object */
	uint64_t pages_used;		      /* zspages * pages_per_zspage */
	uint64_t pages_freeable;	      /* what compaction could give back now */
	uint64_t pages_compacted;	      /* given back by compaction, cumulative */
	uint64_t fullness[ZPOOL_NR_FULLNESS]; /* zspages per fullness group */
};

/* Returns 0 and the new pool, -EINVAL (bad config), -ENOMEM. cfg may be NULL: defaults. */
int zpool_new(const struct zpool_config *cfg, struct zpool **ret);
/* Frees the pool and all its objects. No other call may be running or follow. */
void zpool_free(struct zpool *pool);

/*
 * Copies len (1..PAGE_SIZE) bytes of data into the pool. Returns 0 and a handle (1..2^31-1) in
 * *ret_handle; -EINVAL for a bad len, -ENOSPC when the object would take the pool past its
 * mem_limit_bytes (nothing is stored), -ENOMEM. With past_limit, the object is stored past
 * the limit instead, and *past_limit set when it was.
 */
int zpool_obj_store(struct zpool *pool, const void *data, size_t len, bool *past_limit,
		    uint32_t *ret_handle);

/*
 * Frees the object behind handle, waiting for readers that have it mapped. Returns its size, or
 * -ENOENT when handle holds no object. Must not race with a store of the same handle, which
 * the caller cannot have yet.
 */
int zpool_obj_drop(struct zpool *pool, uint32_t handle);

/*
 * Returns the object's bytes in place, pinned: compaction leaves it where it is and its bytes
 * stay unchanged until zpool_obj_unmap(). Takes no lock and never waits (a pin is one CAS on the
 * handle's entry), so fault threads never queue behind reclaim or compaction. The bytes are
 * the pool's memory: read them, never write. Returns 0, or -ENOENT when handle holds no object.
 */
int zpool_obj_map(struct zpool *pool, uint32_t handle, const void **ret_data, size_t *ret_len);
void zpool_obj_unmap(struct zpool *pool, uint32_t handle);

/* Copies the object into buf (buf_len bytes). Returns its size, -ENOENT, -ENOBUFS (too small). */
int zpool_obj_read(struct zpool *pool, uint32_t handle, void *buf, size_t buf_len);

/*
 * Moves objects out of the sparsest zspages into the fullest, class by class, and gives the
 * emptied zspages' pages back (MADV_DONTNEED). Objects mapped at the time stay put. Returns the
 * number of pages given back.
 */
uint64_t zpool_compact(struct zpool *pool);

/*
 * When the pool holds nothing, gives back the handle table's and the zspage descriptors'
 * pages, so an empty pool costs what a new one does. The caller guarantees that no other call
 * on the pool runs meanwhile. Returns 0, or -EBUSY when the pool is not empty.
 */
int zpool_trim(struct zpool *pool);

/* Pages zpool_compact() could give back now, summed over the classes. */
uint64_t zpool_freeable_pages(struct zpool *pool);

/*
 * Smallest object size that gains nothing from the pool: its class holds one object per page.
 * A caller does better keeping such data raw in a page (zsmalloc's zs_huge_class_size()).
 */
size_t zpool_huge_class_size(const struct zpool *pool);

void zpool_get_stats(struct zpool *pool, struct zpool_stats *ret);

struct pmem_view;
/*
 * Copies the object behind handle in the pool a dead daemon kept at old_pool (an address in
 * the view) into buf. Returns its size, -ENOENT (no such object), -EBADMSG (the view does not
 * hold what the handle says), -ENOBUFS.
 */
int zpool_view_read(const struct pmem_view *v, uint64_t old_pool, uint32_t handle, void *buf,
		    size_t buf_len);

/* Number of distinct size classes (classes of equal geometry are merged, as in zsmalloc). */
unsigned zpool_nr_classes(const struct zpool *pool);
/* Returns 0 and the figures of class idx (ascending sizes), or -ENOENT. */
int zpool_get_class_stats(struct zpool *pool, unsigned idx, struct zpool_class_stats *ret);
