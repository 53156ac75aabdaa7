/* SPDX-License-Identifier: MIT */
/*
 * The codecs: round trips at every level we use, incompressible data refused early, and
 * decompression of damaged streams (truncated, extended, bit-flipped, garbage) that never reads
 * or writes outside its buffers. Buffers sit against PROT_NONE guard pages, so one byte out of
 * bounds is a crash, not a silent pass. Several threads at once check the per-thread contexts.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "daemon/codec.h"
#include "macro.h"

#include "check.h"

static uint64_t rng_next(uint64_t *s)
{
	/* splitmix64: fast, and every seed gives its own stream */
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* A page that compresses by a factor depending on noise (0: text only .. 100: random). */
static void make_page(uint64_t seed, unsigned noise, unsigned char *p)
{
	static const char *const words[] = {"memory", "page", "fault ", "zspage", "class",   " ",
					    "handle", "\n",   "swap",	"0x00",	  "{\"k\":", "lru"};
	uint64_t s = seed;
	size_t i = 0;

	while (i < PAGE_SIZE) {
		uint64_t r = rng_next(&s);

		if (r % 100 < noise) {
			p[i++] = (unsigned char)(r >> 32);
			continue;
		}
		for (const char *w = words[(r >> 8) % ARRAY_SIZE(words)]; *w && i < PAGE_SIZE; w++)
			p[i++] = (unsigned char)*w;
	}
}

/* A buffer of len bytes that ends where a PROT_NONE page begins. */
struct guarded {
	unsigned char *map;
	size_t map_len;
	unsigned char *buf;
};

static struct guarded guarded_new(size_t len)
{
	struct guarded g;
	size_t span = PAGE_ALIGN_UP(len);

	g.map_len = span + 2 * PAGE_SIZE;
	g.map = mmap(NULL, g.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(g.map != MAP_FAILED);
	check(mprotect(g.map, PAGE_SIZE, PROT_NONE) == 0);
	check(mprotect(g.map + PAGE_SIZE + span, PAGE_SIZE, PROT_NONE) == 0);
	g.buf = g.map + PAGE_SIZE + span - len;
	return g;
}

static void guarded_free(struct guarded *g)
{
	munmap(g->map, g->map_len);
}

static void test_find(void)
{
	check(codec_find(NULL) == &codec_lz4_ops);
	check(codec_find("") == &codec_lz4_ops);
	check(codec_find("lz4") == &codec_lz4_ops);
	check(codec_find("zstd") == &codec_zstd_ops);
	check(codec_find("gzip") == NULL);
	check(codec_find("LZ4") == NULL);
}

static void test_round_trip(const struct codec_ops *c, int level)
{
	unsigned char page[PAGE_SIZE], out[PAGE_SIZE], comp[2 * PAGE_SIZE];
	size_t total = 0;
	int n;

	for (unsigned noise = 0; noise <= 100; noise += 5) {
		for (uint64_t seed = 0; seed < 20; seed++) {
			make_page(seed * 1000 + noise, noise, page);
			n = c->compress(page, PAGE_SIZE, comp, sizeof(comp), level);
			check(n > 0);
			check((size_t)n <= sizeof(comp));
			memset(out, 0xa5, sizeof(out));
			check(c->decompress(comp, (size_t)n, out, PAGE_SIZE) == 0);
			check(memcmp(page, out, PAGE_SIZE) == 0);
			total += (size_t)n;
		}
	}
	/* A page's stream does not decode to any other length. */
	make_page(1, 10, page);
	n = c->compress(page, PAGE_SIZE, comp, sizeof(comp), level);
	check(n > 0);
	check(c->decompress(comp, (size_t)n, out, PAGE_SIZE - 1) == -EBADMSG);
	printf("%s level %d: %zu bytes for %u pages\n", c->name, level, total, 21 * 20);
}

static void test_incompressible(const struct codec_ops *c)
{
	unsigned char page[PAGE_SIZE], comp[PAGE_SIZE];
	int n;

	make_page(7, 100, page);
	/* Random data does not fit in 3/4 of a page: the caller then keeps it raw. */
	check(c->compress(page, PAGE_SIZE, comp, PAGE_SIZE * 3 / 4, 1) == -E2BIG);
	check(c->compress(page, PAGE_SIZE, comp, 1, 1) == -E2BIG);
	make_page(7, 0, page);
	n = c->compress(page, PAGE_SIZE, comp, PAGE_SIZE * 3 / 4, 1);
	check(n > 0 && n < (int)PAGE_SIZE / 2);
}

/* Decodes src (len bytes, placed against a guard page) into a guarded page. */
static int decode_guarded(const struct codec_ops *c, const unsigned char *src, size_t len,
			  unsigned char *expect, unsigned *ret_wrong)
{
	struct guarded in = guarded_new(len ? len : 1), out = guarded_new(PAGE_SIZE);
	int r;

	memcpy(in.buf, src, len);
	r = c->decompress(in.buf, len, out.buf, PAGE_SIZE);
	check(r == 0 || r == -EBADMSG);
	if (r == 0 && memcmp(out.buf, expect, PAGE_SIZE) != 0)
		(*ret_wrong)++;
	guarded_free(&in);
	guarded_free(&out);
	return r;
}

static void test_corrupt(const struct codec_ops *c)
{
	unsigned char page[PAGE_SIZE], comp[2 * PAGE_SIZE], bad[2 * PAGE_SIZE + 64];
	unsigned rejected = 0, accepted = 0, wrong = 0;
	uint64_t s = 42;

	for (unsigned round = 0; round < 12; round++) {
		int n;

		make_page(round, round * 8, page);
		n = c->compress(page, PAGE_SIZE, comp, sizeof(comp), 1);
		check(n > 0);

		/* Every truncation is an incomplete stream. */
		for (int len = 0; len < n; len += 1 + len / 64) {
			unsigned w = 0;

			check(decode_guarded(c, comp, (size_t)len, page, &w) == -EBADMSG);
		}
		/* Trailing bytes are not part of the stream: refused, not ignored. */
		memcpy(bad, comp, (size_t)n);
		memset(bad + n, 0, 16);
		check(decode_guarded(c, bad, (size_t)n + 16, page, &wrong) == -EBADMSG);

		/* Flipped bits: either refused, or decoded within bounds (a flipped literal). */
		for (unsigned k = 0; k < 300; k++) {
			memcpy(bad, comp, (size_t)n);
			for (unsigned f = 0; f < 1 + k % 4; f++) {
				uint64_t r = rng_next(&s);

				bad[r % (uint64_t)n] ^= (unsigned char)(1u << ((r >> 32) % 8));
			}
			if (decode_guarded(c, bad, (size_t)n, page, &wrong) == 0)
				accepted++;
			else
				rejected++;
		}
		/* Garbage of every size. */
		for (unsigned k = 0; k < 50; k++) {
			size_t len = 1 + rng_next(&s) % sizeof(bad);

			for (size_t i = 0; i < len; i++)
				bad[i] = (unsigned char)rng_next(&s);
			check(decode_guarded(c, bad, len, page, &wrong) == -EBADMSG);
		}
	}
	/*
	 * Much damage is caught; what decodes was a change to a literal or an offset, which
	 * neither format can tell from data without a checksum (zram has none either).
	 */
	check(rejected * 4 > rejected + accepted);
	printf("%s corrupt: %u rejected, %u decoded (%u of them wrong bytes)\n", c->name, rejected,
	       accepted, wrong);
}

struct thread_arg {
	const struct codec_ops *c;
	uint64_t seed;
	int level;
	unsigned pages;
};

static void *thread_main(void *p)
{
	const struct thread_arg *a = p;
	unsigned char page[PAGE_SIZE], out[PAGE_SIZE], comp[2 * PAGE_SIZE];

	for (unsigned i = 0; i < a->pages; i++) {
		int n;

		make_page(a->seed + i, i % 60, page);
		n = a->c->compress(page, PAGE_SIZE, comp, sizeof(comp), a->level);
		check(n > 0);
		check(a->c->decompress(comp, (size_t)n, out, PAGE_SIZE) == 0);
		check(memcmp(page, out, PAGE_SIZE) == 0);
	}
	return NULL;
}

static void test_threads(const struct codec_ops *c)
{
	struct thread_arg args[4];
	pthread_t t[4];

	/* Two rounds: threads that exit free their contexts, new ones make their own. */
	for (unsigned round = 0; round < 2; round++) {
		for (unsigned i = 0; i < ARRAY_SIZE(t); i++) {
			args[i] = (struct thread_arg){c, 1000 * i + round, 1 + (int)i % 3, 3000};
			check(pthread_create(&t[i], NULL, thread_main, &args[i]) == 0);
		}
		for (unsigned i = 0; i < ARRAY_SIZE(t); i++)
			check(pthread_join(t[i], NULL) == 0);
	}
}

int main(void)
{
	test_find();
	test_round_trip(&codec_lz4_ops, 1);
	test_round_trip(&codec_zstd_ops, 1);
	test_round_trip(&codec_zstd_ops, 3);
	test_round_trip(&codec_zstd_ops, 19);
	test_incompressible(&codec_lz4_ops);
	test_incompressible(&codec_zstd_ops);
	test_corrupt(&codec_lz4_ops);
	test_corrupt(&codec_zstd_ops);
	test_threads(&codec_lz4_ops);
	test_threads(&codec_zstd_ops);
	printf("ok\n");
	return 0;
}
