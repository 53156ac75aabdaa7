/* SPDX-License-Identifier: MIT */
/*
 * Sharing a parent's evicted pages with its fork child (forkshare.h has the protocol).
 *
 * Locks: manager.forks_lock guards the list of waiting snapshots and is taken with no other
 * lock held; a snapshot's references are dropped with none held either.
 */
#include "forkshare.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adopt.h"
#include "client.h"
#include "log.h"
#include "macro.h"
#include "maps.h"
#include "pmem.h"
#include "store.h"
#include "uffd-compat.h"

struct fork_share {
	struct fork_share *next; /* manager.forks */
	pid_t parent;
	uint32_t token;
	uid_t uid;		   /* of the parent: only a process of the same user may claim it */
	uint64_t taken_usec;	   /* for the claim timeout */
	uint64_t nr;		   /* pages shared */
	struct pagetable *pt;	   /* pmem: a STORED entry with a reference of its own per page;
				    * NULL once the child has it */
	struct client_record *rec; /* pmem: names pt for a successor (adopt.h) */
	int child_pidfd;	   /* the child, once the parent named it (MSG_FORK_CHILD), or -1 */
	bool child_gone;	   /* ... and it is gone without claiming */
};

static int drop_stored(uint64_t vpn, pte_t *pte, void *userdata)
{
	pte_t e = *pte;

	(void)vpn;
	if (pte_type(e) == PTE_STORED) {
		*pte = 0; /* no entry ever names a freed handle */
		store_drop(userdata, pte_payload(e));
	}
	return 0;
}

void fork_share_free(struct store *s, struct fork_share *f)
{
	if (!f)
		return;
	record_retire(f->rec);
	if (f->pt) {
		pagetable_walk(f->pt, 0, UINT64_MAX / PAGE_SIZE, drop_stored, s);
		pagetable_free(f->pt);
	}
	if (f->child_pidfd >= 0)
		close(f->child_pidfd);
	free(f);
}

struct take_ctx {
	struct client *c;
	struct fork_share *f;
};

static int take_one(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct take_ctx *t = userdata;
	pte_t *dst;
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
	dst = pagetable_ensure(t->f->pt, vpn);
	if (!dst)
		return -ENOMEM;
	r = store_dup(t->c->m->store, pte_payload(*pte));
	if (r < 0)
		return r;
	*dst = pte_make(PTE_STORED, 0, pte_payload(*pte));
	t->f->nr++;
	return 0;
}

int fork_share_take(struct client *c, uint32_t token)
{
	struct manager *m = c->m;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct take_ctx t = {.c = c};
	int r;

	if (getsockopt(c->control_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return negative_errno();
	t.f = calloc(1, sizeof(*t.f));
	if (!t.f)
		return -ENOMEM;
	t.f->parent = c->pid;
	t.f->token = token;
	t.f->child_pidfd = -1;
	t.f->uid = cred.uid;
	t.f->taken_usec = now_usec();
	t.f->pt = pagetable_new();
	if (!t.f->pt) {
		free(t.f);
		return -ENOMEM;
	}
	/* The entries a fault thread is bringing back are LOADING: their handle is still
	 * valid under the lock, and our own reference outlives the fault thread's drop. */
	pthread_mutex_lock(&c->lock);
	r = pagetable_walk(c->pt, 0, VPN_USER_END, take_one, &t);
	pthread_mutex_unlock(&c->lock);
	if (r == 0) {
		r = fork_record_publish(t.f->pt, t.f->parent, token, t.f->uid, &t.f->rec);
		/* Without a record a crash would lose the child's pages: they come back instead. */
	}
	if (r < 0) {
		fork_share_free(m->store, t.f);
		return r;
	}
	pthread_mutex_lock(&m->forks_lock);
	t.f->next = m->forks;
	m->forks = t.f;
	pthread_mutex_unlock(&m->forks_lock);
	return (int)MIN(t.f->nr, (uint64_t)INT_MAX);
}

struct fork_share *fork_share_claim(struct manager *m, pid_t parent, uint32_t token, uid_t uid)
{
	struct fork_share *f = NULL;

	pthread_mutex_lock(&m->forks_lock);
	for (struct fork_share **p = &m->forks; *p; p = &(*p)->next)
		if ((!parent || (*p)->parent == parent) && (*p)->token == token &&
		    (*p)->uid == uid) {
			f = *p;
			*p = f->next;
			f->next = NULL;
			break;
		}
	pthread_mutex_unlock(&m->forks_lock);
	return f;
}

void fork_share_drop(struct manager *m, pid_t parent, uint32_t token)
{
	struct fork_share *f = NULL;

	pthread_mutex_lock(&m->forks_lock);
	for (struct fork_share **p = &m->forks; *p; p = &(*p)->next)
		if ((*p)->parent == parent && (*p)->token == token) {
			f = *p;
			*p = f->next;
			break;
		}
	pthread_mutex_unlock(&m->forks_lock);
	fork_share_free(m->store, f);
}

void fork_share_return(struct manager *m, struct fork_share *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&m->forks_lock);
	f->next = m->forks;
	m->forks = f;
	pthread_mutex_unlock(&m->forks_lock);
}

void fork_share_watch_child(struct manager *m, pid_t parent, uint32_t token, int pidfd)
{
	bool taken = false;

	pthread_mutex_lock(&m->forks_lock);
	for (struct fork_share *f = m->forks; f; f = f->next)
		if (f->parent == parent && f->token == token && f->child_pidfd < 0) {
			f->child_pidfd = pidfd;
			f->child_gone = pidfd < 0;
			taken = true;
			break;
		}
	pthread_mutex_unlock(&m->forks_lock);
	if (!taken && pidfd >= 0)
		close(pidfd); /* claimed already */
}

/* Whether the child the parent named is gone (a pidfd polls readable once it has exited). */
static bool child_gone(struct fork_share *f)
{
	struct pollfd p = {.fd = f->child_pidfd, .events = POLLIN};

	if (f->child_pidfd >= 0 && !f->child_gone)
		f->child_gone = poll(&p, 1, 0) > 0;
	return f->child_gone;
}

unsigned fork_share_count(struct manager *m)
{
	unsigned n = 0;

	pthread_mutex_lock(&m->forks_lock);
	for (struct fork_share *f = m->forks; f; f = f->next)
		n++;
	pthread_mutex_unlock(&m->forks_lock);
	return n;
}

bool fork_share_pending(struct manager *m)
{
	bool any;

	pthread_mutex_lock(&m->forks_lock);
	any = m->forks != NULL;
	pthread_mutex_unlock(&m->forks_lock);
	return any;
}

/*
 * Whether f's child may still claim it, however late: its parent named it, it lives, and there
 * are pages to claim (a child that shares none runs on without its snapshot). Should we die
 * meanwhile, a successor gives it fork-claim-timeout-sec (adopt_fork_child()).
 */
static bool child_watched(struct fork_share *f)
{
	return f->nr && f->child_pidfd >= 0 && !child_gone(f);
}

bool fork_share_unwatched(struct manager *m)
{
	bool any = false;

	pthread_mutex_lock(&m->forks_lock);
	for (struct fork_share *f = m->forks; f && !any; f = f->next)
		any = !child_watched(f);
	pthread_mutex_unlock(&m->forks_lock);
	return any;
}

void fork_share_expire(struct manager *m, uint64_t now, enum fork_expire how)
{
	uint64_t timeout = m->cfg.fork_claim_timeout_usec;
	bool force = how == FORK_EXPIRE_ALL;
	struct fork_share *gone = NULL;

	pthread_mutex_lock(&m->forks_lock);
	for (struct fork_share **p = &m->forks; *p;) {
		struct fork_share *f = *p;
		/* taken_usec may be later than now: the reclaim thread took it meanwhile. */
		bool late = f->taken_usec + timeout < now;

		if (force || child_gone(f) ||
		    (late && (how == FORK_EXPIRE_STOPPING || !child_watched(f)))) {
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
		if (!force && f->child_gone)
			log_info("the child of process %d's fork is gone without claiming its %" PRIu64
				 " shared pages: dropped",
				 (int)f->parent, f->nr);
		else if (!force)
			log_warning("the child of process %d's fork never claimed its %" PRIu64
				    " shared pages: dropped",
				    (int)f->parent, f->nr);
		fork_share_free(m->store, f);
	}
}

/* ---- attaching a snapshot to the child ---- */

static int count_stored(uint64_t vpn, pte_t *pte, void *userdata)
{
	(void)vpn;
	*(uint64_t *)userdata += pte_type(*pte) == PTE_STORED;
	return 0;
}

int fork_share_attach(struct client *c, struct fork_share *f)
{
	struct pagetable *empty;

	/* The snapshot's table becomes the child's, references and all; the child's record
	 * names it before anything in it changes. */
	pthread_mutex_lock(&c->lock);
	empty = c->pt;
	c->pt = f->pt;
	f->pt = NULL;
	c->nr_stored = 0;
	pagetable_walk(c->pt, 0, UINT64_MAX / PAGE_SIZE, count_stored, &c->nr_stored);
	client_record_set_table(c);
	pthread_mutex_unlock(&c->lock);
	pagetable_free(empty);
	return fork_share_settle(c);
}

struct vma_walk {
	struct client *c;
	struct rangeset wipe; /* MADV_WIPEONFORK mappings: the child reads zeroes there */
	int (*fn)(struct vma_walk *w, const struct maps_entry *e, bool wipe);
	struct adopt_pages *later; /* fork_share_place(): the pages to place */
	size_t next;		   /* ... the first not placed or dropped yet */
	uint64_t placed;
	int failed; /* ... the first that could be neither copied nor poisoned */
};

static int drop_unregistered(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct vma_walk *w = userdata;
	uint64_t addr = vpn * PAGE_SIZE;

	if (pte_type(*pte) == PTE_STORED &&
	    (!rangeset_contains(&w->c->registered, addr) || rangeset_contains(&w->wipe, addr))) {
		w->c->nr_stored--;
		return drop_stored(vpn, pte, w->c->m->store);
	}
	return 0;
}

static int stop_at_stored(uint64_t vpn, pte_t *pte, void *userdata)
{
	(void)vpn;
	(void)userdata;
	return pte_type(*pte) == PTE_STORED;
}

/*
 * One mapping of the child: one that holds shared pages is registered whatever its kind (made
 * read-only after it was filled, the scan would not take it, and its pages must still come
 * back).
 */
static int child_vma(struct vma_walk *w, const struct maps_entry *e, bool wipe)
{
	int any;

	if (e->shared || e->inode != 0)
		return 0;
	if (wipe)
		return rangeset_add(&w->wipe, e->start, e->end);
	pthread_mutex_lock(&w->c->lock);
	any = pagetable_walk(w->c->pt, e->start / PAGE_SIZE, e->end / PAGE_SIZE, stop_at_stored,
			     NULL);
	pthread_mutex_unlock(&w->c->lock);
	return any ? client_scan_range(w->c, e->start, e->end) : 0;
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
				r = w->fn(w, &e, strstr(line, " wf") != NULL);
			have = false;
		} else if (maps_parse_line(line, &e) == 0) {
			have = true;
		}
	}
	fclose(f);
	return r;
}

int fork_share_settle(struct client *c)
{
	struct vma_walk w = {.c = c, .fn = child_vma};
	bool shares;
	int r;

	c->armed = true;
	pthread_mutex_lock(&c->lock);
	shares = c->nr_stored > 0;
	pthread_mutex_unlock(&c->lock);
	/* The usual scan, which also finds pages the child has (brought back by the parent
	 * between its snapshot and fork()) and makes them PRESENT. */
	r = client_scan(c);
	/* Only shared pages need the child's mappings (smaps is dear: it counts every page). */
	if (r == 0 && shares)
		r = walk_child_vmas(&w);
	pthread_mutex_lock(&c->lock);
	pagetable_walk(c->pt, 0, VPN_USER_END, drop_unregistered, &w);
	pthread_mutex_unlock(&c->lock);
	rangeset_done(&w.wipe);
	return r;
}

/* ---- pages adopted for a child that our store refused ---- */

/* Poisons a page of the child: SIGBUS on access beats any wrong byte. */
static int poison_page(struct client *c, uint64_t vpn)
{
	struct uffdio_poison p = {.range = {.start = vpn * PAGE_SIZE, .len = PAGE_SIZE}};

	return ioctl(c->uffd, UFFDIO_POISON, &p) < 0 && errno != EEXIST ? -errno : 0;
}

/*
 * Copies one page into the child and tracks it as present (EEXIST: the child has its own). A
 * lost page (no data), or one that cannot be copied, is poisoned. Returns 1 when copied, 0
 * when not, -errno when it could be neither copied nor poisoned.
 */
static int place_page(struct client *c, const struct adopt_page *p)
{
	struct uffdio_copy copy = {
		.dst = p->vpn * PAGE_SIZE,
		.src = (uint64_t)(uintptr_t)p->data,
		.len = PAGE_SIZE,
	};
	bool copied = false;
	pte_t *pte;
	int r = 0;

	if (p->data && ioctl(c->uffd, UFFDIO_COPY, &copy) == 0)
		copied = true;
	else if (p->data && errno != EEXIST)
		r = -errno;
	if (r == -ESRCH)
		return r;
	if (r < 0) {
		log_error_errno(r,
				"client %d: page %#" PRIx64 " its parent shared could not be "
				"put back: %m",
				c->pid, p->vpn * PAGE_SIZE);
		atomic_fetch_add(&c->m->totals.adopt_poisoned, 1);
	}
	if (!p->data || r < 0) {
		r = poison_page(c, p->vpn);
		if (r < 0)
			return r;
	}
	pthread_mutex_lock(&c->lock);
	pte = pagetable_ensure(c->pt, p->vpn);
	if (pte && *pte == 0) {
		*pte = pte_make(PTE_PRESENT, copied ? PTE_REF : 0, 0);
		c->nr_present++;
	}
	pthread_mutex_unlock(&c->lock);
	return pte ? copied : -ENOMEM;
}

/*
 * One mapping of the child: the pages in it go in, registered first if need be (as
 * child_vma()); none in a MADV_WIPEONFORK mapping, and pages between mappings are nowhere in
 * the child: dropped. A page that can be neither copied nor poisoned fails the walk at the end.
 */
static int place_in_vma(struct vma_walk *w, const struct maps_entry *e, bool wipe)
{
	struct adopt_pages *l = w->later;
	bool ours = !wipe && !e->shared && !e->inode;
	size_t i = w->next;
	int r = 0;

	while (i < l->nr && l->p[i].vpn * PAGE_SIZE < e->start)
		i++;
	if (ours && i < l->nr && l->p[i].vpn * PAGE_SIZE < e->end)
		r = client_scan_range(w->c, e->start, e->end);
	for (; r == 0 && i < l->nr && l->p[i].vpn * PAGE_SIZE < e->end; i++) {
		int placed = ours ? place_page(w->c, &l->p[i]) : 0;

		if (placed == -ESRCH)
			r = placed;
		else if (placed < 0 && !w->failed)
			w->failed = placed;
		else if (placed > 0)
			w->placed++;
	}
	w->next = i;
	return r;
}

int fork_share_place(struct client *c, struct adopt_pages *later)
{
	struct vma_walk w = {.c = c, .fn = place_in_vma, .later = later};
	int r;

	if (!later->nr)
		return 0;
	r = walk_child_vmas(&w);
	log_info("client %d: %" PRIu64 " pages its parent shared, for which our store had no "
		 "room, put back into it",
		 c->pid, w.placed);
	rangeset_done(&w.wipe);
	return r < 0 ? r : w.failed;
}
