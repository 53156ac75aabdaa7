/* SPDX-License-Identifier: MIT */
/* Store round trip (the pool's own tests extend this). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "store.h"

int main(void)
{
	struct store_config cfg = {.compressor = "lz4"};
	struct store *s;
	unsigned char page[PAGE_SIZE], out[PAGE_SIZE];
	uint64_t h[3];
	struct store_stats st;

	assert(store_new(&cfg, &s) == 0);
	for (size_t i = 0; i < PAGE_SIZE; i++)
		page[i] = (unsigned char)("abcd"[(i * 7) % 4] + (i % 13 == 0));
	assert(store_save(s, page, &h[0]) == 0);
	memset(out, 0, sizeof(out));
	assert(store_load(s, h[0], out) == 0 && memcmp(out, page, PAGE_SIZE) == 0);
	memset(page, 0x5a, sizeof(page));
	assert(store_save(s, page, &h[1]) == 0);
	assert(store_load(s, h[1], out) == 0 && memcmp(out, page, PAGE_SIZE) == 0);
	srand(1);
	for (size_t i = 0; i < PAGE_SIZE; i++)
		page[i] = (unsigned char)rand();
	assert(store_save(s, page, &h[2]) == 0);
	assert(store_load(s, h[2], out) == 0 && memcmp(out, page, PAGE_SIZE) == 0);
	store_get_stats(s, &st);
	assert(st.stored_pages == 3 && st.same_pages == 1 && st.huge_pages == 1);
	assert(st.orig_data_size == 3 * PAGE_SIZE);
	for (int i = 0; i < 3; i++)
		store_drop(s, h[i]);
	store_get_stats(s, &st);
	assert(st.stored_pages == 0 && st.orig_data_size == 0 && st.compr_data_size == 0);
	store_free(s);
	printf("store: all checks passed\n");
	return 0;
}
