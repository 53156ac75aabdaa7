/* SPDX-License-Identifier: MIT */
/*
 * wl-spawn vfork|posix-spawn SIZE SPAWNS
 *
 * A process with evicted memory starts children SPAWNS times while two threads fault on it.
 * vfork: the child shares the parent's address space (and its userfaultfd registrations)
 * until exec; it first reads and checks a few pages of the parent's memory (so a child of the
 * shared mm faults on evicted pages: no pthread_atfork handler ran, the daemon sees a thread
 * it does not know), then execs /bin/true; status 0 expected. posix-spawn: glibc's
 * posix_spawn (clone(CLONE_VM|CLONE_VFORK), no atfork handlers) of /bin/sh -c 'exit 3';
 * status 3 expected. The parent's memory is checked after.
 */
#include <pthread.h>
#include <spawn.h>
#include <sys/wait.h>

#include "wl-common.h"

#define NR_FAULTERS 2
#define CHILD_READS 8
#define CHILD_MISMATCH 42

extern char **environ;

struct page_state {
	uint32_t gen;
};

static char *region;
static size_t nr_pages;
static struct page_state *state;
static volatile bool stop;

static char *page_addr(size_t p)
{
	return region + p * WL_PAGE_SIZE;
}

/* Faulter t owns pages p % (NR_FAULTERS + 1) == t; the last residue is read-only. */
static void *faulter(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;
	uint64_t rng = wl_mix(0x5ba3 ^ t), ops = 0;

	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		size_t slots = nr_pages / (NR_FAULTERS + 1);
		size_t p = wl_rand_below(&rng, slots) * (NR_FAULTERS + 1) + t;

		if (p >= nr_pages)
			continue;
		if (wl_rand_below(&rng, 2))
			wl_page_check("faulter read", page_addr(p), p, state[p].gen, 0, 0);
		else
			wl_page_fill(page_addr(p), p, ++state[p].gen, 0);
		ops++;
	}
	wl_log("faulter %u: %" PRIu64 " operations", t, ops);
	return NULL;
}

/* In the vfork child, on the parent's memory: only read-only pages, no stdio. */
static bool child_pages_ok(uint64_t seed)
{
	for (int i = 0; i < CHILD_READS; i++) {
		size_t p = wl_rand_below(&seed, nr_pages / (NR_FAULTERS + 1)) * (NR_FAULTERS + 1) +
			   NR_FAULTERS;

		if (p < nr_pages && wl_page_diff(page_addr(p), p, 0, 0, 0) >= 0)
			return false;
	}
	return true;
}

static int spawn_vfork(unsigned i)
{
	char *const argv[] = {"true", NULL};
	pid_t pid = vfork();

	if (pid < 0)
		wl_die("vfork: %m");
	if (pid == 0) {
		if (!child_pages_ok(wl_mix(i)))
			_exit(CHILD_MISMATCH);
		execve("/bin/true", argv, environ);
		_exit(127);
	}
	return pid;
}

static int spawn_posix(void)
{
	char *const argv[] = {"sh", "-c", "exit 3", NULL};
	pid_t pid;
	int r = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);

	if (r) {
		errno = r;
		wl_die("posix_spawn /bin/sh: %m");
	}
	return pid;
}

static void reap(pid_t pid, int want, unsigned i)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			wl_die("waitpid: %m");
	if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_MISMATCH && want != CHILD_MISMATCH)
		wl_mismatch("spawn %u: the vfork child read wrong data from the shared memory", i);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != want)
		wl_mismatch("spawn %u: child %d ended with status 0x%x, expected exit %d", i, pid,
			    status, want);
}

int main(int argc, char **argv)
{
	pthread_t tid[NR_FAULTERS];
	unsigned nr_spawns;
	bool use_vfork;

	wl_set_prog(argv[0]);
	if (argc != 4)
		wl_die("usage: %s vfork|posix-spawn SIZE SPAWNS", argv[0]);
	use_vfork = !strcmp(argv[1], "vfork");
	if (!use_vfork && strcmp(argv[1], "posix-spawn"))
		wl_die("unknown mode %s", argv[1]);
	nr_pages = wl_parse_size(argv[2]) / WL_PAGE_SIZE;
	nr_spawns = (unsigned)wl_parse_u64(argv[3]);
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);
	state = calloc(nr_pages, sizeof(*state));
	if (!state)
		wl_die("calloc: %m");

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(page_addr(p), p, 0, 0);
	wl_wait_evicted("region before spawning", region, nr_pages * WL_PAGE_SIZE, 500,
			wl_expect_eviction(), 60);

	wl_phase("spawn");
	for (unsigned t = 0; t < NR_FAULTERS; t++)
		if ((errno = pthread_create(&tid[t], NULL, faulter, (void *)(uintptr_t)t)))
			wl_die("pthread_create: %m");
	for (unsigned i = 0; i < nr_spawns; i++) {
		if (use_vfork)
			reap(spawn_vfork(i), 0, i);
		else
			reap(spawn_posix(), 3, i);
	}
	__atomic_store_n(&stop, true, __ATOMIC_RELAXED);
	for (unsigned t = 0; t < NR_FAULTERS; t++)
		pthread_join(tid[t], NULL);
	wl_log("%u children spawned with %s, all ended as expected", nr_spawns, argv[1]);

	wl_phase("verify");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check("final", page_addr(p), p, state[p].gen, 0, 0);
	wl_log("all %zu pages verified", nr_pages);
	return 0;
}
