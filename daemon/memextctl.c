/* SPDX-License-Identifier: MIT */
/* memextctl: asks memextd for its figures over the read-only stats socket. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "macro.h"
#include "memext-build.h"
#include "mkswap.h"

static void help(void)
{
	printf("Usage: memextctl [--stats-socket PATH] COMMAND\n\n"
	       "Commands:\n"
	       "  stats [--json]    the daemon's figures: clients, store, totals\n"
	       "  mkswap FILE --size SIZE [--label L] [--uuid U]\n"
	       "                    make a swap area (SWAPSPACE2, as util-linux mkswap)\n\n"
	       "Options:\n"
	       "  --stats-socket PATH  default %s/stats.sock\n"
	       "  -h, --help           this text\n"
	       "  --version            print the version\n",
	       MEMEXT_RUNSTATEDIR);
}

static int request(const char *path, const char *req)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_close_ int fd = -1;
	char buf[65536];
	ssize_t n;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "memextctl: socket path too long: %s\n", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "memextctl: cannot connect to %s: %s (is memextd running?)\n", path,
			strerror(errno));
		return -errno;
	}
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		fprintf(stderr, "memextctl: cannot send to %s: %s\n", path, strerror(errno));
		return -errno;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			return -EIO;
	if (n < 0) {
		fprintf(stderr, "memextctl: reading from %s: %s\n", path, strerror(errno));
		return -errno;
	}
	return fflush(stdout) == 0 ? 0 : -EIO;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"stats-socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{},
	};
	const char *path = MEMEXT_RUNSTATEDIR "/stats.sock";
	bool json = false;
	const char *cmd;
	int c;

	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) >= 0) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			help();
			return 0;
		case 'V':
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
	/* mkswap talks to no daemon and parses its own options. */
	if (strcmp(cmd, "mkswap") == 0) {
		char **sub = argv + optind - 1;
		int n = argc - optind + 1;

		optind = 0; /* getopt starts afresh for mkswap's own options */
		return mkswap_main(n, sub);
	}
	/* Options may also follow the command. */
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
		if (c == 'j')
			json = true;
		else if (c == 's')
			path = optarg;
		else {
			fprintf(stderr, "Try 'memextctl --help'.\n");
			return 2;
		}
	}
	if (strcmp(cmd, "stats") == 0)
		return request(path, json ? "stats json\n" : "stats\n") < 0 ? 1 : 0;
	fprintf(stderr, "memextctl: unknown command '%s'. Try 'memextctl --help'.\n", cmd);
	return 2;
}
