/* SPDX-License-Identifier: MIT */
/*
 * Swap areas on regular files: swapon checks and their messages, priorities and round-robin,
 * page I/O byte for byte (buffered and O_DIRECT, single and batched, several threads), disk
 * errors (EIO, ENOSPC) reported and counted, swapoff. Block devices: test-swapfile-loop.c.
 */
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/swap.h>

#include "macro.h"
#include "mkswap.h"
#include "swapfile.h"
#include "swap-test.h"

#define MiB (1024ULL * 1024)

static const char *dir;
static char kernel_swapped[512]; /* swapoff at exit, whatever happened */

static void kernel_swapoff(void)
{
	if (kernel_swapped[0])
		swapoff(kernel_swapped);
}

static char *path_in(const char *name)
{
	static char bufs[8][512];
	static unsigned next;
	char *p = bufs[next++ % 8];

	snprintf(p, 512, "%s/%s", dir, name);
	return p;
}

static void make_area(const char *path, uint64_t size, const char *label)
{
	struct mkswap_options o = {.size_bytes = size, .label = label};
	char err[512];

	if (mkswap_format(path, &o, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "mkswap_format: %s\n", err);
		exit(1);
	}
}

/* swapon must fail with r and a message naming path and phrase. */
static void expect_swapon_fails(struct swapfile *sf, const char *path, unsigned flags, int r,
				const char *phrase)
{
	char err[512] = "";

	CHECK_EQ(swapfile_swapon(sf, path, 0, flags, err, sizeof(err)), r);
	CHECK_MSG(err, path, phrase);
}

static void test_swapon(void)
{
	const unsigned char uuid[16] = {0xaa, 0xbb, [15] = 0x01};
	struct mkswap_options o = {.size_bytes = 16 * MiB, .label = "first", .uuid = uuid};
	struct swapfile_area_stats as;
	struct swapfile_stats st;
	struct swapfile *sf;
	char err[512];
	int type;

	CHECK_EQ(mkswap_format(path_in("a"), &o, NULL, err, sizeof(err)), 0);
	CHECK_EQ(swapfile_new(&sf), 0);
	type = swapfile_swapon(sf, path_in("a"), SWAPFILE_PRIO_DEFAULT, 0, err, sizeof(err));
	CHECK_EQ(type, 0);
	CHECK_EQ(swapfile_get_area_stats(sf, 0, &as), 0);
	CHECK(!strcmp(as.path, path_in("a")));
	CHECK(!strcmp(as.label, "first"));
	CHECK(!memcmp(as.uuid, uuid, 16));
	CHECK_EQ(as.total_slots, 16 * MiB / 4096 - 1);
	CHECK_EQ(as.used_slots, 0);
	CHECK_EQ(as.bad_slots, 0);
	CHECK_EQ(as.prio, -2);
	CHECK(!as.bdev && !as.direct_io && !as.draining);
	CHECK(!as.has_holes); /* mkswap_format allocates the blocks */
	CHECK_EQ(swapfile_get_area_stats(sf, 1, &as), -ENOENT);
	swapfile_get_stats(sf, &st);
	CHECK_EQ(st.nr_areas, 1);
	CHECK_EQ(st.total_slots, 16 * MiB / 4096 - 1);
	CHECK_EQ(st.bd_count, 0);
	CHECK_EQ(swap_count(sf, swp_entry(0, 0)), SWAP_MAP_BAD);

	/* The same file twice: the lock says another memext holds it. */
	expect_swapon_fails(sf, path_in("a"), 0, -EBUSY, "in use by another memext");
	CHECK_EQ(swapfile_swapoff(sf, 0), 0);
	CHECK_EQ(swapfile_swapoff(sf, 0), -ENOENT);
	CHECK_EQ(swapfile_swapon(sf, path_in("a"), 3, 0, err, sizeof(err)), 0);
	swapfile_free(sf);
}

static void write_at(const char *path, off_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY);

	CHECK(fd >= 0);
	CHECK_EQ(pwrite(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static void test_swapon_errors(void)
{
	struct swapfile *sf;
	uint32_t v;
	int fd;

	CHECK_EQ(swapfile_new(&sf), 0);
	expect_swapon_fails(sf, path_in("missing"), 0, -ENOENT, "No such file");
	expect_swapon_fails(sf, dir, 0, -EINVAL,
			    "not a regular file or block device (it is a "
			    "directory)");
	expect_swapon_fails(sf, "/dev/null", 0, -EINVAL, "(it is a character device)");
	CHECK_EQ(mkfifo(path_in("fifo"), 0600), 0);
	expect_swapon_fails(sf, path_in("fifo"), 0, -EINVAL, "(it is a FIFO)");

	fd = open(path_in("zeroes"), O_CREAT | O_RDWR, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, 4 * MiB), 0);
	close(fd);
	expect_swapon_fails(sf, path_in("zeroes"), 0, -EINVAL, "no \"SWAPSPACE2\" signature");

	fd = open(path_in("tiny"), O_CREAT | O_RDWR, 0600);
	CHECK(fd >= 0);
	close(fd);
	expect_swapon_fails(sf, path_in("tiny"), 0, -EINVAL, "too small");

	/* Truncated after mkswap: last_page beyond the end. */
	make_area(path_in("short"), 8 * MiB, NULL);
	CHECK_EQ(truncate(path_in("short"), 4 * MiB), 0);
	expect_swapon_fails(sf, path_in("short"), 0, -EFBIG, "last_page 2047 is beyond the end");

	/* Header fields broken in the file itself; test-swap-header checks every case. */
	make_area(path_in("v2"), 4 * MiB, NULL);
	v = 2;
	write_at(path_in("v2"), 1024, &v, 4);
	expect_swapon_fails(sf, path_in("v2"), 0, -EINVAL, "version 2");
	make_area(path_in("badcount"), 4 * MiB, NULL);
	v = 1000;
	write_at(path_in("badcount"), 1032, &v, 4);
	expect_swapon_fails(sf, path_in("badcount"), 0, -EINVAL, "nr_badpages 1000 does not fit");
	make_area(path_in("magic"), 4 * MiB, NULL);
	write_at(path_in("magic"), 4086, "SWAP-SPACE", 10);
	expect_swapon_fails(sf, path_in("magic"), 0, -EINVAL, "version 0");

	/* An immutable file cannot be opened for writing, not even by root. */
	make_area(path_in("immutable"), 4 * MiB, NULL);
	fd = open(path_in("immutable"), O_RDONLY);
	CHECK(fd >= 0);
	{
		int flags = 0;

		if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 &&
		    (flags |= FS_IMMUTABLE_FL, ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0)) {
			char err[512];
			int r = swapfile_swapon(sf, path_in("immutable"), 0, 0, err, sizeof(err));

			flags &= ~FS_IMMUTABLE_FL;
			CHECK_EQ(ioctl(fd, FS_IOC_SETFLAGS, &flags), 0);
			CHECK_EQ(r, -EPERM);
			CHECK_MSG(err, path_in("immutable"), "permission denied");
		} else {
			printf("immutable file: skipped, %m\n");
		}
	}
	close(fd);

	CHECK_EQ(swapfile_swapon(sf, path_in("immutable"), 0, 0, NULL, 0), 0);
	swapfile_free(sf);
}

/* The kernel swaps to the file: memext must not write to it. */
static void test_kernel_swap_busy(void)
{
	struct swapfile *sf;

	make_area(path_in("kswap"), 16 * MiB, NULL);
	if (swapon(path_in("kswap"), 0) < 0) {
		printf("kernel swap busy: skipped, swapon: %m\n");
		return;
	}
	snprintf(kernel_swapped, sizeof(kernel_swapped), "%s", path_in("kswap"));
	CHECK_EQ(swapfile_new(&sf), 0);
	expect_swapon_fails(sf, path_in("kswap"), 0, -EBUSY, "in use as swap by the kernel");
	swapfile_free(sf);
	CHECK_EQ(swapoff(kernel_swapped), 0);
	kernel_swapped[0] = '\0';
}

/* A read-only file system, in a mount namespace of a child so nothing is left mounted. */
static void test_read_only_fs(void)
{
	pid_t pid;
	int st;

	fflush(NULL); /* the child must not print what the parent buffered */
	pid = fork();

	CHECK(pid >= 0);
	if (pid == 0) {
		const char *mnt = path_in("rofs");
		char file[600];
		struct swapfile *sf;

		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || mkdir(mnt, 0700) < 0 ||
		    mount("memext-test", mnt, "tmpfs", 0, "size=8m") < 0) {
			printf("read-only file system: skipped, %m\n");
			fflush(stdout);
			_exit(EXIT_SKIP);
		}
		snprintf(file, sizeof(file), "%s/area", mnt);
		make_area(file, 4 * MiB, NULL);
		CHECK_EQ(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
		CHECK_EQ(swapfile_new(&sf), 0);
		expect_swapon_fails(sf, file, 0, -EROFS, "read-only file system");
		swapfile_free(sf);
		_exit(0);
	}
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == EXIT_SKIP));
	rmdir(path_in("rofs"));
}

static unsigned area_of(uint64_t e)
{
	return swp_type(e);
}

static void test_priorities(void)
{
	struct swapfile_area_stats as;
	struct swapfile *sf;
	uint64_t e, first_a = 0;
	unsigned per_area = 40 * MiB / 4096 - 1;
	unsigned counts[5] = {0};
	int ta, tb, tc, td, te;
	unsigned last = 99;

	/* A: prio 10; B and C: prio 5; D and E: default (-2, -3). */
	const char *names[] = {"pa", "pb", "pc", "pd", "pe"};

	for (unsigned i = 0; i < 5; i++)
		make_area(path_in(names[i]), 40 * MiB, NULL);
	CHECK_EQ(swapfile_new(&sf), 0);
	td = swapfile_swapon(sf, path_in("pd"), SWAPFILE_PRIO_DEFAULT, 0, NULL, 0);
	tb = swapfile_swapon(sf, path_in("pb"), 5, 0, NULL, 0);
	ta = swapfile_swapon(sf, path_in("pa"), 10, 0, NULL, 0);
	te = swapfile_swapon(sf, path_in("pe"), SWAPFILE_PRIO_DEFAULT, 0, NULL, 0);
	tc = swapfile_swapon(sf, path_in("pc"), 5, 0, NULL, 0);
	CHECK(ta >= 0 && tb >= 0 && tc >= 0 && td >= 0 && te >= 0);
	CHECK_EQ(swapfile_get_area_stats(sf, (unsigned)td, &as), 0);
	CHECK_EQ(as.prio, -2);
	CHECK_EQ(swapfile_get_area_stats(sf, (unsigned)te, &as), 0);
	CHECK_EQ(as.prio, -3);

	/* Highest priority first, alone while it has room. */
	for (unsigned i = 0; i < per_area; i++) {
		CHECK_EQ(swapfile_alloc(sf, 1, &e), 1);
		CHECK_EQ(area_of(e), ta);
		if (!i)
			first_a = e;
	}
	/* Then B and C in turn, one slot each. */
	for (unsigned i = 0; i < 2 * per_area; i++) {
		CHECK_EQ(swapfile_alloc(sf, 1, &e), 1);
		CHECK(area_of(e) == (unsigned)tb || area_of(e) == (unsigned)tc);
		CHECK(area_of(e) != last);
		last = area_of(e);
		counts[area_of(e)]++;
	}
	CHECK_EQ(counts[tb], per_area);
	CHECK_EQ(counts[tc], per_area);
	/* A freed slot of a higher priority is used before lower ones. */
	CHECK_EQ(swap_free(sf, first_a), 0);
	CHECK_EQ(swapfile_alloc(sf, 1, &e), 1);
	CHECK_EQ(e, first_a);
	/* Then D (-2), then E (-3), then nothing. */
	for (unsigned i = 0; i < per_area; i++) {
		CHECK_EQ(swapfile_alloc(sf, 1, &e), 1);
		CHECK_EQ(area_of(e), td);
	}
	for (unsigned i = 0; i < per_area; i++) {
		CHECK_EQ(swapfile_alloc(sf, 1, &e), 1);
		CHECK_EQ(area_of(e), te);
	}
	CHECK_EQ(swapfile_alloc(sf, 1, &e), -ENOSPC);

	/* swapoff: allocation stops at once; the area goes when its last slot is freed. */
	CHECK_EQ(swapfile_swapoff(sf, (unsigned)ta), -EBUSY);
	CHECK_EQ(swapfile_get_area_stats(sf, (unsigned)ta, &as), 0);
	CHECK(as.draining);
	for (uint32_t s = 1; s <= per_area; s++)
		CHECK_EQ(swap_free(sf, swp_entry((unsigned)ta, s)), 0);
	CHECK_EQ(swapfile_alloc(sf, 1, &e), -ENOSPC);
	CHECK_EQ(swapfile_swapoff(sf, (unsigned)ta), 0);
	CHECK_EQ(swap_count(sf, swp_entry((unsigned)ta, 1)), -EINVAL);
	/* Its type is free for the next area. */
	CHECK_EQ(swapfile_swapon(sf, path_in("pa"), 1, 0, NULL, 0), ta);
	CHECK_EQ(swapfile_alloc(sf, 1, &e), 1);
	CHECK_EQ(area_of(e), ta);
	swapfile_free(sf);
}

static void check_file_slot(const char *path, uint32_t slot, const void *page)
{
	unsigned char buf[4096];
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0);
	/* The kernel's layout: slot n at byte n * 4096. */
	CHECK_EQ(pread(fd, buf, sizeof(buf), (off_t)slot * 4096), 4096);
	CHECK(!memcmp(buf, page, 4096));
	close(fd);
}

static void roundtrip(unsigned flags)
{
	enum { N = 600 };
	static uint64_t ent[N];
	/* Two pages of room per page, so that an unaligned page overlaps no other. */
	unsigned char *pages = aligned_alloc(4096, 2 * N * 4096ULL);
	unsigned char *back = aligned_alloc(4096, 2 * N * 4096ULL);
	void *wp[N], *rp[N];
	struct swapfile_stats st;
	struct swapfile *sf;
	unsigned done, got = 0;
	char err[512];

	CHECK(pages && back);
	make_area(path_in("io"), 32 * MiB, NULL);
	CHECK_EQ(swapfile_new(&sf), 0);
	if (swapfile_swapon(sf, path_in("io"), 0, flags, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	while (got < N) {
		int n = swapfile_alloc(sf, N - got, ent + got);

		CHECK(n > 0);
		got += (unsigned)n;
	}
	/* Odd pages sit one byte off page alignment: O_DIRECT must bounce them. */
	for (unsigned i = 0; i < N; i++) {
		wp[i] = pages + (size_t)i * 8192 + (i & 1);
		rp[i] = back + (size_t)i * 8192 + ((i >> 1) & 1);
		swap_test_fill(wp[i], i + 1000 * flags);
	}
	/* The batched half in an order that is not the slots': runs must break at each gap. */
	for (unsigned i = N / 2, j = N - 1; i < j; i += 2, j -= 2) {
		uint64_t t = ent[i];

		ent[i] = ent[j];
		ent[j] = t;
	}
	for (unsigned i = 0; i < N / 2; i++)
		CHECK_EQ(swapfile_write_page(sf, ent[i], wp[i]), 0);
	CHECK_EQ(swapfile_write_pages(sf, ent + N / 2, (const void *const *)wp + N / 2, N - N / 2,
				      &done),
		 0);
	CHECK_EQ(done, N - N / 2);
	for (unsigned i = 0; i < N / 2; i++) {
		memset(rp[i], 0, 4096);
		CHECK_EQ(swapfile_read_pages(sf, ent + i, rp + i, 1, NULL), 0);
	}
	for (unsigned i = N / 2; i < N; i++)
		memset(rp[i], 0, 4096);
	CHECK_EQ(swapfile_read_pages(sf, ent + N / 2, rp + N / 2, N - N / 2, &done), 0);
	CHECK_EQ(done, N - N / 2);
	for (unsigned i = 0; i < N; i++) {
		CHECK(!memcmp(rp[i], wp[i], 4096));
		if (i % 25 == 0)
			check_file_slot(path_in("io"), swp_offset(ent[i]), wp[i]);
	}
	swapfile_get_stats(sf, &st);
	CHECK_EQ(st.bd_writes, N);
	CHECK_EQ(st.bd_reads, N);
	CHECK_EQ(st.bd_count, N);
	CHECK_EQ(st.read_errors + st.write_errors, 0);

	/* Entries are checked before any I/O: header, free, unknown area, past the end. */
	CHECK_EQ(swapfile_write_page(sf, swp_entry(0, 0), wp[0]), -EINVAL);
	CHECK_EQ(swapfile_read_page(sf, swp_entry(0, N + 100), rp[0]), -EINVAL);
	CHECK_EQ(swapfile_read_page(sf, swp_entry(7, 1), rp[0]), -EINVAL);
	CHECK_EQ(swapfile_read_page(sf, swp_entry(0, 0xffffffffU), rp[0]), -EINVAL);
	CHECK_EQ(swap_free(sf, ent[3]), 0);
	CHECK_EQ(swapfile_read_page(sf, ent[3], rp[0]), -EINVAL);
	{
		uint64_t mixed[2] = {ent[4], ent[3]};

		CHECK_EQ(swapfile_write_pages(sf, mixed, (const void *const *)wp, 2, &done),
			 -EINVAL);
		CHECK_EQ(done, 0);
	}
	swapfile_get_stats(sf, &st);
	CHECK_EQ(st.bd_writes, N);
	CHECK_EQ(st.bd_count, N - 1);
	/* A shared slot stays readable until its last reference goes. */
	CHECK_EQ(swap_duplicate(sf, ent[5]), 0);
	CHECK_EQ(swap_count(sf, ent[5]), 2);
	CHECK_EQ(swap_free(sf, ent[5]), 1);
	CHECK_EQ(swapfile_read_page(sf, ent[5], rp[5]), 0);
	CHECK(!memcmp(rp[5], wp[5], 4096));
	CHECK_EQ(swap_free(sf, ent[5]), 0);
	CHECK_EQ(swap_duplicate(sf, ent[5]), -EINVAL);

	swapfile_free(sf);
	free(pages);
	free(back);
	unlink(path_in("io"));
}

/* Threads writing, reading back and freeing their own slots at once. */
static struct swapfile *mt_sf;

static void *io_worker(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	unsigned char *w = malloc(4096 * 16), *r = malloc(4096 * 16);
	void *wp[16], *rp[16];
	uint64_t e[16];

	CHECK(w && r);
	for (unsigned i = 0; i < 16; i++) {
		wp[i] = w + i * 4096;
		rp[i] = r + i * 4096;
	}
	for (unsigned round = 0; round < 300; round++) {
		int n = swapfile_alloc(mt_sf, 1 + (round % 16), e);

		CHECK(n > 0);
		for (int i = 0; i < n; i++)
			swap_test_fill(wp[i], (uint64_t)me << 32 | round << 8 | (unsigned)i);
		CHECK_EQ(swapfile_write_pages(mt_sf, e, (const void *const *)wp, (unsigned)n, NULL),
			 0);
		CHECK_EQ(swapfile_read_pages(mt_sf, e, rp, (unsigned)n, NULL), 0);
		for (int i = 0; i < n; i++) {
			CHECK(!memcmp(wp[i], rp[i], 4096));
			CHECK_EQ(swap_free(mt_sf, e[i]), 0);
		}
	}
	free(w);
	free(r);
	return NULL;
}

static void test_threads(void)
{
	pthread_t t[4];
	struct swapfile_stats st;

	make_area(path_in("mt1"), 8 * MiB, NULL);
	make_area(path_in("mt2"), 8 * MiB, NULL);
	CHECK_EQ(swapfile_new(&mt_sf), 0);
	CHECK_EQ(swapfile_swapon(mt_sf, path_in("mt1"), 1, 0, NULL, 0), 0);
	CHECK_EQ(swapfile_swapon(mt_sf, path_in("mt2"), 1, SWAPFILE_DIRECT_IO, NULL, 0), 1);
	for (uintptr_t i = 0; i < 4; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, io_worker, (void *)i), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	swapfile_get_stats(mt_sf, &st);
	CHECK_EQ(st.bd_count, 0);
	CHECK_EQ(st.bd_writes, st.bd_reads);
	CHECK(st.bd_writes >= 4 * 300);
	swapfile_free(mt_sf);
}

/* A read past the end of a file that shrank under us is EIO, counted, and the area goes on. */
static void test_eio(void)
{
	unsigned char page[4096], back[4096];
	struct swapfile_area_stats as;
	struct swapfile *sf;
	uint64_t e[64];
	int n;

	make_area(path_in("eio"), 8 * MiB, NULL);
	CHECK_EQ(swapfile_new(&sf), 0);
	CHECK_EQ(swapfile_swapon(sf, path_in("eio"), 0, 0, NULL, 0), 0);
	n = swapfile_alloc(sf, 64, e);
	CHECK_EQ(n, 64);
	swap_test_fill(page, 7);
	for (int i = 0; i < n; i++)
		CHECK_EQ(swapfile_write_page(sf, e[i], page), 0);
	CHECK_EQ(truncate(path_in("eio"), 32 * 4096), 0);
	CHECK_EQ(swapfile_read_page(sf, e[2], back), 0);
	CHECK(!memcmp(back, page, 4096));
	CHECK_EQ(swapfile_read_page(sf, e[40], back), -EIO);
	CHECK_EQ(swapfile_get_area_stats(sf, 0, &as), 0);
	CHECK_EQ(as.read_errors, 1);
	CHECK_EQ(as.bd_reads, 1);
	swapfile_free(sf);
}

/* A sparse swap file on a full file system: writes fail with ENOSPC, counted. */
static void test_enospc(void)
{
	pid_t pid;
	int st;

	fflush(NULL); /* the child must not print what the parent buffered */
	pid = fork();

	CHECK(pid >= 0);
	if (pid == 0) {
		const char *mnt = path_in("small");
		unsigned char page[4096];
		union swap_header h;
		struct swapfile_area_stats as;
		struct swapfile *sf;
		char file[600], err[512];
		uint64_t e[64];
		unsigned done = 99;
		void *pp[64];
		int fd, r = 0, n;

		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || mkdir(mnt, 0700) < 0 ||
		    mount("memext-test", mnt, "tmpfs", 0, "size=256k") < 0) {
			printf("ENOSPC: skipped, %m\n");
			fflush(stdout);
			_exit(EXIT_SKIP);
		}
		/* As util-linux mkswap leaves a file made by truncate: sparse. */
		snprintf(file, sizeof(file), "%s/sparse", mnt);
		fd = open(file, O_CREAT | O_RDWR, 0600);
		CHECK(fd >= 0);
		CHECK_EQ(swap_header_encode(&h, 1024, NULL, NULL, NULL, 0, err, sizeof(err)), 0);
		CHECK_EQ(pwrite(fd, &h, sizeof(h), 0), 4096);
		CHECK_EQ(ftruncate(fd, 4 * MiB), 0);
		close(fd);
		CHECK_EQ(swapfile_new(&sf), 0);
		CHECK_EQ(swapfile_swapon(sf, file, 0, 0, NULL, 0), 0);
		CHECK_EQ(swapfile_get_area_stats(sf, 0, &as), 0);
		CHECK(as.has_holes);
		swap_test_fill(page, 3);
		/* 256 KiB hold 64 pages at most, the header's among them. */
		for (int i = 0; i < 2 && r == 0; i++) {
			n = swapfile_alloc(sf, 64, e);
			CHECK_EQ(n, 64);
			for (int k = 0; k < 64; k++)
				pp[k] = page;
			r = swapfile_write_pages(sf, e, (const void *const *)pp, 64, &done);
		}
		CHECK_EQ(r, -ENOSPC);
		CHECK(done < 64);
		CHECK_EQ(swapfile_get_area_stats(sf, 0, &as), 0);
		CHECK(as.write_errors > 0);
		CHECK(as.bd_writes < 64);
		swapfile_free(sf);
		_exit(0);
	}
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == EXIT_SKIP));
	rmdir(path_in("small"));
}

int main(void)
{
	dir = swap_test_mkdtemp();
	atexit(kernel_swapoff);

	test_swapon();
	test_swapon_errors();
	test_kernel_swap_busy();
	test_read_only_fs();
	test_priorities();
	roundtrip(0);
	roundtrip(SWAPFILE_DIRECT_IO);
	test_threads();
	test_eio();
	test_enospc();
	printf("test-swapfile: ok\n");
	return 0;
}
