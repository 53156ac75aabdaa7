/* SPDX-License-Identifier: MIT */
/*
 * memextd.conf: one table of keys (config_table[]), a libinih parser driven by it, checks that
 * span keys, and the generators of the documented default file and of the man page's KEYS
 * section. See config.h for the contract.
 *
 * libinih (Debian's build) is used with its defaults: no line numbers in the handler, lines of
 * at most INI_MAX_LINE - 1 bytes, multi-line continuation on. The reader below counts lines
 * (inih calls it once per line and the handler before the next read), refuses longer lines
 * instead of letting inih split them, strips leading whitespace so an indented key is never
 * taken as a continuation of the previous value, and checks section headers as they are read so
 * that an empty unknown section is reported too.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/un.h>
#include <syslog.h>

#include "macro.h"
#include "protocol.h"
#include "size.h"

#define CONFIG_MAX_KEYS 32
#define SIZE_MAX_BYTES (1ULL << 50) /* 1024T: more than any machine, small enough to add */
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define APP_PREFIX "app:"

struct config_app {
	char *name;
	struct config_app_settings s;	    /* only the keys set in key_line[] are meaningful */
	unsigned line;			    /* of its first [app:NAME] header */
	unsigned key_line[CONFIG_MAX_KEYS]; /* by table index: where set; 0: not set */
};

static const struct config_enum_value log_levels[] = {
	{"err", LOG_ERR},   {"warning", LOG_WARNING}, {"notice", LOG_NOTICE},
	{"info", LOG_INFO}, {"debug", LOG_DEBUG},     {NULL, 0},
};

static const struct config_enum_value compressors[] = {
	{"lz4", CONFIG_COMPRESSOR_LZ4},
	{"zstd", CONFIG_COMPRESSOR_ZSTD},
	{NULL, 0},
};

static const struct config_enum_value store_backends[] = {
	{"pool", CONFIG_STORE_POOL},
	{"swapfile", CONFIG_STORE_SWAPFILE},
	{"pool+swapfile", CONFIG_STORE_POOL_SWAPFILE},
	{NULL, 0},
};

static const char *const sections[] = {"daemon", "reclaim", "store", "swap", APP_PREFIX};

#define G(field) offsetof(struct memextd_config, field)
#define A(field) offsetof(struct config_app_settings, field)

/* Order is the order of the generated file and man page. */
const struct config_key config_table[] = {
	{
		.section = "daemon",
		.name = "socket",
		.type = CONFIG_PATH,
		.default_value = "/run/memext/memextd.sock",
		.max = SOCKET_PATH_MAX,
		.value_name = "PATH",
		.flags = CONFIG_RESTART,
		.offset = G(socket_path),
		.doc = "Path of the client socket (SOCK_SEQPACKET) that libmemext.so connects to. "
		       "Used when memextd is not socket-activated; under systemd, memextd.socket "
		       "names the socket instead. Applications find it through MEMEXT_SOCKET, "
		       "whose default is this path.",
	},
	{
		.section = "daemon",
		.name = "stats-socket",
		.type = CONFIG_PATH,
		.default_value = "/run/memext/stats.sock",
		.max = SOCKET_PATH_MAX,
		.value_name = "PATH",
		.flags = CONFIG_RESTART,
		.offset = G(stats_socket_path),
		.doc = "Path of the read-only stats socket (SOCK_STREAM) that memextctl reads. "
		       "Used when memextd is not socket-activated; under systemd, "
		       "memextd-stats.socket names the socket instead.",
	},
	{
		.section = "daemon",
		.name = "log-level",
		.type = CONFIG_ENUM,
		.default_value = "info",
		.values = log_levels,
		.value_name = "LEVEL",
		.offset = G(log_level),
		.doc = "Least important messages that are logged (to the journal under systemd, "
		       "to standard error otherwise). At info a client is named when it goes only "
		       "if pages of it were evicted (a shell or a build makes clients by the "
		       "thousand); its arrival, and every other client's departure, is debug.",
	},
	{
		.section = "daemon",
		.name = "fault-threads",
		.type = CONFIG_UINT,
		.default_value = "0",
		.min = 0,
		.max = 1024,
		.value_name = "N",
		.flags = CONFIG_RESTART,
		.offset = G(fault_threads),
		.doc = "Threads that resolve page faults. 0 starts one per online CPU, each pinned "
		       "to its CPU, so that a fault is usually answered on the CPU that took it: "
		       "waking a thread on another CPU costs tens of microseconds. One thread at a "
		       "time serves a given process; the others serve other processes meanwhile.",
	},
	{
		.section = "daemon",
		.name = "fault-poll-us",
		.type = CONFIG_UINT,
		.default_value = "0",
		.min = 0,
		.max = 1000,
		.value_name = "MICROSECONDS",
		.flags = CONFIG_RESTART,
		.offset = G(fault_poll_us),
		.doc = "How long a fault thread keeps reading a process's faults after the last "
		       "one, yielding the CPU in between, before it goes back to sleep: the next "
		       "fault then needs no wake-up. 0 sleeps at once. On a 2-CPU virtual machine "
		       "30 us gained nothing (a single-threaded process lost 3-13%: the polling "
		       "thread answers faults taken on the other CPU); it may pay where CPUs are "
		       "many and wake-ups slow.",
	},
	{
		.section = "daemon",
		.name = "reclaim-threads",
		.type = CONFIG_UINT,
		.default_value = "1",
		.min = 1,
		.max = 64,
		.value_name = "N",
		.flags = CONFIG_RESTART,
		.offset = G(reclaim_threads),
		.doc = "Threads that evict cold pages, the counterpart of the kernel's kswapd. "
		       "Each goes through the clients in turn and works on those no other "
		       "thread has, so a process whose agent is slow to answer holds up one "
		       "thread only, and compression of several processes' pages runs on as "
		       "many CPUs. One is enough for a few processes on a few CPUs.",
	},
	{
		.section = "daemon",
		.name = "faultaround-pages",
		.type = CONFIG_UINT,
		.default_value = "16",
		.min = 1,
		.max = 512,
		.value_name = "N",
		.flags = CONFIG_POWER_OF_2,
		.offset = G(faultaround_pages),
		.doc = "Pages mapped at once when a thread touches memory that was never evicted: "
		       "the zero page goes in for the whole run of never-evicted neighbours, "
		       "within "
		       "an aligned window of this many pages, as the kernel's fault-around does.",
	},
	{
		.section = "reclaim",
		.name = "default-budget",
		.type = CONFIG_SIZE,
		.default_value = "0",
		.min = 0,
		.max = SIZE_MAX_BYTES,
		.value_name = "SIZE",
		.offset = G(default_budget_bytes),
		.doc = "Resident memory allowed to a client that sets no MEMEXT_BUDGET and whose "
		       "[app:NAME] section sets no budget. 0 gives such a client no budget: its "
		       "pages are evicted only when the system as a whole runs short of memory. "
		       "A budget below 1M is raised to 1M, wherever it comes from.",
	},
	{
		.section = "reclaim",
		.name = "client-watermark-min",
		.type = CONFIG_UINT,
		.default_value = "1",
		.min = 0,
		.max = 50,
		.value_name = "PERCENT",
		.offset = G(client_watermark_min_pct),
		.doc = "Free headroom, in percent of a client's budget, below which a faulting thread "
		       "of the client waits until reclaim has made room: the kernel's min "
		       "watermark. Every percent of the budget kept free is resident memory the "
		       "client cannot use: a zipf workload refaulted 4.57% of its touches with "
		       "2/5/10 and 4.28% with 1/2/3, about as many as under the kernel's own swap "
		       "(4.23%).",
	},
	{
		.section = "reclaim",
		.name = "client-watermark-low",
		.type = CONFIG_UINT,
		.default_value = "2",
		.min = 0,
		.max = 50,
		.value_name = "PERCENT",
		.offset = G(client_watermark_low_pct),
		.doc = "Free headroom, in percent of a client's budget, below which reclaim wakes "
		       "up for the client: the low watermark.",
	},
	{
		.section = "reclaim",
		.name = "client-watermark-high",
		.type = CONFIG_UINT,
		.default_value = "3",
		.min = 0,
		.max = 50,
		.value_name = "PERCENT",
		.offset = G(client_watermark_high_pct),
		.doc = "Free headroom, in percent of a client's budget, at which reclaim stops "
		       "evicting from the client: the high watermark. The three must satisfy "
		       "client-watermark-min <= client-watermark-low <= client-watermark-high.",
	},
	{
		.section = "reclaim",
		.name = "watermark-min",
		.type = CONFIG_UINT,
		.default_value = "2",
		.min = 0,
		.max = 50,
		.value_name = "PERCENT",
		.offset = G(watermark_min_pct),
		.doc = "For the system as a whole: available memory (MemAvailable), in percent of "
		       "MemTotal, below which the faulting threads of every client wait until "
		       "reclaim has made room. A client's own budget has the client-watermark "
		       "keys.",
	},
	{
		.section = "reclaim",
		.name = "watermark-low",
		.type = CONFIG_UINT,
		.default_value = "5",
		.min = 0,
		.max = 50,
		.value_name = "PERCENT",
		.offset = G(watermark_low_pct),
		.doc = "For the system as a whole: available memory, in percent of MemTotal, below "
		       "which reclaim evicts from every client.",
	},
	{
		.section = "reclaim",
		.name = "watermark-high",
		.type = CONFIG_UINT,
		.default_value = "10",
		.min = 0,
		.max = 50,
		.value_name = "PERCENT",
		.offset = G(watermark_high_pct),
		.doc = "For the system as a whole: available memory, in percent of MemTotal, at which "
		       "reclaim for the system stops. The three must satisfy watermark-min <= "
		       "watermark-low <= watermark-high.",
	},
	{
		.section = "reclaim",
		.name = "track-above",
		.type = CONFIG_UINT,
		.default_value = "50",
		.min = 0,
		.max = 100,
		.value_name = "PERCENT",
		.offset = G(track_above_pct),
		.doc = "Share of its budget, in percent, that a client's resident memory must reach "
		       "before memextd registers the client's memory with userfaultfd. Below it the "
		       "process runs as fast as it would without memext: no fault goes through the "
		       "daemon. A client without a budget is tracked only while the system as a whole "
		       "is below its low watermark. 0 tracks every client from its start.",
	},
	{
		.section = "reclaim",
		.name = "pressure-avg10",
		.type = CONFIG_UINT,
		.default_value = "10",
		.min = 0,
		.max = 100,
		.value_name = "PERCENT",
		.offset = G(pressure_avg10_pct),
		.doc = "Share of time, in percent over the last 10 seconds, that tasks stalled on "
		       "memory (the kernel's PSI, \"some avg10\" in /proc/pressure/memory) at "
		       "which reclaim evicts from every client as it does when MemAvailable is "
		       "below watermark-low, once MemAvailable is below watermark-high (above it, "
		       "stalls come from a memory cgroup's limit or the page cache, which evicting "
		       "clients would not relieve). 0: PSI is not looked at. Without PSI in the "
		       "kernel, only MemAvailable counts.",
	},
	{
		.section = "reclaim",
		.name = "batch-pages",
		.type = CONFIG_UINT,
		.default_value = "256",
		.min = 1,
		.max = MEMEXT_STAGING_PAGES,
		.value_name = "N",
		.offset = G(batch_pages),
		.doc = "Pages evicted together. A batch costs one round of TLB shootdowns in the "
		       "application however many pages it holds, so large batches are cheaper per "
		       "page; the most is the size of the shim's staging area.",
	},
	{
		.section = "reclaim",
		.name = "unevictable-retry-sec",
		.type = CONFIG_UINT,
		.default_value = "60",
		.min = 1,
		.max = 86400,
		.value_name = "SECONDS",
		.offset = G(unevictable_retry_sec),
		.doc = "How often pages the kernel refused to evict (mlocked, or made read-only "
		       "by mprotect) are tried again. The shim reports munlock(), munlockall() "
		       "and mprotect() back to read-write at once; this catches programs that "
		       "make those system calls without libc. Each try costs a failed move per "
		       "page still locked.",
	},
	{
		.section = "reclaim",
		.name = "evict-stopped",
		.type = CONFIG_BOOL,
		.default_value = "yes",
		.value_name = "BOOL",
		.offset = G(evict_stopped),
		.doc = "Evict from a process stopped by a signal (Ctrl-Z, SIGSTOP) when the system "
		       "is short of memory or the process is over its budget, as the kernel swaps "
		       "an idle process out. memextd attaches to the process's memext agent thread "
		       "with ptrace for the time of the eviction and lets that one thread run; the "
		       "application itself stays stopped. A process a debugger holds or in a "
		       "frozen cgroup is left alone. With no, a stopped process keeps what it has "
		       "resident until it runs again.",
	},
	{
		.section = "reclaim",
		.name = "fork-claim-timeout-sec",
		.type = CONFIG_UINT,
		.default_value = "60",
		.min = 1,
		.max = 240,
		.value_name = "SECONDS",
		.offset = G(fork_claim_timeout_sec),
		.doc = "How long the evicted pages a process shares with the child of its fork() "
		       "wait for the child to claim them. A child its parent named is waited for "
		       "as long as it lives (stopped by a debugger or Ctrl-Z right after the "
		       "fork, say); this is for the rest (a parent in a PID namespace of its "
		       "own, a fork made inside glibc), for a stop of memextd, which waits for "
		       "the claims (keep it under the unit's TimeoutStopSec, 5 min), and after "
		       "memextd died, for the swap slots its successor holds for such a child. A "
		       "child that comes later finds its pages gone and aborts rather than read "
		       "zeroes.",
	},
	{
		.section = "store",
		.name = "backend",
		.type = CONFIG_ENUM,
		.default_value = "pool",
		.values = store_backends,
		.value_name = "BACKEND",
		.flags = CONFIG_RESTART,
		.offset = G(store_backend),
		.doc = "Where evicted pages go. pool keeps them compressed in memory, like zram. "
		       "swapfile writes them to the [swap] files. pool+swapfile keeps them "
		       "compressed and writes the coldest objects back to the swap files when the "
		       "pool reaches memory-limit, like zswap. The last two need at least one "
		       "[swap] file; pool refuses [swap] files, so that none is silently unused.",
	},
	{
		.section = "store",
		.name = "compressor",
		.type = CONFIG_ENUM,
		.default_value = "lz4",
		.values = compressors,
		.value_name = "NAME",
		.offset = G(compressor),
		.doc = "Compressor of the pages kept in the pool. lz4 is the fastest (here 3.6 us "
		       "to compress and 1.2 us to decompress a page, ratio about 3); zstd saves "
		       "about a sixth more memory for about three times the time. A reload "
		       "applies to clients that connect afterwards.",
	},
	{
		.section = "store",
		.name = "zstd-level",
		.type = CONFIG_UINT,
		.default_value = "1",
		.min = 1,
		.max = 19,
		.value_name = "N",
		.offset = G(zstd_level),
		.doc = "zstd compression level. 1 is the fastest; higher levels save a little more "
		       "memory and make every eviction much slower, while decompression, which a "
		       "faulting thread waits for, stays about as fast.",
	},
	{
		.section = "store",
		.name = "memory-limit",
		.type = CONFIG_SIZE,
		.default_value = "0",
		.min = 0,
		.max = SIZE_MAX_BYTES,
		.value_name = "SIZE",
		.offset = G(store_mem_limit_bytes),
		.doc = "Most memory the pool may take from the system, its metadata included "
		       "(zram's mem_limit). At the limit, pool+swapfile writes the coldest objects "
		       "back to the swap files and pool evicts no more. Pages adopted from a "
		       "daemon that died are kept even past it. 0 sets no limit of its own.",
	},
	{
		.section = "store",
		.name = "compaction",
		.type = CONFIG_BOOL,
		.default_value = "yes",
		.value_name = "BOOL",
		.offset = G(compaction),
		.doc = "Compact the pool when it gets sparse: move objects together and give whole "
		       "pages back to the system, as zsmalloc does.",
	},
	{
		.section = "swap",
		.name = "file",
		.type = CONFIG_SWAPFILE,
		.min = 0,
		.max = 32767,
		.value_name = "PATH [PRIORITY]",
		.flags = CONFIG_RESTART | CONFIG_REPEATABLE,
		.doc = "A swap file for the swapfile and pool+swapfile backends, made with "
		       "memextctl mkswap or mkswap(8) (the same SWAPSPACE2 header). Repeat the key "
		       "for more files, at most 32. Files of higher PRIORITY fill first, files of "
		       "equal priority take turns; PRIORITY defaults to 0. The path may not "
		       "contain whitespace. Under systemd the service may write only below "
		       "/var/lib/memext, unless a drop-in adds ReadWritePaths=.",
		/* no default: the example is what the docs show */
		.default_value = NULL,
	},
	{
		.section = APP_PREFIX,
		.name = "budget",
		.type = CONFIG_SIZE,
		.min = 0,
		.max = SIZE_MAX_BYTES,
		.value_name = "SIZE",
		.offset = A(budget_bytes),
		.inherits = "[reclaim] default-budget",
		.inherit_offset = G(default_budget_bytes),
		.doc = "Budget of the processes whose executable is named NAME: the base name of "
		       "/proc/PID/exe, for a script its interpreter's. MEMEXT_BUDGET in the "
		       "application's environment takes precedence. 0 gives no budget; below 1M, "
		       "1M.",
	},
	{
		.section = APP_PREFIX,
		.name = "compressor",
		.type = CONFIG_ENUM,
		.values = compressors,
		.value_name = "NAME",
		.offset = A(compressor),
		.inherits = "[store] compressor",
		.inherit_offset = G(compressor),
		.doc = "Compressor of the pages of these processes.",
	},
};

const size_t config_table_len = ARRAY_SIZE(config_table);
static_assert(ARRAY_SIZE(config_table) <= CONFIG_MAX_KEYS, "key_line[] too small");

/* ---- small helpers ---- */

static inline bool streq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

static void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

static void *field(void *base, size_t offset)
{
	return (char *)base + offset;
}

static const void *cfield(const void *base, size_t offset)
{
	return (const char *)base + offset;
}

static bool is_app_key(const struct config_key *k)
{
	return streq(k->section, APP_PREFIX);
}

static size_t key_index(const struct config_key *k)
{
	return (size_t)(k - config_table);
}

/* Shown by the generated docs for keys that have no default. */
static const char *key_example(const struct config_key *k)
{
	if (k->type == CONFIG_SWAPFILE)
		return "/var/lib/memext/swap0 10";
	if (is_app_key(k))
		return k->type == CONFIG_SIZE ? "4G" : "zstd";
	return k->default_value;
}

static const struct config_key *find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < config_table_len; i++)
		if (streq(config_table[i].section, section) && streq(config_table[i].name, name))
			return &config_table[i];
	return NULL;
}

static const struct config_key *find_key_by_field(const char *dotted)
{
	for (size_t i = 0; i < config_table_len; i++) {
		const struct config_key *k = &config_table[i];
		size_t n = strlen(k->section);

		if (strncmp(dotted, k->section, n) == 0 && dotted[n] == '.' &&
		    streq(dotted + n + 1, k->name))
			return k;
	}
	return NULL;
}

/* Appends to buf (total size len, NUL-terminated), truncating quietly. */
_printf_(3, 4) static void append(char *buf, size_t len, const char *fmt, ...)
{
	size_t used;
	va_list ap;

	if (!buf || len == 0)
		return;
	used = strnlen(buf, len);
	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

/* "64M", "1G", or plain bytes when no unit divides the value. */
static const char *format_size_exact(uint64_t bytes, char *buf, size_t len)
{
	static const struct {
		char unit;
		unsigned shift;
	} units[] = {{'T', 40}, {'G', 30}, {'M', 20}, {'K', 10}};

	for (size_t i = 0; bytes && i < ARRAY_SIZE(units); i++)
		if ((bytes & ((1ULL << units[i].shift) - 1)) == 0) {
			snprintf(buf, len, "%llu%c", (unsigned long long)(bytes >> units[i].shift),
				 units[i].unit);
			return buf;
		}
	snprintf(buf, len, "%llu", (unsigned long long)bytes);
	return buf;
}

static const char *enum_to_string(const struct config_enum_value *values, int value)
{
	for (const struct config_enum_value *v = values; v->name; v++)
		if (v->value == value)
			return v->name;
	return NULL;
}

const char *config_compressor_to_string(int compressor)
{
	return enum_to_string(compressors, compressor);
}

const char *config_store_backend_to_string(int backend)
{
	return enum_to_string(store_backends, backend);
}

const char *config_log_level_to_string(int level)
{
	return enum_to_string(log_levels, level);
}

/* What a key accepts, in words: for error messages and the docs. */
static const char *describe_accepted(const struct config_key *k, char *buf, size_t len)
{
	char a[32], b[32];

	buf[0] = '\0';
	switch (k->type) {
	case CONFIG_PATH:
		snprintf(buf, len, "an absolute path without whitespace, at most %llu bytes",
			 (unsigned long long)k->max);
		break;
	case CONFIG_UINT:
		snprintf(buf, len, "%s from %llu to %llu",
			 k->flags & CONFIG_POWER_OF_2 ? "a power of two" : "an integer",
			 (unsigned long long)k->min, (unsigned long long)k->max);
		break;
	case CONFIG_SIZE:
		snprintf(buf, len,
			 "a size from %s to %s: bytes, or a number with a K, M, G or T suffix "
			 "(binary units)",
			 format_size_exact(k->min, a, sizeof(a)),
			 format_size_exact(k->max, b, sizeof(b)));
		break;
	case CONFIG_BOOL:
		snprintf(buf, len, "yes or no (also true/false, on/off, 1/0)");
		break;
	case CONFIG_ENUM:
		for (const struct config_enum_value *v = k->values; v->name; v++)
			append(buf, len, "%s%s", v == k->values ? "" : (v[1].name ? ", " : " or "),
			       v->name);
		break;
	case CONFIG_SWAPFILE:
		snprintf(buf, len,
			 "an absolute path without whitespace, then optionally a priority from "
			 "%llu to %llu",
			 (unsigned long long)k->min, (unsigned long long)k->max);
		break;
	}
	return buf;
}

/* ---- value parsers: 0, or -EINVAL with the reason in *reason ---- */

int config_parse_uint64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*ret = v;
	return 0;
}

static int check_path(const char *s, uint64_t max, const char **reason)
{
	if (s[0] != '/') {
		*reason = s[0] ? "not an absolute path" : "empty";
		return -EINVAL;
	}
	if (strpbrk(s, " \t\r\n")) {
		*reason = "contains whitespace (comments go on their own line, starting with '#')";
		return -EINVAL;
	}
	if (strlen(s) > max) {
		*reason = "too long";
		return -EINVAL;
	}
	return 0;
}

static int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (streq(s, yes[i])) {
			*ret = true;
			return 0;
		}
		if (streq(s, no[i])) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Parses a value of a scalar type into the field at base + k->offset. */
static int parse_value(const struct config_key *k, const char *value, void *base,
		       const char **reason)
{
	void *p = field(base, k->offset);
	uint64_t v;
	bool b;
	int r;

	switch (k->type) {
	case CONFIG_PATH: {
		char *copy;

		r = check_path(value, k->max, reason);
		if (r < 0)
			return r;
		copy = strdup(value);
		if (!copy)
			return -ENOMEM;
		free(*(char **)p);
		*(char **)p = copy;
		return 0;
	}
	case CONFIG_UINT:
		r = config_parse_uint64(value, &v);
		if (r == -EINVAL) {
			*reason = "not a decimal integer";
			return -EINVAL;
		}
		if (r < 0 || v < k->min || v > k->max) {
			*reason = "out of range";
			return -EINVAL;
		}
		if ((k->flags & CONFIG_POWER_OF_2) && (v & (v - 1))) {
			*reason = "not a power of two";
			return -EINVAL;
		}
		*(unsigned *)p = (unsigned)v;
		return 0;
	case CONFIG_SIZE:
		r = parse_size(value, &v);
		if (r == -EINVAL) {
			*reason = "not a size";
			return -EINVAL;
		}
		if (r < 0 || v < k->min || v > k->max) {
			*reason = "out of range";
			return -EINVAL;
		}
		*(uint64_t *)p = v;
		return 0;
	case CONFIG_BOOL:
		if (parse_bool(value, &b) < 0) {
			*reason = "not a boolean";
			return -EINVAL;
		}
		*(bool *)p = b;
		return 0;
	case CONFIG_ENUM:
		for (const struct config_enum_value *e = k->values; e->name; e++)
			if (streq(value, e->name)) {
				*(int *)p = e->value;
				return 0;
			}
		*reason = "unknown value";
		return -EINVAL;
	case CONFIG_SWAPFILE:
		break;
	}
	assert(!"parse_value: not a scalar type");
	return -EINVAL;
}

/* Formats the value of a scalar key at base + k->offset, as it would be written in the file. */
static const char *format_value(const struct config_key *k, const void *base, char *buf, size_t len)
{
	const void *p = cfield(base, k->offset);
	const char *s;

	switch (k->type) {
	case CONFIG_PATH:
		snprintf(buf, len, "%s", *(char *const *)p ? *(char *const *)p : "");
		break;
	case CONFIG_UINT:
		snprintf(buf, len, "%u", *(const unsigned *)p);
		break;
	case CONFIG_SIZE:
		format_size_exact(*(const uint64_t *)p, buf, len);
		break;
	case CONFIG_BOOL:
		snprintf(buf, len, "%s", *(const bool *)p ? "yes" : "no");
		break;
	case CONFIG_ENUM:
		s = enum_to_string(k->values, *(const int *)p);
		snprintf(buf, len, "%s", s ? s : "?");
		break;
	case CONFIG_SWAPFILE:
		snprintf(buf, len, "-");
		break;
	}
	return buf;
}

/* ---- the config object ---- */

static void app_done(struct config_app *a)
{
	free(a->name);
}

void config_free(struct memextd_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < config_table_len; i++)
		if (config_table[i].type == CONFIG_PATH && !is_app_key(&config_table[i]))
			free(*(char **)field(cfg, config_table[i].offset));
	for (size_t i = 0; i < cfg->n_swapfiles; i++)
		free(cfg->swapfiles[i].path);
	free(cfg->swapfiles);
	for (size_t i = 0; i < cfg->n_apps; i++)
		app_done(&cfg->apps[i]);
	free(cfg->apps);
	free(cfg->path);
	free(cfg);
}

static void config_freep(struct memextd_config **cfg)
{
	config_free(*cfg);
}

int config_new_default(struct memextd_config **ret)
{
	_cleanup_(config_freep) struct memextd_config *cfg = NULL;

	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return -ENOMEM;
	for (size_t i = 0; i < config_table_len; i++) {
		const struct config_key *k = &config_table[i];
		const char *reason = NULL;
		int r;

		if (is_app_key(k) || !k->default_value)
			continue;
		r = parse_value(k, k->default_value, cfg, &reason);
		if (r == -ENOMEM)
			return r;
		/* A default the table's own parser refuses is a bug in the table. */
		assert(r == 0);
	}
	*ret = TAKE_PTR(cfg);
	return 0;
}

/* ---- parsing ---- */

struct parse_ctx {
	const char *path;
	FILE *f;
	struct memextd_config *cfg;
	unsigned line;			    /* the line inih handles now, from 1 */
	unsigned key_line[CONFIG_MAX_KEYS]; /* global keys by table index: where set; 0: not */
	char *err;
	size_t err_len;
	int r; /* first error; 0 while there is none */
};

/* Records the first error: "path:line: message" (line 0: "path: message"). Returns r. */
_printf_(4, 5) static int fail(struct parse_ctx *ctx, unsigned line, int r, const char *fmt, ...)
{
	va_list ap;

	if (ctx->r < 0)
		return ctx->r;
	ctx->r = r;
	if (!ctx->err || ctx->err_len == 0)
		return r;
	if (line)
		snprintf(ctx->err, ctx->err_len, "%s:%u: ", ctx->path, line);
	else
		snprintf(ctx->err, ctx->err_len, "%s: ", ctx->path);
	{
		size_t used = strlen(ctx->err);

		va_start(ap, fmt);
		vsnprintf(ctx->err + used, ctx->err_len - used, fmt, ap);
		va_end(ap);
	}
	return r;
}

static const char *accepted_sections(char *buf, size_t len)
{
	buf[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
		append(buf, len, "%s[%s%s]", i ? ", " : "", sections[i],
		       streq(sections[i], APP_PREFIX) ? "NAME" : "");
	return buf;
}

static const char *accepted_keys(const char *section, char *buf, size_t len)
{
	bool first = true;

	buf[0] = '\0';
	for (size_t i = 0; i < config_table_len; i++)
		if (streq(config_table[i].section, section)) {
			append(buf, len, "%s%s", first ? "" : ", ", config_table[i].name);
			first = false;
		}
	return buf;
}

/*
 * Maps the section name from the file to the table's section ("app:" for every [app:NAME]).
 * Returns 0, or the error (recorded).
 */
static int check_section(struct parse_ctx *ctx, const char *section, const char **ret_table_section)
{
	char acc[128];

	if (strncmp(section, APP_PREFIX, strlen(APP_PREFIX)) == 0) {
		const char *name = section + strlen(APP_PREFIX);

		if (!*name || strlen(name) > CONFIG_APP_NAME_MAX || strpbrk(name, "/ \t"))
			return fail(ctx, ctx->line, -EINVAL,
				    "[%s]: bad application name; accepted: [app:NAME], NAME the "
				    "executable's file name (1 to %d bytes, no '/' or whitespace)",
				    section, CONFIG_APP_NAME_MAX);
		*ret_table_section = APP_PREFIX;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
		if (!streq(sections[i], APP_PREFIX) && streq(section, sections[i])) {
			*ret_table_section = sections[i];
			return 0;
		}
	return fail(ctx, ctx->line, -EINVAL, "unknown section [%s]; accepted sections: %s", section,
		    accepted_sections(acc, sizeof(acc)));
}

static struct config_app *app_get(struct parse_ctx *ctx, const char *name);

static char *reader(char *buf, int size, void *stream)
{
	struct parse_ctx *ctx = stream;
	size_t len;
	char *p;

	if (ctx->r < 0)
		return NULL; /* stop at the first error: one clear message */
	errno = 0;
	if (!fgets(buf, size, ctx->f)) {
		if (ferror(ctx->f))
			fail(ctx, ctx->line + 1, errno > 0 ? -errno : -EIO, "cannot read: %s",
			     strerror(errno > 0 ? errno : EIO));
		return NULL;
	}
	ctx->line++;
	len = strlen(buf);
	if ((len == 0 || buf[len - 1] != '\n') && !feof(ctx->f)) {
		if (len + 1 < (size_t)size)
			fail(ctx, ctx->line, -EINVAL, "contains a NUL byte");
		else
			fail(ctx, ctx->line, -EINVAL, "line longer than %d bytes", size - 2);
		return NULL;
	}
	p = buf;
	if (ctx->line == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	p += strspn(p, " \t");
	memmove(buf, p, strlen(p) + 1);

	if (buf[0] == '[') {
		const char *table_section;
		char *end = strchr(buf, ']');
		char name[256];

		if (!end) {
			fail(ctx, ctx->line, -EINVAL, "expected ']' after the section name");
			return NULL;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(end - buf - 1), buf + 1);
		if (check_section(ctx, name, &table_section) < 0)
			return NULL;
		/* An [app:NAME] section with no key still matches NAME (with global values). */
		if (streq(table_section, APP_PREFIX) && !app_get(ctx, name + strlen(APP_PREFIX))) {
			fail(ctx, ctx->line, -ENOMEM, "out of memory");
			return NULL;
		}
	} else if (buf[0] && !strchr("#;\r\n", buf[0]) && !strpbrk(buf, "=:")) {
		fail(ctx, ctx->line, -EINVAL,
		     "expected 'key = value', '[section]' or a comment starting with '#'");
		return NULL;
	}
	return buf;
}

static struct config_app *app_get(struct parse_ctx *ctx, const char *name)
{
	struct memextd_config *cfg = ctx->cfg;
	struct config_app *a;

	for (size_t i = 0; i < cfg->n_apps; i++)
		if (streq(cfg->apps[i].name, name))
			return &cfg->apps[i];
	a = realloc(cfg->apps, (cfg->n_apps + 1) * sizeof(*a));
	if (!a)
		return NULL;
	cfg->apps = a;
	a = &cfg->apps[cfg->n_apps];
	memset(a, 0, sizeof(*a));
	a->name = strdup(name);
	if (!a->name)
		return NULL;
	a->line = ctx->line;
	cfg->n_apps++;
	return a;
}

static int add_swapfile(struct parse_ctx *ctx, const struct config_key *k, const char *value)
{
	struct memextd_config *cfg = ctx->cfg;
	char acc[160], path[256], prio[64], extra[8];
	const char *reason = "";
	struct config_swapfile *s;
	uint64_t priority = 0;
	int n, r;

	describe_accepted(k, acc, sizeof(acc));
	n = sscanf(value, "%255s %63s %7s", path, prio, extra);
	if (n < 1)
		return fail(ctx, ctx->line, -EINVAL, "[swap] file = \"%s\": empty; accepted: %s",
			    value, acc);
	if (n > 2)
		return fail(ctx, ctx->line, -EINVAL,
			    "[swap] file = \"%s\": more than a path and a priority; accepted: %s",
			    value, acc);
	r = check_path(path, PATH_MAX - 1, &reason);
	if (r < 0)
		return fail(ctx, ctx->line, r, "[swap] file = \"%s\": %s; accepted: %s", value,
			    reason, acc);
	if (n == 2) {
		r = config_parse_uint64(prio, &priority);
		if (r < 0 || priority < k->min || priority > k->max)
			return fail(ctx, ctx->line, -EINVAL,
				    "[swap] file = \"%s\": bad priority \"%s\"; accepted: %s",
				    value, prio, acc);
	}
	for (size_t i = 0; i < cfg->n_swapfiles; i++)
		if (streq(cfg->swapfiles[i].path, path))
			return fail(ctx, ctx->line, -EINVAL,
				    "[swap] file = \"%s\": already listed on line %u", value,
				    cfg->swapfiles[i].line);
	if (cfg->n_swapfiles >= CONFIG_MAX_SWAPFILES)
		return fail(ctx, ctx->line, -EINVAL, "[swap] file = \"%s\": more than %d files",
			    value, CONFIG_MAX_SWAPFILES);

	s = realloc(cfg->swapfiles, (cfg->n_swapfiles + 1) * sizeof(*s));
	if (!s)
		return fail(ctx, ctx->line, -ENOMEM, "out of memory");
	cfg->swapfiles = s;
	s = &cfg->swapfiles[cfg->n_swapfiles];
	s->path = strdup(path);
	if (!s->path)
		return fail(ctx, ctx->line, -ENOMEM, "out of memory");
	s->priority = (int)priority;
	s->line = ctx->line;
	cfg->n_swapfiles++;
	return 0;
}

static int handle_key(struct parse_ctx *ctx, const char *section, const char *name,
		      const char *value)
{
	const char *table_section, *reason = "";
	const struct config_key *k;
	struct config_app *app = NULL;
	unsigned *line_of;
	char acc[256];
	void *base;
	int r;

	if (!section[0])
		return fail(ctx, ctx->line, -EINVAL,
			    "%s = \"%s\": key before any section; accepted sections: %s", name,
			    value, accepted_sections(acc, sizeof(acc)));
	r = check_section(ctx, section, &table_section);
	if (r < 0)
		return r;
	k = find_key(table_section, name);
	if (!k)
		return fail(ctx, ctx->line, -EINVAL, "[%s] unknown key '%s'; accepted keys: %s",
			    section, name, accepted_keys(table_section, acc, sizeof(acc)));
	if (k->type == CONFIG_SWAPFILE)
		return add_swapfile(ctx, k, value);

	if (is_app_key(k)) {
		app = app_get(ctx, section + strlen(APP_PREFIX));
		if (!app)
			return fail(ctx, ctx->line, -ENOMEM, "out of memory");
		base = &app->s;
		line_of = &app->key_line[key_index(k)];
	} else {
		base = ctx->cfg;
		line_of = &ctx->key_line[key_index(k)];
	}
	if (*line_of && !(k->flags & CONFIG_REPEATABLE))
		return fail(ctx, ctx->line, -EINVAL, "[%s] %s = \"%s\": already set on line %u",
			    section, name, value, *line_of);

	r = parse_value(k, value, base, &reason);
	if (r == -ENOMEM)
		return fail(ctx, ctx->line, r, "out of memory");
	if (r < 0)
		return fail(ctx, ctx->line, r, "[%s] %s = \"%s\": %s; accepted: %s", section, name,
			    value, reason, describe_accepted(k, acc, sizeof(acc)));
	*line_of = ctx->line;
	return 0;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *ctx = user;

	if (ctx->r < 0)
		return 0;
	return handle_key(ctx, section, name, value ? value : "") < 0 ? 0 : 1;
}

static unsigned line_of_key(const struct parse_ctx *ctx, const char *dotted)
{
	const struct config_key *k = find_key_by_field(dotted);

	return k ? ctx->key_line[key_index(k)] : 0;
}

/*
 * Checks one set of watermarks (prefix "" or "client-"): min <= low <= high. *ret_set says
 * whether the file sets any of the three.
 */
static int validate_watermarks(struct parse_ctx *ctx, const char *prefix, unsigned min,
			       unsigned low, unsigned high, bool *ret_set)
{
	char key[64];
	unsigned lmin, llow, lhigh;

	snprintf(key, sizeof(key), "reclaim.%swatermark-min", prefix);
	lmin = line_of_key(ctx, key);
	snprintf(key, sizeof(key), "reclaim.%swatermark-low", prefix);
	llow = line_of_key(ctx, key);
	snprintf(key, sizeof(key), "reclaim.%swatermark-high", prefix);
	lhigh = line_of_key(ctx, key);
	*ret_set = lmin || llow || lhigh;
	if (min > low)
		return fail(ctx, MAX(lmin, llow), -EINVAL,
			    "[reclaim] %swatermark-min = %u is above %swatermark-low = %u; "
			    "accepted: %swatermark-min <= %swatermark-low <= %swatermark-high",
			    prefix, min, prefix, low, prefix, prefix, prefix);
	if (low > high)
		return fail(ctx, MAX(llow, lhigh), -EINVAL,
			    "[reclaim] %swatermark-low = %u is above %swatermark-high = %u; "
			    "accepted: %swatermark-min <= %swatermark-low <= %swatermark-high",
			    prefix, low, prefix, high, prefix, prefix, prefix);
	return 0;
}

/* Checks that span keys, once the whole file is read. */
static int validate(struct parse_ctx *ctx)
{
	const struct memextd_config *cfg = ctx->cfg;
	unsigned lbackend = line_of_key(ctx, "store.backend");
	bool client_set, system_set;
	int r;

	r = validate_watermarks(ctx, "client-", cfg->client_watermark_min_pct,
				cfg->client_watermark_low_pct, cfg->client_watermark_high_pct,
				&client_set);
	if (r < 0)
		return r;
	r = validate_watermarks(ctx, "", cfg->watermark_min_pct, cfg->watermark_low_pct,
				cfg->watermark_high_pct, &system_set);
	if (r < 0)
		return r;
	/* Set by the file's parse; command-line overrides (validated again) leave it. */
	if (system_set && !client_set)
		ctx->cfg->system_watermarks_only = true;

	if (cfg->store_backend != CONFIG_STORE_POOL && cfg->n_swapfiles == 0)
		return fail(ctx, lbackend, -EINVAL,
			    "[store] backend = %s needs at least one [swap] file; accepted: a "
			    "[swap] section with file = PATH [PRIORITY], or backend = pool",
			    config_store_backend_to_string(cfg->store_backend));
	if (cfg->store_backend == CONFIG_STORE_POOL && cfg->n_swapfiles > 0)
		return fail(ctx, cfg->swapfiles[0].line, -EINVAL,
			    "[swap] file = %s: [store] backend = pool uses no swap file; accepted: "
			    "backend = pool+swapfile or swapfile, or no [swap] file",
			    cfg->swapfiles[0].path);

	if (streq(cfg->socket_path, cfg->stats_socket_path))
		return fail(ctx,
			    MAX(line_of_key(ctx, "daemon.socket"),
				line_of_key(ctx, "daemon.stats-socket")),
			    -EINVAL,
			    "[daemon] socket and stats-socket are both %s; accepted: two different "
			    "paths",
			    cfg->socket_path);
	return 0;
}

int config_load(const char *path, struct memextd_config **ret, char *err, size_t err_len)
{
	_cleanup_(config_freep) struct memextd_config *cfg = NULL;
	_cleanup_(fclosep) FILE *f = NULL;
	struct parse_ctx ctx = {.path = path, .err = err, .err_len = err_len};
	int r;

	if (err && err_len)
		err[0] = '\0';
	if (!path)
		return -EINVAL;
	f = fopen(path, "re");
	if (!f) {
		r = negative_errno();
		return fail(&ctx, 0, r, "cannot open: %s", strerror(-r));
	}
	r = config_new_default(&cfg);
	if (r < 0)
		return fail(&ctx, 0, r, "out of memory");
	cfg->path = strdup(path);
	if (!cfg->path)
		return fail(&ctx, 0, -ENOMEM, "out of memory");

	ctx.f = f;
	ctx.cfg = cfg;
	r = ini_parse_stream(reader, &ctx, handler, &ctx);
	if (ctx.r < 0)
		return ctx.r;
	if (r == -2)
		return fail(&ctx, 0, -ENOMEM, "out of memory");
	if (r != 0)
		return fail(&ctx, r > 0 ? (unsigned)r : 0, -EINVAL, "syntax error");
	r = validate(&ctx);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(cfg);
	return 0;
}

int config_set(struct memextd_config *cfg, const char *section, const char *key,
	       const char *value, char *err, size_t err_len)
{
	struct parse_ctx ctx = {
		.path = "command line", .cfg = cfg, .err = err, .err_len = err_len,
	};
	int r;

	if (err && err_len)
		err[0] = '\0';
	r = handle_key(&ctx, section, key, value);
	return r < 0 ? r : 0;
}

int config_validate(struct memextd_config *cfg, char *err, size_t err_len)
{
	struct parse_ctx ctx = {
		.path = cfg->path ? cfg->path : "command line", .cfg = cfg, .err = err,
		.err_len = err_len,
	};

	if (err && err_len)
		err[0] = '\0';
	return validate(&ctx);
}

int config_check(const char *path, char *err, size_t err_len)
{
	struct memextd_config *cfg = NULL;
	int r;

	r = config_load(path, &cfg, err, err_len);
	config_free(cfg);
	return r;
}

int config_reload(struct memextd_config **cfg, const char *path, char *err, size_t err_len)
{
	struct memextd_config *new_cfg = NULL;
	int r;

	r = config_load(path, &new_cfg, err, err_len);
	if (r < 0)
		return r;
	config_free(*cfg);
	*cfg = new_cfg;
	return 0;
}

int config_lookup_app(const struct memextd_config *cfg, const char *exe_name,
		      struct config_app_settings *ret)
{
	const struct config_app *app = NULL;

	for (size_t i = 0; exe_name && i < cfg->n_apps; i++)
		if (streq(cfg->apps[i].name, exe_name)) {
			app = &cfg->apps[i];
			break;
		}
	for (size_t i = 0; i < config_table_len; i++) {
		const struct config_key *k = &config_table[i];
		size_t sz = k->type == CONFIG_SIZE ? sizeof(uint64_t) : sizeof(int);

		if (!is_app_key(k))
			continue;
		static_assert(sizeof(int) == sizeof(unsigned), "UINT and ENUM fields are ints");
		assert(k->type == CONFIG_SIZE || k->type == CONFIG_ENUM || k->type == CONFIG_UINT);
		if (app && app->key_line[i])
			memcpy(field(ret, k->offset), cfield(&app->s, k->offset), sz);
		else
			memcpy(field(ret, k->offset), cfield(cfg, k->inherit_offset), sz);
	}
	return app ? 1 : 0;
}

int config_restart_keys(const struct memextd_config *old_cfg, const struct memextd_config *new_cfg,
			char *buf, size_t len)
{
	int n = 0;

	if (buf && len)
		buf[0] = '\0';
	for (size_t i = 0; i < config_table_len; i++) {
		const struct config_key *k = &config_table[i];
		char a[256], b[256];
		bool changed;

		if (!(k->flags & CONFIG_RESTART) || is_app_key(k))
			continue;
		if (k->type == CONFIG_SWAPFILE) {
			changed = old_cfg->n_swapfiles != new_cfg->n_swapfiles;
			for (size_t j = 0; !changed && j < old_cfg->n_swapfiles; j++)
				changed = !streq(old_cfg->swapfiles[j].path,
						 new_cfg->swapfiles[j].path) ||
					  old_cfg->swapfiles[j].priority !=
						  new_cfg->swapfiles[j].priority;
		} else {
			changed = !streq(format_value(k, old_cfg, a, sizeof(a)),
					 format_value(k, new_cfg, b, sizeof(b)));
		}
		if (changed) {
			append(buf, len, "%s%s.%s", n ? ", " : "", k->section, k->name);
			n++;
		}
	}
	return n;
}

void config_describe(const struct memextd_config *cfg, char *buf, size_t len)
{
	if (!buf || !len)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < config_table_len; i++) {
		const struct config_key *k = &config_table[i];
		char v[256];

		if (is_app_key(k) || k->type == CONFIG_SWAPFILE)
			continue;
		append(buf, len, "%s%s=%s", buf[0] ? " " : "", k->name,
		       format_value(k, cfg, v, sizeof(v)));
	}
	append(buf, len, " swap-files=%zu apps=%zu", cfg->n_swapfiles, cfg->n_apps);
}

/* ---- generated docs ---- */

/* Writes text as comment lines "# ..." of at most width columns. */
static void write_wrapped(FILE *f, const char *prefix, const char *text, size_t width)
{
	size_t col = 0;

	while (*text) {
		size_t word = strcspn(text, " ");

		if (col && col + 1 + word > width) {
			fputc('\n', f);
			col = 0;
		}
		if (col == 0) {
			fputs(prefix, f);
			col = strlen(prefix);
		} else {
			fputc(' ', f);
			col++;
		}
		fwrite(text, 1, word, f);
		col += word;
		text += word;
		text += strspn(text, " ");
	}
	if (col)
		fputc('\n', f);
}

static const char conf_header[] =
	"# memextd.conf: the configuration of memextd(8); see memextd.conf(5).\n"
	"#\n"
	"# Every key is listed with its default value, commented out. To change one, remove the\n"
	"# '#' in front of it and edit the value. Comments are lines that start with '#' or ';'.\n"
	"# Sizes are bytes or a number with K, M, G or T (binary units: 1K = 1024).\n"
	"#\n"
	"# \"systemctl reload memextd\" (SIGHUP) re-reads this file; keys marked \"restart\" take\n"
	"# effect at the next start. An invalid file is refused as a whole: memextd keeps the\n"
	"# configuration it runs with and logs the file, line and key at fault.\n"
	"# \"memextd --check-config FILE\" checks a file without applying it.\n"
	"#\n"
	"# This file is generated from the key table in daemon/config.c (config_write_default).\n";

int config_write_default(FILE *f)
{
	const char *section = NULL;

	fputs(conf_header, f);
	for (size_t i = 0; i < config_table_len; i++) {
		const struct config_key *k = &config_table[i];
		char acc[256], doc[1024];

		if (!section || !streq(section, k->section)) {
			section = k->section;
			if (is_app_key(k))
				fputs("\n# Per application: a section [app:NAME] applies to the "
				      "processes whose\n# executable is named NAME. Keys it leaves "
				      "unset come from the sections\n# above. For example:\n"
				      "#[app:postgres]\n",
				      f);
			else
				fprintf(f, "\n[%s]\n", section);
		}
		snprintf(doc, sizeof(doc), "%s Accepted: %s.%s%s", k->doc,
			 describe_accepted(k, acc, sizeof(acc)),
			 k->inherits ? " Default: the value of " : "",
			 k->inherits ? k->inherits : "");
		if (k->inherits)
			append(doc, sizeof(doc), ".");
		if (k->flags & CONFIG_RESTART)
			append(doc, sizeof(doc), " Read at start only (restart).");
		fputc('\n', f);
		write_wrapped(f, "# ", doc, 80);
		fprintf(f, "#%s = %s\n", k->name, key_example(k));
	}
	return ferror(f) ? -EIO : 0;
}

/* Writes s as troff text: escapes backslashes and hyphens, guards a leading '.' or '\''. */
static void troff_escape(FILE *f, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", f);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", f);
		else if (*s == '-')
			fputs("\\-", f);
		else
			fputc(*s, f);
	}
}

int config_write_man(FILE *f)
{
	const char *section = NULL;

	for (size_t i = 0; i < config_table_len; i++) {
		const struct config_key *k = &config_table[i];
		char acc[256];

		if (!section || !streq(section, k->section)) {
			section = k->section;
			fprintf(f, ".SS \"[%s%s]\"\n", section, is_app_key(k) ? "NAME" : "");
		}
		fputs(".TP\n\\fB", f);
		troff_escape(f, k->name);
		fputs("\\fR = \\fI", f);
		troff_escape(f, k->value_name);
		fputs("\\fR\n", f);
		troff_escape(f, k->doc);
		fputs("\n.br\nAccepted: ", f);
		troff_escape(f, describe_accepted(k, acc, sizeof(acc)));
		fputs(".\n.br\n", f);
		if (k->default_value) {
			fputs("Default: \\fB", f);
			troff_escape(f, k->default_value);
			fputs("\\fR.\n", f);
		} else if (k->inherits) {
			fputs("Default: the value of \\fB", f);
			troff_escape(f, k->inherits);
			fputs("\\fR.\n", f);
		} else {
			fputs("Default: none. Example: \\fB", f);
			troff_escape(f, key_example(k));
			fputs("\\fR.\n", f);
		}
		if (k->flags & CONFIG_RESTART)
			fputs(".br\nRead at start only: a reload does not change it.\n", f);
	}
	return ferror(f) ? -EIO : 0;
}
