/* SPDX-License-Identifier: MIT */
/*
 * What a restarted daemon reads of a dead one (pmem.h, adopt.h), without a process:
 *  - pmem: allocations are zeroed, in the window, reused after a free (and zero again);
 *  - a store in pmem (lz4 and zstd, same-filled words in and out of the handle, huge pages):
 *    every page saved is read back byte for byte through a read-only view of the memfd, as
 *    store_view_load() sees it after a crash; dropped handles read -ENOENT, never other data;
 *    the pool compacted between saving and reading changes nothing;
 *  - a page table in pmem walked through the view gives exactly the entries it holds;
 *  - an mremap event interrupted at any point and applied again (the journal replay) leaves
 *    the table as one uninterrupted application would;
 *  - pages a SIGKILLed process left in a swap area (backends swapfile and pool+swapfile) are
 *    adopted in place by a new store that opens the same file at another type: their slots
 *    are reserved (never handed out again, adopting one twice is -EBUSY), no slot goes out
 *    while the store is held, and every page reads back right after new saves filled the area.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/client.h"
#include "daemon/fault.h"
#include "daemon/manager.h"
#include "daemon/mkswap.h"
#include "daemon/pagetable.h"
#include "daemon/pmem.h"
#include "daemon/store.h"
#include "shared/macro.h"

#include "check.h"
#include "swap-test.h"

#define NR_PAGES 6000

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Page i: same-filled (several kinds of word), random (huge), or text-like. */
static void make_page(uint64_t i, unsigned char *p)
{
	uint64_t s = i * 7919 + 1, r = rng_next(&s), w;

	switch (r % 8) {
	case 0: /* a word that fits a handle, one that repeats halves, one that needs the table */
		w = (r >> 8) % 3 == 0 ? 0 : (r >> 8) % 3 == 1 ? UINT64_C(0x1234567812345678) : r | 1;
		for (size_t k = 0; k < PAGE_SIZE; k += 8)
			memcpy(p + k, &w, 8);
		return;
	case 1:
		for (size_t k = 0; k < PAGE_SIZE; k += 8) {
			w = rng_next(&s);
			memcpy(p + k, &w, 8);
		}
		return;
	default:
		for (size_t k = 0; k < PAGE_SIZE; k++)
			p[k] = (unsigned char)("memext page "[k % 12] + (rng_next(&s) % 16 == 0));
		memcpy(p, &i, sizeof(i)); /* every page differs */
	}
}

static void test_pmem_alloc(void)
{
	unsigned char *a = pmem_alloc(3 * PAGE_SIZE), *b;

	check(a && pmem_contains(a));
	for (size_t k = 0; k < 3 * PAGE_SIZE; k++)
		check(a[k] == 0);
	memset(a, 0xab, 3 * PAGE_SIZE);
	pmem_discard(a + PAGE_SIZE, PAGE_SIZE);
	check(a[0] == 0xab && a[PAGE_SIZE] == 0 && a[2 * PAGE_SIZE] == 0xab);
	pmem_free(a, 3 * PAGE_SIZE);
	b = pmem_alloc(3 * PAGE_SIZE);
	check(b == a); /* the range is reused ... */
	for (size_t k = 0; k < 3 * PAGE_SIZE; k++)
		check(b[k] == 0); /* ... and reads zero again */
	pmem_free(b, 3 * PAGE_SIZE);
	check(!pmem_contains(&b));
}

static int open_view_fd(int fd, struct pmem_view **ret)
{
	check(fd >= 0);
	return pmem_view_open(fd, ret);
}

static struct pmem_view *open_view(void)
{
	struct pmem_view *v;

	check(open_view_fd(dup(pmem_fd()), &v) == 0);
	return v;
}

/* store_adopt() into a store with the other compressor: pool objects are copied as they are,
 * so they must keep their own codec; every page reads back right from the new store. */
static void adopt_into_new_store(const struct pmem_view *v, struct store *old, const uint64_t *h,
				 const char *compressor)
{
	struct store_config cfg = {.compressor = compressor, .zstd_level = 3};
	unsigned char *page = aligned_alloc(PAGE_SIZE, PAGE_SIZE), *buf = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	struct store_stats st;
	struct store *s;
	uint64_t nh, n = 0;

	check(page && buf);
	check(store_new(&cfg, &s) == 0);
	for (uint64_t i = 1; i < NR_PAGES; i++) {
		if (i % 3 == 0)
			continue;
		check(store_adopt(s, v, (uint64_t)(uintptr_t)old, h[i], buf, NULL, &nh) == 0);
		check(store_load(s, nh, page) == 0);
		make_page(i, buf);
		check(memcmp(page, buf, PAGE_SIZE) == 0);
		n++;
		store_drop(s, nh);
	}
	store_get_stats(s, &st);
	check(st.stored_pages == 0);
	store_free(s);
	free(page);
	free(buf);
	printf("  %" PRIu64 " pages adopted into a %s store, read back right\n", n, compressor);
}

/* What clients hold cannot be written or truncated, and a successor takes only a sealed file:
 * a client could otherwise pull the memory from under the daemon (SIGBUS) or its neighbours. */
static void test_pmem_sealed(void)
{
	int fd = pmem_fd(), seals = fcntl(fd, F_GET_SEALS), forged;
	struct pmem_view *v;
	char hdr[PAGE_SIZE];
	struct stat st;

	check(fd >= 0);
	check((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
	check(fstat(fd, &st) == 0 && (st.st_mode & 0777) == 0600);
	check(seals >= 0 && (seals & F_SEAL_SHRINK) && (seals & F_SEAL_GROW));
	check(ftruncate(fd, 0) < 0);
	check(write(fd, "x", 1) < 0);

	/* The same header in a file whose size is not sealed: refused. */
	check(pread(fd, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr));
	forged = memfd_create("forged", MFD_CLOEXEC);
	check(forged >= 0 && ftruncate(forged, st.st_size) == 0);
	check(pwrite(forged, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr));
	check(pmem_view_open(forged, &v) == -EINVAL);
	close(forged);

	/* Ours, read through the fd a client holds: accepted. */
	check(pmem_view_open(dup(fd), &v) == 0);
	pmem_view_close(v);
	printf("pmem: clients hold a read-only, sealed, 0600 memfd; an unsealed one is refused\n");
}

static void test_store_view(const char *compressor)
{
	struct store_config cfg = {.compressor = compressor, .zstd_level = 3, .compaction = true};
	unsigned char *page = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	unsigned char *got = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	uint64_t *h = calloc(NR_PAGES, sizeof(*h));
	struct pmem_view *v;
	struct store *s;
	unsigned dropped = 0;

	check(page && got && h);
	check(store_new(&cfg, &s) == 0);
	check(pmem_contains(s));
	pmem_set_root(PMEM_ROOT_STORE, s);
	for (uint64_t i = 0; i < NR_PAGES; i++) {
		make_page(i, page);
		check(store_save(s, page, &h[i]) == 0);
	}
	/* Free a third, scattered, and compact: objects move, handles stay. */
	for (uint64_t i = 0; i < NR_PAGES; i += 3) {
		store_drop(s, h[i]);
		dropped++;
	}
	(void)store_compact(s);

	v = open_view();
	check(pmem_view_root(v, PMEM_ROOT_STORE) == (uint64_t)(uintptr_t)s);
	for (uint64_t i = 0; i < NR_PAGES; i++) {
		int r = store_view_load(v, (uint64_t)(uintptr_t)s, h[i], got);

		if (i % 3 == 0) {
			/* Dropped: a same-filled word in the handle still decodes (nothing
			 * names it any more), anything else must not give bytes. */
			check(r == 0 || r == -ENOENT || r == -EBADMSG);
			continue;
		}
		make_page(i, page);
		check(r == 0);
		check(memcmp(page, got, PAGE_SIZE) == 0);
	}
	check(store_view_load(v, (uint64_t)(uintptr_t)s + PAGE_SIZE * 4096ULL, h[1], got) < 0);
	adopt_into_new_store(v, s, h, strcmp(compressor, "lz4") ? "lz4" : "zstd");
	pmem_view_close(v);
	printf("store over pmem (%s): %u pages read back through a view, %u dropped\n",
	       compressor, NR_PAGES - dropped, dropped);
	for (uint64_t i = 0; i < NR_PAGES; i++)
		if (i % 3)
			store_drop(s, h[i]);
	store_free(s);
	free(h);
	free(page);
	free(got);
}

struct expect {
	uint64_t base, n, bad;
};

static int check_entry(uint64_t vpn, pte_t pte, void *userdata)
{
	struct expect *e = userdata;

	/* The table below holds vpn * 3 + 1 as a STORED payload at every 7th page. */
	e->n++;
	e->bad += (vpn - e->base) % 7 != 0 || pte != pte_make(PTE_STORED, 0, vpn * 3 + 1);
	return 0;
}

static void test_pagetable_view(void)
{
	struct pagetable *pt = pagetable_new();
	uint64_t base = UINT64_C(0x7f0000000000) / PAGE_SIZE, n = 0;
	struct expect e = {.base = base};
	struct pmem_view *v;

	check(pt);
	for (uint64_t vpn = base; vpn < base + 300000; vpn += 7, n++)
		*pagetable_ensure(pt, vpn) = pte_make(PTE_STORED, 0, vpn * 3 + 1);
	v = open_view();
	check(pagetable_view_walk(v, pagetable_root_addr(pt), check_entry, &e) == 0);
	if (e.n != n || e.bad)
		fprintf(stderr, "walked %" PRIu64 " of %" PRIu64 ", %" PRIu64 " wrong\n", e.n, n, e.bad);
	check(e.n == n && e.bad == 0);
	check(pagetable_view_walk(v, 12345, check_entry, &e) == -EBADMSG);
	pmem_view_close(v);
	pagetable_free(pt);
	printf("page table over pmem: %" PRIu64 " entries walked through a view\n", n);
}

/* ---- the replay of an interrupted mremap ---- */

/* main.c's, which this test does not link. */
void manager_kick_reclaim(struct manager *m)
{
	(void)m;
}

uint64_t now_usec(void)
{
	return 0;
}

void crash_point(const struct manager *m, const char *point)
{
	(void)m;
	(void)point;
}

static struct manager mgr;

static struct client *fake_client(void)
{
	struct client *c = calloc(1, sizeof(*c));

	check(c);
	c->m = &mgr;
	c->pt = pagetable_new();
	check(c->pt);
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

#define REMAP_PAGES 64
#define FROM UINT64_C(0x10000000)
#define TO UINT64_C(0x20000000)

static pte_t entry(struct client *c, uint64_t addr)
{
	pte_t *p = pagetable_lookup(c->pt, addr / PAGE_SIZE);

	return p ? *p : 0;
}

/* Where handle_remap died on the page after the `done` it had recorded in the event. */
enum cut {
	CUT_CLEAN,     /* before it */
	CUT_TAKING,    /* the event says it is being taken, nothing else is done */
	CUT_COPIED,    /* ... the destination has the entry, the source still does */
	CUT_UNCOUNTED, /* ... the entry moved, the event does not say so yet */
};

/*
 * Stops handle_remap's per-page steps after `done` pages and at `cut` in the next, then
 * replays the event as the journal holds it. Pages 5, 17 and 40 are NONE: nothing to move;
 * the destination of page 5 holds a stale entry (of a mapping unmapped there before the
 * move), which must go.
 */
static void test_remap_replay(unsigned done, enum cut cut)
{
	struct client *c = fake_client();
	struct uffd_msg msg = {.event = UFFD_EVENT_REMAP};
	uint64_t nr_entries = 0;

	for (uint64_t i = 0; i < REMAP_PAGES; i++)
		if (i != 5 && i != 17 && i != 40) {
			*pagetable_ensure(c->pt, FROM / PAGE_SIZE + i) = pte_make(PTE_PRESENT, 0, 0);
			nr_entries++;
		}
	c->nr_present = nr_entries;
	if (done <= 5) {
		*pagetable_ensure(c->pt, TO / PAGE_SIZE + 5) = pte_make(PTE_PRESENT, 0, 0);
		c->nr_present++;
	}
	/* What the dead daemon did before it died. */
	for (uint64_t i = 0; i < done; i++) {
		pte_t *src = pagetable_lookup(c->pt, FROM / PAGE_SIZE + i);

		if (*src) {
			*pagetable_ensure(c->pt, TO / PAGE_SIZE + i) = *src;
			*src = 0;
		}
	}
	/* A page is marked as being taken only when its source has an entry. */
	bool taking = cut != CUT_CLEAN && done < REMAP_PAGES && entry(c, FROM + done * PAGE_SIZE);

	if (taking && cut != CUT_TAKING)
		*pagetable_ensure(c->pt, TO / PAGE_SIZE + done) = entry(c, FROM + done * PAGE_SIZE);
	if (taking && cut == CUT_UNCOUNTED)
		*pagetable_ensure(c->pt, FROM / PAGE_SIZE + done) = 0;
	msg.arg.remap.from = FROM;
	msg.arg.remap.to = TO;
	msg.arg.remap.len = REMAP_PAGES * PAGE_SIZE;
	msg.reserved3 = done * 2 + taking;
	if (taking && cut == CUT_COPIED)
		c->nr_present++; /* the copy: adoption counts it, the replay drops it */

	fault_replay_event(c, &msg);

	for (uint64_t i = 0; i < REMAP_PAGES; i++) {
		bool none = i == 5 || i == 17 || i == 40;

		check(entry(c, FROM + i * PAGE_SIZE) == 0);
		check(entry(c, TO + i * PAGE_SIZE) == (none ? 0 : pte_make(PTE_PRESENT, 0, 0)));
	}
	check(c->nr_present == nr_entries);
	check(msg.reserved3 == REMAP_PAGES * 2 && msg.arg.remap.from == FROM);
	pagetable_free(c->pt);
	rangeset_done(&c->registered);
	free(c);
}

/* ---- pages in a swap area, after a crash ---- */

#define SWAP_PAGES 1500
#define SWAP_AREA_BYTES (UINT64_C(8) << 20) /* 2047 slots: the second round fills it */

/* What the process that dies leaves for the test: its store's address and handles. */
struct crashed {
	uint64_t old_store;
	uint64_t h[SWAP_PAGES];
	unsigned nr_in_area;   /* of them, in the area when it died */
	uint64_t written_back; /* pool+swapfile: pages moved to the area by writeback */
};

static void make_area(const char *path)
{
	struct mkswap_options o = {.size_bytes = SWAP_AREA_BYTES};
	char err[512];

	if (mkswap_format(path, &o, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "mkswap_format: %s\n", err);
		exit(1);
	}
}

static void send_fd(int sock, int fd)
{
	char c = 0, buf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {&c, 1};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = buf,
			    .msg_controllen = sizeof(buf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	check(sendmsg(sock, &mh, 0) == 1);
}

static int recv_fd(int sock)
{
	char c, buf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&c, 1};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = buf,
			    .msg_controllen = sizeof(buf)};
	struct cmsghdr *cm;
	int fd;

	check(recvmsg(sock, &mh, 0) == 1);
	cm = CMSG_FIRSTHDR(&mh);
	check(cm && cm->cmsg_type == SCM_RIGHTS);
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/* The dying daemon: a store of its own pmem over area, SWAP_PAGES saved, then SIGKILL. */
static void crash_with_pages(const struct store_config *cfg, struct crashed *out, int sock)
{
	unsigned char *page = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	struct store_stats st;
	struct store *s;

	pmem_exit(); /* the parent's: this process makes its own, as a daemon would */
	check(page && pmem_init(UINT64_C(64) << 30) == 0);
	check(store_new(cfg, &s) == 0);
	pmem_set_root(PMEM_ROOT_STORE, s);
	out->old_store = (uint64_t)(uintptr_t)s;
	for (uint64_t i = 0; i < SWAP_PAGES; i++) {
		make_page(i, page);
		check(store_save(s, page, &out->h[i]) == 0);
	}
	for (uint64_t i = 0; i < SWAP_PAGES; i++)
		out->nr_in_area += store_load_may_block(s, out->h[i]);
	store_get_stats(s, &st);
	out->written_back = st.written_back;
	send_fd(sock, pmem_fd());
	raise(SIGKILL);
}

static void test_swap_adopt(enum store_backend backend)
{
	const char *dir = swap_test_dir[0] ? swap_test_dir : swap_test_mkdtemp();
	char old_path[512], new_path[512];
	struct store_swap_area old_area = {.path = old_path};
	/* The dead daemon's area comes second here: its type changes from 0 to 1. */
	struct store_swap_area areas[2] = {{.path = new_path}, {.path = old_path}};
	struct store_config cfg = {
		.compressor = "lz4",
		.backend = backend,
		.swap_areas = &old_area,
		.nr_swap_areas = 1,
		.mem_limit_bytes = backend == STORE_BACKEND_POOL_SWAPFILE ? UINT64_C(1) << 20 : 0,
		.writeback_on_save = true,
	};
	struct crashed *cr =
		mmap(NULL, sizeof(*cr), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	unsigned char *page = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	unsigned char *want = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	uint64_t h[SWAP_PAGES], extra[2 * SWAP_PAGES], again;
	unsigned nr_extra = 0, in_place = 0, twice = SWAP_PAGES;
	struct store_swap_stats ss[2];
	struct pmem_view *v;
	struct store *s;
	int sv[2], st;
	pid_t pid;

	check(cr != MAP_FAILED && page && want);
	snprintf(old_path, sizeof(old_path), "%s/old-%d", dir, (int)backend);
	snprintf(new_path, sizeof(new_path), "%s/new-%d", dir, (int)backend);
	make_area(old_path);
	make_area(new_path);
	check(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	pid = fork();
	check(pid >= 0);
	if (pid == 0)
		crash_with_pages(&cfg, cr, sv[1]);
	check(open_view_fd(recv_fd(sv[0]), &v) == 0);
	check(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	close(sv[0]);
	close(sv[1]);

	/* The same file opens again (its lock died with the process), at another type. */
	cfg.swap_areas = areas;
	cfg.nr_swap_areas = 2;
	check(store_new(&cfg, &s) == 0);
	store_set_swap_held(s, true);
	if (backend == STORE_BACKEND_SWAPFILE) {
		swap_test_fill(page, 0);
		check(store_save(s, page, &again) == -ENOSPC); /* held: no slot goes out */
		check(!store_has_room_for(s, 1));
	}
	for (uint64_t i = 0; i < SWAP_PAGES; i++) {
		check(store_adopt(s, v, cr->old_store, cr->h[i], page, NULL, &h[i]) == 0);
		if (store_load_may_block(s, h[i])) {
			in_place++;
			twice = i;
		}
	}
	check(in_place == cr->nr_in_area && in_place >= SWAP_PAGES / 4);
	/* Tier entries in SWAP too, not only pages that went to the area straight away. */
	check(backend == STORE_BACKEND_SWAPFILE || cr->written_back > 0);
	/* A slot is adopted once: a second claim on it must not share it. */
	check(store_adopt(s, v, cr->old_store, cr->h[twice], page, NULL, &again) == -EBUSY);
	check(store_get_swap_stats(s, ss, 2) == 2);
	check(strcmp(ss[1].path, old_path) == 0 && ss[1].used_slots == in_place);
	check(ss[0].used_slots == 0);

	/* Released, the areas fill up with new pages: none may land on an adopted one. */
	store_set_swap_held(s, false);
	while (nr_extra < ARRAY_SIZE(extra)) {
		swap_test_fill(page, 1000000 + nr_extra);
		if (store_save(s, page, &extra[nr_extra]) < 0)
			break;
		nr_extra++;
	}
	check(nr_extra > SWAP_PAGES);
	for (uint64_t i = 0; i < SWAP_PAGES; i++) {
		make_page(i, want);
		check(store_load(s, h[i], page) == 0);
		check(memcmp(page, want, PAGE_SIZE) == 0);
		store_drop(s, h[i]);
	}
	for (unsigned i = 0; i < nr_extra; i++) {
		swap_test_fill(want, 1000000 + i);
		check(store_load(s, extra[i], page) == 0);
		check(memcmp(page, want, PAGE_SIZE) == 0);
		store_drop(s, extra[i]);
	}
	check(store_get_swap_stats(s, ss, 2) == 2);
	check(ss[0].used_slots == 0 && ss[1].used_slots == 0);
	printf("swap area after a crash (%s): %u of %u pages adopted in place (%" PRIu64
	       " written back), %u new pages saved around them\n",
	       backend == STORE_BACKEND_SWAPFILE ? "swapfile" : "pool+swapfile", in_place,
	       SWAP_PAGES, cr->written_back, nr_extra);
	store_free(s);
	pmem_view_close(v);
	munmap(cr, sizeof(*cr));
	free(page);
	free(want);
}

int main(void)
{
	int r = pmem_init(UINT64_C(64) << 30);

	if (r < 0) {
		fprintf(stderr, "pmem_init: %s\n", strerror(-r));
		return 1;
	}
	test_pmem_alloc();
	test_pmem_sealed();
	test_store_view("lz4");
	test_store_view("zstd");
	test_pagetable_view();
	for (unsigned done = 0; done <= REMAP_PAGES; done++)
		for (enum cut cut = CUT_CLEAN; cut <= CUT_UNCOUNTED; cut++)
			test_remap_replay(done, cut);
	printf("mremap replayed after an interruption at each of %u points: same table\n",
	       4 * (REMAP_PAGES + 1));
	test_swap_adopt(STORE_BACKEND_SWAPFILE);
	test_swap_adopt(STORE_BACKEND_POOL_SWAPFILE);
	pmem_exit();
	return 0;
}
