/* SPDX-License-Identifier: MIT */
/*
 * Sharing a parent's evicted pages with its fork child (forkshare.h has the protocol).
 *
 * Locks: manager.forks_lock guards the list of waiting snapshots and is taken with no other
 * lock held; a snapshot's references are dropped with none held either.
 */
#include "forkshare.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "client.h"
#include "log.h"
#include "macro.h"
#include "maps.h"
#include "store.h"

struct fork_share {
	struct fork_share *next; /* manager.forks */
	pid_t parent;
	uint32_t token;
	uid_t uid;		/* of the parent: only a process of the same user may claim it */
	uint64_t taken_usec;	/* for the claim timeout */
	uint64_t *vpn, *handle; /* nr entries, one reference each */
	size_t nr, cap;
	struct rangeset ranges; /* the parent's registered memory at the snapshot */
};

void fork_share_free(struct store *s, struct fork_share *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->nr; i++)
		store_drop(s, f->handle[i]);
	free(f->vpn);
	free(f->handle);
	rangeset_done(&f->ranges);
	free(f);
}

struct take_ctx {
	struct client *c;
	struct fork_share *f;
};

static int take_one(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct take_ctx *t = userdata;
	struct fork_share *f = t->f;
	int r;

	switch (pte_type(*pte)) {
	case PTE_MOVING:
		return -EBUSY; /* an orphaned batch: nobody can say where the page is */
	case PTE_LOADING:
		if (*pte & PTE_DEAD)
			return 0; /* removed; its worker frees the copy */
		break;
	case PTE_STORED:
		break;
	default:
		/* PRESENT pages are in the child by fork() itself; CLEAN ones lose their copy
		 * there (fork clears uffd-wp bits, so the child's writes would go unseen). */
		return 0;
	}
	if (f->nr == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 1024;
		uint64_t *v = realloc(f->vpn, cap * sizeof(*v)), *h;

		if (!v)
			return -ENOMEM;
		f->vpn = v;
		h = realloc(f->handle, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		f->handle = h;
		f->cap = cap;
	}
	r = store_dup(t->c->m->store, pte_payload(*pte));
	if (r < 0)
		return r;
	f->vpn[f->nr] = vpn;
	f->handle[f->nr++] = pte_payload(*pte);
	return 0;
}

int fork_share_take(struct client *c, uint32_t token)
{
	struct manager *m = c->m;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct take_ctx t = {.c = c};
	int r = 0;

	if (getsockopt(c->control_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return negative_errno();
	t.f = calloc(1, sizeof(*t.f));
	if (!t.f)
		return -ENOMEM;
	t.f->parent = c->pid;
	t.f->token = token;
	t.f->uid = cred.uid;
	t.f->taken_usec = now_usec();
	/* The entries a fault thread is bringing back are LOADING: their handle is still
	 * valid under the lock, and our own reference outlives the fault thread's drop. */
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < c->registered.nr && r == 0; i++)
		r = rangeset_add(&t.f->ranges, c->registered.r[i].start, c->registered.r[i].end);
	if (r == 0)
		r = pagetable_walk(c->pt, 0, UINT64_MAX / PAGE_SIZE, take_one, &t);
	pthread_mutex_unlock(&c->lock);
	if (r < 0) {
		fork_share_free(m->store, t.f);
		return r;
	}
	pthread_mutex_lock(&m->forks_lock);
	t.f->next = m->forks;
	m->forks = t.f;
	pthread_mutex_unlock(&m->forks_lock);
	return (int)MIN(t.f->nr, (size_t)INT_MAX);
}

struct fork_share *fork_share_claim(struct manager *m, pid_t parent, uint32_t token, uid_t uid)
{
	struct fork_share *f = NULL;

	pthread_mutex_lock(&m->forks_lock);
	for (struct fork_share **p = &m->forks; *p; p = &(*p)->next)
		if ((*p)->parent == parent && (*p)->token == token && (*p)->uid == uid) {
			f = *p;
			*p = f->next;
			f->next = NULL;
			break;
		}
	pthread_mutex_unlock(&m->forks_lock);
	return f;
}

void fork_share_expire(struct manager *m, uint64_t now, bool force)
{
	struct fork_share *gone = NULL;

	pthread_mutex_lock(&m->forks_lock);
	for (struct fork_share **p = &m->forks; *p;) {
		struct fork_share *f = *p;

		/* taken_usec may be later than now: the reclaim thread took it meanwhile. */
		if (force || f->taken_usec + FORK_CLAIM_TIMEOUT_USEC < now) {
			*p = f->next;
			f->next = gone;
			gone = f;
		} else {
			p = &f->next;
		}
	}
	pthread_mutex_unlock(&m->forks_lock);
	while (gone) {
		struct fork_share *f = gone;

		gone = f->next;
		if (!force)
			log_warning("the child of process %d's fork never claimed its %zu shared "
				    "pages: dropped",
				    (int)f->parent, f->nr);
		fork_share_free(m->store, f);
	}
}

/* ---- attaching a snapshot to the child ---- */

/* Hands the snapshot's references to the child's table. */
static int give_entries(struct client *c, struct fork_share *f)
{
	int r = 0;

	pthread_mutex_lock(&c->lock);
	for (; f->nr > 0; f->nr--) {
		size_t i = f->nr - 1;
		pte_t *pte = pagetable_ensure(c->pt, f->vpn[i]);

		if (!pte) {
			r = -ENOMEM;
			break;
		}
		if (*pte) {
			/* Twice in the snapshot cannot happen; keep the table consistent anyway. */
			store_drop(c->m->store, f->handle[i]);
			continue;
		}
		*pte = pte_make(PTE_STORED, 0, f->handle[i]);
		c->nr_stored++;
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

struct vma_walk {
	struct client *c;
	struct fork_share *f;
	struct rangeset wipe; /* MADV_WIPEONFORK mappings: the child reads zeroes there */
};

static int drop_range_cb(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct client *c = userdata;

	(void)vpn;
	if (pte_type(*pte) == PTE_STORED) {
		store_drop(c->m->store, pte_payload(*pte));
		c->nr_stored--;
		*pte = 0;
	}
	return 0;
}

static int drop_unregistered_cb(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct vma_walk *w = userdata;
	uint64_t addr = vpn * PAGE_SIZE;

	if (pte_type(*pte) == PTE_STORED &&
	    (!rangeset_contains(&w->c->registered, addr) || rangeset_contains(&w->wipe, addr)))
		return drop_range_cb(vpn, pte, w->c);
	return 0;
}

/*
 * One mapping of the child: memory the parent had registered is registered in the child too,
 * even where the scan would not take it (made read-only after it was filled: its evicted
 * pages must still come back).
 */
static int child_vma(struct vma_walk *w, const struct maps_entry *e, bool wipe)
{
	if (e->shared || e->inode != 0)
		return 0;
	if (wipe)
		return rangeset_add(&w->wipe, e->start, e->end);
	for (unsigned i = 0; i < w->f->ranges.nr; i++) {
		uint64_t lo = MAX(e->start, w->f->ranges.r[i].start);
		uint64_t hi = MIN(e->end, w->f->ranges.r[i].end);
		int r;

		if (lo >= hi)
			continue;
		r = client_scan_range(w->c, lo, hi);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Walks /proc/PID/smaps: each mapping and whether it is MADV_WIPEONFORK ("wf"). */
static int walk_child_vmas(struct vma_walk *w)
{
	char path[64], line[512];
	struct maps_entry e;
	bool have = false;
	FILE *f;
	int r = 0;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)w->c->pid);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : negative_errno();
	while (r == 0 && fgets(line, sizeof(line), f)) {
		if (!strchr(line, '\n')) {
			int ch;

			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
		}
		if (strncmp(line, "VmFlags:", 8) == 0) {
			if (have)
				r = child_vma(w, &e, strstr(line, " wf") != NULL);
			have = false;
		} else if (maps_parse_line(line, &e) == 0) {
			have = true;
		}
	}
	fclose(f);
	return r;
}

int fork_share_attach(struct client *c, struct fork_share *f)
{
	struct vma_walk w = {.c = c, .f = f};
	int r;

	r = give_entries(c, f);
	/* The usual scan, which also finds pages the child has (brought back by the parent
	 * between its snapshot and fork()) and makes them PRESENT. */
	if (r == 0)
		r = client_scan(c);
	if (r == 0)
		r = walk_child_vmas(&w);
	pthread_mutex_lock(&c->lock);
	pagetable_walk(c->pt, 0, UINT64_MAX / PAGE_SIZE, drop_unregistered_cb, &w);
	pthread_mutex_unlock(&c->lock);
	rangeset_done(&w.wipe);
	fork_share_free(c->m->store, f);
	return r;
}
