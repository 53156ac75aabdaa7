/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Small helpers shared by the daemon, the shim and the tools: cleanup attributes in the style of
 * systemd's _cleanup_ / TAKE_PTR / TAKE_FD, page arithmetic and branch hints.
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define PAGE_ALIGN_DOWN(x) ((uint64_t)(x) & PAGE_MASK)
#define PAGE_ALIGN_UP(x) (((uint64_t)(x) + PAGE_SIZE - 1) & PAGE_MASK)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _public_ __attribute__((visibility("default")))

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/*
 * Room for one more element in the array v of cap elements, nr of them in use: doubles it (from
 * first) when it is full. Evaluates to 0 or -ENOMEM (v and cap unchanged).
 */
#define ARRAY_RESERVE_ONE(v, nr, cap, first)                                                       \
	({                                                                                         \
		int _ar = 0;                                                                       \
		if ((nr) == (cap)) {                                                               \
			unsigned _ac = (cap) ? (cap) * 2 : (first);                                \
			__typeof__(v) _av = realloc((v), _ac * sizeof(*(v)));                      \
			if (_av) {                                                                 \
				(v) = _av;                                                         \
				(cap) = _ac;                                                       \
			} else {                                                                   \
				_ar = -ENOMEM;                                                     \
			}                                                                          \
		}                                                                                  \
		_ar;                                                                               \
	})

/* Hands ownership on: returns the value and leaves the cleanup variable empty. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _tp = (p);                                                           \
		(p) = NULL;                                                                        \
		_tp;                                                                               \
	})
#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int _tf = (fd);                                                                    \
		(fd) = -1;                                                                         \
		_tf;                                                                               \
	})

/* Returns -errno of the last failed call, never 0 (an unset errno becomes -EIO). */
static inline int negative_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

/* Inside a spin-wait: tells the CPU (and a hypervisor) that we spin. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}
