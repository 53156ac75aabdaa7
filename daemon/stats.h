/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the stats socket serves. A request is one line: "stats", "stats json" or "clients";
 * the answer is text (or one JSON object) and the connection closes. Read-only by design:
 * nothing a stats client sends changes the daemon.
 */

#include <stdio.h>

struct manager;

enum stats_format {
	STATS_TEXT,
	STATS_JSON,
};

/* Writes the daemon's figures to f. */
void stats_write(struct manager *m, enum stats_format format, FILE *f);
