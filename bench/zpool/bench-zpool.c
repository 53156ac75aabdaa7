/* SPDX-License-Identifier: MIT */
/*
 * bench-zpool: memext's compressed store (daemon/store.c over daemon/zpool.c) against the
 * kernel's zram, on one generated page mix, in one run. Needs root for zram. Not a test.
 *
 * The mix: pages like a program's heap (records of pointers, small integers, zero padding and
 * strings, with a per-page share of random bytes) that lz4 compresses about 3x, spread over the
 * size classes; same-filled pages (zero and a few other words); random pages. Every run makes
 * the same pages (--seed).
 *
 *   memory  the pages go into a store (lz4, and zstd-1 for the pool alone) and, with the same
 *           algorithm, into /dev/zram0 (reset, comp_algorithm, disksize, O_DIRECT writes); then
 *           both read their mm_stat figures. Then 75% of the pages, chosen at random, are
 *           dropped (store_drop / BLKDISCARD), both compact, and both report again.
 *   cost    CPU time per page (CLOCK_THREAD_CPUTIME_ID: time the thread is not running does
 *           not count) of store_save and store_load against the library calls alone on the
 *           same pages in the same order: LZ4_compress_default / LZ4_decompress_safe and
 *           ZSTD_compressCCtx / ZSTD_decompressDCtx, on the heap-like pages below the huge cut.
 *           Loads go in a random order, from a pool larger than the caches, as faults do; so do
 *           the library's decompressions, from one array. Store and library take turns every
 *           1024 pages; per stretch the best of --reps runs counts.
 *
 * Every page read back, from the store and from zram, is compared with what was written. zram0
 * is left reset (empty, no disksize) at exit, on SIGINT and SIGTERM too; if it is in use (swap,
 * mounted, held open) the run leaves it alone and reports the store only.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <lz4.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "daemon/store.h"
#include "macro.h"

#define ZRAM_SYS "/sys/block/zram0"
#define ZRAM_DEV "/dev/zram0"

struct options {
	size_t nr_pages;
	uint64_t seed;
	unsigned reps;
	bool zram;
};

/* zram's mm_stat, in its order. */
struct mm_stat {
	uint64_t orig_data_size, compr_data_size, mem_used_total, mem_limit, mem_used_max;
	uint64_t same_pages, pages_compacted, huge_pages;
};

struct mem_result {
	bool valid;
	struct mm_stat full, thin; /* all pages stored; after 75% dropped and compaction */
	uint64_t metadata_full, metadata_thin; /* of mem_used_total (memext only) */
	uint64_t bad;			       /* pages read back wrong */
};

static volatile sig_atomic_t zram_touched;

/* ---- the page mix ---- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

enum page_kind { PAGE_HEAP, PAGE_SAME, PAGE_RANDOM };

/* Heap-like pages: up to this share of random fields, and at least this much of the page used.
 * Calibrated so that LZ4_compress_default() averages 3.0x on them, from 8x down to 1.4x. */
#define HEAP_NOISE_MAX_PCT 40
#define HEAP_USED_MIN_PCT 35

/*
 * A heap-like page: 64 records of 8 fields, like an array of one struct. The layout is per page
 * (each field zero, a constant such as a type tag, a pointer into an arena, a counter, a piece
 * of a string, or a small integer); a share of the fields (noise_pct) is random bytes instead.
 * Past used_pct of the page, zeroes: the unused rest of an allocation.
 */
static void make_heap_page(uint64_t *s, unsigned noise_pct, unsigned used_pct, unsigned char *p)
{
	static const char strs[][8] = {"GET /ind", "user_id=",	"session\0", "text/htm",
				       "applicat", "memextd\0", "lorem ip",  "\"name\":\""};
	const uint64_t arena = UINT64_C(0x00007f3a00000000) + (rng_next(s) % 4096 << 20);
	const uint64_t tag = rng_next(s);
	uint64_t counter = rng_next(s) % 100000;
	unsigned kind[8];

	for (unsigned f = 0; f < 8; f++)
		kind[f] = (unsigned)(rng_next(s) % 6);
	for (size_t off = 0; off < PAGE_SIZE; off += 8) {
		uint64_t r = rng_next(s), v;

		if (off >= PAGE_SIZE * used_pct / 100) {
			v = 0; /* the unused rest of an allocation */
		} else if (r % 1000 < noise_pct * 10) {
			v = rng_next(s);
		} else {
			switch (kind[off / 8 % 8]) {
			case 0:
				v = 0;
				break;
			case 1:
				v = tag;
				break;
			case 2: /* the next record, mostly: a list */
				v = arena +
				    (off / 64 + 1 + (r >> 16) % 4 / 3 * (r >> 20) % 64) * 64;
				break;
			case 3:
				v = counter++;
				break;
			case 4:
				memcpy(&v,
				       strs[(off / 8 % 8 + (r >> 16) % 8 / 7) % ARRAY_SIZE(strs)],
				       8);
				break;
			default:
				v = (r >> 16) % 4;
				break;
			}
		}
		memcpy(p + off, &v, 8);
	}
}

static enum page_kind make_page(uint64_t seed, size_t i, unsigned char *p)
{
	uint64_t s = seed * UINT64_C(1000003) + i, r = rng_next(&s);
	uint64_t w;

	switch (r % 100) {
	case 0 ... 9: /* same-filled: mostly zero, as in a real program */
	case 10 ... 11:
		w = r % 100 < 10 ? 0 : UINT64_C(0x0101010101010101) * (r >> 32 & 0xff);
		for (size_t k = 0; k < PAGE_SIZE; k += 8)
			memcpy(p + k, &w, 8);
		return PAGE_SAME;
	case 12 ... 19:
		for (size_t k = 0; k < PAGE_SIZE; k += 8) {
			w = rng_next(&s);
			memcpy(p + k, &w, 8);
		}
		return PAGE_RANDOM;
	default:
		make_heap_page(&s, (unsigned)(r >> 40) % (HEAP_NOISE_MAX_PCT + 1),
			       HEAP_USED_MIN_PCT + (unsigned)(r >> 48) % (101 - HEAP_USED_MIN_PCT),
			       p);
		return PAGE_HEAP;
	}
}

/* ---- helpers ---- */

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

static void shuffle(size_t *v, size_t n, uint64_t seed)
{
	uint64_t s = seed;

	for (size_t i = 0; i < n; i++)
		v[i] = i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = rng_next(&s) % (i + 1), t = v[i];

		v[i] = v[j];
		v[j] = t;
	}
}

static double mib(uint64_t bytes)
{
	return (double)bytes / (1 << 20);
}

/* ---- zram ---- */

static int sys_write(const char *file, const char *value)
{
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), ZRAM_SYS "/%s", file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, value, strlen(value));
	n = n < 0 ? -errno : 0;
	close(fd);
	return (int)n;
}

/* Async-signal-safe: only system calls. */
static void zram_cleanup(void)
{
	int fd;

	if (!zram_touched)
		return;
	fd = open(ZRAM_SYS "/reset", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "1", 1) == 1)
			zram_touched = 0;
		close(fd);
	}
}

static void on_signal(int sig)
{
	zram_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static int zram_read_mm_stat(struct mm_stat *ret)
{
	FILE *f = fopen(ZRAM_SYS "/mm_stat", "re");
	int n;

	if (!f)
		return -errno;
	n = fscanf(f,
		   "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
		   " %" SCNu64 " %" SCNu64,
		   &ret->orig_data_size, &ret->compr_data_size, &ret->mem_used_total,
		   &ret->mem_limit, &ret->mem_used_max, &ret->same_pages, &ret->pages_compacted,
		   &ret->huge_pages);
	fclose(f);
	return n == 8 ? 0 : -EIO;
}

/* Why zram0 must be left alone, or NULL when it is free to use. */
static const char *zram_busy(void)
{
	char line[512];
	FILE *f;

	if (access(ZRAM_SYS "/reset", W_OK) < 0)
		return "no /sys/block/zram0 (or not root)";
	f = fopen("/proc/swaps", "re");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (strstr(line, "zram0")) {
				fclose(f);
				return "zram0 is in use as swap";
			}
		fclose(f);
	}
	f = fopen("/proc/mounts", "re");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (strstr(line, "/dev/zram0 ")) {
				fclose(f);
				return "zram0 is mounted";
			}
		fclose(f);
	}
	f = fopen(ZRAM_SYS "/initstate", "re");
	if (f) {
		int init = 0;

		if (fscanf(f, "%d", &init) == 1 && init) {
			fclose(f);
			return "zram0 is set up (initstate 1): someone may be using it";
		}
		fclose(f);
	}
	return NULL;
}

static bool zram_has_algorithm(const char *algo)
{
	char buf[256] = "";
	FILE *f = fopen(ZRAM_SYS "/comp_algorithm", "re");
	bool found = false;

	if (!f)
		return false;
	if (fgets(buf, sizeof(buf), f))
		for (char *t = strtok(buf, " []\n"); t; t = strtok(NULL, " []\n"))
			found |= strcmp(t, algo) == 0;
	fclose(f);
	return found;
}

static int zram_run(const struct options *o, const unsigned char *pages, const size_t *order,
		    const char *algo, struct mem_result *res)
{
	const size_t batch = 64;
	unsigned char *buf;
	char size[32];
	int fd, r;

	/* Checked again right before the reset: another user may have taken it meanwhile. */
	if (zram_busy() || sys_write("reset", "1") < 0)
		return -EBUSY;
	zram_touched = 1;
	r = sys_write("comp_algorithm", algo);
	if (r < 0)
		return r;
	snprintf(size, sizeof(size), "%zu", o->nr_pages * PAGE_SIZE);
	r = sys_write("disksize", size);
	if (r < 0)
		return r;
	/* O_EXCL: nobody can swapon or mount it under us. */
	fd = open(ZRAM_DEV, O_RDWR | O_DIRECT | O_EXCL | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = mmap(NULL, batch * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		   0);
	if (buf == MAP_FAILED) {
		close(fd);
		return -ENOMEM;
	}
	for (size_t i = 0; i < o->nr_pages; i += batch) {
		size_t n = MIN(batch, o->nr_pages - i) * PAGE_SIZE;

		memcpy(buf, pages + i * PAGE_SIZE, n);
		if (pwrite(fd, buf, n, (off_t)(i * PAGE_SIZE)) != (ssize_t)n) {
			r = -errno;
			goto out;
		}
	}
	r = zram_read_mm_stat(&res->full);
	if (r < 0)
		goto out;

	/* Everything reads back as written. */
	for (size_t i = 0; i < o->nr_pages; i += batch) {
		size_t n = MIN(batch, o->nr_pages - i) * PAGE_SIZE;

		if (pread(fd, buf, n, (off_t)(i * PAGE_SIZE)) != (ssize_t)n) {
			r = -errno;
			goto out;
		}
		for (size_t k = 0; k < n / PAGE_SIZE; k++)
			res->bad += memcmp(buf + k * PAGE_SIZE, pages + (i + k) * PAGE_SIZE,
					   PAGE_SIZE) != 0;
	}

	/* Drop the same 75% as the store does, then compact. */
	for (size_t k = 0; k < o->nr_pages * 3 / 4; k++) {
		uint64_t range[2] = {order[k] * PAGE_SIZE, PAGE_SIZE};

		if (ioctl(fd, BLKDISCARD, range) < 0) {
			r = -errno;
			goto out;
		}
	}
	r = sys_write("compact", "1");
	if (r < 0)
		goto out;
	r = zram_read_mm_stat(&res->thin);
	if (r < 0)
		goto out;
	res->valid = true;
out:
	munmap(buf, batch * PAGE_SIZE);
	close(fd);
	zram_cleanup();
	return r;
}

/* ---- the store ---- */

static void store_figures(struct store *s, struct mm_stat *ret, uint64_t *ret_metadata)
{
	struct store_stats st;

	store_get_stats(s, &st);
	*ret = (struct mm_stat){
		.orig_data_size = st.orig_data_size,
		.compr_data_size = st.compr_data_size,
		.mem_used_total = st.mem_used_total,
		.mem_limit = st.mem_limit,
		.mem_used_max = st.mem_used_max,
		.same_pages = st.same_pages,
		.pages_compacted = st.pages_compacted,
		.huge_pages = st.huge_pages,
	};
	*ret_metadata = st.mem_used_metadata;
}

static int store_mem_run(const struct options *o, const unsigned char *pages, const size_t *order,
			 const char *codec, struct mem_result *res)
{
	struct store_config cfg = {.compressor = codec, .zstd_level = 1, .compaction = false};
	unsigned char out[PAGE_SIZE];
	uint64_t *h = calloc(o->nr_pages, sizeof(*h));
	struct store *s;
	int r;

	if (!h)
		return -ENOMEM;
	r = store_new(&cfg, &s);
	if (r < 0)
		goto out_free;
	for (size_t i = 0; i < o->nr_pages; i++) {
		r = store_save(s, pages + i * PAGE_SIZE, &h[i]);
		if (r < 0)
			goto out_store;
	}
	store_figures(s, &res->full, &res->metadata_full);
	for (size_t i = 0; i < o->nr_pages; i++) {
		r = store_load(s, h[i], out);
		res->bad += r < 0 || memcmp(out, pages + i * PAGE_SIZE, PAGE_SIZE) != 0;
	}
	for (size_t k = 0; k < o->nr_pages * 3 / 4; k++)
		store_drop(s, h[order[k]]);
	store_compact(s);
	store_figures(s, &res->thin, &res->metadata_thin);
	for (size_t k = o->nr_pages * 3 / 4; k < o->nr_pages; k++) {
		r = store_load(s, h[order[k]], out);
		res->bad += r < 0 || memcmp(out, pages + order[k] * PAGE_SIZE, PAGE_SIZE) != 0;
	}
	res->valid = true;
	r = 0;
out_store:
	store_free(s);
out_free:
	free(h);
	return r;
}

/* ---- cost ---- */

#define COST_BLOCK 1024 /* pages timed at a stretch, store and library in turn */

struct cost {
	double save_ns, load_ns;   /* per page, through the store */
	double comp_ns, decomp_ns; /* per page, the library alone */
	uint64_t bad;
};

/* Per block of COST_BLOCK pages, the least CPU time seen over the runs. */
struct cost_blocks {
	size_t nr;
	uint64_t *save, *load, *comp, *decomp;
};

static void keep_min(uint64_t *best, uint64_t t)
{
	if (!*best || t < *best)
		*best = t;
}

/*
 * One run on the pages idx[0..n): per block, the library compresses it and the store saves it;
 * then per block of load_order, the library decompresses it and the store loads it. Store and
 * library take turns a block at a time, so both see the same machine (caches, other load).
 */
static int cost_once(const char *codec, const unsigned char *pages, const size_t *idx, size_t n,
		     const size_t *load_order, struct cost_blocks *b, uint64_t *bad)
{
	const size_t cap = LZ4_COMPRESSBOUND(PAGE_SIZE);
	struct store_config cfg = {.compressor = codec, .zstd_level = 1};
	bool zstd = strcmp(codec, "zstd") == 0;
	unsigned char *comp = malloc(n * cap), out[PAGE_SIZE];
	uint64_t *h = calloc(n, sizeof(*h));
	int *len = calloc(n, sizeof(*len));
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	struct store *s = NULL;
	int r = -ENOMEM;

	if (!comp || !h || !len || !cctx || !dctx)
		goto out;
	r = store_new(&cfg, &s);
	if (r < 0)
		goto out;

	for (size_t blk = 0; blk < b->nr; blk++) {
		size_t lo = blk * COST_BLOCK, hi = MIN(n, lo + COST_BLOCK);
		uint64_t t = cpu_ns();

		for (size_t k = lo; k < hi; k++) {
			const void *src = pages + idx[k] * PAGE_SIZE;

			if (zstd)
				len[k] = (int)ZSTD_compressCCtx(cctx, comp + k * cap, cap, src,
								PAGE_SIZE, 1);
			else
				len[k] = LZ4_compress_default(src, (char *)comp + k * cap,
							      PAGE_SIZE, (int)cap);
		}
		keep_min(&b->comp[blk], cpu_ns() - t);
		t = cpu_ns();
		for (size_t k = lo; k < hi; k++) {
			r = store_save(s, pages + idx[k] * PAGE_SIZE, &h[k]);
			if (r < 0)
				goto out;
		}
		keep_min(&b->save[blk], cpu_ns() - t);
	}

	for (size_t blk = 0; blk < b->nr; blk++) {
		size_t lo = blk * COST_BLOCK, hi = MIN(n, lo + COST_BLOCK);
		uint64_t t = cpu_ns();

		for (size_t k = lo; k < hi; k++) {
			size_t j = load_order[k];

			if (zstd)
				*bad += ZSTD_decompressDCtx(dctx, out, PAGE_SIZE, comp + j * cap,
							    (size_t)len[j]) != PAGE_SIZE;
			else
				*bad += LZ4_decompress_safe((const char *)comp + j * cap,
							    (char *)out, len[j],
							    PAGE_SIZE) != PAGE_SIZE;
		}
		keep_min(&b->decomp[blk], cpu_ns() - t);
		t = cpu_ns();
		for (size_t k = lo; k < hi; k++)
			*bad += store_load(s, h[load_order[k]], out) != 0;
		keep_min(&b->load[blk], cpu_ns() - t);
	}
	for (size_t k = 0; k < n; k++)
		*bad += store_load(s, h[k], out) != 0 ||
			memcmp(out, pages + idx[k] * PAGE_SIZE, PAGE_SIZE) != 0;
	r = 0;
out:
	store_free(s);
	ZSTD_freeCCtx(cctx);
	ZSTD_freeDCtx(dctx);
	free(len);
	free(h);
	free(comp);
	return r;
}

static int cost_run(const struct options *o, const char *codec, const unsigned char *pages,
		    const size_t *idx, size_t n, const size_t *load_order, struct cost *ret)
{
	struct cost_blocks b = {.nr = (n + COST_BLOCK - 1) / COST_BLOCK};
	uint64_t sum[4] = {};
	int r = -ENOMEM;

	b.save = calloc(b.nr, sizeof(uint64_t));
	b.load = calloc(b.nr, sizeof(uint64_t));
	b.comp = calloc(b.nr, sizeof(uint64_t));
	b.decomp = calloc(b.nr, sizeof(uint64_t));
	*ret = (struct cost){};
	if (!b.save || !b.load || !b.comp || !b.decomp)
		goto out;
	for (unsigned rep = 0; rep < o->reps; rep++) {
		r = cost_once(codec, pages, idx, n, load_order, &b, &ret->bad);
		if (r < 0)
			goto out;
	}
	for (size_t blk = 0; blk < b.nr; blk++) {
		sum[0] += b.save[blk];
		sum[1] += b.load[blk];
		sum[2] += b.comp[blk];
		sum[3] += b.decomp[blk];
	}
	ret->save_ns = (double)sum[0] / (double)n;
	ret->load_ns = (double)sum[1] / (double)n;
	ret->comp_ns = (double)sum[2] / (double)n;
	ret->decomp_ns = (double)sum[3] / (double)n;
out:
	free(b.save);
	free(b.load);
	free(b.comp);
	free(b.decomp);
	return r;
}

/* ---- report ---- */

static void row(const char *name, int prec, double a, double b, bool has_b)
{
	char sa[32], sb[32] = "n/a", sc[32] = "";

	snprintf(sa, sizeof(sa), "%.*f", prec, a);
	if (has_b) {
		snprintf(sb, sizeof(sb), "%.*f", prec, b);
		if (b != 0)
			snprintf(sc, sizeof(sc), "%.3f", a / b);
	}
	printf("| %-44s | %14s | %14s | %8s |\n", name, sa, sb, sc);
}

static void report_memory(const char *algo, const struct mem_result *m, const struct mem_result *z)
{
	const struct mm_stat *mf = &m->full, *zf = &z->full, *mt = &m->thin, *zt = &z->thin;
	double m_stored = (double)(mf->orig_data_size / PAGE_SIZE);
	double z_stored = (double)(zf->orig_data_size / PAGE_SIZE);
	bool v = z->valid;

#define R(name, prec, a, b) row(name, prec, (double)(a), (double)(b), v)
	printf("\n%s: memext store vs kernel zram (ratio = memext / zram)\n\n", algo);
	printf("| %-44s | %14s | %14s | %8s |\n", "figure", "memext", "zram", "ratio");
	printf("|%.46s|%.16s|%.16s|%.10s|\n", "----------------------------------------------",
	       "----------------", "----------------", "----------");
	R("pages stored", 0, m_stored, z_stored);
	R("orig_data_size (MiB)", 1, mib(mf->orig_data_size), mib(zf->orig_data_size));
	R("compr_data_size (MiB)", 1, mib(mf->compr_data_size), mib(zf->compr_data_size));
	R("compression ratio (orig / compr)", 3,
	  (double)mf->orig_data_size / (double)mf->compr_data_size,
	  v ? (double)zf->orig_data_size / (double)zf->compr_data_size : 0);
	R("same_pages", 0, (double)mf->same_pages, (double)zf->same_pages);
	R("huge_pages", 0, (double)mf->huge_pages, (double)zf->huge_pages);
	R("mem_used_total (MiB)", 1, mib(mf->mem_used_total), mib(zf->mem_used_total));
	R("  of which metadata (MiB; zram: not counted)", 2, mib(m->metadata_full), 0.0);
	R("mem_used_total per stored page (bytes)", 1, (double)mf->mem_used_total / m_stored,
	  v ? (double)zf->mem_used_total / z_stored : 0);
	R("  same, without metadata (bytes)", 1,
	  (double)(mf->mem_used_total - m->metadata_full) / m_stored,
	  v ? (double)zf->mem_used_total / z_stored : 0);
	R("orig / mem_used_total", 3, (double)mf->orig_data_size / (double)mf->mem_used_total,
	  v ? (double)zf->orig_data_size / (double)zf->mem_used_total : 0);
	R("75% dropped + compact: pages stored", 0, (double)(mt->orig_data_size / PAGE_SIZE),
	  (double)(zt->orig_data_size / PAGE_SIZE));
	R("  live compressed bytes (MiB)", 2, mib(mt->compr_data_size), mib(zt->compr_data_size));
	R("  mem_used_total (MiB)", 2, mib(mt->mem_used_total), mib(zt->mem_used_total));
	R("  mem_used_total / live compressed", 3,
	  (double)mt->mem_used_total / (double)mt->compr_data_size,
	  v ? (double)zt->mem_used_total / (double)zt->compr_data_size : 0);
	R("  same, without metadata", 3,
	  (double)(mt->mem_used_total - m->metadata_thin) / (double)mt->compr_data_size,
	  v ? (double)zt->mem_used_total / (double)zt->compr_data_size : 0);
	R("  pages_compacted", 0, (double)mt->pages_compacted, (double)zt->pages_compacted);
	R("mem_used_max (MiB)", 1, mib(mt->mem_used_max), mib(zt->mem_used_max));
	R("pages read back wrong", 0, (double)m->bad, (double)z->bad);
#undef R
}

static void report_cost(const char *algo, const struct cost *c, size_t n)
{
	printf("\n%s: CPU time per page, %zu pages (not same-filled, not huge), best of runs\n\n",
	       algo, n);
	printf("| %-36s | %10s | %10s | %9s |\n", "operation", "store µs", "library µs",
	       "overhead");
	printf("|--------------------------------------|------------|------------|-----------|\n");
	printf("| %-36s | %10.3f | %10.3f | %+8.1f%% |\n", "save = compress (+ same check, alloc)",
	       c->save_ns / 1000, c->comp_ns / 1000, (c->save_ns / c->comp_ns - 1) * 100);
	printf("| %-36s | %10.3f | %10.3f | %+8.1f%% |\n", "load = decompress (random order)",
	       c->load_ns / 1000, c->decomp_ns / 1000, (c->load_ns / c->decomp_ns - 1) * 100);
	printf("| %-36s | %10.0f | %10.0f | %9s |\n", "  ns pool overhead on load",
	       c->load_ns - c->decomp_ns, 0.0, "");
	if (c->bad)
		printf("PAGES READ BACK WRONG: %" PRIu64 "\n", c->bad);
}

static void usage(void)
{
	printf("usage: bench-zpool [--pages N] [--seed S] [--reps R] [--no-zram]\n"
	       "  --pages N   pages in the mix (default 131072 = 512 MiB)\n"
	       "  --seed S    page mix seed (default 1)\n"
	       "  --reps R    runs of the cost measurement, best kept (default 3)\n"
	       "  --no-zram   leave /dev/zram0 alone\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"pages", required_argument, NULL, 'n'}, {"seed", required_argument, NULL, 's'},
		{"reps", required_argument, NULL, 'r'},	 {"no-zram", no_argument, NULL, 'Z'},
		{"help", no_argument, NULL, 'h'},	 {}};
	struct options o = {.nr_pages = 131072, .seed = 1, .reps = 3, .zram = true};
	struct sigaction sa = {.sa_handler = on_signal};
	struct mem_result m_lz4 = {}, z_lz4 = {}, m_zstd = {}, z_zstd = {};
	size_t *order, *idx, *load_order, n_idx = 0, kinds[3] = {};
	unsigned char *pages, tmp[LZ4_COMPRESSBOUND(PAGE_SIZE)];
	const char *busy = NULL;
	struct cost c_lz4, c_zstd;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			o.nr_pages = strtoull(optarg, NULL, 0);
			break;
		case 's':
			o.seed = strtoull(optarg, NULL, 0);
			break;
		case 'r':
			o.reps = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'Z':
			o.zram = false;
			break;
		default:
			usage();
			return c == 'h' ? 0 : 2;
		}
	}
	if (o.nr_pages < 1024 || o.reps < 1) {
		usage();
		return 2;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	atexit(zram_cleanup);

	pages = mmap(NULL, o.nr_pages * PAGE_SIZE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	order = calloc(o.nr_pages, sizeof(*order));
	idx = calloc(o.nr_pages, sizeof(*idx));
	load_order = calloc(o.nr_pages, sizeof(*load_order));
	if (pages == MAP_FAILED || !order || !idx || !load_order) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < o.nr_pages; i++) {
		enum page_kind k = make_page(o.seed, i, pages + i * PAGE_SIZE);
		int n;

		kinds[k]++;
		if (k != PAGE_HEAP)
			continue;
		/* The cost pages: those every codec compresses, below the huge cut. */
		n = LZ4_compress_default((const char *)pages + i * PAGE_SIZE, (char *)tmp,
					 PAGE_SIZE, sizeof(tmp));
		if (n > 0 && n < (int)PAGE_SIZE * 3 / 4)
			idx[n_idx++] = i;
	}
	shuffle(order, o.nr_pages, o.seed + 1);
	shuffle(load_order, n_idx, o.seed + 2);
	printf("page mix: %zu pages (%.0f MiB): %zu heap-like, %zu same-filled, %zu random; seed "
	       "%" PRIu64 "\n",
	       o.nr_pages, mib(o.nr_pages * PAGE_SIZE), kinds[PAGE_HEAP], kinds[PAGE_SAME],
	       kinds[PAGE_RANDOM], o.seed);

	if (o.zram) {
		busy = zram_busy();
		if (busy)
			printf("zram: left alone: %s\n", busy);
	} else {
		busy = "--no-zram";
	}

	r = store_mem_run(&o, pages, order, "lz4", &m_lz4);
	if (r < 0)
		goto fail;
	r = store_mem_run(&o, pages, order, "zstd", &m_zstd);
	if (r < 0)
		goto fail;
	if (!busy) {
		r = zram_run(&o, pages, order, "lz4", &z_lz4);
		if (r < 0) {
			printf("zram (lz4): %s\n", strerror(-r));
			z_lz4.valid = false;
		}
		if (zram_has_algorithm("zstd")) {
			r = zram_run(&o, pages, order, "zstd", &z_zstd);
			if (r < 0)
				z_zstd.valid = false;
		} else {
			printf("zram: no zstd in this kernel (CONFIG_ZRAM_BACKEND_ZSTD): zstd "
			       "column n/a\n");
		}
	}
	report_memory("lz4", &m_lz4, &z_lz4);
	report_memory("zstd-1", &m_zstd, &z_zstd);

	r = cost_run(&o, "lz4", pages, idx, n_idx, load_order, &c_lz4);
	if (r < 0)
		goto fail;
	r = cost_run(&o, "zstd", pages, idx, n_idx, load_order, &c_zstd);
	if (r < 0)
		goto fail;
	report_cost("lz4", &c_lz4, n_idx);
	report_cost("zstd-1", &c_zstd, n_idx);
	return m_lz4.bad || m_zstd.bad || z_lz4.bad || z_zstd.bad || c_lz4.bad || c_zstd.bad;

fail:
	fprintf(stderr, "bench-zpool: %s\n", strerror(-r));
	return 1;
}
