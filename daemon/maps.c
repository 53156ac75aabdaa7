/* SPDX-License-Identifier: MIT */
#include "maps.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "macro.h"
#include "uffd-compat.h"

int maps_parse_line(const char *line, struct maps_entry *ret)
{
	struct maps_entry e = {0};
	char perms[8], dev[16];
	unsigned long long start, end, off, ino;
	int pos = 0;

	if (sscanf(line, "%llx-%llx %7s %llx %15s %llu %n", &start, &end, perms, &off, dev, &ino,
		   &pos) < 6)
		return -EINVAL;
	if (strlen(perms) != 4 || start >= end)
		return -EINVAL;
	e.start = start;
	e.end = end;
	e.readable = perms[0] == 'r';
	e.writable = perms[1] == 'w';
	e.executable = perms[2] == 'x';
	e.shared = perms[3] == 's';
	e.offset = off;
	e.inode = ino;
	if (pos > 0) {
		const char *name = line + pos;
		size_t n = strcspn(name, "\n");

		if (n >= sizeof(e.name))
			n = sizeof(e.name) - 1;
		memcpy(e.name, name, n);
		e.name[n] = 0;
	}
	*ret = e;
	return 0;
}

bool maps_entry_eligible(const struct maps_entry *e)
{
	bool reserved = !e->readable && !e->writable && !e->executable;

	if (e->shared || e->inode != 0)
		return false;
	/*
	 * Readable and writable, or a reservation with no access at all: glibc reserves each
	 * malloc arena (64 MiB) so and grows it with mprotect, which splits the mapping and keeps
	 * its registration: the memory it makes writable is ours from its first fault, instead
	 * of from the next rescan (10 ms at full speed past the budget).
	 */
	if (!reserved && !(e->readable && e->writable))
		return false;
	if (e->name[0] == 0 || strcmp(e->name, "[heap]") == 0)
		return true;
	/* prctl(PR_SET_VMA_ANON_NAME) names private anonymous memory "[anon:...]". */
	return strncmp(e->name, "[anon:", 6) == 0;
}

int maps_for_each_eligible(pid_t pid, maps_fn fn, void *userdata)
{
	char path[64], line[512];
	FILE *f;
	int r = 0;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : negative_errno();
	while (r == 0 && fgets(line, sizeof(line), f)) {
		struct maps_entry e;

		/* A name longer than the buffer: skip the rest of the line. */
		if (!strchr(line, '\n')) {
			int c;

			while ((c = fgetc(f)) != EOF && c != '\n')
				;
		}
		if (maps_parse_line(line, &e) < 0)
			continue;
		if (maps_entry_eligible(&e))
			r = fn(&e, userdata);
	}
	fclose(f);
	return r;
}

static int scan_pagemap_read(int fd, uint64_t start, uint64_t end, present_fn fn, void *ud)
{
	uint64_t buf[512], run_start = 0;
	bool in_run = false;
	int r;

	for (uint64_t a = start; a < end;) {
		size_t n = MIN((end - a) / PAGE_SIZE, ARRAY_SIZE(buf));
		ssize_t got = pread(fd, buf, n * sizeof(uint64_t), (off_t)(a / PAGE_SIZE * 8));

		if (got < 0)
			return negative_errno();
		if (got == 0)
			break;
		n = (size_t)got / sizeof(uint64_t);
		for (size_t i = 0; i < n; i++, a += PAGE_SIZE) {
			bool present = buf[i] & ((1ULL << 63) | (1ULL << 62));

			if (present && !in_run) {
				run_start = a;
				in_run = true;
			} else if (!present && in_run) {
				in_run = false;
				r = fn(run_start, a, ud);
				if (r)
					return r;
			}
		}
	}
	if (in_run)
		return fn(run_start, end, ud);
	return 0;
}

int maps_scan_present(int pagemap_fd, uint64_t start, uint64_t end, present_fn fn,
		      void *userdata)
{
	struct page_region regions[256];
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.vec = (uint64_t)(uintptr_t)regions,
		.vec_len = ARRAY_SIZE(regions),
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
	};
	uint64_t a = start;
	int r;

	while (a < end) {
		long n;

		arg.start = a;
		arg.end = end;
		arg.walk_end = 0;
		n = ioctl(pagemap_fd, PAGEMAP_SCAN, &arg);
		if (n < 0) {
			if (errno == ENOTTY || errno == EINVAL)
				return scan_pagemap_read(pagemap_fd, a, end, fn, userdata);
			return negative_errno();
		}
		for (long i = 0; i < n; i++) {
			r = fn(regions[i].start, regions[i].end, userdata);
			if (r)
				return r;
		}
		if (arg.walk_end <= a)
			break;
		a = arg.walk_end;
	}
	return 0;
}

int maps_open_statm(pid_t pid)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : negative_errno();
	return fd;
}

int64_t maps_resident_pages(int statm_fd)
{
	char buf[128];
	unsigned long long size, resident;
	ssize_t n;

	if (statm_fd < 0)
		return statm_fd;
	n = pread(statm_fd, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		return negative_errno(); /* ESRCH once the process is gone */
	if (n == 0)
		return -EIO;
	buf[n] = 0;
	if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return -EIO;
	return (int64_t)resident;
}
