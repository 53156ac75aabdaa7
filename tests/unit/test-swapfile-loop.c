/* SPDX-License-Identifier: MIT */
/*
 * A swap area on a block device: a loop device over a temporary file. mkswap on the device,
 * swapon, page I/O byte for byte (buffered and O_DIRECT, checked in the backing file), the
 * exclusive claim (a second user, the kernel's swapon, is refused) and a read-only device.
 *
 * The loop devices are set up with LO_FLAGS_AUTOCLEAR, as mount -o loop does: the kernel
 * detaches each one when its last descriptor closes, so none is left behind even if the test
 * is killed; they are also detached explicitly at exit. Skipped (77) when loop devices cannot
 * be had (no root, no loop driver, a container without /dev/loop-control).
 */
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/swap.h>

#include "macro.h"
#include "mkswap.h"
#include "swapfile.h"
#include "swap-test.h"

#define MiB (1024ULL * 1024)

static const char *dir;
static int loop_fds[2] = {-1, -1};

static void detach_loops(void)
{
	for (unsigned i = 0; i < 2; i++)
		if (loop_fds[i] >= 0) {
			ioctl(loop_fds[i], LOOP_CLR_FD, 0);
			close(loop_fds[i]);
			loop_fds[i] = -1;
		}
}

/* Attaches backing to a free loop device; returns its path in dev, or -errno. */
static int loop_attach(const char *backing, bool read_only, unsigned slot, char *dev, size_t len)
{
	struct loop_config cfg = {0};
	int ctl, back, fd = -1, r = -EBUSY;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return negative_errno();
	back = open(backing, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (back < 0) {
		close(ctl);
		return negative_errno();
	}
	cfg.fd = (unsigned)back;
	cfg.block_size = 4096;
	cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0);
	/* Another program may take the free device first: ask again. */
	for (int tries = 0; tries < 10 && r == -EBUSY; tries++) {
		int nr = ioctl(ctl, LOOP_CTL_GET_FREE);

		if (nr < 0) {
			r = negative_errno();
			break;
		}
		snprintf(dev, len, "/dev/loop%d", nr);
		fd = open(dev, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			r = negative_errno();
			break;
		}
		r = ioctl(fd, LOOP_CONFIGURE, &cfg) < 0 ? negative_errno() : 0;
		if (r < 0) {
			close(fd);
			fd = -1;
		}
	}
	close(back);
	close(ctl);
	if (r < 0)
		return r;
	loop_fds[slot] = fd;
	return 0;
}

static void check_backing(const char *backing, uint32_t slot, const void *page)
{
	unsigned char buf[4096];
	int fd = open(backing, O_RDONLY);

	CHECK(fd >= 0);
	CHECK_EQ(pread(fd, buf, 4096, (off_t)slot * 4096), 4096);
	CHECK(!memcmp(buf, page, 4096));
	close(fd);
}

static void roundtrip(struct swapfile *sf, const char *backing, bool check_file, unsigned seed)
{
	enum { N = 300 };
	unsigned char *w = aligned_alloc(4096, N * 4096), *r = aligned_alloc(4096, 2 * N * 4096);
	void *wp[N], *rp[N];
	uint64_t e[N];
	unsigned got = 0, done;

	CHECK(w && r);
	while (got < N) {
		int n = swapfile_alloc(sf, N - got, e + got);

		CHECK(n > 0);
		got += (unsigned)n;
	}
	for (unsigned i = 0; i < N; i++) {
		wp[i] = w + i * 4096;
		rp[i] = r + i * 8192 + (i % 3 == 0); /* some unaligned: the O_DIRECT bounce */
		swap_test_fill(wp[i], seed + i);
	}
	CHECK_EQ(swapfile_write_pages(sf, e, (const void *const *)wp, N, &done), 0);
	CHECK_EQ(done, N);
	CHECK_EQ(swapfile_read_pages(sf, e, rp, N, &done), 0);
	for (unsigned i = 0; i < N; i++) {
		CHECK(!memcmp(wp[i], rp[i], 4096));
		if (check_file && i % 10 == 0)
			check_backing(backing, swp_offset(e[i]), wp[i]);
		CHECK_EQ(swap_free(sf, e[i]), 0);
	}
	free(w);
	free(r);
}

int main(void)
{
	char backing[512], ro_backing[512], dev[64], ro_dev[64], err[512], out[2048];
	struct mkswap_options o = {.label = "loopswap"};
	struct swapfile_area_stats as;
	struct swapfile *sf;
	int fd, r, t;

	dir = swap_test_mkdtemp();
	atexit(detach_loops);
	snprintf(backing, sizeof(backing), "%s/backing", dir);
	fd = open(backing, O_CREAT | O_RDWR, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, 32 * MiB), 0);
	close(fd);
	r = loop_attach(backing, false, 0, dev, sizeof(dev));
	if (r == -EPERM || r == -EACCES || r == -ENOENT || r == -ENODEV || r == -ENXIO) {
		printf("test-swapfile-loop: skipped, no loop device: %s\n", strerror(-r));
		return EXIT_SKIP;
	}
	CHECK_EQ(r, 0);

	/* mkswap on the whole device; the header lands at the start of the backing file. */
	CHECK_EQ(mkswap_format(dev, &o, NULL, err, sizeof(err)), 0);
	if (swap_test_have("blkid")) {
		CHECK_EQ(swap_test_run(out, sizeof(out), "blkid -p -o export %s", dev), 0);
		CHECK(strstr(out, "TYPE=swap") && strstr(out, "LABEL=loopswap"));
	}
	/* Beyond the device: refused. */
	o.size_bytes = 64 * MiB;
	CHECK_EQ(mkswap_format(dev, &o, NULL, err, sizeof(err)), -EINVAL);
	CHECK_MSG(err, dev, "larger than the device");

	CHECK_EQ(swapfile_new(&sf), 0);
	t = swapfile_swapon(sf, dev, 0, 0, err, sizeof(err));
	if (t < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	CHECK_EQ(swapfile_get_area_stats(sf, (unsigned)t, &as), 0);
	CHECK(as.bdev);
	CHECK(!as.has_holes);
	CHECK_EQ(as.total_slots, 32 * MiB / 4096 - 1);
	CHECK(!strcmp(as.label, "loopswap"));
	roundtrip(sf, backing, false, 1);

	/* memext holds the device exclusively: not twice, not by the kernel, not reformatted. */
	CHECK_EQ(swapfile_swapon(sf, dev, 0, 0, err, sizeof(err)), -EBUSY);
	CHECK_MSG(err, dev, "device is busy");
	CHECK(swapon(dev, 0) < 0);
	CHECK_EQ(errno, EBUSY);
	CHECK_EQ(mkswap_format(dev, &o, NULL, err, sizeof(err)), -EBUSY);
	CHECK_EQ(swapfile_swapoff(sf, (unsigned)t), 0);

	/* O_DIRECT: the pages reach the backing file with no cache in between. */
	CHECK_EQ(swapfile_swapon(sf, dev, 0, SWAPFILE_DIRECT_IO, err, sizeof(err)), t);
	roundtrip(sf, backing, true, 1000);
	CHECK_EQ(swapfile_swapoff(sf, (unsigned)t), 0);
	swapfile_free(sf);

	/* A read-only device is refused before any write fails. */
	snprintf(ro_backing, sizeof(ro_backing), "%s/ro-backing", dir);
	fd = open(ro_backing, O_CREAT | O_RDWR, 0600);
	CHECK(fd >= 0);
	close(fd);
	o.size_bytes = 8 * MiB;
	CHECK_EQ(mkswap_format(ro_backing, &o, NULL, err, sizeof(err)), 0);
	CHECK_EQ(loop_attach(ro_backing, true, 1, ro_dev, sizeof(ro_dev)), 0);
	CHECK_EQ(swapfile_new(&sf), 0);
	CHECK_EQ(swapfile_swapon(sf, ro_dev, 0, 0, err, sizeof(err)), -EROFS);
	CHECK_MSG(err, ro_dev, "read-only block device");
	swapfile_free(sf);

	detach_loops();
	printf("test-swapfile-loop: ok (%s, %s)\n", dev, ro_dev);
	return 0;
}
