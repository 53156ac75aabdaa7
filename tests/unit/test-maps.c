/* SPDX-License-Identifier: MIT */
/*
 * Which mappings memext registers (maps.h): private anonymous memory that is readable and
 * writable, or reserved with no access at all (as glibc reserves malloc arenas before it grows
 * them with mprotect); never shared, file-backed or read-only memory. Checked on lines as
 * /proc/PID/maps prints them, then on this process's own maps.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "maps.h"

static bool eligible(const char *line)
{
	struct maps_entry e;

	check(maps_parse_line(line, &e) == 0);
	return maps_entry_eligible(&e);
}

static void test_lines(void)
{
	check(eligible("7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n"));
	check(eligible("55d000000000-55d000100000 rw-p 00000000 00:00 0                  [heap]\n"));
	check(eligible("7f0000000000-7f0000001000 rw-p 00000000 00:00 0     [anon:jemalloc]\n"));
	check(eligible("7f0004000000-7f0008000000 ---p 00000000 00:00 0 \n")); /* an arena */
	check(!eligible("7f0000000000-7f0000001000 r--p 00000000 00:00 0 \n"));
	check(!eligible("7f0000000000-7f0000001000 r-xp 00000000 00:00 0 \n"));
	check(!eligible("7f0000000000-7f0000001000 rw-s 00000000 00:05 1234    /dev/zero\n"));
	check(!eligible("7f0000000000-7f0000001000 ---s 00000000 00:05 1234    /dev/zero\n"));
	check(!eligible("7f0000000000-7f0000001000 rw-p 00001000 08:01 4321    /usr/lib/x.so\n"));
	check(!eligible("7f0000000000-7f0000001000 ---p 00003000 08:01 4321    /usr/lib/x.so\n"));
}

struct find {
	uint64_t start, end;
	unsigned found; /* eligible mappings inside [start, end) */
	uint64_t covered;
};

static int find_one(const struct maps_entry *e, void *userdata)
{
	struct find *f = userdata;

	if (e->start >= f->start && e->end <= f->end) {
		f->found++;
		f->covered += e->end - e->start;
	}
	return 0;
}

/* A reservation is found, and once half of it is made writable (which splits it), both halves. */
static void test_own_reservation(void)
{
	size_t len = 64 * 4096;
	char *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct find f;

	check(p != MAP_FAILED);
	f = (struct find){(uint64_t)(uintptr_t)p, (uint64_t)(uintptr_t)p + len, 0, 0};
	check(maps_for_each_eligible(getpid(), find_one, &f) == 0);
	check(f.found == 1 && f.covered == len);
	check(mprotect(p, len / 2, PROT_READ | PROT_WRITE) == 0);
	f.found = 0;
	f.covered = 0;
	check(maps_for_each_eligible(getpid(), find_one, &f) == 0);
	check(f.found == 2 && f.covered == len);
	check(mprotect(p + len / 2, len / 2, PROT_READ) == 0); /* read-only: not ours */
	f.found = 0;
	f.covered = 0;
	check(maps_for_each_eligible(getpid(), find_one, &f) == 0);
	check(f.found == 1 && f.covered == len / 2);
	munmap(p, len);
}

int main(void)
{
	test_lines();
	test_own_reservation();
	printf("test-maps: ok\n");
	return 0;
}
