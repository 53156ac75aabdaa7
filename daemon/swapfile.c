/* SPDX-License-Identifier: MIT */
/*
 * Swap areas (see swapfile.h): opening and checking files and devices, choosing an area for a
 * new slot by priority, and page I/O.
 *
 * Lock order: swapfile.lock (read) -> the area's swap_map locks (swap-map.c).
 *
 * swapfile.lock is a reader-preferring rwlock. Everything that uses an area (allocation, frees,
 * I/O) holds it for reading, so none of them waits for another; only swapon and swapoff take
 * it for writing, and swapoff waits for I/O in flight before it closes a file. I/O is pread/
 * pwrite on one shared descriptor per area: positional calls need no lock of their own, and a
 * slow or failing disk delays only the thread that asked.
 */
#include "swapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "macro.h"
#include "swap-map.h"

/* Pages in one preadv/pwritev; a reclaim batch is smaller. */
#define SWAPFILE_IO_RUN 256
/* How much of the start of an area is read on swapon: enough to find a 64 KiB-page header. */
#define SWAPFILE_PROBE_BYTES 65536
/* Slots taken by one swapfile_alloc() call at most. */
#define SWAPFILE_ALLOC_BATCH 64

struct swap_area {
	unsigned type;
	int prio;
	int fd;
	bool bdev;
	bool direct_io;
	bool has_holes;
	bool draining; /* under swapfile.lock (write) */
	uint64_t dev, ino;
	char *path;
	struct swap_header_info hdr;
	struct swap_map *map;
	_Atomic uint64_t bd_reads;     /* pages */
	_Atomic uint64_t bd_writes;    /* pages */
	_Atomic uint64_t read_errors;  /* pages */
	_Atomic uint64_t write_errors; /* pages */
};

struct swapfile {
	pthread_rwlock_t lock;
	struct swap_area *areas[SWAPFILE_MAX_AREAS]; /* by type; NULL: free type */
	struct swap_area *avail[SWAPFILE_MAX_AREAS]; /* not draining, highest priority first */
	unsigned nr_avail;
	int least_priority; /* the last default priority handed out */
	_Atomic bool held;  /* swapfile_set_held() */
	/* whose turn it is among equal priorities: rr[i] for the group starting at avail[i] */
	_Atomic unsigned rr[SWAPFILE_MAX_AREAS];
	/* counters of areas already swapped off, so that the totals stay cumulative */
	uint64_t off_reads, off_writes, off_read_errors, off_write_errors;
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

int swapfile_new(struct swapfile **ret)
{
	struct swapfile *sf = calloc(1, sizeof(*sf));
	pthread_rwlockattr_t attr;

	if (!sf)
		return -ENOMEM;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_READER_NP);
	pthread_rwlock_init(&sf->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	sf->least_priority = -1;
	*ret = sf;
	return 0;
}

static void area_free(struct swap_area *a)
{
	if (!a)
		return;
	if (a->fd >= 0)
		close(a->fd);
	swap_map_free(a->map);
	free(a->path);
	free(a);
}

void swapfile_free(struct swapfile *sf)
{
	if (!sf)
		return;
	for (unsigned t = 0; t < SWAPFILE_MAX_AREAS; t++)
		area_free(sf->areas[t]);
	pthread_rwlock_destroy(&sf->lock);
	free(sf);
}

static const char *file_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return "a directory";
	case S_IFCHR:
		return "a character device";
	case S_IFIFO:
		return "a FIFO";
	case S_IFSOCK:
		return "a socket";
	case S_IFLNK:
		return "a symbolic link";
	default:
		return "of an unknown kind";
	}
}

static int open_fail(const char *path, bool bdev, bool direct, char *err, size_t errlen)
{
	int r = negative_errno();

	switch (r) {
	case -EROFS:
		return fail(err, errlen, r,
			    "%s: read-only file system, a swap area must be writable", path);
	case -EACCES:
	case -EPERM:
		return fail(err, errlen, r,
			    "%s: permission denied opening it for writing (owner, mode, immutable "
			    "or append-only attribute?)",
			    path);
	case -EBUSY:
		return fail(err, errlen, r,
			    "%s: device is busy: mounted, in use as swap by the kernel, or held "
			    "open exclusively by another program",
			    path);
	case -EINVAL:
		if (direct)
			return fail(err, errlen, r,
				    "%s: the file system does not support direct I/O (O_DIRECT)",
				    path);
		break;
	default:
		break;
	}
	return fail(err, errlen, r, "%s: cannot open %s: %s", path, bdev ? "device" : "file",
		    strerror(-r));
}

/* Reads len bytes at off in full. A read that ends early (end of file) is -EIO. */
static int read_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* Called with the write lock held: where in avail[] an area of priority prio goes. */
static void avail_insert(struct swapfile *sf, struct swap_area *a)
{
	unsigned i = 0;

	/* After every area of the same priority: it takes its turn last. */
	while (i < sf->nr_avail && sf->avail[i]->prio >= a->prio)
		i++;
	memmove(&sf->avail[i + 1], &sf->avail[i], (sf->nr_avail - i) * sizeof(sf->avail[0]));
	sf->avail[i] = a;
	sf->nr_avail++;
}

static void avail_remove(struct swapfile *sf, struct swap_area *a)
{
	for (unsigned i = 0; i < sf->nr_avail; i++)
		if (sf->avail[i] == a) {
			memmove(&sf->avail[i], &sf->avail[i + 1],
				(sf->nr_avail - i - 1) * sizeof(sf->avail[0]));
			sf->nr_avail--;
			return;
		}
}

/* Opens and checks path; on success *ret is an area with no type and no priority yet. */
static int area_open(const char *path, unsigned flags, struct swap_area **ret, char *err,
		     size_t errlen)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ void *probe = NULL;
	struct swap_area *a;
	struct stat st, fst;
	uint64_t area_bytes;
	size_t probe_len;
	bool bdev, direct = flags & SWAPFILE_DIRECT_IO;
	int r;

	if (stat(path, &st) < 0) {
		r = negative_errno();
		return fail(err, errlen, r, "%s: %s", path, strerror(-r));
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return fail(err, errlen, -EINVAL,
			    "%s: not a regular file or block device (it is %s)", path,
			    file_kind(st.st_mode));
	bdev = S_ISBLK(st.st_mode);

	/* O_EXCL on a block device claims it as swapon and mount do, so neither can share it. */
	fd = open(path, O_RDWR | O_CLOEXEC | (bdev ? O_EXCL : 0) | (direct ? O_DIRECT : 0));
	if (fd < 0)
		return open_fail(path, bdev, direct, err, errlen);
	if (fstat(fd, &fst) < 0)
		return fail(err, errlen, negative_errno(), "%s: fstat: %m", path);
	if ((fst.st_mode & S_IFMT) != (st.st_mode & S_IFMT))
		return fail(err, errlen, -EINVAL, "%s: replaced while being opened", path);

	if (bdev) {
		int ro = 0;

		/* A read-only device opens for writing all the same; its writes fail (EPERM). */
		if (ioctl(fd, BLKROGET, &ro) == 0 && ro)
			return fail(err, errlen, -EROFS,
				    "%s: read-only block device, a swap area must be writable",
				    path);
		if (ioctl(fd, BLKGETSIZE64, &area_bytes) < 0)
			return fail(err, errlen, negative_errno(), "%s: BLKGETSIZE64: %m", path);
	} else {
		area_bytes = (uint64_t)fst.st_size;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno == EWOULDBLOCK)
				return fail(err, errlen, -EBUSY,
					    "%s: in use by another memext swap area (locked)",
					    path);
			return fail(err, errlen, negative_errno(), "%s: flock: %m", path);
		}
		/*
		 * The kernel refuses any write to a file it swaps to, even of 0 bytes, with
		 * ETXTBSY; asking now is cheaper and surer than parsing /proc/swaps. Other
		 * errors of this empty write mean nothing; real writes report their own.
		 */
		if (pwrite(fd, "", 0, 0) < 0 && errno == ETXTBSY)
			return fail(err, errlen, -EBUSY,
				    "%s: in use as swap by the kernel (swapon); swapoff it first",
				    path);
	}

	/* The probe is page-aligned and page-sized for O_DIRECT. */
	probe_len = (size_t)MIN(area_bytes, (uint64_t)SWAPFILE_PROBE_BYTES) & PAGE_MASK;
	probe = aligned_alloc(PAGE_SIZE, SWAPFILE_PROBE_BYTES);
	if (!probe)
		return fail(err, errlen, -ENOMEM, "%s: out of memory", path);
	if (probe_len >= PAGE_SIZE) {
		r = read_full(fd, probe, probe_len, 0);
		if (r < 0)
			return fail(err, errlen, r, "%s: cannot read the swap header: %s", path,
				    strerror(-r));
	}

	a = calloc(1, sizeof(*a));
	if (!a)
		return fail(err, errlen, -ENOMEM, "%s: out of memory", path);
	a->fd = -1;
	r = swap_header_parse(probe, probe_len, area_bytes, path, &a->hdr, err, errlen);
	if (r < 0)
		goto out_free_area;
	/* The map counts slots in 32 bits: an area of 2^32 pages loses its last one (16 TiB). */
	if (a->hdr.last_page == UINT32_MAX)
		a->hdr.last_page--;
	r = swap_map_new(a->hdr.last_page + 1, a->hdr.badpages, a->hdr.nr_badpages, 0, &a->map);
	if (r < 0) {
		fail(err, errlen, r, "%s: cannot set up %" PRIu32 " slots: %s", path,
		     a->hdr.last_page + 1, strerror(-r));
		goto out_free_area;
	}
	a->path = strdup(path);
	if (!a->path) {
		r = fail(err, errlen, -ENOMEM, "%s: out of memory", path);
		goto out_free_area;
	}
	/*
	 * Fewer blocks than bytes: a sparse file. (SEEK_HOLE cannot tell: ext4 reports the
	 * unwritten extents of a fallocated file as holes, though their blocks are reserved.)
	 */
	if (!bdev)
		a->has_holes = (uint64_t)fst.st_blocks * 512 <
			       ((uint64_t)a->hdr.last_page + 1) * PAGE_SIZE;
	/*
	 * No readahead by the page cache: slots next to each other on disk hold unrelated pages,
	 * and cached neighbours would take back the memory that swapping gave. Swap-in readahead
	 * is the caller's, by reading runs of slots it expects to need (swapfile_read_pages()).
	 */
	if (!direct)
		posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	a->bdev = bdev;
	a->dev = bdev ? (uint64_t)fst.st_rdev : (uint64_t)fst.st_dev;
	a->ino = bdev ? 0 : (uint64_t)fst.st_ino;
	a->direct_io = direct;
	a->fd = TAKE_FD(fd);
	*ret = a;
	return 0;

out_free_area:
	area_free(a);
	return r;
}

int swapfile_swapon(struct swapfile *sf, const char *path, int prio, unsigned flags, char *err,
		    size_t errlen)
{
	struct swap_area *a = NULL;
	unsigned type;
	int r;

	r = area_open(path, flags, &a, err, errlen);
	if (r < 0)
		return r;

	pthread_rwlock_wrlock(&sf->lock);
	for (type = 0; type < SWAPFILE_MAX_AREAS && sf->areas[type]; type++)
		;
	if (type == SWAPFILE_MAX_AREAS) {
		pthread_rwlock_unlock(&sf->lock);
		area_free(a);
		return fail(err, errlen, -ENOSPC, "%s: %d swap areas are in use already", path,
			    SWAPFILE_MAX_AREAS);
	}
	a->type = type;
	a->prio = prio == SWAPFILE_PRIO_DEFAULT ? --sf->least_priority : prio;
	sf->areas[type] = a;
	avail_insert(sf, a);
	pthread_rwlock_unlock(&sf->lock);
	return (int)type;
}

int swapfile_swapoff(struct swapfile *sf, unsigned type)
{
	struct swap_area *a;

	pthread_rwlock_wrlock(&sf->lock);
	a = type < SWAPFILE_MAX_AREAS ? sf->areas[type] : NULL;
	if (!a) {
		pthread_rwlock_unlock(&sf->lock);
		return -ENOENT;
	}
	if (!a->draining) {
		a->draining = true;
		avail_remove(sf, a);
	}
	if (swap_map_nr_used(a->map)) {
		pthread_rwlock_unlock(&sf->lock);
		return -EBUSY;
	}
	sf->areas[type] = NULL;
	sf->off_reads += atomic_load(&a->bd_reads);
	sf->off_writes += atomic_load(&a->bd_writes);
	sf->off_read_errors += atomic_load(&a->read_errors);
	sf->off_write_errors += atomic_load(&a->write_errors);
	pthread_rwlock_unlock(&sf->lock);
	area_free(a);
	return 0;
}

int swapfile_alloc(struct swapfile *sf, unsigned nr, uint64_t *ret_entries)
{
	uint32_t offsets[SWAPFILE_ALLOC_BATCH];
	int n = -ENOSPC;

	if (!nr)
		return -EINVAL;
	nr = MIN(nr, SWAPFILE_ALLOC_BATCH);
	if (atomic_load(&sf->held))
		return -ENOSPC;

	pthread_rwlock_rdlock(&sf->lock);
	for (unsigned i = 0, j; i < sf->nr_avail && n < 0; i = j) {
		unsigned turn, k;

		for (j = i + 1; j < sf->nr_avail && sf->avail[j]->prio == sf->avail[i]->prio; j++)
			;
		turn = j - i > 1 ? atomic_fetch_add(&sf->rr[i], 1) : 0;
		for (k = 0; k < j - i && n < 0; k++) {
			struct swap_area *a = sf->avail[i + (turn + k) % (j - i)];

			n = swap_map_alloc(a->map, nr, offsets);
			for (int e = 0; e < n; e++)
				ret_entries[e] = swp_entry(a->type, offsets[e]);
		}
	}
	pthread_rwlock_unlock(&sf->lock);
	return n;
}

void swapfile_set_held(struct swapfile *sf, bool held)
{
	atomic_store(&sf->held, held);
}

bool swapfile_held(struct swapfile *sf)
{
	return atomic_load(&sf->held);
}

int swapfile_find(struct swapfile *sf, uint64_t dev, uint64_t ino,
		  const unsigned char uuid[SWAP_UUID_LEN])
{
	int r = -ENOENT;

	pthread_rwlock_rdlock(&sf->lock);
	for (unsigned t = 0; t < SWAPFILE_MAX_AREAS && r < 0; t++) {
		const struct swap_area *a = sf->areas[t];

		if (a && a->dev == dev && a->ino == ino &&
		    memcmp(a->hdr.uuid, uuid, SWAP_UUID_LEN) == 0)
			r = (int)t;
	}
	pthread_rwlock_unlock(&sf->lock);
	return r;
}

/* Called with the read lock held. */
static struct swap_area *entry_area(struct swapfile *sf, uint64_t entry)
{
	unsigned type = swp_type(entry);

	return type < SWAPFILE_MAX_AREAS ? sf->areas[type] : NULL;
}

/* op on the slot of entry, under the read lock; -EINVAL when no area has its type. */
static int slot_op(struct swapfile *sf, uint64_t entry, int (*op)(struct swap_map *, uint32_t))
{
	struct swap_area *a;
	int r = -EINVAL;

	pthread_rwlock_rdlock(&sf->lock);
	a = entry_area(sf, entry);
	if (a)
		r = op(a->map, swp_offset(entry));
	pthread_rwlock_unlock(&sf->lock);
	return r;
}

int swapfile_reserve(struct swapfile *sf, uint64_t entry)
{
	return slot_op(sf, entry, swap_map_reserve);
}

int swap_duplicate(struct swapfile *sf, uint64_t entry)
{
	return slot_op(sf, entry, swap_map_duplicate);
}

int swap_free(struct swapfile *sf, uint64_t entry)
{
	return slot_op(sf, entry, swap_map_put);
}

int swap_count(struct swapfile *sf, uint64_t entry)
{
	return slot_op(sf, entry, swap_map_count);
}

/* Called with the read lock held: the area of an allocated slot, or NULL. */
static struct swap_area *entry_area_allocated(struct swapfile *sf, uint64_t entry)
{
	struct swap_area *a = entry_area(sf, entry);
	int count;

	if (!a)
		return NULL;
	count = swap_map_count(a->map, swp_offset(entry));
	return count >= 1 && count <= SWAP_MAP_MAX ? a : NULL;
}

/* nr_iov pages at slot first, in full: a transfer that stops early is retried from there. */
static int area_io(struct swap_area *a, bool write, uint32_t first, struct iovec *iov,
		   unsigned nr_iov)
{
	off_t off = (off_t)first * (off_t)PAGE_SIZE;

	while (nr_iov) {
		ssize_t n = write ? pwritev(a->fd, iov, (int)nr_iov, off)
				  : preadv(a->fd, iov, (int)nr_iov, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			return write ? -ENOSPC : -EIO; /* a read past the end: the file shrank */
		off += n;
		while (nr_iov && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			nr_iov--;
		}
		if (nr_iov) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static bool page_aligned(const void *p)
{
	return !((uintptr_t)p & (PAGE_SIZE - 1));
}

static int swapfile_io(struct swapfile *sf, bool write, const uint64_t *entries, void *const *pages,
		       unsigned nr, unsigned *ret_done)
{
	struct iovec iov[SWAPFILE_IO_RUN];
	_Alignas(4096) unsigned char bounce[PAGE_SIZE];
	unsigned done = 0;
	int r = 0;

	pthread_rwlock_rdlock(&sf->lock);
	for (unsigned i = 0; i < nr; i++)
		if (!entry_area_allocated(sf, entries[i])) {
			r = -EINVAL;
			goto out_unlock;
		}

	while (done < nr) {
		struct swap_area *a = entry_area(sf, entries[done]);
		uint32_t first = swp_offset(entries[done]);
		bool use_bounce = a->direct_io && !page_aligned(pages[done]);
		unsigned run = 1;

		/* O_DIRECT needs aligned memory: an unaligned page goes alone via the bounce. */
		if (use_bounce) {
			if (write)
				memcpy(bounce, pages[done], PAGE_SIZE);
			iov[0] = (struct iovec){bounce, PAGE_SIZE};
		} else {
			iov[0] = (struct iovec){pages[done], PAGE_SIZE};
			while (done + run < nr && run < SWAPFILE_IO_RUN &&
			       entries[done + run] == entries[done] + run &&
			       (!a->direct_io || page_aligned(pages[done + run]))) {
				iov[run] = (struct iovec){pages[done + run], PAGE_SIZE};
				run++;
			}
		}

		r = area_io(a, write, first, iov, run);
		if (r < 0) {
			atomic_fetch_add(write ? &a->write_errors : &a->read_errors, run);
			goto out_unlock;
		}
		if (use_bounce && !write)
			memcpy(pages[done], bounce, PAGE_SIZE);
		atomic_fetch_add(write ? &a->bd_writes : &a->bd_reads, run);
		done += run;
	}

out_unlock:
	pthread_rwlock_unlock(&sf->lock);
	if (ret_done)
		*ret_done = done;
	return r;
}

int swapfile_write_pages(struct swapfile *sf, const uint64_t *entries, const void *const *pages,
			 unsigned nr, unsigned *ret_done)
{
	/* swapfile_io() does not write through pages when writing. */
	return swapfile_io(sf, true, entries, (void *const *)pages, nr, ret_done);
}

int swapfile_read_pages(struct swapfile *sf, const uint64_t *entries, void *const *pages,
			unsigned nr, unsigned *ret_done)
{
	return swapfile_io(sf, false, entries, pages, nr, ret_done);
}

int swapfile_write_page(struct swapfile *sf, uint64_t entry, const void *page)
{
	void *p = (void *)page;

	return swapfile_io(sf, true, &entry, &p, 1, NULL);
}

int swapfile_read_page(struct swapfile *sf, uint64_t entry, void *page)
{
	return swapfile_io(sf, false, &entry, &page, 1, NULL);
}

void swapfile_get_stats(struct swapfile *sf, struct swapfile_stats *ret)
{
	struct swapfile_stats s = {0};

	pthread_rwlock_rdlock(&sf->lock);
	s.bd_reads = sf->off_reads;
	s.bd_writes = sf->off_writes;
	s.read_errors = sf->off_read_errors;
	s.write_errors = sf->off_write_errors;
	for (unsigned t = 0; t < SWAPFILE_MAX_AREAS; t++) {
		struct swap_area *a = sf->areas[t];

		if (!a)
			continue;
		s.nr_areas++;
		s.bd_count += swap_map_nr_used(a->map);
		s.total_slots += swap_map_nr_usable(a->map);
		s.bd_reads += atomic_load(&a->bd_reads);
		s.bd_writes += atomic_load(&a->bd_writes);
		s.read_errors += atomic_load(&a->read_errors);
		s.write_errors += atomic_load(&a->write_errors);
	}
	pthread_rwlock_unlock(&sf->lock);
	*ret = s;
}

int swapfile_get_area_stats(struct swapfile *sf, unsigned type, struct swapfile_area_stats *ret)
{
	struct swap_area *a;

	pthread_rwlock_rdlock(&sf->lock);
	a = type < SWAPFILE_MAX_AREAS ? sf->areas[type] : NULL;
	if (!a) {
		pthread_rwlock_unlock(&sf->lock);
		return -ENOENT;
	}
	snprintf(ret->path, sizeof(ret->path), "%s", a->path);
	ret->prio = a->prio;
	ret->bdev = a->bdev;
	ret->direct_io = a->direct_io;
	ret->has_holes = a->has_holes;
	ret->draining = a->draining;
	ret->dev = a->dev;
	ret->ino = a->ino;
	memcpy(ret->uuid, a->hdr.uuid, SWAP_UUID_LEN);
	memcpy(ret->label, a->hdr.label, sizeof(ret->label));
	ret->total_slots = swap_map_nr_usable(a->map);
	ret->used_slots = swap_map_nr_used(a->map);
	ret->bad_slots = swap_map_nr_slots(a->map) - 1 - swap_map_nr_usable(a->map);
	ret->bd_reads = atomic_load(&a->bd_reads);
	ret->bd_writes = atomic_load(&a->bd_writes);
	ret->read_errors = atomic_load(&a->read_errors);
	ret->write_errors = atomic_load(&a->write_errors);
	pthread_rwlock_unlock(&sf->lock);
	return 0;
}
