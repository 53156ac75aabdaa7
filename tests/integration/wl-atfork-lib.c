/* SPDX-License-Identifier: MIT */
/*
 * libwl-atfork.so, a library wl-atfork links to: its constructor runs before the preloaded
 * shim's (a program's dependencies are initialized first) and registers a pthread_atfork()
 * child handler, as jemalloc's initialization does in redis-server. In the child the handler
 * reads and rewrites (with what they hold) bytes of the pages wl_atfork_touch() named: the
 * handler runs right after fork(), before or after the shim's own (glibc runs child handlers
 * in the order they were registered), and whatever it touches must read as the parent left it.
 */
#include <pthread.h>
#include <stddef.h>

#define WL_ATFORK_MAX 512

static volatile unsigned char *touch[WL_ATFORK_MAX];
static size_t nr_touch;

/* The pages the next fork's child handler touches; a copy of at most WL_ATFORK_MAX. */
size_t wl_atfork_touch(unsigned char *const *pages, size_t n)
{
	nr_touch = n < WL_ATFORK_MAX ? n : WL_ATFORK_MAX;
	for (size_t i = 0; i < nr_touch; i++)
		touch[i] = pages[i];
	return nr_touch;
}

static void child(void)
{
	/* Odd pages are read, even ones written (a mutex initialized in an allocator's metadata
	 * is a write): a byte past the page header, rewritten with the value it holds. */
	for (size_t i = 0; i < nr_touch; i++) {
		volatile unsigned char *p = touch[i] + 100;

		if (i % 2)
			(void)*p;
		else
			*p = *p;
	}
}

__attribute__((constructor)) static void wl_atfork_init(void)
{
	pthread_atfork(NULL, NULL, child);
}
