/* SPDX-License-Identifier: MIT */
#include "codec.h"

#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <stdbool.h>

/*
 * One stream state per thread. LZ4_compress_default() clears its 16 KiB state on every call;
 * a state kept per thread and reset with LZ4_resetStream_fast() skips that. After the reset the
 * stream has no dictionary, so every block decodes on its own with LZ4_decompress_safe().
 */
static _Thread_local LZ4_stream_t lz4_state;
static _Thread_local bool lz4_state_ready;

static int lz4_compress(const void *src, size_t src_len, void *dst, size_t dst_cap, int level)
{
	int n;

	(void)level;
	if (src_len > LZ4_MAX_INPUT_SIZE || dst_cap == 0)
		return -E2BIG;
	if (dst_cap > INT_MAX)
		dst_cap = INT_MAX;
	if (!lz4_state_ready) {
		LZ4_initStream(&lz4_state, sizeof(lz4_state));
		lz4_state_ready = true;
	} else {
		LZ4_resetStream_fast(&lz4_state);
	}
	n = LZ4_compress_fast_continue(&lz4_state, src, dst, (int)src_len, (int)dst_cap, 1);
	/* lz4 reports "does not fit" and every other failure alike, as 0. */
	return n > 0 ? n : -E2BIG;
}

static int lz4_decompress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
	if (src_len == 0 || src_len > INT_MAX || dst_len > INT_MAX)
		return -EBADMSG;
	/* _safe never reads past src_len nor writes past dst_len, whatever the input. */
	if (LZ4_decompress_safe(src, dst, (int)src_len, (int)dst_len) != (int)dst_len)
		return -EBADMSG;
	return 0;
}

const struct codec_ops codec_lz4_ops = {
	.name = "lz4",
	.level_min = 1,
	.level_max = 1,
	.level_default = 1,
	.compress = lz4_compress,
	.decompress = lz4_decompress,
};
