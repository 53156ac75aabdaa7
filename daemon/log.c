/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int max_level = LOG_INFO;

void log_set_max_level(int level)
{
	max_level = level;
}

int log_get_max_level(void)
{
	return max_level;
}

int log_parse_level(const char *s)
{
	static const char *const names[] = {
		[LOG_ERR] = "err", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
		[LOG_INFO] = "info", [LOG_DEBUG] = "debug",
	};

	for (int i = 0; i < (int)ARRAY_SIZE(names); i++)
		if (names[i] && strcmp(s, names[i]) == 0)
			return i;
	if (strcmp(s, "error") == 0)
		return LOG_ERR;
	return -EINVAL;
}

int log_internal(int level, int error, const char *file, int line, const char *fmt, ...)
{
	static const char *const tags[] = {"", "", "", "error: ", "warning: ", "", "", "debug: "};
	static int journal = -1;
	char msg[2048];
	va_list ap;
	int saved = errno;

	if (journal < 0)
		journal = getenv("JOURNAL_STREAM") != NULL;
	/* %m prints the error we were given, not whatever errno happens to hold. */
	errno = abs(error);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One line, whatever a client named itself: a newline in a command name would forge a
	 * log line of any priority (the journal reads "<N>" at the start of each). */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (journal)
		fprintf(stderr, "<%d>%s\n", level, msg);
	else if (level == LOG_DEBUG)
		fprintf(stderr, "memextd: %s%s (%s:%d)\n", tags[level & 7], msg, file, line);
	else
		fprintf(stderr, "memextd: %s%s\n", tags[level & 7], msg);
	errno = saved;
	return -abs(error);
}
