/* SPDX-License-Identifier: MIT */
/*
 * uffd-roundtrip: what one userfaultfd fault costs on this machine, with nothing of memext in
 * it. A thread touches N fresh pages of a registered mapping in order; a handler answers each
 * MISSING fault with one UFFDIO_COPY. Prints the touch latency (p50 / p90 / p99), faults per
 * second and where the faulting thread ran. Not a test; no root needed.
 *
 *   uffd-roundtrip [--faults N] [--handler-cpu C|follow] [--app-cpu C] [--process] [--epoll]
 *                  [--second-waiter] [--idle-copy] [--idle]
 *
 *   --handler-cpu C  pin the handler to CPU C (default 0); "follow": re-pin it every 64
 *                    faults to the CPU the faulting thread last ran on (/proc/.../stat)
 *   --app-cpu C      pin the faulting thread too (default: the scheduler places it)
 *   --process        the handler is a forked process, not a thread (memextd's case)
 *   --epoll          the handler waits in epoll_wait and reads the uffd until EAGAIN
 *   --second-waiter  a second thread, on the other CPU, waits on the same uffd in its own
 *                    epoll set and does nothing (memextd's other fault thread)
 *   --idle-copy      the handler makes each UFFDIO_COPY under SCHED_IDLE, so that the
 *                    scheduler keeps the woken thread on the handler's CPU
 *   --idle           the handler runs under SCHED_IDLE throughout: the same effect without
 *                    two policy changes a fault (a real daemon would starve behind any
 *                    busy thread on its CPU)
 *
 * docs/PERFORMANCE.md, session 12, has what it measured on the 2-vCPU guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define FOLLOW_EVERY 64

static struct {
	long faults;
	int handler_cpu; /* -1: follow */
	int app_cpu;	 /* -1: free */
	bool process, epoll, second_waiter, idle_copy, idle;
} opt = {.faults = 100000, .handler_cpu = 0, .app_cpu = -1};

static int uffd;
static pid_t app_tid;
static char src_page[PAGE];

static void die(const char *what)
{
	fprintf(stderr, "uffd-roundtrip: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		die("sched_setaffinity");
}

static void set_policy(int policy)
{
	struct sched_param sp = {0};

	if (sched_setscheduler(0, policy, &sp) < 0)
		die("sched_setscheduler");
}

/* The CPU the faulting thread last ran on: field 39 of its stat line. */
static int app_cpu_now(void)
{
	static int fd = -1;
	char buf[1024], *p;
	int field = 2;
	ssize_t n;

	if (fd < 0) {
		snprintf(buf, sizeof(buf), "/proc/%d/task/%d/stat", getpid(), app_tid);
		if ((fd = open(buf, O_RDONLY | O_CLOEXEC)) < 0)
			die("open stat");
	}
	if ((n = pread(fd, buf, sizeof(buf) - 1, 0)) <= 0)
		die("read stat");
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	for (; p && *p && field < 39; p++)
		if (*p == ' ')
			field++;
	return p ? atoi(p) : 0;
}

static void answer(const struct uffd_msg *msg)
{
	struct uffdio_copy copy = {
		.dst = msg->arg.pagefault.address & ~(PAGE - 1),
		.src = (unsigned long)src_page,
		.len = PAGE,
	};

	if (opt.idle_copy)
		set_policy(SCHED_IDLE);
	if (ioctl(uffd, UFFDIO_COPY, &copy) < 0 && errno != EEXIST)
		die("UFFDIO_COPY");
	if (opt.idle_copy)
		set_policy(SCHED_OTHER);
}

static void *handler(void *arg)
{
	int ep = -1, cpu = opt.handler_cpu < 0 ? 0 : opt.handler_cpu;
	unsigned long n = 0;

	(void)arg;
	pin(cpu);
	if (opt.idle)
		set_policy(SCHED_IDLE);
	if (opt.epoll) {
		struct epoll_event ev = {.events = EPOLLIN};

		if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, uffd, &ev) < 0)
			die("epoll");
	}
	for (;;) {
		struct uffd_msg msg;

		if (opt.epoll) {
			struct epoll_event ev;

			if (epoll_wait(ep, &ev, 1, -1) < 0 && errno != EINTR)
				die("epoll_wait");
		}
		while (read(uffd, &msg, sizeof(msg)) == sizeof(msg)) {
			if (msg.event != UFFD_EVENT_PAGEFAULT)
				continue;
			if (opt.handler_cpu < 0 && n++ % FOLLOW_EVERY == 0) {
				int c = app_cpu_now();

				if (c != cpu)
					pin(cpu = c);
			}
			answer(&msg);
			if (!opt.epoll)
				break;
		}
	}
	return NULL;
}

static void *second_waiter(void *arg)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
	int ep = epoll_create1(EPOLL_CLOEXEC);

	(void)arg;
	pin(opt.handler_cpu == 0 ? 1 : 0);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, uffd, &ev) < 0)
		die("epoll");
	for (;;)
		(void)epoll_wait(ep, &ev, 1, -1);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* How the handler is scheduled, for the report line. */
static const char *policy_name(void)
{
	if (opt.idle_copy)
		return ", SCHED_IDLE copy";
	return opt.idle ? ", SCHED_IDLE" : "";
}

static void usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: uffd-roundtrip [--faults N] [--handler-cpu C|follow] [--app-cpu C]\n"
		"                      [--process] [--epoll] [--second-waiter] [--idle-copy] "
		"[--idle]\n");
	exit(status);
}

static void parse(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"faults", required_argument, NULL, 'n'},
		{"handler-cpu", required_argument, NULL, 'h'},
		{"app-cpu", required_argument, NULL, 'a'},
		{"process", no_argument, NULL, 'p'},
		{"epoll", no_argument, NULL, 'e'},
		{"second-waiter", no_argument, NULL, 's'},
		{"idle-copy", no_argument, NULL, 'i'},
		{"idle", no_argument, NULL, 'I'},
		{"help", no_argument, NULL, 'H'},
		{0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			opt.faults = atol(optarg);
			break;
		case 'h':
			opt.handler_cpu = strcmp(optarg, "follow") ? atoi(optarg) : -1;
			break;
		case 'a':
			opt.app_cpu = atoi(optarg);
			break;
		case 'p':
			opt.process = true;
			break;
		case 'e':
			opt.epoll = true;
			break;
		case 's':
			opt.second_waiter = true;
			break;
		case 'i':
			opt.idle_copy = true;
			break;
		case 'I':
			opt.idle = true;
			break;
		case 'H':
			usage(0);
			break;
		default:
			usage(2);
		}
	}
	if (opt.faults < 100 || optind != argc || (opt.process && opt.handler_cpu < 0) ||
	    (opt.process && opt.second_waiter))
		usage(2); /* follow and the second waiter need the handler in this process */
}

int main(int argc, char **argv)
{
	struct uffdio_api api = {.api = UFFD_API};
	size_t len;
	char *area;
	double *lat, t0, wall;
	char cpu_name[16];
	long on_handler_cpu = 0;
	pid_t child = -1;
	volatile char sink = 0;

	parse(argc, argv);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | (opt.epoll ? O_NONBLOCK : 0));
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0)
		die("userfaultfd");
	len = (size_t)opt.faults * PAGE;
	area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	lat = calloc((size_t)opt.faults, sizeof(*lat));
	if (area == MAP_FAILED || !lat)
		die("memory");
	struct uffdio_register reg = {
		.range = {(unsigned long)area, len},
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		die("UFFDIO_REGISTER");
	memset(src_page, 'x', sizeof(src_page));
	app_tid = gettid();
	if (opt.process) {
		if ((child = fork()) < 0)
			die("fork");
		if (child == 0) {
			handler(NULL);
			_exit(0);
		}
	} else {
		pthread_t t;

		if (pthread_create(&t, NULL, handler, NULL) ||
		    (opt.second_waiter && pthread_create(&t, NULL, second_waiter, NULL)))
			die("pthread_create");
	}
	if (opt.app_cpu >= 0)
		pin(opt.app_cpu);
	usleep(100000); /* the handler is waiting */

	t0 = now_usec();
	for (long i = 0; i < opt.faults; i++) {
		double a = now_usec();

		sink += area[(size_t)i * PAGE];
		lat[i] = now_usec() - a;
		on_handler_cpu += sched_getcpu() == (opt.handler_cpu < 0 ? 0 : opt.handler_cpu);
	}
	wall = now_usec() - t0;
	for (long i = 0; i < opt.faults; i++)
		if (area[(size_t)i * PAGE] != 'x' || area[(size_t)i * PAGE + PAGE - 1] != 'x') {
			fprintf(stderr, "uffd-roundtrip: page %ld has the wrong content\n", i);
			return 1;
		}
	qsort(lat, (size_t)opt.faults, sizeof(*lat), cmp_double);
	if (opt.handler_cpu < 0)
		snprintf(cpu_name, sizeof(cpu_name), "follow");
	else
		snprintf(cpu_name, sizeof(cpu_name), "%d", opt.handler_cpu);
	printf("handler %s on cpu %s%s%s%s: p50 %.1f p90 %.1f p99 %.1f us, %.0f faults/s, "
	       "faulting thread on cpu %d %.0f%% of the time\n",
	       opt.process ? "process" : "thread", cpu_name, opt.epoll ? ", epoll" : "",
	       opt.second_waiter ? ", second waiter" : "", policy_name(), lat[opt.faults / 2],
	       lat[opt.faults * 9 / 10], lat[opt.faults * 99 / 100], opt.faults / wall * 1e6,
	       opt.handler_cpu < 0 ? 0 : opt.handler_cpu, 100.0 * on_handler_cpu / opt.faults);
	fflush(stdout);
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	_exit(0); /* the handler threads never return */
}
