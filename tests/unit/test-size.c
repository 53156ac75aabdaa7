/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "size.h"

static void ok(const char *s, uint64_t want)
{
	uint64_t v = 12345;
	int r = parse_size(s, &v);

	if (r != 0 || v != want) {
		fprintf(stderr, "parse_size(\"%s\") = %d, %llu; want %llu\n", s, r,
			(unsigned long long)v, (unsigned long long)want);
		assert(0);
	}
}

static void bad(const char *s, int want_err)
{
	uint64_t v = 12345;
	int r = parse_size(s, &v);

	if (r != want_err || v != 12345) {
		fprintf(stderr, "parse_size(\"%s\") = %d (v %llu); want %d, v untouched\n", s, r,
			(unsigned long long)v, want_err);
		assert(0);
	}
}

int main(void)
{
	char buf[32];

	ok("0", 0);
	ok("4096", 4096);
	ok("64K", 64 << 10);
	ok("64k", 64 << 10);
	ok("64M", 64ULL << 20);
	ok("64MiB", 64ULL << 20);
	ok("64MB", 64ULL << 20);
	ok("1G", 1ULL << 30);
	ok("1.5G", 3ULL << 29);
	ok("2T", 2ULL << 40);
	ok(" 8M\n", 8ULL << 20);
	ok("100B", 100);
	ok("18446744073709551615", UINT64_MAX);
	bad("", -EINVAL);
	bad("M", -EINVAL);
	bad("-1", -EINVAL);
	bad("12X", -EINVAL);
	bad("1.5", -EINVAL);
	bad("1.G", -EINVAL);
	bad("64M extra", -EINVAL);
	bad("18446744073709551616", -ERANGE);
	bad("16777216T", -ERANGE);
	bad(NULL, -EINVAL);

	assert(strcmp(format_size(0, buf, sizeof(buf)), "0 B") == 0);
	assert(strcmp(format_size(1536, buf, sizeof(buf)), "1.5 KiB") == 0);
	assert(strcmp(format_size(64ULL << 20, buf, sizeof(buf)), "64.0 MiB") == 0);
	printf("size: all checks passed\n");
	return 0;
}
