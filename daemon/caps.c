/* SPDX-License-Identifier: MIT */
/*
 * Dropping capabilities with libcap; see caps.h for what is kept and why.
 *
 * Order matters: the bounding set can only be reduced while CAP_SETPCAP is effective, so it
 * goes first, then the ambient set, then the process sets (which drop CAP_SETPCAP itself), then
 * no_new_privs. Everything is read back at the end: success is the state the kernel reports,
 * not the calls that returned 0.
 */
#include "caps.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "macro.h"

const struct caps_need caps_memextd[] = {
	{CAP_SYS_PTRACE, "to read the memory of the processes it manages with process_vm_readv, "
			 "and their /proc/PID/maps, whoever owns them"},
};
const size_t caps_memextd_len = ARRAY_SIZE(caps_memextd);

static void cap_freep(cap_t *c)
{
	if (*c)
		cap_free(*c);
}

static void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

_printf_(4, 5) static int fail(char *buf, size_t len, int r, const char *fmt, ...)
{
	va_list ap;

	if (buf && len) {
		va_start(ap, fmt);
		vsnprintf(buf, len, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* "cap_sys_ptrace", or "cap_42" for one libcap does not know by name. */
static const char *cap_name(int cap, char *buf, size_t len)
{
	char *name = cap_to_name(cap);

	snprintf(buf, len, "%s", name ? name : "?");
	cap_free(name);
	return buf;
}

static bool is_kept(const struct caps_need *keep, size_t n_keep, int cap)
{
	for (size_t i = 0; i < n_keep; i++)
		if (keep[i].cap == cap)
			return true;
	return false;
}

/* Threads of this process, or -errno when /proc cannot tell. */
static int count_threads(void)
{
	_cleanup_(closedirp) DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	int n = 0;

	if (!d)
		return negative_errno();
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	return n;
}

static int flag_of(cap_t c, int cap, cap_flag_t which)
{
	cap_flag_value_t v = CAP_CLEAR;

	if (cap_get_flag(c, (cap_value_t)cap, which, &v) < 0)
		return negative_errno();
	return v == CAP_SET;
}

static int verify(const struct caps_need *keep, size_t n_keep, int max_cap, char *buf, size_t len)
{
	_cleanup_(cap_freep) cap_t now = cap_get_proc();
	char name[64];

	if (!now)
		return fail(buf, len, negative_errno(), "cap_get_proc: %s", strerror(errno));
	for (int cap = 0; cap <= max_cap; cap++) {
		bool want = is_kept(keep, n_keep, cap);

		if (flag_of(now, cap, CAP_PERMITTED) != want ||
		    flag_of(now, cap, CAP_EFFECTIVE) != want ||
		    flag_of(now, cap, CAP_INHERITABLE) != 0)
			return fail(buf, len, -EIO, "%s is %s the process sets after dropping",
				    cap_name(cap, name, sizeof(name)),
				    want ? "missing from" : "still in");
		if (cap_get_bound((cap_value_t)cap) > 0 && !want)
			return fail(buf, len, -EIO, "%s is still in the bounding set",
				    cap_name(cap, name, sizeof(name)));
		if (cap_get_ambient((cap_value_t)cap) > 0)
			return fail(buf, len, -EIO, "%s is still in the ambient set",
				    cap_name(cap, name, sizeof(name)));
	}
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		return fail(buf, len, -EIO, "no_new_privs is not set");
	return 0;
}

int caps_drop_to(const struct caps_need *keep, size_t n_keep, char *buf, size_t len)
{
	_cleanup_(cap_freep) cap_t cur = NULL, want = NULL;
	int max_cap = (int)cap_max_bits() - 1, threads, dropped = 0, r;
	char name[64];

	if (buf && len)
		buf[0] = '\0';
	threads = count_threads();
	if (threads > 1)
		return fail(buf, len, -EBUSY,
			    "%d threads are running: capabilities are per thread, drop them before "
			    "starting any",
			    threads);

	cur = cap_get_proc();
	if (!cur)
		return fail(buf, len, negative_errno(), "cap_get_proc: %s", strerror(errno));
	for (size_t i = 0; i < n_keep; i++) {
		r = flag_of(cur, keep[i].cap, CAP_PERMITTED);
		if (r < 0)
			return fail(buf, len, r, "cap_get_flag: %s", strerror(-r));
		if (r == 0)
			return fail(
				buf, len, -EPERM,
				"%s is missing: memextd needs it %s. Run it as root, or grant it "
				"(systemd: CapabilityBoundingSet= and AmbientCapabilities=)",
				cap_name(keep[i].cap, name, sizeof(name)), keep[i].why);
	}

	/* The bounding set, while CAP_SETPCAP may still be effective. */
	if (flag_of(cur, CAP_SETPCAP, CAP_PERMITTED) == 1) {
		cap_value_t setpcap = CAP_SETPCAP;

		if (cap_set_flag(cur, CAP_EFFECTIVE, 1, &setpcap, CAP_SET) < 0 ||
		    cap_set_proc(cur) < 0)
			return fail(buf, len, negative_errno(), "raising cap_setpcap: %s",
				    strerror(errno));
	}
	for (int cap = 0; cap <= max_cap; cap++) {
		if (is_kept(keep, n_keep, cap) || cap_get_bound((cap_value_t)cap) <= 0)
			continue;
		if (cap_drop_bound((cap_value_t)cap) < 0)
			return fail(buf, len, negative_errno(),
				    "cannot drop %s from the bounding set: %s%s",
				    cap_name(cap, name, sizeof(name)), strerror(errno),
				    errno == EPERM ? " (cap_setpcap is missing; under systemd, "
						     "CapabilityBoundingSet= does this)"
						   : "");
	}

	if (CAP_AMBIENT_SUPPORTED() && cap_reset_ambient() < 0)
		return fail(buf, len, negative_errno(), "clearing the ambient set: %s",
			    strerror(errno));

	want = cap_init();
	if (!want)
		return fail(buf, len, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n_keep; i++) {
		cap_value_t v = (cap_value_t)keep[i].cap;

		if (cap_set_flag(want, CAP_PERMITTED, 1, &v, CAP_SET) < 0 ||
		    cap_set_flag(want, CAP_EFFECTIVE, 1, &v, CAP_SET) < 0)
			return fail(buf, len, negative_errno(), "cap_set_flag: %s",
				    strerror(errno));
	}
	for (int cap = 0; cap <= max_cap; cap++)
		if (!is_kept(keep, n_keep, cap) && (flag_of(cur, cap, CAP_PERMITTED) == 1 ||
						    flag_of(cur, cap, CAP_INHERITABLE) == 1))
			dropped++;
	if (cap_set_proc(want) < 0)
		return fail(buf, len, negative_errno(), "cap_set_proc: %s", strerror(errno));

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail(buf, len, negative_errno(), "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));

	r = verify(keep, n_keep, max_cap, buf, len);
	if (r < 0)
		return r;

	if (buf && len) {
		buf[0] = '\0';
		snprintf(buf, len, "kept ");
		for (size_t i = 0; i < n_keep; i++) {
			size_t used = strlen(buf);

			snprintf(buf + used, len - used, "%s%s (%s)", i ? ", " : "",
				 cap_name(keep[i].cap, name, sizeof(name)), keep[i].why);
		}
		if (n_keep == 0)
			snprintf(buf, len, "kept no capability");
		{
			size_t used = strlen(buf);

			snprintf(buf + used, len - used,
				 "; dropped the other %d held from the effective, permitted, "
				 "inheritable and ambient sets and every other one from the "
				 "bounding "
				 "set; no_new_privs set",
				 dropped);
		}
	}
	return 0;
}

int caps_drop_memextd(char *buf, size_t len)
{
	return caps_drop_to(caps_memextd, caps_memextd_len, buf, len);
}
