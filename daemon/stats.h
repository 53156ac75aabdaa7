/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the stats socket serves. A request is one line; the answer follows and the connection
 * closes:
 *
 *   stats              human-readable report
 *   stats json         one JSON object (clients, totals, store)
 *   stats prometheus   Prometheus text exposition format
 *   clients            the client table
 *   classes            the pool's size classes
 *   client PID         one line of key=value pairs for one client (memextctl top and drain)
 *   drain PID          bring every page of PID back and evict no more of it; allowed to root
 *                      and to the owner of PID (SO_PEERCRED): the one request that acts
 *
 * Errors are one line starting with "error: ".
 */

#include <stdio.h>
#include <sys/types.h>

struct manager;

enum stats_format {
	STATS_TEXT,
	STATS_JSON,
	STATS_PROMETHEUS,
	STATS_CLIENTS,
	STATS_CLASSES,
};

/* Writes the daemon's figures to f. */
void stats_write(struct manager *m, enum stats_format format, FILE *f);

/* Writes the "client PID" line. Returns 0 or -ESRCH. */
int stats_write_client(struct manager *m, pid_t pid, FILE *f);
