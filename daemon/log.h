/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The daemon's logger: stderr, with sd-daemon "<N>" priority prefixes when stderr is the
 * journal (JOURNAL_STREAM set), so journald keeps the levels. Errors are logged once, where
 * they are handled; the *_errno variants return the negative errno they were given so a caller
 * can `return log_error_errno(r, "...: %m");` (%m prints strerror(-r)).
 */

#include <syslog.h>

#include "macro.h"

void log_set_max_level(int level);
int log_get_max_level(void);
int log_parse_level(const char *s); /* "err", "warning", "notice", "info", "debug" -> LOG_* */

int log_internal(int level, int error, const char *file, int line, const char *fmt, ...)
	_printf_(5, 6);

#define log_full_errno(level, error, ...)                                                          \
	({                                                                                         \
		int _l = (level), _e = (error);                                                    \
		_l <= log_get_max_level() ? log_internal(_l, _e, __FILE__, __LINE__, __VA_ARGS__)  \
					  : -abs(_e);                                              \
	})

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
