/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What memory of a process memext manages: /proc/PID/maps gives the anonymous private writable
 * mappings (malloc's mmaps and arenas, the brk heap, thread stacks, jemalloc's extents), and
 * PAGEMAP_SCAN (or /proc/PID/pagemap on kernels before 6.7) tells which of their pages are
 * present when a range is first registered.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct maps_entry {
	uint64_t start, end; /* bytes */
	bool readable, writable, executable, shared;
	uint64_t offset;
	uint64_t inode;
	char name[64]; /* "" for anonymous, "[heap]", "[stack]", a path (truncated) */
};

/* Parses one line of /proc/PID/maps. Returns 0 or -EINVAL. */
int maps_parse_line(const char *line, struct maps_entry *ret);

/* True for mappings memext may register: private anonymous memory (or [heap] and named
 * anonymous memory), readable and writable or reserved with no access at all (maps.c), and not
 * a special mapping. The main stack is left out by the caller. */
bool maps_entry_eligible(const struct maps_entry *e);

/* Calls fn for every eligible mapping of pid, in address order. Returns 0, fn's non-zero
 * return, or -errno (-ESRCH when the process is gone). */
typedef int (*maps_fn)(const struct maps_entry *e, void *userdata);
int maps_for_each_eligible(pid_t pid, maps_fn fn, void *userdata);

/*
 * Calls fn(start, end) for every run of present (or swapped) pages of [start, end) in the
 * process whose pagemap is open as pagemap_fd. Returns 0 or -errno.
 */
typedef int (*present_fn)(uint64_t start, uint64_t end, void *userdata);
int maps_scan_present(int pagemap_fd, uint64_t start, uint64_t end, present_fn fn,
		      void *userdata);

/* /proc/PID/statm, opened once for maps_resident_pages(): or -errno (-ESRCH: gone). */
int maps_open_statm(pid_t pid);

/* Resident pages of the process whose statm_fd it is (read from its start each time: one
 * system call a look, where opening it anew took three), or -errno. */
int64_t maps_resident_pages(int statm_fd);
