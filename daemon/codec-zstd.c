/* SPDX-License-Identifier: MIT */
#include "codec.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <zstd.h>
#include <zstd_errors.h>

/*
 * A compression and a decompression context per thread, made on first use. A pthread key's
 * destructor frees them when the thread exits; _Thread_local pointers alone would leak them.
 */
struct zstd_ctx {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	int cctx_level; /* level the cctx is set up for; 0: not yet */
};

static pthread_key_t zstd_key;
static pthread_once_t zstd_key_once = PTHREAD_ONCE_INIT;
static _Thread_local struct zstd_ctx zstd_tls;
static _Thread_local bool zstd_tls_registered;

static void zstd_ctx_free(void *p)
{
	struct zstd_ctx *c = p;

	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	*c = (struct zstd_ctx){};
}

static void zstd_key_create(void)
{
	/* Failure leaves the key unusable: contexts then live until the process exits. */
	(void)pthread_key_create(&zstd_key, zstd_ctx_free);
}

static struct zstd_ctx *zstd_ctx_get(void)
{
	if (!zstd_tls_registered) {
		pthread_once(&zstd_key_once, zstd_key_create);
		(void)pthread_setspecific(zstd_key, &zstd_tls);
		zstd_tls_registered = true;
	}
	return &zstd_tls;
}

static int zstd_compress(const void *src, size_t src_len, void *dst, size_t dst_cap, int level)
{
	struct zstd_ctx *c = zstd_ctx_get();
	size_t n;

	if (!c->cctx) {
		c->cctx = ZSTD_createCCtx();
		if (!c->cctx)
			return -ENOMEM;
		/* Every page is its own frame and we keep its length: no need for either field. */
		(void)ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_contentSizeFlag, 0);
		(void)ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0);
		(void)ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_dictIDFlag, 0);
	}
	if (c->cctx_level != level) {
		if (ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level)))
			return -EINVAL;
		c->cctx_level = level;
	}
	n = ZSTD_compress2(c->cctx, dst, dst_cap, src, src_len);
	if (ZSTD_isError(n)) {
		if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
			return -ENOMEM;
		/* dstSize_tooSmall, in practice; a failed frame is in any case not to be kept. */
		return -E2BIG;
	}
	return n > 0 ? (int)n : -E2BIG;
}

static int zstd_decompress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
	struct zstd_ctx *c = zstd_ctx_get();
	size_t n;

	if (!c->dctx) {
		c->dctx = ZSTD_createDCtx();
		if (!c->dctx)
			return -ENOMEM;
	}
	/* Bounded by dst_len; a frame that claims more, or less, or trails bytes is an error. */
	n = ZSTD_decompressDCtx(c->dctx, dst, dst_len, src, src_len);
	if (ZSTD_isError(n) || n != dst_len)
		return -EBADMSG;
	return 0;
}

const struct codec_ops codec_zstd_ops = {
	.name = "zstd",
	.level_min = 1,
	.level_max = 19,
	.level_default = 1,
	.compress = zstd_compress,
	.decompress = zstd_decompress,
};
