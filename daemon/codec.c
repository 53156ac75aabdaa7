/* SPDX-License-Identifier: MIT */
#include "codec.h"

#include <string.h>

#include "macro.h"

static const struct codec_ops *const codecs[] = {
	&codec_lz4_ops, /* first: the default */
	&codec_zstd_ops,
};

const struct codec_ops *codec_find(const char *name)
{
	if (!name || !*name)
		return codecs[0];
	for (size_t i = 0; i < ARRAY_SIZE(codecs); i++)
		if (strcmp(codecs[i]->name, name) == 0)
			return codecs[i];
	return NULL;
}
