/* SPDX-License-Identifier: MIT */
/* The swap state file: what is written is read back, each once; lines a crash cut short or
 * that the reader does not know are skipped; appends add to a rewritten file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "swapstate.h"

static void write_raw(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	check(f);
	check(fputs(text, f) >= 0);
	check(fclose(f) == 0);
}

static bool same(const struct swapstate_proc *a, const struct swapstate_proc *b)
{
	return a->pid == b->pid && a->start_time == b->start_time && a->fork == b->fork &&
	       a->token == b->token;
}

int main(void)
{
	char dir[] = "/tmp/memext-test-swapstate-XXXXXX", path[64];
	const struct swapstate_proc procs[] = {
		{.pid = 100, .start_time = 12345},
		{.pid = 101, .start_time = 1},
		{.pid = 100, .fork = true, .token = 0xdeadbeef},
		{.pid = 102, .fork = true, .token = 0},
	};
	const struct swapstate_proc extra = {.pid = 7, .fork = true, .token = 42};
	struct swapstate_proc *v = NULL;
	int n;

	check(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/memextd.state", dir);

	check(swapstate_read(path, &v) == -ENOENT);

	check(swapstate_write(path, 99, procs, 4) == 0);
	n = swapstate_read(path, &v);
	check(n == 4);
	for (int i = 0; i < 4; i++)
		check(same(&v[i], &procs[i]));
	free(v);

	/* An append after a rewrite; the same line twice counts once. */
	check(swapstate_append(path, &extra) == 0);
	check(swapstate_append(path, &procs[2]) == 0);
	n = swapstate_read(path, &v);
	check(n == 5);
	check(same(&v[4], &extra));
	free(v);

	/* A line cut short by a crash, one from a newer daemon, a bad pid: skipped. */
	write_raw(path, "memextd 5\nproc 10 77\nfork 11 9\nproc 12\nfork 13 5 extra\n"
			"proc -1 3\nwhatever 1 2\nfork 14 8");
	n = swapstate_read(path, &v);
	check(n == 2);
	check(same(&v[0], &(struct swapstate_proc){.pid = 10, .start_time = 77}));
	check(same(&v[1], &(struct swapstate_proc){.pid = 11, .fork = true, .token = 9}));
	free(v);

	check(unlink(path) == 0);
	check(rmdir(dir) == 0);
	printf("swapstate: all checks passed\n");
	return 0;
}
