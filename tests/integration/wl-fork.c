/* SPDX-License-Identifier: MIT */
/*
 * wl-fork SIZE
 *
 * The parent fills SIZE bytes (generation 0), so most of it is evicted when it forks. After the
 * fork, while both processes live, the child rewrites pages p % 3 == 1 and the parent pages
 * p % 3 == 2, each with its own salt; pages p % 3 == 0 stay the shared pre-fork data. Each side
 * waits for the other to finish writing, then checks every page: its own writes, the pre-fork
 * data elsewhere, never the other's writes. Both sides also read a spread of pre-fork pages
 * before writing, so evicted pre-fork data is faulted in on both sides of the fork. The parent
 * exits 0 only if it and the child both passed.
 *
 * Under memext (MEMEXT_WL_EXPECT_EVICTION=1) both sides also check, first thing after fork(),
 * that the pages evicted before it are still not resident: the fork shared them with the child
 * instead of bringing them back.
 *
 * wl-fork SIZE MODE, other shapes of fork, each checking every page it reads:
 *   exit     20 children that exit at once; then the parent checks everything.
 *   nested   the child forks a grandchild; each generation reads the pre-fork data, writes
 *            its own pages and checks that it sees only its own writes.
 *   threads  4 threads fork 8 children each while 2 more threads read (fault in) random
 *            pages; every child checks a spread of pages and writes a few of its own.
 *   clean    pages brought back clean are shared with the child, then evicted while the
 *            parent rewrites them (mode_clean).
 *   zap      the parent's agent zaps the shared pages it is about to make exclusive
 *            (MEMEXT_TEST_ZAP_SHARED, mode_zap).
 */
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "wl-common.h"

enum { SALT_PREFORK = 0, SALT_PARENT = 1, SALT_CHILD = 2 };

static char *region;
static size_t nr_pages;
static pid_t child_pid; /* in the parent */

static void report_child(int status)
{
	if (WIFSIGNALED(status))
		wl_mismatch("child %d was killed by signal %d", child_pid, WTERMSIG(status));
	if (WEXITSTATUS(status))
		wl_mismatch("child %d exited %d", child_pid, WEXITSTATUS(status));
}

static char *page_addr(size_t p)
{
	return region + p * WL_PAGE_SIZE;
}

static void sync_with_other(int wfd, int rfd, const char *who)
{
	char c = 'x';

	if (write(wfd, &c, 1) != 1)
		wl_die("%s: write sync pipe: %m", who);
	if (read(rfd, &c, 1) != 1) {
		int status;

		if (child_pid > 0 && waitpid(child_pid, &status, 0) == child_pid)
			report_child(status);
		wl_die("%s: the other side of the fork went away early", who);
	}
}

static void side(const char *who, uint32_t salt, unsigned mine, int wfd, int rfd)
{
	char what[64];

	/* Fault in a spread of pre-fork pages that this side will not write. */
	snprintf(what, sizeof(what), "%s pre-fork read", who);
	for (size_t p = 0; p < nr_pages; p += 7)
		if (p % 3 != mine)
			wl_page_check(what, page_addr(p), p, 0, SALT_PREFORK, 0);

	for (size_t p = 0; p < nr_pages; p++)
		if (p % 3 == mine)
			wl_page_fill(page_addr(p), p, 1, salt);

	sync_with_other(wfd, rfd, who);

	snprintf(what, sizeof(what), "%s after fork", who);
	for (size_t p = 0; p < nr_pages; p++) {
		if (p % 3 == mine)
			wl_page_check(what, page_addr(p), p, 1, salt, 0);
		else
			wl_page_check(what, page_addr(p), p, 0, SALT_PREFORK, 0);
	}
	/* Second pass after the other side's verification churned its own memory. */
	sync_with_other(wfd, rfd, who);
	for (size_t p = nr_pages; p-- > 0;) {
		if (p % 3 == mine)
			wl_page_check(what, page_addr(p), p, 1, salt, 0);
		else
			wl_page_check(what, page_addr(p), p, 0, SALT_PREFORK, 0);
	}
	wl_log("%s: all %zu pages verified twice", who, nr_pages);
}

/*
 * Right after fork(): the pages evicted before it are still out (90%: the other side may have
 * faulted a few meanwhile). Bringing them back for the fork would make them resident here.
 */
static void check_still_evicted(const char *who, size_t before)
{
	size_t now;

	if (!wl_expect_eviction())
		return;
	now = wl_nonresident_pages(region, nr_pages * WL_PAGE_SIZE);
	if (now < before / 10 * 9)
		wl_mismatch("%s: %zu pages were evicted before fork(), only %zu are right after it: "
			    "the fork brought evicted pages back",
			    who, before, now);
	wl_log("%s: %zu of %zu pages still evicted right after fork (%zu before)", who, now,
	       nr_pages, before);
}

/* fork(), or exit: the child is named for reports, the parent records its pid. */
static pid_t fork_child(void)
{
	pid_t pid = fork();

	if (pid < 0)
		wl_die("fork: %m");
	if (pid == 0)
		wl_prog = "wl-fork(child)";
	else
		child_pid = pid;
	return pid;
}

static int wait_ok(pid_t pid, const char *who)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		wl_die("%s: waitpid %d: %m", who, (int)pid);
	if (WIFSIGNALED(status))
		wl_mismatch("%s: child %d was killed by signal %d", who, (int)pid, WTERMSIG(status));
	if (WEXITSTATUS(status))
		wl_mismatch("%s: child %d exited %d", who, (int)pid, WEXITSTATUS(status));
	return 0;
}

/* Every page: pre-fork data, except pages p % 3 == mine, which hold gen 1 with salt. */
static void check_all(const char *what, int mine, uint32_t salt)
{
	for (size_t p = 0; p < nr_pages; p++) {
		if (mine >= 0 && p % 3 == (size_t)mine)
			wl_page_check(what, page_addr(p), p, 1, salt, 0);
		else
			wl_page_check(what, page_addr(p), p, 0, SALT_PREFORK, 0);
	}
}

static void mode_exit(size_t evicted)
{
	for (int i = 0; i < 20; i++) {
		pid_t pid = fork();

		if (pid < 0)
			wl_die("fork: %m");
		if (pid == 0)
			_exit(0);
		wait_ok(pid, "parent");
	}
	check_still_evicted("parent", evicted);
	check_all("parent after 20 forks", -1, 0);
	wl_log("parent: 20 children exited at once; all %zu pages verified", nr_pages);
}

/* Generation g (0 parent, 1 child, 2 grandchild) writes pages p % 3 == g. */
static void nested_gen(unsigned g, size_t evicted)
{
	static const char *const who[] = {"parent", "child", "grandchild"};
	char what[64];
	pid_t pid = -1;

	if (g < 2) {
		pid = fork();
		if (pid < 0)
			wl_die("fork: %m");
		if (pid == 0) {
			wl_prog = g == 0 ? "wl-fork(child)" : "wl-fork(grandchild)";
			check_still_evicted(who[g + 1], evicted / 2);
			nested_gen(g + 1, evicted);
			fflush(stdout);
			_exit(0);
		}
	}
	snprintf(what, sizeof(what), "%s pre-fork read", who[g]);
	for (size_t p = 0; p < nr_pages; p += 5)
		wl_page_check(what, page_addr(p), p, 0, SALT_PREFORK, 0);
	for (size_t p = g; p < nr_pages; p += 3)
		wl_page_fill(page_addr(p), p, 1, 10 + g);
	snprintf(what, sizeof(what), "%s after its writes", who[g]);
	check_all(what, (int)g, 10 + g);
	if (pid > 0)
		wait_ok(pid, who[g]);
	check_all(what, (int)g, 10 + g);
	wl_log("%s: all %zu pages verified", who[g], nr_pages);
}

static _Atomic bool threads_stop;

static void *faulter_main(void *arg)
{
	uint64_t rs = (uint64_t)(uintptr_t)arg;

	while (!threads_stop) {
		size_t p = wl_rand_below(&rs, nr_pages);

		wl_page_check("faulter", page_addr(p), p, 0, SALT_PREFORK, 0);
	}
	return NULL;
}

static void *forker_main(void *arg)
{
	uint64_t rs = (uint64_t)(uintptr_t)arg;

	for (int i = 0; i < 8; i++) {
		pid_t pid = fork();

		if (pid < 0)
			wl_die("fork: %m");
		if (pid == 0) {
			/* Only this thread lives on in the child. */
			for (size_t p = wl_rand_below(&rs, 7); p < nr_pages; p += 7)
				wl_page_check("threads child", page_addr(p), p, 0, SALT_PREFORK, 0);
			for (size_t p = 0; p < nr_pages; p += 97)
				wl_page_fill(page_addr(p), p, 1, SALT_CHILD);
			for (size_t p = 0; p < nr_pages; p += 97)
				wl_page_check("threads child", page_addr(p), p, 1, SALT_CHILD, 0);
			_exit(0);
		}
		wait_ok(pid, "forker");
	}
	return NULL;
}

static void mode_threads(void)
{
	pthread_t f[4], r[2];

	for (unsigned i = 0; i < 2; i++)
		if (pthread_create(&r[i], NULL, faulter_main, (void *)(uintptr_t)(i + 1)))
			wl_die("pthread_create");
	for (unsigned i = 0; i < 4; i++)
		if (pthread_create(&f[i], NULL, forker_main, (void *)(uintptr_t)(i + 100)))
			wl_die("pthread_create");
	for (unsigned i = 0; i < 4; i++)
		pthread_join(f[i], NULL);
	threads_stop = true;
	for (unsigned i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	check_all("parent after 32 forks from 4 threads", -1, 0);
	wl_log("parent: 32 forks from 4 threads while 2 faulted; all %zu pages verified", nr_pages);
}

/*
 * A fork with the fd table full: the child cannot make the fds a client needs, so it cannot
 * claim shared pages. Every page must be right in it all the same (the shim has them brought
 * back first), and in the parent.
 */
static void mode_fdfull(void)
{
	struct rlimit rl = {.rlim_cur = 128, .rlim_max = 128};
	unsigned filled = 0;
	pid_t pid;

	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		wl_die("setrlimit: %m");
	while (dup(0) >= 0)
		filled++;
	if (errno != EMFILE)
		wl_die("dup: %m");
	wl_log("fd table full (%u fds added under a limit of 128)", filled);
	pid = fork_child();
	if (pid == 0) {
		check_all("child with a full fd table", -1, 0);
		wl_log("child: all %zu pages verified", nr_pages);
		_exit(0);
	}
	wait_ok(pid, "parent");
	check_all("parent after a fork with a full fd table", -1, 0);
	wl_log("parent: all %zu pages verified", nr_pages);
}

/*
 * Forks a child that waits until the parent closes the returned fd (or exits), then checks that
 * every page still holds the pre-fork data: the parent's changes since must not reach it.
 */
static int fork_waiting_child(const char *what)
{
	int done[2];
	char c;

	if (pipe(done) < 0)
		wl_die("pipe: %m");
	if (fork_child() == 0) {
		close(done[1]);
		if (read(done[0], &c, 1) < 0) /* EOF: the parent is done */
			wl_die("child: read: %m");
		check_all(what, -1, 0);
		fflush(stdout);
		_exit(0);
	}
	close(done[0]);
	return done[1];
}

/*
 * clean: pages brought back by reads are clean (write-protected, their copy kept); after the
 * fork the child shares them, and evicting one makes the parent's agent lift its protection to
 * break the share. Meanwhile two threads of the parent read and rewrite random pages of their
 * own, so writes land on such pages around their eviction: a write after the protection went
 * and before the page left must not be lost to its old copy. The child checks that every page
 * still holds the pre-fork data once the parent is done.
 */
static uint32_t *clean_gen; /* parent: generation of each page, written by its owner */

static void *clean_rewriter(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;
	uint64_t rng = wl_mix(0xc1ea ^ t);

	for (unsigned i = 0; i < 60000; i++) {
		size_t p = wl_rand_below(&rng, nr_pages / 2) * 2 + t;

		if (wl_rand_below(&rng, 2))
			wl_page_check("parent read", page_addr(p), p, clean_gen[p],
				      clean_gen[p] ? SALT_PARENT : SALT_PREFORK, 0);
		else
			wl_page_fill(page_addr(p), p, ++clean_gen[p], SALT_PARENT);
	}
	return NULL;
}

static void mode_clean(void)
{
	pthread_t tid[2];
	int done;

	/* Read everything back: what stays resident is clean. */
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check("read back", page_addr(p), p, 0, SALT_PREFORK, 0);
	clean_gen = calloc(nr_pages, sizeof(*clean_gen));
	if (!clean_gen)
		wl_die("calloc: %m");
	done = fork_waiting_child("child after the parent's rewrites");
	wl_phase("rewrite");
	for (unsigned t = 0; t < 2; t++)
		if ((errno = pthread_create(&tid[t], NULL, clean_rewriter, (void *)(uintptr_t)t)))
			wl_die("pthread_create: %m");
	for (unsigned t = 0; t < 2; t++)
		pthread_join(tid[t], NULL);
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check("parent final", page_addr(p), p, clean_gen[p],
			      clean_gen[p] ? SALT_PARENT : SALT_PREFORK, 0);
	close(done);
	wait_ok(child_pid, "parent");
	wl_log("parent: all %zu pages verified, and the child's", nr_pages);
}

/*
 * Checks a pre-fork page the agent may zap at any moment, even while it is read: a copy of it
 * holds the pre-fork data, or zeroes (zapped before), or, zapped in the middle of the copy,
 * bytes each of the one or the other, with the page reading zero from then on. Returns false
 * when it was zapped.
 */
static bool check_zappable(size_t p)
{
	static char copy[WL_PAGE_SIZE], want[WL_PAGE_SIZE];
	const char *addr = page_addr(p);

	memcpy(copy, addr, WL_PAGE_SIZE);
	if (wl_page_diff(copy, p, 0, SALT_PREFORK, 0) < 0)
		return true;
	if (wl_page_is_zero(copy))
		return false;
	wl_page_make(want, p, 0, SALT_PREFORK);
	for (size_t i = 0; i < WL_PAGE_SIZE; i++)
		if (copy[i] && copy[i] != want[i])
			wl_page_check("parent (neither its data nor zeroes)", copy, p, 0,
				      SALT_PREFORK, 0);
	wl_zero_check("parent, a page zapped while read", addr, p);
	return false;
}

/* zap: the region goes where MEMEXT_TEST_ZAP_SHARED=START-END says, the range zapped. */
static char *zap_region(void)
{
	const char *e = getenv("MEMEXT_TEST_ZAP_SHARED");
	uint64_t start, end;
	void *p;

	if (!e || sscanf(e, "%" SCNx64 "-%" SCNx64, &start, &end) != 2 ||
	    end - start < nr_pages * WL_PAGE_SIZE)
		wl_die("zap: MEMEXT_TEST_ZAP_SHARED must be START-END (hex), %zu bytes or more",
		       nr_pages * WL_PAGE_SIZE);
	p = mmap((void *)(uintptr_t)start, nr_pages * WL_PAGE_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		wl_die("zap: mmap at %#" PRIx64 ": %m", start);
	return p;
}

/*
 * zap: the test sets MEMEXT_TEST_ZAP_SHARED to the region's range, so the parent's agent zaps each
 * page it finds shared with the child just before it makes the page exclusive, as an application
 * thread could at that instant; the agent must not fault on the missing page then (the harness
 * checks its agent_faults). The parent reads every page twice over: its evicted pages come back and
 * push its shared ones out. Each page must hold the pre-fork data, or zeroes once zapped, for good:
 * a zapped page never shows its old data again. Some must be zeroes under memext (the window
 * was met). The child, whose pages nobody zaps, checks every page once the parent is done.
 */
static void mode_zap(void)
{
	unsigned char *zapped = calloc(nr_pages, 1);
	size_t nr_zapped = 0;
	int done;

	if (!zapped)
		wl_die("calloc: %m");
	done = fork_waiting_child("child after the parent's zaps");
	wl_phase("read");
	for (unsigned sweep = 0; sweep < 2; sweep++) {
		for (size_t p = 0; p < nr_pages; p++) {
			if (zapped[p]) {
				wl_zero_check("parent, a zapped page", page_addr(p), p);
			} else if (!check_zappable(p)) {
				zapped[p] = 1;
				nr_zapped++;
			}
		}
	}
	if (wl_expect_eviction() && nr_zapped == 0)
		wl_mismatch("parent: no page was zapped: the agent never found a page shared");
	close(done);
	wait_ok(child_pid, "parent");
	wl_log("parent: all %zu pages verified (%zu zapped), and the child's", nr_pages, nr_zapped);
	free(zapped);
}

int main(int argc, char **argv)
{
	int to_child[2], to_parent[2], status;
	const char *mode = argc > 2 ? argv[2] : "";
	size_t evicted;
	pid_t pid;

	wl_set_prog(argv[0]);
	if (argc != 2 && argc != 3)
		wl_die("usage: %s SIZE [exit|nested|threads|fdfull|clean|zap]", argv[0]);
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	if (!nr_pages)
		wl_die("bad SIZE");
	region = strcmp(mode, "zap") == 0 ? zap_region() : wl_mmap_anon(nr_pages * WL_PAGE_SIZE);
	wl_log("%zu pages (%zu MiB)", nr_pages, nr_pages * WL_PAGE_SIZE >> 20);

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(page_addr(p), p, 0, SALT_PREFORK);
	/* Half of the whole region (it is 4x the budget): which half depends on where the
	 * reclaim clock stood when the fill ended, so do not ask for a particular one. */
	wl_wait_evicted("before fork", region, nr_pages * WL_PAGE_SIZE, 500, wl_expect_eviction(),
			30);
	evicted = wl_nonresident_pages(region, nr_pages * WL_PAGE_SIZE);

	wl_phase("fork");
	if (strcmp(mode, "exit") == 0) {
		mode_exit(evicted);
		return 0;
	}
	if (strcmp(mode, "nested") == 0) {
		check_still_evicted("parent", evicted);
		nested_gen(0, evicted);
		return 0;
	}
	if (strcmp(mode, "threads") == 0) {
		mode_threads();
		return 0;
	}
	if (strcmp(mode, "fdfull") == 0) {
		mode_fdfull();
		return 0;
	}
	if (strcmp(mode, "clean") == 0) {
		mode_clean();
		return 0;
	}
	if (strcmp(mode, "zap") == 0) {
		mode_zap();
		return 0;
	}
	if (*mode)
		wl_die("unknown mode %s", mode);
	if (pipe(to_child) < 0 || pipe(to_parent) < 0)
		wl_die("pipe: %m");
	pid = fork_child();
	if (pid == 0) {
		check_still_evicted("child", evicted);
		close(to_child[1]);
		close(to_parent[0]);
		side("child", SALT_CHILD, 1, to_parent[1], to_child[0]);
		fflush(stdout);
		_exit(0);
	}
	check_still_evicted("parent", evicted);
	close(to_child[0]);
	close(to_parent[1]);
	side("parent", SALT_PARENT, 2, to_child[1], to_parent[0]);
	close(to_child[1]);

	if (waitpid(pid, &status, 0) < 0)
		wl_die("waitpid: %m");
	report_child(status);
	wl_log("parent and child passed");
	return 0;
}
