/* SPDX-License-Identifier: MIT */
/*
 * workload: the program bench/zram-compare/run.sh runs unchanged under three configurations
 * (native, kernel zram swap in a memory cgroup, memext under LD_PRELOAD). It knows nothing of
 * memext: it maps FOOTPRINT of anonymous memory, fills it with pages of JSON-like records that
 * lz4 compresses about 3x, then touches pages in one of these patterns and checks every page it
 * touches:
 *
 *   seq         every page in address order (--passes times)
 *   rand-read   uniformly random pages, read and verified
 *   rand-write  uniformly random pages, verified, then rewritten with the next generation
 *   zipf        pages drawn from a Zipf(s) distribution over a scrambled rank order (a hot
 *               set scattered over the footprint); --write-pct of the touches rewrite
 *
 * A touch reads the whole page and compares it with what it must hold (page index and
 * generation); a write touch then rewrites the whole page. With --threads N every thread
 * touches only its own pages (page % N, or its own slice in seq), so no two threads race on
 * a page. Each touch is timed (CLOCK_MONOTONIC); before it mincore() says whether the page is
 * resident, which classifies it as a fault or a hit (--no-classify leaves that out).
 *
 * What it prints, one line "RESULT key=value ...": throughput and latency of the measured
 * phase, its CPU time (getrusage) plus a helper's (--helper-pid: memextd, kswapd0) from
 * /proc/PID/stat, the fill's figures, /proc/vmstat and memextd counters (--stats-socket) over
 * the measured phase, and the number of pages whose content was wrong ("bad"), which must
 * be 0. Exit status: 0 all pages verified, 3 bad content, 1 setup error, 2 usage.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "size.h"

#define LAT_FAULT (1U << 31) /* in a latency sample: the page was not resident */
#define LAT_MAX (LAT_FAULT - 1)

enum mode {
	MODE_SEQ,
	MODE_RAND_READ,
	MODE_RAND_WRITE,
	MODE_ZIPF,
};

static const char *const mode_names[] = {
	[MODE_SEQ] = "seq",
	[MODE_RAND_READ] = "rand-read",
	[MODE_RAND_WRITE] = "rand-write",
	[MODE_ZIPF] = "zipf",
};

struct options {
	enum mode mode;
	uint64_t footprint_bytes;
	uint64_t budget_bytes; /* only for the zipf figure "ideal_miss_pct" */
	unsigned threads;
	uint64_t touches; /* measured, all threads together */
	uint64_t warmup;  /* touches before the measured phase */
	unsigned passes;  /* seq */
	double zipf_s;
	unsigned write_pct;
	bool classify;
	bool verify_all;
	uint64_t seed;
	pid_t helper_pid;
	const char *stats_socket;
	const char *stats_out; /* prefix for the raw memextd JSON snapshots */
	const char *cdf_out;
	const char *zram_mm_stat;
};

/* The workload's shared state. */
static struct options opt;
static unsigned char *region;
static uint8_t *gens; /* generation of each page's content */
static uint64_t nr_pages;

/*
 * Page content: 64 rows of 64 bytes, JSON lines like a table of records:
 *   {"id":"00001a40","g":00,"u":"u04817","c":"lisbon  ","n":03316} \n
 * id is the row's number (page * 64 + row), g the page's generation, the rest follows from a
 * hash of both. lz4 compresses such a page 2.9x (6.8 us, decompression 1.2 us here), about
 * like real structured data; a page of another page or generation, or of zeroes, fails the
 * check.
 */
#define ROW_BYTES 64
#define ROWS_PER_PAGE (PAGE_SIZE / ROW_BYTES)

static const char row_template[ROW_BYTES + 1] =
	"{\"id\":\"00000000\",\"g\":00,\"u\":\"u00000\",\"c\":\"........\",\"n\":00000} \n";
static const char cities[8][8] = {"berlin  ", "paris   ", "lisbon  ", "oslo    ",
				  "rome    ", "madrid  ", "vienna  ", "prague  "};
static const char hex_digits[] = "0123456789abcdef";

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* Writes the n last decimal digits of v before end. */
static inline void put_decimal(char *end, uint64_t v, int n)
{
	for (int i = 0; i < n; i++) {
		*--end = (char)('0' + v % 10);
		v /= 10;
	}
}

static void row_make(char *o, uint64_t id, uint8_t g)
{
	uint64_t h = mix64((id << 8 | g) * 0x9e3779b97f4a7c15ULL);

	memcpy(o, row_template, ROW_BYTES);
	for (int i = 0; i < 8; i++)
		o[14 - i] = hex_digits[(id >> (4 * i)) & 15];
	o[21] = hex_digits[g >> 4];
	o[22] = hex_digits[g & 15];
	put_decimal(o + 35, h % 10000, 4);
	memcpy(o + 42, cities[(h >> 20) & 7], 8);
	put_decimal(o + 61, (h >> 32) % 10000, 4);
}

static void page_fill(void *page, uint64_t p, uint8_t g)
{
	for (uint64_t r = 0; r < ROWS_PER_PAGE; r++)
		row_make((char *)page + r * ROW_BYTES, p * ROWS_PER_PAGE + r, g);
}

/* Returns the first wrong row, or -1 when the page holds what it must. */
static long page_check(const void *page, uint64_t p, uint8_t g)
{
	char want[ROW_BYTES];

	for (uint64_t r = 0; r < ROWS_PER_PAGE; r++) {
		row_make(want, p * ROWS_PER_PAGE + r, g);
		if (memcmp((const char *)page + r * ROW_BYTES, want, ROW_BYTES))
			return (long)r;
	}
	return -1;
}

static void *page_addr(uint64_t p)
{
	return region + p * PAGE_SIZE;
}

static _Atomic uint64_t bad_pages;

static void report_bad(uint64_t p, uint8_t g, long row, const char *when)
{
	const char *r = (const char *)page_addr(p) + row * ROW_BYTES;
	char seen[ROW_BYTES];

	/* The first few are enough to see the pattern (zeroes, another page, an old generation). */
	if (bad_pages++ >= 5)
		return;
	for (int i = 0; i < ROW_BYTES - 2; i++)
		seen[i] = r[i] >= 0x20 && r[i] < 0x7f ? r[i] : '.';
	seen[ROW_BYTES - 2] = '\0';
	fprintf(stderr,
		"workload: BAD page %" PRIu64 " (%s), row %ld, generation %02x expected: %s\n", p,
		when, row, g, seen);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static inline double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

/*
 * Zipf over ranks 1..n with exponent s, by rejection-inversion (Hörmann and Derflinger,
 * "Rejection-inversion to generate variates from monotone discrete distributions", 1996), as
 * Apache Commons' sampler does it: O(1) memory, so the sampler itself adds nothing to the
 * footprint under test.
 */
struct zipf {
	double n, s;
	double h_integral_x1, h_integral_n, sv;
};

static double zipf_helper1(double x)
{
	return fabs(x) > 1e-8 ? log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

static double zipf_helper2(double x)
{
	return fabs(x) > 1e-8 ? expm1(x) / x : 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x));
}

static double zipf_h_integral(const struct zipf *z, double x)
{
	double lx = log(x);

	return zipf_helper2((1.0 - z->s) * lx) * lx;
}

static double zipf_h(const struct zipf *z, double x)
{
	return exp(-z->s * log(x));
}

static double zipf_h_integral_inverse(const struct zipf *z, double x)
{
	double t = x * (1.0 - z->s);

	if (t < -1.0)
		t = -1.0;
	return exp(zipf_helper1(t) * x);
}

static void zipf_init(struct zipf *z, uint64_t n, double s)
{
	z->n = (double)n;
	z->s = s;
	z->h_integral_x1 = zipf_h_integral(z, 1.5) - 1.0;
	z->h_integral_n = zipf_h_integral(z, z->n + 0.5);
	z->sv = 2.0 - zipf_h_integral_inverse(z, zipf_h_integral(z, 2.5) - zipf_h(z, 2.0));
}

/* Returns a rank in 1..n; rank 1 is the hottest. */
static uint64_t zipf_sample(const struct zipf *z, uint64_t *rng)
{
	for (;;) {
		double u = z->h_integral_n + rng_unit(rng) * (z->h_integral_x1 - z->h_integral_n);
		double x = zipf_h_integral_inverse(z, u);
		double k = floor(x + 0.5);

		if (k < 1.0)
			k = 1.0;
		else if (k > z->n)
			k = z->n;
		if (k - x <= z->sv || u >= zipf_h_integral(z, k + 0.5) - zipf_h(z, k))
			return (uint64_t)k;
	}
}

/* Share of the touches that fall outside the `hot` hottest ranks: what even a perfect LRU
 * of that many pages must fault. */
static double zipf_miss_share(uint64_t n, double s, uint64_t hot)
{
	double all = 0, in = 0;

	for (uint64_t k = n; k >= 1; k--) {
		double w = pow((double)k, -s);

		all += w;
		if (k <= hot)
			in += w;
	}
	return all > 0 ? 1.0 - in / all : 0;
}

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/* Ranks are scattered over the footprint by a fixed bijection, so the hot set is not one
 * contiguous run (which readahead or fault-around would make look easy). */
static uint64_t rank_stride;

static uint64_t rank_to_page(uint64_t rank)
{
	return (uint64_t)(((unsigned __int128)(rank - 1) * rank_stride) % nr_pages);
}

struct worker {
	pthread_t thread;
	unsigned id;
	uint64_t rng;
	uint64_t nr_touches; /* measured */
	uint64_t nr_warmup;
	uint32_t *lat;	     /* ns, | LAT_FAULT; nr_touches of them */
	uint64_t first, end; /* seq: the slice [first, end) */
	uint64_t seq_pos;
	struct zipf zipf;
	double cpu_s; /* of the measured phase, this thread */
};

static pthread_barrier_t barrier;

/* The page of this worker's next touch. */
static uint64_t next_page(struct worker *w)
{
	uint64_t p, t = opt.threads;

	switch (opt.mode) {
	case MODE_SEQ:
		p = w->seq_pos++;
		if (w->seq_pos == w->end)
			w->seq_pos = w->first;
		return p;
	case MODE_ZIPF:
		p = rank_to_page(zipf_sample(&w->zipf, &w->rng));
		break;
	default:
		p = rng_next(&w->rng) % nr_pages;
		break;
	}
	/* Only this worker's pages: the same residue class modulo the thread count. */
	p = p - p % t + w->id;
	if (p >= nr_pages)
		p -= t;
	return p;
}

static bool is_write(struct worker *w)
{
	switch (opt.mode) {
	case MODE_RAND_WRITE:
		return true;
	case MODE_ZIPF:
		return rng_next(&w->rng) % 100 < opt.write_pct;
	default:
		return false;
	}
}

/* One touch: read and check the whole page; a write then rewrites it one generation on. */
static void touch(uint64_t p, bool write)
{
	void *addr = page_addr(p);
	long bad = page_check(addr, p, gens[p]);

	if (bad >= 0)
		report_bad(p, gens[p], bad, write ? "before a write" : "read");
	if (write) {
		gens[p]++;
		page_fill(addr, p, gens[p]);
	}
}

static bool page_resident(uint64_t p)
{
	unsigned char v = 0;

	if (mincore(page_addr(p), PAGE_SIZE, &v) < 0)
		return true;
	return v & 1;
}

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (uint64_t i = 0; i < w->nr_warmup; i++) {
		uint64_t p = next_page(w);

		touch(p, is_write(w));
	}
	pthread_barrier_wait(&barrier); /* warm-up done: the main thread takes its snapshot */
	pthread_barrier_wait(&barrier); /* measured phase starts */
	w->cpu_s = -thread_cpu_s();
	for (uint64_t i = 0; i < w->nr_touches; i++) {
		uint64_t p = next_page(w), t0, dt;
		bool write = is_write(w), fault = false;

		if (opt.classify)
			fault = !page_resident(p);
		t0 = now_ns();
		touch(p, write);
		dt = now_ns() - t0;
		w->lat[i] = (uint32_t)MIN(dt, LAT_MAX) | (fault ? LAT_FAULT : 0);
	}
	w->cpu_s += thread_cpu_s();
	return NULL;
}

/* CPU time of each thread of a process: where a helper's (or our own) time goes. */
#define MAX_TASKS 64
struct task_cpu {
	unsigned n;
	pid_t tid[MAX_TASKS];
	double cpu_s[MAX_TASKS];
	char comm[MAX_TASKS][16];
};

static double stat_cpu_s(const char *path, char *ret_comm, size_t comm_len)
{
	char buf[2048], *p, *q;
	unsigned long long utime, stime;
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return NAN;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* comm may hold spaces */
	q = strchr(buf, '(');
	if (!p || !q ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
		   &stime) != 2)
		return NAN;
	if (ret_comm) {
		size_t len = MIN((size_t)(p - q - 1), comm_len - 1);

		memcpy(ret_comm, q + 1, len);
		ret_comm[len] = '\0';
	}
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void tasks_cpu(pid_t pid, struct task_cpu *ret)
{
	char path[64];
	struct dirent *de;
	DIR *d;

	ret->n = 0;
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d)) && ret->n < MAX_TASKS) {
		pid_t tid = (pid_t)strtol(de->d_name, NULL, 10);
		unsigned i;

		if (tid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
		/* sorted by tid: the order the threads were made in */
		for (i = ret->n; i > 0 && ret->tid[i - 1] > tid; i--) {
			ret->tid[i] = ret->tid[i - 1];
			ret->cpu_s[i] = ret->cpu_s[i - 1];
			memcpy(ret->comm[i], ret->comm[i - 1], sizeof(ret->comm[i]));
		}
		ret->tid[i] = tid;
		ret->cpu_s[i] = stat_cpu_s(path, ret->comm[i], sizeof(ret->comm[i]));
		ret->n++;
	}
	closedir(d);
}

/* "comm:seconds,..." in tid order, over the interval; threads gone by then are left out. */
static void print_tasks_cpu(const char *key, const struct task_cpu *a, const struct task_cpu *b)
{
	printf(" %s=", key);
	for (unsigned i = 0; i < b->n; i++) {
		double before = 0;

		for (unsigned j = 0; j < a->n; j++)
			if (a->tid[j] == b->tid[i])
				before = a->cpu_s[j];
		printf("%s%s:%.2f", i ? "," : "", b->comm[i], b->cpu_s[i] - before);
	}
	if (!b->n)
		printf("-");
}

/* CPU time (user + system) of another process, all its threads, from /proc/PID/stat. */
static double proc_cpu_s(pid_t pid)
{
	char path[64];

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	return stat_cpu_s(path, NULL, 0);
}

static long nvcsw, nivcsw; /* context switches: voluntary (slept), involuntary (preempted) */

static double self_cpu_s(double *ret_user, double *ret_sys, long *ret_minflt, long *ret_majflt)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	nvcsw = ru.ru_nvcsw;
	nivcsw = ru.ru_nivcsw;
	*ret_user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
	*ret_sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	*ret_minflt = ru.ru_minflt;
	*ret_majflt = ru.ru_majflt;
	return *ret_user + *ret_sys;
}

/* Time the hypervisor ran something else on this machine's CPUs (all of them). */
static double steal_s(void)
{
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "re");

	if (!f)
		return NAN;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]) != 8)
		v[7] = 0;
	fclose(f);
	return (double)v[7] / (double)sysconf(_SC_CLK_TCK);
}

static uint64_t vmstat_get(const char *key)
{
	char line[256];
	size_t len = strlen(key);
	uint64_t v = 0;
	FILE *f = fopen("/proc/vmstat", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, len) && line[len] == ' ') {
			v = strtoull(line + len + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* memextd's "stats json" answer, NUL-terminated, or NULL. */
static char *stats_fetch(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_close_ int fd = -1;
	size_t len = 0, cap = 1 << 16;
	char *buf;

	if (!path || strlen(path) >= sizeof(sa.sun_path))
		return NULL;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return NULL;
	if (write(fd, "stats json\n", 11) != 11)
		return NULL;
	buf = malloc(cap);
	if (!buf)
		return NULL;
	for (;;) {
		ssize_t n;

		if (len + 1 == cap) {
			char *nb = realloc(buf, cap * 2);

			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return buf;
}

/* The numeric field "key" in the JSON object that starts at obj (flat: up to the first '}'). */
static double json_number(const char *obj, const char *key)
{
	char pat[80];
	const char *end, *hit;

	if (!obj)
		return NAN;
	end = strchr(obj, '}');
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	hit = strstr(obj, pat);
	if (!hit || (end && hit > end))
		return NAN;
	return strtod(hit + strlen(pat), NULL);
}

static const char *json_client(const char *json)
{
	char pat[48];
	const char *hit;

	if (!json)
		return NULL;
	snprintf(pat, sizeof(pat), "{\"pid\":%d,", (int)getpid());
	hit = strstr(json, pat);
	return hit;
}

static const char *json_object(const char *json, const char *name)
{
	char pat[64];
	const char *hit;

	if (!json)
		return NULL;
	snprintf(pat, sizeof(pat), "\"%s\":{", name);
	hit = strstr(json, pat);
	return hit ? hit + strlen(pat) - 1 : NULL;
}

static void stats_save(const char *json, const char *suffix)
{
	char path[512];
	FILE *f;

	if (!json || !opt.stats_out)
		return;
	snprintf(path, sizeof(path), "%s.%s.json", opt.stats_out, suffix);
	f = fopen(path, "we");
	if (!f)
		return;
	fputs(json, f);
	fclose(f);
}

/* zram's mm_stat: orig_data_size compr_data_size ...; returns orig / compr. */
static double zram_ratio(const char *path)
{
	unsigned long long orig = 0, compr = 0;
	FILE *f;

	if (!path)
		return NAN;
	f = fopen(path, "re");
	if (!f)
		return NAN;
	if (fscanf(f, "%llu %llu", &orig, &compr) != 2)
		compr = 0;
	fclose(f);
	return compr ? (double)orig / (double)compr : NAN;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_us(const uint32_t *v, uint64_t n, double q)
{
	uint64_t i;

	if (!n)
		return NAN;
	i = (uint64_t)(q * (double)n);
	if (i >= n)
		i = n - 1;
	return (double)v[i] / 1000.0;
}

static void write_cdf(const char *path, const uint32_t *v, uint64_t n)
{
	FILE *f;

	if (!path)
		return;
	f = fopen(path, "we");
	if (!f) {
		fprintf(stderr, "workload: %s: %m\n", path);
		return;
	}
	fprintf(f, "# latency_us fraction (%" PRIu64 " samples)\n", n);
	/* 0 to 0.9 in steps of 0.001, then finer steps up to 0.9999 for the tail */
	for (int k = 0; n && k <= 1000; k++) {
		double q = k <= 900 ? k / 1000.0 : 0.9 + (k - 900) * 0.000999;

		fprintf(f, "%.3f %.6f\n", pct_us(v, n, q), q);
	}
	fclose(f);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: workload [OPTIONS]\n\n"
		"  --mode MODE          seq, rand-read, rand-write, zipf (default rand-read)\n"
		"  --footprint SIZE     memory to map and fill (default 1G)\n"
		"  --budget SIZE        the run's budget, only for the zipf figure ideal_miss_pct\n"
		"  --threads N          touching threads (default 1)\n"
		"  --touches N          measured touches, all threads (default: one per page;\n"
		"                       zipf: two per page; seq: passes x pages)\n"
		"  --warmup N           touches before measuring (default 0; zipf: one per page)\n"
		"  --passes N           seq: passes over the footprint (default 1)\n"
		"  --zipf-s X           Zipf exponent (default 1.2)\n"
		"  --write-pct P        zipf: share of touches that write (default 50)\n"
		"  --no-classify        no mincore() before each touch (no fault/hit split)\n"
		"  --verify-all         check every page once more after the measured phase\n"
		"  --seed N             random seed (default 1)\n"
		"  --helper-pid PID     count this process's CPU time too (memextd, kswapd0)\n"
		"  --stats-socket PATH  memextd's stats socket: counters of the measured phase\n"
		"  --stats-out PREFIX   save memextd's JSON as PREFIX.{before,after}.json\n"
		"  --cdf-out FILE       latency CDF of faulting touches (of all, if none faults)\n"
		"  --zram-mm-stat FILE  /sys/block/zramN/mm_stat: compression ratio at the end\n");
}

static int parse_options(int argc, char **argv)
{
	enum {
		O_MODE = 256,
		O_FOOT,
		O_BUDGET,
		O_THREADS,
		O_TOUCHES,
		O_WARMUP,
		O_PASSES,
		O_ZIPF,
		O_WPCT,
		O_NOCLASS,
		O_VERIFY,
		O_SEED,
		O_HELPER,
		O_SOCK,
		O_SOUT,
		O_CDF,
		O_ZRAM
	};
	static const struct option longopts[] = {
		{"mode", required_argument, NULL, O_MODE},
		{"footprint", required_argument, NULL, O_FOOT},
		{"budget", required_argument, NULL, O_BUDGET},
		{"threads", required_argument, NULL, O_THREADS},
		{"touches", required_argument, NULL, O_TOUCHES},
		{"warmup", required_argument, NULL, O_WARMUP},
		{"passes", required_argument, NULL, O_PASSES},
		{"zipf-s", required_argument, NULL, O_ZIPF},
		{"write-pct", required_argument, NULL, O_WPCT},
		{"no-classify", no_argument, NULL, O_NOCLASS},
		{"verify-all", no_argument, NULL, O_VERIFY},
		{"seed", required_argument, NULL, O_SEED},
		{"helper-pid", required_argument, NULL, O_HELPER},
		{"stats-socket", required_argument, NULL, O_SOCK},
		{"stats-out", required_argument, NULL, O_SOUT},
		{"cdf-out", required_argument, NULL, O_CDF},
		{"zram-mm-stat", required_argument, NULL, O_ZRAM},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	bool touches_set = false, warmup_set = false;
	int c;

	opt = (struct options){
		.mode = MODE_RAND_READ,
		.footprint_bytes = 1ULL << 30,
		.threads = 1,
		.passes = 1,
		.zipf_s = 1.2,
		.write_pct = 50,
		.classify = true,
		.seed = 1,
	};
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
		switch (c) {
		case O_MODE: {
			size_t m;

			for (m = 0; m < ARRAY_SIZE(mode_names); m++)
				if (!strcmp(optarg, mode_names[m]))
					break;
			if (m == ARRAY_SIZE(mode_names))
				return -EINVAL;
			opt.mode = (enum mode)m;
			break;
		}
		case O_FOOT:
			if (parse_size(optarg, &opt.footprint_bytes) < 0)
				return -EINVAL;
			break;
		case O_BUDGET:
			if (parse_size(optarg, &opt.budget_bytes) < 0)
				return -EINVAL;
			break;
		case O_THREADS:
			opt.threads = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case O_TOUCHES:
			opt.touches = strtoull(optarg, NULL, 10);
			touches_set = true;
			break;
		case O_WARMUP:
			opt.warmup = strtoull(optarg, NULL, 10);
			warmup_set = true;
			break;
		case O_PASSES:
			opt.passes = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case O_ZIPF:
			opt.zipf_s = strtod(optarg, NULL);
			break;
		case O_WPCT:
			opt.write_pct = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case O_NOCLASS:
			opt.classify = false;
			break;
		case O_VERIFY:
			opt.verify_all = true;
			break;
		case O_SEED:
			opt.seed = strtoull(optarg, NULL, 0);
			break;
		case O_HELPER:
			opt.helper_pid = (pid_t)strtol(optarg, NULL, 10);
			break;
		case O_SOCK:
			opt.stats_socket = optarg;
			break;
		case O_SOUT:
			opt.stats_out = optarg;
			break;
		case O_CDF:
			opt.cdf_out = optarg;
			break;
		case O_ZRAM:
			opt.zram_mm_stat = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -EINVAL;
		}
	}
	if (optind < argc || opt.threads < 1 || opt.threads > 64 || opt.write_pct > 100 ||
	    opt.passes < 1 || opt.zipf_s <= 0 || opt.footprint_bytes < 64 * PAGE_SIZE)
		return -EINVAL;
	nr_pages = opt.footprint_bytes / PAGE_SIZE;
	if (!touches_set)
		opt.touches = opt.mode == MODE_SEQ    ? opt.passes * nr_pages
			      : opt.mode == MODE_ZIPF ? 2 * nr_pages
						      : nr_pages;
	if (!warmup_set)
		opt.warmup = opt.mode == MODE_ZIPF ? nr_pages : 0;
	if (opt.mode == MODE_RAND_WRITE)
		opt.write_pct = 100;
	else if (opt.mode != MODE_ZIPF)
		opt.write_pct = 0;
	return 0;
}

int main(int argc, char **argv)
{
	double u0, s0, u1, s1, cpu0, h0, h1, fill_s, fill_cpu, fill_helper;
	double wall_s, verify_s = 0, ideal_miss = NAN;
	long minflt0, majflt0, minflt1, majflt1, nvcsw0, nivcsw0, fill_minflt;
	double steal0, steal1;
	static struct task_cpu helper_tasks0, helper_tasks1, self_tasks0, self_tasks1;
	uint64_t t_start, t0, t1, vm_in0, vm_out0, vm_in1, vm_out1, nr_lat = 0, nr_fault = 0;
	_cleanup_free_ char *json_start = NULL, *json0 = NULL, *json1 = NULL;
	_cleanup_free_ uint32_t *all = NULL, *faults = NULL;
	_cleanup_free_ struct worker *workers = NULL;
	const char *cl0, *cl1, *st1;

	if (parse_options(argc, argv) < 0) {
		usage(stderr);
		return 2;
	}
	t_start = now_ns();

	region = mmap(NULL, nr_pages * PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gens = calloc(nr_pages, sizeof(*gens));
	workers = calloc(opt.threads, sizeof(*workers));
	if (region == MAP_FAILED || !gens || !workers) {
		fprintf(stderr, "workload: out of memory\n");
		return 1;
	}

	/* Fill: a sequential write of the whole footprint; under a budget, the eviction rate. */
	json_start = stats_fetch(opt.stats_socket);
	h0 = proc_cpu_s(opt.helper_pid);
	cpu0 = self_cpu_s(&u0, &s0, &minflt0, &majflt0);
	t0 = now_ns();
	for (uint64_t p = 0; p < nr_pages; p++)
		page_fill(page_addr(p), p, 0);
	t1 = now_ns();
	fill_s = (double)(t1 - t0) / 1e9;
	fill_cpu = self_cpu_s(&u1, &s1, &minflt1, &majflt1) - cpu0;
	fill_helper = proc_cpu_s(opt.helper_pid) - h0;
	fill_minflt = minflt1 - minflt0;

	/* Workers, each with its own pages, seed and latency samples. */
	if (opt.mode == MODE_ZIPF) {
		rank_stride = 0x9e3779b1ULL % nr_pages;
		while (gcd_u64(rank_stride, nr_pages) != 1)
			rank_stride++;
		if (opt.budget_bytes)
			ideal_miss = 100.0 * zipf_miss_share(nr_pages, opt.zipf_s,
							     opt.budget_bytes / PAGE_SIZE);
	}
	pthread_barrier_init(&barrier, NULL, opt.threads + 1);
	for (unsigned i = 0; i < opt.threads; i++) {
		struct worker *w = &workers[i];

		w->id = i;
		w->rng = mix64(opt.seed * 1000003 + i) | 1;
		w->nr_touches = opt.touches / opt.threads + (i < opt.touches % opt.threads);
		w->nr_warmup = opt.warmup / opt.threads;
		w->first = nr_pages * i / opt.threads;
		w->end = nr_pages * (i + 1) / opt.threads;
		w->seq_pos = w->first;
		zipf_init(&w->zipf, nr_pages, opt.zipf_s);
		w->lat = malloc(MAX(w->nr_touches, 1) * sizeof(*w->lat));
		if (!w->lat || pthread_create(&w->thread, NULL, worker_main, w)) {
			fprintf(stderr, "workload: cannot start thread %u\n", i);
			return 1;
		}
	}

	pthread_barrier_wait(&barrier); /* warm-up done */
	json0 = stats_fetch(opt.stats_socket);
	vm_in0 = vmstat_get("pswpin");
	vm_out0 = vmstat_get("pswpout");
	h0 = proc_cpu_s(opt.helper_pid);
	cpu0 = self_cpu_s(&u0, &s0, &minflt0, &majflt0);
	nvcsw0 = nvcsw;
	nivcsw0 = nivcsw;
	steal0 = steal_s();
	tasks_cpu(opt.helper_pid, &helper_tasks0);
	tasks_cpu(getpid(), &self_tasks0);
	t0 = now_ns();
	pthread_barrier_wait(&barrier);
	for (unsigned i = 0; i < opt.threads; i++)
		pthread_join(workers[i].thread, NULL);
	t1 = now_ns();
	self_cpu_s(&u1, &s1, &minflt1, &majflt1);
	steal1 = steal_s();
	tasks_cpu(opt.helper_pid, &helper_tasks1);
	tasks_cpu(getpid(), &self_tasks1);
	h1 = proc_cpu_s(opt.helper_pid);
	vm_in1 = vmstat_get("pswpin");
	vm_out1 = vmstat_get("pswpout");
	json1 = stats_fetch(opt.stats_socket);
	wall_s = (double)(t1 - t0) / 1e9;

	/* Latency: faulting touches, and all touches. */
	all = malloc(MAX(opt.touches, 1) * sizeof(*all));
	faults = malloc(MAX(opt.touches, 1) * sizeof(*faults));
	if (!all || !faults) {
		fprintf(stderr, "workload: out of memory\n");
		return 1;
	}
	for (unsigned i = 0; i < opt.threads; i++)
		for (uint64_t k = 0; k < workers[i].nr_touches; k++) {
			uint32_t v = workers[i].lat[k];

			all[nr_lat++] = v & LAT_MAX;
			if (v & LAT_FAULT)
				faults[nr_fault++] = v & LAT_MAX;
		}
	qsort(all, nr_lat, sizeof(*all), cmp_u32);
	qsort(faults, nr_fault, sizeof(*faults), cmp_u32);
	if (nr_fault)
		write_cdf(opt.cdf_out, faults, nr_fault);
	else
		write_cdf(opt.cdf_out, all, nr_lat);

	if (opt.verify_all) {
		uint64_t v0 = now_ns();

		for (uint64_t p = 0; p < nr_pages; p++) {
			long bad = page_check(page_addr(p), p, gens[p]);

			if (bad >= 0)
				report_bad(p, gens[p], bad, "final check");
		}
		verify_s = (double)(now_ns() - v0) / 1e9;
	}

	stats_save(json0, "before");
	stats_save(json1, "after");
	cl0 = json_client(json0);
	cl1 = json_client(json1);
	st1 = json_object(json1, "store");

	printf("RESULT mode=%s threads=%u footprint_bytes=%" PRIu64 " pages=%" PRIu64
	       " touches=%" PRIu64 " warmup=%" PRIu64 " write_pct=%u wall_s=%.3f pages_per_s=%.0f",
	       mode_names[opt.mode], opt.threads, nr_pages * PAGE_SIZE, nr_pages, nr_lat,
	       opt.warmup, opt.write_pct, wall_s, (double)nr_lat / wall_s);
	printf(" fault_touches=%" PRIu64 " fault_pct=%.2f", nr_fault,
	       nr_lat ? 100.0 * (double)nr_fault / (double)nr_lat : 0);
	printf(" all_p50_us=%.2f all_p99_us=%.2f", pct_us(all, nr_lat, 0.5),
	       pct_us(all, nr_lat, 0.99));
	printf(" fault_p50_us=%.2f fault_p90_us=%.2f fault_p99_us=%.2f fault_max_us=%.1f",
	       pct_us(faults, nr_fault, 0.5), pct_us(faults, nr_fault, 0.9),
	       pct_us(faults, nr_fault, 0.99), pct_us(faults, nr_fault, 1.0));
	printf(" cpu_user_s=%.2f cpu_sys_s=%.2f helper_cpu_s=%.2f minflt=%ld majflt=%ld", u1 - u0,
	       s1 - s0, h1 - h0, minflt1 - minflt0, majflt1 - majflt0);
	printf(" nvcsw=%ld nivcsw=%ld steal_s=%.2f", nvcsw - nvcsw0, nivcsw - nivcsw0,
	       steal1 - steal0);
	{
		double workers_cpu = 0;

		for (unsigned i = 0; i < opt.threads; i++)
			workers_cpu += workers[i].cpu_s;
		/* the rest of our CPU: the main thread, and the shim's agent if there is one */
		printf(" workers_cpu_s=%.2f", workers_cpu);
	}
	print_tasks_cpu("self_threads_cpu", &self_tasks0, &self_tasks1);
	print_tasks_cpu("helper_threads_cpu", &helper_tasks0, &helper_tasks1);
	printf(" fill_s=%.3f fill_pages_per_s=%.0f fill_cpu_s=%.2f fill_helper_cpu_s=%.2f"
	       " fill_minflt=%ld",
	       fill_s, (double)nr_pages / fill_s, fill_cpu, fill_helper, fill_minflt);
	printf(" vm_pswpin=%" PRIu64 " vm_pswpout=%" PRIu64, vm_in1 - vm_in0, vm_out1 - vm_out0);
	if (cl1) {
		static const char *const counters[] = {"faults", "zero_faults", "parked_faults",
						       "pswpin", "pswpout",	"move_failed",
						       "gate_waits", "gate_wait_usec", "gate_deferred"};

		for (size_t i = 0; i < ARRAY_SIZE(counters); i++)
			printf(" d_%s=%.0f", counters[i],
			       json_number(cl1, counters[i]) - json_number(cl0, counters[i]));
		/* the daemon's own view of its fault handling, over the client's life */
		/* fill and warm-up: from the first snapshot to the one before the measured phase */
		printf(" fill_faults=%.0f fill_zero_faults=%.0f",
		       json_number(cl0, "faults") - json_number(json_client(json_start), "faults"),
		       json_number(cl0, "zero_faults") -
			       json_number(json_client(json_start), "zero_faults"));
		printf(" fault_usec_mean=%.1f fault_usec_p50=%.0f fault_usec_p99=%.0f",
		       json_number(cl1, "fault_usec_mean"), json_number(cl1, "fault_usec_p50"),
		       json_number(cl1, "fault_usec_p99"));
		printf(" store_ratio=%.2f",
		       json_number(st1, "orig_data_size") / json_number(st1, "compr_data_size"));
	}
	printf(" zram_ratio=%.2f ideal_miss_pct=%.2f verify_s=%.2f total_s=%.2f bad=%" PRIu64 "\n",
	       zram_ratio(opt.zram_mm_stat), ideal_miss, verify_s,
	       (double)(now_ns() - t_start) / 1e9, (uint64_t)bad_pages);
	fflush(stdout);
	for (unsigned i = 0; i < opt.threads; i++)
		free(workers[i].lat);
	return bad_pages ? 3 : 0;
}
