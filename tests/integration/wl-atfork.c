/* SPDX-License-Identifier: MIT */
/*
 * wl-atfork SIZE
 *
 * A fork child whose first atfork handler is a library's, not the shim's (libwl-atfork.so,
 * wl-atfork-lib.c: registered by a constructor that runs before the shim's). The parent fills
 * SIZE bytes, waits until half of them are evicted, names 512 evicted pages spread over the
 * region to that handler and forks; the handler reads half of them and rewrites a byte of the
 * other half. The child then checks every page: each must hold what the parent wrote. (When
 * the handler ran before the shim had the child's memory registered, the pages it touched were
 * zero pages from then on: 512 of 512 read as zeroes.) The parent checks every page after the
 * child has exited, and exits 0 only if both passed.
 */
#include <sys/wait.h>

#include "wl-common.h"

size_t wl_atfork_touch(unsigned char *const *pages, size_t n);

#define NR_TOUCH 512

static char *region;
static size_t nr_pages;

static void check_all(const char *what)
{
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check(what, region + p * WL_PAGE_SIZE, p, 0, 0, 0);
	wl_log("%s: all %zu pages verified", what, nr_pages);
}

int main(int argc, char **argv)
{
	unsigned char *touch[NR_TOUCH], *vec;
	size_t n = 0, step;
	int status;
	pid_t pid;

	wl_set_prog(argv[0]);
	if (argc != 2)
		wl_die("usage: %s SIZE", argv[0]);
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	if (nr_pages < NR_TOUCH)
		wl_die("SIZE must be at least %d pages", NR_TOUCH);
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(region + p * WL_PAGE_SIZE, p, 0, 0);
	wl_wait_evicted("before fork", region, nr_pages * WL_PAGE_SIZE, 500, wl_expect_eviction(),
			30);

	/* Evicted pages (natively: any), spread over the region. */
	vec = malloc(nr_pages);
	if (!vec || mincore(region, nr_pages * WL_PAGE_SIZE, vec) < 0)
		wl_die("mincore: %m");
	step = nr_pages / NR_TOUCH / 2 + 1;
	for (size_t p = 0; p < nr_pages && n < NR_TOUCH; p += step)
		if (!(vec[p] & 1) || !wl_expect_eviction())
			touch[n++] = (unsigned char *)region + p * WL_PAGE_SIZE;
	free(vec);
	wl_atfork_touch(touch, n);
	wl_log("the child's first atfork handler touches %zu pages evicted before fork", n);

	wl_phase("fork");
	pid = fork();
	if (pid < 0)
		wl_die("fork: %m");
	if (pid == 0) {
		wl_prog = "wl-atfork(child)";
		check_all("child");
		fflush(stdout);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		wl_die("waitpid: %m");
	if (WIFSIGNALED(status))
		wl_mismatch("child %d was killed by signal %d", (int)pid, WTERMSIG(status));
	if (WEXITSTATUS(status))
		wl_mismatch("child %d exited %d", (int)pid, WEXITSTATUS(status));
	check_all("parent");
	return 0;
}
