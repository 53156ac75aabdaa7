/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * pmem: the memory a daemon's successor can read. memextd keeps what a restarted daemon needs
 * to give every client its evicted pages back — the pool's objects and handle table, the
 * store's tables, the page tables, a record per client — in one sparse memfd, mapped once over
 * a large window. Every client holds a read-only copy of the memfd (MSG_AGENT_PMEM; its mode
 * is 0600 and its size sealed, so no client can write or truncate it), so after a
 * SIGKILL the memory outlives the daemon; the client hands it to the next daemon when it
 * reconnects (docs/ARCHITECTURE.md, "Surviving a daemon crash").
 *
 * The successor maps the memfd read-only at an address of its own (a pmem_view) and follows
 * the dead daemon's pointers by translating them: the header keeps the window's old base.
 * Nothing in a view is written, locks in it are never taken; readers (zpool, store,
 * pagetable) decode their own structures defensively, since a SIGKILL may stop a writer
 * anywhere.
 *
 * Without pmem_init() (unit tests, --no-persist) the allocators fall back to anonymous memory,
 * so the modules using them work unchanged.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PMEM_MAGIC UINT64_C(0x4d454d5850455253) /* "SREPXMEM" */
/* 2: a client's record keeps the ring of its last mremaps (remapring.h). */
#define PMEM_VERSION 2

enum pmem_root {
	PMEM_ROOT_STORE,   /* store_persist: the pool, the store's tables, the codec ids */
	PMEM_ROOT_CLIENTS, /* pmem_client_table */
	_PMEM_ROOT_MAX = 8,
};

/* The memfd's first page. */
struct pmem_header {
	uint64_t magic;
	uint32_t version;
	uint32_t page_size;
	uint64_t base;	       /* the window's address in the daemon that made it */
	uint64_t window_bytes; /* the memfd's size */
	uint64_t daemon_pid;
	uint64_t created_usec; /* CLOCK_REALTIME: tells generations apart in logs */
	uint64_t roots[_PMEM_ROOT_MAX]; /* addresses in that daemon, or 0 */
};

/* Creates the memfd and maps window_bytes of it. Returns 0 or -errno. */
int pmem_init(uint64_t window_bytes);
void pmem_exit(void);
bool pmem_enabled(void);
/* The memfd, for clients to hold; -1 without pmem. */
int pmem_fd(void);
/* Whether fd is this daemon's own pmem memfd (not a dead daemon's). */
bool pmem_is_own(int fd);

/*
 * Zeroed, page-aligned memory of bytes (rounded up to pages), from the window, or anonymous
 * memory without pmem. Returns NULL when out of memory or window. Thread-safe.
 */
void *pmem_alloc(size_t bytes);
/* Gives the memory back (its pages and, for reuse, its address range). */
void pmem_free(void *p, size_t bytes);
/* Gives the pages back but keeps the range: it reads zeroes again (MADV_DONTNEED/REMOVE). */
void pmem_discard(void *p, size_t bytes);
/* Whether p is in the window (false without pmem). */
bool pmem_contains(const void *p);

void pmem_set_root(enum pmem_root idx, const void *p);

/* A dead daemon's pmem, mapped read-only. */
struct pmem_view {
	int fd;
	const char *map;
	uint64_t size;
	uint64_t old_base;
	struct pmem_header hdr;
};

/* Maps fd (which it takes over on success) and checks the header. Returns 0, -EINVAL (not a
 * memext pmem, or one whose size is not sealed), -EPROTONOSUPPORT (another version), or
 * -errno. */
int pmem_view_open(int fd, struct pmem_view **ret);
/* Unmaps and closes; the memfd's memory goes with its last holder. */
void pmem_view_close(struct pmem_view *v);

/* Where the dead daemon's object at old_addr, len bytes long, is in the view; NULL when it
 * was not in the window (a corrupt pointer). */
const void *pmem_view_ptr(const struct pmem_view *v, uint64_t old_addr, size_t len);

static inline uint64_t pmem_view_root(const struct pmem_view *v, enum pmem_root idx)
{
	return v->hdr.roots[idx];
}
