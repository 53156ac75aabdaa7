/* SPDX-License-Identifier: MIT */
/*
 * uffd-probe: exit 0 if this kernel gives memext what it needs, 77 (skip) with the reason if
 * not. It opens a userfaultfd that also takes faults raised inside the kernel (no
 * UFFD_USER_MODE_ONLY), from /dev/userfaultfd or the system call, and asks UFFDIO_API which
 * features exist; UFFD_FEATURE_MOVE (1 << 16, Linux 6.8) is required.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#define PROBE_FEATURE_MOVE (1ULL << 16)

#define SKIP 77

int main(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int dev, fd = -1, err_dev = 0, err_sys = 0;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			err_dev = errno;
		close(dev);
	} else {
		err_dev = errno;
	}
	if (fd < 0) {
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			err_sys = errno;
	}
	if (fd < 0) {
		printf("SKIP: no userfaultfd for kernel-mode faults: /dev/userfaultfd: %s; "
		       "userfaultfd(2): %s\n",
		       strerror(err_dev), strerror(err_sys));
		return SKIP;
	}
	/* With features = 0 the kernel answers with every feature it supports. */
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		printf("SKIP: UFFDIO_API failed: %s\n", strerror(errno));
		return SKIP;
	}
	close(fd);
	if (!(api.features & PROBE_FEATURE_MOVE)) {
		printf("SKIP: the kernel lacks UFFD_FEATURE_MOVE (Linux 6.8+); features 0x%llx\n",
		       (unsigned long long)api.features);
		return SKIP;
	}
	printf("userfaultfd ok, features 0x%llx\n", (unsigned long long)api.features);
	return 0;
}
