/* SPDX-License-Identifier: MIT */
/*
 * memext-demo: an ordinary program that uses more memory than its budget. It fills SIZE of
 * text-like data (which compresses about 3x), touches it at random for a while, then checks
 * every byte. Run it under the shim:
 *   LD_PRELOAD=libmemext.so MEMEXT_BUDGET=64M memext-demo 256M
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "size.h"

#define PAGE 4096

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Page p at generation g: words from a small vocabulary, so it compresses like text. */
static void fill(unsigned char *page, uint64_t p, uint32_t g)
{
	static const char *const words[] = {"memory ", "page ", "fault ", "swap ", "zram ",
					    "compress ", "kernel ", "daemon ", "budget ", "lz4 "};
	uint64_t s = p * 0x9E3779B97F4A7C15ULL + g + 1;
	size_t off = 0;

	while (off < PAGE) {
		const char *w = words[rng(&s) % 10];
		size_t n = strlen(w);

		if (off + n > PAGE)
			n = PAGE - off;
		memcpy(page + off, w, n);
		off += n;
	}
	memcpy(page, &p, sizeof(p));
	memcpy(page + 8, &g, sizeof(g));
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	uint64_t bytes = 256ULL << 20, s = 42, touches;
	unsigned char *mem, expect[PAGE];
	uint32_t *gen;
	size_t pages;
	double t0;

	if (argc > 1 && parse_size(argv[1], &bytes) < 0) {
		fprintf(stderr, "usage: memext-demo [SIZE]   (e.g. 256M)\n");
		return 2;
	}
	pages = bytes / PAGE;
	mem = malloc(pages * PAGE);
	gen = calloc(pages, sizeof(*gen));
	if (!mem || !gen) {
		fprintf(stderr, "memext-demo: out of memory\n");
		return 1;
	}
	printf("memext-demo: filling %zu MiB\n", pages * PAGE >> 20);
	t0 = now();
	for (size_t p = 0; p < pages; p++)
		fill(mem + p * PAGE, p, 0);
	printf("memext-demo: filled in %.2f s\n", now() - t0);

	touches = pages * 2;
	printf("memext-demo: %" PRIu64 " random reads and writes\n", touches);
	t0 = now();
	for (uint64_t i = 0; i < touches; i++) {
		size_t p = rng(&s) % pages;

		if (i % 4 == 0) {
			fill(mem + p * PAGE, p, ++gen[p]);
		} else {
			fill(expect, p, gen[p]);
			if (memcmp(mem + p * PAGE, expect, PAGE) != 0) {
				fprintf(stderr, "memext-demo: page %zu is corrupt\n", p);
				return 1;
			}
		}
	}
	printf("memext-demo: %.0f touches/s\n", (double)touches / (now() - t0));

	for (size_t p = 0; p < pages; p++) {
		fill(expect, p, gen[p]);
		if (memcmp(mem + p * PAGE, expect, PAGE) != 0) {
			fprintf(stderr, "memext-demo: page %zu is corrupt\n", p);
			return 1;
		}
	}
	printf("memext-demo: all %zu pages verified\n", pages);
	return 0;
}
