/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/*
 * Whether this kernel sends an UNMAP for the source of an mremap after its REMAP: a probe at
 * start (a private userfaultfd, two pages moved, a thread reading the events). fault.c then
 * knows that UNMAP for what it is (handle_remap). False when the probe cannot tell.
 */
bool remap_unmaps_source(void);
