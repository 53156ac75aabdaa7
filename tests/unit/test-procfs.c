/* SPDX-License-Identifier: MIT */
/*
 * What /proc says about another process (daemon/procfs.c): a command name with spaces and
 * parentheses, a process stopped by a signal, by a debugger and in a frozen cgroup (v1
 * freezer, where it can be made), one running again, and one gone; and which PID namespace a
 * process lives in.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/procfs.h"

#include "check.h"

#define ODD_NAME "a) b (c"

static pid_t start_child(void)
{
	pid_t pid = fork();

	check(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_NAME, ODD_NAME);
		for (;;)
			pause();
	}
	return pid;
}

/* Waits (no time limit: a hang is the failure) until the child has renamed itself. */
/*
 * A process in a PID namespace of its own (as root): whatever its numbers, not ours. A helper
 * makes the namespace, so that this process's own later children (LeakSanitizer's tracer, in
 * the sanitizer build) stay in ours.
 */
static void test_other_pid_ns(void)
{
	int fds[2], status;
	pid_t helper, inner = 0;

	check(pipe(fds) == 0);
	helper = fork();
	check(helper >= 0);
	if (helper == 0) {
		pid_t pid = unshare(CLONE_NEWPID) == 0 ? fork() : -errno;

		if (pid == 0) {
			for (;;)
				pause();
		}
		if (write(fds[1], &pid, sizeof(pid)) != sizeof(pid))
			_exit(1);
		if (pid > 0)
			(void)waitpid(pid, &status, 0);
		_exit(0);
	}
	check(read(fds[0], &inner, sizeof(inner)) == sizeof(inner));
	if (inner < 0) {
		check(inner == -EPERM || inner == -EINVAL);
		printf("pid namespace: cannot make one (%s), only ours checked\n", strerror(-inner));
	} else {
		check(inner > 0);
		check(!proc_in_our_pid_ns(inner));
		check(proc_ns_local(inner, 0) == 1);
		check(kill(inner, SIGKILL) == 0);
		printf("pid namespace: ok\n");
	}
	check(waitpid(helper, &status, 0) == helper && WIFEXITED(status) &&
	      WEXITSTATUS(status) == 0);
	close(fds[0]);
	close(fds[1]);
}

static void wait_renamed(pid_t pid)
{
	for (;;) {
		char buf[1024];
		const char *comm, *fields = proc_stat(pid, buf, sizeof(buf), &comm);

		check(fields);
		if (strcmp(comm, ODD_NAME) == 0) {
			check(fields[0] == 'S' || fields[0] == 'R');
			return;
		}
		usleep(1000);
	}
}

static void test_signal_stop(pid_t pid)
{
	int status;

	check(!proc_stopped(pid));
	check(kill(pid, SIGSTOP) == 0);
	check(waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status));
	check(proc_stopped(pid));
	check(proc_signal_stopped(pid));
	check(proc_state(pid) == 'T');
	check(kill(pid, SIGCONT) == 0);
	check(waitpid(pid, &status, WCONTINUED) == pid && WIFCONTINUED(status));
	check(!proc_stopped(pid));
	check(!proc_signal_stopped(pid));
	printf("stopped by a signal: ok\n");
}

static void test_debugger_stop(pid_t pid)
{
	int status;

	check(ptrace(PTRACE_SEIZE, pid, 0, 0) == 0);
	check(ptrace(PTRACE_INTERRUPT, pid, 0, 0) == 0);
	check(waitpid(pid, &status, __WALL) == pid && WIFSTOPPED(status));
	check(proc_stopped(pid));
	/* Not by a signal: memextd must not attach to it (agenthold.h). */
	check(!proc_signal_stopped(pid));
	check(ptrace(PTRACE_DETACH, pid, 0, 0) == 0);
	printf("stopped by a debugger: ok\n");
}

static bool write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	bool ok;

	if (!f)
		return false;
	ok = fputs(text, f) >= 0;
	return fclose(f) == 0 && ok;
}

static void test_freezer(pid_t pid)
{
	char dir[128], file[192], text[32];

	snprintf(dir, sizeof(dir), "/sys/fs/cgroup/freezer/memext-test-procfs-%d", (int)getpid());
	if (mkdir(dir, 0755) < 0) {
		printf("frozen cgroup: not tested (no cgroup v1 freezer to use here: %s)\n",
		       strerror(errno));
		return;
	}
	snprintf(file, sizeof(file), "%s/tasks", dir);
	snprintf(text, sizeof(text), "%d", (int)pid);
	check(write_text(file, text));
	check(!proc_stopped(pid));
	snprintf(file, sizeof(file), "%s/freezer.state", dir);
	check(write_text(file, "FROZEN"));
	check(proc_stopped(pid)); /* FREEZING counts too: it cannot run either way */
	check(write_text(file, "THAWED"));
	check(!proc_stopped(pid));
	check(write_text("/sys/fs/cgroup/freezer/tasks", text));
	check(rmdir(dir) == 0);
	printf("frozen cgroup: ok\n");
}

int main(void)
{
	pid_t pid = start_child();
	int status;

	check(proc_start_time(getpid()) > 0);
	wait_renamed(pid);
	check(proc_start_time(pid) >= proc_start_time(getpid()));
	check(proc_tgid(getpid()) == getpid());
	check(proc_tgid(pid) == pid);
	test_signal_stop(pid);
	test_debugger_stop(pid);
	test_freezer(pid);
	check(proc_in_our_pid_ns(getpid()) && proc_in_our_pid_ns(pid));
	test_other_pid_ns();
	check(kill(pid, SIGKILL) == 0);
	check(waitpid(pid, &status, 0) == pid);
	check(!proc_stopped(pid));
	check(!proc_in_our_pid_ns(pid));
	check(proc_start_time(pid) == 0);
	check(proc_tgid(pid) == 0 && proc_state(pid) == 0);
	printf("gone: ok\n");
	return 0;
}
