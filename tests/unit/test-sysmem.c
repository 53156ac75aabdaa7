/* SPDX-License-Identifier: MIT */
/*
 * The system's watermarks: /proc/meminfo and PSI parsed from files of their format, and the
 * level with its hysteresis (reclaim started below low runs until above high), PSI as a second
 * trigger, and the min level.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/sysmem.h"

#include "check.h"

static char dir[] = "/tmp/test-sysmem-XXXXXX";

static const char *write_file(const char *name, const char *text)
{
	static char path[2][256];
	static int k;
	char *p = path[k++ % 2];
	FILE *f;

	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	f = fopen(p, "w");
	check(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static void test_read(void)
{
	struct sysmem s;
	const char *mi = write_file("meminfo", "MemTotal:       24731700 kB\n"
					       "MemFree:         1000000 kB\n"
					       "MemAvailable:   23748084 kB\n"
					       "Buffers:          123 kB\n");
	const char *psi = write_file("psi", "some avg10=12.50 avg60=1.09 avg300=0.64 total=3388\n"
					    "full avg10=0.00 avg60=1.08 avg300=0.64 total=2825\n");

	check(sysmem_read(mi, psi, &s) == 0);
	check(s.total_bytes == 24731700ULL * 1024 && s.available_bytes == 23748084ULL * 1024);
	check(s.psi_some_avg10 > 12.49 && s.psi_some_avg10 < 12.51);
	check(sysmem_read(mi, "/nonexistent/psi", &s) == 0 && s.psi_some_avg10 < 0);
	check(sysmem_read("/nonexistent/meminfo", NULL, &s) == -ENOENT);
	mi = write_file("meminfo", "MemTotal: 1000 kB\nMemFree: 10 kB\n"); /* no MemAvailable */
	check(sysmem_read(mi, NULL, &s) == -EBADMSG);
}

static enum sysmem_level level(uint64_t avail_pct, double psi, enum sysmem_level prev)
{
	const struct sysmem_wmarks w = {.min_pct = 2, .low_pct = 5, .high_pct = 10, .psi_pct = 10};
	struct sysmem s = {
		.total_bytes = 100ULL << 30,
		.available_bytes = (100ULL << 30) / 100 * avail_pct,
		.psi_some_avg10 = psi,
	};

	return sysmem_level(&s, &w, prev);
}

static void test_levels(void)
{
	/* Plenty: nothing, whatever came before, as long as it is above high. */
	check(level(50, 0, SYSMEM_OK) == SYSMEM_OK);
	check(level(50, 0, SYSMEM_LOW) == SYSMEM_OK);
	/* Between low and high: the hysteresis decides. */
	check(level(7, 0, SYSMEM_OK) == SYSMEM_OK);
	check(level(7, 0, SYSMEM_LOW) == SYSMEM_LOW);
	check(level(7, 0, SYSMEM_MIN) == SYSMEM_LOW);
	/* Below low and below min. */
	check(level(4, 0, SYSMEM_OK) == SYSMEM_LOW);
	check(level(1, 0, SYSMEM_OK) == SYSMEM_MIN);
	check(level(1, 0, SYSMEM_LOW) == SYSMEM_MIN);
	/* Pressure stalls start reclaim between low and high, before MemAvailable reaches low;
	 * without PSI (-1) they cannot. */
	check(level(7, 10.0, SYSMEM_OK) == SYSMEM_LOW);
	check(level(7, 9.9, SYSMEM_OK) == SYSMEM_OK);
	check(level(7, -1, SYSMEM_OK) == SYSMEM_OK);
	/* Above high they are some memory cgroup's or the page cache's: not ours to relieve. */
	check(level(50, 10.0, SYSMEM_OK) == SYSMEM_OK);
	check(level(11, 80.0, SYSMEM_LOW) == SYSMEM_OK);
	/* A trace: MemAvailable falls, reclaim starts at low, goes on until high. */
	{
		const unsigned trace[] = {20, 12, 8, 4, 6, 9, 11, 8};
		const enum sysmem_level want[] = {SYSMEM_OK,  SYSMEM_OK,  SYSMEM_OK, SYSMEM_LOW,
						  SYSMEM_LOW, SYSMEM_LOW, SYSMEM_OK, SYSMEM_OK};
		enum sysmem_level l = SYSMEM_OK;

		for (size_t i = 0; i < sizeof(trace) / sizeof(trace[0]); i++) {
			l = level(trace[i], 0, l);
			check(l == want[i]);
		}
	}
	check(strcmp(sysmem_level_name(SYSMEM_MIN), "min") == 0);
}

int main(void)
{
	check(mkdtemp(dir));
	test_read();
	test_levels();
	unlink(write_file("meminfo", ""));
	unlink(write_file("psi", ""));
	rmdir(dir);
	printf("sysmem: parsing and watermark levels as expected\n");
	return 0;
}
