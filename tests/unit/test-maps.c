/* SPDX-License-Identifier: MIT */
/*
 * Which mappings memext registers (maps.h): private anonymous memory that is readable and
 * writable, or reserved with no access at all (as glibc reserves malloc arenas before it grows
 * them with mprotect); never shared, file-backed or read-only memory. Checked on lines as
 * /proc/PID/maps prints them, then on this process's own maps. And which mappings a userfaultfd
 * holds (smaps' VmFlags), on lines and on a mapping this process registers with one.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
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

static void test_vmflags(void)
{
	check(!maps_vmflags_uffd("VmFlags: rd wr mr mw me ac \n"));
	check(maps_vmflags_uffd("VmFlags: rd wr mr mw me um ac \n"));
	check(maps_vmflags_uffd("VmFlags: rd wr mr mw me ac uw\n"));
	check(maps_vmflags_uffd("VmFlags: ui rd wr\n"));
	/* Only whole two-letter flags, only on the VmFlags line. */
	check(!maps_vmflags_uffd("VmFlags: rd wr umx ac\n"));
	check(!maps_vmflags_uffd("Name: um uw\n"));
}

struct held {
	uint64_t start, end;
	int mappings, held;
};

static int note_held(uint64_t start, uint64_t end, bool held, void *userdata)
{
	struct held *h = userdata;

	if (start < h->end && end > h->start) {
		h->mappings++;
		h->held += held;
	}
	return 0;
}

/* A mapping this process registers with a userfaultfd is held, and no longer once unregistered. */
static void test_own_uffd(void)
{
	size_t len = 16 * 4096;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg = {.range = {(uint64_t)(uintptr_t)p, len},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	struct held h = {(uint64_t)(uintptr_t)p, (uint64_t)(uintptr_t)p + len, 0, 0};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);

	check(p != MAP_FAILED);
	if (fd < 0 || ioctl(fd, UFFDIO_API, &api) < 0 || ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
		printf("test-maps: no userfaultfd here (%s): own-registration part skipped\n",
		       strerror(errno));
		if (fd >= 0)
			close(fd);
		munmap(p, len);
		return;
	}
	check(maps_for_each_uffd(getpid(), note_held, &h) == 0);
	check(h.mappings == 1 && h.held == 1);
	check(ioctl(fd, UFFDIO_UNREGISTER, &reg.range) == 0);
	h.mappings = h.held = 0;
	check(maps_for_each_uffd(getpid(), note_held, &h) == 0);
	check(h.mappings == 1 && h.held == 0);
	close(fd);
	munmap(p, len);
	h.mappings = h.held = 0;
	check(maps_for_each_uffd(getpid(), note_held, &h) == 0);
	check(h.mappings == 0);
}

int main(void)
{
	test_lines();
	test_own_reservation();
	test_vmflags();
	test_own_uffd();
	printf("test-maps: ok\n");
	return 0;
}
