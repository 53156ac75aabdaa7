/* SPDX-License-Identifier: MIT */
/*
 * wl-late SIZE
 *
 * Memory that appears late in the program's life, long after the shim's constructor ran and
 * the daemon first looked at the address space: after a pause of one second it allocates SIZE
 * bytes, a quarter in each of four ways,
 *   - a direct anonymous mmap,
 *   - 1 MiB mallocs (mmap'd chunks),
 *   - 512-byte mallocs from the main thread (the brk heap grows: new VMAs after the start),
 *   - 64 KiB mallocs from a thread started late (a new arena, grown with mprotect),
 * fills everything, and checks every byte twice (forward, then backward). Under memext all of
 * it must be managed, so resident memory stays near the budget (the harness checks that).
 */
#include <pthread.h>

#include "wl-common.h"

struct blocks {
	char **ptr;
	size_t nr, len;
	uint64_t seed_base;
};

static size_t quarter;

static void blocks_alloc(struct blocks *b, size_t len, uint64_t seed_base)
{
	b->len = len;
	b->nr = quarter / len;
	b->seed_base = seed_base;
	b->ptr = calloc(b->nr, sizeof(*b->ptr));
	if (!b->ptr)
		wl_die("calloc: %m");
	for (size_t i = 0; i < b->nr; i++) {
		b->ptr[i] = malloc(len);
		if (!b->ptr[i])
			wl_die("malloc %zu: %m", len);
		wl_stream_fill(b->ptr[i], len, seed_base + i);
	}
}

static void blocks_check(const char *what, const struct blocks *b, bool backward)
{
	for (size_t k = 0; k < b->nr; k++) {
		size_t i = backward ? b->nr - 1 - k : k;
		ptrdiff_t off = wl_stream_check(b->ptr[i], b->len, b->seed_base + i);
		if (off >= 0)
			wl_mismatch("%s: block %zu at %p (%zu bytes): first bad byte at offset %td "
				    "(address %p)",
				    what, i, (void *)b->ptr[i], b->len, off,
				    (void *)(b->ptr[i] + off));
	}
}

static struct blocks arena_blocks;

static void *late_thread(void *arg)
{
	blocks_alloc(&arena_blocks, 64 << 10, 3ULL << 40);
	return NULL;
}

static void check_all(bool backward, char *region, const struct blocks *big,
		      const struct blocks *small)
{
	const char *what = backward ? "backward check" : "forward check";
	size_t nr_pages = quarter / WL_PAGE_SIZE;

	for (size_t k = 0; k < nr_pages; k++) {
		size_t p = backward ? nr_pages - 1 - k : k;
		wl_page_check(what, region + p * WL_PAGE_SIZE, p, 0, 0, 0);
	}
	blocks_check(what, big, backward);
	blocks_check(what, small, backward);
	blocks_check(what, &arena_blocks, backward);
	wl_log("%s: every byte of %zu MiB verified", what, 4 * quarter >> 20);
}

int main(int argc, char **argv)
{
	struct blocks big, small;
	pthread_t tid;
	char *region;

	wl_set_prog(argv[0]);
	if (argc != 2)
		wl_die("usage: %s SIZE", argv[0]);
	quarter = wl_parse_size(argv[1]) / 4 / WL_PAGE_SIZE * WL_PAGE_SIZE;
	if (quarter < (1 << 20))
		wl_die("SIZE must be at least 4 MiB");

	wl_phase("early");
	sleep(1);

	wl_phase("late");
	region = wl_mmap_anon(quarter);
	for (size_t p = 0; p < quarter / WL_PAGE_SIZE; p++)
		wl_page_fill(region + p * WL_PAGE_SIZE, p, 0, 0);
	blocks_alloc(&big, 1 << 20, 1ULL << 40);
	blocks_alloc(&small, 512, 2ULL << 40);
	if ((errno = pthread_create(&tid, NULL, late_thread, NULL)))
		wl_die("pthread_create: %m");
	pthread_join(tid, NULL);

	wl_phase("verify");
	check_all(false, region, &big, &small);
	check_all(true, region, &big, &small);
	return 0;
}
