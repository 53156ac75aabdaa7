/* SPDX-License-Identifier: MIT */
/*
 * wl-closefd MODE SIZE
 *
 * A program that closes every fd it did not open itself, as daemons and spawners do, after
 * its memory was evicted: MODE is close-range (glibc's close_range(3, ~0U, 0)), closefrom
 * (closefrom(3)), loop (close(fd) for fd in 3..65535) or dup2 (dup2() of /dev/null onto every
 * number from 3 to 1023 -- where the shim keeps its fds -- then close() of each) or
 * raw-close-range (the system call itself, which no interposition sees: the fds in the
 * agent's own table must keep eviction going) or proc-fd (close() of every fd listed in
 * /proc/self/fd, as Chromium's crash reporter does: each close must succeed, as it would
 * without the shim). The shim's
 * own fds (its userfaultfd,
 * the control socket, the agent's socket) must survive it, and the numbers the application
 * gets back afterwards must stay the application's.
 *
 * First half of SIZE: filled, evicted, then the close ("phase close"). Afterwards the program
 * opens 24 pipes (the lowest fd numbers: the shim's if they were at 3.. and got closed) and
 * writes a token into each, then ("phase after-close") maps the second half, fills it (it
 * must be evicted too: the harness counts pswpout from this phase on), reads and rewrites
 * pages of both halves, checks every page and reads every token back: a pipe the shim used
 * as its own would have lost or gained bytes.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>

#include "wl-common.h"

#define NR_PIPES 24
#define CLOSE_LOOP_MAX 65536
#define DUP2_MAX 1024

struct page_state {
	uint32_t gen;
};

static char *halves[2];
static size_t half_pages;
static struct page_state *state;
static int pipes[NR_PIPES][2];

static char *page_addr(size_t p)
{
	return halves[p / half_pages] + (p % half_pages) * WL_PAGE_SIZE;
}

static void fill_half(unsigned h)
{
	for (size_t i = 0; i < half_pages; i++) {
		size_t p = h * half_pages + i;

		wl_page_fill(page_addr(p), p, state[p].gen, 0);
	}
}

static void dup2_onto_all(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (null < 0)
		wl_die("open /dev/null: %m");
	for (int fd = 3; fd < DUP2_MAX; fd++)
		if (fd != null && dup2(null, fd) != fd)
			wl_die("dup2(%d, %d): %m", null, fd);
	for (int fd = 3; fd < DUP2_MAX; fd++)
		if (close(fd) < 0)
			wl_die("close(%d) after dup2 onto it: %m", fd);
}

static void close_listed(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!dir)
		wl_die("opendir /proc/self/fd: %m");
	while ((de = readdir(dir))) {
		int fd = atoi(de->d_name);

		if (de->d_name[0] == '.' || fd < 3 || fd == dirfd(dir))
			continue;
		if (close(fd) < 0)
			wl_die("close(%d), listed in /proc/self/fd: %m", fd);
		n++;
	}
	closedir(dir);
	wl_log("closed the %d fds listed in /proc/self/fd", n);
}

static void close_all(const char *mode)
{
	if (!strcmp(mode, "close-range")) {
		if (close_range(3, ~0U, 0) < 0)
			wl_die("close_range(3, ~0U, 0): %m");
	} else if (!strcmp(mode, "closefrom")) {
		closefrom(3);
	} else if (!strcmp(mode, "loop")) {
		for (int fd = 3; fd < CLOSE_LOOP_MAX; fd++)
			(void)close(fd);
	} else if (!strcmp(mode, "raw-close-range")) {
		if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
			wl_die("syscall(SYS_close_range, 3, ~0U, 0): %m");
	} else if (!strcmp(mode, "dup2")) {
		dup2_onto_all();
	} else if (!strcmp(mode, "proc-fd")) {
		close_listed();
	} else {
		wl_die("unknown MODE %s (close-range, closefrom, loop, dup2, raw-close-range, "
		       "proc-fd)",
		       mode);
	}
}

static void open_pipes(void)
{
	for (int i = 0; i < NR_PIPES; i++) {
		char token[16];
		int n;

		if (pipe2(pipes[i], O_CLOEXEC) < 0)
			wl_die("pipe2: %m");
		n = snprintf(token, sizeof(token), "pipe-%02d", i);
		if (write(pipes[i][1], token, (size_t)n) != n)
			wl_die("write to pipe %d: %m", i);
	}
	wl_log("pipes got fds %d..%d", pipes[0][0], pipes[NR_PIPES - 1][1]);
}

static void check_pipes(void)
{
	for (int i = 0; i < NR_PIPES; i++) {
		char want[16], got[64];
		int n = snprintf(want, sizeof(want), "pipe-%02d", i);
		ssize_t r;

		if (fcntl(pipes[i][0], F_SETFL, O_NONBLOCK) < 0)
			wl_mismatch("pipe %d (fd %d) is no longer open: %m", i, pipes[i][0]);
		r = read(pipes[i][0], got, sizeof(got));
		if (r != n || memcmp(got, want, (size_t)n))
			wl_mismatch("pipe %d (fds %d, %d): read %zd bytes back instead of its "
				    "%d-byte token: someone else used this fd",
				    i, pipes[i][0], pipes[i][1], r, n);
	}
	wl_log("all %d pipe tokens read back intact", NR_PIPES);
}

/* Reads and rewrites spread over both halves: faults on evicted pages after the close. */
static void churn(size_t nr_ops)
{
	uint64_t rng = wl_mix(0xc105e);
	size_t nr_pages = 2 * half_pages;

	for (size_t i = 0; i < nr_ops; i++) {
		size_t p = wl_rand_below(&rng, nr_pages);

		if (wl_rand_below(&rng, 2)) {
			wl_page_check("churn read", page_addr(p), p, state[p].gen, 0, 0);
		} else {
			state[p].gen++;
			wl_page_fill(page_addr(p), p, state[p].gen, 0);
		}
	}
}

int main(int argc, char **argv)
{
	bool required = wl_expect_eviction();
	size_t half_len;

	wl_set_prog(argv[0]);
	if (argc != 3)
		wl_die("usage: %s close-range|closefrom|loop|dup2|raw-close-range|proc-fd SIZE", argv[0]);
	half_pages = wl_parse_size(argv[2]) / WL_PAGE_SIZE / 2;
	if (!half_pages)
		wl_die("bad SIZE");
	half_len = half_pages * WL_PAGE_SIZE;
	state = calloc(2 * half_pages, sizeof(*state));
	if (!state)
		wl_die("calloc: %m");

	wl_phase("fill");
	halves[0] = wl_mmap_anon(half_len);
	fill_half(0);
	wl_wait_evicted("first half before the close", halves[0], half_len, 500, required, 60);

	wl_phase("close");
	close_all(argv[1]);
	open_pipes();

	wl_phase("after-close");
	halves[1] = wl_mmap_anon(half_len);
	fill_half(1);
	/* Eviction must go on after the close: the new memory leaves too. */
	wl_wait_evicted("second half after the close", halves[1], half_len, 500, required, 60);
	churn(2 * half_pages);

	wl_phase("verify");
	for (size_t p = 0; p < 2 * half_pages; p++)
		wl_page_check("final", page_addr(p), p, state[p].gen, 0, 0);
	check_pipes();
	wl_log("all %zu pages verified", 2 * half_pages);
	return 0;
}
