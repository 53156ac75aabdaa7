/* SPDX-License-Identifier: MIT */
/*
 * memextctl mkswap: formats a regular file or a block device as a swap area (see mkswap.h).
 */
#include "mkswap.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "size.h"
#include "swapstate.h"

/*
 * Old signatures to wipe: most sit in the first MiB (btrfs at 64 KiB, iso9660 at 32 KiB, LUKS,
 * LVM, xfs, ext4 inside the header page); a few at the very end (md 0.90/1.0, a GPT backup).
 * util-linux asks libblkid where each one is; these two ranges cover the usual ones.
 */
#define MKSWAP_WIPE_HEAD_BYTES (1024 * 1024)
#define MKSWAP_WIPE_TAIL_BYTES (128 * 1024)

static _printf_(4, 5) int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

static int write_full(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			return -ENOSPC;
		done += (size_t)n;
	}
	return 0;
}

/* Zeroes [start, end) of the area in page-sized writes from one zero page. */
static int wipe_range(int fd, uint64_t start, uint64_t end)
{
	static const unsigned char zero[PAGE_SIZE];

	for (uint64_t off = start; off < end; off += PAGE_SIZE) {
		int r = write_full(fd, zero, (size_t)MIN((uint64_t)PAGE_SIZE, end - off),
				   (off_t)off);

		if (r < 0)
			return r;
	}
	return 0;
}

/* Grows a regular file to size with its blocks allocated, so swapping never hits ENOSPC. */
static int grow_file(int fd, uint64_t size)
{
	if (fallocate(fd, 0, 0, (off_t)size) == 0)
		return 0;
	/* File systems without fallocate (some network ones) get a sparse file. */
	if (errno == EOPNOTSUPP && ftruncate(fd, (off_t)size) == 0)
		return 0;
	return negative_errno();
}

/*
 * Refuses to overwrite a swap area that may hold the pages of processes whose memextd died and
 * has not started again: their page tables (in the dead daemon's pmem) name its slots, and the
 * next memextd adopts them from there (docs/ARCHITECTURE.md, "Surviving a daemon crash").
 */
static int check_orphans(int fd, const char *path, const char *state_path, char *err,
			 size_t errlen)
{
	char page[PAGE_SIZE];
	int n;

	if (pread(fd, page, sizeof(page), 0) != (ssize_t)sizeof(page) ||
	    memcmp(page + PAGE_SIZE - 10, "SWAPSPACE2", 10) != 0)
		return 0; /* not a swap area: no page of anyone's is in it */
	n = swapstate_orphans(state_path);
	if (n < 0)
		return fail(err, errlen, n,
			    "%s: cannot read %s (%s), which says whether processes still have "
			    "pages in swap areas; not formatting it (--force to format anyway)",
			    path, state_path, strerror(-n));
	if (n > 0)
		return fail(err, errlen, -EBUSY,
			    "%s: %d process(es) listed in %s may have pages in this swap area, "
			    "and the memextd that wrote it is not running (it died and has not "
			    "started again?); not formatting it: start memextd to take them back, "
			    "or use --force to lose them",
			    path, n, state_path);
	return 0;
}

int mkswap_format(const char *path, const struct mkswap_options *opts, struct mkswap_result *ret,
		  char *err, size_t errlen)
{
	_cleanup_close_ int fd = -1;
	union swap_header hdr;
	struct mkswap_result res = {0};
	struct stat st;
	uint64_t size, have;
	bool bdev;
	int r;

	if (stat(path, &st) < 0) {
		if (errno != ENOENT)
			return fail(err, errlen, negative_errno(), "%s: %m", path);
		if (!opts->size_bytes)
			return fail(err, errlen, -ENOENT,
				    "%s: does not exist; give --size to create it", path);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		res.created = true;
	} else if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
		/* O_EXCL on a device fails while it is mounted or the kernel swaps to it. */
		fd = open(path, O_RDWR | O_CLOEXEC | (S_ISBLK(st.st_mode) ? O_EXCL : 0));
	} else {
		return fail(err, errlen, -EINVAL, "%s: not a regular file or block device", path);
	}
	if (fd < 0) {
		r = negative_errno();
		if (r == -EBUSY)
			return fail(
				err, errlen, r,
				"%s: device is busy: mounted or in use as swap; not formatting it",
				path);
		if (r == -EROFS)
			return fail(err, errlen, r, "%s: read-only file system", path);
		return fail(err, errlen, r, "%s: cannot open for writing: %s", path, strerror(-r));
	}
	if (fstat(fd, &st) < 0)
		return fail(err, errlen, negative_errno(), "%s: fstat: %m", path);
	bdev = S_ISBLK(st.st_mode);

	if (bdev) {
		int ro = 0;

		if (ioctl(fd, BLKROGET, &ro) == 0 && ro)
			return fail(err, errlen, -EROFS, "%s: read-only block device", path);
		if (ioctl(fd, BLKGETSIZE64, &have) < 0)
			return fail(err, errlen, negative_errno(), "%s: BLKGETSIZE64: %m", path);
		if (opts->size_bytes > have)
			return fail(err, errlen, -EINVAL,
				    "%s: --size %" PRIu64 " is larger than the device (%" PRIu64
				    " bytes)",
				    path, opts->size_bytes, have);
	} else {
		if (flock(fd, LOCK_EX | LOCK_NB) < 0)
			return fail(err, errlen, -EBUSY,
				    "%s: in use by memextd (locked); not formatting it", path);
		/* The kernel refuses every write to its swap files, even of 0 bytes. */
		if (pwrite(fd, "", 0, 0) < 0 && errno == ETXTBSY)
			return fail(err, errlen, -EBUSY,
				    "%s: in use as swap by the kernel; swapoff it first", path);
	}
	/* Before a file grows: a refused one is left as it was. */
	if (!res.created && !opts->force && opts->state_path) {
		r = check_orphans(fd, path, opts->state_path, err, errlen);
		if (r < 0)
			return r;
	}
	if (!bdev) {
		have = (uint64_t)st.st_size;
		if (opts->size_bytes > have || res.created) {
			r = grow_file(fd, PAGE_ALIGN_DOWN(opts->size_bytes));
			if (r < 0) {
				fail(err, errlen, r, "%s: cannot allocate %" PRIu64 " bytes: %s",
				     path, opts->size_bytes, strerror(-r));
				goto out_unlink;
			}
			have = PAGE_ALIGN_DOWN(opts->size_bytes);
		}
	}
	size = opts->size_bytes ? MIN(opts->size_bytes, have) : have;

	r = swap_uuid_generate(res.uuid);
	if (r < 0) {
		fail(err, errlen, r, "%s: no random UUID: %s", path, strerror(-r));
		goto out_unlink;
	}
	if (opts->uuid)
		memcpy(res.uuid, opts->uuid, SWAP_UUID_LEN);
	res.nr_pages = size / PAGE_SIZE;
	r = swap_header_encode(&hdr, res.nr_pages, res.uuid, opts->label, opts->badpages,
			       opts->nr_badpages, err, errlen);
	if (r < 0) {
		/* The encoder's message does not name the file; put the name in front. */
		if (err && errlen) {
			char msg[256];

			snprintf(msg, sizeof(msg), "%s", err);
			snprintf(err, errlen, "%s: %s", path, msg);
		}
		goto out_unlink;
	}

	/* A file just allocated reads as zeroes already. */
	if (!res.created) {
		uint64_t area = res.nr_pages * PAGE_SIZE;

		r = wipe_range(fd, PAGE_SIZE, MIN(area, (uint64_t)MKSWAP_WIPE_HEAD_BYTES));
		if (r >= 0 && area > MKSWAP_WIPE_HEAD_BYTES)
			r = wipe_range(fd,
				       MAX(area - MKSWAP_WIPE_TAIL_BYTES,
					   (uint64_t)MKSWAP_WIPE_HEAD_BYTES),
				       area);
		if (r < 0)
			return fail(err, errlen, r, "%s: cannot wipe old signatures: %s", path,
				    strerror(-r));
	}
	r = write_full(fd, &hdr, sizeof(hdr), 0);
	if (r < 0) {
		fail(err, errlen, r, "%s: cannot write the swap header: %s", path, strerror(-r));
		goto out_unlink;
	}
	if (fsync(fd) < 0) {
		r = fail(err, errlen, negative_errno(), "%s: fsync: %m", path);
		goto out_unlink;
	}
	if (ret)
		*ret = res;
	return 0;

out_unlink:
	/* Leave nothing half-made behind: a file this call created goes again. */
	if (res.created)
		unlink(path);
	return r;
}

static void usage(FILE *f, const char *name)
{
	fprintf(f,
		"Usage: %s FILE [--size SIZE] [--label LABEL] [--uuid UUID]\n"
		"Formats FILE (a regular file, created if missing, or a block device) as a swap\n"
		"area readable by memextd and by the kernel's swapon.\n"
		"\n"
		"  -s, --size SIZE     size of the area (64M, 4G, ...); needed to create FILE;\n"
		"                      default: the whole file or device\n"
		"  -L, --label LABEL   volume label, at most %d bytes\n"
		"  -U, --uuid UUID     UUID, or \"random\" (the default) or \"clear\"\n"
		"      --state FILE    memextd's swap state file (default %s): an existing\n"
		"                      swap area is not formatted while it lists processes\n"
		"                      whose pages may be in it and no memextd runs\n"
		"  -f, --force         format even so (their evicted pages are lost)\n"
		"  -h, --help          this text\n",
		name, SWAP_LABEL_MAX, MKSWAP_DEFAULT_STATE);
}

int mkswap_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"size", required_argument, NULL, 's'},
		{"label", required_argument, NULL, 'L'},
		{"uuid", required_argument, NULL, 'U'},
		{"state", required_argument, NULL, 'S'},
		{"force", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *name = argc > 0 ? argv[0] : "mkswap";
	struct mkswap_options opts = {.state_path = MKSWAP_DEFAULT_STATE};
	struct mkswap_result res = {0};
	unsigned char uuid[SWAP_UUID_LEN];
	char err[512], ubuf[37], sbuf[32];
	int c, r;

	/* memextctl may have run getopt already: 0 makes glibc start over. */
	optind = 0;
	while ((c = getopt_long(argc, argv, "s:L:U:fh", longopts, NULL)) != -1) {
		switch (c) {
		case 'S':
			opts.state_path = optarg;
			break;
		case 'f':
			opts.force = true;
			break;
		case 's':
			r = parse_size(optarg, &opts.size_bytes);
			if (r < 0 || !opts.size_bytes) {
				fprintf(stderr, "%s: invalid size \"%s\"\n", name, optarg);
				return 2;
			}
			break;
		case 'L':
			if (strlen(optarg) > SWAP_LABEL_MAX) {
				fprintf(stderr, "%s: label \"%s\" is longer than %d bytes\n", name,
					optarg, SWAP_LABEL_MAX);
				return 2;
			}
			opts.label = optarg;
			break;
		case 'U':
			if (!strcmp(optarg, "random")) {
				opts.uuid = NULL;
			} else if (!strcmp(optarg, "clear")) {
				memset(uuid, 0, sizeof(uuid));
				opts.uuid = uuid;
			} else if (swap_uuid_parse(optarg, uuid) < 0) {
				fprintf(stderr, "%s: invalid UUID \"%s\"\n", name, optarg);
				return 2;
			} else {
				opts.uuid = uuid;
			}
			break;
		case 'h':
			usage(stdout, name);
			return 0;
		default:
			usage(stderr, name);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr, name);
		return 2;
	}

	r = mkswap_format(argv[optind], &opts, &res, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", name, err);
		return 1;
	}
	/* As util-linux prints it: the size excludes the header page. */
	printf("Setting up swapspace version 1, size = %s (%" PRIu64 " bytes)\n",
	       format_size((res.nr_pages - 1) * PAGE_SIZE, sbuf, sizeof(sbuf)),
	       (res.nr_pages - 1) * PAGE_SIZE);
	printf("%s%s%sUUID=%s\n", opts.label ? "LABEL=" : "no label", opts.label ? opts.label : "",
	       ", ", swap_uuid_format(res.uuid, ubuf));
	return 0;
}
