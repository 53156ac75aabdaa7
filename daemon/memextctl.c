/* SPDX-License-Identifier: MIT */
/* memextctl: asks memextd for its figures over the stats socket (see daemon/stats.h). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "memext-build.h"
#include "mkswap.h"
#include "size.h"

static const char *socket_path = MEMEXT_RUNSTATEDIR "/stats.sock";

static void help(void)
{
	printf("Usage: memextctl [--stats-socket PATH] COMMAND [ARGS]\n\n"
	       "Commands:\n"
	       "  stats [--json | --prometheus | --classes]\n"
	       "                    the daemon's figures: clients, store, faults, reclaim\n"
	       "  clients           the clients and their memory\n"
	       "  top [-n COUNT]    live view of the clients, refreshed every second\n"
	       "  drain PID         bring every page of PID back (root or its owner)\n"
	       "  mkswap FILE --size SIZE [--label L] [--uuid U]\n"
	       "                    make a swap area (SWAPSPACE2, as util-linux mkswap)\n\n"
	       "Options:\n"
	       "  --stats-socket PATH  default %s/stats.sock\n"
	       "  -h, --help           this text\n"
	       "  --version            print the version\n",
	       MEMEXT_RUNSTATEDIR);
}

/* Sends one request and returns the whole answer (malloc'd), or NULL with a message printed. */
static char *request(const char *req)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_close_ int fd = -1;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;

	if (strlen(socket_path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "memextctl: socket path too long: %s\n", socket_path);
		return NULL;
	}
	strcpy(sa.sun_path, socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "memextctl: cannot connect to %s: %s (is memextd running?)\n",
			socket_path, strerror(errno));
		return NULL;
	}
	char line[256];
	int len_line = snprintf(line, sizeof(line), "%s\n", req);

	/* One line in one send: the daemon answers and closes as soon as it has it. */
	if (send(fd, line, (size_t)len_line, MSG_NOSIGNAL) != len_line) {
		fprintf(stderr, "memextctl: cannot send to %s: %s\n", socket_path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (cap - len < 4096) {
			char *b = realloc(buf, cap = cap ? cap * 2 : 65536);

			if (!b) {
				free(buf);
				fprintf(stderr, "memextctl: out of memory\n");
				return NULL;
			}
			buf = b;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (n < 0) {
		fprintf(stderr, "memextctl: reading from %s: %s\n", socket_path, strerror(errno));
		free(buf);
		return NULL;
	}
	buf[len] = 0;
	if (strncmp(buf, "error: ", 7) == 0) {
		fprintf(stderr, "memextctl: %s", buf + 7);
		free(buf);
		return NULL;
	}
	return buf;
}

static int print_request(const char *req)
{
	char *answer = request(req);

	if (!answer)
		return 1;
	fputs(answer, stdout);
	free(answer);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* A value from a "client PID" line: key=value pairs. */
static uint64_t field(const char *line, const char *key)
{
	size_t n = strlen(key);

	for (const char *p = line; p && *p; p = strchr(p, ' '), p = p ? p + 1 : NULL)
		if (strncmp(p, key, n) == 0 && p[n] == '=')
			return strtoull(p + n + 1, NULL, 10);
	return 0;
}

static int parse_pid(const char *s, int *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v <= 0 || v > 4194304) {
		fprintf(stderr, "memextctl: '%s' is not a process ID\n", s);
		return -EINVAL;
	}
	*ret = (int)v;
	return 0;
}

static int cmd_drain(const char *pid_arg)
{
	char req[64], *line;
	uint64_t first = 0, left;
	int pid;

	if (parse_pid(pid_arg, &pid) < 0)
		return 2;
	snprintf(req, sizeof(req), "drain %d", pid);
	line = request(req);
	if (!line)
		return 1;
	first = field(line, "evicted_pages");
	free(line);
	snprintf(req, sizeof(req), "client %d", pid);
	for (;;) {
		line = request(req);
		if (!line)
			return 1;
		left = field(line, "evicted_pages");
		bool done = strstr(line, "state=drained") != NULL;
		free(line);
		fprintf(stderr, "\rdraining %d: %" PRIu64 " of %" PRIu64 " pages back", pid,
			first > left ? first - left : 0, first);
		if (done || left == 0)
			break;
		usleep(200000);
	}
	fprintf(stderr, "\n");
	printf("process %d: every page is back\n", pid);
	return 0;
}

/* top: the client table with fault rates, one frame a second. */
struct top_row {
	int pid;
	uint64_t faults;
};

static int cmd_top(long frames)
{
	struct top_row prev[256];
	unsigned nr_prev = 0;
	bool tty = isatty(STDOUT_FILENO);
	struct timespec last = {0};

	for (long frame = 0; frames <= 0 || frame < frames; frame++) {
		struct top_row cur[256];
		unsigned nr_cur = 0;
		char *table = request("clients"), *save = NULL, *line;
		struct timespec now;
		double dt;

		if (!table)
			return 1;
		clock_gettime(CLOCK_MONOTONIC, &now);
		dt = last.tv_sec ? (double)(now.tv_sec - last.tv_sec) +
					   (double)(now.tv_nsec - last.tv_nsec) / 1e9
				 : 0;
		if (tty)
			fputs("\033[H\033[2J", stdout);
		printf("memextctl top — %s, every 1 s%s\n\n", socket_path,
		       tty ? " (Ctrl-C to quit)" : "");
		for (line = strtok_r(table, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			int pid;
			char rq[64], *detail;

			if (sscanf(line, "%d", &pid) != 1) {
				printf("%s %10s\n", line, "FAULTS/S");
				continue;
			}
			snprintf(rq, sizeof(rq), "client %d", pid);
			detail = request(rq);
			uint64_t faults = detail ? field(detail, "faults") : 0;
			double rate = 0;

			free(detail);
			for (unsigned i = 0; i < nr_prev; i++)
				if (prev[i].pid == pid && dt > 0)
					rate = (double)(faults - prev[i].faults) / dt;
			if (nr_cur < ARRAY_SIZE(cur))
				cur[nr_cur++] = (struct top_row){pid, faults};
			printf("%s %10.0f\n", line, rate);
		}
		free(table);
		memcpy(prev, cur, nr_cur * sizeof(cur[0]));
		nr_prev = nr_cur;
		last = now;
		fflush(stdout);
		if (frames <= 0 || frame + 1 < frames)
			sleep(1);
	}
	return 0;
}

int main(int argc, char **argv)
{
	enum { OPT_STATS_SOCKET = 256, OPT_JSON, OPT_PROMETHEUS, OPT_CLASSES, OPT_VERSION };
	static const struct option longopts[] = {
		{"stats-socket", required_argument, NULL, OPT_STATS_SOCKET},
		{"json", no_argument, NULL, OPT_JSON},
		{"prometheus", no_argument, NULL, OPT_PROMETHEUS},
		{"classes", no_argument, NULL, OPT_CLASSES},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, OPT_VERSION},
		{},
	};
	const char *report = "stats";
	long frames = 0;
	const char *cmd;
	int c;

	/* Options before the command, then the command's own. */
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) >= 0) {
		switch (c) {
		case OPT_STATS_SOCKET:
			socket_path = optarg;
			break;
		case 'h':
			help();
			return 0;
		case OPT_VERSION:
			printf("memextctl %s\n", MEMEXT_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try 'memextctl --help'.\n");
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "memextctl: no command given. Try 'memextctl --help'.\n");
		return 2;
	}
	cmd = argv[optind++];
	if (strcmp(cmd, "mkswap") == 0) {
		/* mkswap talks to no daemon and parses its own options. */
		char **sub = argv + optind - 1;
		int n = argc - optind + 1;

		optind = 0;
		return mkswap_main(n, sub);
	}
	while ((c = getopt_long(argc, argv, "hn:", longopts, NULL)) >= 0) {
		switch (c) {
		case OPT_STATS_SOCKET:
			socket_path = optarg;
			break;
		case OPT_JSON:
			report = "stats json";
			break;
		case OPT_PROMETHEUS:
			report = "stats prometheus";
			break;
		case OPT_CLASSES:
			report = "classes";
			break;
		case 'n':
			frames = strtol(optarg, NULL, 10);
			if (frames <= 0) {
				fprintf(stderr, "memextctl: -n wants a positive count\n");
				return 2;
			}
			break;
		case 'h':
			help();
			return 0;
		default:
			fprintf(stderr, "Try 'memextctl --help'.\n");
			return 2;
		}
	}
	if (strcmp(cmd, "stats") == 0 && optind == argc)
		return print_request(report);
	if (strcmp(cmd, "clients") == 0 && optind == argc)
		return print_request("clients");
	if (strcmp(cmd, "top") == 0 && optind == argc)
		return cmd_top(frames);
	if (strcmp(cmd, "drain") == 0 && optind + 1 == argc)
		return cmd_drain(argv[optind]);
	if (strcmp(cmd, "drain") == 0) {
		fprintf(stderr, "memextctl: drain wants one process ID\n");
		return 2;
	}
	if (optind < argc)
		fprintf(stderr, "memextctl: unexpected argument '%s'. Try 'memextctl --help'.\n",
			argv[optind]);
	else
		fprintf(stderr, "memextctl: unknown command '%s'. Try 'memextctl --help'.\n", cmd);
	return 2;
}
