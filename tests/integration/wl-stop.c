/* SPDX-License-Identifier: MIT */
/*
 * wl-stop SIZE
 *
 * A process stopped by a signal (Ctrl-Z) while the system runs short of memory: the kernel
 * would swap it out, and so must memext. The region of SIZE bytes is filled, the workload counts
 * its resident pages (mincore), prints "phase stopped" and stops itself (SIGSTOP); the harness
 * squeezes the system (--squeeze-while-stopped) and sends SIGCONT later. At once the workload
 * counts again: under the shim (MEMEXT_WL_EXPECT_EVICTION=1) at most half of what was resident
 * may still be. Then every page is checked.
 */
#include <signal.h>

#include "wl-common.h"

#define SALT 5

int main(int argc, char **argv)
{
	size_t nr_pages, before, after;
	char *region;

	wl_set_prog(argv[0]);
	if (argc != 2)
		wl_die("usage: wl-stop SIZE");
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(region + p * WL_PAGE_SIZE, p, 1, SALT);
	before = nr_pages - wl_nonresident_pages(region, nr_pages * WL_PAGE_SIZE);
	wl_phase("stopped");
	if (raise(SIGSTOP) != 0)
		wl_die("raise(SIGSTOP): %m");
	after = nr_pages - wl_nonresident_pages(region, nr_pages * WL_PAGE_SIZE);
	wl_log("resident pages: %zu before the stop, %zu after it", before, after);
	if (wl_expect_eviction() && after > before / 2)
		wl_mismatch("%zu of the %zu pages resident before the stop still are after it: "
			    "memext did not evict from the stopped process", after, before);

	wl_phase("check");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check("after the stop", region + p * WL_PAGE_SIZE, p, 1, SALT, 0);
	wl_log("all %zu pages verified", nr_pages);
	return 0;
}
