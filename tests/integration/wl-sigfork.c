/* SPDX-License-Identifier: MIT */
/*
 * wl-sigfork SIZE
 *
 * A fork child that is sent signals while the shim connects it to the daemon. The parent
 * installs a SIGUSR1 handler (the child inherits it) and, from the moment fork() returns,
 * sends the child SIGUSR1 in a tight loop until the child says it is running its own code.
 * The shim's start-up in the child (fork_child: connect, hello, wait for the answer) is
 * interrupted by handlers many times over; the child must still end up managed: it maps
 * and fills SIZE bytes, which must be evicted (required under the shim), and checks them.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "wl-common.h"

static volatile sig_atomic_t nr_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	nr_usr1++;
}

static int child(size_t nr_pages, int ready_fd)
{
	char *region;

	if (write(ready_fd, "r", 1) != 1)
		wl_die("write ready: %m");
	close(ready_fd);
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(region + p * WL_PAGE_SIZE, p, 0, 1);
	wl_wait_evicted("child's memory", region, nr_pages * WL_PAGE_SIZE, 500,
			wl_expect_eviction(), 60);
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_check("child final", region + p * WL_PAGE_SIZE, p, 0, 1, 0);
	wl_log("child: all %zu pages verified, %d SIGUSR1 handled", nr_pages, (int)nr_usr1);
	return 0;
}

/* Signals the child until it writes its byte; returns how many were sent. */
static unsigned long flood(pid_t pid, int ready_fd)
{
	unsigned long sent = 0;
	char c;

	for (;;) {
		ssize_t n = read(ready_fd, &c, 1);

		if (n == 1)
			return sent;
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			wl_die("the child ended before it was ready: %m");
		if (kill(pid, SIGUSR1) < 0)
			wl_die("kill: %m");
		sent++;
	}
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	size_t nr_pages;
	int fds[2], status;
	pid_t pid;

	wl_set_prog(argv[0]);
	if (argc != 2)
		wl_die("usage: %s SIZE", argv[0]);
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) < 0 || pipe2(fds, O_CLOEXEC) < 0 ||
	    fcntl(fds[0], F_SETFL, O_NONBLOCK) < 0)
		wl_die("set-up: %m");

	wl_phase("fork");
	pid = fork();
	if (pid < 0)
		wl_die("fork: %m");
	if (pid == 0) {
		close(fds[0]);
		_exit(child(nr_pages, fds[1]));
	}
	close(fds[1]);
	wl_log("parent: %lu SIGUSR1 sent while the child started", flood(pid, fds[0]));
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			wl_die("waitpid: %m");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		wl_mismatch("child %d ended with status 0x%x", pid, status);
	wl_log("child passed");
	return 0;
}
