/* SPDX-License-Identifier: MIT */
/*
 * wl-secure SIZE
 *
 * Run as a setuid program or built static: the shim must stay out. It prints one line,
 * "secure AT_SECURE euid EUID shim MAPPED", where MAPPED says whether libmemext.so is in its
 * address space, then fills and checks SIZE bytes like the other workloads.
 */
#include <sys/auxv.h>

#include "wl-common.h"

static bool shim_mapped(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	bool found = false;

	if (!f)
		wl_die("/proc/self/maps: %m");
	while (fgets(line, sizeof(line), f))
		found |= strstr(line, "libmemext") != NULL;
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	size_t nr_pages;
	char *region;

	wl_set_prog(argv[0]);
	if (argc != 2)
		wl_die("usage: %s SIZE", argv[0]);
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	printf("secure %lu euid %u shim %d\n", getauxval(AT_SECURE), (unsigned)geteuid(),
	       shim_mapped());
	fflush(stdout);
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(region + p * WL_PAGE_SIZE, p, 0, 0);
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check("final", region + p * WL_PAGE_SIZE, p, 0, 0, 0);
	wl_log("all %zu pages verified", nr_pages);
	return 0;
}
