/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Surviving a daemon crash (docs/ARCHITECTURE.md, "Surviving a daemon crash").
 *
 * Every client has a record in pmem: who it is, where its page table is, and the journal its
 * uffd is read into. When memextd dies (SIGKILL, a crash) the clients keep their uffd, and
 * their threads that fault wait in the kernel; the shim's agent reconnects to the next memextd
 * with MSG_HELLO + HELLO_RESUME and hands over the pmem memfd it holds. The new daemon maps it
 * read-only, finds the client's record, rebuilds its page table from the old one — stored pages
 * copied into its own store, pages caught in an eviction batch taken from the process or its
 * staging area — replays the events the dead daemon had read but not finished, and wakes every
 * thread whose fault the dead daemon had read and never answered.
 */

#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "protocol.h"
#include "remapring.h"

struct client;
struct manager;
struct store;

#define CLIENT_RECORD_MAGIC UINT64_C(0x44524f4345525843) /* "CXRECORD" */
#define FORK_RECORD_MAGIC UINT64_C(0x4e534b524f465843)   /* "CXFORKSN" */
#define CLIENT_JOURNAL_MSGS 32

/* One page in pmem per client. */
struct client_record {
	uint64_t magic; /* set last when the record is published, cleared first when retired */
	int32_t pid;
	uint32_t pad;
	uint64_t start_time; /* /proc/PID/stat field 22: a reused pid is another process */
	uint64_t pt_root;    /* pagetable_root_addr() */
	/* The uffd is read into this; a message's event is zeroed once it is applied. */
	struct uffd_msg journal[CLIENT_JOURNAL_MSGS];
	/* FORK_RECORD_MAGIC: a fork snapshot (forkshare.h); pid is the parent's. */
	uint32_t fork_token;
	uint32_t fork_uid;
	/* A client's last mremaps: a successor reads their late UNMAPs as this daemon would. */
	struct remap_ring ring;
};

/* Sets up the record table in pmem (no-op without pmem). Returns 0 or -errno. */
int adopt_init(void);

/* Gives c a record (no-op without pmem). Returns 0 or -errno. */
int client_record_attach(struct client *c);
/* Retires c's record: a successor will not adopt it. */
void client_record_detach(struct client *c);
/* c's record names its page table c->pt again (it changed). c->lock held. */
void client_record_set_table(struct client *c);

/*
 * A fork snapshot's record: the table pt holds the pages the child of parent's fork announced
 * with token claims (forkshare.h). *ret is NULL without pmem. Returns 0 or -errno.
 */
struct pagetable;
int fork_record_publish(const struct pagetable *pt, pid_t parent, uint32_t token, uid_t uid,
			struct client_record **ret);
/* Retires a record (a successor will not see it) and frees it. NULL is fine. */
void record_retire(struct client_record *rec);

/* Pages of a snapshot our store refused: they go into the child once its memory is
 * registered (fork_share_place()). In ascending address order. */
struct adopt_page {
	uint64_t vpn;
	void *data; /* PAGE_SIZE bytes, malloc'ed; NULL: lost, to be poisoned */
};
struct adopt_pages {
	struct adopt_page *p;
	size_t nr, cap;
};
void adopt_pages_free(struct adopt_pages *later);

/*
 * A fork child c (not served yet) whose hello came with a dead daemon's pmem: adopts the
 * snapshot its parent's fork left there for it (or, if the child had its answer already, its
 * own record) into c's page table. The child's memory is not registered yet, so a page of the
 * snapshot our store cannot take is put in *later. The caller then settles it
 * (fork_share_settle()) and places *later (fork_share_place()). Returns the pages restored,
 * or -errno: -ENOENT when neither is there, -ETIME for a snapshot with pages in swap slots not
 * held for it (adopt_swap_init()): any may be another's by now.
 */
int64_t adopt_fork_child(struct client *c, int old_pmem_fd, pid_t parent, uint32_t token, uid_t uid,
			 struct adopt_pages *later);

/*
 * Adopts the client c (created from a HELLO_RESUME hello, not served yet) from the dead
 * daemon's pmem in old_pmem_fd (taken over). Fills c's page table and counters. Returns the
 * number of pages it restored to the store, or -errno: -ENOENT when the old pmem holds no
 * record of this process (it starts afresh, which is right: nothing of it was evicted),
 * -EINVAL for a memfd that is not a pmem.
 */
int64_t adopt_client(struct client *c, int old_pmem_fd);

/*
 * Swap areas after a crash (store s has areas; state_path is the swap state file, swapstate.h).
 * Call before any slot can be handed out. When the file lists processes still alive, a dead
 * daemon's page tables may name slots of the areas, and only the pmem those processes bring
 * back tells which: the areas hand out no slot (store_set_swap_held()) until each of them is
 * adopted (adopt_client() reserves the slots its pages are in) or has exited. Then writes the
 * file anew: from here on it lists this daemon's clients and the processes still held for.
 * Fork snapshots it lists are held for fork_claim_timeout_usec from now. Returns 0, or -errno
 * for a path too long (the file is then not used).
 */
int adopt_swap_init(struct store *s, const char *state_path, uint64_t fork_claim_timeout_usec);
/* At a clean stop: the state file is removed, or kept for the clients left to a successor. */
void adopt_swap_exit(void);

/* Frees the dead daemons' pmem once every client it had came back or exited, lets go of the
 * swap areas once every process held for is back or gone. Main thread, now and then. */
void adopt_reap(void);

