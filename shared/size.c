/* SPDX-License-Identifier: MIT */
#include "size.h"

#include <errno.h>
#include <stdio.h>

static int unit_shift(char c)
{
	switch (c) {
	case 'k': case 'K': return 10;
	case 'm': case 'M': return 20;
	case 'g': case 'G': return 30;
	case 't': case 'T': return 40;
	default: return -1;
	}
}

int parse_size(const char *s, uint64_t *ret_bytes)
{
	uint64_t whole = 0, frac = 0, frac_div = 1;
	const char *p = s;
	int shift = 0;

	if (!s)
		return -EINVAL;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		uint64_t digit = (uint64_t)(*p - '0');

		if (whole > UINT64_MAX / 10 || (whole == UINT64_MAX / 10 && digit > UINT64_MAX % 10))
			return -ERANGE;
		whole = whole * 10 + digit;
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		for (; *p >= '0' && *p <= '9'; p++) {
			/* Digits beyond 1e-9 cannot change a byte count of a sane size. */
			if (frac_div < 1000000000ULL) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				frac_div *= 10;
			}
		}
	}
	if (*p) {
		shift = unit_shift(*p);
		if (shift < 0) {
			if (*p != 'B' && *p != 'b')
				return -EINVAL;
			shift = 0;
			p++;
		} else {
			p++;
			if (*p == 'i' && p[1] == 'B')
				p += 2;
			else if (*p == 'B' || *p == 'b')
				p++;
		}
	}
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (*p)
		return -EINVAL;
	if (frac && shift == 0)
		return -EINVAL; /* "1.5" bytes is not a size */
	if (shift && whole > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret_bytes = (whole << shift) + ((frac << shift) / frac_div);
	return 0;
}

char *format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)bytes;
	unsigned u = 0;

	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}
