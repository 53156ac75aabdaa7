/* SPDX-License-Identifier: MIT */
/*
 * caps_drop_to(): each case runs in a forked child, since dropping is for good. Checks the
 * state with cap_get_proc()/cap_get_bound()/cap_get_ambient() and, beyond the bits, the
 * outcome: after dropping, process_vm_readv() of another user's process still works
 * (CAP_SYS_PTRACE kept) while chown() (CAP_CHOWN) and opening its /proc/PID/pagemap
 * (CAP_DAC_READ_SEARCH) fail; with nothing kept, process_vm_readv() fails too.
 *
 * Needs root (exit 77 otherwise).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "daemon/caps.h"

#define NOBODY 65534

static int failures;
static pid_t victim = -1;
static char secret[4096]; /* the victim's copy is filled, ours stays zero */
static char tmpfile_path[] = "/tmp/test-caps-XXXXXX";

#define CHECK(cond, ...)                                                                  \
	do {                                                                              \
		if (!(cond)) {                                                            \
			failures++;                                                       \
			fprintf(stderr, "%s:%d: FAIL (%s): ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                     \
			fputc('\n', stderr);                                              \
		}                                                                         \
	} while (0)

static bool has(cap_t c, cap_value_t cap, cap_flag_t which)
{
	cap_flag_value_t v = CAP_CLEAR;

	cap_get_flag(c, cap, which, &v);
	return v == CAP_SET;
}

/* A process of another user holding a known page; dumpable, as an ordinary program is. */
static int start_victim(void)
{
	int p[2];
	char c;

	if (pipe(p) < 0)
		return -errno;
	victim = fork();
	if (victim < 0)
		return -errno;
	if (victim == 0) {
		for (size_t i = 0; i < sizeof(secret); i++)
			secret[i] = (char)(i * 7 + 1);
		if (setresgid(NOBODY, NOBODY, NOBODY) < 0 || setresuid(NOBODY, NOBODY, NOBODY) < 0)
			_exit(1);
		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
		if (write(p[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1) {
		close(p[0]);
		return -EIO;
	}
	close(p[0]);
	return 0;
}

static ssize_t read_victim(char *buf)
{
	struct iovec local = {buf, sizeof(secret)}, remote = {secret, sizeof(secret)};

	return process_vm_readv(victim, &local, 1, &remote, 1, 0);
}

static bool victim_page_ok(const char *buf)
{
	for (size_t i = 0; i < sizeof(secret); i++)
		if (buf[i] != (char)(i * 7 + 1))
			return false;
	return true;
}

/* Kept: CAP_SYS_PTRACE only, everywhere; the rest gone, with effects to show for it. */
static int case_memextd(void)
{
	char desc[1024], buf[sizeof(secret)], path[64];
	cap_value_t max = cap_max_bits();
	cap_t now;
	int r, fd;

	r = caps_drop_memextd(desc, sizeof(desc));
	CHECK(r == 0, "caps_drop_memextd: %d %s", r, desc);
	if (r < 0)
		return 1;
	CHECK(strstr(desc, "kept cap_sys_ptrace (to read the memory"), "description: %s", desc);
	CHECK(strstr(desc, "no_new_privs"), "description: %s", desc);
	printf("case memextd: %s\n", desc);

	now = cap_get_proc();
	CHECK(now, "cap_get_proc");
	for (cap_value_t cap = 0; now && cap < max; cap++) {
		bool want = cap == CAP_SYS_PTRACE;
		char *name = cap_to_name(cap);

		CHECK(has(now, cap, CAP_PERMITTED) == want, "%s permitted", name);
		CHECK(has(now, cap, CAP_EFFECTIVE) == want, "%s effective", name);
		CHECK(!has(now, cap, CAP_INHERITABLE), "%s inheritable", name);
		CHECK(cap_get_bound(cap) == (want ? 1 : 0), "%s bounding: %d", name,
		      cap_get_bound(cap));
		CHECK(cap_get_ambient(cap) == 0, "%s ambient", name);
		cap_free(name);
	}
	cap_free(now);
	CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs");

	/* What the kept capability is for still works... */
	memset(buf, 0, sizeof(buf));
	CHECK(read_victim(buf) == (ssize_t)sizeof(buf) && victim_page_ok(buf),
	      "process_vm_readv of another user's process: %s", strerror(errno));
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)victim);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0 && read(fd, buf, 64) > 0, "reading %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	/* ...and what the dropped ones allowed does not. */
	CHECK(chown(tmpfile_path, NOBODY, NOBODY) < 0 && errno == EPERM,
	      "chown worked without CAP_CHOWN");
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)victim);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd < 0 && errno == EACCES, "opened %s without CAP_DAC_READ_SEARCH", path);
	if (fd >= 0)
		close(fd);
	/* A second call keeps the same state (a reload must not fail on it). */
	r = caps_drop_memextd(desc, sizeof(desc));
	CHECK(r == 0, "second call: %d %s", r, desc);
	return failures ? 1 : 0;
}

/* A needed capability that is missing is named, and nothing is dropped silently. */
static int case_missing(void)
{
	cap_value_t v = CAP_SYS_PTRACE;
	cap_t c = cap_get_proc();
	char desc[1024];
	int r;

	if (!c || cap_set_flag(c, CAP_PERMITTED, 1, &v, CAP_CLEAR) < 0 ||
	    cap_set_flag(c, CAP_EFFECTIVE, 1, &v, CAP_CLEAR) < 0 || cap_set_proc(c) < 0) {
		fprintf(stderr, "cannot prepare: %s\n", strerror(errno));
		return 1;
	}
	cap_free(c);
	r = caps_drop_memextd(desc, sizeof(desc));
	CHECK(r == -EPERM, "returned %d: %s", r, desc);
	CHECK(strstr(desc, "cap_sys_ptrace is missing") && strstr(desc, "process_vm_readv"),
	      "message: %s", desc);
	printf("case missing: %s\n", desc);
	/* Refused before anything was dropped: CAP_CHOWN is still there. */
	c = cap_get_proc();
	v = CAP_CHOWN;
	CHECK(c && has(c, v, CAP_PERMITTED) && cap_get_bound(CAP_CHOWN) == 1, "dropped anyway");
	cap_free(c);
	return failures ? 1 : 0;
}

/* With nothing kept, even process_vm_readv of another user's process fails. */
static int case_nothing(void)
{
	char desc[1024], buf[sizeof(secret)];
	cap_t c;
	int r;

	r = caps_drop_to(NULL, 0, desc, sizeof(desc));
	CHECK(r == 0, "returned %d: %s", r, desc);
	c = cap_get_proc();
	CHECK(c && !has(c, CAP_SYS_PTRACE, CAP_PERMITTED) && cap_get_bound(CAP_SYS_PTRACE) == 0,
	      "CAP_SYS_PTRACE still held");
	cap_free(c);
	CHECK(read_victim(buf) < 0 && errno == EPERM, "process_vm_readv worked without caps");
	return failures ? 1 : 0;
}

static void *sleeper(void *arg)
{
	(void)arg;
	pause();
	return NULL;
}

/* Capabilities are per thread: with a second thread running, refuse. */
static int case_threads(void)
{
	char desc[1024];
	pthread_t t;
	cap_t c;
	int r;

	if (pthread_create(&t, NULL, sleeper, NULL) != 0)
		return 1;
	r = caps_drop_memextd(desc, sizeof(desc));
	CHECK(r == -EBUSY && strstr(desc, "2 threads"), "returned %d: %s", r, desc);
	c = cap_get_proc();
	CHECK(c && has(c, CAP_CHOWN, CAP_PERMITTED), "dropped anyway");
	cap_free(c);
	return failures ? 1 : 0;
}

static int run(const char *name, int (*fn)(void))
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		int rc = fn();

		fflush(NULL);
		_exit(rc);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) {
		fprintf(stderr, "case %s: child died\n", name);
		return 1;
	}
	printf("case %s: %s\n", name, WEXITSTATUS(status) == 0 ? "ok" : "FAILED");
	return WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(void)
{
	cap_t c;
	int fd, failed = 0;

	if (geteuid() != 0) {
		printf("skipped: needs root\n");
		return 77;
	}
	c = cap_get_proc();
	if (!c || !has(c, CAP_SYS_PTRACE, CAP_PERMITTED) || !has(c, CAP_SETPCAP, CAP_PERMITTED) ||
	    !has(c, CAP_SETUID, CAP_PERMITTED) || !has(c, CAP_CHOWN, CAP_PERMITTED)) {
		printf("skipped: root without CAP_SYS_PTRACE, CAP_SETPCAP, CAP_SETUID or "
		       "CAP_CHOWN\n");
		return 77;
	}
	cap_free(c);
	fd = mkstemp(tmpfile_path);
	if (fd < 0 || start_victim() < 0) {
		perror("setup");
		return 1;
	}
	close(fd);

	failed += run("memextd", case_memextd);
	failed += run("missing", case_missing);
	failed += run("nothing", case_nothing);
	failed += run("threads", case_threads);

	kill(victim, SIGKILL);
	waitpid(victim, NULL, 0);
	unlink(tmpfile_path);
	printf("test-caps: %d of 4 cases failed\n", failed);
	return failed ? 1 : 0;
}
