/* SPDX-License-Identifier: MIT */
/*
 * wl-mlock SIZE OPS MODE      MODE: libc | raw | pin
 *
 * Memory the kernel will not let memext evict, then lets it evict again. The region of SIZE
 * bytes is filled; its first sixteenth (L) is mlocked and rewritten, its second (P) made
 * read-only, and OPS random reads and writes over the whole region make the daemon evict: L
 * must stay resident (mincore) and every byte hold. Then L is unlocked and P made read-write
 * again, through libc (libc: the shim tells the daemon) or by system call (raw: the daemon
 * finds out by itself, unevictable-retry-sec), and sweeps over the rest must push L and P out
 * (mincore: 90% of them not resident within a minute). Every page is checked at the end.
 *
 * pin: L is pinned instead, as io_uring's registered buffers are (IORING_REGISTER_BUFFERS,
 * a long-term pin of every page), and unpinned by the system call, which the shim does not
 * see. P is made read-only and writable again through libc. Exit 77 when io_uring is not
 * there or not allowed.
 */
#include <linux/io_uring.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/syscall.h>

#include "wl-common.h"

static char *region;
static size_t nr_pages, nr_part; /* L = [0, nr_part), P = [nr_part, 2 * nr_part) */
static uint32_t *gen;

static char *page_addr(size_t p)
{
	return region + p * WL_PAGE_SIZE;
}

static bool in_p(size_t p)
{
	return p >= nr_part && p < 2 * nr_part;
}

static void check_page(const char *what, size_t p)
{
	wl_page_check(what, page_addr(p), p, gen[p], 0, 0);
}

static void write_page(size_t p)
{
	wl_page_fill(page_addr(p), p, ++gen[p], 0);
}

static void random_ops(uint64_t ops)
{
	uint64_t rng = wl_mix(0x6d6c6f636b);

	for (uint64_t i = 0; i < ops; i++) {
		size_t p = wl_rand_below(&rng, nr_pages);

		check_page("random read", p);
		if (!in_p(p) && wl_rand_below(&rng, 4) == 0)
			write_page(p);
	}
}

/* Pins [addr, addr + len) as io_uring does its registered buffers. Returns the ring's fd, or
 * -1 (errno) when io_uring cannot be used here. */
static int pin(char *addr, size_t len)
{
	struct io_uring_params params = {0};
	struct iovec iov = {addr, len};
	int ring = (int)syscall(SYS_io_uring_setup, 1, &params);

	if (ring < 0)
		return -1;
	if (syscall(SYS_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iov, 1) < 0) {
		int e = errno;

		close(ring);
		errno = e;
		return -1;
	}
	return ring;
}

/* Sweeps over the rest until L and P are mostly out, at most a minute. */
static void push_out(void)
{
	size_t len = 2 * nr_part * WL_PAGE_SIZE, want = 2 * nr_part * 9 / 10, out = 0;
	double deadline = wl_now() + 60;
	unsigned sweeps = 0;

	while (wl_now() < deadline) {
		for (size_t p = 2 * nr_part; p < nr_pages; p++) {
			check_page("sweep", p);
			if (p % 1024 == 0 && (out = wl_nonresident_pages(region, len)) >= want)
				break;
		}
		sweeps++;
		if (out >= want)
			break;
	}
	if (out < want)
		wl_mismatch("only %zu of %zu unlocked pages left memory in %u sweeps: they stayed "
			    "unevictable",
			    out, 2 * nr_part, sweeps);
	wl_log("%zu of %zu unlocked pages not resident after %u sweeps", out, 2 * nr_part,
	       sweeps);
}

int main(int argc, char **argv)
{
	struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
	size_t part_len;
	uint64_t ops;
	bool raw, pinning;
	int ring = -1;

	wl_set_prog(argv[0]);
	if (argc != 4 || (strcmp(argv[3], "libc") != 0 && strcmp(argv[3], "raw") != 0 &&
			  strcmp(argv[3], "pin") != 0))
		wl_die("usage: wl-mlock SIZE OPS libc|raw|pin");
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	ops = wl_parse_u64(argv[2]);
	raw = strcmp(argv[3], "raw") == 0;
	pinning = strcmp(argv[3], "pin") == 0;
	nr_part = nr_pages / 16;
	part_len = nr_part * WL_PAGE_SIZE;
	if (nr_part == 0)
		wl_die("SIZE must be at least 16 pages");
	gen = calloc(nr_pages, sizeof(*gen));
	if (!gen)
		wl_die("calloc");
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(page_addr(p), p, 0, 0);

	wl_phase("lock");
	(void)setrlimit(RLIMIT_MEMLOCK, &unlimited); /* root may; else the limit must do */
	if (pinning) {
		ring = pin(region, part_len);
		if (ring < 0 && (errno == ENOSYS || errno == EPERM || errno == EACCES)) {
			wl_log("io_uring is not available here (%m): nothing to test");
			return 77;
		}
		if (ring < 0)
			wl_die("io_uring: registering %zu bytes of buffers: %m", part_len);
	} else if (mlock(region, part_len) < 0) {
		wl_die("mlock %zu bytes: %m", part_len);
	}
	for (size_t p = 0; p < nr_part; p++)
		write_page(p);
	if (mprotect(region + part_len, part_len, PROT_READ) < 0)
		wl_die("mprotect read-only: %m");

	wl_phase("locked");
	random_ops(ops);
	if (wl_nonresident_pages(region, part_len) != 0)
		wl_mismatch("%zu %s pages are not resident", wl_nonresident_pages(region, part_len),
			    pinning ? "pinned" : "mlocked");
	for (size_t p = 0; p < 2 * nr_part; p++)
		check_page("locked", p);

	wl_phase("unlock");
	if (pinning) {
		if (syscall(SYS_io_uring_register, ring, IORING_UNREGISTER_BUFFERS, NULL, 0) < 0)
			wl_die("io_uring: unregistering the buffers: %m");
		close(ring);
	} else if (raw ? syscall(SYS_munlock, region, part_len) < 0
		       : munlock(region, part_len) < 0) {
		wl_die("munlock: %m");
	}
	if (raw ? syscall(SYS_mprotect, region + part_len, part_len, PROT_READ | PROT_WRITE) < 0
		: mprotect(region + part_len, part_len, PROT_READ | PROT_WRITE) < 0)
		wl_die("mprotect read-write: %m");
	for (size_t p = nr_part; p < 2 * nr_part; p++)
		write_page(p); /* P is writable again */
	if (wl_expect_eviction())
		push_out();

	wl_phase("check");
	for (size_t p = 0; p < nr_pages; p++)
		check_page("final", p);
	wl_log("ok: %zu pages checked", nr_pages);
	return 0;
}
