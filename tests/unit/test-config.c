/* SPDX-License-Identifier: MIT */
/*
 * memextd.conf: every key of the table with valid and invalid values (derived from the table's
 * own type and range, so a new key is covered without touching this file), unknown keys and
 * sections, syntax errors, missing files, checks across keys, per-application lookup, reload
 * with a bad file, and the shipped config/memextd.conf against the table.
 *
 * Usage: test-config [SHIPPED_CONF]   (default: config/memextd.conf of this source tree)
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "daemon/config.h"
#include "size.h"

static int failures, checks;
static char tmpdir[] = "/tmp/test-config-XXXXXX";
static char conf_path[256];

#define CHECK(cond, ...)                                                                  \
	do {                                                                              \
		checks++;                                                                 \
		if (!(cond)) {                                                            \
			failures++;                                                       \
			fprintf(stderr, "%s:%d: FAIL (%s): ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                     \
			fputc('\n', stderr);                                              \
		}                                                                         \
	} while (0)

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

/* Writes text to the test's memextd.conf and loads it. */
static int load_text(const char *text, struct memextd_config **ret, char *err, size_t err_len)
{
	write_file(conf_path, text);
	return config_load(conf_path, ret, err, err_len);
}

static int load_fmt(struct memextd_config **ret, char *err, size_t err_len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int load_fmt(struct memextd_config **ret, char *err, size_t err_len, const char *fmt, ...)
{
	char text[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	return load_text(text, ret, err, err_len);
}

/* An error line must name the file and the line; *also* every string in the NULL list. */
static void check_error(int r, const char *err, int want_r, unsigned line, ...)
{
	char where[300];
	const char *s;
	va_list ap;

	CHECK(r == want_r, "returned %d, expected %d; message: %s", r, want_r, err);
	if (line)
		snprintf(where, sizeof(where), "%s:%u: ", conf_path, line);
	else
		snprintf(where, sizeof(where), "%s: ", conf_path);
	CHECK(strncmp(err, where, strlen(where)) == 0, "message does not start with '%s': %s",
	      where, err);
	CHECK(!strchr(err, '\n'), "message is not one line: %s", err);
	va_start(ap, line);
	while ((s = va_arg(ap, const char *)))
		CHECK(strstr(err, s), "message lacks '%s': %s", s, err);
	va_end(ap);
}

/* ---- per-key values, derived from the table ---- */

struct value_case {
	char value[300];
	bool valid;
};

static size_t cases_for(const struct config_key *k, struct value_case *c)
{
	size_t n = 0;

#define ADD(ok, ...)                                                   \
	do {                                                           \
		snprintf(c[n].value, sizeof(c[n].value), __VA_ARGS__); \
		c[n++].valid = (ok);                                   \
	} while (0)

	switch (k->type) {
	case CONFIG_PATH:
		ADD(true, "/run/test/x.sock");
		ADD(true, "/%.*s", (int)k->max - 1,
		    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    "aaaaaaaaaaaa"
		    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    "aaaaaaaaaaa");
		ADD(false, "relative/path");
		ADD(false, "%s", "");
		ADD(false, "/with space");
		ADD(false, "/x # not a comment here");
		ADD(false, "/%.*s", (int)k->max,
		    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		    "bbbbbbbbbbbb"
		    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		    "bbbbbbbbbbb");
		break;
	case CONFIG_UINT:
		ADD(true, "%llu", (unsigned long long)k->min);
		ADD(true, "%llu", (unsigned long long)k->max);
		if (k->flags & CONFIG_POWER_OF_2) {
			ADD(true, "%llu", (unsigned long long)k->max / 2);
			ADD(false, "%llu", (unsigned long long)k->max / 2 + 1);
			ADD(false, "%llu", (unsigned long long)k->max - 1);
		} else {
			ADD(true, "%llu", (unsigned long long)(k->min + k->max) / 2);
		}
		ADD(false, "%llu", (unsigned long long)k->max + 1);
		if (k->min > 0)
			ADD(false, "%llu", (unsigned long long)k->min - 1);
		ADD(false, "-1");
		ADD(false, "abc");
		ADD(false, "1.5");
		ADD(false, "0x10");
		ADD(false, "%s", "");
		ADD(false, "99999999999999999999999");
		break;
	case CONFIG_SIZE:
		ADD(true, "%llu", (unsigned long long)k->min);
		ADD(true, "4K");
		ADD(true, "64M");
		ADD(true, "1.5G");
		ADD(true, "2GiB");
		ADD(true, "%llu", (unsigned long long)k->max);
		ADD(false, "%llu", (unsigned long long)k->max + 1);
		ADD(false, "1X");
		ADD(false, "-5");
		ADD(false, "G");
		ADD(false, "%s", "");
		ADD(false, "99999999999999999999999");
		break;
	case CONFIG_BOOL:
		ADD(true, "yes");
		ADD(true, "no");
		ADD(true, "true");
		ADD(true, "false");
		ADD(true, "on");
		ADD(true, "off");
		ADD(true, "1");
		ADD(true, "0");
		ADD(false, "maybe");
		ADD(false, "YES");
		ADD(false, "%s", "");
		break;
	case CONFIG_ENUM:
		for (const struct config_enum_value *v = k->values; v->name; v++) {
			ADD(true, "%s", v->name);
			if (strcmp(v->name, "pool") != 0) /* "POOL" must fail, "pool" is valid */
				ADD(false, "%c%s", v->name[0] ^ 0x20, v->name + 1);
		}
		ADD(false, "nope");
		ADD(false, "%s", "");
		break;
	case CONFIG_SWAPFILE:
		ADD(true, "/var/lib/memext/swap1");
		ADD(true, "/var/lib/memext/swap1 %llu", (unsigned long long)k->max);
		ADD(true, "/var/lib/memext/swap1    %llu", (unsigned long long)k->min);
		ADD(false, "/var/lib/memext/swap1 %llu", (unsigned long long)k->max + 1);
		ADD(false, "/var/lib/memext/swap1 -1");
		ADD(false, "/var/lib/memext/swap1 high");
		ADD(false, "/var/lib/memext/swap1 1 2");
		ADD(false, "swap1");
		ADD(false, "%s", "");
		break;
	}
#undef ADD
	return n;
}

/* Lines that make a file valid around one key: sections, and keys the checks across keys need. */
static void context_for(const struct config_key *k, const char *value, char *before, size_t blen,
			char *after, size_t alen)
{
	/* The client's watermarks and the system's each hold min <= low <= high. */
	bool client = !strncmp(k->name, "client-", 7);
	const char *pre = client ? "client-" : "", *wm = client ? k->name + 7 : k->name;

	before[0] = after[0] = '\0';
	if (!strcmp(k->section, "app:"))
		snprintf(before, blen, "[app:foo]\n");
	else
		snprintf(before, blen, "[%s]\n", k->section);

	if (!strcmp(wm, "watermark-min"))
		snprintf(after, alen, "%swatermark-low = 50\n%swatermark-high = 50\n", pre, pre);
	else if (!strcmp(wm, "watermark-low"))
		snprintf(after, alen, "%swatermark-min = 0\n%swatermark-high = 50\n", pre, pre);
	else if (!strcmp(wm, "watermark-high"))
		snprintf(after, alen, "%swatermark-min = 0\n%swatermark-low = 0\n", pre, pre);
	else if (!strcmp(k->name, "backend") && strcmp(value, "pool") != 0)
		snprintf(after, alen, "[swap]\nfile = /var/lib/memext/swap0\n");
	else if (k->type == CONFIG_SWAPFILE)
		snprintf(after, alen, "[store]\nbackend = pool+swapfile\n");
	else if (!strcmp(k->name, "socket"))
		snprintf(after, alen, "stats-socket = /run/other/stats\n");
}

/* Checks that a valid value was stored where the table says. */
static void check_applied(const struct config_key *k, const char *value,
			  const struct memextd_config *cfg)
{
	const void *base = cfg;
	struct config_app_settings app;
	uint64_t v = 0;

	if (!strcmp(k->section, "app:")) {
		CHECK(config_lookup_app(cfg, "foo", &app) == 1, "[app:foo] not found");
		base = &app;
	}
	base = (const char *)base + k->offset;
	switch (k->type) {
	case CONFIG_PATH:
		CHECK(!strcmp(*(char *const *)base, value), "%s: '%s' stored as '%s'", k->name,
		      value, *(char *const *)base);
		break;
	case CONFIG_UINT:
		CHECK(*(const unsigned *)base == strtoul(value, NULL, 10), "%s: '%s' stored as %u",
		      k->name, value, *(const unsigned *)base);
		break;
	case CONFIG_SIZE:
		CHECK(parse_size(value, &v) == 0 && *(const uint64_t *)base == v,
		      "%s: '%s' stored as %llu", k->name, value,
		      (unsigned long long)*(const uint64_t *)base);
		break;
	case CONFIG_BOOL: {
		bool want = !strcmp(value, "yes") || !strcmp(value, "true") ||
			    !strcmp(value, "on") || !strcmp(value, "1");
		CHECK(*(const bool *)base == want, "%s: '%s' stored as %d", k->name, value,
		      *(const bool *)base);
		break;
	}
	case CONFIG_ENUM: {
		int got = *(const int *)base, want = -1;

		for (const struct config_enum_value *e = k->values; e->name; e++)
			if (!strcmp(e->name, value))
				want = e->value;
		CHECK(got == want, "%s: '%s' stored as %d", k->name, value, got);
		break;
	}
	case CONFIG_SWAPFILE: {
		char path[256] = "";
		unsigned prio = 0;

		sscanf(value, "%255s %u", path, &prio);
		CHECK(cfg->n_swapfiles == 1 && !strcmp(cfg->swapfiles[0].path, path) &&
			      cfg->swapfiles[0].priority == (int)prio,
		      "file = '%s' stored as %zu files, first '%s' %d", value, cfg->n_swapfiles,
		      cfg->n_swapfiles ? cfg->swapfiles[0].path : "",
		      cfg->n_swapfiles ? cfg->swapfiles[0].priority : -1);
		break;
	}
	}
}

static void test_every_key(void)
{
	for (size_t i = 0; i < config_table_len; i++) {
		const struct config_key *k = &config_table[i];
		struct value_case cases[64];
		size_t n = cases_for(k, cases);
		size_t n_valid = 0, n_invalid = 0;

		CHECK(k->doc && strlen(k->doc) > 20, "%s.%s has no doc", k->section, k->name);
		CHECK(k->value_name, "%s.%s has no value_name", k->section, k->name);
		for (size_t j = 0; j < n; j++) {
			struct memextd_config *cfg = NULL;
			char before[128], after[128], err[1024];
			int r;

			context_for(k, cases[j].value, before, sizeof(before), after,
				    sizeof(after));
			r = load_fmt(&cfg, err, sizeof(err), "# test\n%s%s = %s\n%s", before,
				     k->name, cases[j].value, after);
			if (cases[j].valid) {
				n_valid++;
				CHECK(r == 0, "[%s] %s = '%s' refused: %s", k->section, k->name,
				      cases[j].value, err);
				if (r == 0)
					check_applied(k, cases[j].value, cfg);
				CHECK(r != 0 || cfg != NULL, "no config returned");
			} else {
				char quoted[320];

				n_invalid++;
				snprintf(quoted, sizeof(quoted), "= \"%.299s\"", cases[j].value);
				check_error(r, err, -EINVAL, 3, k->name, quoted,
					    "; accepted: ", NULL);
				CHECK(cfg == NULL, "[%s] %s = '%s': *ret set on failure",
				      k->section, k->name, cases[j].value);
			}
			config_free(cfg);
		}
		CHECK(n_valid >= 1 && n_invalid >= 2, "%s: too few cases", k->name);
	}
}

static void test_defaults(void)
{
	struct memextd_config *cfg = NULL;

	CHECK(config_new_default(&cfg) == 0 && cfg, "config_new_default failed");
	if (!cfg)
		return;
	CHECK(!strcmp(cfg->socket_path, "/run/memext/memextd.sock"), "%s", cfg->socket_path);
	CHECK(!strcmp(cfg->stats_socket_path, "/run/memext/stats.sock"), "%s",
	      cfg->stats_socket_path);
	CHECK(cfg->log_level == LOG_INFO, "%d", cfg->log_level);
	CHECK(cfg->fault_threads == 0 && cfg->reclaim_threads == 1, "threads");
	CHECK(cfg->faultaround_pages == 16 && cfg->batch_pages == 256, "pages");
	CHECK(cfg->default_budget_bytes == 0, "budget");
	CHECK(cfg->watermark_min_pct == 2 && cfg->watermark_low_pct == 5 &&
		      cfg->watermark_high_pct == 10,
	      "watermarks");
	CHECK(cfg->client_watermark_min_pct == 1 && cfg->client_watermark_low_pct == 2 &&
		      cfg->client_watermark_high_pct == 3,
	      "client watermarks");
	CHECK(cfg->compressor == CONFIG_COMPRESSOR_LZ4 && cfg->zstd_level == 1, "compressor");
	CHECK(cfg->store_backend == CONFIG_STORE_POOL && cfg->store_mem_limit_bytes == 0 &&
		      cfg->compaction,
	      "store");
	CHECK(cfg->n_swapfiles == 0 && cfg->n_apps == 0 && cfg->path == NULL, "lists");
	/* Every default is accepted by the parser: a file setting each one explicitly loads. */
	for (size_t i = 0; i < config_table_len; i++) {
		const struct config_key *k = &config_table[i];
		struct memextd_config *c2 = NULL;
		char err[512];
		int r;

		if (!k->default_value)
			continue;
		r = load_fmt(&c2, err, sizeof(err), "[%s]\n%s = %s\n", k->section, k->name,
			     k->default_value);
		CHECK(r == 0, "default of %s refused: %s", k->name, err);
		config_free(c2);
	}
	/* An empty file is the defaults. */
	{
		struct memextd_config *c2 = NULL;
		char a[2048], b[2048], err[512];

		CHECK(load_text("", &c2, err, sizeof(err)) == 0, "empty file refused: %s", err);
		if (c2) {
			config_describe(cfg, a, sizeof(a));
			config_describe(c2, b, sizeof(b));
			CHECK(!strcmp(a, b), "empty file differs from defaults:\n%s\n%s", a, b);
			CHECK(c2->path && !strcmp(c2->path, conf_path), "path not recorded");
		}
		config_free(c2);
	}
	config_free(cfg);
}

static void test_unknown(void)
{
	struct memextd_config *cfg = NULL;
	char err[1024];
	int r;

	r = load_text("[daemon]\nlog-level = debug\n\n[store]\ncompresor = zstd\n", &cfg, err,
		      sizeof(err));
	check_error(r, err, -EINVAL, 5, "[store]", "unknown key 'compresor'",
		    "accepted keys: backend, compressor, zstd-level, memory-limit, compaction",
		    NULL);
	CHECK(!cfg, "cfg set");

	/* A global key in an app section, and an app key in a global section. */
	r = load_text("[app:x]\nfault-threads = 2\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 2, "[app:x]", "unknown key 'fault-threads'",
		    "accepted keys: budget, compressor", NULL);
	r = load_text("[reclaim]\nbudget = 1G\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 2, "unknown key 'budget'", "default-budget", NULL);

	/* Unknown sections, with and without keys; names are case-sensitive. */
	r = load_text("[daemon]\n[stor]\ncompressor = lz4\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 2, "unknown section [stor]",
		    "accepted sections: [daemon], [reclaim], [store], [swap], [app:NAME]", NULL);
	r = load_text("# c\n[Daemon]\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 2, "unknown section [Daemon]", NULL);
	r = load_text("[app:]\nbudget = 1G\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 1, "[app:]", "bad application name", NULL);
	r = load_text("[app:usr/bin/x]\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 1, "bad application name", NULL);
	/* The longest name libinih keeps whole works; one byte more is refused, not truncated. */
	{
		char name[CONFIG_APP_NAME_MAX + 2];
		struct config_app_settings s;

		memset(name, 'n', sizeof(name) - 1);
		name[CONFIG_APP_NAME_MAX] = '\0';
		r = load_fmt(&cfg, err, sizeof(err), "[app:%s]\nbudget = 3M\n", name);
		CHECK(r == 0, "longest name refused: %s", err);
		CHECK(cfg && config_lookup_app(cfg, name, &s) == 1 && s.budget_bytes == 3 << 20,
		      "longest name not matched");
		config_free(cfg);
		cfg = NULL;
		name[CONFIG_APP_NAME_MAX] = 'n';
		name[CONFIG_APP_NAME_MAX + 1] = '\0';
		r = load_fmt(&cfg, err, sizeof(err), "[app:%s]\nbudget = 3M\n", name);
		check_error(r, err, -EINVAL, 1, "bad application name", NULL);
	}

	/* A key before any section. */
	r = load_text("log-level = info\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 1, "log-level", "before any section", "[daemon]", NULL);

	/* The first error is the one reported. */
	r = load_text("[daemon]\nlog-level = loud\nfoo = 1\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 2, "log-level", NULL);
	CHECK(!cfg, "cfg set");
}

static void test_syntax(void)
{
	struct memextd_config *cfg = NULL;
	char err[1024], long_line[400];
	int r;

	r = load_text("[daemon]\nlog-level info\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 2, "expected 'key = value'", NULL);
	r = load_text("[daemon\nlog-level = info\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 1, "expected ']'", NULL);
	r = load_text("[daemon]\nlog-level = info\nlog-level = debug\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 3, "log-level", "already set on line 2", NULL);
	r = load_text("[app:a]\nbudget = 1G\n[app:b]\nbudget = 1G\n[app:a]\nbudget = 2G\n", &cfg,
		      err, sizeof(err));
	check_error(r, err, -EINVAL, 6, "[app:a]", "already set on line 2", NULL);

	memset(long_line, 'x', sizeof(long_line) - 1);
	long_line[sizeof(long_line) - 1] = '\0';
	memcpy(long_line, "socket = /", 10);
	r = load_fmt(&cfg, err, sizeof(err), "[daemon]\n%s\n", long_line);
	check_error(r, err, -EINVAL, 2, "line longer than", NULL);
	CHECK(!cfg, "cfg set");

	/* Indentation, comments, an inline ';' comment, CRLF-free blank lines, a BOM: all fine.
	 * An indented key is a key, never a continuation of the value above. */
	r = load_text("\xEF\xBB\xBF# comment\n; comment\n[daemon]\n  log-level = debug ; why\n"
		      "\tfault-threads = 3\n\n   \n[store]\ncompressor=zstd\n",
		      &cfg, err, sizeof(err));
	CHECK(r == 0, "valid file refused: %s", err);
	if (cfg) {
		CHECK(cfg->log_level == LOG_DEBUG, "log-level %d", cfg->log_level);
		CHECK(cfg->fault_threads == 3, "fault-threads %u", cfg->fault_threads);
		CHECK(cfg->compressor == CONFIG_COMPRESSOR_ZSTD, "compressor");
	}
	config_free(cfg);
	cfg = NULL;
	/* A '#' after a value is part of the value, which the value check then refuses. */
	r = load_text("[daemon]\nlog-level = info # chatty\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 2, "info # chatty", NULL);
}

static void test_missing_file(void)
{
	struct memextd_config *cfg = NULL;
	char err[512], path[300];
	int r;

	snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
	r = config_load(path, &cfg, err, sizeof(err));
	CHECK(r == -ENOENT, "returned %d", r);
	CHECK(strstr(err, path) && strstr(err, "cannot open"), "message: %s", err);
	CHECK(!cfg, "cfg set");
	r = config_check(path, err, sizeof(err));
	CHECK(r == -ENOENT, "config_check returned %d", r);
	/* A directory is not a config file. */
	r = config_load(tmpdir, &cfg, err, sizeof(err));
	CHECK(r < 0 && strstr(err, tmpdir), "directory: %d %s", r, err);
	CHECK(!cfg, "cfg set");
	/* A NULL err buffer is allowed. */
	CHECK(config_load(path, &cfg, NULL, 0) == -ENOENT, "NULL err");
}

static void test_cross_keys(void)
{
	struct memextd_config *cfg = NULL;
	char err[1024];
	int r;

	r = load_text("[reclaim]\nwatermark-min = 8\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 2, "watermark-min = 8", "watermark-low = 5",
		    "watermark-min <= watermark-low <= watermark-high", NULL);
	r = load_text("[reclaim]\nwatermark-high = 30\nwatermark-low = 40\n", &cfg, err,
		      sizeof(err));
	check_error(r, err, -EINVAL, 3, "watermark-low = 40", "watermark-high = 30", NULL);
	/* A file written before the client's own keys: memextd is to say the system's keys no
	 * longer set the clients'. */
	r = load_text("[reclaim]\nwatermark-low = 6\n", &cfg, err, sizeof(err));
	CHECK(r == 0 && cfg->system_watermarks_only, "system watermarks alone: %s", err);
	config_free(cfg);
	r = load_text("[reclaim]\nwatermark-low = 6\nclient-watermark-high = 4\n", &cfg, err,
		      sizeof(err));
	CHECK(r == 0 && !cfg->system_watermarks_only, "both sets: %s", err);
	config_free(cfg);
	r = load_text("[reclaim]\nbatch-pages = 64\n", &cfg, err, sizeof(err));
	CHECK(r == 0 && !cfg->system_watermarks_only, "no watermarks: %s", err);
	config_free(cfg);
	r = load_text("[reclaim]\nclient-watermark-min = 3\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 2, "client-watermark-min = 3", "client-watermark-low = 2",
		    "client-watermark-min <= client-watermark-low <= client-watermark-high", NULL);
	r = load_text("[reclaim]\nclient-watermark-low = 9\nclient-watermark-high = 8\n", &cfg,
		      err, sizeof(err));
	check_error(r, err, -EINVAL, 3, "client-watermark-low = 9", "client-watermark-high = 8",
		    NULL);
	r = load_text("[reclaim]\nwatermark-min = 7\nwatermark-low = 7\nwatermark-high = 7\n", &cfg,
		      err, sizeof(err));
	CHECK(r == 0, "equal watermarks refused: %s", err);
	config_free(cfg);
	cfg = NULL;

	r = load_text("[store]\nbackend = swapfile\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 2, "backend = swapfile", "[swap] file", NULL);
	r = load_text("[swap]\nfile = /var/lib/memext/s0\n", &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 2, "backend = pool", "/var/lib/memext/s0", NULL);
	r = load_text("[store]\nbackend = pool+swapfile\n[swap]\nfile = /a 1\nfile = /b 2\n"
		      "file = /a 3\n",
		      &cfg, err, sizeof(err));
	check_error(r, err, -EINVAL, 6, "/a 3", "already listed on line 4", NULL);
	r = load_text("[daemon]\nstats-socket = /run/memext/memextd.sock\n", &cfg, err,
		      sizeof(err));
	check_error(r, err, -EINVAL, 2, "socket and stats-socket", NULL);

	/* Several swap files keep their order and priorities; at most CONFIG_MAX_SWAPFILES. */
	{
		char text[8192] = "[store]\nbackend = pool+swapfile\n[swap]\n";

		for (int i = 0; i < CONFIG_MAX_SWAPFILES; i++) {
			size_t used = strlen(text);

			snprintf(text + used, sizeof(text) - used, "file = /s/%d %d\n", i, i * 10);
		}
		r = load_text(text, &cfg, err, sizeof(err));
		CHECK(r == 0, "%d swap files refused: %s", CONFIG_MAX_SWAPFILES, err);
		if (cfg) {
			CHECK(cfg->n_swapfiles == CONFIG_MAX_SWAPFILES, "%zu", cfg->n_swapfiles);
			CHECK(!strcmp(cfg->swapfiles[5].path, "/s/5") &&
				      cfg->swapfiles[5].priority == 50,
			      "order");
		}
		config_free(cfg);
		cfg = NULL;
		strcat(text, "file = /s/too-many\n");
		r = load_text(text, &cfg, err, sizeof(err));
		check_error(r, err, -EINVAL, 3 + CONFIG_MAX_SWAPFILES + 1, "more than 32", NULL);
	}
}

static void test_apps(void)
{
	struct memextd_config *cfg = NULL;
	struct config_app_settings s;
	char err[1024];
	int r;

	r = load_text("[reclaim]\ndefault-budget = 2G\n"
		      "[app:postgres]\nbudget = 4G\ncompressor = zstd\n"
		      "[app:redis-server]\nbudget = 512M\n"
		      "[app:python3.11]\ncompressor = zstd\n"
		      "[app:empty]\n",
		      &cfg, err, sizeof(err));
	CHECK(r == 0, "refused: %s", err);
	if (!cfg)
		return;
	CHECK(cfg->n_apps == 4, "%zu apps", cfg->n_apps);

	CHECK(config_lookup_app(cfg, "postgres", &s) == 1, "postgres");
	CHECK(s.budget_bytes == 4ULL << 30 && s.compressor == CONFIG_COMPRESSOR_ZSTD, "postgres");
	CHECK(config_lookup_app(cfg, "redis-server", &s) == 1, "redis");
	CHECK(s.budget_bytes == 512ULL << 20 && s.compressor == CONFIG_COMPRESSOR_LZ4,
	      "redis inherits the compressor");
	CHECK(config_lookup_app(cfg, "python3.11", &s) == 1, "python");
	CHECK(s.budget_bytes == 2ULL << 30 && s.compressor == CONFIG_COMPRESSOR_ZSTD,
	      "python inherits the budget");
	CHECK(config_lookup_app(cfg, "empty", &s) == 1, "empty");
	CHECK(s.budget_bytes == 2ULL << 30 && s.compressor == CONFIG_COMPRESSOR_LZ4, "empty");
	CHECK(config_lookup_app(cfg, "other", &s) == 0, "other matched");
	CHECK(s.budget_bytes == 2ULL << 30 && s.compressor == CONFIG_COMPRESSOR_LZ4, "defaults");
	CHECK(config_lookup_app(cfg, "postgre", &s) == 0, "prefix matched");
	CHECK(config_lookup_app(cfg, "Postgres", &s) == 0, "matching is case-sensitive");
	CHECK(config_lookup_app(cfg, "postgresql", &s) == 0, "longer name matched");
	CHECK(config_lookup_app(cfg, NULL, &s) == 0, "NULL name");
	config_free(cfg);
}

static void test_reload(void)
{
	struct memextd_config *cfg = NULL, *before;
	char err[1024], restart[512], a[2048], b[2048];
	int r;

	r = load_text("[daemon]\nfault-threads = 2\n[store]\ncompressor = zstd\n", &cfg, err,
		      sizeof(err));
	CHECK(r == 0 && cfg, "first load: %s", err);
	if (!cfg)
		return;
	before = cfg;
	config_describe(cfg, a, sizeof(a));

	/* A bad file: error, and the running config is the same object with the same values. */
	write_file(conf_path, "[daemon]\nfault-threads = 2\n[store]\ncompressor = brotli\n");
	r = config_reload(&cfg, conf_path, err, sizeof(err));
	check_error(r, err, -EINVAL, 4, "brotli", "accepted: lz4 or zstd", NULL);
	CHECK(cfg == before, "config replaced by a bad file");
	config_describe(cfg, b, sizeof(b));
	CHECK(!strcmp(a, b), "values changed by a bad file:\n%s\n%s", a, b);
	CHECK(cfg->compressor == CONFIG_COMPRESSOR_ZSTD && cfg->fault_threads == 2, "values");

	/* A file that became unreadable: the same. */
	unlink(conf_path);
	r = config_reload(&cfg, conf_path, err, sizeof(err));
	CHECK(r == -ENOENT && cfg == before, "missing file on reload: %d", r);

	/* A good file replaces it; keys read only at start are named. */
	{
		struct memextd_config *old_copy = NULL;

		write_file(conf_path, "[daemon]\nfault-threads = 2\n");
		CHECK(config_load(conf_path, &old_copy, err, sizeof(err)) == 0, "%s", err);
		write_file(conf_path, "[daemon]\nfault-threads = 4\nlog-level = debug\n"
				      "[store]\nbackend = pool+swapfile\n[swap]\nfile = /s 1\n");
		r = config_reload(&cfg, conf_path, err, sizeof(err));
		CHECK(r == 0, "good reload refused: %s", err);
		CHECK(cfg->fault_threads == 4 && cfg->log_level == LOG_DEBUG &&
			      cfg->compressor == CONFIG_COMPRESSOR_LZ4,
		      "new values not applied");
		if (old_copy) {
			r = config_restart_keys(old_copy, cfg, restart, sizeof(restart));
			CHECK(r == 3, "%d restart keys: %s", r, restart);
			CHECK(!strcmp(restart, "daemon.fault-threads, store.backend, swap.file"),
			      "restart keys: %s", restart);
			CHECK(config_restart_keys(cfg, cfg, NULL, 0) == 0, "self differs");
		}
		config_free(old_copy);
	}
	config_free(cfg);
}

/* The shipped file parses to the defaults and is exactly what the table generates. */
static void test_shipped(const char *shipped)
{
	struct memextd_config *cfg = NULL, *def = NULL;
	char err[1024], a[2048], b[2048], *gen = NULL, *file = NULL;
	size_t gen_len = 0, file_len = 0;
	FILE *f;
	int r;

	/* Generated text documents every key: "#name = " and the accepted values. */
	f = open_memstream(&gen, &gen_len);
	CHECK(f && config_write_default(f) == 0, "config_write_default");
	fclose(f);
	for (size_t i = 0; i < config_table_len; i++) {
		char line[128];

		snprintf(line, sizeof(line), "\n#%s = ", config_table[i].name);
		CHECK(strstr(gen, line), "generated file lacks '%s'", line + 1);
	}

	/* The generated man page section names every key too. */
	{
		char *man = NULL;
		size_t man_len = 0;

		f = open_memstream(&man, &man_len);
		CHECK(f && config_write_man(f) == 0, "config_write_man");
		fclose(f);
		for (size_t i = 0; i < config_table_len; i++) {
			char item[128], *o = item;

			o += sprintf(o, ".TP\n\\fB");
			for (const char *p = config_table[i].name; *p; p++)
				o += *p == '-' ? sprintf(o, "\\-") : sprintf(o, "%c", *p);
			sprintf(o, "\\fR = ");
			CHECK(strstr(man, item), "man section lacks '%s'", item);
		}
		free(man);
	}

	CHECK(access(shipped, R_OK) == 0, "cannot read the shipped config %s: pass its path",
	      shipped);
	r = config_load(shipped, &cfg, err, sizeof(err));
	CHECK(r == 0, "shipped %s refused: %s", shipped, err);
	CHECK(config_new_default(&def) == 0, "defaults");
	if (cfg && def) {
		config_describe(cfg, a, sizeof(a));
		config_describe(def, b, sizeof(b));
		CHECK(!strcmp(a, b), "shipped file is not the defaults:\n%s\n%s", a, b);
	}
	config_free(cfg);
	config_free(def);

	f = fopen(shipped, "re");
	if (f) {
		FILE *m = open_memstream(&file, &file_len);
		int c;

		while ((c = fgetc(f)) != EOF)
			fputc(c, m);
		fclose(m);
		fclose(f);
	}
	CHECK(file && gen && file_len == gen_len && memcmp(file, gen, gen_len) == 0,
	      "%s differs from what daemon/config.c's table generates; regenerate it with "
	      "'BUILD/docs/man/gen-config-docs conf > config/memextd.conf'",
	      shipped);
	free(file);
	free(gen);
}

/*
 * config/memextd.conf: argv[1], else $MEMEXT_SHIPPED_CONF, else found from this file's path
 * (__FILE__ is relative to the build directory, where meson runs tests, or absolute).
 */
static const char *shipped_path(int argc, char **argv)
{
	static char path[4096];
	const char *slash = strrchr(__FILE__, '/');

	if (argc > 1)
		return argv[1];
	if (getenv("MEMEXT_SHIPPED_CONF"))
		return getenv("MEMEXT_SHIPPED_CONF");
	snprintf(path, sizeof(path), "%.*s%s../../config/memextd.conf",
		 slash ? (int)(slash - __FILE__) : 0, __FILE__, slash ? "/" : "");
	return path;
}

int main(int argc, char **argv)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(conf_path, sizeof(conf_path), "%s/memextd.conf", tmpdir);

	test_defaults();
	test_every_key();
	test_unknown();
	test_syntax();
	test_missing_file();
	test_cross_keys();
	test_apps();
	test_reload();
	test_shipped(shipped_path(argc, argv));

	unlink(conf_path);
	rmdir(tmpdir);
	printf("test-config: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
