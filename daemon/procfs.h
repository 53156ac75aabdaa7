/* SPDX-License-Identifier: MIT */
#pragma once

/* What /proc (and the cgroup freezer) say about another process. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Reads /proc/PID/stat into buf; *ret_comm points at the command name (after its '('), and
 * the return value at the fields after it (state first), or NULL when pid is gone. comm may
 * hold spaces and parentheses: it ends at the last ')'.
 */
const char *proc_stat(pid_t pid, char *buf, size_t size, const char **ret_comm);

/* Start time of pid (/proc/PID/stat field 22), or 0 when it is gone. */
uint64_t proc_start_time(pid_t pid);

/*
 * Whether pid cannot run now until someone else lets it: stopped by a signal (Ctrl-Z,
 * SIGSTOP), stopped by a debugger, or in a frozen cgroup (v1 freezer or v2 cgroup.freeze).
 * False when it is gone or nothing can be read.
 */
bool proc_stopped(pid_t pid);

/* pid's state letter (R, S, D, T, t, ...), or 0 when it is gone. */
char proc_state(pid_t pid);

/* Whether one of pid's cgroups is frozen (v1 freezer or v2 cgroup.freeze). */
bool proc_frozen(pid_t pid);

/* The process (thread group) thread tid belongs to, or 0 when it is gone. */
pid_t proc_tgid(pid_t tid);

/* Whether pid is stopped by a signal alone ('T': not by a debugger, not frozen). */
bool proc_signal_stopped(pid_t pid);

/*
 * PID namespaces. A process in a namespace of its own (unshare --pid, a container, a browser's
 * zygote) knows itself by another number than the daemon does. proc_ns_local: the number
 * process pid (or its thread tid, when not 0) has in its own, innermost namespace (NSpid in
 * its status), 0 when that cannot be read. proc_tid_from_local: the thread of pid that calls
 * itself local there, as the daemon numbers it, or 0. proc_ppid: the parent, as the daemon
 * numbers it (0 when it is outside the daemon's namespace).
 */
pid_t proc_ns_local(pid_t pid, pid_t tid);
pid_t proc_tid_from_local(pid_t pid, pid_t local);
pid_t proc_ppid(pid_t pid);
/* Whether pid lives in the daemon's own PID namespace (and numbers its children as we do). */
bool proc_in_our_pid_ns(pid_t pid);

/* A thread inside mremap(from, old_len, new_len, flags, to), its arguments as given. */
struct proc_mremap {
	pid_t tid;
	uint64_t from, old_len, new_len, flags;
	uint64_t to; /* with MREMAP_FIXED, else 0 */
};

#define PROC_MAX_MREMAPS 64

/*
 * The threads of pid inside mremap(), read from /proc/PID/task/TID/syscall, which gives a
 * waiting thread's arguments: how many (at most max), or -errno when the task list cannot be
 * read. *ret_unread: 0, -EAGAIN when a thread was running (its arguments cannot be read then),
 * or -EACCES or another -errno when a thread's file could not be read (the file is its owner's
 * alone: another user's needs CAP_DAC_READ_SEARCH, which memextd drops).
 */
int proc_mremaps(pid_t pid, struct proc_mremap *out, unsigned max, int *ret_unread);
/* The same of one thread: 1 (inside mremap(), *ret filled), 0 (not, or gone), -EAGAIN
 * (running), or -errno. */
int proc_thread_mremap(pid_t pid, pid_t tid, struct proc_mremap *ret);

/*
 * The lengths of the mremap(from, old_len, new_len, flags, to) a thread of pid is inside (to
 * only checked with MREMAP_FIXED), read from /proc/PID/task/TID/syscall, which gives a
 * waiting thread's arguments: 0 and both lengths as given (not rounded), -ENOENT when no thread
 * is in such a call, -EAGAIN when none was found but one was running (its arguments cannot be
 * read then), -EACCES and other -errno when a thread's or the task list cannot be read (the
 * file is its owner's alone: another user's needs CAP_DAC_READ_SEARCH, which memextd drops).
 */
int proc_mremap_lengths(pid_t pid, uint64_t from, uint64_t to, uint64_t *ret_old_len,
			uint64_t *ret_new_len);
