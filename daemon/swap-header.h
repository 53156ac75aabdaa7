/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The first page of a swap area, byte for byte as util-linux mkswap writes it and the kernel's
 * read_swap_header() reads it (include/linux/swap.h, util-linux include/swapheader.h):
 *
 *   bytes    0..1023  bootbits, zero (room for a disklabel)
 *         1024..1027  version = 1
 *         1028..1031  last_page: index of the last usable page; the area is last_page + 1 pages
 *         1032..1035  nr_badpages
 *         1036..1051  uuid, 16 bytes, binary
 *         1052..1067  volume_name, NUL-padded, not necessarily NUL-terminated
 *         1068..1535  padding (zero)
 *         1536..4085  badpages[nr_badpages]: page indices, 0 < page <= last_page
 *         4086..4095  magic "SWAPSPACE2"
 *
 * Integers are in the byte order of the machine that wrote them; a header from a machine of the
 * other order is recognised by its version (0x01000000) and swapped, as the kernel does.
 *
 * Pure functions: nothing here does I/O or logs. Errors come back as -errno plus one line in a
 * caller's buffer that names the file and the problem.
 */

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define SWAP_HEADER_SIZE 4096
#define SWAP_HEADER_VERSION 1
#define SWAP_MAGIC "SWAPSPACE2"
#define SWAP_MAGIC_LEN 10
#define SWAP_UUID_LEN 16
#define SWAP_LABEL_LEN 16
/* util-linux mkswap writes at most 15 bytes and a NUL; swaplabel may fill all 16. */
#define SWAP_LABEL_MAX 15
/* util-linux mkswap refuses smaller areas; the kernel needs at least one good page. */
#define SWAP_MIN_PAGES 10
#define SWAP_MAX_BADPAGES 637

union swap_header {
	struct {
		char reserved[SWAP_HEADER_SIZE - SWAP_MAGIC_LEN];
		char magic[SWAP_MAGIC_LEN]; /* SWAP_MAGIC */
	} magic;
	struct {
		char bootbits[1024];
		uint32_t version;
		uint32_t last_page; /* pages */
		uint32_t nr_badpages;
		unsigned char sws_uuid[SWAP_UUID_LEN];
		unsigned char sws_volume[SWAP_LABEL_LEN];
		uint32_t padding[117];
		/* The kernel declares [1]; the real size lets bounds checkers see it. */
		uint32_t badpages[SWAP_MAX_BADPAGES];
	} info;
};

static_assert(sizeof(union swap_header) == SWAP_HEADER_SIZE, "swap header is one 4 KiB page");
static_assert(offsetof(union swap_header, info.version) == 1024, "util-linux layout");
static_assert(offsetof(union swap_header, info.last_page) == 1028, "util-linux layout");
static_assert(offsetof(union swap_header, info.nr_badpages) == 1032, "util-linux layout");
static_assert(offsetof(union swap_header, info.sws_uuid) == 1036, "util-linux layout");
static_assert(offsetof(union swap_header, info.sws_volume) == 1052, "util-linux layout");
static_assert(offsetof(union swap_header, info.badpages) == 1536, "util-linux layout");
static_assert(offsetof(union swap_header, magic.magic) == 4086, "magic in the last 10 bytes");

/* The kernel's MAX_SWAP_BADPAGES: as many entries as fit between badpages[0] and the magic. */
#define SWAP_BADPAGES_ROOM \
	(offsetof(union swap_header, magic.magic) - offsetof(union swap_header, info.badpages))
static_assert(SWAP_BADPAGES_ROOM / sizeof(uint32_t) == SWAP_MAX_BADPAGES, "as the kernel's");

/* What a valid header says, in host byte order. */
struct swap_header_info {
	uint32_t last_page;   /* pages; slots 1..last_page hold data, slot 0 is this header */
	uint32_t nr_badpages; /* entries in badpages */
	uint32_t badpages[SWAP_MAX_BADPAGES];
	unsigned char uuid[SWAP_UUID_LEN];
	char label[SWAP_LABEL_LEN + 1]; /* NUL-terminated */
	int swapped;			/* 1: written on a machine of the other byte order */
};

/*
 * Fills hdr (SWAP_HEADER_SIZE bytes) for an area of nr_pages pages (header included), as
 * util-linux mkswap does: last_page = nr_pages - 1. label may be NULL; badpages may be NULL when
 * nr_badpages is 0. Returns 0, or -EINVAL (fewer than SWAP_MIN_PAGES pages, more than 2^32,
 * a label longer than SWAP_LABEL_MAX, a bad page out of range or too many of them) with err set.
 */
int swap_header_encode(union swap_header *hdr, uint64_t nr_pages, const unsigned char *uuid,
		       const char *label, const uint32_t *badpages, uint32_t nr_badpages, char *err,
		       size_t errlen);

/*
 * Checks the start of an area. buf holds its first len bytes (at least SWAP_HEADER_SIZE, or the
 * whole area if that is smaller; up to 64 KiB lets the message say which page size a foreign
 * header was made for). area_bytes is the size of the file or device. name is only used in the
 * message. Returns 0 and fills *ret, or with err set:
 *   -EINVAL  no SWAPSPACE2 magic (an old SWAP-SPACE area, a hibernation image, a header made
 *            for another page size, or no swap area at all), a version other than 1, last_page
 *            0, nr_badpages more than the header holds, a bad page 0 or past last_page, no good
 *            page left;
 *   -EFBIG   last_page beyond the end of the area (the file was truncated after mkswap).
 * *ret is untouched on failure.
 */
int swap_header_parse(const void *buf, size_t len, uint64_t area_bytes, const char *name,
		      struct swap_header_info *ret, char *err, size_t errlen);

/* "0123abcd-..." (36 characters) to 16 bytes. Returns 0 or -EINVAL. */
int swap_uuid_parse(const char *s, unsigned char uuid[SWAP_UUID_LEN]);
/* 16 bytes to 36 characters plus NUL; buf must hold 37 bytes. Returns buf. */
char *swap_uuid_format(const unsigned char uuid[SWAP_UUID_LEN], char *buf);
/* A random (version 4, RFC 4122 variant) UUID. Returns 0 or -errno from getrandom(). */
int swap_uuid_generate(unsigned char uuid[SWAP_UUID_LEN]);
