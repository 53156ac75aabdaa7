/* SPDX-License-Identifier: MIT */
#include "procfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"

/* Reads the start of the file at path into buf, a string; false when it cannot. */
static bool read_text(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return true;
}

const char *proc_stat(pid_t pid, char *buf, size_t size, const char **ret_comm)
{
	char path[64], *close_paren, *open_paren;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!read_text(path, buf, size))
		return NULL;
	open_paren = strchr(buf, '(');
	close_paren = strrchr(buf, ')');
	if (!open_paren || !close_paren || close_paren < open_paren || close_paren[1] != ' ')
		return NULL;
	*close_paren = 0;
	*ret_comm = open_paren + 1;
	return close_paren + 2;
}

uint64_t proc_start_time(pid_t pid)
{
	char buf[1024];
	const char *comm, *fields = proc_stat(pid, buf, sizeof(buf), &comm);
	unsigned long long t = 0;

	if (!fields || sscanf(fields, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d "
				      "%*d %*d %*d %*d %*d %llu",
			      &t) != 1)
		return 0;
	return t;
}

/* Whether a line of /proc/PID/cgroup puts pid in a frozen cgroup. */
static bool cgroup_frozen(const char *line)
{
	const char *v1 = strstr(line, ":freezer:");
	char file[4096 + 64], text[256]; /* file: a line of /proc/PID/cgroup and more */

	if (v1) {
		snprintf(file, sizeof(file), "/sys/fs/cgroup/freezer%s/freezer.state",
			 v1 + strlen(":freezer:"));
		return read_text(file, text, sizeof(text)) && strncmp(text, "THAWED", 6) != 0;
	}
	if (strncmp(line, "0::", 3) == 0) {
		/* cgroup2 alone at /sys/fs/cgroup, or beside v1 (systemd's hybrid layout). */
		static const char *const roots[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};

		for (size_t i = 0; i < ARRAY_SIZE(roots); i++) {
			snprintf(file, sizeof(file), "%s%s/cgroup.events", roots[i], line + 3);
			if (read_text(file, text, sizeof(text)))
				return strstr(text, "frozen 1") != NULL;
		}
	}
	return false;
}

bool proc_frozen(pid_t pid)
{
	char path[64], line[4096];
	bool frozen = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!frozen && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		frozen = cgroup_frozen(line);
	}
	fclose(f);
	return frozen;
}

char proc_state(pid_t pid)
{
	char buf[1024];
	const char *comm, *fields = proc_stat(pid, buf, sizeof(buf), &comm);

	return fields ? fields[0] : 0;
}

bool proc_stopped(pid_t pid)
{
	char state = proc_state(pid);

	if (!state)
		return false;
	return state == 'T' || state == 't' || proc_frozen(pid);
}

pid_t proc_tgid(pid_t tid)
{
	char path[64], line[256];
	long tgid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Tgid: %ld", &tgid) == 1)
			break;
	fclose(f);
	return (pid_t)tgid;
}

bool proc_signal_stopped(pid_t pid)
{
	return proc_state(pid) == 'T' && !proc_frozen(pid);
}

/* A field of /proc/PATH/status: the numbers after "key:" (NSpid has one per namespace level,
 * outermost first). Returns how many, at most max; 0 when the file or the key is not there. */
static unsigned status_numbers(const char *path, const char *key, long *v, unsigned max)
{
	char line[512];
	size_t klen = strlen(key);
	unsigned n = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char *p = line + klen, *end;

		if (strncmp(line, key, klen) != 0 || *p != ':')
			continue;
		for (p++; n < max; p = end) {
			v[n] = strtol(p, &end, 10);
			if (end == p)
				break;
			n++;
		}
		break;
	}
	fclose(f);
	return n;
}

pid_t proc_ns_local(pid_t pid, pid_t tid)
{
	char path[96];
	long v[33]; /* 32 levels of nesting below the first */
	unsigned n;

	if (tid)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
	else
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	n = status_numbers(path, "NSpid", v, ARRAY_SIZE(v));
	return n ? (pid_t)v[n - 1] : 0;
}

pid_t proc_tid_from_local(pid_t pid, pid_t local)
{
	char path[64];
	struct dirent *de;
	pid_t found = 0;
	DIR *dir;

	if (local <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (!dir)
		return 0;
	while (!found && (de = readdir(dir))) {
		pid_t tid = (pid_t)strtol(de->d_name, NULL, 10);

		if (tid > 0 && proc_ns_local(pid, tid) == local)
			found = tid;
	}
	closedir(dir);
	return found;
}

pid_t proc_ppid(pid_t pid)
{
	char path[64];
	long v;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	return status_numbers(path, "PPid", &v, 1) ? (pid_t)v : 0;
}

bool proc_in_our_pid_ns(pid_t pid)
{
	static struct stat ours; /* a process never changes its own PID namespace */
	char path[64];
	struct stat theirs;

	if (!ours.st_ino && stat("/proc/self/ns/pid", &ours) < 0)
		ours.st_ino = 0;
	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
	return ours.st_ino && stat(path, &theirs) == 0 && ours.st_ino == theirs.st_ino &&
	       ours.st_dev == theirs.st_dev;
}

/* Reads /proc/PID/task/TID/syscall, name being TID: 1 (in mremap(), *ret filled), 0 (in
 * another call, or gone), -EAGAIN (running), or -errno. */
static int thread_mremap(pid_t pid, const char *name, struct proc_mremap *ret)
{
	char path[64], buf[256];
	unsigned long long a[5];
	long nr;

	snprintf(path, sizeof(path), "/proc/%d/task/%.16s/syscall", (int)pid, name);
	if (!read_text(path, buf, sizeof(buf)))
		return errno == ENOENT || errno == ESRCH ? 0 : -errno; /* a thread that left */
	if (strncmp(buf, "running", 7) == 0)
		return -EAGAIN;
	/* "NR FROM OLD_LEN NEW_LEN FLAGS TO ARG6 SP PC", the arguments in hex. */
	if (sscanf(buf, "%ld %llx %llx %llx %llx %llx", &nr, &a[0], &a[1], &a[2], &a[3], &a[4]) !=
		    6 ||
	    nr != SYS_mremap)
		return 0;
	*ret = (struct proc_mremap){
		.tid = (pid_t)atoi(name),
		.from = a[0],
		.old_len = a[1],
		.new_len = a[2],
		.flags = a[3],
		.to = a[3] & MREMAP_FIXED ? a[4] : 0,
	};
	return 1;
}

int proc_thread_mremap(pid_t pid, pid_t tid, struct proc_mremap *ret)
{
	char name[16];

	snprintf(name, sizeof(name), "%d", (int)tid);
	return thread_mremap(pid, name, ret);
}

int proc_mremaps(pid_t pid, struct proc_mremap *out, unsigned max, int *ret_unread)
{
	char path[64];
	struct dirent *de;
	unsigned n = 0;
	DIR *dir;

	*ret_unread = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while (n < max && (de = readdir(dir))) {
		int r;

		if (de->d_name[0] == '.')
			continue;
		r = thread_mremap(pid, de->d_name, &out[n]);
		if (r > 0)
			n++;
		else if (r < 0 && (r != -EAGAIN || !*ret_unread))
			*ret_unread = r;
	}
	closedir(dir);
	return (int)n;
}

int proc_mremap_lengths(pid_t pid, uint64_t from, uint64_t to, uint64_t *ret_old_len,
			uint64_t *ret_new_len)
{
	struct proc_mremap m[PROC_MAX_MREMAPS];
	int unread, n = proc_mremaps(pid, m, ARRAY_SIZE(m), &unread);

	for (int i = 0; i < n; i++)
		if (m[i].from == from && (!(m[i].flags & MREMAP_FIXED) || m[i].to == to)) {
			*ret_old_len = m[i].old_len;
			*ret_new_len = m[i].new_len;
			return 0;
		}
	if (n < 0)
		return n;
	return unread ? unread : -ENOENT;
}
