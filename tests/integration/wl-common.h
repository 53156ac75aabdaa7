/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Shared helpers for the integration workloads (wl-*.c).
 *
 * Every page a workload checks is a function of (page index, generation, salt): a 16-byte
 * header naming the page, then text-like filler from a PRNG seeded by the three values, so a
 * page that comes back from the wrong place, from an older generation, or as zeroes is told
 * apart and reported by what it holds. The filler is words from a small dictionary: lz4
 * compresses it about 2-3x, like ordinary application data, and it is never all-zero.
 *
 * Workloads print "phase NAME" lines on stdout (flushed) so the harness can tell which part of
 * the run a resident-memory sample belongs to. They exit 0 only after checking every byte they
 * wrote, 1 on the first mismatch (after printing where), 2 on a usage or system-call error.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define WL_PAGE_SIZE 4096UL
#define WL_MAGIC 0x4c57584dU /* "MXWL" */
#define WL_EXIT_MISMATCH 1
#define WL_EXIT_ERROR 2

struct wl_page_header {
	uint32_t magic;
	uint32_t page; /* page index the content belongs to */
	uint32_t gen;  /* generation: bumped by every rewrite */
	uint32_t aux;  /* salt in the high 8 bits, a small-write counter in the low 24 */
};

_Static_assert(sizeof(struct wl_page_header) == 16, "page header is 16 bytes");

static const char *wl_prog = "wl";

static inline void wl_set_prog(const char *argv0)
{
	const char *s = strrchr(argv0, '/');
	wl_prog = s ? s + 1 : argv0;
}

__attribute__((format(printf, 1, 2), noreturn)) static inline void wl_die(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	fprintf(stderr, "%s: error: ", wl_prog);
	va_start(ap, fmt);
	errno = saved;
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stdout);
	_exit(WL_EXIT_ERROR);
}

__attribute__((format(printf, 1, 2), noreturn)) static inline void wl_mismatch(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: MISMATCH: ", wl_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stdout);
	_exit(WL_EXIT_MISMATCH);
}

__attribute__((format(printf, 1, 2))) static inline void wl_log(const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", wl_prog);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* A phase begins: appended to $MEMEXT_WL_PHASE_FILE first (the harness reads it after each
 * RSS sample, in order), then printed. */
static inline void wl_phase(const char *name)
{
	const char *path = getenv("MEMEXT_WL_PHASE_FILE");
	FILE *f = path ? fopen(path, "a") : NULL;

	if (f) {
		fprintf(f, "%s\n", name);
		fclose(f);
	}
	printf("phase %s\n", name);
	fflush(stdout);
}

/* Sizes as "64M", "128K", "1G" or plain bytes. */
static inline uint64_t wl_parse_size(const char *s)
{
	char *end;
	uint64_t v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		wl_die("bad size '%s'", s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end)
		wl_die("bad size '%s'", s);
	return v;
}

static inline uint64_t wl_parse_u64(const char *s)
{
	char *end;
	uint64_t v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		wl_die("bad number '%s'", s);
	return v;
}

/* splitmix64: a fine seed mixer and a fast enough stream generator. */
static inline uint64_t wl_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline uint64_t wl_rand(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ULL;
	return wl_mix(*state);
}

static inline uint64_t wl_rand_below(uint64_t *state, uint64_t n)
{
	return n ? wl_rand(state) % n : 0;
}

/*
 * A byte stream of two-word phrases from a 32-entry dictionary, each followed by a space or, now
 * and then, a comma or a newline (lz4 ratio about 2.7 on 4 KiB pages). It is prefix-consistent: the first n bytes of the stream for a seed do
 * not depend on how many bytes are generated, so a grown buffer can be checked against the same
 * seed.
 */
#define WL_NWORDS 32
static const char *const wl_words[WL_NWORDS] = {
	"daemon budget",
	"reclaim kernel",
	"table arena",
	"compress thread",
	"store memory",
	"table fault",
	"thread madvise",
	"page arena",
	"inactive pool",
	"memory dirty",
	"fault page",
	"thread store",
	"madvise fault",
	"pool arena",
	"table pool",
	"protect pool",
	"pool malloc",
	"refault fault",
	"mmap memory",
	"copy refault",
	"kernel write",
	"madvise zero",
	"anon refault",
	"table client",
	"swap compress",
	"handle client",
	"mmap copy",
	"staging evict",
	"arena memory",
	"uffd client",
	"staging table",
	"fault compress",
};
static const char wl_seps[8] = { ' ', ' ', ' ', ' ', ' ', ' ', ',', '\n' };

struct wl_stream {
	uint64_t state;
	uint64_t bits;  /* unused random bits */
	unsigned nbits; /* how many of them */
	char pend[64];  /* the rest of a word (and its separator) cut at the end of the last call */
	unsigned npend, pendpos;
};

static inline void wl_stream_init(struct wl_stream *s, uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	s->state = wl_mix(seed ^ 0x6d656d6578747374ULL);
}

static inline unsigned wl_stream_bits(struct wl_stream *s, unsigned n)
{
	unsigned v;

	if (s->nbits < n) {
		s->bits = wl_rand(&s->state);
		s->nbits = 64;
	}
	v = (unsigned)(s->bits & ((1U << n) - 1));
	s->bits >>= n;
	s->nbits -= n;
	return v;
}

static inline void wl_stream_gen(struct wl_stream *s, char *dst, size_t len)
{
	while (len && s->pendpos < s->npend) {
		*dst++ = s->pend[s->pendpos++];
		len--;
	}
	while (len) {
		unsigned w = wl_stream_bits(s, 5), sep = wl_stream_bits(s, 3);
		const char *word = wl_words[w];
		size_t wlen = strlen(word);

		if (wlen + 1 <= len) {
			memcpy(dst, word, wlen);
			dst[wlen] = wl_seps[sep];
			dst += wlen + 1;
			len -= wlen + 1;
			continue;
		}
		memcpy(s->pend, word, wlen);
		s->pend[wlen] = wl_seps[sep];
		s->npend = (unsigned)wlen + 1;
		s->pendpos = 0;
		while (len) {
			*dst++ = s->pend[s->pendpos++];
			len--;
		}
	}
}

/* Fill buf[0, len) with the stream of seed. */
static inline void wl_stream_fill(void *buf, size_t len, uint64_t seed)
{
	struct wl_stream s;

	wl_stream_init(&s, seed);
	wl_stream_gen(&s, buf, len);
}

/* Fill only buf[from, len) (the part after an earlier fill of `from` bytes with the same seed). */
static inline void wl_stream_fill_tail(void *buf, size_t from, size_t len, uint64_t seed)
{
	struct wl_stream s;
	char tmp[4096];
	size_t off = 0;

	wl_stream_init(&s, seed);
	while (off < from) {
		size_t n = from - off < sizeof(tmp) ? from - off : sizeof(tmp);
		wl_stream_gen(&s, tmp, n);
		off += n;
	}
	wl_stream_gen(&s, (char *)buf + from, len - from);
}

/* Offset of the first byte of buf[0, len) that differs from the stream of seed, or -1. */
static inline ptrdiff_t wl_stream_check(const void *buf, size_t len, uint64_t seed)
{
	struct wl_stream s;
	char tmp[4096];
	size_t off = 0;

	wl_stream_init(&s, seed);
	while (off < len) {
		size_t n = len - off < sizeof(tmp) ? len - off : sizeof(tmp);
		wl_stream_gen(&s, tmp, n);
		if (memcmp(tmp, (const char *)buf + off, n)) {
			for (size_t i = 0; i < n; i++)
				if (tmp[i] != ((const char *)buf)[off + i])
					return (ptrdiff_t)(off + i);
		}
		off += n;
	}
	return -1;
}

static inline uint64_t wl_page_seed(uint64_t page, uint32_t gen, uint32_t salt)
{
	return wl_mix(page * 0x100000001b3ULL ^ ((uint64_t)gen << 40) ^ ((uint64_t)salt << 56));
}

static inline uint32_t wl_aux(uint32_t salt, uint32_t counter)
{
	return (salt << 24) | (counter & 0xffffff);
}

/* The full expected content of a page. */
static inline void wl_page_make(void *dst, uint64_t page, uint32_t gen, uint32_t salt)
{
	struct wl_page_header h = {
		.magic = WL_MAGIC,
		.page = (uint32_t)page,
		.gen = gen,
		.aux = wl_aux(salt, 0),
	};

	memcpy(dst, &h, sizeof(h));
	wl_stream_fill((char *)dst + sizeof(h), WL_PAGE_SIZE - sizeof(h), wl_page_seed(page, gen, salt));
}

static inline void wl_page_fill(void *addr, uint64_t page, uint32_t gen, uint32_t salt)
{
	wl_page_make(addr, page, gen, salt);
}

static inline bool wl_page_is_zero(const void *addr)
{
	const uint64_t *p = addr;

	for (size_t i = 0; i < WL_PAGE_SIZE / 8; i++)
		if (p[i])
			return false;
	return true;
}

/* Describe what a page actually holds, for mismatch reports. */
static inline void wl_page_describe(const void *addr, char *buf, size_t len)
{
	struct wl_page_header h;

	memcpy(&h, addr, sizeof(h));
	if (wl_page_is_zero(addr))
		snprintf(buf, len, "all zero");
	else if (h.magic == WL_MAGIC)
		snprintf(buf, len, "header says page %u gen %u salt %u counter %u", h.page, h.gen,
			 h.aux >> 24, h.aux & 0xffffff);
	else
		snprintf(buf, len, "no header (first bytes %02x %02x %02x %02x)",
			 ((const unsigned char *)addr)[0], ((const unsigned char *)addr)[1],
			 ((const unsigned char *)addr)[2], ((const unsigned char *)addr)[3]);
}

/*
 * Offset of the first wrong byte of the page at addr against (page, gen, salt, counter), or -1.
 * The counter is the low 24 bits of the header's aux word (small in-place writes).
 */
static inline ptrdiff_t wl_page_diff(const void *addr, uint64_t page, uint32_t gen, uint32_t salt,
				     uint32_t counter)
{
	char want[WL_PAGE_SIZE];
	struct wl_page_header *h = (struct wl_page_header *)want;

	wl_page_make(want, page, gen, salt);
	h->aux = wl_aux(salt, counter);
	if (!memcmp(want, addr, WL_PAGE_SIZE))
		return -1;
	for (size_t i = 0; i < WL_PAGE_SIZE; i++)
		if (want[i] != ((const char *)addr)[i])
			return (ptrdiff_t)i;
	return -1;
}

/* Check a page; on a mismatch report it and exit 1. `what` names the check for the report. */
static inline void wl_page_check(const char *what, const void *addr, uint64_t page, uint32_t gen,
				 uint32_t salt, uint32_t counter)
{
	ptrdiff_t off = wl_page_diff(addr, page, gen, salt, counter);
	char desc[160];

	if (off < 0)
		return;
	wl_page_describe(addr, desc, sizeof(desc));
	wl_mismatch("%s: page %" PRIu64 " at %p, first bad byte at offset %td (address %p): "
		    "expected gen %u salt %u counter %u, %s",
		    what, page, addr, off, (const char *)addr + off, gen, salt, counter, desc);
}

static inline void wl_zero_check(const char *what, const void *addr, uint64_t page)
{
	char desc[160];

	if (wl_page_is_zero(addr))
		return;
	for (size_t i = 0; i < WL_PAGE_SIZE; i++) {
		if (((const char *)addr)[i]) {
			wl_page_describe(addr, desc, sizeof(desc));
			wl_mismatch("%s: page %" PRIu64 " at %p should read zero, byte at offset %zu "
				    "(address %p) is 0x%02x; %s",
				    what, page, addr, i, (const char *)addr + i,
				    ((const unsigned char *)addr)[i], desc);
		}
	}
}

static inline void *wl_mmap_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		wl_die("mmap %zu bytes: %m", len);
	return p;
}

/* Pages of [addr, addr+len) that are not resident (mincore), e.g. evicted by memext. */
static inline size_t wl_nonresident_pages(void *addr, size_t len)
{
	size_t n = len / WL_PAGE_SIZE, out = 0;
	unsigned char *vec = malloc(n);

	if (!vec)
		wl_die("malloc");
	if (mincore(addr, len, vec) < 0)
		wl_die("mincore %p+%zu: %m", addr, len);
	for (size_t i = 0; i < n; i++)
		out += !(vec[i] & 1);
	free(vec);
	return out;
}

static inline double wl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Wait until at least `permille`/1000 of [addr, addr+len) is not resident, at most timeout_s
 * (a hang guard: under memext eviction of cold pages is prompt). Returns the non-resident count.
 * With `required` false (a native run) it looks once and returns.
 */
static inline size_t wl_wait_evicted(const char *what, void *addr, size_t len, unsigned permille,
				     bool required, double timeout_s)
{
	size_t n = len / WL_PAGE_SIZE, want = n * permille / 1000, got;
	double deadline = wl_now() + timeout_s;

	for (;;) {
		got = wl_nonresident_pages(addr, len);
		if (got >= want || !required)
			break;
		if (wl_now() > deadline)
			wl_mismatch("%s: only %zu of %zu pages at %p were evicted after %.0f s "
				    "(need %zu): memext did not evict cold memory",
				    what, got, n, addr, timeout_s, want);
		usleep(20000);
	}
	wl_log("%s: %zu of %zu pages not resident before the operation", what, got, n);
	return got;
}

/* MEMEXT_WL_EXPECT_EVICTION=1 (set by the harness under the shim) makes eviction required. */
static inline bool wl_expect_eviction(void)
{
	const char *e = getenv("MEMEXT_WL_EXPECT_EVICTION");

	return e && *e == '1';
}

/*
 * Pages several threads (or signal handlers) write at once: the content is (page, gen 0, salt
 * 0) and the header's counter is bumped atomically; the bumps are counted elsewhere, so the
 * final check knows the counter. Lock-free and async-signal-safe.
 */
static inline void wl_page_bump(void *addr)
{
	struct wl_page_header *h = addr;

	__atomic_fetch_add(&h->aux, 1, __ATOMIC_RELAXED);
}
