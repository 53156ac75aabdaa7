/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * memextd's configuration: /etc/memext/memextd.conf, an INI file read with libinih.
 *
 * Every key is declared once, in config_table[] (config.c): section, name, type, default, range
 * or accepted values, and its documentation. The parser, the built-in defaults, the shipped
 * config/memextd.conf (config_write_default()) and the KEYS section of memextd.conf(5)
 * (config_write_man()) all come from that table; test-config fails when the shipped file
 * differs from what the table generates.
 *
 * Errors: functions return 0 or -errno. Those that take (err, err_len) write one line there
 * naming the file, the line, the section and key, the value and what is accepted, e.g.
 *   memextd.conf:12: [store] compressor = "lz5": unknown value; accepted: lz4, zstd
 * Nothing here logs: the daemon logs that line once.
 *
 * Reload: config_load() always builds a new struct. config_reload() swaps it in only when the
 * new file is valid, so a bad file leaves the running configuration as it was. Keys flagged
 * CONFIG_RESTART (sockets, thread counts, the store backend) take effect at the next start;
 * config_restart_keys() names the ones a reload changed so the daemon can say so.
 *
 * Not thread-safe: load, reload and free on one thread (the event loop); hand other threads
 * the values they need, or a config they may keep until the next reload.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef MEMEXTD_CONFIG_PATH
#define MEMEXTD_CONFIG_PATH "/etc/memext/memextd.conf"
#endif

#define CONFIG_MAX_SWAPFILES 32
/* bytes of NAME in [app:NAME]: libinih keeps 49 bytes of a section name, "app:" included */
#define CONFIG_APP_NAME_MAX 45

enum config_compressor {
	CONFIG_COMPRESSOR_LZ4,
	CONFIG_COMPRESSOR_ZSTD,
};

enum config_store_backend {
	CONFIG_STORE_POOL,	    /* compressed pool in memory only */
	CONFIG_STORE_SWAPFILE,	    /* swap files only, no compression */
	CONFIG_STORE_POOL_SWAPFILE, /* pool, coldest objects written back to swap files */
};

struct config_swapfile {
	char *path;    /* absolute */
	int priority;  /* 0..32767: higher is used first, equal ones round-robin */
	unsigned line; /* where it was set, for messages; 0 for built-in */
};

/* What applies to one application: its [app:NAME] section over the global keys. */
struct config_app_settings {
	uint64_t budget_bytes; /* 0: no budget of its own (only system memory pressure reclaims) */
	int compressor;	       /* enum config_compressor */
};

struct config_app;

struct memextd_config {
	char *path; /* file it was read from; NULL for the built-in defaults */

	/* [daemon] */
	char *socket_path;	 /* client socket (SOCK_SEQPACKET), when not socket-activated */
	char *stats_socket_path; /* stats socket (SOCK_STREAM), when not socket-activated */
	int log_level;		 /* syslog priority: LOG_ERR..LOG_DEBUG */
	unsigned fault_threads;	 /* 0: one per online CPU, each pinned to it */
	unsigned fault_poll_us;	 /* a fault thread reads on this long after the last fault */
	unsigned reclaim_threads;
	unsigned faultaround_pages; /* power of two: window of never-evicted pages mapped at once */

	/* [reclaim] */
	uint64_t default_budget_bytes; /* for a client that sets no MEMEXT_BUDGET; 0: none */
	unsigned batch_pages;	       /* pages evicted together, <= MEMEXT_STAGING_PAGES */
	unsigned unevictable_retry_sec; /* unevictable pages go back on the lists this often */
	bool evict_stopped; /* let a stopped process's agent run to evict from it (agenthold.h) */
	unsigned fork_claim_timeout_sec; /* an unclaimed fork snapshot is dropped after this */
	/* Percent of a client's budget kept free, as the kernel's zone watermarks: reclaim wakes
	 * when free headroom drops below low and stops above high; below min a faulting thread
	 * waits for reclaim. min <= low <= high. */
	unsigned client_watermark_min_pct;
	unsigned client_watermark_low_pct;
	unsigned client_watermark_high_pct;
	/* The same in percent of MemTotal (MemAvailable's headroom), for the system as a whole. */
	unsigned watermark_min_pct;
	unsigned watermark_low_pct;
	unsigned watermark_high_pct;
	/* The file sets watermark-* but no client-watermark-*: before session 5 the former also
	 * applied to client budgets, so memextd says they no longer do. */
	bool system_watermarks_only;
	/* PSI "some avg10" of memory, in percent, at which reclaim runs for the whole system
	 * as below watermark-low; 0: PSI is not looked at. */
	unsigned pressure_avg10_pct;
	/* Percent of its budget a client's resident memory must reach before memextd registers
	 * its memory with userfaultfd: below it the process runs as it would without memext. */
	unsigned track_above_pct;

	/* [store] */
	int compressor;			/* enum config_compressor */
	int zstd_level;			/* 1..19 */
	int store_backend;		/* enum config_store_backend */
	uint64_t store_mem_limit_bytes; /* pool limit; 0: none (MemAvailable still applies) */
	bool compaction;

	/* [swap] */
	struct config_swapfile *swapfiles; /* n_swapfiles, in file order */
	size_t n_swapfiles;

	/* [app:NAME] sections, in file order: see config_lookup_app() */
	struct config_app *apps;
	size_t n_apps;
};

/* ---- the table ---- */

enum config_type {
	CONFIG_PATH,	 /* char *: absolute, no whitespace, at most max bytes */
	CONFIG_UINT,	 /* unsigned: decimal, in [min, max] */
	CONFIG_SIZE,	 /* uint64_t bytes: parse_size(), in [min, max] */
	CONFIG_BOOL,	 /* bool: yes/no, true/false, on/off, 1/0 */
	CONFIG_ENUM,	 /* int: one of values[] */
	CONFIG_SWAPFILE, /* repeatable "PATH [PRIORITY]", appended to swapfiles[] */
};

#define CONFIG_RESTART (1U << 0)    /* read at start only: a reload does not apply it */
#define CONFIG_REPEATABLE (1U << 1) /* may appear several times in its section */
#define CONFIG_POWER_OF_2 (1U << 2) /* UINT: only powers of two */

struct config_enum_value {
	const char *name;
	int value;
};

struct config_key {
	const char *section; /* "daemon", "reclaim", "store", "swap", or "app:" for [app:NAME] */
	const char *name;
	enum config_type type;
	const char *default_value; /* as written in the file; NULL: none (see inherits) */
	uint64_t min, max;	   /* UINT, SIZE, SWAPFILE (priority): inclusive range; PATH: max
				    * length in bytes */
	const struct config_enum_value *values; /* ENUM: terminated by a NULL name */
	const char *value_name; /* how the docs name the value: "PATH", "SIZE", "N", ... */
	const char *doc;	/* plain text, sentences; no troff, no line breaks */
	unsigned flags;		/* CONFIG_RESTART, CONFIG_REPEATABLE, CONFIG_POWER_OF_2 */
	size_t offset;		/* of the field in struct memextd_config, or in struct
				 * config_app_settings for "app:" keys */
	const char *inherits;	/* "app:" keys: the global key used when unset, "[section] key" */
	size_t inherit_offset;	/* ... and its field in struct memextd_config */
};

extern const struct config_key config_table[];
extern const size_t config_table_len;

/* ---- operations ---- */

/* Returns 0 and the built-in defaults in *ret, or -ENOMEM. */
int config_new_default(struct memextd_config **ret);

/*
 * Reads and validates path. Returns 0 and a new config in *ret (untouched on failure), or
 * -ENOENT/-EACCES/... (cannot open), -EINVAL (bad content), -EIO, -ENOMEM, with the reason in
 * err.
 */
int config_load(const char *path, struct memextd_config **ret, char *err, size_t err_len);

/* Validates path without keeping anything: memextd --check-config FILE. Returns as config_load. */
int config_check(const char *path, char *err, size_t err_len);

/*
 * Loads path into a new config; on success frees *cfg and replaces it, on failure leaves *cfg
 * exactly as it was and returns the error (with err filled).
 */
int config_reload(struct memextd_config **cfg, const char *path, char *err, size_t err_len);

/*
 * Sets one key as if "[section] key = value" were a line of a file: how the command line
 * overrides the file. The value is checked as the file's would be; the keys that depend on
 * each other are checked by config_validate() once all are set. Returns 0, or -errno with the
 * message in err ("command line: ...").
 */
int config_set(struct memextd_config *cfg, const char *section, const char *key,
	       const char *value, char *err, size_t err_len);

/* Checks the keys that depend on each other (watermarks, backend and swap files, sockets). */
int config_validate(struct memextd_config *cfg, char *err, size_t err_len);
/* A decimal number, digits only (no sign, no space). 0, -EINVAL or -ERANGE. */
int config_parse_uint64(const char *s, uint64_t *ret);

void config_free(struct memextd_config *cfg);

/*
 * Settings for the executable named exe_name (the base name of /proc/PID/exe; for a script,
 * its interpreter): its [app:NAME] section where there is one, the global keys for anything the
 * section leaves unset. Matching is exact and case-sensitive. Returns 1 when a section matched,
 * 0 when only global keys apply; *ret is filled either way.
 */
int config_lookup_app(const struct memextd_config *cfg, const char *exe_name,
		      struct config_app_settings *ret);

/*
 * Compares the CONFIG_RESTART keys of old and new. Returns how many differ and writes their
 * "section.key" names, comma-separated, into buf (may be NULL).
 */
int config_restart_keys(const struct memextd_config *old_cfg, const struct memextd_config *new_cfg,
			char *buf, size_t len);

/* One line summary of the effective values, for the log after a (re)load. */
void config_describe(const struct memextd_config *cfg, char *buf, size_t len);

const char *config_compressor_to_string(int compressor);
const char *config_store_backend_to_string(int backend);
const char *config_log_level_to_string(int level);

/* The documented default file, as shipped in config/memextd.conf. Returns 0 or -EIO. */
int config_write_default(FILE *f);

/* The KEYS part of memextd.conf(5) in troff (-man), one .SS per section. Returns 0 or -EIO. */
int config_write_man(FILE *f);
