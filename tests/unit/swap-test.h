/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Helpers of the swap area tests: checks that stop the test with the file and line, a scratch
 * directory removed at exit, and running util-linux tools with their output captured.
 * Exit codes: 0 passed, 1 failed, 77 skipped (a tool or kernel feature is missing).
 */

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_SKIP 77

#define CHECK(cond)                                                                              \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                                 \
		}                                                                                \
	} while (0)

#define CHECK_EQ(a, b)                                                                        \
	do {                                                                                  \
		long long _a = (long long)(a), _b = (long long)(b);                           \
		if (_a != _b) {                                                               \
			fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, \
				__LINE__, #a, _a, #b, _b);                                    \
			exit(1);                                                              \
		}                                                                             \
	} while (0)

/* The message must name the file and contain the phrase that says what is wrong. */
#define CHECK_MSG(err, file, phrase)                                                      \
	do {                                                                              \
		if (!strstr((err), (file)) || !strstr((err), (phrase))) {                 \
			fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\" or \"%s\"\n", \
				__FILE__, __LINE__, (err), (file), (phrase));             \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

static char swap_test_dir[256];

static int swap_test_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void swap_test_cleanup_dir(void)
{
	if (swap_test_dir[0])
		nftw(swap_test_dir, swap_test_rm, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* A fresh directory on the disk (TMPDIR or /var/tmp, not a tmpfs when avoidable). */
static inline const char *swap_test_mkdtemp(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(swap_test_dir, sizeof(swap_test_dir), "%s/memext-swap-XXXXXX",
		 base && *base ? base : "/var/tmp");
	if (!mkdtemp(swap_test_dir)) {
		perror("mkdtemp");
		exit(1);
	}
	atexit(swap_test_cleanup_dir);
	return swap_test_dir;
}

static inline _Bool swap_test_have(const char *tool)
{
	static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
	char path[256];

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dirs[i], tool);
		if (access(path, X_OK) == 0)
			return 1;
	}
	return 0;
}

/* Runs a shell command; its stdout goes to out (NUL-terminated). Returns the exit status. */
static inline __attribute__((format(printf, 3, 4))) int swap_test_run(char *out, size_t outlen,
								      const char *fmt, ...)
{
	char cmd[1024];
	size_t n = 0;
	va_list ap;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (out && outlen) {
		n = fread(out, 1, outlen - 1, p);
		out[n] = '\0';
	} else {
		char sink[256];

		while (fread(sink, 1, sizeof(sink), p) > 0)
			;
	}
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline void swap_test_fill(void *page, uint64_t seed)
{
	unsigned char *p = page;
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;

	/* memcpy: the tests hand in pages that are not aligned on purpose. */
	for (size_t i = 0; i < 4096; i += sizeof(x)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, sizeof(x));
	}
}
