/* SPDX-License-Identifier: MIT */
/*
 * wl-mm MODE SIZE      MODE: unmap | dontneed | free | mremap | reuse
 *
 * Address-space changes on pages memext has evicted. The region of SIZE bytes is filled in
 * order, so its first quarter (the target) is the coldest; the workload waits until the target
 * is no longer resident (mincore; required when MEMEXT_WL_EXPECT_EVICTION=1), applies the
 * operation, checks the result at once, then walks the whole region (which evicts the target
 * again), waits for that eviction and checks everything a second time, so a stale copy kept by
 * the daemon would come back and be caught:
 *
 *   unmap     munmap + mmap(MAP_FIXED_NOREPLACE) at the same address, and MAP_FIXED straight
 *             over evicted pages: both read zero, new writes stick; a 64-page hole punched in
 *             the middle of the rest of the region reads zero and its neighbours are intact.
 *   dontneed  MADV_DONTNEED on evicted pages, and on a range half just read and half cold:
 *             reads zero, neighbours intact, new writes stick.
 *   free      MADV_FREE on evicted and on resident pages: each page reads either all zero or
 *             its old content (nothing else), until written; written pages keep what was
 *             written, through another eviction.
 *   mremap    move evicted pages to a new address (MREMAP_FIXED): intact there, the old
 *             address unmapped (then mapped again: zero); grow an evicted range (it moves): old
 *             part intact, new part zero; shrink one: the cut tail unmapped, mapped again zero.
 *   reuse     while the daemon evicts, runs of 16 pages picked at random are unmapped, mapped
 *             again at the same address and written at once, REUSE_ROUNDS times, every other
 *             time by a second thread that maps the run as soon as the address is free (before
 *             the daemon has read the UNMAP event, which munmap waits for): an eviction
 *             that picked a page of the old mapping must not take the new one's in its place
 *             (shared/movegate.h; MEMEXT_TEST_MOVE_DELAY_US widens the window). Every page is
 *             checked at the end.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "wl-common.h"

enum kind { K_DATA, K_ZERO, K_MAYBE /* zero or the data (MADV_FREE) */ };

struct expect {
	char *addr;
	uint32_t page; /* page index whose content (gen, salt 0) is expected */
	uint32_t gen;
	enum kind kind;
};

static char *region;
static size_t nr_pages, nr_target;
static struct expect *exp_tab;
static size_t nr_exp;
static bool require_eviction;

static char *page_addr(size_t p)
{
	return region + p * WL_PAGE_SIZE;
}

/*
 * Address -> index in exp_tab: open addressing keyed by page number (0 = empty, 1 =
 * deleted: page 1 of the address space is never mapped).
 */
static uintptr_t *hkeys;
static size_t *hvals, hmask;

static size_t hslot(uintptr_t key)
{
	return (size_t)wl_mix(key) & hmask;
}

static void hput(const char *addr, size_t idx)
{
	uintptr_t key = (uintptr_t)addr / WL_PAGE_SIZE;
	size_t i = hslot(key);

	while (hkeys[i] > 1 && hkeys[i] != key)
		i = (i + 1) & hmask;
	hkeys[i] = key;
	hvals[i] = idx;
}

static size_t *hfind(const char *addr)
{
	uintptr_t key = (uintptr_t)addr / WL_PAGE_SIZE;

	for (size_t i = hslot(key); hkeys[i]; i = (i + 1) & hmask)
		if (hkeys[i] == key)
			return &hvals[i];
	return NULL;
}

static void hdel(const char *addr)
{
	size_t *v = hfind(addr);

	if (v)
		hkeys[v - hvals] = 1;
}

static size_t find_exp(const char *addr)
{
	size_t *v = hfind(addr);

	if (!v)
		wl_die("internal: no expectation for %p", (const void *)addr);
	return *v;
}

static void set_exp(char *addr, uint32_t page, uint32_t gen, enum kind kind)
{
	size_t *v = hfind(addr);

	if (v) {
		exp_tab[*v] = (struct expect){ addr, page, gen, kind };
		return;
	}
	hput(addr, nr_exp);
	exp_tab[nr_exp++] = (struct expect){ addr, page, gen, kind };
}

/* The page expected at `from` now lives at `to` (mremap). */
static void move_exp(char *from, char *to)
{
	size_t i = find_exp(from);

	hdel(from);
	exp_tab[i].addr = to;
	hput(to, i);
}

static void check_one(const char *what, const struct expect *e, size_t *zero, size_t *kept)
{
	switch (e->kind) {
	case K_DATA:
		wl_page_check(what, e->addr, e->page, e->gen, 0, 0);
		break;
	case K_ZERO:
		wl_zero_check(what, e->addr, e->page);
		break;
	case K_MAYBE:
		if (wl_page_is_zero(e->addr)) {
			(*zero)++;
		} else if (wl_page_diff(e->addr, e->page, e->gen, 0, 0) < 0) {
			(*kept)++;
		} else {
			char desc[160];
			wl_page_describe(e->addr, desc, sizeof(desc));
			wl_mismatch("%s: MADV_FREE'd page %u at %p is neither all zero nor its old "
				    "content (gen %u): %s",
				    what, e->page, (void *)e->addr, e->gen, desc);
		}
		break;
	}
}

static void check_range(const char *what, char *start, size_t len)
{
	size_t zero = 0, kept = 0;

	for (char *a = start; a < start + len; a += WL_PAGE_SIZE)
		check_one(what, &exp_tab[find_exp(a)], &zero, &kept);
}

static void check_all(const char *what)
{
	size_t zero = 0, kept = 0, nr_data = 0, nr_zero = 0;

	for (size_t i = 0; i < nr_exp; i++) {
		check_one(what, &exp_tab[i], &zero, &kept);
		nr_data += exp_tab[i].kind == K_DATA;
		nr_zero += exp_tab[i].kind == K_ZERO;
	}
	wl_log("%s: %zu pages checked (%zu data, %zu zero, %zu freed: %zu read zero, %zu kept)",
	       what, nr_exp, nr_data, nr_zero, zero + kept, zero, kept);
}

static void write_gen(char *start, size_t len, size_t step, uint32_t gen)
{
	for (char *a = start; a < start + len; a += step * WL_PAGE_SIZE) {
		struct expect *e = &exp_tab[find_exp(a)];
		e->gen = gen;
		e->kind = K_DATA;
		wl_page_fill(a, e->page, gen, 0);
	}
}

/*
 * Waits until the daemon has evicted most of [start, start + len). Which pages go first is the
 * daemon's policy, so rather than wait for it to pick these, the workload reads the rest of its
 * memory (still mapped pages only) while it waits: the target, untouched, becomes the coldest
 * memory of a process over its budget.
 */
static void wait_evicted(const char *what, char *start, size_t len)
{
	size_t want = len / WL_PAGE_SIZE * 900 / 1000;
	double deadline = wl_now() + 60;
	volatile char sink = 0;

	while (require_eviction && wl_nonresident_pages(start, len) < want && wl_now() < deadline) {
		for (size_t i = 0; i < nr_pages; i++) {
			char *a = page_addr(i);
			unsigned char vec[1];

			if ((a >= start && a < start + len) || mincore(a, WL_PAGE_SIZE, vec) < 0)
				continue;
			sink += *a;
		}
	}
	(void)sink;
	wl_wait_evicted(what, start, len, 900, require_eviction, 5);
}

static void *map_at(char *addr, size_t len, int extra_flags)
{
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);

	if (p == MAP_FAILED)
		wl_die("mmap at %p: %m", (void *)addr);
	if (p != addr)
		wl_die("mmap at %p landed at %p", (void *)addr, p);
	return p;
}

static void expect_unmapped(const char *what, char *addr, size_t len)
{
	unsigned char vec[1];

	for (char *a = addr; a < addr + len; a += WL_PAGE_SIZE)
		if (mincore(a, WL_PAGE_SIZE, vec) == 0 || errno != ENOMEM)
			wl_mismatch("%s: %p should be unmapped, but mincore says it is mapped", what,
				    (void *)a);
}

static void set_zero(char *start, size_t len, uint32_t page_base)
{
	for (size_t i = 0; i < len / WL_PAGE_SIZE; i++)
		set_exp(start + i * WL_PAGE_SIZE, page_base + (uint32_t)i, 0, K_ZERO);
}

static void mode_unmap(void)
{
	size_t half = nr_target / 2 * WL_PAGE_SIZE;
	char *t1 = region, *t2 = region + half;
	char *hole = page_addr(nr_target + nr_target / 2);
	size_t hole_len = 64 * WL_PAGE_SIZE;

	wait_evicted("target", region, nr_target * WL_PAGE_SIZE);
	wl_phase("op");
	if (munmap(t1, half) < 0)
		wl_die("munmap: %m");
	map_at(t1, half, MAP_FIXED_NOREPLACE);
	set_zero(t1, half, 0);
	check_range("munmap+mmap same address", t1, half);
	write_gen(t1, half, 1, 1);

	map_at(t2, half, MAP_FIXED);
	set_zero(t2, half, (uint32_t)(half / WL_PAGE_SIZE));
	check_range("MAP_FIXED over evicted pages", t2, half);
	write_gen(t2, half, 2, 1);

	/* Splits the region's mapping in three; the hole was filled long ago (cold). */
	if (munmap(hole, hole_len) < 0)
		wl_die("munmap hole: %m");
	expect_unmapped("hole", hole, hole_len);
	map_at(hole, hole_len, MAP_FIXED_NOREPLACE);
	set_zero(hole, hole_len, (uint32_t)((size_t)(hole - region) / WL_PAGE_SIZE));
	check_range("hole mapped again", hole, hole_len);
	check_range("hole neighbours", hole - 4 * WL_PAGE_SIZE, 4 * WL_PAGE_SIZE);
	check_range("hole neighbours", hole + hole_len, 4 * WL_PAGE_SIZE);

	wl_phase("check");
	check_all("after unmap");
	wait_evicted("remapped target", region, nr_target * WL_PAGE_SIZE);
	check_all("after re-eviction");
}

#define REUSE_ROUNDS 20000
#define REUSE_RUN_PAGES 16

/*
 * The other thread of reuse: maps the run main is unmapping as soon as the address is free,
 * which is before main's munmap returns (the kernel has the UNMAP event read first), and
 * writes it. So a new mapping is there before the daemon has even read the event.
 */
static struct {
	char *_Atomic addr; /* the run to map and write; NULL: nothing to do */
	_Atomic uint32_t gen;
	_Atomic bool done, stop;
} remapper;

static void *remapper_main(void *arg)
{
	size_t len = REUSE_RUN_PAGES * WL_PAGE_SIZE;

	(void)arg;
	while (!atomic_load(&remapper.stop)) {
		char *a = atomic_load(&remapper.addr);

		if (!a || atomic_load(&remapper.done)) {
			sched_yield();
			continue;
		}
		while (mmap(a, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED) {
			if (errno != EEXIST)
				wl_die("mmap at %p: %m", (void *)a);
		}
		for (size_t i = 0; i < REUSE_RUN_PAGES; i++)
			wl_page_fill(a + i * WL_PAGE_SIZE,
				     (uint32_t)((size_t)(a - region) / WL_PAGE_SIZE + i),
				     atomic_load(&remapper.gen), 0);
		atomic_store(&remapper.done, true);
	}
	return NULL;
}

/* Round `round` by the other thread: main unmaps, the remapper maps and writes. */
static void reuse_by_remapper(char *a, uint32_t round)
{
	size_t len = REUSE_RUN_PAGES * WL_PAGE_SIZE;

	atomic_store(&remapper.gen, round);
	atomic_store(&remapper.done, false);
	atomic_store(&remapper.addr, a);
	if (munmap(a, len) < 0)
		wl_die("munmap: %m");
	while (!atomic_load(&remapper.done))
		sched_yield();
	atomic_store(&remapper.addr, NULL);
	for (char *p = a; p < a + len; p += WL_PAGE_SIZE) {
		struct expect *e = &exp_tab[find_exp(p)];

		e->gen = round;
		e->kind = K_DATA;
	}
}

static void mode_reuse(void)
{
	size_t len = REUSE_RUN_PAGES * WL_PAGE_SIZE, nr_runs = nr_pages / REUSE_RUN_PAGES;
	uint64_t rng = 0x72657573;
	pthread_t t;

	if (pthread_create(&t, NULL, remapper_main, NULL) != 0)
		wl_die("pthread_create failed");
	wl_phase("op");
	for (uint32_t round = 1; round <= REUSE_ROUNDS; round++) {
		char *a = page_addr(wl_rand_below(&rng, nr_runs) * REUSE_RUN_PAGES);

		if (round % 2) {
			reuse_by_remapper(a, round);
			continue;
		}
		if (munmap(a, len) < 0)
			wl_die("munmap: %m");
		map_at(a, len, MAP_FIXED_NOREPLACE);
		write_gen(a, len, 1, round);
	}
	atomic_store(&remapper.stop, true);
	pthread_join(t, NULL);
	wl_phase("check");
	check_all("after reuse");
}

static void mode_dontneed(void)
{
	size_t tlen = nr_target * WL_PAGE_SIZE;
	char *mid = page_addr(nr_pages / 2);
	size_t mlen = 64 * WL_PAGE_SIZE;

	wait_evicted("target", region, tlen);
	wl_phase("op");
	if (madvise(region, tlen, MADV_DONTNEED) < 0)
		wl_die("madvise DONTNEED: %m");
	set_zero(region, tlen, 0);
	check_range("MADV_DONTNEED on evicted pages", region, tlen);
	write_gen(region, tlen, 2, 1);

	/* Half just read (resident), half cold since the fill. */
	check_range("before mixed DONTNEED", mid - mlen, mlen);
	if (madvise(mid - mlen, 2 * mlen, MADV_DONTNEED) < 0)
		wl_die("madvise DONTNEED: %m");
	set_zero(mid - mlen, 2 * mlen, (uint32_t)(nr_pages / 2 - 64));
	check_range("MADV_DONTNEED on resident+evicted pages", mid - mlen, 2 * mlen);
	check_range("DONTNEED neighbours", mid - mlen - 4 * WL_PAGE_SIZE, 4 * WL_PAGE_SIZE);
	check_range("DONTNEED neighbours", mid + mlen, 4 * WL_PAGE_SIZE);
	write_gen(mid - mlen, 2 * mlen, 3, 2);

	wl_phase("check");
	check_all("after dontneed");
	wait_evicted("target", region, tlen);
	check_all("after re-eviction");
}

static void mode_free(void)
{
	size_t tlen = nr_target * WL_PAGE_SIZE;
	char *tail = page_addr(nr_pages - 64);
	size_t tail_len = 64 * WL_PAGE_SIZE;

	wait_evicted("target", region, tlen);
	wl_phase("op");
	if (madvise(region, tlen, MADV_FREE) < 0)
		wl_die("madvise FREE: %m");
	for (size_t p = 0; p < nr_target; p++)
		exp_tab[find_exp(page_addr(p))].kind = K_MAYBE;
	check_all("MADV_FREE on evicted pages");
	write_gen(region, tlen, 2, 1);

	check_range("before MADV_FREE on resident pages", tail, tail_len);
	if (madvise(tail, tail_len, MADV_FREE) < 0)
		wl_die("madvise FREE: %m");
	for (size_t p = nr_pages - 64; p < nr_pages; p++)
		exp_tab[find_exp(page_addr(p))].kind = K_MAYBE;
	check_range("MADV_FREE on resident pages", tail, tail_len);
	write_gen(tail + WL_PAGE_SIZE, tail_len - WL_PAGE_SIZE, 2, 1);

	wl_phase("check");
	check_all("after free");
	wait_evicted("target", region, tlen);
	check_all("after re-eviction");
}

static void mode_mremap(void)
{
	size_t half = nr_target / 2 * WL_PAGE_SIZE;
	char *t1 = region, *t2 = region + half;
	char *shrink = page_addr(nr_target + nr_target / 2);
	size_t shrink_len = 256 * WL_PAGE_SIZE;
	char *dst, *grown;

	wait_evicted("target", region, nr_target * WL_PAGE_SIZE);
	wl_phase("op");

	/* Move t1 to a reserved address. */
	dst = mmap(NULL, half, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (dst == MAP_FAILED)
		wl_die("mmap: %m");
	if (mremap(t1, half, half, MREMAP_MAYMOVE | MREMAP_FIXED, dst) != dst)
		wl_die("mremap move: %m");
	for (size_t i = 0; i < half / WL_PAGE_SIZE; i++)
		move_exp(t1 + i * WL_PAGE_SIZE, dst + i * WL_PAGE_SIZE);
	expect_unmapped("old address after mremap move", t1, half);
	check_range("moved pages at the new address", dst, half);
	map_at(t1, half, MAP_FIXED_NOREPLACE);
	set_zero(t1, half, 0);
	check_range("old address mapped again", t1, half);

	/* Grow t2 to twice its size: the rest of the region follows it, so it has to move. */
	grown = mremap(t2, half, 2 * half, MREMAP_MAYMOVE);
	if (grown == MAP_FAILED)
		wl_die("mremap grow: %m");
	if (grown == t2)
		wl_die("mremap grow did not move (expected a move)");
	for (size_t i = 0; i < half / WL_PAGE_SIZE; i++)
		move_exp(t2 + i * WL_PAGE_SIZE, grown + i * WL_PAGE_SIZE);
	set_zero(grown + half, half, 0x800000);
	expect_unmapped("old address after mremap grow", t2, half);
	check_range("grown mapping", grown, 2 * half);
	write_gen(grown + half, half, 2, 1); /* page 0x800000+i, gen 1 */

	/* Shrink a cold range inside the region: its tail is unmapped. */
	if (mremap(shrink, shrink_len, shrink_len / 2, 0) != shrink)
		wl_die("mremap shrink: %m");
	expect_unmapped("tail cut by mremap shrink", shrink + shrink_len / 2, shrink_len / 2);
	map_at(shrink + shrink_len / 2, shrink_len / 2, MAP_FIXED_NOREPLACE);
	set_zero(shrink + shrink_len / 2, shrink_len / 2,
		 (uint32_t)((size_t)(shrink - region) / WL_PAGE_SIZE + 128));
	check_range("shrunk mapping", shrink, shrink_len);

	wl_phase("check");
	check_all("after mremap");
	wait_evicted("moved pages", dst, half);
	wait_evicted("grown mapping", grown, half);
	check_all("after re-eviction");
}

int main(int argc, char **argv)
{
	const char *mode;

	wl_set_prog(argv[0]);
	if (argc != 3)
		wl_die("usage: %s unmap|dontneed|free|mremap|reuse SIZE", argv[0]);
	mode = argv[1];
	nr_pages = wl_parse_size(argv[2]) / WL_PAGE_SIZE;
	if (nr_pages < 4096)
		wl_die("SIZE must be at least 16 MiB");
	nr_target = nr_pages / 4;
	require_eviction = wl_expect_eviction();
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);
	exp_tab = calloc(2 * nr_pages, sizeof(*exp_tab));
	for (hmask = 1; hmask < 8 * nr_pages; hmask <<= 1)
		;
	hkeys = calloc(hmask, sizeof(*hkeys));
	hvals = calloc(hmask, sizeof(*hvals));
	hmask--;
	if (!exp_tab || !hkeys || !hvals)
		wl_die("calloc: %m");
	wl_log("mode %s, %zu pages (%zu MiB), target %zu pages", mode, nr_pages,
	       nr_pages * WL_PAGE_SIZE >> 20, nr_target);

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++) {
		wl_page_fill(page_addr(p), p, 0, 0);
		set_exp(page_addr(p), (uint32_t)p, 0, K_DATA);
	}

	if (!strcmp(mode, "unmap"))
		mode_unmap();
	else if (!strcmp(mode, "dontneed"))
		mode_dontneed();
	else if (!strcmp(mode, "free"))
		mode_free();
	else if (!strcmp(mode, "mremap"))
		mode_mremap();
	else if (!strcmp(mode, "reuse"))
		mode_reuse();
	else
		wl_die("unknown mode %s", mode);
	wl_log("all pages verified");
	return 0;
}
