/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Compressors behind one ops table, as zram's zcomp: one file per codec (codec-lz4.c,
 * codec-zstd.c), each a const struct codec_ops. Contexts are per thread, made on a thread's
 * first call and freed when it exits, so fault and reclaim threads never share or lock one.
 */

#include <stddef.h>

struct codec_ops {
	const char *name;
	int level_min, level_max, level_default; /* the codec ignores level where min == max */

	/*
	 * Compresses src_len bytes of src into dst, which holds dst_cap bytes. Returns the
	 * compressed length (> 0), -E2BIG when it would not fit in dst_cap (the caller then keeps
	 * the data raw: a small dst_cap makes incompressible data fail early), -ENOMEM.
	 */
	int (*compress)(const void *src, size_t src_len, void *dst, size_t dst_cap, int level);

	/*
	 * Decompresses exactly src_len bytes of src into exactly dst_len bytes of dst. Never reads
	 * or writes outside the two buffers, whatever src holds: src is read back from memory that
	 * is not trusted. Returns 0, -EBADMSG when src is not one stream that decodes to exactly
	 * dst_len bytes (dst is then undefined), -ENOMEM.
	 */
	int (*decompress)(const void *src, size_t src_len, void *dst, size_t dst_len);
};

extern const struct codec_ops codec_lz4_ops;
extern const struct codec_ops codec_zstd_ops;

/* Returns the codec called name ("lz4", "zstd"), or NULL. NULL or "" means the default, lz4. */
const struct codec_ops *codec_find(const char *name);
