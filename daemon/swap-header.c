/* SPDX-License-Identifier: MIT */
/*
 * Encoding and checking of the SWAPSPACE2 header (layout in swap-header.h). The checks are the
 * kernel's read_swap_header() and util-linux swapon's, with one message each, so that a user who
 * points memextd at the wrong file learns which file and what is wrong with it.
 */
#include "swap-header.h"

#include <byteswap.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "macro.h"

static _printf_(3, 4) int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

int swap_header_encode(union swap_header *hdr, uint64_t nr_pages, const unsigned char *uuid,
		       const char *label, const uint32_t *badpages, uint32_t nr_badpages, char *err,
		       size_t errlen)
{
	size_t label_len = label ? strlen(label) : 0;

	if (nr_pages < SWAP_MIN_PAGES)
		return fail(err, errlen,
			    "a swap area needs at least %d pages (%lu KiB), not %" PRIu64,
			    SWAP_MIN_PAGES, SWAP_MIN_PAGES * PAGE_SIZE / 1024, nr_pages);
	/* last_page is 32 bits: 16 TiB of 4 KiB pages. */
	if (nr_pages - 1 > UINT32_MAX)
		return fail(err, errlen,
			    "a swap area holds at most %" PRIu64 " pages, not %" PRIu64,
			    (uint64_t)UINT32_MAX + 1, nr_pages);
	if (label_len > SWAP_LABEL_MAX)
		return fail(err, errlen, "label \"%s\" is %zu bytes, at most %d fit", label,
			    label_len, SWAP_LABEL_MAX);
	if (nr_badpages > SWAP_MAX_BADPAGES)
		return fail(err, errlen, "%" PRIu32 " bad pages, at most %zu fit in the header",
			    nr_badpages, (size_t)SWAP_MAX_BADPAGES);
	if (nr_badpages >= nr_pages - 1)
		return fail(err, errlen, "%" PRIu32 " bad pages leave no good page", nr_badpages);
	for (uint32_t i = 0; i < nr_badpages; i++)
		if (badpages[i] == 0 || badpages[i] > nr_pages - 1)
			return fail(err, errlen,
				    "bad page %" PRIu32 " is outside pages 1..%" PRIu64,
				    badpages[i], nr_pages - 1);

	memset(hdr, 0, sizeof(*hdr));
	hdr->info.version = SWAP_HEADER_VERSION;
	hdr->info.last_page = (uint32_t)(nr_pages - 1);
	hdr->info.nr_badpages = nr_badpages;
	if (uuid)
		memcpy(hdr->info.sws_uuid, uuid, SWAP_UUID_LEN);
	if (label_len)
		memcpy(hdr->info.sws_volume, label, label_len);
	if (nr_badpages)
		memcpy(hdr->info.badpages, badpages, nr_badpages * sizeof(uint32_t));
	memcpy(hdr->magic.magic, SWAP_MAGIC, SWAP_MAGIC_LEN);
	return 0;
}

/* Names what sits where SWAPSPACE2 should be, so the message says more than "bad magic". */
static int fail_magic(const unsigned char *buf, size_t len, const char *name, char *err,
		      size_t errlen)
{
	static const struct {
		const char *sig;
		const char *what;
	} known[] = {
		{"SWAP-SPACE", "an old version 0 swap area (SWAP-SPACE), which no kernel since 2.5 "
			       "uses; run mkswap on it again"},
		{"S1SUSPEND",
		 "a hibernation image (S1SUSPEND); resume from it or run mkswap again"},
		{"S2SUSPEND",
		 "a hibernation image (S2SUSPEND); resume from it or run mkswap again"},
		{"ULSUSPEND",
		 "a hibernation image (ULSUSPEND); resume from it or run mkswap again"},
		{"LINHIB0001",
		 "a hibernation image (LINHIB0001); resume from it or run mkswap again"},
	};
	const char *m = (const char *)buf + SWAP_HEADER_SIZE - SWAP_MAGIC_LEN;

	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (!memcmp(m, known[i].sig, strlen(known[i].sig)))
			return fail(err, errlen, "%s: holds %s", name, known[i].what);

	/* mkswap -p writes the magic at the end of a page of that size. */
	for (size_t ps = 2 * SWAP_HEADER_SIZE; ps <= 65536 && ps <= len; ps *= 2)
		if (!memcmp(buf + ps - SWAP_MAGIC_LEN, SWAP_MAGIC, SWAP_MAGIC_LEN))
			return fail(
				err, errlen,
				"%s: swap header made for a page size of %zu bytes, this system "
				"uses %lu; run mkswap on it again",
				name, ps, PAGE_SIZE);

	return fail(err, errlen,
		    "%s: not a swap area: no \"" SWAP_MAGIC "\" signature at byte %d (run mkswap "
		    "on it first)",
		    name, SWAP_HEADER_SIZE - SWAP_MAGIC_LEN);
}

int swap_header_parse(const void *buf, size_t len, uint64_t area_bytes, const char *name,
		      struct swap_header_info *ret, char *err, size_t errlen)
{
	const union swap_header *hdr = buf;
	uint32_t version, last_page, nr_badpages;
	uint64_t area_pages = area_bytes / PAGE_SIZE;
	bool swapped = false;

	if (len < SWAP_HEADER_SIZE || area_bytes < SWAP_HEADER_SIZE)
		return fail(err, errlen, "%s: %" PRIu64 " bytes, too small to hold a swap header",
			    name, area_bytes);
	if (memcmp(hdr->magic.magic, SWAP_MAGIC, SWAP_MAGIC_LEN))
		return fail_magic(buf, len, name, err, errlen);

	version = hdr->info.version;
	last_page = hdr->info.last_page;
	nr_badpages = hdr->info.nr_badpages;
	if (version != SWAP_HEADER_VERSION && bswap_32(version) == SWAP_HEADER_VERSION) {
		swapped = true;
		version = SWAP_HEADER_VERSION;
		last_page = bswap_32(last_page);
		nr_badpages = bswap_32(nr_badpages);
	}
	if (version != SWAP_HEADER_VERSION)
		return fail(err, errlen,
			    "%s: swap header version %" PRIu32 ", only version %d is supported",
			    name, version, SWAP_HEADER_VERSION);
	if (last_page == 0)
		return fail(err, errlen,
			    "%s: last_page is 0, the area has no page besides its header", name);
	if ((uint64_t)last_page >= area_pages) {
		fail(err, errlen,
		     "%s: last_page %" PRIu32 " is beyond the end of the area (%" PRIu64
		     " bytes = %" PRIu64 " pages): truncated after mkswap?",
		     name, last_page, area_bytes, area_pages);
		return -EFBIG;
	}
	if (nr_badpages > SWAP_MAX_BADPAGES)
		return fail(err, errlen,
			    "%s: nr_badpages %" PRIu32 " does not fit in the header (at most %zu)",
			    name, nr_badpages, (size_t)SWAP_MAX_BADPAGES);
	for (uint32_t i = 0; i < nr_badpages; i++) {
		uint32_t b = swapped ? bswap_32(hdr->info.badpages[i]) : hdr->info.badpages[i];

		if (b == 0 || b > last_page)
			return fail(err, errlen,
				    "%s: bad page %" PRIu32 " (entry %" PRIu32
				    ") is outside the area (pages 1..%" PRIu32 ")",
				    name, b, i, last_page);
	}
	if (nr_badpages >= last_page)
		return fail(err, errlen, "%s: all %" PRIu32 " pages are marked bad", name,
			    last_page);

	ret->last_page = last_page;
	ret->nr_badpages = nr_badpages;
	for (uint32_t i = 0; i < nr_badpages; i++)
		ret->badpages[i] =
			swapped ? bswap_32(hdr->info.badpages[i]) : hdr->info.badpages[i];
	memcpy(ret->uuid, hdr->info.sws_uuid, SWAP_UUID_LEN);
	memcpy(ret->label, hdr->info.sws_volume, SWAP_LABEL_LEN);
	ret->label[SWAP_LABEL_LEN] = '\0';
	ret->swapped = swapped;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int swap_uuid_parse(const char *s, unsigned char uuid[SWAP_UUID_LEN])
{
	unsigned char out[SWAP_UUID_LEN];
	size_t n = 0;

	if (strlen(s) != 36)
		return -EINVAL;
	for (size_t i = 0; i < 36; i++) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -EINVAL;
			continue;
		}
		hi = hexval(s[i]);
		lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[n++] = (unsigned char)(hi << 4 | lo);
		i++;
	}
	memcpy(uuid, out, SWAP_UUID_LEN);
	return 0;
}

char *swap_uuid_format(const unsigned char uuid[SWAP_UUID_LEN], char *buf)
{
	static const char hex[] = "0123456789abcdef";
	char *p = buf;

	for (size_t i = 0; i < SWAP_UUID_LEN; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[uuid[i] >> 4];
		*p++ = hex[uuid[i] & 15];
	}
	*p = '\0';
	return buf;
}

int swap_uuid_generate(unsigned char uuid[SWAP_UUID_LEN])
{
	size_t done = 0;

	while (done < SWAP_UUID_LEN) {
		ssize_t n = getrandom(uuid + done, SWAP_UUID_LEN - done, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		done += (size_t)n;
	}
	uuid[6] = (uuid[6] & 0x0f) | 0x40; /* version 4 */
	uuid[8] = (uuid[8] & 0x3f) | 0x80; /* RFC 4122 variant */
	return 0;
}
