/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * Parses a size such as "4096", "64K", "64M", "1.5G", "2T" (binary units, an optional "iB" or
 * "B" after the letter) into bytes. Returns 0, -EINVAL for a malformed string, -ERANGE when the
 * value overflows 64 bits. *ret_bytes is untouched on failure. Async-signal-safe: no malloc, no
 * locale, so the shim may call it from its constructor.
 */
int parse_size(const char *s, uint64_t *ret_bytes);

/* Formats bytes as "1.5 GiB" into buf; returns buf. */
char *format_size(uint64_t bytes, char *buf, size_t len);
