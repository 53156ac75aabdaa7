/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Swap-in readahead's window, as the kernel's swap_vma_readahead sizes it: a fault right after
 * the pages the previous one brought in is sequential and doubles the window (from 2, up to
 * max); any other fault halves it, so random access soon reads nothing ahead. Pure, so that
 * tests can drive it with traces of faults (tests/unit/test-readahead.c).
 */

#include <stdbool.h>

static inline unsigned readahead_window_next(unsigned window, bool sequential, unsigned max)
{
	if (!sequential)
		return window / 2;
	if (!window)
		return 2 <= max ? 2 : max;
	return window * 2 <= max ? window * 2 : max;
}
