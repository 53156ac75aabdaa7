/* SPDX-License-Identifier: MIT */
/*
 * wl-ownuffd SIZE [raw]
 *
 * raw: the registrations are made by number, syscall(SYS_ioctl, ...), as some programs do.
 *
 * A program with a userfaultfd of its own (as a live migration's receiver or a checkpoint
 * restorer has) registers memory memext has evicted. The kernel lets one userfaultfd hold a
 * range: the shim must have memextd hand the range over, its evicted pages brought back.
 *
 * The region of SIZE bytes is filled in order, so its first sixteenth (the target) is the
 * coldest; the workload waits until half of the target or more is no longer resident (mincore;
 * required when MEMEXT_WL_EXPECT_EVICTION=1). While a second thread reads and checks the whole
 * region at random (the target too, until step 3), it then:
 *
 *   1. registers the target with its own userfaultfd (MISSING mode), which must succeed; a
 *      handler thread answers every fault on it with the page's generation 2;
 *   2. checks every page of the target: generation 1, and no fault reached its handler (a page
 *      memextd failed to bring back would, and read as generation 2);
 *   3. drops the target's first half (MADV_DONTNEED): each page then reads as generation 2,
 *      from its own handler, which must have seen exactly one fault per dropped page (memextd
 *      would answer with zeroes if it still held the range);
 *   4. unregisters the target and closes its userfaultfd;
 *   5. reads the rest of the region in order, again and again, until half of the target or
 *      more is evicted once more (memextd takes back what no userfaultfd holds; required under
 *      the shim, 60 s at most), and checks the whole region once more.
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "wl-common.h"

#define SALT 3
#define UFFD_USER_MODE_ONLY_FLAG 1 /* UFFD_USER_MODE_ONLY, missing from older headers */

static char *region;
static size_t nr_pages, nr_target;
static atomic_bool stop_reader, stop_handler;
static atomic_bool reader_whole = true; /* the reader reads the target too */
static atomic_size_t reader_reads;
static atomic_size_t handler_faults;
static int own_uffd = -1;

static char *page_addr(size_t p)
{
	return region + p * WL_PAGE_SIZE;
}

/* Faults on the target come here once it is registered: answered with generation 2. */
static void *handler_main(void *arg)
{
	static char page[WL_PAGE_SIZE] __attribute__((aligned(4096)));

	(void)arg;
	while (!atomic_load(&stop_handler)) {
		struct pollfd p = {.fd = own_uffd, .events = POLLIN};
		struct uffd_msg msg;

		if (poll(&p, 1, 50) <= 0)
			continue;
		if (read(own_uffd, &msg, sizeof(msg)) != sizeof(msg)) {
			if (errno == EAGAIN)
				continue;
			wl_die("read userfaultfd: %m");
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			wl_die("unexpected userfaultfd event %u", msg.event);
		uint64_t addr = msg.arg.pagefault.address & ~(WL_PAGE_SIZE - 1);
		size_t idx = (addr - (uint64_t)(uintptr_t)region) / WL_PAGE_SIZE;
		struct uffdio_copy copy = {.dst = addr, .src = (uint64_t)(uintptr_t)page,
					   .len = WL_PAGE_SIZE};

		if (addr < (uint64_t)(uintptr_t)region || idx >= nr_target)
			wl_die("fault at %#" PRIx64 " outside the registered target", addr);
		wl_page_make(page, idx, 2, SALT);
		/* Counted first: the copy wakes the reader, which may look at the count at once. */
		atomic_fetch_add(&handler_faults, 1);
		if (ioctl(own_uffd, UFFDIO_COPY, &copy) < 0 && errno != EEXIST)
			wl_die("UFFDIO_COPY at %#" PRIx64 ": %m", addr);
	}
	return NULL;
}

/*
 * Reads the region at random while memextd evicts it and hands the target over: faults on the
 * target race with the hand-over. Then (reader_whole false) only the rest.
 */
static void *reader_main(void *arg)
{
	uint64_t rng = 42;

	(void)arg;
	while (!atomic_load(&stop_reader)) {
		size_t p = atomic_load(&reader_whole)
				   ? wl_rand_below(&rng, nr_pages)
				   : nr_target + wl_rand_below(&rng, nr_pages - nr_target);

		wl_page_check("reader", page_addr(p), p, 1, SALT, 0);
		atomic_fetch_add(&reader_reads, 1);
	}
	wl_log("reader: %zu pages checked", atomic_load(&reader_reads));
	return NULL;
}

/* Keeps the reader off the target from now on (it may be inside a read of it now). */
static void reader_leave_target(void)
{
	size_t seen;

	atomic_store(&reader_whole, false);
	seen = atomic_load(&reader_reads);
	while (atomic_load(&reader_reads) < seen + 2)
		sched_yield();
}

static int make_uffd(void)
{
	struct uffdio_api api = {.api = UFFD_API};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY_FLAG);

	if (fd < 0 && errno == EINVAL)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		wl_die("userfaultfd: %m");
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		wl_die("UFFDIO_API: %m");
	return fd;
}

static void check_target(const char *what, size_t from, size_t to, uint32_t gen)
{
	for (size_t p = from; p < to; p++)
		wl_page_check(what, page_addr(p), p, gen, SALT, 0);
}

/* Once memextd manages the target again, reading the rest makes it the coldest, and evicted. */
static void wait_target_evicted(void)
{
	bool required = wl_expect_eviction();
	double deadline = wl_now() + 60;
	size_t got, passes = 0;

	do {
		check_target("read pass", nr_target, nr_pages, 1);
		passes++;
		got = wl_nonresident_pages(region, nr_target * WL_PAGE_SIZE);
		if (required && got < nr_target / 2 && wl_now() > deadline)
			wl_mismatch("the target was not evicted again within 60 s (%zu of %zu pages "
				    "not resident): memextd did not take it back", got, nr_target);
	} while (required && got < nr_target / 2);
	wl_log("target: %zu of %zu pages not resident again after %zu read passes", got,
	       nr_target, passes);
}

int main(int argc, char **argv)
{
	pthread_t reader, handler;
	struct uffdio_register reg;
	bool raw;
	struct uffdio_range range;
	size_t half, faults;
	int r;

	wl_set_prog(argv[0]);
	if (argc != 2 && !(argc == 3 && strcmp(argv[2], "raw") == 0))
		wl_die("usage: wl-ownuffd SIZE [raw]");
	raw = argc == 3;
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	nr_target = nr_pages / 16;
	if (nr_target < 2)
		wl_die("SIZE too small");
	half = nr_target / 2;
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(page_addr(p), p, 1, SALT);
	wl_wait_evicted("target", region, nr_target * WL_PAGE_SIZE, 500, wl_expect_eviction(), 60);

	wl_phase("own");
	r = pthread_create(&reader, NULL, reader_main, NULL);
	if (r)
		wl_die("pthread_create: %s", strerror(r));
	own_uffd = make_uffd();
	r = pthread_create(&handler, NULL, handler_main, NULL);
	if (r)
		wl_die("pthread_create: %s", strerror(r));
	reg = (struct uffdio_register){
		.range = {.start = (uint64_t)(uintptr_t)region, .len = nr_target * WL_PAGE_SIZE},
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if ((raw ? syscall(SYS_ioctl, own_uffd, UFFDIO_REGISTER, &reg)
		 : ioctl(own_uffd, UFFDIO_REGISTER, &reg)) < 0)
		wl_die("UFFDIO_REGISTER of the target (%zu pages at %p) with our own userfaultfd: %m",
		       nr_target, region);
	wl_log("target registered with our own userfaultfd");

	check_target("registered target", 0, nr_target, 1);
	faults = atomic_load(&handler_faults);
	if (faults)
		wl_mismatch("%zu faults on the registered target reached our handler: pages were "
			    "missing that should have been brought back", faults);

	reader_leave_target();
	if (madvise(region, half * WL_PAGE_SIZE, MADV_DONTNEED) < 0)
		wl_die("madvise(MADV_DONTNEED): %m");
	check_target("dropped half, from our handler", 0, half, 2);
	check_target("kept half", half, nr_target, 1);
	faults = atomic_load(&handler_faults);
	if (faults != half)
		wl_mismatch("our handler answered %zu faults, expected one per dropped page: %zu",
			    faults, half);
	wl_log("%zu faults on the dropped half answered by our handler", faults);

	range = (struct uffdio_range){.start = reg.range.start, .len = reg.range.len};
	if (ioctl(own_uffd, UFFDIO_UNREGISTER, &range) < 0)
		wl_die("UFFDIO_UNREGISTER: %m");
	atomic_store(&stop_handler, true);
	atomic_store(&stop_reader, true);
	pthread_join(handler, NULL);
	pthread_join(reader, NULL);
	close(own_uffd);

	wl_phase("taken-back");
	wait_target_evicted();

	wl_phase("check");
	check_target("final, dropped half", 0, half, 2);
	check_target("final", half, nr_pages, 1);
	wl_log("all %zu pages verified", nr_pages);
	return 0;
}
