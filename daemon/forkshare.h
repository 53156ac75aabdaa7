/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * fork() without faulting everything back in: the child shares its parent's evicted pages,
 * as the kernel's swap_map and swap_duplicate() let a child share swap slots.
 *
 * Without UFFD_FEATURE_EVENT_FORK (it needs CAP_SYS_PTRACE in the application) the child's
 * copy of registered memory is unregistered, so the shim's atfork handlers do the work:
 *
 *   1. parent, prepare: MSG_FORK_PREPARE with a token (header seq). Reclaim pauses the
 *      parent's eviction (no batch is in flight once reclaim's thread looks at it) and takes a
 *      snapshot: every STORED (or LOADING) entry's handle with a reference of its own
 *      (store_dup()). The snapshot waits, keyed by (parent pid, token), for the child.
 *   2. fork() copies the address space: evicted pages are missing in the child as in the
 *      parent.
 *   3. child: the shim makes a new uffd and says hello with HELLO_FORK_CHILD, the parent's pid
 *      and the token. Before the hello is answered (the child waits in its atfork handler and
 *      runs nothing else), the daemon fills the child's page table from the snapshot,
 *      registers the child's memory, turns entries whose page the child has (the parent
 *      brought it back between snapshot and fork) into PRESENT, and drops entries the child
 *      does not have (MADV_DONTFORK, MADV_WIPEONFORK, unmapped).
 *   4. parent: MSG_FORK_DONE resumes eviction.
 *
 * Each side then owns one reference per shared page: a fault on either side loads the page and
 * drops its own reference; the page is freed with the last one. Writes stay private (the
 * child's pages are its own copies once loaded). A snapshot nobody claims is dropped when the
 * child its parent named (MSG_FORK_CHILD) is gone; one whose child memextd cannot watch,
 * after fork-claim-timeout-sec (a child held by a debugger may take any time to claim).
 *
 * A daemon crash loses none of it. The snapshot is a page table in pmem with a record of its
 * own (adopt.h), which a successor finds; FORK_READY hands the parent the pmem memfd, which
 * the child inherits and sends with its hello. A child whose hello no daemon answers waits
 * for one (its memory would read as zeroes where the parent had evicted pages), and one that
 * reaches a successor has the snapshot adopted from the dead daemon's pmem
 * (adopt_fork_child()). Claiming moves the snapshot's table to the child and retires the
 * snapshot's record only after the child has its answer: until then a successor finds the
 * snapshot, after it the child's own record, which names the same table.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct client;
struct manager;
struct fork_share;
struct store;

/*
 * Reclaim thread, the parent's eviction paused: snapshots c's evicted pages for the child of
 * the fork announced with token. Returns the number of pages shared, -EBUSY (pages of an orphaned
 * batch are still MOVING: the caller drains instead), -ENOMEM, or -errno from reading the peer's
 * credentials.
 */
int fork_share_take(struct client *c, uint32_t token);

/*
 * Main thread: the snapshot for a child that says it comes from parent's fork with token, if
 * one waits and was taken for a process of the child's uid; NULL otherwise. The caller owns it.
 * parent 0: any parent (a child in a PID namespace whose parent has exited: the token alone,
 * which is unguessable).
 */
struct fork_share *fork_share_claim(struct manager *m, pid_t parent, uint32_t token, uid_t uid);

/*
 * Main thread, before the child's hello is answered: the child's page table becomes the
 * snapshot's (the references move with it). Then fork_share_settle(). Call fork_share_free()
 * once the answer is sent.
 */
int fork_share_attach(struct client *child, struct fork_share *f);

/*
 * Registers the child's memory and settles its entries against what the child really has:
 * pages it has (the parent brought them back between snapshot and fork) become PRESENT, entries
 * in memory the child does not have (MADV_DONTFORK, MADV_WIPEONFORK, unmapped) go. Returns 0 or
 * -errno.
 */
int fork_share_settle(struct client *child);

/*
 * After fork_share_settle() of a child adopted from a dead daemon (adopt_fork_child()): puts
 * the pages of its snapshot that our store refused into the child, where it has a mapping
 * (registering it if need be) that is not MADV_WIPEONFORK; the rest are nowhere in the child.
 * A page lost, or that cannot be copied, is poisoned there. Returns 0 or -errno (-ESRCH: the
 * child is gone; else a page could be neither copied nor poisoned: the child must not run).
 */
struct adopt_pages;
int fork_share_place(struct client *child, struct adopt_pages *later);

/* Drops what a snapshot still holds (all of it, when it was never attached) and retires its
 * record. NULL is fine. */
void fork_share_free(struct store *s, struct fork_share *f);

/* Drops parent's snapshot for token, unclaimed: the parent asked again before its fork went
 * on, to bring every page back (a clone() after the program ran the atfork handlers). */
void fork_share_drop(struct manager *m, pid_t parent, uint32_t token);

/* Puts a claimed snapshot back, not attached (the child could not be taken this time). */
void fork_share_return(struct manager *m, struct fork_share *f);

/*
 * Main thread: parent named the child of its fork with token (pidfd: the child's, which the
 * call takes). Its snapshot, if it still waits, is dropped once the child is gone; at once
 * with pidfd -1 (the child is gone already).
 */
void fork_share_watch_child(struct manager *m, pid_t parent, uint32_t token, int pidfd);

/* How many snapshots wait for their child. */
unsigned fork_share_count(struct manager *m);

/* Whether a snapshot waits for its child. */
bool fork_share_pending(struct manager *m);

/* ... one whose child is not watched (fork_share_expire() drops it on time). */
bool fork_share_unwatched(struct manager *m);

enum fork_expire {
	FORK_EXPIRE_RUNNING,  /* snapshots whose child is gone, or cannot be watched and is late */
	FORK_EXPIRE_STOPPING, /* ... and any late one: memextd stops, and waits for no child */
	FORK_EXPIRE_ALL,      /* every snapshot */
};

/* Drops the references of unclaimed snapshots (late: fork-claim-timeout-sec after they were
 * taken). */
void fork_share_expire(struct manager *m, uint64_t now, enum fork_expire how);
