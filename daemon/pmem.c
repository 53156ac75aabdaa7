/* SPDX-License-Identifier: MIT */
/*
 * The window is reserved once (MAP_SHARED | MAP_NORESERVE over a sparse memfd: memfds are
 * created VM_NORESERVE, so the size commits nothing) and handed out by a bump pointer. Freed
 * ranges are punched out of the memfd (MADV_REMOVE: for shared memory MADV_DONTNEED would only
 * unmap, the pages would stay in the file) and kept on a free list by length for reuse, which
 * suits the users: page-table nodes (one page), pool arena chunks and handle-table chunks (a
 * few fixed lengths).
 */
#include "pmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"

struct free_range {
	uint64_t addr, pages;
};

static struct {
	int fd;
	int ro_fd; /* a read-only open of fd: what clients hold */
	char *base;
	uint64_t window_bytes;
	struct pmem_header *hdr;

	pthread_mutex_t lock;
	uint64_t next; /* bytes from base: the bump pointer */
	struct free_range *free;
	size_t nr_free, cap_free;
} P = {.fd = -1, .ro_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER};

bool pmem_enabled(void)
{
	return P.base != NULL;
}

int pmem_fd(void)
{
	return P.ro_fd;
}

bool pmem_is_own(int fd)
{
	struct stat a, b;

	return P.fd >= 0 && fstat(fd, &a) == 0 && fstat(P.fd, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/*
 * Clients hold the memfd, and a client can reach its copy through /proc/PID/fd. So: only we
 * may open it for writing (mode 0600), clients get a read-only open of it (P.ro_fd), and its
 * size is sealed: nobody can truncate it under a daemon that maps it (SIGBUS) or under the
 * pages it holds. A successor takes only a sealed file. Returns 0 or -1 with errno.
 */
static int seal_and_share(int fd)
{
	char path[64];

	if (fchmod(fd, 0600) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	P.ro_fd = open(path, O_RDONLY | O_CLOEXEC);
	return P.ro_fd < 0 ? -1 : 0;
}

int pmem_init(uint64_t window_bytes)
{
	int fd;
	void *p;

	window_bytes = PAGE_ALIGN_UP(window_bytes);
	if (P.base || window_bytes < 16 * PAGE_SIZE)
		return -EINVAL;
	fd = memfd_create("memextd-pmem", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)window_bytes) < 0 || seal_and_share(fd) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	p = mmap(NULL, window_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED) {
		int r = -errno;

		close(fd);
		return r;
	}
	P.fd = fd;
	P.base = p;
	P.window_bytes = window_bytes;
	P.hdr = p;
	P.next = PAGE_SIZE;
	*P.hdr = (struct pmem_header){
		.magic = PMEM_MAGIC,
		.version = PMEM_VERSION,
		.page_size = PAGE_SIZE,
		.base = (uint64_t)(uintptr_t)p,
		.window_bytes = window_bytes,
		.daemon_pid = (uint64_t)getpid(),
	};
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		P.hdr->created_usec = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	}
	return 0;
}

void pmem_exit(void)
{
	if (!P.base)
		return;
	munmap(P.base, P.window_bytes);
	close(P.fd);
	close(P.ro_fd);
	P.ro_fd = -1;
	free(P.free);
	P.base = NULL;
	P.hdr = NULL;
	P.fd = -1;
	P.free = NULL;
	P.nr_free = P.cap_free = 0;
}

bool pmem_contains(const void *p)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)P.base;

	return P.base && a >= b && a < b + P.window_bytes;
}

static void *anon_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

void *pmem_alloc(size_t bytes)
{
	uint64_t pages = PAGE_ALIGN_UP(bytes) / PAGE_SIZE;
	void *p = NULL;

	if (!bytes)
		return NULL;
	if (!P.base)
		return anon_alloc(pages * PAGE_SIZE);
	pthread_mutex_lock(&P.lock);
	for (size_t i = P.nr_free; i-- > 0;)
		if (P.free[i].pages == pages) {
			p = (void *)(uintptr_t)P.free[i].addr;
			P.free[i] = P.free[--P.nr_free];
			break;
		}
	if (!p && P.next + pages * PAGE_SIZE <= P.window_bytes) {
		p = P.base + P.next;
		P.next += pages * PAGE_SIZE;
	}
	pthread_mutex_unlock(&P.lock);
	return p; /* zero: fresh, or punched out when it was freed */
}

void pmem_discard(void *p, size_t bytes)
{
	if (!p || !bytes)
		return;
	(void)madvise(p, PAGE_ALIGN_UP(bytes), pmem_contains(p) ? MADV_REMOVE : MADV_DONTNEED);
}

void pmem_free(void *p, size_t bytes)
{
	uint64_t pages = PAGE_ALIGN_UP(bytes) / PAGE_SIZE;

	if (!p || !bytes)
		return;
	if (!pmem_contains(p)) {
		munmap(p, pages * PAGE_SIZE);
		return;
	}
	/* Reused only if it reads zero again: pmem_alloc() promises zeroed memory. */
	if (madvise(p, pages * PAGE_SIZE, MADV_REMOVE) < 0)
		return;
	pthread_mutex_lock(&P.lock);
	if (P.nr_free == P.cap_free) {
		size_t cap = P.cap_free ? P.cap_free * 2 : 64;
		struct free_range *v = realloc(P.free, cap * sizeof(*v));

		if (v) {
			P.free = v;
			P.cap_free = cap;
		}
	}
	/* Without room to remember it only address space is lost, never memory. */
	if (P.nr_free < P.cap_free)
		P.free[P.nr_free++] = (struct free_range){(uint64_t)(uintptr_t)p, pages};
	pthread_mutex_unlock(&P.lock);
}

void pmem_set_root(enum pmem_root idx, const void *p)
{
	if (P.hdr && idx < _PMEM_ROOT_MAX)
		__atomic_store_n(&P.hdr->roots[idx], (uint64_t)(uintptr_t)p, __ATOMIC_RELEASE);
}

int pmem_view_open(int fd, struct pmem_view **ret)
{
	struct pmem_header hdr;
	struct pmem_view *v;
	struct stat st;
	void *map;
	int seals;

	if (fstat(fd, &st) < 0)
		return -errno;
	/* Unsealed, its sender could truncate it under our mapping. */
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
		return -EINVAL;
	if (pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) || hdr.magic != PMEM_MAGIC)
		return -EINVAL;
	if (hdr.version != PMEM_VERSION || hdr.page_size != PAGE_SIZE)
		return -EPROTONOSUPPORT;
	if (hdr.window_bytes != (uint64_t)st.st_size || hdr.base % PAGE_SIZE)
		return -EINVAL;
	map = mmap(NULL, hdr.window_bytes, PROT_READ, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	v = calloc(1, sizeof(*v));
	if (!v) {
		munmap(map, hdr.window_bytes);
		return -ENOMEM;
	}
	*v = (struct pmem_view){
		.fd = fd,
		.map = map,
		.size = hdr.window_bytes,
		.old_base = hdr.base,
		.hdr = hdr,
	};
	*ret = v;
	return 0;
}

void pmem_view_close(struct pmem_view *v)
{
	if (!v)
		return;
	munmap((void *)v->map, v->size);
	/* The memory goes with the last holder: each adopted agent swaps it for our pmem. It is
	 * not punched out here: an agent that has not had ours yet (we could die first) must
	 * still find its pages in it. */
	close(v->fd);
	free(v);
}

const void *pmem_view_ptr(const struct pmem_view *v, uint64_t old_addr, size_t len)
{
	if (old_addr < v->old_base + PAGE_SIZE || len > v->size ||
	    old_addr - v->old_base > v->size - len)
		return NULL;
	return v->map + (old_addr - v->old_base);
}
