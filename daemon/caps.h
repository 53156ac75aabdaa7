/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Least privilege for memextd, with libcap. At start, before any thread exists (capabilities
 * are per thread), memextd keeps the capabilities it needs, drops every other one from the
 * effective, permitted, inheritable and ambient sets and from the bounding set, sets
 * no_new_privs, reads its state back to verify, and logs the description caps_drop_to() gives.
 *
 * What memextd needs, checked on kernel 6.18:
 *   CAP_SYS_PTRACE  process_vm_readv() of a client's memory and reading /proc/PID/maps of a
 *                   process of another user: both are ptrace access checks (ATTACH for
 *                   process_vm_readv, which Yama's ptrace_scope >= 1 applies to processes of
 *                   the same user too). Also pidfd_getfd(), should a restarted daemon take a
 *                   client's uffd back.
 * What it does not need:
 *   - userfaultfd ioctls (REGISTER, COPY, ZEROPAGE, WRITEPROTECT, WAKE) on a uffd a client sent
 *     over SCM_RIGHTS: the kernel checked privilege when the client created it;
 *   - pidfd_open(), SCM_RIGHTS, memfd_create(), sockets in /run/memext (systemd creates them,
 *     or memextd binds them before dropping);
 *   - OOMScoreAdjust=-1000 and LimitMEMLOCK=: systemd applies them before exec.
 * Deliberately not kept: /proc/PID/pagemap (0400) and /proc/PID/mem (0600) belong to the
 * process's user, so opening them for another user's process needs CAP_DAC_READ_SEARCH on top
 * of CAP_SYS_PTRACE, which would let memextd read every file. The shim can send an fd of its
 * own /proc/self/pagemap instead: reads through an open pagemap fd are not checked again.
 */

#include <stddef.h>

struct caps_need {
	int cap;	 /* CAP_* (cap_value_t) */
	const char *why; /* "to ..." for the log and for the error when it is missing */
};

/* What memextd keeps: CAP_SYS_PTRACE. */
extern const struct caps_need caps_memextd[];
extern const size_t caps_memextd_len;

/*
 * Keeps exactly keep[0..n_keep) (permitted and effective) and drops everything else as above.
 * Must be called while the process has a single thread.
 *
 * Returns 0 with a description of what was kept in buf, e.g.
 *   "kept cap_sys_ptrace (to ...); dropped the other 40 from all sets and the bounding set;
 *    no_new_privs set"
 * or, with the reason in buf:
 *   -EPERM   a needed capability is not in the permitted set ("cap_sys_ptrace is missing:
 *            memextd needs it to ..."), or the bounding set cannot be reduced (no CAP_SETPCAP)
 *   -EBUSY   more than one thread is running
 *   -EIO     the state read back differs from the one asked for
 *   -ENOMEM, or another -errno of a failed call.
 */
int caps_drop_to(const struct caps_need *keep, size_t n_keep, char *buf, size_t len);

/* caps_drop_to(caps_memextd, caps_memextd_len, buf, len). */
int caps_drop_memextd(char *buf, size_t len);
