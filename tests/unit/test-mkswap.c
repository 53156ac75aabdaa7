/* SPDX-License-Identifier: MIT */
/*
 * memext's swap areas against util-linux's own tools, run here on temporary files: headers
 * byte for byte equal to mkswap's, mkswap's files accepted as they are, memext's files named
 * TYPE="swap" with their UUID and LABEL by `blkid -p` and read (and relabelled) by swaplabel,
 * accepted by the kernel's swapon; `memextctl mkswap` on the command line.
 * Skipped (77) when mkswap, blkid or swaplabel is not installed (Debian: util-linux).
 */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/swap.h>
#include <sys/wait.h>

#include "macro.h"
#include "mkswap.h"
#include "swapfile.h"
#include "procfs.h"
#include "swapstate.h"
#include "swap-test.h"

#define MiB (1024ULL * 1024)

static const char *dir;
static char kernel_swapped[512];

static void kernel_swapoff(void)
{
	if (kernel_swapped[0])
		swapoff(kernel_swapped);
}

static char *path_in(const char *name)
{
	static char bufs[8][512];
	static unsigned next;
	char *p = bufs[next++ % 8];

	snprintf(p, 512, "%s/%s", dir, name);
	return p;
}

static void read_page0(const char *path, void *buf)
{
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0);
	CHECK_EQ(pread(fd, buf, 4096, 0), 4096);
	close(fd);
}

static void make_sparse(const char *path, uint64_t size)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);

	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

/* util-linux mkswap and swap_header_encode() give the same first page. */
static void compare_with_mkswap(uint64_t size, const char *uuid_s, const char *label,
				const char *size_arg)
{
	unsigned char theirs[4096];
	unsigned char uuid[16];
	union swap_header ours;
	uint64_t nr_pages = size / 4096;
	char err[256];

	make_sparse(path_in("ul"), size);
	CHECK_EQ(swap_test_run(NULL, 0, "mkswap -q -U %s %s%s%s '%s' %s 2>&1", uuid_s,
			       label ? "-L '" : "", label ? label : "", label ? "'" : "",
			       path_in("ul"), size_arg ? size_arg : ""),
		 0);
	read_page0(path_in("ul"), theirs);
	if (size_arg)
		nr_pages = strtoull(size_arg, NULL, 10) * 1024 / 4096;
	if (!strcmp(uuid_s, "clear"))
		memset(uuid, 0, 16);
	else
		CHECK_EQ(swap_uuid_parse(uuid_s, uuid), 0);
	CHECK_EQ(swap_header_encode(&ours, nr_pages, uuid, label, NULL, 0, err, sizeof(err)), 0);
	if (memcmp(&ours, theirs, 4096)) {
		for (unsigned i = 0; i < 4096; i++)
			if (((unsigned char *)&ours)[i] != theirs[i])
				fprintf(stderr, "byte %u: ours %02x, mkswap's %02x\n", i,
					((unsigned char *)&ours)[i], theirs[i]);
		CHECK(!"header differs from util-linux mkswap's");
	}

	/* The file mkswap made is accepted as it is, and says what mkswap wrote. */
	{
		struct swapfile_area_stats as;
		struct swapfile *sf;
		char msg[512];
		int t;

		CHECK_EQ(swapfile_new(&sf), 0);
		t = swapfile_swapon(sf, path_in("ul"), 0, 0, msg, sizeof(msg));
		if (t < 0) {
			fprintf(stderr, "%s\n", msg);
			exit(1);
		}
		CHECK_EQ(swapfile_get_area_stats(sf, (unsigned)t, &as), 0);
		CHECK_EQ(as.total_slots, nr_pages - 1);
		CHECK(!memcmp(as.uuid, uuid, 16));
		CHECK(!strcmp(as.label, label ? label : ""));
		CHECK(as.has_holes);
		swapfile_free(sf);
	}
}

static void test_util_linux_headers(void)
{
	compare_with_mkswap(64 * MiB, "0123abcd-0000-4000-8000-000000000001", NULL, NULL);
	compare_with_mkswap(64 * MiB, "0123abcd-0000-4000-8000-000000000002", "memext", NULL);
	compare_with_mkswap(10 * MiB + 1234, "fedcba98-7654-4321-8765-0123456789ab",
			    "exactly15bytes!", NULL);
	compare_with_mkswap(64 * MiB, "clear", "x", NULL);
	/* mkswap's size argument, in KiB: only the start of the file is the area. */
	compare_with_mkswap(64 * MiB, "0123abcd-0000-4000-8000-000000000003", "part", "20000");
}

/* A header made for another page size is refused, and the message says which. */
static void test_foreign_page_size(void)
{
	static const unsigned sizes[] = {16384, 65536};
	struct swapfile *sf;

	CHECK_EQ(swapfile_new(&sf), 0);
	for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
		char err[512], phrase[64];

		make_sparse(path_in("ps"), 64 * MiB);
		CHECK_EQ(swap_test_run(NULL, 0, "mkswap -q -p %u '%s' 2>&1", sizes[i],
				       path_in("ps")),
			 0);
		CHECK_EQ(swapfile_swapon(sf, path_in("ps"), 0, 0, err, sizeof(err)), -EINVAL);
		snprintf(phrase, sizeof(phrase), "page size of %u bytes", sizes[i]);
		CHECK_MSG(err, path_in("ps"), phrase);
	}
	swapfile_free(sf);
}

/* Finds KEY=value in `blkid -o export` output. */
static void export_value(const char *out, const char *key, char *val, size_t len)
{
	char pat[64];
	const char *p;
	size_t n = 0;

	snprintf(pat, sizeof(pat), "\n%s=", key);
	p = strstr(out, pat);
	CHECK(p);
	p += strlen(pat);
	while (p[n] && p[n] != '\n' && n + 1 < len)
		n++;
	memcpy(val, p, n);
	val[n] = '\0';
}

static void test_blkid_swaplabel(void)
{
	const char *uuid_s = "6a3b1d0e-5c2f-4e8a-9b7d-112233445566";
	unsigned char uuid[16];
	struct mkswap_options o = {.size_bytes = 48 * MiB, .label = "memext-swap", .uuid = uuid};
	struct mkswap_result res;
	struct swapfile_area_stats as;
	struct swapfile *sf;
	char out[2048], val[128], err[512];

	CHECK_EQ(swap_uuid_parse(uuid_s, uuid), 0);
	CHECK_EQ(mkswap_format(path_in("ours"), &o, &res, err, sizeof(err)), 0);
	CHECK(res.created);
	CHECK_EQ(res.nr_pages, 48 * MiB / 4096);

	/* Low-level probing (-p): what the superblock says, not a cache. */
	CHECK_EQ(
		swap_test_run(out + 1, sizeof(out) - 1, "blkid -p -o export '%s'", path_in("ours")),
		0);
	out[0] = '\n';
	export_value(out, "TYPE", val, sizeof(val));
	CHECK(!strcmp(val, "swap"));
	export_value(out, "UUID", val, sizeof(val));
	CHECK(!strcmp(val, uuid_s));
	export_value(out, "LABEL", val, sizeof(val));
	CHECK(!strcmp(val, "memext-swap"));
	export_value(out, "VERSION", val, sizeof(val));
	CHECK(!strcmp(val, "1"));

	CHECK_EQ(swap_test_run(out, sizeof(out), "swaplabel '%s'", path_in("ours")), 0);
	CHECK(strstr(out, "LABEL: memext-swap\n"));
	CHECK(strstr(out, uuid_s));

	/* swaplabel changes the label in place; memext reads the new one. */
	CHECK_EQ(swap_test_run(NULL, 0, "swaplabel -L relabelled '%s'", path_in("ours")), 0);
	CHECK_EQ(swapfile_new(&sf), 0);
	CHECK_EQ(swapfile_swapon(sf, path_in("ours"), 0, 0, err, sizeof(err)), 0);
	CHECK_EQ(swapfile_get_area_stats(sf, 0, &as), 0);
	CHECK(!strcmp(as.label, "relabelled"));
	CHECK(!memcmp(as.uuid, uuid, 16));
	CHECK_EQ(as.total_slots, 48 * MiB / 4096 - 1);
	/* util-linux's mkswap refuses nothing here, but memext's does: the area is in use. */
	CHECK_EQ(mkswap_format(path_in("ours"), &o, NULL, err, sizeof(err)), -EBUSY);
	CHECK_MSG(err, path_in("ours"), "in use by memextd");
	swapfile_free(sf);
}

/* The kernel's own swapon takes a file memext made, and memext refuses to reformat it. */
static void test_kernel_accepts(void)
{
	struct mkswap_options o = {.size_bytes = 16 * MiB};
	char err[512], out[4096];

	CHECK_EQ(mkswap_format(path_in("k"), &o, NULL, err, sizeof(err)), 0);
	if (swapon(path_in("k"), 0) < 0) {
		printf("kernel swapon: skipped, %m\n");
		return;
	}
	snprintf(kernel_swapped, sizeof(kernel_swapped), "%s", path_in("k"));
	CHECK_EQ(swap_test_run(out, sizeof(out), "cat /proc/swaps"), 0);
	CHECK(strstr(out, path_in("k")));
	CHECK_EQ(mkswap_format(path_in("k"), &o, NULL, err, sizeof(err)), -EBUSY);
	CHECK_MSG(err, path_in("k"), "in use as swap by the kernel");
	CHECK_EQ(swapoff(path_in("k")), 0);
	kernel_swapped[0] = '\0';
}

/* Old signatures go: an ext4 image becomes a swap area blkid sees as swap only. */
static void test_wipe(void)
{
	struct mkswap_options o = {0};
	char out[2048], err[512];

	if (!swap_test_have("mkfs.ext4")) {
		printf("wipe: skipped, no mkfs.ext4\n");
		return;
	}
	make_sparse(path_in("fs"), 32 * MiB);
	CHECK_EQ(swap_test_run(NULL, 0, "mkfs.ext4 -q -F '%s' 2>&1", path_in("fs")), 0);
	CHECK_EQ(swap_test_run(out, sizeof(out), "blkid -p -o export '%s'", path_in("fs")), 0);
	CHECK(strstr(out, "TYPE=ext4"));
	CHECK_EQ(mkswap_format(path_in("fs"), &o, NULL, err, sizeof(err)), 0);
	CHECK_EQ(swap_test_run(out, sizeof(out), "blkid -p -o export '%s'", path_in("fs")), 0);
	CHECK(strstr(out, "TYPE=swap"));
	CHECK(!strstr(out, "ext4"));
}

static int run_main(const char *a0, ...)
{
	char *argv[16];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)a0;
	va_start(ap, a0);
	for (char *s; (s = va_arg(ap, char *));)
		argv[argc++] = s;
	va_end(ap);
	argv[argc] = NULL;
	fflush(stdout);
	return mkswap_main(argc, argv);
}

static void test_cli(void)
{
	const char *uuid_s = "0f0f0f0f-1111-4222-8333-444455556666";
	char out[2048];
	struct stat st;

	CHECK_EQ(run_main("mkswap", path_in("cli"), "--size", "64M", "--label", "cli", "--uuid",
			  uuid_s, NULL),
		 0);
	CHECK_EQ(stat(path_in("cli"), &st), 0);
	CHECK_EQ(st.st_size, 64 * MiB);
	CHECK_EQ(st.st_mode & 0777, 0600);
	CHECK((uint64_t)st.st_blocks * 512 >= 64 * MiB); /* allocated, no holes */
	CHECK_EQ(swap_test_run(out, sizeof(out), "blkid -p -o export '%s'", path_in("cli")), 0);
	CHECK(strstr(out, "TYPE=swap") && strstr(out, "LABEL=cli") && strstr(out, uuid_s));
	CHECK_EQ(swap_test_run(out, sizeof(out), "swaplabel '%s'", path_in("cli")), 0);
	CHECK(strstr(out, "LABEL: cli"));

	/* Options before the file, an existing file keeps its size, "clear" UUID. */
	CHECK_EQ(run_main("mkswap", "-U", "clear", "-L", "again", path_in("cli"), "--state",
			  path_in("none.state"), NULL),
		 0);
	CHECK_EQ(stat(path_in("cli"), &st), 0);
	CHECK_EQ(st.st_size, 64 * MiB);
	CHECK_EQ(swap_test_run(out, sizeof(out), "swaplabel '%s'", path_in("cli")), 0);
	CHECK(strstr(out, "LABEL: again"));
	/* A smaller size uses the start only; the file is not cut. */
	CHECK_EQ(run_main("mkswap", path_in("cli"), "--size", "8M", "--state", path_in("none.state"),
			  NULL),
		 0);
	CHECK_EQ(stat(path_in("cli"), &st), 0);
	CHECK_EQ(st.st_size, 64 * MiB);
	{
		struct swapfile_area_stats as;
		struct swapfile *sf;

		CHECK_EQ(swapfile_new(&sf), 0);
		CHECK_EQ(swapfile_swapon(sf, path_in("cli"), 0, 0, NULL, 0), 0);
		CHECK_EQ(swapfile_get_area_stats(sf, 0, &as), 0);
		CHECK_EQ(as.total_slots, 8 * MiB / 4096 - 1);
		swapfile_free(sf);
	}

	/* Usage errors are 2, failures 1, and a failed create leaves no file. */
	CHECK_EQ(run_main("mkswap", NULL), 2);
	CHECK_EQ(run_main("mkswap", path_in("x"), "--size", "lots", NULL), 2);
	CHECK_EQ(run_main("mkswap", path_in("x"), "--size", "0", NULL), 2);
	CHECK_EQ(run_main("mkswap", path_in("x"), "--label", "sixteen-chars-xx", NULL), 2);
	CHECK_EQ(run_main("mkswap", path_in("x"), "--uuid", "nope", NULL), 2);
	CHECK_EQ(run_main("mkswap", path_in("x"), path_in("y"), NULL), 2);
	CHECK_EQ(run_main("mkswap", path_in("x"), NULL), 1); /* new file, no size */
	CHECK_EQ(run_main("mkswap", path_in("x"), "--size", "16K", NULL), 1); /* < 10 pages */
	CHECK(access(path_in("x"), F_OK) < 0);
	CHECK_EQ(run_main("mkswap", dir, "--size", "1M", NULL), 1);
	CHECK_EQ(run_main("mkswap", "--help", NULL), 0);
}

static void write_state(const char *fmt, ...)
{
	FILE *f = fopen(path_in("memextd.state"), "w");
	va_list ap;

	CHECK(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	CHECK_EQ(fclose(f), 0);
}

/*
 * After a crash, a swap area may hold the pages of processes waiting for memextd to start
 * again: it is not formatted while the state file lists any and the memextd that wrote it is
 * not running, unless forced. A running memextd locks its areas instead (tested above).
 */
static void test_state_file(void)
{
	char state[512], err[512], before[4096], after[4096];
	struct mkswap_options o = {.size_bytes = 16 * MiB, .state_path = state};
	unsigned long long me = proc_start_time(getpid());
	pid_t gone = fork();

	if (gone == 0)
		_exit(0);
	CHECK(gone > 0 && waitpid(gone, NULL, 0) == gone);
	CHECK(me > 0);
	snprintf(state, sizeof(state), "%s", path_in("memextd.state")); /* path_in's buffers rotate */

	/* No state file: made, and made again. */
	CHECK_EQ(mkswap_format(path_in("held"), &o, NULL, err, sizeof(err)), 0);
	CHECK_EQ(mkswap_format(path_in("held"), &o, NULL, err, sizeof(err)), 0);

	/* Its memextd is gone and we (alive) are listed: refused, the area untouched. */
	write_state("memextd %d\nproc %d %llu\n", (int)gone, (int)getpid(), me);
	read_page0(path_in("held"), before);
	CHECK_EQ(mkswap_format(path_in("held"), &o, NULL, err, sizeof(err)), -EBUSY);
	CHECK(strstr(err, "1 process(es)") && strstr(err, "--force"));
	read_page0(path_in("held"), after);
	CHECK(memcmp(before, after, sizeof(before)) == 0);
	CHECK_EQ(run_main("mkswap", path_in("held"), "--state", path_in("memextd.state"), NULL), 1);
	/* Forced: formatted (a new UUID). */
	CHECK_EQ(run_main("mkswap", path_in("held"), "--state", path_in("memextd.state"),
			  "--force", NULL),
		 0);
	read_page0(path_in("held"), after);
	CHECK(memcmp(before, after, sizeof(before)) != 0);

	/* A listed pid now running another program (another start time) is not waiting. */
	write_state("memextd %d\nproc %d %llu\nproc %d 12345\n", (int)gone, (int)getpid(),
		    me + 1, (int)gone);
	CHECK_EQ(mkswap_format(path_in("held"), &o, NULL, err, sizeof(err)), 0);

	/* A fork snapshot's child (no pid here) waits for a memextd, the parent gone or not. */
	write_state("memextd %d\nfork %d 7\n", (int)gone, (int)gone);
	CHECK_EQ(mkswap_format(path_in("held"), &o, NULL, err, sizeof(err)), -EBUSY);
	/* A memextd killed but not reaped yet (a zombie) holds nothing. */
	{
		pid_t zombie = fork();
		siginfo_t info;

		if (zombie == 0) {
			prctl(PR_SET_NAME, "memextd");
			_exit(0);
		}
		CHECK(zombie > 0);
		/* Wait until it has exited, leaving it unreaped. */
		CHECK(waitid(P_PID, (id_t)zombie, &info, WEXITED | WNOWAIT) == 0);
		write_state("memextd %d\nproc %d %llu\n", (int)zombie, (int)getpid(), me);
		CHECK_EQ(mkswap_format(path_in("held"), &o, NULL, err, sizeof(err)), -EBUSY);
		CHECK(waitpid(zombie, NULL, 0) == zombie);
	}
	/* A line without a start time names nobody. */
	write_state("memextd %d\nproc %d 0\n", (int)gone, (int)gone);
	CHECK_EQ(mkswap_format(path_in("held"), &o, NULL, err, sizeof(err)), 0);

	/* A file that is no swap area holds nobody's pages: formatted. */
	make_sparse(path_in("plain"), 16 * MiB);
	CHECK_EQ(mkswap_format(path_in("plain"), &o, NULL, err, sizeof(err)), 0);
	unlink(path_in("memextd.state"));
}

int main(void)
{
	if (!swap_test_have("mkswap") || !swap_test_have("blkid") || !swap_test_have("swaplabel")) {
		printf("test-mkswap: skipped, needs mkswap, blkid and swaplabel (util-linux)\n");
		return EXIT_SKIP;
	}
	dir = swap_test_mkdtemp();
	atexit(kernel_swapoff);

	test_util_linux_headers();
	test_foreign_page_size();
	test_blkid_swaplabel();
	test_kernel_accepts();
	test_wipe();
	test_cli();
	test_state_file();
	printf("test-mkswap: ok\n");
	return 0;
}
