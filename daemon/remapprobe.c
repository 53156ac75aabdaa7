/* SPDX-License-Identifier: MIT */
#include "remapprobe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"

#define PROBE_PAGES 2

struct probe {
	int uffd;
	uint64_t from, len;
	_Atomic bool moved; /* mremap() returned: its events are read */
	bool remap_seen, source_unmapped;
};

/* Reads events until the REMAP and the UNMAP after it; once mremap() is back, until none comes
 * for 100 ms. It must not stop before that: mremap() waits until its events are read. */
static void *probe_reader(void *arg)
{
	struct probe *p = arg;
	struct pollfd pfd = {.fd = p->uffd, .events = POLLIN};
	struct uffd_msg msg;

	while (!p->source_unmapped) {
		int n = poll(&pfd, 1, 100);

		if (n <= 0 && (n == 0 || errno != EINTR) && atomic_load(&p->moved))
			break;
		if (n <= 0 || read(p->uffd, &msg, sizeof(msg)) != (ssize_t)sizeof(msg))
			continue;
		if (msg.event == UFFD_EVENT_REMAP)
			p->remap_seen = true;
		else if (msg.event == UFFD_EVENT_UNMAP && p->remap_seen &&
			 msg.arg.remove.start == p->from && msg.arg.remove.end == p->from + p->len)
			p->source_unmapped = true;
	}
	return NULL;
}

bool remap_unmaps_source(void)
{
	struct probe p = {.len = PROBE_PAGES * PAGE_SIZE};
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP,
	};
	char *src = MAP_FAILED, *dst = MAP_FAILED;
	bool reader = false;
	pthread_t tid;

	p.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (p.uffd < 0 || ioctl(p.uffd, UFFDIO_API, &api) < 0)
		goto out;
	src = mmap(NULL, p.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, p.len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED || dst == MAP_FAILED)
		goto out;
	p.from = (uint64_t)(uintptr_t)src;
	struct uffdio_register reg = {
		.range = {.start = p.from, .len = p.len},
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(p.uffd, UFFDIO_REGISTER, &reg) < 0)
		goto out;
	reader = pthread_create(&tid, NULL, probe_reader, &p) == 0;
	if (!reader)
		goto out;
	/* Waits until the reader has read the events it sends. */
	if (mremap(src, p.len, p.len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) != MAP_FAILED)
		src = MAP_FAILED;
	atomic_store(&p.moved, true);
out:
	if (reader)
		pthread_join(tid, NULL);
	/* Closed first: an munmap of registered memory would wait for a reader of its UNMAP. */
	if (p.uffd >= 0)
		close(p.uffd);
	if (src != MAP_FAILED)
		munmap(src, p.len);
	if (dst != MAP_FAILED)
		munmap(dst, p.len);
	return p.source_unmapped;
}
