/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The system's memory, for the watermarks of the whole machine: MemAvailable against MemTotal
 * (/proc/meminfo) and, where the kernel has it, the memory pressure stall (PSI,
 * /proc/pressure/memory). The same watermark percentages that hold for a client's budget hold
 * for MemTotal: below low, reclaim evicts from every client, budget or not, until
 * MemAvailable is above high again; below min, faults that add resident pages wait for
 * reclaim (the kernel's direct reclaim).
 */

#include <stdint.h>

enum sysmem_level {
	SYSMEM_OK,  /* nothing to do */
	SYSMEM_LOW, /* reclaim from every client */
	SYSMEM_MIN, /* ... and throttle their growth */
};

struct sysmem {
	uint64_t total_bytes;
	uint64_t available_bytes;
	double psi_some_avg10; /* percent; -1 when the kernel has no PSI */
};

struct sysmem_wmarks {
	unsigned min_pct, low_pct, high_pct; /* of MemTotal, kept available */
	unsigned psi_pct;		     /* PSI some avg10 at which reclaim runs too; 0: never */
};

/* Reads meminfo_path (/proc/meminfo or a file of the same format) and psi_path (NULL or
 * missing: no PSI). Returns 0 or -errno (-EBADMSG when MemTotal or MemAvailable is missing). */
int sysmem_read(const char *meminfo_path, const char *psi_path, struct sysmem *ret);

/* The level now, given the level before (reclaim that started below low goes on until
 * MemAvailable is above high). */
enum sysmem_level sysmem_level(const struct sysmem *s, const struct sysmem_wmarks *w,
			       enum sysmem_level prev);

const char *sysmem_level_name(enum sysmem_level l);
