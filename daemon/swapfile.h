/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Swap areas: files or block devices with a SWAPSPACE2 header (swap-header.h), the way the
 * kernel's swapon uses them (mm/swapfile.c), holding evicted pages in 4 KiB slots.
 *
 * A struct swapfile is the set of areas in use, the kernel's swap_info[] and swap_avail_head.
 * Each area has a type (0..SWAPFILE_MAX_AREAS-1) and a priority: slots come from the areas of
 * the highest priority that has room, and areas of equal priority take turns (round-robin), as
 * with swapon -p. A slot is named by a 64-bit entry, like the kernel's swp_entry_t: the area's
 * type and the slot's offset. Entry 0 (type 0, slot 0: the header) is never a valid slot, so
 * a page table may use 0 for "none".
 *
 * Every slot has a reference count (swap_duplicate() for a page shared by a forked child,
 * swap_free() when a page-table entry lets go of it). Page I/O is pread/pwrite on the area, with
 * no lock held that another reader or writer waits for, so a slow disk stalls only the caller;
 * O_DIRECT on request. Errors from the disk come back as -errno (the caller keeps the page where
 * it was) and are counted in the stats. Nothing here logs.
 *
 * All functions are thread-safe. Entries handed in are checked, never trusted (a wrong type,
 * the header slot, a bad or free slot give -EINVAL), since they come back from page tables.
 */

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "swap-header.h"
#include "swap-map.h" /* SWAP_MAP_MAX, SWAP_MAP_BAD */

#define SWAPFILE_MAX_AREAS 32 /* the kernel's MAX_SWAPFILES */

/* swp_entry_t: type in bits 32..36, slot offset in bits 0..31; fits in STORE_HANDLE_BITS. */
#define SWP_TYPE_SHIFT 32
#define SWP_OFFSET_MASK 0xffffffffULL

static inline uint64_t swp_entry(unsigned type, uint32_t offset)
{
	return (uint64_t)type << SWP_TYPE_SHIFT | offset;
}
static inline unsigned swp_type(uint64_t entry)
{
	return (unsigned)(entry >> SWP_TYPE_SHIFT);
}
static inline uint32_t swp_offset(uint64_t entry)
{
	return (uint32_t)(entry & SWP_OFFSET_MASK);
}

/* swapfile_swapon() flags */
#define SWAPFILE_DIRECT_IO (1U << 0) /* O_DIRECT: bypass the page cache of the file or device */

/* prio for swapfile_swapon(): below every priority given so far, as swapon without -p. */
#define SWAPFILE_PRIO_DEFAULT INT_MIN

struct swapfile;

/* Named as zram's bd_stat (pages of 4 KiB), summed over every area ever on. */
struct swapfile_stats {
	uint64_t bd_count;     /* slots holding a page now */
	uint64_t bd_reads;     /* pages read, cumulative */
	uint64_t bd_writes;    /* pages written, cumulative */
	uint64_t read_errors;  /* pages whose read failed (EIO, a truncated file), cumulative */
	uint64_t write_errors; /* pages whose write failed (EIO, ENOSPC), cumulative */
	uint64_t total_slots;  /* slots that can hold a page, in the areas on now */
	uint32_t nr_areas;     /* areas on now */
};

struct swapfile_area_stats {
	char path[PATH_MAX];
	int prio;
	bool bdev;	/* a block device, not a regular file */
	bool direct_io; /* opened with O_DIRECT */
	bool has_holes; /* a sparse file: a write may find the file system full (ENOSPC) */
	bool draining;	/* swapfile_swapoff() was called: no new slots come from it */
	uint64_t dev, ino; /* which file: st_dev and st_ino, or st_rdev and 0 for a device */
	unsigned char uuid[SWAP_UUID_LEN];
	char label[SWAP_LABEL_LEN + 1];
	uint64_t total_slots;  /* slots that can hold a page: last_page minus bad pages */
	uint64_t used_slots;   /* slots holding a page now */
	uint64_t bad_slots;    /* marked bad in the header */
	uint64_t bd_reads;     /* pages, cumulative */
	uint64_t bd_writes;    /* pages, cumulative */
	uint64_t read_errors;  /* pages, cumulative */
	uint64_t write_errors; /* pages, cumulative */
};

/* An empty set. Returns 0, -ENOMEM. */
int swapfile_new(struct swapfile **ret);
/* Closes every area. Pages still in slots are lost: drain them first. */
void swapfile_free(struct swapfile *sf);

/*
 * Opens path (a regular file or a block device holding a valid swap header) and adds it to the
 * set with priority prio (higher first; SWAPFILE_PRIO_DEFAULT for the kernel's -1, -2, ...).
 * A regular file is flock()ed so a second memextd cannot use it too; a block device is opened
 * O_EXCL, so a mounted or kernel-swapped device is refused. Returns the area's type (>= 0), or
 * -errno with one line naming the file and the problem in err (which may be NULL):
 *   -ENOENT, -EACCES, -EPERM  open() failed
 *   -EROFS    a read-only file system or block device
 *   -EINVAL   not a regular file or block device; a bad header (see swap_header_parse());
 *             O_DIRECT asked for and not supported
 *   -EFBIG    the header's last_page lies beyond the end of the file or device
 *   -EBUSY    in use: kernel swap (swapon), mounted, or another memext
 *   -ENOSPC   SWAPFILE_MAX_AREAS areas are on already
 *   -ENOMEM
 */
int swapfile_swapon(struct swapfile *sf, const char *path, int prio, unsigned flags, char *err,
		    size_t errlen);

/*
 * Stops allocation from area type at once; if no slot of it holds a page any more, closes and
 * removes it and returns 0. Otherwise returns -EBUSY and keeps the area readable (the caller
 * brings its pages back, swapoff's try_to_unuse, and calls again). -ENOENT: no such area.
 */
int swapfile_swapoff(struct swapfile *sf, unsigned type);

/*
 * get_swap_pages(): takes up to nr slots (at most 64 a call), each with a count of 1, from one
 * area (the highest priority with room; equal priorities in turn), consecutive where possible.
 * Returns the number taken (>= 1) with their entries in ret_entries, -ENOSPC when every area
 * is full, -EINVAL when nr is 0.
 */
int swapfile_alloc(struct swapfile *sf, unsigned nr, uint64_t *ret_entries);

/*
 * While held, swapfile_alloc() hands out no slot (-ENOSPC): a restarted daemon's predecessor
 * may have pages in slots it has not reserved yet. Slots are reserved one by one meanwhile
 * (swapfile_reserve()); frees and I/O go on as usual.
 */
void swapfile_set_held(struct swapfile *sf, bool held);
bool swapfile_held(struct swapfile *sf);

/*
 * Takes the free slot entry (count 1) for a page a dead daemon left there. Returns 0, -EBUSY
 * (the slot is in use), -EINVAL (no such area or slot).
 */
int swapfile_reserve(struct swapfile *sf, uint64_t entry);

/* The type of the area on now that is file (dev, ino) with header uuid, or -ENOENT. */
int swapfile_find(struct swapfile *sf, uint64_t dev, uint64_t ino,
		  const unsigned char uuid[SWAP_UUID_LEN]);

/* One more reference to the slot. Returns 0, -EINVAL (not an allocated slot), -EOVERFLOW. */
int swap_duplicate(struct swapfile *sf, uint64_t entry);
/* Drops one reference. Returns the references left (0: slot free again), -EINVAL. */
int swap_free(struct swapfile *sf, uint64_t entry);
/* The slot's reference count, SWAP_MAP_BAD for the header and bad slots, -EINVAL. */
int swap_count(struct swapfile *sf, uint64_t entry);

/*
 * Writes one 4 KiB page to an allocated slot / reads it back. Returns 0, -EINVAL (entry not an
 * allocated slot), or the disk's error (-EIO, -ENOSPC, ...; a read past the end of a file that
 * shrank is -EIO); a failed write leaves the slot's old content undefined, a failed read page's.
 */
int swapfile_write_page(struct swapfile *sf, uint64_t entry, const void *page);
int swapfile_read_page(struct swapfile *sf, uint64_t entry, void *page);

/*
 * The same for nr pages; runs of consecutive slots go to the disk as one pwritev/preadv. Returns
 * 0 when all were done, or -errno as above with *ret_done set to the number of leading entries
 * that were done (ret_done may be NULL). Entries are all checked before any I/O starts.
 */
int swapfile_write_pages(struct swapfile *sf, const uint64_t *entries, const void *const *pages,
			 unsigned nr, unsigned *ret_done);
int swapfile_read_pages(struct swapfile *sf, const uint64_t *entries, void *const *pages,
			unsigned nr, unsigned *ret_done);

void swapfile_get_stats(struct swapfile *sf, struct swapfile_stats *ret);
/* Returns 0, or -ENOENT when no area has that type. */
int swapfile_get_area_stats(struct swapfile *sf, unsigned type, struct swapfile_area_stats *ret);
