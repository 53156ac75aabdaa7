/* SPDX-License-Identifier: MIT */
/*
 * The swap state file (swapstate.h). A SIGKILL can stop the daemon anywhere but inside a
 * system call: an append of one short line is all there or not there, and a rewrite goes to a
 * new file that is renamed over the old one, so the file is always whole. No fsync: it must
 * outlive the daemon, not the machine, and a reboot takes the clients with it.
 */
#include "swapstate.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "procfs.h"

static bool listed(const struct swapstate_proc *v, size_t n, const struct swapstate_proc *p)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].pid == p->pid && v[i].start_time == p->start_time && v[i].fork == p->fork &&
		    v[i].token == p->token)
			return true;
	return false;
}

int swapstate_read(const char *path, struct swapstate_proc **ret)
{
	_cleanup_free_ struct swapstate_proc *v = NULL;
	_cleanup_free_ char *line = NULL;
	size_t n = 0, cap = 0, len = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return negative_errno();
	while (getline(&line, &len, f) > 0) {
		struct swapstate_proc p;
		unsigned long long t;
		unsigned token;
		int pid, end = 0;

		if (sscanf(line, "proc %d %llu%n", &pid, &t, &end) == 2 && pid > 0 &&
		    line[end] == '\n')
			p = (struct swapstate_proc){.pid = pid, .start_time = t};
		else if (sscanf(line, "fork %d %u%n", &pid, &token, &end) == 2 && pid > 0 &&
			 line[end] == '\n')
			p = (struct swapstate_proc){.pid = pid, .fork = true, .token = token};
		else
			continue;
		if (listed(v, n, &p))
			continue;
		if (n == cap) {
			struct swapstate_proc *nv =
				realloc(v, (cap = cap ? 2 * cap : 64) * sizeof(*v));

			if (!nv) {
				fclose(f);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = p;
	}
	fclose(f);
	*ret = n ? TAKE_PTR(v) : NULL;
	return (int)n;
}

static int format_line(const struct swapstate_proc *p, char *buf, size_t size)
{
	if (p->fork)
		return snprintf(buf, size, "fork %d %u\n", (int)p->pid, (unsigned)p->token);
	return snprintf(buf, size, "proc %d %" PRIu64 "\n", (int)p->pid, p->start_time);
}

int swapstate_write(const char *path, pid_t daemon_pid, const struct swapstate_proc *procs,
		    size_t n)
{
	char tmp[PATH_MAX];
	FILE *f;
	int r = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.new", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return negative_errno();
	fprintf(f, "memextd %d\n", (int)daemon_pid);
	for (size_t i = 0; i < n; i++) {
		char line[64];

		format_line(&procs[i], line, sizeof(line));
		fputs(line, f);
	}
	if (ferror(f))
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = negative_errno();
	if (r == 0 && rename(tmp, path) < 0)
		r = negative_errno();
	if (r < 0)
		unlink(tmp);
	return r;
}

int swapstate_append(const char *path, const struct swapstate_proc *p)
{
	char line[64];
	int len = format_line(p, line, sizeof(line));
	_cleanup_close_ int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return negative_errno();
	if (write(fd, line, (size_t)len) != len)
		return -EIO;
	return 0;
}

/* The pid on the "memextd PID" line that starts a rewritten file, or 0. */
static pid_t state_writer(const char *path)
{
	FILE *f = fopen(path, "re");
	int pid = 0;

	if (!f)
		return 0;
	if (fscanf(f, "memextd %d", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid > 0 ? pid : 0;
}

/* pid is a memextd that runs (a killed one not reaped yet is a zombie: it holds nothing). */
static bool memextd_runs(pid_t pid)
{
	char buf[1024];
	const char *comm, *fields = proc_stat(pid, buf, sizeof(buf), &comm);

	return fields && strcmp(comm, "memextd") == 0 && fields[0] != 'Z' && fields[0] != 'X';
}

int swapstate_orphans(const char *path)
{
	_cleanup_free_ struct swapstate_proc *v = NULL;
	pid_t writer = state_writer(path);
	int n, orphans = 0;

	if (writer && memextd_runs(writer))
		return 0;
	n = swapstate_read(path, &v);
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return n;
	/* A fork snapshot's child has no pid here, and waits until a memextd starts. */
	for (int i = 0; i < n; i++)
		orphans += v[i].fork ||
			   (v[i].start_time && proc_start_time(v[i].pid) == v[i].start_time);
	return orphans;
}
