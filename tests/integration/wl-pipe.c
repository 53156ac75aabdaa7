/* SPDX-License-Identifier: MIT */
/*
 * wl-pipe SIZE
 *
 * System calls that copy into and out of evicted memory, so the faults are taken inside the
 * kernel (copy_from_user / copy_to_user), not by an instruction of the program. A uffd
 * created with UFFD_USER_MODE_ONLY turns these into EFAULT.
 *
 *   1. write(2) from an evicted source buffer into a pipe, read(2) by another thread into an
 *      evicted destination buffer that holds other data, in chunks of uneven sizes that start
 *      and end inside pages.
 *   2. pwrite(2) from the (evicted again) destination into a memfd, then pread(2) back into the
 *      source after it was overwritten with other data and evicted again.
 *
 * Each buffer is SIZE/2; every page is checked after each step.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "wl-common.h"

static char *src, *dst;
static size_t half_pages, half_len;
static bool require_eviction;
static int pipefd[2];

enum { SALT_DATA = 0, SALT_OTHER = 3 };

static void fill(char *buf, uint32_t gen, uint32_t salt)
{
	for (size_t p = 0; p < half_pages; p++)
		wl_page_fill(buf + p * WL_PAGE_SIZE, p, gen, salt);
}

static void check(const char *what, char *buf, uint32_t gen, uint32_t salt)
{
	for (size_t p = 0; p < half_pages; p++)
		wl_page_check(what, buf + p * WL_PAGE_SIZE, p, gen, salt, 0);
	wl_log("%s: %zu pages verified", what, half_pages);
}

static void syscall_failed(const char *call, const void *buf, size_t off)
{
	if (errno == EFAULT)
		wl_mismatch("%s at buffer offset %zu (address %p) failed with EFAULT: a fault taken "
			    "inside the kernel on an evicted page was not resolved",
			    call, off, (const char *)buf + off);
	wl_die("%s at buffer offset %zu: %m", call, off);
}

/* Chunk sizes from 1 byte to ~300 KiB, mostly not page multiples. */
static size_t chunk_len(uint64_t *rng, size_t left)
{
	size_t n;

	switch (wl_rand_below(rng, 4)) {
	case 0: n = 1 + wl_rand_below(rng, 4096); break;
	case 1: n = WL_PAGE_SIZE * (1 + wl_rand_below(rng, 16)) + wl_rand_below(rng, 64); break;
	default: n = 1 + wl_rand_below(rng, 300 << 10); break;
	}
	return n < left ? n : left;
}

static void *reader(void *arg)
{
	uint64_t rng = 42;
	size_t off = 0;

	while (off < half_len) {
		size_t want = chunk_len(&rng, half_len - off);
		ssize_t n = read(pipefd[0], dst + off, want);
		if (n < 0)
			syscall_failed("read() from a pipe into an evicted buffer", dst, off);
		if (n == 0)
			wl_die("pipe closed early at %zu of %zu bytes", off, half_len);
		off += (size_t)n;
	}
	return NULL;
}

static void pipe_copy(void)
{
	pthread_t tid;
	uint64_t rng = 7;
	size_t off = 0;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		wl_die("pipe: %m");
	if (fcntl(pipefd[1], F_SETPIPE_SZ, 1 << 20) < 0)
		wl_log("F_SETPIPE_SZ: %m (continuing with the default size)");
	if ((errno = pthread_create(&tid, NULL, reader, NULL)))
		wl_die("pthread_create: %m");
	while (off < half_len) {
		size_t want = chunk_len(&rng, half_len - off);
		ssize_t n = write(pipefd[1], src + off, want);
		if (n < 0)
			syscall_failed("write() from an evicted buffer into a pipe", src, off);
		off += (size_t)n;
	}
	pthread_join(tid, NULL);
	close(pipefd[0]);
	close(pipefd[1]);
}

static void file_copy(void)
{
	int fd = (int)syscall(SYS_memfd_create, "wl-pipe", MFD_CLOEXEC);
	uint64_t rng = 9;
	size_t off;

	if (fd < 0)
		wl_die("memfd_create: %m");
	for (off = 0; off < half_len;) {
		size_t want = chunk_len(&rng, half_len - off);
		ssize_t n = pwrite(fd, dst + off, want, (off_t)off);
		if (n <= 0)
			syscall_failed("pwrite() from an evicted buffer", dst, off);
		off += (size_t)n;
	}

	wl_phase("overwrite");
	fill(src, 9, SALT_OTHER);
	wl_wait_evicted("source before pread", src, half_len / 2, 500, require_eviction, 60);

	wl_phase("pread");
	for (off = 0; off < half_len;) {
		size_t want = chunk_len(&rng, half_len - off);
		ssize_t n = pread(fd, src + off, want, (off_t)off);
		if (n < 0)
			syscall_failed("pread() into an evicted buffer", src, off);
		if (n == 0)
			wl_die("pread: unexpected end of file at %zu", off);
		off += (size_t)n;
	}
	close(fd);
}

int main(int argc, char **argv)
{
	wl_set_prog(argv[0]);
	if (argc != 2)
		wl_die("usage: %s SIZE", argv[0]);
	half_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE / 2;
	half_len = half_pages * WL_PAGE_SIZE;
	if (half_pages < 1024)
		wl_die("SIZE must be at least 8 MiB");
	require_eviction = wl_expect_eviction();
	src = wl_mmap_anon(half_len);
	dst = wl_mmap_anon(half_len);
	wl_log("two buffers of %zu pages (%zu MiB)", half_pages, half_len >> 20);

	wl_phase("fill");
	fill(src, 0, SALT_DATA);
	fill(dst, 9, SALT_OTHER);
	/* At least half of each buffer evicted: which pages go is the LRU's choice, and reclaim
	 * stops at the high watermark, so no exact share can be waited for. */
	wl_wait_evicted("source before write", src, half_len / 2, 500, require_eviction, 60);
	wl_wait_evicted("destination before read", dst, half_len / 4, 500, require_eviction, 60);

	wl_phase("pipe");
	pipe_copy();
	check("destination after the pipe", dst, 0, SALT_DATA);
	check("source after the pipe", src, 0, SALT_DATA);

	wl_phase("pwrite");
	wl_wait_evicted("destination before pwrite", dst, half_len / 2, 500, require_eviction, 60);
	file_copy();
	check("source after pread", src, 0, SALT_DATA);
	check("destination at the end", dst, 0, SALT_DATA);
	wl_log("all pages verified");
	return 0;
}
