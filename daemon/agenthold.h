/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Evicting from a process stopped by a signal (Ctrl-Z, SIGSTOP): only its agent thread can move
 * its pages out, and it is stopped with the rest. memextd, which keeps CAP_SYS_PTRACE, attaches
 * to that one thread (PTRACE_SEIZE) and restarts it: a restarted tracee runs even while its
 * thread group stays stopped, so the agent answers while the application does not move. Once
 * done, the thread is interrupted and detached, and the kernel puts it back into the group stop
 * (or lets it run, if the process was continued meanwhile). Should memextd die in between, the
 * kernel detaches it the same way. While held, the thread stops again only for a signal or a
 * new group stop (a second SIGSTOP): agent_hold_kick() restarts it.
 *
 * Only for a thread stopped by a signal: a thread a debugger holds cannot be attached to (EPERM),
 * and one in a frozen cgroup would not run. The calling thread becomes the tracer: it alone may
 * make the other calls.
 */

#include <stdbool.h>
#include <sys/types.h>

/*
 * Attaches to tid, a thread of process tgid, and lets it run. Returns 0, or -errno (then
 * nothing is attached): -ESRCH not a thread of tgid, or gone; -EAGAIN it does not run (frozen).
 */
int agent_hold(pid_t tid, pid_t tgid);

/* Restarts tid if it stopped under our attachment: returns whether it was stopped. */
bool agent_hold_kick(pid_t tid);

/* Detaches from tid, which returns to the group stop if the process is still stopped. Waits
 * for it to stop as long as it takes (after 5 s it says so). */
void agent_unhold(pid_t tid);
