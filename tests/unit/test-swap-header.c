/* SPDX-License-Identifier: MIT */
/*
 * The SWAPSPACE2 header without any file: encoding, parsing, every malformed case with its
 * message, a header from a machine of the other byte order, UUID strings. The comparison with
 * util-linux's own mkswap is in test-mkswap.c.
 */
#include <byteswap.h>
#include <stddef.h>

#include "macro.h"
#include "swap-header.h"
#include "swap-test.h"

#define NAME "/srv/area.swap"
#define MiB (1024ULL * 1024)

static void test_encode_layout(void)
{
	static const unsigned char uuid[16] = {1, 2,  3,  4,  5,  6,  7,  8,
					       9, 10, 11, 12, 13, 14, 15, 16};
	const uint32_t bad[] = {5, 77, 16383};
	union swap_header h;
	const unsigned char *b = (const unsigned char *)&h;
	char err[256] = "";
	uint32_t v;

	CHECK_EQ(swap_header_encode(&h, 16384, uuid, "fifteen-chars-x", bad, 3, err, sizeof(err)),
		 0);
	for (size_t i = 0; i < 1024; i++)
		CHECK_EQ(b[i], 0);
	memcpy(&v, b + 1024, 4);
	CHECK_EQ(v, 1);
	memcpy(&v, b + 1028, 4);
	CHECK_EQ(v, 16383);
	memcpy(&v, b + 1032, 4);
	CHECK_EQ(v, 3);
	CHECK(!memcmp(b + 1036, uuid, 16));
	/* 15 bytes and a NUL at most, as util-linux mkswap writes it. */
	CHECK(!memcmp(b + 1052, "fifteen-chars-x", 16));
	for (size_t i = 1068; i < 1536; i++)
		CHECK_EQ(b[i], 0);
	memcpy(&v, b + 1536, 4);
	CHECK_EQ(v, 5);
	memcpy(&v, b + 1544, 4);
	CHECK_EQ(v, 16383);
	for (size_t i = 1548; i < 4086; i++)
		CHECK_EQ(b[i], 0);
	CHECK(!memcmp(b + 4086, "SWAPSPACE2", 10));
}

static void test_encode_errors(void)
{
	uint32_t bad[SWAP_MAX_BADPAGES + 1];
	union swap_header h;
	char err[256];

	for (uint32_t i = 0; i < ARRAY_SIZE(bad); i++)
		bad[i] = i + 1;
	CHECK_EQ(swap_header_encode(&h, 9, NULL, NULL, NULL, 0, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "at least 10 pages"));
	CHECK_EQ(swap_header_encode(&h, 10, NULL, NULL, NULL, 0, err, sizeof(err)), 0);
	CHECK_EQ(swap_header_encode(&h, 100, NULL, "sixteen-chars-xx", NULL, 0, err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "at most 15"));
	CHECK_EQ(swap_header_encode(&h, 4096, NULL, NULL, bad, SWAP_MAX_BADPAGES + 1, err,
				    sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "at most 637"));
	CHECK_EQ(swap_header_encode(&h, 4096, NULL, NULL, bad, SWAP_MAX_BADPAGES, err, sizeof(err)),
		 0);
	bad[0] = 0;
	CHECK_EQ(swap_header_encode(&h, 100, NULL, NULL, bad, 1, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "outside"));
	bad[0] = 100;
	CHECK_EQ(swap_header_encode(&h, 100, NULL, NULL, bad, 1, err, sizeof(err)), -EINVAL);
	bad[0] = 99;
	CHECK_EQ(swap_header_encode(&h, 100, NULL, NULL, bad, 1, err, sizeof(err)), 0);
	for (uint32_t i = 0; i < 9; i++)
		bad[i] = i + 1;
	CHECK_EQ(swap_header_encode(&h, 10, NULL, NULL, bad, 9, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "no good page"));
	CHECK_EQ(swap_header_encode(&h, (1ULL << 32) + 2, NULL, NULL, NULL, 0, err, sizeof(err)),
		 -EINVAL);
}

static void test_roundtrip(void)
{
	static const unsigned char uuid[16] = {0xde, 0xad, 0xbe, 0xef, [15] = 0x42};
	const uint32_t bad[] = {1, 2, 1000};
	struct swap_header_info info, untouched;
	union swap_header h;
	char err[256];

	CHECK_EQ(swap_header_encode(&h, 4096, uuid, "memext", bad, 3, err, sizeof(err)), 0);
	CHECK_EQ(swap_header_parse(&h, sizeof(h), 16 * MiB, NAME, &info, err, sizeof(err)), 0);
	CHECK_EQ(info.last_page, 4095);
	CHECK_EQ(info.nr_badpages, 3);
	CHECK_EQ(info.badpages[2], 1000);
	CHECK(!memcmp(info.uuid, uuid, 16));
	CHECK(!strcmp(info.label, "memext"));
	CHECK_EQ(info.swapped, 0);

	/* A larger file than the header says is fine: only last_page + 1 pages are used. */
	CHECK_EQ(swap_header_parse(&h, sizeof(h), 1024 * MiB + 123, NAME, &info, err, sizeof(err)),
		 0);

	/* *ret is untouched on failure. */
	memset(&untouched, 0x5a, sizeof(untouched));
	info = untouched;
	CHECK(swap_header_parse(&h, sizeof(h), 8 * MiB, NAME, &info, err, sizeof(err)) < 0);
	CHECK(!memcmp(&info, &untouched, sizeof(info)));

	/* A 16-byte label (swaplabel writes one) comes back NUL-terminated. */
	CHECK_EQ(swap_header_encode(&h, 4096, uuid, NULL, NULL, 0, err, sizeof(err)), 0);
	memcpy(h.info.sws_volume, "0123456789abcdef", 16);
	CHECK_EQ(swap_header_parse(&h, sizeof(h), 16 * MiB, NAME, &info, err, sizeof(err)), 0);
	CHECK(!strcmp(info.label, "0123456789abcdef"));
}

static void test_other_byte_order(void)
{
	const uint32_t bad[] = {7, 9};
	struct swap_header_info info;
	union swap_header h;
	char err[256];

	CHECK_EQ(swap_header_encode(&h, 1000, NULL, NULL, bad, 2, err, sizeof(err)), 0);
	h.info.version = bswap_32(h.info.version);
	h.info.last_page = bswap_32(h.info.last_page);
	h.info.nr_badpages = bswap_32(h.info.nr_badpages);
	h.info.badpages[0] = bswap_32(h.info.badpages[0]);
	h.info.badpages[1] = bswap_32(h.info.badpages[1]);
	CHECK_EQ(swap_header_parse(&h, sizeof(h), 1000 * 4096, NAME, &info, err, sizeof(err)), 0);
	CHECK_EQ(info.swapped, 1);
	CHECK_EQ(info.last_page, 999);
	CHECK_EQ(info.nr_badpages, 2);
	CHECK_EQ(info.badpages[1], 9);
}

/* Parses h as an area of area_bytes and expects error r with a message naming NAME and phrase. */
static void expect_bad(const void *buf, size_t len, uint64_t area_bytes, int r, const char *phrase)
{
	struct swap_header_info info;
	char err[512] = "";

	CHECK_EQ(swap_header_parse(buf, len, area_bytes, NAME, &info, err, sizeof(err)), r);
	CHECK_MSG(err, NAME, phrase);
}

static void test_malformed(void)
{
	static unsigned char big[65536];
	union swap_header h, good;
	char err[256];

	CHECK_EQ(swap_header_encode(&good, 2560, NULL, NULL, NULL, 0, err, sizeof(err)), 0);

	/* Not a swap area at all. */
	memset(&h, 0, sizeof(h));
	expect_bad(&h, sizeof(h), 10 * MiB, -EINVAL, "no \"SWAPSPACE2\" signature");

	h = good;
	memcpy(h.magic.magic, "SWAP-SPACE", 10);
	expect_bad(&h, sizeof(h), 10 * MiB, -EINVAL, "version 0 swap area");

	h = good;
	memcpy(h.magic.magic, "S1SUSPEND", 10);
	expect_bad(&h, sizeof(h), 10 * MiB, -EINVAL, "hibernation image");

	/* A header made for 64 KiB pages (mkswap -p 65536 on arm64 or ppc64). */
	memset(big, 0, sizeof(big));
	memcpy(big + 1024, &good.info.version, 12);
	memcpy(big + 65536 - 10, "SWAPSPACE2", 10);
	expect_bad(big, sizeof(big), 10 * MiB, -EINVAL, "page size of 65536 bytes");
	/* The same with only the first page at hand: still no SWAPSPACE2 where it belongs. */
	expect_bad(big, 4096, 10 * MiB, -EINVAL, "no \"SWAPSPACE2\"");

	h = good;
	h.info.version = 2;
	expect_bad(&h, sizeof(h), 10 * MiB, -EINVAL, "version 2, only version 1");

	/* last_page 2559 needs 2560 pages = 10 MiB. */
	h = good;
	expect_bad(&h, sizeof(h), 10 * MiB - 4096, -EFBIG, "beyond the end");
	expect_bad(&h, sizeof(h), 10 * MiB - 1, -EFBIG, "last_page 2559");
	h.info.last_page = UINT32_MAX;
	expect_bad(&h, sizeof(h), 10 * MiB, -EFBIG, "beyond the end");

	h = good;
	h.info.last_page = 0;
	expect_bad(&h, sizeof(h), 10 * MiB, -EINVAL, "last_page is 0");

	h = good;
	h.info.nr_badpages = SWAP_MAX_BADPAGES + 1;
	expect_bad(&h, sizeof(h), 10 * MiB, -EINVAL, "does not fit in the header");
	h.info.nr_badpages = UINT32_MAX;
	expect_bad(&h, sizeof(h), 10 * MiB, -EINVAL, "does not fit in the header");

	h = good;
	h.info.nr_badpages = 2;
	h.info.badpages[0] = 3;
	h.info.badpages[1] = 0;
	expect_bad(&h, sizeof(h), 10 * MiB, -EINVAL, "bad page 0 (entry 1) is outside");
	h.info.badpages[1] = 2560;
	expect_bad(&h, sizeof(h), 10 * MiB, -EINVAL, "bad page 2560 (entry 1) is outside");

	h = good;
	h.info.last_page = 2;
	h.info.nr_badpages = 2;
	h.info.badpages[0] = 1;
	h.info.badpages[1] = 2;
	expect_bad(&h, sizeof(h), 10 * MiB, -EINVAL, "all 2 pages are marked bad");

	expect_bad(&good, 100, 100, -EINVAL, "too small");
	expect_bad(&good, sizeof(good), 4095, -EINVAL, "too small");
}

static void test_uuid(void)
{
	unsigned char u[16], v[16];
	char s[37];

	CHECK_EQ(swap_uuid_parse("0123abcd-0000-4000-8000-00000000000F", u), 0);
	CHECK(!strcmp(swap_uuid_format(u, s), "0123abcd-0000-4000-8000-00000000000f"));
	CHECK_EQ(u[0], 0x01);
	CHECK_EQ(u[15], 0x0f);
	CHECK_EQ(swap_uuid_parse("0123abcd-0000-4000-8000-00000000000", u), -EINVAL);
	CHECK_EQ(swap_uuid_parse("0123abcd00000-4000-8000-00000000000f", u), -EINVAL);
	CHECK_EQ(swap_uuid_parse("0123abcd-0000-4000-8000-00000000000g", u), -EINVAL);
	CHECK_EQ(swap_uuid_generate(u), 0);
	CHECK_EQ(swap_uuid_generate(v), 0);
	CHECK(memcmp(u, v, 16));
	CHECK_EQ(u[6] >> 4, 4);
	CHECK_EQ(u[8] >> 6, 2);
	CHECK_EQ(swap_uuid_parse(swap_uuid_format(u, s), v), 0);
	CHECK(!memcmp(u, v, 16));
}

int main(void)
{
	test_encode_layout();
	test_encode_errors();
	test_roundtrip();
	test_other_byte_order();
	test_malformed();
	test_uuid();
	printf("test-swap-header: ok\n");
	return 0;
}
