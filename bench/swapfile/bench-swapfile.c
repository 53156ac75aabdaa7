/* SPDX-License-Identifier: MIT */
/*
 * bench-swapfile: swap-in from a memext swap area against the kernel's own swap, on two swap
 * files of the same size in the same directory (same disk), in one run. Needs root. Not a test.
 *
 *   kernel  a swap file made by mkswap_format() and swapon(2)ed; a child in a memory cgroup
 *           (v1, /sys/fs/cgroup/memory) limited to --limit writes a working set of 4x the limit
 *           (so 3/4 of it goes to swap), then touches every page once in order and once in a
 *           random order. A touch of a page mincore() says is not resident is a swap-in; its
 *           time includes the direct reclaim the limit forces, as it does for a real program.
 *           The kernel's swap readahead (vm.page-cluster) is left as it is.
 *   memext  the swapfile module on its own: the same working set written to slots, then read
 *           back in the same two orders, with O_DIRECT and through the page cache made cold
 *           (fdatasync + POSIX_FADV_DONTNEED) first; in order it reads 2^page-cluster slots a
 *           call, as the kernel's readahead does. This is the store's share of a fault: the
 *           userfaultfd round trip (DESIGN.md: 6.5-55 us) comes on top, and reclaim runs in
 *           another thread, not in the fault.
 *
 * Every page read back is checked against what was written. Everything the run sets up (swap
 * files, swapon, the cgroup) is undone at exit, on SIGINT and SIGTERM too.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "mkswap.h"
#include "size.h"
#include "swapfile.h"

#define CGROUP_ROOT "/sys/fs/cgroup/memory"

struct options {
	const char *dir;
	uint64_t limit_bytes;
	uint64_t ws_bytes;
	uint64_t swap_bytes;
	unsigned threads;
	unsigned page_cluster; /* readahead: 2^page_cluster pages */
};

/* One pass over the working set. */
struct pass_result {
	uint64_t touches;  /* pages touched */
	uint64_t swapins;  /* touches of non-resident pages (kernel), reads (memext) */
	uint64_t pages_in; /* pages read from the disk: pswpin (kernel), pages read (memext) */
	uint64_t wall_ns;
	uint64_t p50_ns, p90_ns, p99_ns, max_ns; /* per swap-in */
	uint64_t bad;				 /* pages whose content was wrong */
};

struct run_result {
	uint64_t out_pages; /* pages written: pswpout / bd_writes */
	uint64_t out_ns;
	struct pass_result seq, rnd;
};

static char kswap_path[600], mswap_path[600], cgroup_path[300];
static volatile pid_t child_pid;
static volatile sig_atomic_t swapped_on;

/* Async-signal-safe: only system calls. */
static void cleanup(void)
{
	if (child_pid > 0) {
		kill(child_pid, SIGKILL);
		waitpid(child_pid, NULL, 0);
		child_pid = 0;
	}
	if (cgroup_path[0] && rmdir(cgroup_path) == 0)
		cgroup_path[0] = '\0';
	if (swapped_on && swapoff(kswap_path) == 0)
		swapped_on = 0;
	if (kswap_path[0])
		unlink(kswap_path);
	if (mswap_path[0])
		unlink(mswap_path);
}

static void on_signal(int sig)
{
	cleanup();
	_exit(128 + sig);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Page i's content: not zero (the kernel skips writing zero pages), not compressible. */
static void fill_page(void *page, uint64_t i)
{
	uint64_t *w = page, x = (i + 1) * 0x9e3779b97f4a7c15ULL;

	for (size_t k = 0; k < PAGE_SIZE / 8; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[k] = x;
	}
	w[0] = i; /* what a touch checks */
}

static bool page_ok(const void *page, uint64_t i)
{
	unsigned char want[PAGE_SIZE];

	fill_page(want, i);
	return !memcmp(page, want, PAGE_SIZE);
}

static uint64_t vmstat(const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	uint64_t v = 0;
	FILE *f = fopen("/proc/vmstat", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ' ') {
			v = strtoull(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void percentiles(uint64_t *lat, uint64_t n, struct pass_result *r)
{
	if (!n)
		return;
	qsort(lat, n, sizeof(*lat), cmp_u64);
	r->p50_ns = lat[n / 2];
	r->p90_ns = lat[n * 9 / 10];
	r->p99_ns = lat[n * 99 / 100];
	r->max_ns = lat[n - 1];
}

static uint64_t *permutation(uint64_t n, uint64_t seed)
{
	uint64_t *p = malloc(n * sizeof(*p)), x = seed | 1;

	if (!p)
		return NULL;
	for (uint64_t i = 0; i < n; i++)
		p[i] = i;
	for (uint64_t i = n - 1; i > 0; i--) {
		uint64_t j, t;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		j = x % (i + 1);
		t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	return p;
}

static int write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return negative_errno();
	n = write(fd, value, strlen(value));
	close(fd);
	return n < 0 ? negative_errno() : 0;
}

/* The kernel side's workload, in the child inside the cgroup. */
static int kernel_pass(unsigned char *mem, uint64_t nr, const uint64_t *order,
		       struct pass_result *r)
{
	uint64_t *lat = malloc(nr * sizeof(*lat)), in0 = vmstat("pswpin"), t0 = now_ns();
	unsigned char vec;

	if (!lat)
		return -ENOMEM;
	memset(r, 0, sizeof(*r));
	for (uint64_t k = 0; k < nr; k++) {
		uint64_t i = order ? order[k] : k;
		volatile uint64_t *p = (volatile uint64_t *)(mem + i * PAGE_SIZE);
		uint64_t a, b, v;

		/* Outside the timed part: was this page out? */
		if (mincore((void *)p, PAGE_SIZE, &vec) < 0)
			vec = 1;
		a = now_ns();
		v = *p;
		b = now_ns();
		if (!(vec & 1))
			lat[r->swapins++] = b - a;
		if (v != i || (k % 64 == 0 && !page_ok((const void *)p, i)))
			r->bad++;
		r->touches++;
	}
	r->wall_ns = now_ns() - t0;
	r->pages_in = vmstat("pswpin") - in0;
	percentiles(lat, r->swapins, r);
	free(lat);
	return 0;
}

static int kernel_child(const struct options *o, int out_fd)
{
	uint64_t nr = o->ws_bytes / PAGE_SIZE, out0, t0;
	struct run_result res = {0};
	char pid[32];
	unsigned char *mem;
	uint64_t *order;
	char procs[400];

	snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup_path);
	snprintf(pid, sizeof(pid), "%d", getpid());
	if (write_file(procs, pid) < 0)
		return 1;
	mem = mmap(NULL, o->ws_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 1;
	/* Base pages, as memext swaps them: a huge page would be split or swapped whole. */
	madvise(mem, o->ws_bytes, MADV_NOHUGEPAGE);
	order = permutation(nr, 42);
	if (!order)
		return 1;

	out0 = vmstat("pswpout");
	t0 = now_ns();
	for (uint64_t i = 0; i < nr; i++)
		fill_page(mem + i * PAGE_SIZE, i);
	res.out_ns = now_ns() - t0;
	res.out_pages = vmstat("pswpout") - out0;

	if (kernel_pass(mem, nr, NULL, &res.seq) < 0 || kernel_pass(mem, nr, order, &res.rnd) < 0)
		return 1;
	if (write(out_fd, &res, sizeof(res)) != sizeof(res))
		return 1;
	return 0;
}

static int run_kernel(const struct options *o, struct run_result *res)
{
	struct mkswap_options mo = {.size_bytes = o->swap_bytes, .label = "memext-bench-k"};
	char err[512], val[64];
	int pipefd[2], st, r;

	snprintf(kswap_path, sizeof(kswap_path), "%s/memext-bench-kernel.%d.swap", o->dir,
		 getpid());
	r = mkswap_format(kswap_path, &mo, NULL, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "kernel: %s\n", err);
		return r;
	}
	if (swapon(kswap_path, 0) < 0) {
		fprintf(stderr, "kernel: swapon %s: %m\n", kswap_path);
		return negative_errno();
	}
	swapped_on = 1;

	snprintf(cgroup_path, sizeof(cgroup_path), CGROUP_ROOT "/memext-bench.%d", getpid());
	if (mkdir(cgroup_path, 0755) < 0) {
		fprintf(stderr, "kernel: mkdir %s: %m (memory cgroup v1 needed)\n", cgroup_path);
		cgroup_path[0] = '\0';
		return negative_errno();
	}
	{
		char path[400];

		snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", cgroup_path);
		snprintf(val, sizeof(val), "%" PRIu64, o->limit_bytes);
		if (write_file(path, val) < 0) {
			fprintf(stderr, "kernel: cannot set %s: %m\n", path);
			return -EIO;
		}
		snprintf(path, sizeof(path), "%s/memory.swappiness", cgroup_path);
		write_file(path, "100");
	}

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return negative_errno();
	fflush(NULL);
	child_pid = fork();
	if (child_pid < 0)
		return negative_errno();
	if (child_pid == 0) {
		close(pipefd[0]);
		_exit(kernel_child(o, pipefd[1]));
	}
	close(pipefd[1]);
	r = (int)read(pipefd[0], res, sizeof(*res));
	close(pipefd[0]);
	waitpid(child_pid, &st, 0);
	child_pid = 0;
	if (r != sizeof(*res) || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "kernel: workload failed (status %d)%s\n", st,
			WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? ": OOM-killed?" : "");
		return -EIO;
	}
	cleanup();
	return 0;
}

/* memext: readers share the entries and split the order between them. */
struct reader {
	struct swapfile *sf;
	const uint64_t *entries;
	const uint64_t *order; /* NULL: in order, batch pages a call */
	uint64_t from, to;
	unsigned batch;
	uint64_t *lat;
	uint64_t nr_lat, bad, err;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	unsigned char *buf = aligned_alloc(PAGE_SIZE, 64 * PAGE_SIZE);
	void *pages[64];
	uint64_t e[64];

	if (!buf) {
		rd->err++;
		return NULL;
	}
	for (unsigned k = 0; k < 64; k++)
		pages[k] = buf + k * PAGE_SIZE;
	for (uint64_t k = rd->from; k < rd->to;) {
		unsigned n = rd->order ? 1 : (unsigned)MIN((uint64_t)rd->batch, rd->to - k);
		uint64_t a, b;

		for (unsigned j = 0; j < n; j++)
			e[j] = rd->entries[rd->order ? rd->order[k] : k + j];
		a = now_ns();
		if (swapfile_read_pages(rd->sf, e, pages, n, NULL) < 0)
			rd->err++;
		b = now_ns();
		rd->lat[rd->nr_lat++] = b - a;
		for (unsigned j = 0; j < n; j++)
			if (!page_ok(pages[j], rd->order ? rd->order[k] : k + j))
				rd->bad++;
		k += n;
	}
	free(buf);
	return NULL;
}

static int memext_pass(struct swapfile *sf, const uint64_t *entries, uint64_t nr,
		       const uint64_t *order, unsigned threads, unsigned batch,
		       struct pass_result *r)
{
	struct reader rd[16];
	pthread_t t[16];
	uint64_t *lat = malloc(nr * sizeof(*lat)), n_lat = 0, t0;
	struct swapfile_stats s0, s1;

	if (!lat)
		return -ENOMEM;
	memset(r, 0, sizeof(*r));
	swapfile_get_stats(sf, &s0);
	t0 = now_ns();
	for (unsigned i = 0; i < threads; i++) {
		rd[i] = (struct reader){
			.sf = sf,
			.entries = entries,
			.order = order,
			.from = nr * i / threads,
			.to = nr * (i + 1) / threads,
			.batch = batch,
			.lat = lat + nr * i / threads,
		};
		pthread_create(&t[i], NULL, reader_main, &rd[i]);
	}
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		/* Pack the latencies together for the percentiles. */
		memmove(lat + n_lat, rd[i].lat, rd[i].nr_lat * sizeof(*lat));
		n_lat += rd[i].nr_lat;
		r->bad += rd[i].bad + rd[i].err;
	}
	r->wall_ns = now_ns() - t0;
	swapfile_get_stats(sf, &s1);
	r->touches = nr;
	r->swapins = n_lat;
	r->pages_in = s1.bd_reads - s0.bd_reads;
	percentiles(lat, n_lat, r);
	free(lat);
	return 0;
}

static void drop_file_cache(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
}

static int run_memext(const struct options *o, unsigned flags, unsigned threads,
		      struct run_result *res)
{
	struct mkswap_options mo = {.size_bytes = o->swap_bytes, .label = "memext-bench-m"};
	uint64_t nr = o->ws_bytes / PAGE_SIZE, *entries, *order, t0;
	unsigned char *buf = aligned_alloc(PAGE_SIZE, 64 * PAGE_SIZE);
	struct swapfile *sf;
	char err[512];
	int r;

	snprintf(mswap_path, sizeof(mswap_path), "%s/memext-bench-memext.%d.swap", o->dir,
		 getpid());
	r = mkswap_format(mswap_path, &mo, NULL, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "memext: %s\n", err);
		return r;
	}
	entries = malloc(nr * sizeof(*entries));
	order = permutation(nr, 42);
	if (!entries || !order || !buf || swapfile_new(&sf) < 0)
		return -ENOMEM;
	r = swapfile_swapon(sf, mswap_path, 0, flags, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "memext: %s\n", err);
		return r;
	}

	/* Eviction of the working set, 64 pages a batch as reclaim writes them. */
	t0 = now_ns();
	for (uint64_t i = 0; i < nr;) {
		const void *pages[64];
		int n = swapfile_alloc(sf, (unsigned)MIN((uint64_t)64, nr - i), entries + i);

		if (n < 0) {
			fprintf(stderr, "memext: alloc: %s\n", strerror(-n));
			return n;
		}
		for (int k = 0; k < n; k++) {
			fill_page(buf + k * PAGE_SIZE, i + (uint64_t)k);
			pages[k] = buf + k * PAGE_SIZE;
		}
		r = swapfile_write_pages(sf, entries + i, pages, (unsigned)n, NULL);
		if (r < 0) {
			fprintf(stderr, "memext: write: %s\n", strerror(-r));
			return r;
		}
		i += (uint64_t)n;
	}
	drop_file_cache(mswap_path); /* counts the write-back of buffered writes */
	res->out_ns = now_ns() - t0;
	res->out_pages = nr;

	memext_pass(sf, entries, nr, NULL, 1, 1U << o->page_cluster, &res->seq);
	drop_file_cache(mswap_path);
	memext_pass(sf, entries, nr, order, threads, 1, &res->rnd);

	for (uint64_t i = 0; i < nr; i++)
		swap_free(sf, entries[i]);
	swapfile_free(sf);
	unlink(mswap_path);
	mswap_path[0] = '\0';
	free(entries);
	free(order);
	free(buf);
	return 0;
}

static void print_row(const char *system, const char *pattern, const struct pass_result *p)
{
	printf("| %-34s | %-10s | %8" PRIu64 " | %7.1f | %7.1f | %7.1f | %8.1f | %9.0f | %4" PRIu64
	       " |\n",
	       system, pattern, p->swapins, p->p50_ns / 1e3, p->p90_ns / 1e3, p->p99_ns / 1e3,
	       p->max_ns / 1e3, p->pages_in * 1e9 / (double)MAX(p->wall_ns, 1), p->bad);
}

static void usage(const char *name)
{
	fprintf(stderr,
		"Usage: %s [--dir DIR] [--limit SIZE] [--ws SIZE] [--swap-size SIZE] "
		"[--threads N]\n"
		"  --dir        where both swap files go (default /var/tmp: the disk)\n"
		"  --limit      the kernel side's memory cgroup limit (default 256M)\n"
		"  --ws         working set (default 4 x limit)\n"
		"  --swap-size  size of each swap file (default 2 x working set)\n"
		"  --threads    memext readers in the random pass (default 1)\n",
		name);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"limit", required_argument, NULL, 'l'},
		{"ws", required_argument, NULL, 'w'},
		{"swap-size", required_argument, NULL, 's'},
		{"threads", required_argument, NULL, 't'},
		{},
	};
	struct options o = {.dir = "/var/tmp", .limit_bytes = 256ULL << 20, .threads = 1};
	struct run_result k, m_direct, m_buffered, m_direct_mt;
	struct sigaction sa = {.sa_handler = on_signal};
	FILE *pc;
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			o.dir = optarg;
			break;
		case 'l':
			if (parse_size(optarg, &o.limit_bytes) < 0)
				return 2;
			break;
		case 'w':
			if (parse_size(optarg, &o.ws_bytes) < 0)
				return 2;
			break;
		case 's':
			if (parse_size(optarg, &o.swap_bytes) < 0)
				return 2;
			break;
		case 't':
			o.threads = (unsigned)MAX(1, MIN(16, atoi(optarg)));
			break;
		default:
			usage(argv[0]);
			return 2;
		}
	}
	if (!o.ws_bytes)
		o.ws_bytes = 4 * o.limit_bytes;
	if (!o.swap_bytes)
		o.swap_bytes = 2 * o.ws_bytes;
	o.page_cluster = 3;
	pc = fopen("/proc/sys/vm/page-cluster", "re");
	if (pc) {
		if (fscanf(pc, "%u", &o.page_cluster) != 1 || o.page_cluster > 6)
			o.page_cluster = 3;
		fclose(pc);
	}
	if (geteuid() != 0) {
		fprintf(stderr, "bench-swapfile: needs root (swapon, memory cgroup)\n");
		return 77;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	atexit(cleanup);

	printf("working set %" PRIu64 " MiB, kernel cgroup limit %" PRIu64
	       " MiB, swap files %" PRIu64 " MiB each in %s, vm.page-cluster %u\n\n",
	       o.ws_bytes >> 20, o.limit_bytes >> 20, o.swap_bytes >> 20, o.dir, o.page_cluster);
	fflush(stdout);
	if (run_kernel(&o, &k) < 0)
		return 1;
	if (run_memext(&o, SWAPFILE_DIRECT_IO, 1, &m_direct) < 0 ||
	    run_memext(&o, 0, 1, &m_buffered) < 0)
		return 1;
	if (o.threads > 1 && run_memext(&o, SWAPFILE_DIRECT_IO, o.threads, &m_direct_mt) < 0)
		return 1;

	printf("| system | pattern | swap-ins | p50 µs | p90 µs | p99 µs | max µs | pages in/s | "
	       "bad |\n");
	printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
	print_row("kernel swap, memcg v1 limit", "sequential", &k.seq);
	print_row("kernel swap, memcg v1 limit", "random", &k.rnd);
	print_row("memext swapfile, O_DIRECT", "sequential", &m_direct.seq);
	print_row("memext swapfile, O_DIRECT", "random", &m_direct.rnd);
	print_row("memext swapfile, buffered (cold)", "sequential", &m_buffered.seq);
	print_row("memext swapfile, buffered (cold)", "random", &m_buffered.rnd);
	if (o.threads > 1) {
		char name[64];

		snprintf(name, sizeof(name), "memext swapfile, O_DIRECT, %u thr", o.threads);
		print_row(name, "random", &m_direct_mt.rnd);
	}
	printf("\nswap-out of the working set: kernel %.0f pages/s (%" PRIu64
	       " pages written), memext O_DIRECT %.0f pages/s, buffered %.0f pages/s "
	       "(with write-back)\n",
	       k.out_pages * 1e9 / (double)MAX(k.out_ns, 1), k.out_pages,
	       m_direct.out_pages * 1e9 / (double)MAX(m_direct.out_ns, 1),
	       m_buffered.out_pages * 1e9 / (double)MAX(m_buffered.out_ns, 1));
	return 0;
}
