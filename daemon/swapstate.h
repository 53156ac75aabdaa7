/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The swap state file (memextd.state, beside the client socket): the processes whose evicted
 * pages may sit in swap areas. A page in an area is a slot, and a daemon that starts after a
 * crash must not hand out a slot its predecessor's page tables still name. Those tables are in
 * the dead daemon's pmem, which the new daemon only gets with the first reconnecting client;
 * this file tells it at start-up, before any slot is handed out, whom to wait for
 * (docs/ARCHITECTURE.md, "Surviving a daemon crash").
 *
 * Text, one line each: "memextd PID" (who wrote it), then "proc PID START_TIME" (start time as
 * /proc/PID/stat field 22, so a reused pid is another process) and "fork PID TOKEN" (a fork
 * snapshot of PID's waiting for the child, which may claim it after PID is gone). A line is appended for every
 * new client before it can have a page evicted; the file is rewritten (a new file renamed over
 * it) to drop the ones that left. Nothing here logs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct swapstate_proc {
	pid_t pid;
	uint64_t start_time; /* 0 for a fork snapshot */
	bool fork;	     /* a fork snapshot of pid's, named by token */
	uint32_t token;
};

/*
 * Reads path: the processes it lists, each once, in *ret (malloc'd; NULL when none). Lines it
 * does not understand are skipped (a line cut short by a crash, say). Returns the number, or
 * -errno (-ENOENT: no file, as on a first start).
 */
int swapstate_read(const char *path, struct swapstate_proc **ret);

/* Replaces path with a file listing procs, written by daemon_pid. Returns 0 or -errno. */
int swapstate_write(const char *path, pid_t daemon_pid, const struct swapstate_proc *procs,
		    size_t n);

/* Adds one process to path with a single append. Returns 0 or -errno. */
int swapstate_append(const char *path, const struct swapstate_proc *p);

/*
 * For a tool about to overwrite a swap area: the processes path lists whose evicted pages may
 * be in a swap area that no memextd holds, because the memextd that wrote the file is not
 * running (a running one keeps its areas locked). Processes count while they live, fork
 * snapshots always (their child waits for a memextd, which drops the line once it gave up on
 * it). Returns the number (0 without a file), or -errno.
 */
int swapstate_orphans(const char *path);
