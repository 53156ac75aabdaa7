/* SPDX-License-Identifier: MIT */
/*
 * wl-chaos SIZE THREADS OPS [SEED]
 *
 * Everything an application does to its memory, mixed at random and checked against a model.
 * SIZE bytes are split between THREADS threads, each owning chunks of 1-64 pages, every chunk
 * a mapping of its own. After a fill, each thread makes OPS operations picked at random
 * (SEED, default 1, and the thread's number choose them), in 4 rounds of new threads
 * that take over the old ones' chunks:
 *
 *   write     rewrite a run of pages (a new generation)
 *   bump      a small in-place write to one page (a counter in its header)
 *   read      check a run of pages
 *   remap     munmap the chunk and map a new one of another size, at the same address or
 *             wherever the kernel puts it: it reads zero
 *   dontneed  MADV_DONTNEED on a run: it reads zero
 *   free      MADV_FREE on a run: each page reads zero or its data until written
 *   move      mremap the chunk to a new address (reserved, or mapped and written first),
 *             growing (the new tail reads zero), shrinking or keeping its size
 *   protect   mprotect(PROT_READ), check the chunk, make it writable again
 *   lock      mlock the chunk, check it, munlock
 *   forkflag  MADV_WIPEONFORK, MADV_DONTFORK or neither on the chunk
 *   fork      the child checks every chunk of the forking thread (a MADV_WIPEONFORK one must
 *             read zero, a MADV_DONTFORK one must be gone, and a page mapped there must read
 *             zero), rewrites and bumps some pages and checks them, forks a grandchild now
 *             and then that does the same, and exits; the parent's pages must not have changed
 *             (the next checks see them)
 *   spawn     posix_spawn /bin/true (a child that shares the memory until it execs)
 *   sweep     check every chunk of the thread
 *
 * Meanwhile an interval timer's SIGALRM handler checks a page of a region of its own at every
 * tick, so faults are taken inside handlers that interrupted faults. At the end every page is
 * checked. The model of a chunk is its thread's alone, so no lock is needed; a fork child
 * checks only the forking thread's chunks (the others may be halfway through an operation).
 *
 * MEMEXT_WL_CHAOS_OPS="move,read,write" (names as above, comma-separated) mixes only those, to
 * chase a failure; with MEMEXT_WL_CHAOS_GROW set, a move never shrinks its chunk.
 *
 * Phases: fill, chaos, verify. Exit 0 after every check passed, 1 on a mismatch, 2 on errors.
 */
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "wl-common.h"

#define CHUNK_PAGES_MAX 64
#define RUN_PAGES_MAX 16
#define SIG_PAGES 64

enum kind { K_ZERO, K_DATA, K_MAYBE /* zero or the data (MADV_FREE, not written since) */ };

enum op {
	OP_WRITE,
	OP_BUMP,
	OP_READ,
	OP_REMAP,
	OP_DONTNEED,
	OP_FREE,
	OP_MOVE,
	OP_PROTECT,
	OP_LOCK,
	OP_FORKFLAG,
	OP_FORK,
	OP_SPAWN,
	OP_SWEEP,
	NR_OPS
};

static const char *const op_names[NR_OPS] = {
	"write",   "bump", "read",     "remap", "dontneed", "free",  "move",
	"protect", "lock", "forkflag", "fork",	"spawn",    "sweep",
};
/* Out of 1000: most operations touch pages; the rest change the address space. */
static unsigned op_weight[NR_OPS] = {300, 100, 290, 40, 40, 30, 40, 40, 30, 20, 10, 5, 55};
static unsigned op_total = 1000;

struct page_model {
	uint8_t kind;
	uint32_t gen;
	uint32_t counter;
};

enum fork_flag { F_NONE, F_WIPE, F_DONTFORK };

struct chunk {
	char *addr;
	uint32_t npages;
	enum fork_flag fork_flag;
	uint32_t id; /* the chunk's page numbers are id * CHUNK_PAGES_MAX + index */
	struct page_model page[CHUNK_PAGES_MAX];
};

struct worker {
	unsigned index;
	uint64_t rng;
	struct chunk *chunk;
	size_t nchunks;
	uint64_t done[NR_OPS];
	pthread_t tid;
};

static unsigned nr_threads;
static uint64_t nr_ops;
static struct worker *workers;

static char *sig_region;
static volatile sig_atomic_t sig_ticks;
static volatile sig_atomic_t sig_next;

static uint64_t page_number(const struct chunk *c, size_t i)
{
	return (uint64_t)c->id * CHUNK_PAGES_MAX + i;
}

static uint32_t salt_of(const struct worker *w)
{
	return (w->index % 200) + 1;
}

static void check_page(const struct worker *w, const struct chunk *c, size_t i, const char *what)
{
	const struct page_model *m = &c->page[i];
	const char *addr = c->addr + i * WL_PAGE_SIZE;

	if (m->kind == K_ZERO) {
		if (!wl_page_is_zero(addr)) {
			char desc[160];

			wl_page_describe(addr, desc, sizeof(desc));
			wl_mismatch("%s: page %" PRIu64 " at %p must read zero: %s", what,
				    page_number(c, i), (const void *)addr, desc);
		}
		return;
	}
	if (m->kind == K_MAYBE && wl_page_is_zero(addr))
		return;
	wl_page_check(what, addr, page_number(c, i), m->gen, salt_of(w), m->counter);
}

static void check_run(const struct worker *w, const struct chunk *c, size_t from, size_t n,
		      const char *what)
{
	for (size_t i = from; i < from + n; i++)
		check_page(w, c, i, what);
}

static void write_page(const struct worker *w, struct chunk *c, size_t i)
{
	struct page_model *m = &c->page[i];

	m->kind = K_DATA;
	m->gen++;
	m->counter = 0;
	wl_page_fill(c->addr + i * WL_PAGE_SIZE, page_number(c, i), m->gen, salt_of(w));
}

static void bump_page(const struct worker *w, struct chunk *c, size_t i)
{
	struct page_model *m = &c->page[i];
	struct wl_page_header *h = (struct wl_page_header *)(c->addr + i * WL_PAGE_SIZE);

	m->counter = (m->counter + 1) & 0xffffff;
	h->aux = wl_aux(salt_of(w), m->counter);
}

/* A run of pages of the chunk: [*from, *from + n). */
static size_t pick_run(struct worker *w, const struct chunk *c, size_t *from)
{
	size_t n = 1 + wl_rand_below(&w->rng, RUN_PAGES_MAX);

	if (n > c->npages)
		n = c->npages;
	*from = wl_rand_below(&w->rng, c->npages - n + 1);
	return n;
}

static char *map_pages(char *hint, size_t npages, int extra_flags)
{
	char *p = mmap(hint, npages * WL_PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void set_zero(struct chunk *c, size_t from, size_t n)
{
	for (size_t i = from; i < from + n; i++) {
		c->page[i].kind = K_ZERO;
		c->page[i].counter = 0;
	}
}

static void op_write(struct worker *w, struct chunk *c)
{
	size_t from, n = pick_run(w, c, &from);

	for (size_t i = from; i < from + n; i++)
		write_page(w, c, i);
}

static void op_bump(struct worker *w, struct chunk *c)
{
	size_t i = wl_rand_below(&w->rng, c->npages);

	if (c->page[i].kind == K_DATA)
		bump_page(w, c, i);
	else
		write_page(w, c, i); /* zero, or maybe zero: a whole write makes it known */
}

static void op_read(struct worker *w, struct chunk *c)
{
	size_t from, n = pick_run(w, c, &from);

	check_run(w, c, from, n, "read");
}

/* munmap and map again: at the same address (MAP_FIXED_NOREPLACE) or anywhere. */
static void op_remap(struct worker *w, struct chunk *c)
{
	uint32_t npages = 1 + (uint32_t)wl_rand_below(&w->rng, CHUNK_PAGES_MAX);
	bool same = wl_rand_below(&w->rng, 2);
	char *old = c->addr;

	if (munmap(old, c->npages * WL_PAGE_SIZE))
		wl_die("munmap: %m");
	c->addr = map_pages(same ? old : NULL, npages, same ? MAP_FIXED_NOREPLACE : 0);
	if (!c->addr && same)
		c->addr = map_pages(NULL, npages, 0); /* another thread took the address */
	if (!c->addr)
		wl_die("mmap %u pages: %m", npages);
	c->npages = npages;
	c->fork_flag = F_NONE;
	set_zero(c, 0, npages);
	check_run(w, c, 0, npages, "remap");
}

static void op_dontneed(struct worker *w, struct chunk *c)
{
	size_t from, n = pick_run(w, c, &from);

	if (madvise(c->addr + from * WL_PAGE_SIZE, n * WL_PAGE_SIZE, MADV_DONTNEED))
		wl_die("madvise(MADV_DONTNEED): %m");
	set_zero(c, from, n);
	check_run(w, c, from, n, "dontneed");
}

static void op_free(struct worker *w, struct chunk *c)
{
	size_t from, n = pick_run(w, c, &from);

	if (madvise(c->addr + from * WL_PAGE_SIZE, n * WL_PAGE_SIZE, MADV_FREE))
		wl_die("madvise(MADV_FREE): %m");
	for (size_t i = from; i < from + n; i++)
		if (c->page[i].kind == K_DATA)
			c->page[i].kind = K_MAYBE;
	check_run(w, c, from, n, "free");
}

static void set_fork_flag(struct chunk *c, enum fork_flag flag)
{
	static const int advice[] = {
		[F_NONE] = 0, [F_WIPE] = MADV_WIPEONFORK, [F_DONTFORK] = MADV_DONTFORK};
	size_t bytes = c->npages * WL_PAGE_SIZE;

	if (madvise(c->addr, bytes, MADV_KEEPONFORK) || madvise(c->addr, bytes, MADV_DOFORK))
		wl_die("madvise(MADV_KEEPONFORK, MADV_DOFORK): %m");
	if (flag != F_NONE && madvise(c->addr, bytes, advice[flag]))
		wl_die("madvise(%s): %m", flag == F_WIPE ? "MADV_WIPEONFORK" : "MADV_DONTFORK");
	c->fork_flag = flag;
}

static void op_forkflag(struct worker *w, struct chunk *c)
{
	set_fork_flag(c, (enum fork_flag)wl_rand_below(&w->rng, 3));
}

/*
 * mremap to a new address taken with MREMAP_FIXED: a reservation, or half the time memory
 * mapped and written first (the kernel unmaps it before the move: one more event, sent before
 * the REMAP).
 */
static bool moves_grow_only;

static void op_move(struct worker *w, struct chunk *c)
{
	uint32_t npages = 1 + (uint32_t)wl_rand_below(&w->rng, CHUNK_PAGES_MAX);
	bool onto_memory = wl_rand_below(&w->rng, 2);

	if (moves_grow_only && npages < c->npages)
		npages = c->npages;
	char *dst =
		mmap(NULL, npages * WL_PAGE_SIZE, onto_memory ? PROT_READ | PROT_WRITE : PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *moved;

	if (dst == MAP_FAILED)
		wl_die("mmap (reserve): %m");
	for (uint32_t i = 0; onto_memory && i < npages; i++)
		memset(dst + i * WL_PAGE_SIZE, 0xa5, 64);
	moved = mremap(c->addr, c->npages * WL_PAGE_SIZE, npages * WL_PAGE_SIZE,
		       MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	if (moved == MAP_FAILED)
		wl_die("mremap %u -> %u pages: %m", c->npages, npages);
	c->addr = moved;
	if (npages > c->npages)
		set_zero(c, c->npages, npages - c->npages);
	c->npages = npages;
	set_fork_flag(c, c->fork_flag); /* the kernel moves them with the mapping; be sure */
	check_run(w, c, 0, npages, "move");
}

static void op_protect(struct worker *w, struct chunk *c)
{
	size_t bytes = c->npages * WL_PAGE_SIZE;

	if (mprotect(c->addr, bytes, PROT_READ))
		wl_die("mprotect(PROT_READ): %m");
	check_run(w, c, 0, c->npages, "read-only");
	if (mprotect(c->addr, bytes, PROT_READ | PROT_WRITE))
		wl_die("mprotect(PROT_READ | PROT_WRITE): %m");
}

static void op_lock(struct worker *w, struct chunk *c)
{
	size_t bytes = c->npages * WL_PAGE_SIZE;

	if (mlock(c->addr, bytes)) {
		if (errno == ENOMEM || errno == EPERM || errno == EAGAIN)
			return; /* RLIMIT_MEMLOCK: nothing to test here */
		wl_die("mlock: %m");
	}
	check_run(w, c, 0, c->npages, "locked");
	if (munlock(c->addr, bytes))
		wl_die("munlock: %m");
}

static void sweep(const struct worker *w, const char *what)
{
	for (size_t k = 0; k < w->nchunks; k++)
		check_run(w, &w->chunk[k], 0, w->chunk[k].npages, what);
}

static void wait_child(pid_t pid, const char *who)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			wl_die("waitpid: %m");
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return;
	if (WIFEXITED(status) && WEXITSTATUS(status) == WL_EXIT_MISMATCH)
		wl_mismatch("the %s %d found a wrong page (see above)", who, (int)pid);
	wl_die("the %s %d ended with status 0x%x", who, (int)pid, status);
}

/*
 * In a fork child, where a MADV_DONTFORK chunk was: nothing, and a page mapped there reads
 * zero (not the parent's page). A page something else mapped in the hole since (the shim's
 * shared page, say) is left alone. The chunk then lives at a new address.
 */
static void child_dontfork(struct chunk *c)
{
	unsigned char vec;

	for (size_t i = 0; i < c->npages; i++) {
		char *page = c->addr + i * WL_PAGE_SIZE;

		if (mincore(page, WL_PAGE_SIZE, &vec) == 0)
			continue; /* mapped since the fork, by someone else */
		if (errno != ENOMEM)
			wl_die("mincore: %m");
		if (map_pages(page, 1, MAP_FIXED_NOREPLACE) != page)
			wl_die("mmap where a MADV_DONTFORK chunk was: %m");
		if (!wl_page_is_zero(page))
			wl_mismatch(
				"a page mapped at %p, where a MADV_DONTFORK chunk was, does not "
				"read zero in the fork child",
				(void *)page);
		if (munmap(page, WL_PAGE_SIZE))
			wl_die("munmap: %m");
	}
	c->addr = map_pages(NULL, c->npages, 0);
	if (!c->addr)
		wl_die("mmap: %m");
	c->fork_flag = F_NONE;
	set_zero(c, 0, c->npages);
}

/* In a fork child: a MADV_WIPEONFORK chunk reads zero, a MADV_DONTFORK one is gone. */
static void child_fork_flags(struct worker *w)
{
	for (size_t k = 0; k < w->nchunks; k++) {
		struct chunk *c = &w->chunk[k];

		if (c->fork_flag == F_WIPE)
			set_zero(c, 0, c->npages);
		else if (c->fork_flag == F_DONTFORK)
			child_dontfork(c);
	}
}

/* In a fork child: check what the thread owned, then change and check some of it. */
static void child_work(struct worker *w, int depth)
{
	child_fork_flags(w);
	sweep(w, depth ? "grandchild" : "fork child");
	for (int r = 0; r < 8; r++) {
		struct chunk *c = &w->chunk[wl_rand_below(&w->rng, w->nchunks)];

		op_write(w, c);
		op_bump(w, c);
		check_run(w, c, 0, c->npages, "fork child's write");
	}
	if (depth == 0 && wl_rand_below(&w->rng, 4) == 0) {
		pid_t pid = fork();

		if (pid < 0)
			wl_die("fork (grandchild): %m");
		if (pid == 0) {
			child_work(w, 1);
			_exit(0);
		}
		wait_child(pid, "grandchild");
	}
	sweep(w, "fork child, at its end");
}

static void op_spawn(void)
{
	char *argv[] = {"true", NULL};
	extern char **environ;
	pid_t pid;

	if ((errno = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ)))
		wl_die("posix_spawn /bin/true: %m");
	wait_child(pid, "spawned /bin/true");
}

static void op_fork(struct worker *w)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		wl_die("fork: %m");
	if (pid == 0) {
		w->rng = wl_mix(w->rng ^ 0xc41d);
		child_work(w, 0);
		_exit(0);
	}
	wait_child(pid, "fork child");
}

static enum op pick_op(struct worker *w)
{
	unsigned r = (unsigned)wl_rand_below(&w->rng, op_total);
	enum op op = 0;

	while (op < NR_OPS - 1 && r >= op_weight[op]) {
		r -= op_weight[op];
		op++;
	}
	return op;
}

static void op_fork_any(struct worker *w, struct chunk *c)
{
	(void)c;
	op_fork(w);
}

static void op_spawn_any(struct worker *w, struct chunk *c)
{
	(void)w;
	(void)c;
	op_spawn();
}

static void op_sweep(struct worker *w, struct chunk *c)
{
	(void)c;
	sweep(w, "sweep");
}

static void (*const op_fn[NR_OPS])(struct worker *w, struct chunk *c) = {
	[OP_WRITE] = op_write,	     [OP_BUMP] = op_bump,	  [OP_READ] = op_read,
	[OP_REMAP] = op_remap,	     [OP_DONTNEED] = op_dontneed, [OP_FREE] = op_free,
	[OP_MOVE] = op_move,	     [OP_PROTECT] = op_protect,	  [OP_LOCK] = op_lock,
	[OP_FORKFLAG] = op_forkflag, [OP_FORK] = op_fork_any,	  [OP_SPAWN] = op_spawn_any,
	[OP_SWEEP] = op_sweep,
};

static void do_op(struct worker *w, enum op op)
{
	op_fn[op](w, &w->chunk[wl_rand_below(&w->rng, w->nchunks)]);
	w->done[op]++;
}

#define ROUNDS 4

static void *chaos_thread(void *arg)
{
	struct worker *w = arg;

	for (uint64_t i = 0; i < nr_ops / ROUNDS; i++)
		do_op(w, pick_op(w));
	return NULL;
}

static void *fill_thread(void *arg)
{
	struct worker *w = arg;

	for (size_t k = 0; k < w->nchunks; k++)
		for (size_t i = 0; i < w->chunk[k].npages; i++)
			write_page(w, &w->chunk[k], i);
	return NULL;
}

static void run_threads(void *(*fn)(void *))
{
	for (unsigned t = 0; t < nr_threads; t++)
		if ((errno = pthread_create(&workers[t].tid, NULL, fn, &workers[t])))
			wl_die("pthread_create: %m");
	for (unsigned t = 0; t < nr_threads; t++)
		pthread_join(workers[t].tid, NULL);
}

static void setup_workers(uint64_t size, uint64_t seed)
{
	size_t per_thread = size / WL_PAGE_SIZE / nr_threads / (CHUNK_PAGES_MAX / 2);
	uint32_t next_id = 0;

	if (per_thread < 2)
		wl_die("SIZE too small for %u threads", nr_threads);
	workers = calloc(nr_threads, sizeof(*workers));
	if (!workers)
		wl_die("calloc: %m");
	for (unsigned t = 0; t < nr_threads; t++) {
		struct worker *w = &workers[t];

		w->index = t;
		w->rng = wl_mix(seed * 0x9e37 + t);
		w->nchunks = per_thread;
		w->chunk = calloc(per_thread, sizeof(*w->chunk));
		if (!w->chunk)
			wl_die("calloc: %m");
		for (size_t k = 0; k < per_thread; k++) {
			struct chunk *c = &w->chunk[k];

			c->id = next_id++;
			c->npages = 1 + (uint32_t)wl_rand_below(&w->rng, CHUNK_PAGES_MAX);
			c->addr = map_pages(NULL, c->npages, 0);
			if (!c->addr)
				wl_die("mmap: %m");
		}
	}
}

/* SIGALRM: check one page of the handler's own region (async-signal-safe: no stdio). */
static void on_alarm(int sig)
{
	int saved = errno;
	unsigned i = (unsigned)sig_next;
	static const char msg[] = "wl-chaos: MISMATCH: a page the signal handler read is wrong\n";

	(void)sig;
	sig_next = (sig_atomic_t)((i + 7) % SIG_PAGES);
	if (wl_page_diff(sig_region + (size_t)i * WL_PAGE_SIZE, 0xfff00000u + i, 1, 255, 0) >= 0) {
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(WL_EXIT_MISMATCH);
		_exit(WL_EXIT_MISMATCH);
	}
	sig_ticks++;
	errno = saved;
}

static void start_alarm(void)
{
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
	struct itimerval it = {.it_interval = {0, 2000}, .it_value = {0, 2000}};

	sig_region = map_pages(NULL, SIG_PAGES, 0);
	if (!sig_region)
		wl_die("mmap: %m");
	for (unsigned i = 0; i < SIG_PAGES; i++)
		wl_page_fill(sig_region + (size_t)i * WL_PAGE_SIZE, 0xfff00000u + i, 1, 255);
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) || setitimer(ITIMER_REAL, &it, NULL))
		wl_die("SIGALRM timer: %m");
}

static void stop_alarm(void)
{
	struct itimerval it = {0};

	if (setitimer(ITIMER_REAL, &it, NULL))
		wl_die("setitimer: %m");
}

static void report(void)
{
	uint64_t total[NR_OPS] = {0};
	char line[512];
	size_t len = 0;

	for (unsigned t = 0; t < nr_threads; t++)
		for (int op = 0; op < NR_OPS; op++)
			total[op] += workers[t].done[op];
	for (int op = 0; op < NR_OPS; op++)
		len += (size_t)snprintf(line + len, sizeof(line) - len, " %s %" PRIu64,
					op_names[op], total[op]);
	wl_log("ops:%s; signal handler checks %d", line, (int)sig_ticks);
}

/* MEMEXT_WL_CHAOS_OPS="move,read": only those operations (to chase a failure). */
static void restrict_ops(const char *list)
{
	bool want[NR_OPS] = {false};
	char *copy = strdup(list), *save = NULL;

	if (!copy)
		wl_die("strdup: %m");
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int op = 0;

		while (op < NR_OPS && strcmp(t, op_names[op]))
			op++;
		if (op == NR_OPS)
			wl_die("MEMEXT_WL_CHAOS_OPS: no operation '%s'", t);
		want[op] = true;
	}
	free(copy);
	op_total = 0;
	for (int op = 0; op < NR_OPS; op++) {
		if (!want[op])
			op_weight[op] = 0;
		op_total += op_weight[op];
	}
	if (!op_total)
		wl_die("MEMEXT_WL_CHAOS_OPS names no operation");
}

int main(int argc, char **argv)
{
	uint64_t size, seed = 1;

	wl_set_prog(argv[0]);
	if (argc < 4 || argc > 5)
		wl_die("usage: wl-chaos SIZE THREADS OPS [SEED]");
	size = wl_parse_size(argv[1]);
	nr_threads = (unsigned)wl_parse_u64(argv[2]);
	nr_ops = wl_parse_u64(argv[3]);
	if (argc == 5)
		seed = wl_parse_u64(argv[4]);
	if (nr_threads < 1 || nr_threads > 64)
		wl_die("THREADS must be 1-64");
	if (getenv("MEMEXT_WL_CHAOS_OPS"))
		restrict_ops(getenv("MEMEXT_WL_CHAOS_OPS"));
	moves_grow_only = getenv("MEMEXT_WL_CHAOS_GROW") != NULL;

	setup_workers(size, seed);
	wl_phase("fill");
	run_threads(fill_thread);
	start_alarm();
	wl_phase("chaos");
	for (int round = 0; round < ROUNDS; round++)
		run_threads(chaos_thread);
	wl_phase("verify");
	for (unsigned t = 0; t < nr_threads; t++)
		sweep(&workers[t], "final check");
	stop_alarm();
	report();
	return 0;
}
