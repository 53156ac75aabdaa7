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
 *     tail (the mremapping thread's old length, from /proc, says so), removes what it covers.
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

/* A registered mapping of pages, a reservation of new_pages, and a thread moving the one to
 * the other; the test reads its events. */
static void start_move(struct move *mv, unsigned pages, unsigned new_pages)
{
	struct uffdio_register reg = {.mode = UFFDIO_REGISTER_MODE_MISSING};

	mv->old_len = pages * P;
	mv->new_len = new_pages * P;
	mv->from =
		mmap(NULL, mv->old_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mv->to = mmap(NULL, mv->new_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(mv->from != MAP_FAILED && mv->to != MAP_FAILED);
	reg.range.start = (uint64_t)(uintptr_t)mv->from;
	reg.range.len = mv->old_len;
	check(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0);
	check(pthread_create(&mv->thread, NULL, do_mremap, mv) == 0);
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
	return 0;
}
