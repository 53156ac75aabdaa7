/* SPDX-License-Identifier: MIT */
/*
 * wl-burst SIZE THREADS
 *
 * Hundreds of faults and an event waiting at once. THREADS threads each wait to touch one
 * page, 64 pages apart so that no fault-around or readahead of one answers another, and one
 * more drops page 1 (MADV_DONTNEED: a REMOVE event, which the kernel queues behind the
 * faults and which makes every answer fail with EAGAIN until it is read). A monitor process,
 * run without the shim so that nothing it does waits for memextd, stops memextd (SIGSTOP,
 * its pid in MEMEXT_WL_DAEMON_PID), releases the threads, waits until every thread whose page
 * was evicted waits in the kernel for its fault and the event is queued
 * (/proc/PID/task/TID/wchan), then lets memextd go on (SIGCONT). All of this came with one
 * wake-up of memextd's edge-triggered epoll sets, and the event sits behind more faults than
 * memextd once took in one read: it must read on until the uffd is empty, or threads wait for
 * ever (the harness's timeout fails the test). Every page is checked at the end.
 *
 *   wl-burst SIZE THREADS ROUNDS
 *
 * Threads faulting side by side, and then not (daemon/faulthome.h). No event: THREADS threads
 * touch one page each ROUNDS times, each time with memextd stopped until they all wait, so
 * that one read of the uffd finds their faults together; then one thread touches pages at
 * random, one fault at a time. memextd must give the client one fault thread, then every
 * thread again (the harness checks the counters), and every page is checked on the way.
 *
 *   wl-burst --monitor DAEMON_PID PID RELEASE_FD SERVED_FD ROUNDS PAGE_ADDR... (internal)
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "wl-common.h"

#define SPACING 64          /* pages between two threads' pages: beyond fault-around and readahead */
#define ROUND_SPACING 32    /* the same in rounds, where more pages are needed: still beyond */
#define MEMEXTD_READ_MAX 256 /* faults a fault thread once read at most before answering */
#define REMOVED_PAGE 1       /* dropped by the remover thread */
#define MONITOR_NOT_ENOUGH 3 /* the monitor's exit status: too few pages were evicted */
#define SERIAL_TOUCHES 1500 /* one at a time after the rounds: several windows of faulthome.h */

extern char **environ;

static char *region;
static size_t nr_pages;
static int release_fd; /* read end: a byte for each thread to go */
static int done_fd;    /* read end: a byte for each thread to exit */
static int served_fd;  /* write end: a byte for each page checked in a round */
static unsigned touched; /* threads that have checked their page */
/* Burst threads about to wait for their release: memextd is stopped only once all are, since
 * a thread still starting would fault on its own stack there, not where the test wants it. */
static unsigned ready;
static unsigned nr_threads, nr_rounds;

/* Thread t's page in round r (burst: round 0). */
static size_t thread_page(unsigned t, unsigned r)
{
	return ((size_t)r * nr_threads + t) * (nr_rounds ? ROUND_SPACING : SPACING) + 7;
}

/* Makes the stack this thread will use resident now, while memextd runs. */
static __attribute__((noinline)) void stack_touch(void)
{
	volatile char deep[16 * 1024];

	for (size_t i = 0; i < sizeof(deep); i += WL_PAGE_SIZE)
		deep[i] = 1;
}

/* Rounds: checks its page of each round when released, and says so. */
static void *round_thread(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;
	char go;

	for (unsigned r = 0; r < nr_rounds; r++) {
		size_t p = thread_page(t, r);

		stack_touch();
		if (read(release_fd, &go, 1) != 1)
			wl_die("read release pipe: %m");
		wl_page_check("round read", region + p * WL_PAGE_SIZE, p, 0, 0, 0);
		if (write(served_fd, "s", 1) != 1)
			wl_die("write served pipe: %m");
	}
	return NULL;
}

static void *touch_thread(void *arg)
{
	size_t p = thread_page((unsigned)(uintptr_t)arg, 0);
	char go;

	stack_touch();
	__atomic_fetch_add(&ready, 1, __ATOMIC_RELEASE);
	if (read(release_fd, &go, 1) != 1)
		wl_die("read release pipe: %m");
	wl_page_check("burst read", region + p * WL_PAGE_SIZE, p, 0, 0, 0);
	__atomic_fetch_add(&touched, 1, __ATOMIC_RELEASE);
	/* Wait here, fault-free, until every thread is served: a thread that exits now (or
	 * touches anything evicted) would raise a new fault or event, a new wake-up of memextd
	 * that could read faults a missed wake-up left behind. */
	if (read(done_fd, &go, 1) != 1)
		wl_die("read done pipe: %m");
	return NULL;
}

/*
 * Locks the pages of this thread's stack around the current frame. Between its release and
 * its madvise() the remover must not fault: reclaim may evict a page it touched an instant ago
 * (a new page starts on the inactive list), and a fault while memextd is stopped would leave
 * it waiting on that instead of on its event.
 */
static __attribute__((noinline)) void stack_lock(void)
{
	char here;
	uintptr_t page = (uintptr_t)&here & ~(uintptr_t)(WL_PAGE_SIZE - 1);
	uintptr_t below = page - 16 * 1024;

	/* One page above the frame too, where it is still the stack mapping. */
	if (mlock((void *)below, page + 2 * WL_PAGE_SIZE - below) < 0 &&
	    mlock((void *)below, page + WL_PAGE_SIZE - below) < 0)
		wl_die("mlock the remover's stack: %m");
}

/*
 * Drops REMOVED_PAGE once released: a REMOVE event queued behind the faults. From the release
 * to the madvise it touches only its locked stack: the globals are read before, and raw system
 * calls spare the thread descriptor that libc's cancellation points write (both are managed
 * memory too).
 */
static void *remove_thread(void *arg)
{
	int fd = release_fd;
	void *target = region + REMOVED_PAGE * WL_PAGE_SIZE;
	char go;

	(void)arg;
	stack_touch();
	stack_lock();
	__atomic_fetch_add(&ready, 1, __ATOMIC_RELEASE);
	if (syscall(SYS_read, fd, &go, 1) != 1)
		wl_die("read release pipe: %m");
	if (syscall(SYS_madvise, target, WL_PAGE_SIZE, MADV_DONTNEED) < 0)
		wl_die("madvise: %m");
	__atomic_fetch_add(&touched, 1, __ATOMIC_RELEASE);
	if (read(done_fd, &go, 1) != 1)
		wl_die("read done pipe: %m");
	return NULL;
}

/* --- the monitor: an ordinary process, not under the shim ------------------------------- */

/* /proc/PID/task/TID/NAME into buf, NUL-terminated; false if it cannot be read or is empty. */
static bool task_file(pid_t pid, const char *tid, const char *name, char *buf, size_t size)
{
	char path[300];
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%s/%s", (int)pid, tid, name);
	if ((fd = open(path, O_RDONLY)) < 0)
		return false;
	len = read(fd, buf, size - 1);
	close(fd);
	buf[len > 0 ? len : 0] = 0;
	return len > 0;
}

/* Threads of pid whose wait channel starts with wait_channel. */
static unsigned threads_in(pid_t pid, const char *wait_channel)
{
	char path[300];
	DIR *d;
	struct dirent *e;
	unsigned n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(d = opendir(path))) {
		wl_log("monitor: opendir %s: %m", path);
		return 0;
	}
	while ((e = readdir(d))) {
		char wchan[64];

		if (e->d_name[0] != '.' && task_file(pid, e->d_name, "wchan", wchan, sizeof(wchan)) &&
		    strncmp(wchan, wait_channel, strlen(wait_channel)) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* Pages of pid at the given addresses that are not present (pagemap bit 63). */
static unsigned pages_not_present(pid_t pid, char **addrs, unsigned n)
{
	char path[64];
	unsigned out = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	if ((fd = open(path, O_RDONLY)) < 0) {
		wl_log("monitor: open %s: %m", path);
		return 0;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t addr = strtoull(addrs[i], NULL, 0), entry = 0;

		if (pread(fd, &entry, sizeof(entry), (off_t)(addr / WL_PAGE_SIZE * 8)) != 8)
			break;
		out += !(entry >> 63 & 1);
	}
	close(fd);
	return out;
}

/* Whether pid is stopped (its state in /proc/PID/stat is T). */
/* Whether the task's stat (a /proc path) says it is stopped. */
static bool task_stopped(const char *path)
{
	char buf[512];
	const char *p;
	ssize_t len;
	int fd;

	if ((fd = open(path, O_RDONLY)) < 0)
		return false;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[len > 0 ? len : 0] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'T';
}

/* For a failed burst: where the threads of pid wait, other than on their fault, with the
 * kernel stack of each (root only). */
static void log_other_waits(pid_t pid)
{
	char path[300];
	DIR *d;
	struct dirent *e;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(d = opendir(path)))
		return;
	while ((e = readdir(d))) {
		char wchan[64] = "", stack[2048] = "";

		if (e->d_name[0] == '.' ||
		    (task_file(pid, e->d_name, "wchan", wchan, sizeof(wchan)) &&
		     (strncmp(wchan, "handle_userfault", 16) == 0 ||
		      strstr(wchan, "pipe_read") != NULL)))
			continue;
		(void)task_file(pid, e->d_name, "stack", stack, sizeof(stack));
		wl_log("monitor: thread %s waits in '%s'; kernel stack:\n%s", e->d_name, wchan, stack);
	}
	closedir(d);
}

/* Every thread of pid, not only the first: a fault thread that has not stopped yet could still
 * read the uffd, the remover's event with it. */
static bool is_stopped(pid_t pid)
{
	char path[300];
	struct dirent *e;
	bool all = true;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(d = opendir(path)))
		return false;
	while (all && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid, e->d_name);
		all = task_stopped(path);
	}
	closedir(d);
	return all;
}

static void stop_daemon(pid_t daemon, double deadline)
{
	if (kill(daemon, SIGSTOP) < 0)
		wl_die("SIGSTOP memextd %d: %m", (int)daemon);
	while (!is_stopped(daemon) && wl_now() < deadline)
		usleep(1000);
}

static void continue_daemon(pid_t daemon)
{
	if (kill(daemon, SIGCONT) < 0)
		wl_die("SIGCONT memextd %d: %m", (int)daemon);
}

/* Writes n bytes to the release pipe; false on error. */
static bool release(int release_w, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (write(release_w, "g", 1) != 1) {
			wl_log("monitor: write release pipe: %m");
			return false;
		}
	return true;
}

/* Between its SIGSTOP and SIGCONT it never exits: memextd would stay stopped. */
static int monitor_burst(pid_t daemon, pid_t pid, int release_w, char **addrs, unsigned n)
{
	unsigned evicted, waiting = 0, event = 0;
	double deadline = wl_now() + 20;
	int status = 0;

	stop_daemon(daemon, deadline);
	/* Nothing brings a page back while memextd is stopped: each of these threads waits. */
	evicted = pages_not_present(pid, addrs, n);
	if (!release(release_w, n + 1)) /* and the remover */
		status = WL_EXIT_ERROR;
	while (status == 0 &&
	       ((waiting = threads_in(pid, "handle_userfault")) < evicted ||
		(event = threads_in(pid, "userfaultfd_event")) < 1) &&
	       wl_now() < deadline)
		usleep(10000);
	wl_log("monitor: %u of %u threads waiting on their fault (%u pages evicted), %u on an "
	       "event, with memextd stopped", waiting, n, evicted, event);
	if (status == 0 && (waiting <= MEMEXTD_READ_MAX || event < 1)) {
		wl_log("monitor: the test needs more than %d faults and an event waiting at once",
		       MEMEXTD_READ_MAX);
		log_other_waits(pid);
		status = MONITOR_NOT_ENOUGH;
	}
	continue_daemon(daemon);
	return status;
}

/*
 * Each round: the threads' faults wait together while memextd is stopped, then it serves them
 * all (the served pipe says when). At least 4 rounds in 5 must have had two faults or more
 * waiting at once: one read of memextd each, in a row, more than faulthome.h's share of a
 * window however the windows fall.
 */
static int monitor_rounds(pid_t daemon, pid_t pid, int release_w, int served_r, unsigned rounds,
			  char **addrs, unsigned n)
{
	unsigned together = 0;

	for (unsigned r = 0; r < rounds; r++) {
		unsigned evicted, waiting = 0;
		double deadline = wl_now() + 10;
		char buf[64];

		stop_daemon(daemon, deadline);
		evicted = pages_not_present(pid, addrs + (size_t)r * n, n);
		if (!release(release_w, n)) {
			continue_daemon(daemon);
			return WL_EXIT_ERROR;
		}
		while ((waiting = threads_in(pid, "handle_userfault")) < evicted &&
		       wl_now() < deadline)
			usleep(1000);
		together += waiting >= 2;
		continue_daemon(daemon);
		/* A fault memextd never answers leaves this read waiting (the harness's timeout). */
		for (unsigned got = 0; got < n;) {
			ssize_t k = read(served_r, buf, n - got < sizeof(buf) ? n - got : sizeof(buf));

			if (k <= 0) {
				wl_log("monitor: read served pipe: %m");
				return WL_EXIT_ERROR;
			}
			got += (unsigned)k;
		}
	}
	wl_log("monitor: %u of %u rounds had two faults or more waiting at once", together, rounds);
	return together * 5 >= rounds * 4 ? 0 : MONITOR_NOT_ENOUGH;
}

/* Runs the monitor without the shim: it must never wait for the memextd it stopped. */
static pid_t start_monitor(const char *self, pid_t daemon, int release_w, int served_r)
{
	unsigned rounds = nr_rounds ? nr_rounds : 1, nr_addrs = rounds * nr_threads;
	char **argv = calloc(nr_addrs + 8, sizeof(char *)), **envp;
	size_t nenv = 0, k = 0;
	pid_t pid;

	for (char **e = environ; *e; e++)
		nenv++;
	envp = calloc(nenv + 1, sizeof(char *));
	if (!argv || !envp)
		wl_die("calloc: %m");
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) != 0)
			envp[k++] = *e;
	k = 0;
	argv[k++] = (char *)self;
	argv[k++] = "--monitor";
	if (asprintf(&argv[k++], "%d", (int)daemon) < 0 ||
	    asprintf(&argv[k++], "%d", (int)getpid()) < 0 ||
	    asprintf(&argv[k++], "%d", release_w) < 0 || asprintf(&argv[k++], "%d", served_r) < 0 ||
	    asprintf(&argv[k++], "%u", nr_rounds) < 0)
		wl_die("asprintf: %m");
	for (unsigned r = 0; r < rounds; r++)
		for (unsigned t = 0; t < nr_threads; t++)
			if (asprintf(&argv[k++], "%p",
				     (void *)(region + thread_page(t, r) * WL_PAGE_SIZE)) < 0)
				wl_die("asprintf: %m");
	if ((errno = posix_spawn(&pid, self, NULL, NULL, argv, envp)))
		wl_die("posix_spawn %s: %m", self);
	return pid;
}

static void wait_monitor(pid_t mon)
{
	int status;

	if (waitpid(mon, &status, 0) < 0)
		wl_die("waitpid monitor: %m");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		wl_die("the monitor failed (status %#x)", status);
}

/* All threads fault at once, with an event behind them. */
static void burst(pid_t daemon, int served_r, int done_w)
{
	pthread_t *tid = calloc(nr_threads + 1, sizeof(*tid));
	int pipefd[2];

	if (!tid || pipe(pipefd) < 0)
		wl_die("calloc or pipe: %m");
	release_fd = pipefd[0];
	__atomic_store_n(&touched, 0, __ATOMIC_RELEASE); /* resident before memextd stops */
	__atomic_store_n(&ready, 0, __ATOMIC_RELEASE);
	for (unsigned t = 0; t < nr_threads; t++)
		if ((errno = pthread_create(&tid[t], NULL, touch_thread, (void *)(uintptr_t)t)))
			wl_die("pthread_create: %m");
	if ((errno = pthread_create(&tid[nr_threads], NULL, remove_thread, NULL)))
		wl_die("pthread_create: %m");
	while (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) < nr_threads + 1)
		usleep(1000);
	wait_monitor(start_monitor("/proc/self/exe", daemon, pipefd[1], served_r));
	/* A fault memextd never read leaves its thread waiting here for ever. */
	while (__atomic_load_n(&touched, __ATOMIC_ACQUIRE) < nr_threads + 1)
		usleep(1000);
	for (unsigned t = 0; t < nr_threads + 1; t++)
		if (write(done_w, "d", 1) != 1)
			wl_die("write done pipe: %m");
	for (unsigned t = 0; t < nr_threads + 1; t++)
		pthread_join(tid[t], NULL);
	free(tid);
}

/* Faults side by side, round after round; then one at a time. */
static void rounds(pid_t daemon, int served_r)
{
	pthread_t *tid = calloc(nr_threads, sizeof(*tid));
	uint64_t rng = 42;
	int pipefd[2];

	if (!tid || pipe(pipefd) < 0)
		wl_die("calloc or pipe: %m");
	release_fd = pipefd[0];
	for (unsigned t = 0; t < nr_threads; t++)
		if ((errno = pthread_create(&tid[t], NULL, round_thread, (void *)(uintptr_t)t)))
			wl_die("pthread_create: %m");
	wait_monitor(start_monitor("/proc/self/exe", daemon, pipefd[1], served_r));
	for (unsigned t = 0; t < nr_threads; t++)
		pthread_join(tid[t], NULL);
	free(tid);

	wl_phase("serial");
	for (unsigned i = 0; i < SERIAL_TOUCHES; i++) {
		size_t p = wl_rand_below(&rng, nr_pages);

		wl_page_check("serial read", region + p * WL_PAGE_SIZE, p, 0, 0, 0);
	}
}

int main(int argc, char **argv)
{
	const char *dpid_env = getenv("MEMEXT_WL_DAEMON_PID");
	pid_t daemon = dpid_env ? (pid_t)atoi(dpid_env) : 0;
	int donefd[2], servedfd[2];

	wl_set_prog(argv[0]);
	if (argc >= 7 && strcmp(argv[1], "--monitor") == 0) {
		unsigned r = (unsigned)atoi(argv[6]), n = (unsigned)(argc - 7);

		if (r == 0)
			return monitor_burst(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), argv + 7, n);
		return monitor_rounds(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), r,
				      argv + 7, n / r);
	}
	if (argc != 3 && argc != 4)
		wl_die("usage: %s SIZE THREADS [ROUNDS]", argv[0]);
	if (daemon <= 0)
		wl_die("MEMEXT_WL_DAEMON_PID must name the memextd to stop");
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	nr_threads = (unsigned)wl_parse_u64(argv[2]);
	nr_rounds = argc == 4 ? (unsigned)wl_parse_u64(argv[3]) : 0;
	if (!nr_threads || thread_page(nr_threads - 1, nr_rounds ? nr_rounds - 1 : 0) >= nr_pages)
		wl_die("SIZE holds fewer than THREADS * ROUNDS pages %d apart",
		       nr_rounds ? ROUND_SPACING : SPACING);
	/* The monitor inherits only the served pipe's read end: with the write end open in the
	 * monitor too, a workload that died would leave its read waiting rather than failing. */
	if (pipe(donefd) < 0 || pipe2(servedfd, O_CLOEXEC) < 0 ||
	    fcntl(servedfd[0], F_SETFD, 0) < 0)
		wl_die("pipe: %m");
	done_fd = donefd[0];
	served_fd = servedfd[1];
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(region + p * WL_PAGE_SIZE, p, 0, 0);
	wl_wait_evicted("region before the burst", region, nr_pages * WL_PAGE_SIZE, 500,
			wl_expect_eviction(), 60);

	wl_phase(nr_rounds ? "rounds" : "burst");
	if (nr_rounds)
		rounds(daemon, servedfd[0]);
	else
		burst(daemon, servedfd[0], donefd[1]);

	wl_phase("verify");
	for (size_t p = 0; p < nr_pages; p++)
		if (p == REMOVED_PAGE && !nr_rounds)
			wl_zero_check("dropped", region + p * WL_PAGE_SIZE, p);
		else
			wl_page_check("final", region + p * WL_PAGE_SIZE, p, 0, 0, 0);
	wl_log("all %zu pages verified after %u %s of %u faults", nr_pages,
	       nr_rounds ? nr_rounds : 1, nr_rounds ? "rounds" : "burst", nr_threads);
	return 0;
}
