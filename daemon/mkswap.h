/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Formatting a swap area, as util-linux mkswap does: `memextctl mkswap FILE --size 4G
 * [--label L] [--uuid U]`. The result is a file the kernel's swapon, blkid and swaplabel accept
 * and that swapfile_swapon() opens.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "swap-header.h"

/* memextd's swap state file with the default configuration: beside its socket. */
#define MKSWAP_DEFAULT_STATE "/run/memext/memextd.state"

struct mkswap_options {
	uint64_t size_bytes;	   /* 0: the whole file or device; needed to create a file */
	const char *label;	   /* NULL: none; at most SWAP_LABEL_MAX bytes */
	const unsigned char *uuid; /* NULL: a random one */
	const uint32_t *badpages;  /* pages to mark bad, as mkswap -c would find them */
	uint32_t nr_badpages;
	/* memextd's swap state file (swapstate.h), NULL: not looked at. An existing swap area is
	 * not formatted while it names processes whose pages no running memextd holds (the
	 * daemon died and has not started again), unless force. */
	const char *state_path;
	bool force;
};

struct mkswap_result {
	uint64_t nr_pages; /* the header's last_page + 1 */
	unsigned char uuid[SWAP_UUID_LEN];
	bool created; /* the file did not exist */
};

/*
 * Writes a swap header to path, creating a regular file of opts->size_bytes (mode 0600, its
 * blocks allocated with fallocate so that swapping to it never meets a full file system) if it
 * does not exist, or growing a smaller one. A block device or an existing file keeps its size;
 * a smaller size_bytes uses only its start, as mkswap's size argument does. Old signatures in
 * the first MiB are wiped so blkid sees only the swap area. Refuses a file or device in use as
 * swap (the kernel's or memext's) or mounted, and an existing swap area that may hold the pages
 * of processes waiting for memextd to restart (opts->state_path). Returns 0 and fills *ret (may be NULL), or -errno
 * with one line naming the file and the problem in err.
 */
int mkswap_format(const char *path, const struct mkswap_options *opts, struct mkswap_result *ret,
		  char *err, size_t errlen);

/*
 * `memextctl mkswap FILE [--size SIZE] [--label LABEL] [--uuid UUID|random|clear]
 * [--state FILE] [--force]`; argv[0] is
 * the command's name. Prints what it did, as mkswap does. Returns 0, 1 when formatting failed,
 * 2 for a usage error (the message is on stderr).
 */
int mkswap_main(int argc, char **argv);
