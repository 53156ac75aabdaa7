/* SPDX-License-Identifier: MIT */
/*
 * sd-holder: the long-running application of the systemd test (nspawn-memextd.sh).
 *
 *   sd-holder SIZE
 *
 * Fills SIZE of text-like pages (each names its page and generation), then runs verification
 * passes (every page read and checked, one page in eight rewritten) with a pause of 200 ms
 * between them, so that memextd keeps evicting and faulting its pages back.
 *   SIGUSR1: stop touching memory and print "idle" (the test stops memextd now, and checks
 *            that every page came back resident while nothing touched it);
 *   SIGUSR2: check every page, rewrite every page, check again, print "all N pages verified"
 *            and exit 0.
 * Exit 1 on the first page that does not hold what was written (named on stderr), 2 on a
 * usage or system error.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE 4096

static unsigned char *mem;
static uint32_t *gen;
static size_t pages;

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Page p at generation g: a header naming both, then words (compresses about 3x). */
static void fill(unsigned char *page, uint64_t p, uint32_t g)
{
	static const char *const words[] = {"memory ", "page ", "fault ", "swap ", "zram ",
					    "compress ", "kernel ", "daemon ", "budget ", "systemd "};
	uint64_t s = mix(p * 1000003 + g);
	size_t off = 16;

	memcpy(page, "MXSD", 4);
	memcpy(page + 4, &g, 4);
	memcpy(page + 8, &p, 8);
	while (off < PAGE) {
		const char *w;
		size_t n;

		s = mix(s);
		w = words[s % 10];
		n = strlen(w);
		if (off + n > PAGE)
			n = PAGE - off;
		memcpy(page + off, w, n);
		off += n;
	}
}

static void check(size_t p, const char *when)
{
	unsigned char expect[PAGE];
	const unsigned char *got = mem + p * PAGE;

	fill(expect, p, gen[p]);
	if (memcmp(got, expect, PAGE) == 0)
		return;
	uint64_t hp;
	uint32_t hg;
	size_t nz = 0;

	memcpy(&hg, got + 4, 4);
	memcpy(&hp, got + 8, 8);
	for (size_t i = 0; i < PAGE; i++)
		nz += got[i] != 0;
	fprintf(stderr,
		"sd-holder: MISMATCH %s: page %zu (gen %" PRIu32 ") holds %s page %" PRIu64
		" gen %" PRIu32 " (%zu non-zero bytes)\n",
		when, p, gen[p], memcmp(got, "MXSD", 4) ? "no header:" : "header of", hp, hg, nz);
	exit(1);
}

int main(int argc, char **argv)
{
	struct timespec pause_ts = {0, 200 * 1000 * 1000};
	uint64_t bytes;
	char *end;
	sigset_t set;
	int sig;

	if (argc != 2) {
		fprintf(stderr, "usage: sd-holder SIZE_MIB\n");
		return 2;
	}
	bytes = strtoull(argv[1], &end, 10) << 20;
	if (*end && strcmp(end, "M")) {
		fprintf(stderr, "sd-holder: bad size '%s' (MiB, e.g. 128M)\n", argv[1]);
		return 2;
	}
	pages = bytes / PAGE;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	mem = malloc(pages * PAGE);
	gen = calloc(pages, sizeof(*gen));
	if (!mem || !gen) {
		fprintf(stderr, "sd-holder: out of memory\n");
		return 2;
	}
	for (size_t p = 0; p < pages; p++)
		fill(mem + p * PAGE, p, 0);
	printf("sd-holder: filled %zu pages\n", pages);

	for (unsigned pass = 1;; pass++) {
		for (size_t p = 0; p < pages; p++) {
			check(p, "in a pass");
			if ((p + pass) % 8 == 0)
				fill(mem + p * PAGE, p, ++gen[p]);
		}
		printf("sd-holder: pass %u ok\n", pass);
		sig = sigtimedwait(&set, NULL, &pause_ts);
		if (sig == SIGUSR1)
			break;
		if (sig == SIGUSR2) {
			fprintf(stderr, "sd-holder: SIGUSR2 before SIGUSR1\n");
			return 2;
		}
		if (sig < 0 && errno != EAGAIN && errno != EINTR) {
			perror("sd-holder: sigtimedwait");
			return 2;
		}
	}
	printf("sd-holder: idle\n");
	do
		sig = sigwaitinfo(&set, NULL);
	while (sig != SIGUSR2);

	for (size_t p = 0; p < pages; p++)
		check(p, "after the stop");
	for (size_t p = 0; p < pages; p++)
		fill(mem + p * PAGE, p, ++gen[p]);
	for (size_t p = 0; p < pages; p++)
		check(p, "after the rewrite");
	printf("sd-holder: all %zu pages verified\n", pages);
	return 0;
}
