/* SPDX-License-Identifier: MIT */
/*
 * Generates the documentation of memextd.conf from the key table in daemon/config.c, so the
 * docs cannot drift from the parser:
 *   gen-config-docs conf                            the documented default memextd.conf
 *   gen-config-docs man TEMPLATE OUTPUT [VERSION]   TEMPLATE with its "@CONFIG_KEYS@" line
 *                                                   replaced by the KEYS section, and every
 *                                                   "@VERSION@" by VERSION
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/config.h"

static int write_man(const char *template_path, const char *out_path, const char *version)
{
	FILE *in = fopen(template_path, "re"), *out;
	char line[4096];
	int keys = 0;

	if (!in) {
		fprintf(stderr, "gen-config-docs: %s: %s\n", template_path, strerror(errno));
		return 1;
	}
	out = fopen(out_path, "we");
	if (!out) {
		fprintf(stderr, "gen-config-docs: %s: %s\n", out_path, strerror(errno));
		fclose(in);
		return 1;
	}
	while (fgets(line, sizeof(line), in)) {
		char *at;

		if (strcmp(line, "@CONFIG_KEYS@\n") == 0) {
			if (config_write_man(out) < 0)
				break;
			keys++;
			continue;
		}
		for (char *p = line; (at = strstr(p, "@VERSION@")); p = at) {
			fwrite(p, 1, (size_t)(at - p), out);
			fputs(version, out);
			at += strlen("@VERSION@");
			memmove(line, at, strlen(at) + 1);
			at = line;
		}
		fputs(line, out);
	}
	if (ferror(in) || ferror(out) || keys != 1) {
		fprintf(stderr, "gen-config-docs: %s: %s\n", template_path,
			keys != 1 ? "needs exactly one @CONFIG_KEYS@ line" : "I/O error");
		fclose(in);
		fclose(out);
		remove(out_path);
		return 1;
	}
	fclose(in);
	return fclose(out) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "conf") == 0)
		return config_write_default(stdout) < 0 || fflush(stdout) != 0;
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "man") == 0)
		return write_man(argv[2], argv[3], argc == 5 ? argv[4] : "");
	fprintf(stderr, "usage: gen-config-docs conf\n"
			"       gen-config-docs man TEMPLATE OUTPUT [VERSION]\n");
	return 2;
}
