/* SPDX-License-Identifier: MIT */
#include "agenthold.h"

#include <errno.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "procfs.h"

/* How long agent_hold() waits for the thread to run, agent_unhold() for it to stop. */
#define HOLD_WAIT_MSEC 100
#define UNHOLD_WAIT_MSEC 5000

/*
 * Restarts a tracee that stopped: a group stop's notification (PTRACE_EVENT_STOP) with no
 * signal, a signal-delivery stop with its signal, so that nothing is lost.
 */
static void restart(pid_t tid, int status)
{
	int sig = (status >> 16) == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(status);

	(void)ptrace(PTRACE_CONT, tid, NULL, (void *)(long)sig);
}

bool agent_hold_kick(pid_t tid)
{
	int status;
	bool stopped = false;

	while (waitpid(tid, &status, __WALL | WNOHANG) == tid && WIFSTOPPED(status)) {
		restart(tid, status);
		stopped = true;
	}
	return stopped;
}

int agent_hold(pid_t tid)
{
	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0)
		return -errno;
	/*
	 * Attached to a stopped thread, the kernel reports its group stop (PTRACE_EVENT_STOP)
	 * and holds it until restarted; the interrupt makes sure of a stop to restart even if
	 * the process was continued just now. Further reports come later: agent_hold_kick().
	 */
	(void)ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
	for (int i = 0; i < HOLD_WAIT_MSEC; i++) {
		char state;

		(void)agent_hold_kick(tid);
		state = proc_state(tid);
		if (state != 't' && state != 'T')
			break; /* it runs (or is gone) */
		usleep(1000);
	}
	return 0;
}

void agent_unhold(pid_t tid)
{
	int status = 0;

	/* Detaching needs the tracee stopped. */
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) < 0)
		return; /* gone, or not ours any more */
	for (int i = 0; i < UNHOLD_WAIT_MSEC; i++) {
		pid_t w = waitpid(tid, &status, __WALL | WNOHANG);

		if (w == tid && WIFSTOPPED(status))
			break;
		if (w < 0 || (w == tid && !WIFSTOPPED(status)))
			return; /* it exited */
		usleep(1000);
	}
	/* A signal it stopped for goes with it; the group stop is the kernel's to restore. */
	if (ptrace(PTRACE_DETACH, tid, NULL,
		   (void *)(long)((status >> 16) == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(status))) < 0)
		log_warning_errno(-errno, "thread %d: cannot detach from it: %m", (int)tid);
}
