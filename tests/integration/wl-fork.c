/* SPDX-License-Identifier: MIT */
/*
 * wl-fork SIZE
 *
 * The parent fills SIZE bytes (generation 0), so most of it is evicted when it forks. After the
 * fork, while both processes live, the child rewrites pages p % 3 == 1 and the parent pages
 * p % 3 == 2, each with its own salt; pages p % 3 == 0 stay the shared pre-fork data. Each side
 * waits for the other to finish writing, then checks every page: its own writes, the pre-fork
 * data elsewhere, never the other's writes. Both sides also read a spread of pre-fork pages
 * before writing, so evicted pre-fork data is faulted in on both sides of the fork. The parent
 * exits 0 only if it and the child both passed.
 */
#include <sys/wait.h>

#include "wl-common.h"

enum { SALT_PREFORK = 0, SALT_PARENT = 1, SALT_CHILD = 2 };

static char *region;
static size_t nr_pages;
static pid_t child_pid; /* in the parent */

static void report_child(int status)
{
	if (WIFSIGNALED(status))
		wl_mismatch("child %d was killed by signal %d", child_pid, WTERMSIG(status));
	if (WEXITSTATUS(status))
		wl_mismatch("child %d exited %d", child_pid, WEXITSTATUS(status));
}

static char *page_addr(size_t p)
{
	return region + p * WL_PAGE_SIZE;
}

static void sync_with_other(int wfd, int rfd, const char *who)
{
	char c = 'x';

	if (write(wfd, &c, 1) != 1)
		wl_die("%s: write sync pipe: %m", who);
	if (read(rfd, &c, 1) != 1) {
		int status;

		if (child_pid > 0 && waitpid(child_pid, &status, 0) == child_pid)
			report_child(status);
		wl_die("%s: the other side of the fork went away early", who);
	}
}

static void side(const char *who, uint32_t salt, unsigned mine, int wfd, int rfd)
{
	char what[64];

	/* Fault in a spread of pre-fork pages that this side will not write. */
	snprintf(what, sizeof(what), "%s pre-fork read", who);
	for (size_t p = 0; p < nr_pages; p += 7)
		if (p % 3 != mine)
			wl_page_check(what, page_addr(p), p, 0, SALT_PREFORK, 0);

	for (size_t p = 0; p < nr_pages; p++)
		if (p % 3 == mine)
			wl_page_fill(page_addr(p), p, 1, salt);

	sync_with_other(wfd, rfd, who);

	snprintf(what, sizeof(what), "%s after fork", who);
	for (size_t p = 0; p < nr_pages; p++) {
		if (p % 3 == mine)
			wl_page_check(what, page_addr(p), p, 1, salt, 0);
		else
			wl_page_check(what, page_addr(p), p, 0, SALT_PREFORK, 0);
	}
	/* Second pass after the other side's verification churned its own memory. */
	sync_with_other(wfd, rfd, who);
	for (size_t p = nr_pages; p-- > 0;) {
		if (p % 3 == mine)
			wl_page_check(what, page_addr(p), p, 1, salt, 0);
		else
			wl_page_check(what, page_addr(p), p, 0, SALT_PREFORK, 0);
	}
	wl_log("%s: all %zu pages verified twice", who, nr_pages);
}

int main(int argc, char **argv)
{
	int to_child[2], to_parent[2], status;
	pid_t pid;

	wl_set_prog(argv[0]);
	if (argc != 2)
		wl_die("usage: %s SIZE", argv[0]);
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	if (!nr_pages)
		wl_die("bad SIZE");
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);
	wl_log("%zu pages (%zu MiB)", nr_pages, nr_pages * WL_PAGE_SIZE >> 20);

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(page_addr(p), p, 0, SALT_PREFORK);
	wl_wait_evicted("before fork", region, nr_pages / 2 * WL_PAGE_SIZE, 500,
			wl_expect_eviction(), 30);

	if (pipe(to_child) < 0 || pipe(to_parent) < 0)
		wl_die("pipe: %m");
	wl_phase("fork");
	pid = fork();
	if (pid < 0)
		wl_die("fork: %m");
	if (pid == 0) {
		wl_prog = "wl-fork(child)";
		close(to_child[1]);
		close(to_parent[0]);
		side("child", SALT_CHILD, 1, to_parent[1], to_child[0]);
		fflush(stdout);
		_exit(0);
	}
	child_pid = pid;
	close(to_child[0]);
	close(to_parent[1]);
	side("parent", SALT_PARENT, 2, to_child[1], to_parent[0]);
	close(to_child[1]);

	if (waitpid(pid, &status, 0) < 0)
		wl_die("waitpid: %m");
	report_child(status);
	wl_log("parent and child passed");
	return 0;
}
