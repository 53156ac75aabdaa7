/* SPDX-License-Identifier: MIT */
/*
 * wl-seccomp SIZE OPS MODE      MODE: seccomp | prctl | userns | zygote
 *
 * A program that sandboxes itself, as browsers' renderers and many services do. A region of
 * SIZE bytes is filled and OPS random reads and writes go over it, so that memext evicts part
 * of it; then the program installs a seccomp filter that forbids ioctl() and madvise(), the
 * calls memext's agent makes:
 *   seccomp  seccomp(2) through syscall(), SECCOMP_FILTER_FLAG_TSYNC (every thread, the
 *            agent's too), forbidden calls kill the process (SECCOMP_RET_KILL_PROCESS);
 *   prctl    prctl(PR_SET_SECCOMP), the calling thread only, forbidden calls fail (EPERM).
 * Before it, the probes libseccomp, Firefox and Chromium make (a NULL program, strict mode with
 * flags: bound to fail) must leave the program managed: pages are evicted after them. After
 * the filter: OPS more random reads and writes, a new 4 MiB mapping (the shim registers large
 * ones at once) and a fork whose child checks pages; every page is checked: a page the sandbox
 * kept from coming back, or a call of the shim the filter killed, fails the test. In seccomp
 * mode the program then executes itself (wl-seccomp exec-child) under the filter it inherits,
 * with MEMEXT_UNDER_SECCOMP=0: the shim must stay out, as its start-up makes ioctl() calls.
 * zygote: no filter; the program starts itself again as a sandbox's fork server does, with
 * --type=zygote among its arguments (Chromium's, Electron's), and that process checks it has a
 * single thread as Chromium's zygote does (a trap if not), then forks a child that fills and
 * checks memory of its own.
 * Exit 77 when the kernel has no seccomp filters.
 */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "wl-common.h"

static char *region;
static size_t nr_pages;
static uint32_t *gen;

static void random_ops(uint64_t ops, uint64_t seed)
{
	uint64_t rng = wl_mix(seed);

	for (uint64_t i = 0; i < ops; i++) {
		size_t p = wl_rand_below(&rng, nr_pages);

		wl_page_check("random read", region + p * WL_PAGE_SIZE, p, gen[p], 0, 0);
		if (wl_rand_below(&rng, 4) == 0)
			wl_page_fill(region + p * WL_PAGE_SIZE, p, ++gen[p], 0);
	}
}

/* What libraries ask to learn what the kernel supports: each fails, and installs nothing. */
static void probe_seccomp(void)
{
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, NULL) == 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 1, NULL) == 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, NULL, 0, 0) == 0)
		wl_die("a seccomp probe succeeded");
}

/* After the filter: a new large mapping, and a fork whose child reads pages. */
static void map_and_fork(void)
{
	size_t len = 4 << 20;
	char *m = wl_mmap_anon(len);
	int status;
	pid_t pid;

	for (size_t p = 0; p < len / WL_PAGE_SIZE; p++)
		wl_page_fill(m + p * WL_PAGE_SIZE, 1000000 + p, 0, 0);
	for (size_t p = 0; p < len / WL_PAGE_SIZE; p++)
		wl_page_check("new mapping", m + p * WL_PAGE_SIZE, 1000000 + p, 0, 0, 0);
	pid = fork();
	if (pid < 0)
		wl_die("fork: %m");
	if (pid == 0) {
		for (size_t p = 0; p < nr_pages; p += 7)
			wl_page_check("fork child", region + p * WL_PAGE_SIZE, p, gen[p], 0, 0);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		wl_mismatch("the fork child under the filter ended with status %#x", status);
}

/* Chromium's zygote: the link count of /proc/self/task is 2 + its number of threads. */
static int zygote(void)
{
	struct stat st;
	size_t len = 4 << 20;
	int status;
	pid_t pid;

	if (stat("/proc/self/task", &st) < 0)
		wl_die("stat /proc/self/task: %m");
	if (st.st_nlink != 3)
		wl_mismatch("the zygote has %ju threads, not 1: a sandbox's zygote stops here",
			    (uintmax_t)st.st_nlink - 2);
	pid = fork();
	if (pid < 0)
		wl_die("fork: %m");
	if (pid == 0) {
		char *m = wl_mmap_anon(len);

		for (size_t p = 0; p < len / WL_PAGE_SIZE; p++)
			wl_page_fill(m + p * WL_PAGE_SIZE, p, 1, 0);
		for (size_t p = 0; p < len / WL_PAGE_SIZE; p++)
			wl_page_check("zygote's child", m + p * WL_PAGE_SIZE, p, 1, 0, 0);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		wl_mismatch("the zygote's child ended with status %#x", status);
	wl_log("ok: the zygote had one thread");
	return 0;
}

/* Starts this program again as a zygote; returns when it has ended well. */
static void start_zygote(const char *prog)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		wl_die("fork: %m");
	if (pid == 0) {
		execl("/proc/self/exe", prog, "zygote-child", "--type=zygote", (char *)NULL);
		wl_die("execl: %m");
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		wl_mismatch("the zygote ended with status %#x", status);
}

/* Returns 0, or -1 with errno. */
static int sandbox(bool tsync)
{
	unsigned deny = tsync ? SECCOMP_RET_KILL_PROCESS : SECCOMP_RET_ERRNO | EPERM;
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, deny),
	};
	struct sock_fprog prog = {sizeof(filter) / sizeof(filter[0]), filter};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	if (tsync)
		return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC,
				    &prog);
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

int main(int argc, char **argv)
{
	uint64_t ops;
	bool tsync;

	wl_set_prog(argv[0]);
	if (argc == 2 && strcmp(argv[1], "exec-child") == 0) {
		nr_pages = 1024;
		gen = calloc(nr_pages, sizeof(*gen));
		region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);
		for (size_t p = 0; p < nr_pages; p++)
			wl_page_fill(region + p * WL_PAGE_SIZE, p, 0, 0);
		random_ops(10000, 3);
		wl_log("ok: executed under the filter");
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "zygote-child") == 0)
		return zygote();
	if (argc != 4 || (strcmp(argv[3], "seccomp") != 0 && strcmp(argv[3], "prctl") != 0 &&
			  strcmp(argv[3], "userns") != 0 && strcmp(argv[3], "zygote") != 0))
		wl_die("usage: wl-seccomp SIZE OPS seccomp|prctl|userns|zygote");
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	ops = wl_parse_u64(argv[2]);
	tsync = strcmp(argv[3], "seccomp") == 0;
	gen = calloc(nr_pages, sizeof(*gen));
	if (!gen || nr_pages == 0)
		wl_die("bad SIZE, or calloc");
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(region + p * WL_PAGE_SIZE, p, 0, 0);
	wl_phase("before");
	random_ops(ops, 1);
	probe_seccomp();
	random_ops(ops, 4);
	size_t out = wl_nonresident_pages(region, nr_pages * WL_PAGE_SIZE);
	wl_log("%zu of %zu pages not resident before the sandbox, after the probes", out,
	       nr_pages);
	if (wl_expect_eviction() && out == 0)
		wl_mismatch("no page was evicted after the probes: memext let the program go");

	wl_phase("sandbox");
	if (strcmp(argv[3], "zygote") == 0) {
		start_zygote(argv[0]);
	} else if (strcmp(argv[3], "userns") == 0) {
		if (unshare(CLONE_NEWUSER) < 0) {
			if (errno == EPERM || errno == ENOSPC) {
				wl_log("no user namespaces here (%m): nothing to test");
				return 77;
			}
			wl_mismatch("unshare(CLONE_NEWUSER): %m (EINVAL: the process has threads)");
		}
	} else if (sandbox(tsync) < 0) {
		if (errno == EINVAL || errno == ENOSYS) {
			wl_log("no seccomp filters here (%m): nothing to test");
			return 77;
		}
		wl_die("seccomp: %m");
	}
	if (strcmp(argv[3], "prctl") == 0 && !(ioctl(0, FIONREAD, &(int){0}) < 0 && errno == EPERM))
		wl_die("the filter let ioctl() through: it tests nothing");

	wl_phase("after");
	random_ops(ops, 2);
	map_and_fork();
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check("final", region + p * WL_PAGE_SIZE, p, gen[p], 0, 0);
	wl_log("ok: %zu pages checked", nr_pages);
	if (tsync) {
		/* Its filter kills on ioctl(): the shim must be told to stay out. */
		setenv("MEMEXT_UNDER_SECCOMP", "0", 1);
		execl("/proc/self/exe", argv[0], "exec-child", (char *)NULL);
		wl_die("execl: %m");
	}
	return 0;
}
