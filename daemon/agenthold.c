/* SPDX-License-Identifier: MIT */
#include "agenthold.h"

#include <errno.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "procfs.h"

/* How long agent_hold() waits for a report of the thread and for it to run, and agent_unhold()
 * for it to stop before it waits as long as it takes. */
#define HOLD_WAIT_MSEC 100
#define UNHOLD_WAIT_MSEC 5000

/* Reports of this thread's own tracees only (a sibling thread may trace another). */
#define WAIT_FLAGS (__WALL | __WNOTHREAD)

/*
 * Restarts a tracee that stopped: a group stop's report (PTRACE_EVENT_STOP) with no signal, a
 * signal-delivery stop with its signal, so that nothing is lost.
 */
static void restart(pid_t tid, int status)
{
	int sig = (status >> 16) == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(status);

	(void)ptrace(PTRACE_CONT, tid, NULL, (void *)(long)sig);
}

/* Waits up to msec for a report of tid: 1 a stop (in *status), 0 none yet, -1 it is gone. */
static int wait_report(pid_t tid, int *status, int msec)
{
	for (int i = 0;; i++) {
		pid_t w = waitpid(tid, status, WAIT_FLAGS | WNOHANG);

		if (w == tid)
			return WIFSTOPPED(*status) ? 1 : -1;
		if (w < 0)
			return -1;
		if (i >= msec)
			return 0;
		usleep(1000);
	}
}

bool agent_hold_kick(pid_t tid)
{
	int status;
	bool stopped = false;

	while (waitpid(tid, &status, WAIT_FLAGS | WNOHANG) == tid && WIFSTOPPED(status)) {
		restart(tid, status);
		stopped = true;
	}
	return stopped;
}

int agent_hold(pid_t tid, pid_t tgid)
{
	int status, r;

	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0)
		return -errno;
	/* Attached, the tid cannot go to another thread: it must be a thread of the client. */
	if (proc_tgid(tid) != tgid) {
		agent_unhold(tid);
		return -ESRCH;
	}
	/*
	 * Seized in its group stop, the thread reports it (PTRACE_EVENT_STOP) and waits to be
	 * restarted. No report: the process was continued just now; an interrupt makes one
	 * (only then: an interrupt of a stopped thread would stop it again after the restart).
	 */
	r = wait_report(tid, &status, HOLD_WAIT_MSEC);
	if (r == 0) {
		(void)ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
		r = wait_report(tid, &status, HOLD_WAIT_MSEC);
	}
	if (r < 0)
		return -ESRCH;
	if (r > 0) {
		restart(tid, status);
		for (int i = 0; i < HOLD_WAIT_MSEC; i++) {
			char state;

			(void)agent_hold_kick(tid);
			state = proc_state(tid);
			if (state != 't' && state != 'T')
				return 0; /* it runs (or it is gone: the caller finds out) */
			usleep(1000);
		}
	}
	/* It does not run (a frozen cgroup): let go of it. */
	agent_unhold(tid);
	return -EAGAIN;
}

void agent_unhold(pid_t tid)
{
	int status = 0, r;

	/* Detaching needs the tracee stopped. */
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) < 0)
		return; /* gone, or not ours any more */
	r = wait_report(tid, &status, UNHOLD_WAIT_MSEC);
	if (r == 0) {
		/* In a long sleep, or frozen: it stops (or exits) once it leaves it. Left traced,
		 * it would stay stopped for good once its process is continued. */
		log_warning("thread %d: waiting for it to stop, to detach from it", (int)tid);
		r = waitpid(tid, &status, WAIT_FLAGS) == tid && WIFSTOPPED(status) ? 1 : -1;
	}
	if (r < 0)
		return; /* it exited */
	/* A signal it stopped for goes with it; the group stop is the kernel's to restore. */
	if (ptrace(PTRACE_DETACH, tid, NULL,
		   (void *)(long)((status >> 16) == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(status))) < 0)
		log_warning_errno(-errno, "thread %d: cannot detach from it: %m", (int)tid);
}
