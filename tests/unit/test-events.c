/* SPDX-License-Identifier: MIT */
/*
 * The events of an mremap that reach the daemon late (fault.c). The kernel sends REMAP, then
 * the UNMAP of the tail a shrinking move cut off, then the UNMAP of its source, each once the
 * one before was read, with the mmap lock let go: another thread's mremap into the freed range
 * can be read in between. Here a real thread of this process is inside mremap(), held there by
 * the events this test reads from its own userfaultfd, and the other threads' events are made
 * up and applied in between, to a client table of the test's own:
 *
 *   - the tail's and the source's UNMAPs spare what later REMAPs moved into their ranges;
 *   - a REMAP drops the stale entries its destination holds (the old tail's), also where its
 *     source has none;
 *   - an UNMAP that only starts where a recent move's range ends, while that move cut off no
 *     tail (the mremapping thread's old length, from /proc, says so), removes what it covers;
 *   - a REMAP that comes late (after another thread's move into its freed source) takes its
 *     own entries, set aside for it when that move was applied; a move that fails gets them
 *     back.
 *
 * Exit 77 when this kernel gives no userfaultfd with REMAP and UNMAP events.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "daemon/adopt.h"
#include "daemon/client.h"
#include "daemon/fault.h"
#include "daemon/manager.h"
#include "daemon/pagetable.h"
#include "shared/macro.h"

#include "check.h"

void manager_kick_reclaim(struct manager *m)
{
	(void)m;
}

uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void crash_point(const struct manager *m, const char *point)
{
	(void)m;
	(void)point;
}

#define P PAGE_SIZE
/* Made-up addresses of the other threads' mappings, far from any real one. */
#define ELSEWHERE UINT64_C(0x500000000000)

static struct manager mgr = {.remap_unmaps_source = true};
static int uffd = -1;

static struct client *fake_client(void)
{
	struct client *c = calloc(1, sizeof(*c));

	check(c);
	c->m = &mgr;
	c->pid = getpid();
	c->pt = pagetable_new();
	check(c->pt);
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

static void free_client(struct client *c)
{
	pagetable_free(c->pt);
	rangeset_done(&c->registered);
	free(c);
}

static pte_t entry(struct client *c, uint64_t addr)
{
	pte_t *p = pagetable_lookup(c->pt, addr / P);

	return p ? *p : 0;
}

/* A resident page of the client's, told apart by its tag. */
static pte_t tagged(uint64_t tag)
{
	return pte_make(PTE_PRESENT, 0, tag);
}

static void put(struct client *c, uint64_t addr, uint64_t tag)
{
	*pagetable_ensure(c->pt, addr / P) = tagged(tag);
	c->nr_present++;
}

/* Another thread's event, made up. */
static void remap(struct client *c, uint64_t from, uint64_t to, uint64_t len)
{
	struct uffd_msg m = {.event = UFFD_EVENT_REMAP};

	m.arg.remap.from = from;
	m.arg.remap.to = to;
	m.arg.remap.len = len;
	fault_apply_event(c, &m);
}

static void unmap(struct client *c, uint64_t start, uint64_t end)
{
	struct uffd_msg m = {.event = UFFD_EVENT_UNMAP};

	m.arg.remove.start = start;
	m.arg.remove.end = end;
	fault_apply_event(c, &m);
}

/* The next event the kernel sends, which must be of this kind, applied to c. */
static struct uffd_msg next_event(struct client *c, unsigned event)
{
	struct pollfd pfd = {.fd = uffd, .events = POLLIN};
	struct uffd_msg m;

	check(poll(&pfd, 1, 10000) == 1);
	check(read(uffd, &m, sizeof(m)) == (ssize_t)sizeof(m));
	check(m.event == event);
	fault_apply_event(c, &m);
	return m;
}

struct move {
	void *from, *to;
	size_t old_len, new_len;
	pthread_t thread;
	_Atomic pid_t tid;
};

static void *do_mremap(void *arg)
{
	struct move *mv = arg;

	mv->tid = gettid();
	check(mremap(mv->from, mv->old_len, mv->new_len, MREMAP_MAYMOVE | MREMAP_FIXED, mv->to) ==
	      mv->to);
	return NULL;
}

static void register_range(void *start, size_t len)
{
	struct uffdio_register reg = {.mode = UFFDIO_REGISTER_MODE_MISSING};

	reg.range.start = (uint64_t)(uintptr_t)start;
	reg.range.len = len;
	check(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0);
}

/* A registered mapping of pages, a reservation of new_pages (with onto_registered, a
 * registered mapping: the move then unmaps it first, and says so first), and a thread moving
 * the one to the other; the test reads its events. */
static void start_move_onto(struct move *mv, unsigned pages, unsigned new_pages,
			    bool onto_registered)
{
	mv->old_len = pages * P;
	mv->new_len = new_pages * P;
	mv->from =
		mmap(NULL, mv->old_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mv->to = mmap(NULL, mv->new_len, onto_registered ? PROT_READ | PROT_WRITE : PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(mv->from != MAP_FAILED && mv->to != MAP_FAILED);
	register_range(mv->from, mv->old_len);
	if (onto_registered)
		register_range(mv->to, mv->new_len);
	check(pthread_create(&mv->thread, NULL, do_mremap, mv) == 0);
}

static void start_move(struct move *mv, unsigned pages, unsigned new_pages)
{
	start_move_onto(mv, pages, new_pages, false);
}

/*
 * Until the moving thread waits inside mremap() for its next event to be read: the daemon
 * finds out whether an UNMAP is its tail from its arguments, which /proc gives only then (the
 * daemon waits for a thread caught running, but not for ever).
 */
static void wait_in_mremap(struct move *mv)
{
	char path[64], buf[64] = "";
	long nr = -1;

	while (!mv->tid)
		sched_yield();
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)mv->tid);
	while (nr != SYS_mremap) {
		FILE *f = fopen(path, "r");

		check(f);
		if (!fgets(buf, sizeof(buf), f) || sscanf(buf, "%ld", &nr) != 1)
			nr = -1; /* "running" */
		fclose(f);
		if (nr != SYS_mremap)
			sched_yield();
	}
}

static void end_move(struct move *mv)
{
	struct uffdio_range range = {(uint64_t)(uintptr_t)mv->to, mv->new_len};

	check(pthread_join(mv->thread, NULL) == 0);
	/* Its UNMAP would wait for a reader: this thread. */
	check(ioctl(uffd, UFFDIO_UNREGISTER, &range) == 0);
	check(munmap(mv->to, mv->new_len) == 0);
}

/*
 * The thread shrinks 8 pages to 2 and moves them. Before its tail's UNMAP is read, thread B
 * moves 2 pages (only the first of them ever written) into the freed tail, and thread C one
 * page into the freed source.
 */
static void test_shrinking_move(void)
{
	struct client *c = fake_client();
	struct move mv;
	uint64_t x, y, b = ELSEWHERE, q = ELSEWHERE + 64 * P;

	start_move(&mv, 8, 2);
	x = (uint64_t)(uintptr_t)mv.from;
	y = (uint64_t)(uintptr_t)mv.to;
	for (unsigned i = 0; i < 8; i++)
		put(c, x + i * P, 10 + i);
	put(c, b, 99);
	put(c, q, 55);

	struct uffd_msg m = next_event(c, UFFD_EVENT_REMAP);

	check(m.reserved3 == 2 * 2); /* progress: 2 pages done */
	wait_in_mremap(&mv);
	check(entry(c, y) == tagged(10) && entry(c, y + P) == tagged(11));
	remap(c, b, x + 2 * P, 2 * P); /* B */
	/* The old tail's page 3 was stale there: dropped, though B had no page for it. */
	check(entry(c, x + 2 * P) == tagged(99) && entry(c, x + 3 * P) == 0);
	remap(c, q, x, P);	/* C */
	unmap(c, q, q + P);	/* C's source */
	unmap(c, b, b + 2 * P); /* B's source */

	/* Reading it wakes the thread, which the daemon then waits for to be inside the call
	 * again; were it too slow, the daemon's guess (a tail) would be right here too. */
	m = next_event(c, UFFD_EVENT_UNMAP); /* the tail */
	check(m.arg.remove.start == x + 2 * P && m.arg.remove.end == x + 8 * P);
	m = next_event(c, UFFD_EVENT_UNMAP); /* the source */
	check(m.arg.remove.start == x && m.arg.remove.end == x + 2 * P);
	end_move(&mv);

	check(entry(c, x) == tagged(55));	  /* C's, spared by the source's UNMAP */
	check(entry(c, x + 2 * P) == tagged(99)); /* B's, spared by the tail's */
	for (unsigned i = 3; i < 8; i++)
		check(entry(c, x + i * P) == 0);
	check(entry(c, y) == tagged(10) && entry(c, y + P) == tagged(11));
	check(entry(c, b) == 0 && entry(c, q) == 0);
	check(c->nr_present == 4);
	free_client(c);
	printf("shrinking move: the late tail and source UNMAPs spared the pages moved there\n");
}

/*
 * The thread moves 2 pages without shrinking. Before its source's UNMAP is read, thread B,
 * whose mapping follows the moved range, moves a page of its own into it and unmaps it whole:
 * an UNMAP that starts where the moved range ends, but no tail.
 */
static void test_move_then_neighbour_unmapped(void)
{
	struct client *c = fake_client();
	struct move mv;
	uint64_t x, v = ELSEWHERE;

	start_move(&mv, 2, 2);
	x = (uint64_t)(uintptr_t)mv.from;
	put(c, x, 1);
	put(c, x + P, 2);
	put(c, v, 77);

	next_event(c, UFFD_EVENT_REMAP);
	wait_in_mremap(&mv);
	unmap(c, x + 3 * P, x + 4 * P); /* B's mremap onto its own page: the destination first */
	remap(c, v, x + 3 * P, P);
	unmap(c, v, v + P);
	check(entry(c, x + 3 * P) == tagged(77));
	unmap(c, x + 2 * P, x + 4 * P); /* B's munmap */
	check(entry(c, x + 3 * P) == 0);
	next_event(c, UFFD_EVENT_UNMAP); /* the source */
	end_move(&mv);

	check(entry(c, x) == 0 && entry(c, x + P) == 0 && entry(c, x + 3 * P) == 0);
	check(c->nr_present == 2);
	free_client(c);
	printf("move, then its neighbour unmapped: not taken for a tail\n");
}

static _Atomic bool spin_on;

static void *spin(void *arg)
{
	(void)arg;
	while (atomic_load_explicit(&spin_on, memory_order_relaxed))
		;
	return NULL;
}

/*
 * The thread grows 2 pages to 3 while another thread of the process spins (/proc cannot read a
 * running thread's arguments). Before the source's UNMAP is read, thread B moves a page into
 * its mapping after the moved range and unmaps it whole: a growing move has no tail, so B's
 * UNMAP removes what it covers.
 */
static void test_growing_move(void)
{
	struct client *c = fake_client();
	struct move mv;
	pthread_t spinner;
	uint64_t x, v = ELSEWHERE;

	atomic_store(&spin_on, true);
	check(pthread_create(&spinner, NULL, spin, NULL) == 0);
	start_move(&mv, 2, 3);
	x = (uint64_t)(uintptr_t)mv.from;
	put(c, x, 1);
	put(c, x + P, 2);
	put(c, v, 77);

	struct uffd_msg m = next_event(c, UFFD_EVENT_REMAP);

	check(m.reserved3 == 2 * 2); /* progress: 2 pages done */
	wait_in_mremap(&mv);
	remap(c, v, x + 3 * P, P); /* B */
	unmap(c, v, v + P);
	unmap(c, x + 2 * P, x + 4 * P); /* B's munmap */
	check(entry(c, x + 3 * P) == 0);
	next_event(c, UFFD_EVENT_UNMAP); /* the source */
	end_move(&mv);
	atomic_store(&spin_on, false);
	check(pthread_join(spinner, NULL) == 0);
	check(entry(c, x) == 0 && entry(c, x + P) == 0 && c->nr_present == 2);
	free_client(c);
	printf("growing move, another thread running: its neighbour's UNMAP not taken for a "
	       "tail\n");
}

/*
 * The thread moves 4 pages onto 4 mapped, registered ones, shrinking them to 3: the kernel
 * sends the destination's UNMAP, and only once that was read the REMAP. In between, thread B
 * moves 2 pages into the freed source (one where the thread had a page, one where it had
 * none), and thread C one page into the freed tail. Neither may take the thread's pages, nor
 * its REMAP theirs.
 */
static void test_move_onto_mapped(void)
{
	struct client *c = fake_client();
	struct move mv;
	uint64_t x, y, b = ELSEWHERE, q = ELSEWHERE + 64 * P;
	uint64_t aside_before = atomic_load(&mgr.totals.remaps_set_aside);

	start_move_onto(&mv, 4, 3, true);
	x = (uint64_t)(uintptr_t)mv.from;
	y = (uint64_t)(uintptr_t)mv.to;
	put(c, x, 10);
	put(c, x + 2 * P, 12);
	put(c, x + 3 * P, 13); /* in the tail the move cuts off */
	for (unsigned i = 0; i < 3; i++)
		put(c, y + i * P, 20 + i); /* the destination's old pages */
	put(c, b, 98);
	put(c, b + P, 99);
	put(c, q, 55);

	struct uffd_msg m = next_event(c, UFFD_EVENT_UNMAP); /* the destination's */

	check(m.arg.remove.start == y && m.arg.remove.end == y + 3 * P);
	check(entry(c, y) == 0 && entry(c, y + P) == 0 && entry(c, y + 2 * P) == 0);
	wait_in_mremap(&mv); /* with its REMAP not read */
	/* B, onto a reservation (not registered: no UNMAP first) where the source's pages 1
	 * (none) and 2 (12) were */
	remap(c, b, x + P, 2 * P);
	unmap(c, b, b + 2 * P);
	check(entry(c, x + P) == tagged(98) && entry(c, x + 2 * P) == tagged(99));
	check(entry(c, x) == 0 && entry(c, x + 3 * P) == 0); /* set aside */
	check(atomic_load(&mgr.totals.remaps_set_aside) == aside_before + 1);
	remap(c, q, x + 3 * P, P); /* C, into the tail */
	unmap(c, q, q + P);

	m = next_event(c, UFFD_EVENT_REMAP);
	check(m.arg.remap.from == x && m.arg.remap.to == y && m.arg.remap.len == 3 * P);
	m = next_event(c, UFFD_EVENT_UNMAP); /* the tail */
	check(m.arg.remove.start == x + 3 * P && m.arg.remove.end == x + 4 * P);
	m = next_event(c, UFFD_EVENT_UNMAP); /* the source */
	check(m.arg.remove.start == x && m.arg.remove.end == x + 3 * P);
	end_move(&mv);

	check(entry(c, y) == tagged(10) && entry(c, y + P) == 0 &&
	      entry(c, y + 2 * P) == tagged(12));
	check(entry(c, x) == 0);
	check(entry(c, x + P) == tagged(98) && entry(c, x + 2 * P) == tagged(99));
	check(entry(c, x + 3 * P) == tagged(55));
	check(entry(c, b) == 0 && entry(c, b + P) == 0 && entry(c, q) == 0);
	check(c->nr_present == 5); /* the tail's page 13 went with the move */
	for (unsigned i = 0; i < CLIENT_MAX_ASIDES; i++)
		check(!c->asides[i].used);
	free_client(c);
	printf("move onto mapped memory: another move into its source read first took none of "
	       "its pages\n");
}

/* The next event the kernel sends, read and not applied. */
static struct uffd_msg skip_event(unsigned event)
{
	struct pollfd pfd = {.fd = uffd, .events = POLLIN};
	struct uffd_msg m;

	check(poll(&pfd, 1, 10000) == 1);
	check(read(uffd, &m, sizeof(m)) == (ssize_t)sizeof(m));
	check(m.event == event);
	return m;
}

/*
 * A move whose entries were set aside, and whose thread then leaves mremap() with no REMAP
 * (here its events are read and not applied, as if the move had failed): the next look puts
 * its entries back, but where a later move put one.
 */
static void test_abandoned_move(void)
{
	struct client *c = fake_client();
	struct move mv;
	uint64_t x, b = ELSEWHERE, q = ELSEWHERE + 64 * P, z = ELSEWHERE + 128 * P;

	start_move_onto(&mv, 2, 2, true);
	x = (uint64_t)(uintptr_t)mv.from;
	put(c, x, 10);
	put(c, x + P, 11);
	put(c, b, 98);
	next_event(c, UFFD_EVENT_UNMAP); /* the destination's */
	wait_in_mremap(&mv);
	remap(c, b, x + P, P);
	check(entry(c, x) == 0 && entry(c, x + P) == tagged(98) && c->nr_asides == 1);
	skip_event(UFFD_EVENT_REMAP);
	skip_event(UFFD_EVENT_UNMAP);
	end_move(&mv);

	put(c, q, 55);
	put(c, z, 66);
	remap(c, q, z, P); /* onto a stale entry: asks /proc, and finds the thread gone */
	check(c->nr_asides == 0);
	check(entry(c, x) == tagged(10) && entry(c, x + P) == tagged(98));
	check(entry(c, z) == tagged(55) && entry(c, q) == 0);
	check(c->nr_present == 3);
	free_client(c);
	printf("abandoned move: its entries put back, but where newer ones are\n");
}

/*
 * Entries where a REMAP moves pages to, with no thread inside mremap() whose source covers
 * them, are stale: dropped, nothing set aside.
 */
static void test_stale_destination(void)
{
	struct client *c = fake_client();
	uint64_t x = ELSEWHERE, v = ELSEWHERE + 64 * P;
	uint64_t aside_before = atomic_load(&mgr.totals.remaps_set_aside);

	put(c, x, 1);
	put(c, x + P, 2);
	put(c, v, 77);
	remap(c, v, x, P);
	check(entry(c, x) == tagged(77) && entry(c, x + P) == tagged(2) && entry(c, v) == 0);
	check(c->nr_present == 2);
	check(atomic_load(&mgr.totals.remaps_set_aside) == aside_before);
	free_client(c);
	printf("stale destination entry, no mover: dropped\n");
}

/* Applies a made-up event with the rest of its read after it, as the daemon's read does. */
static void apply_reading(struct client *c, struct uffd_msg *m, const struct uffd_msg *rest,
			  unsigned nr_rest)
{
	c->reading = rest;
	c->nr_reading = nr_rest;
	fault_apply_event(c, m);
	c->nr_reading = 0;
}

static struct uffd_msg remap_msg(uint64_t from, uint64_t to, uint64_t len)
{
	struct uffd_msg m = {.event = UFFD_EVENT_REMAP};

	m.arg.remap.from = from;
	m.arg.remap.to = to;
	m.arg.remap.len = len;
	return m;
}

static struct uffd_msg unmap_msg(uint64_t start, uint64_t end)
{
	struct uffd_msg m = {.event = UFFD_EVENT_UNMAP};

	m.arg.remove.start = start;
	m.arg.remove.end = end;
	return m;
}

/*
 * Three moves read in one read, in the order B, A, C, made the other way round: C moved D to
 * E, then A moved S to D, then B moved T to S. Each REMAP finds the entries of the next at its
 * destination, and sets them aside for it.
 */
static void test_chain_in_one_read(void)
{
	struct client *c = fake_client();
	uint64_t s = ELSEWHERE, d = ELSEWHERE + 64 * P, e = ELSEWHERE + 128 * P,
		 t = ELSEWHERE + 192 * P;
	struct uffd_msg ev[3] = {remap_msg(t, s, 2 * P), remap_msg(s, d, 2 * P),
				 remap_msg(d, e, 2 * P)};

	put(c, d, 30);
	put(c, d + P, 31);
	put(c, s, 10);
	put(c, s + P, 11);
	put(c, t, 98);
	put(c, t + P, 99);
	for (unsigned i = 0; i < 3; i++)
		apply_reading(c, &ev[i], ev + i + 1, 2 - i);
	check(entry(c, e) == tagged(30) && entry(c, e + P) == tagged(31));
	check(entry(c, d) == tagged(10) && entry(c, d + P) == tagged(11));
	check(entry(c, s) == tagged(98) && entry(c, s + P) == tagged(99));
	check(entry(c, t) == 0 && entry(c, t + P) == 0);
	check(c->nr_present == 6 && c->nr_asides == 0);
	free_client(c);
	printf("three late REMAPs in a chain, one read: each took its own pages\n");
}

/*
 * A shrinks S from 4 pages to 3 and moves it to D; B's move of one page into S's page
 * b_page is read first, in the same read as A's REMAP, its tail's UNMAP and its source's (no
 * thread of A's to ask /proc about). A's REMAP says only the length it moved, so its tail's
 * entry stays where it was, for the tail's UNMAP to remove; B's is spared.
 */
static void test_shrink_in_one_read(unsigned b_page)
{
	struct client *c = fake_client();
	uint64_t s = ELSEWHERE, d = ELSEWHERE + 64 * P, t = ELSEWHERE + 192 * P;
	struct uffd_msg ev[4] = {remap_msg(t, s + b_page * P, P), remap_msg(s, d, 3 * P),
				 unmap_msg(s + 3 * P, s + 4 * P), unmap_msg(s, s + 3 * P)};

	for (unsigned i = 0; i < 4; i++)
		put(c, s + i * P, 10 + i);
	put(c, t, 98);
	for (unsigned i = 0; i < 4; i++)
		apply_reading(c, &ev[i], ev + i + 1, 3 - i);
	for (unsigned i = 0; i < 3; i++)
		check(entry(c, d + i * P) == tagged(10 + i));
	for (unsigned i = 0; i < 4; i++) /* page 3: the old tail */
		check(entry(c, s + i * P) == (i == b_page ? tagged(98) : 0));
	check(c->nr_present == 4 && c->nr_asides == 0);
	free_client(c);
	printf("late REMAP of a shrink, one read, a move into its page %u: right\n", b_page);
}

struct grow {
	void *from, *moved;
	size_t old_len, new_len;
	struct move mv; /* for wait_in_mremap */
};

static void *do_grow(void *arg)
{
	struct grow *g = arg;

	g->mv.tid = gettid();
	g->moved = mremap(g->from, g->old_len, g->new_len, MREMAP_MAYMOVE);
	return NULL;
}

/*
 * A grows 2 pages to 4 without MREMAP_FIXED (a mapping after them makes it move): /proc gives
 * no destination. B's move into its freed source is read first, A's REMAP in the same read:
 * A is set aside once, not once for /proc and once for the read.
 */
static void test_growing_move_in_one_read(void)
{
	struct client *c = fake_client();
	struct grow g = {.old_len = 2 * P, .new_len = 4 * P};
	uint64_t x, b = ELSEWHERE;
	pthread_t thread;
	char *p = mmap(NULL, 3 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	check(p != MAP_FAILED);
	check(mprotect(p + 2 * P, P, PROT_NONE) == 0); /* another mapping right after */
	g.from = p;
	x = (uint64_t)(uintptr_t)p;
	register_range(p, 2 * P);
	put(c, x, 10);
	put(c, x + P, 11);
	put(c, b, 98);
	check(pthread_create(&thread, NULL, do_grow, &g) == 0);

	struct uffd_msg a = skip_event(UFFD_EVENT_REMAP), bm = remap_msg(b, x, P);
	uint64_t d = a.arg.remap.to;

	check(a.arg.remap.from == x && a.arg.remap.len == 2 * P && d != x);
	wait_in_mremap(&g.mv);
	apply_reading(c, &bm, &a, 1);
	check(c->nr_asides == 1 && entry(c, x) == tagged(98) && entry(c, x + P) == 0);
	apply_reading(c, &a, NULL, 0);
	check(c->nr_asides == 0);
	check(entry(c, d) == tagged(10) && entry(c, d + P) == tagged(11));
	next_event(c, UFFD_EVENT_UNMAP); /* the source */
	check(pthread_join(thread, NULL) == 0 && g.moved == (void *)(uintptr_t)d);
	check(entry(c, x) == tagged(98) && c->nr_present == 3 && c->nr_asides == 0);

	struct uffdio_range range = {d, g.new_len};

	check(ioctl(uffd, UFFDIO_UNREGISTER, &range) == 0);
	check(munmap(g.moved, g.new_len) == 0 && munmap(p + 2 * P, P) == 0);
	free_client(c);
	printf("growing move, its REMAP in the same read: set aside once\n");
}

/*
 * A daemon reads a move's REMAP and dies before its source's UNMAP comes; meanwhile another
 * thread moved a page into the freed source. The successor takes the dead one's ring of moves
 * from its record (fault_adopt_ring), so the late UNMAP spares that page. The dead daemon's
 * REMAP, still in its journal (applied, the slot not yet freed), is replayed: not counted
 * twice.
 */
static void test_ring_survives_a_crash(void)
{
	struct client *dead = fake_client(), *c = fake_client();
	struct client_record *dead_rec = calloc(1, sizeof(*dead_rec)),
			     *rec = calloc(1, sizeof(*rec));
	uint64_t x = ELSEWHERE, y = ELSEWHERE + 64 * P, b = ELSEWHERE + 128 * P;
	struct uffd_msg m = remap_msg(x, y, 2 * P);

	check(dead_rec && rec);
	dead->record = dead_rec;
	c->record = rec;
	put(dead, x, 10);
	put(dead, x + P, 11);
	fault_apply_event(dead, &m);
	check(dead_rec->ring.nr == 1 && dead->own_ring.nr == 0); /* kept in the record */

	/* The successor's table, as adoption rebuilds it, and B's move into the source. */
	put(c, y, 10);
	put(c, y + P, 11);
	fault_adopt_ring(c, &dead_rec->ring);
	fault_replay_event(c, &m); /* done already: its progress says so */
	check(rec->ring.nr == 1);
	put(c, b, 98);
	remap(c, b, x, P);
	check(rec->ring.nr == 2);
	unmap(c, x, x + 2 * P); /* the source's, late */
	check(entry(c, x) == tagged(98));
	check(entry(c, y) == tagged(10) && entry(c, y + P) == tagged(11));
	check(c->nr_present == 3);
	dead->record = c->record = NULL;
	free(dead_rec);
	free(rec);
	free_client(dead);
	free_client(c);
	printf("ring of moves in the pmem record: a successor spares what moved into a source\n");
}

int main(void)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP,
	};

	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0) {
		printf("no userfaultfd with REMAP and UNMAP events: %s\n", strerror(errno));
		return 77;
	}
	test_shrinking_move();
	test_move_then_neighbour_unmapped();
	test_growing_move();
	test_move_onto_mapped();
	test_abandoned_move();
	test_stale_destination();
	test_chain_in_one_read();
	test_shrink_in_one_read(1);
	test_shrink_in_one_read(3); /* into its tail */
	test_growing_move_in_one_read();
	test_ring_survives_a_crash();
	return 0;
}
