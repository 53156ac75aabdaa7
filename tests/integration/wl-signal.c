/* SPDX-License-Identifier: MIT */
/*
 * wl-signal SIZE WORKERS OPS
 *
 * Signal handlers that touch evicted memory while the threads they interrupt fault too. A
 * POSIX timer raises SIGALRM every 200 us (process-directed: any thread takes it, on its own
 * stack); a sender thread sends SIGUSR1 to the workers in turn, and that handler runs on a
 * sigaltstack that lives in a mapping of its own, filled and evicted before the workers start
 * (the kernel writes the signal frame into evicted memory). Both handlers check a read-only
 * page (p % 4 == 3) and bump the counter of a page only handlers write (p % 4 == 2, the
 * bumps counted in an array that is itself evicted memory). The workers rewrite and check
 * their own pages and push them through a pipe and back into the same page; neither handler
 * has SA_RESTART, so those calls end early with EINTR or a short count and are retried, and a
 * read into an own page from an empty pipe waits for a handler and must end with EINTR.
 * Every page is checked at the end; every SIGUSR1 handler must have run on the altstack.
 */
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "wl-common.h"

#define MAX_WORKERS 16
#define ALTSTACK_BYTES (256 * 1024)
#define TIMER_NSEC 200000

struct page_state {
	uint32_t gen;
};

static char *region, *altstacks;
static size_t nr_pages;
static unsigned nr_workers;
static uint64_t nr_ops;
static struct page_state *state; /* own pages: their worker only */
static uint32_t *bumps;          /* handler pages: atomic */
static pthread_t workers[MAX_WORKERS];
static uint64_t nr_alrm, nr_usr1, nr_usr1_off_stack, nr_eintr, seq;
static volatile bool stop;

static char *page_addr(size_t p)
{
	return region + p * WL_PAGE_SIZE;
}

/* What both handlers do: evicted memory, read and written, from a handler. */
static void handler_touch(void)
{
	uint64_t s = wl_mix(__atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
	size_t quads = nr_pages / 4;
	size_t ro = wl_rand_below(&s, quads) * 4 + 3, rw = wl_rand_below(&s, quads) * 4 + 2;
	int saved = errno;

	wl_page_check("handler read", page_addr(ro), ro, 0, 0, 0);
	wl_page_bump(page_addr(rw));
	__atomic_fetch_add(&bumps[rw], 1, __ATOMIC_RELAXED);
	errno = saved;
}

static void on_alrm(int sig)
{
	(void)sig;
	handler_touch();
	__atomic_fetch_add(&nr_alrm, 1, __ATOMIC_RELAXED);
}

static void on_usr1(int sig)
{
	stack_t ss;
	char here;

	(void)sig;
	if (sigaltstack(NULL, &ss) < 0 || !(ss.ss_flags & SS_ONSTACK) ||
	    &here < (char *)ss.ss_sp || &here >= (char *)ss.ss_sp + ss.ss_size)
		__atomic_fetch_add(&nr_usr1_off_stack, 1, __ATOMIC_RELAXED);
	handler_touch();
	__atomic_fetch_add(&nr_usr1, 1, __ATOMIC_RELAXED);
}

/* write() then read() back a whole page through the pipe, retrying EINTR and short counts. */
static void pipe_round_trip(int fds[2], char *page)
{
	size_t done = 0;

	while (done < WL_PAGE_SIZE) {
		ssize_t n = write(fds[1], page + done, WL_PAGE_SIZE - done);

		if (n < 0 && errno == EINTR) {
			__atomic_fetch_add(&nr_eintr, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (n <= 0)
			wl_die("write to pipe from %p: %m", page + done);
		done += (size_t)n;
	}
	for (done = 0; done < WL_PAGE_SIZE;) {
		ssize_t n = read(fds[0], page + done, WL_PAGE_SIZE - done);

		if (n < 0 && errno == EINTR) {
			__atomic_fetch_add(&nr_eintr, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (n <= 0)
			wl_die("read from pipe into %p: %m", page + done);
		done += (size_t)n;
	}
}

/* A read into an own page that blocks on an empty pipe until a handler interrupts it: EINTR
 * (the sender keeps signalling every worker), and the page is left as it was. */
static void wait_for_signal(int rfd, char *page)
{
	ssize_t n = read(rfd, page, WL_PAGE_SIZE);

	if (n >= 0 || errno != EINTR)
		wl_die("read from an empty pipe into %p: %zd (%m), expected EINTR", page, n);
	__atomic_fetch_add(&nr_eintr, 1, __ATOMIC_RELAXED);
}

static void *worker(void *arg)
{
	unsigned w = (unsigned)(uintptr_t)arg;
	stack_t ss = {.ss_sp = altstacks + (size_t)w * ALTSTACK_BYTES, .ss_size = ALTSTACK_BYTES};
	uint64_t rng = wl_mix(0x51c ^ w);
	int fds[2];

	if (sigaltstack(&ss, NULL) < 0)
		wl_die("sigaltstack: %m");
	/* Blocked until now (run_workers()): a SIGUSR1 sent before the altstack was set waits. */
	{
		sigset_t usr1;

		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	}
	if (pipe(fds) < 0)
		wl_die("pipe: %m");
	for (uint64_t i = 0; i < nr_ops; i++) {
		size_t p = wl_rand_below(&rng, nr_pages / 4 / nr_workers);
		size_t q = (p * nr_workers + w) * 4 + wl_rand_below(&rng, 2);
		unsigned op = (unsigned)wl_rand_below(&rng, 64);

		if (op < 16)
			wl_page_fill(page_addr(q), q, ++state[q].gen, 0);
		else if (op < 32)
			pipe_round_trip(fds, page_addr(q));
		else if (op == 32)
			wait_for_signal(fds[0], page_addr(q));
		else
			wl_page_check("worker read", page_addr(q), q, state[q].gen, 0, 0);
	}
	close(fds[0]);
	close(fds[1]);
	return NULL;
}

static void *sender(void *arg)
{
	struct timespec ts = {.tv_nsec = 100000};

	(void)arg;
	for (unsigned i = 0; !__atomic_load_n(&stop, __ATOMIC_RELAXED); i++) {
		(void)pthread_kill(workers[i % nr_workers], SIGUSR1);
		(void)nanosleep(&ts, NULL); /* EINTR (SIGALRM) only shortens it */
	}
	return NULL;
}

static void install(int sig, void (*fn)(int), int flags)
{
	struct sigaction sa = {.sa_handler = fn, .sa_flags = flags};

	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) < 0)
		wl_die("sigaction %d: %m", sig);
}

static timer_t start_timer(void)
{
	struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGALRM};
	struct itimerspec its = {.it_interval = {0, TIMER_NSEC}, .it_value = {0, TIMER_NSEC}};
	timer_t t;

	if (timer_create(CLOCK_MONOTONIC, &sev, &t) < 0 || timer_settime(t, 0, &its, NULL) < 0)
		wl_die("timer: %m");
	return t;
}

static void run_workers(void)
{
	pthread_t snd;
	sigset_t set;
	timer_t t;

	install(SIGALRM, on_alrm, 0);
	install(SIGUSR1, on_usr1, SA_ONSTACK);
	/* Workers inherit SIGUSR1 blocked and unblock it once their altstack is set. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (unsigned w = 0; w < nr_workers; w++)
		if ((errno = pthread_create(&workers[w], NULL, worker, (void *)(uintptr_t)w)))
			wl_die("pthread_create: %m");
	if ((errno = pthread_create(&snd, NULL, sender, NULL)))
		wl_die("pthread_create: %m");
	t = start_timer();
	for (unsigned w = 0; w < nr_workers; w++)
		pthread_join(workers[w], NULL);
	timer_delete(t);
	__atomic_store_n(&stop, true, __ATOMIC_RELAXED);
	pthread_join(snd, NULL);
	/* A SIGALRM still pending must not bump a page while it is checked. */
	sigemptyset(&set);
	sigaddset(&set, SIGALRM);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/*
 * Which cold pages leave first depends on where reclaim's clock hand is: reading the region
 * over and over keeps reclaim sweeping until it has taken the altstacks too (hang guard 60 s).
 */
static void wait_altstacks_evicted(bool required)
{
	size_t len = (size_t)nr_workers * ALTSTACK_BYTES, pages = len / WL_PAGE_SIZE, p = 0;
	double deadline = wl_now() + 60;

	while (required && wl_nonresident_pages(altstacks, len) < pages / 2) {
		if (wl_now() > deadline)
			wl_mismatch("altstacks at %p: fewer than %zu of %zu pages evicted "
				    "after 60 s",
				    altstacks, pages / 2, pages);
		for (size_t i = 0; i < 1024; i++, p = (p + 1) % nr_pages)
			wl_page_check("sweep", page_addr(p), p, 0, 0, 0);
	}
	wl_log("altstacks: %zu of %zu pages not resident before the workers start",
	       wl_nonresident_pages(altstacks, len), pages);
}

int main(int argc, char **argv)
{
	bool required = wl_expect_eviction();

	wl_set_prog(argv[0]);
	if (argc != 4)
		wl_die("usage: %s SIZE WORKERS OPS_PER_WORKER", argv[0]);
	nr_pages = wl_parse_size(argv[1]) / WL_PAGE_SIZE;
	nr_workers = (unsigned)wl_parse_u64(argv[2]);
	nr_ops = wl_parse_u64(argv[3]);
	if (nr_pages < 4 * MAX_WORKERS || !nr_workers || nr_workers > MAX_WORKERS)
		wl_die("bad SIZE or WORKERS (at most %d)", MAX_WORKERS);
	/* The altstacks first: cold by the time the region is filled, so evicted. */
	altstacks = wl_mmap_anon((size_t)nr_workers * ALTSTACK_BYTES);
	memset(altstacks, 0x5a, (size_t)nr_workers * ALTSTACK_BYTES);
	region = wl_mmap_anon(nr_pages * WL_PAGE_SIZE);
	state = calloc(nr_pages, sizeof(*state));
	bumps = calloc(nr_pages, sizeof(*bumps));
	if (!state || !bumps)
		wl_die("calloc: %m");

	wl_phase("fill");
	for (size_t p = 0; p < nr_pages; p++)
		wl_page_fill(page_addr(p), p, 0, 0);
	wait_altstacks_evicted(required);
	wl_wait_evicted("region before the workers start", region, nr_pages * WL_PAGE_SIZE, 500,
			required, 60);

	wl_phase("signals");
	run_workers();
	wl_log("%" PRIu64 " SIGALRM and %" PRIu64 " SIGUSR1 handled, %" PRIu64
	       " calls ended by EINTR",
	       nr_alrm, nr_usr1, nr_eintr);
	if (nr_usr1_off_stack)
		wl_mismatch("%" PRIu64 " SIGUSR1 handlers did not run on the altstack",
			    nr_usr1_off_stack);
	if (!nr_alrm || !nr_usr1 || !nr_eintr)
		wl_mismatch("no SIGALRM, SIGUSR1 or EINTR: the test did not test");

	wl_phase("verify");
	for (size_t p = 0; p < nr_pages; p++) {
		if (p % 4 == 2)
			wl_page_check("final handler page", page_addr(p), p, 0, 0, bumps[p]);
		else
			wl_page_check("final", page_addr(p), p, state[p].gen, 0, 0);
	}
	wl_log("all %zu pages verified", nr_pages);
	return 0;
}
