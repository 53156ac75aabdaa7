/* SPDX-License-Identifier: MIT */
#include "sysmem.h"

#include <errno.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>

int sysmem_read(const char *meminfo_path, const char *psi_path, struct sysmem *ret)
{
	struct sysmem s = {.psi_some_avg10 = -1};
	bool have_total = false, have_avail = false;
	char line[256];
	FILE *f;

	f = fopen(meminfo_path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long kib;

		if (sscanf(line, "MemTotal: %llu kB", &kib) == 1) {
			s.total_bytes = kib * 1024;
			have_total = true;
		} else if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
			s.available_bytes = kib * 1024;
			have_avail = true;
		}
	}
	fclose(f);
	if (!have_total || !have_avail || s.total_bytes == 0)
		return -EBADMSG;
	f = psi_path ? fopen(psi_path, "re") : NULL;
	if (f) {
		double avg10;

		/* "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" */
		if (fgets(line, sizeof(line), f) && sscanf(line, "some avg10=%lf", &avg10) == 1)
			s.psi_some_avg10 = avg10;
		fclose(f);
	}
	*ret = s;
	return 0;
}

enum sysmem_level sysmem_level(const struct sysmem *s, const struct sysmem_wmarks *w,
			       enum sysmem_level prev)
{
	/* Dividing first cannot overflow; a hundredth of MemTotal is precise enough. */
	uint64_t min = s->total_bytes / 100 * w->min_pct;
	uint64_t low = s->total_bytes / 100 * w->low_pct;
	uint64_t high = s->total_bytes / 100 * w->high_pct;

	if (s->available_bytes < min)
		return SYSMEM_MIN;
	if (s->available_bytes < low)
		return SYSMEM_LOW;
	/* Stalls count below high only: with more available they come from a memory cgroup's
	 * limit or the page cache, which evicting our clients would not relieve. */
	if (w->psi_pct && s->psi_some_avg10 >= (double)w->psi_pct && s->available_bytes < high)
		return SYSMEM_LOW;
	if (prev != SYSMEM_OK && s->available_bytes < high)
		return SYSMEM_LOW;
	return SYSMEM_OK;
}

const char *sysmem_level_name(enum sysmem_level l)
{
	switch (l) {
	case SYSMEM_OK:
		return "ok";
	case SYSMEM_LOW:
		return "low";
	case SYSMEM_MIN:
		return "min";
	}
	return "?";
}
