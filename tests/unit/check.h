/* SPDX-License-Identifier: MIT */
#pragma once

/* The unit tests' assertion: names the file, line and expression, and aborts (a failed test
 * never goes on to report a pass). */

#include <stdio.h>
#include <stdlib.h>

#define check(expr)                                                                              \
	do {                                                                                     \
		if (!(expr)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
			abort();                                                                 \
		}                                                                                \
	} while (0)
