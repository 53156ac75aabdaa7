/* SPDX-License-Identifier: MIT */
#include "adopt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "client.h"
#include "fault.h"
#include "forkshare.h"
#include "log.h"
#include "macro.h"
#include "pagetable.h"
#include "pmem.h"
#include "store.h"
#include "procfs.h"
#include "swapstate.h"
#include "uffd-compat.h"

#define CLIENT_TABLE_SLOTS 8192

/* pmem root PMEM_ROOT_CLIENTS: the records of the clients, by slot; 0 is a free slot. */
struct client_table {
	uint64_t slot[CLIENT_TABLE_SLOTS];
};

static struct client_table *table;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
/* A record's publication (slot, state-file line, magic) against a rewrite of the state file,
 * which would lose a line appended meanwhile: the reclaim thread publishes fork snapshots.
 * Taken before table_lock. */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;

/* A dead daemon's pmem and the records in it that no client has claimed yet. */
struct old_daemon {
	struct old_daemon *next;
	struct pmem_view *v;
	uint64_t *pending; /* old addresses of live records not adopted yet */
	unsigned nr_pending;
	uint64_t *forks; /* old addresses of fork snapshots no child has claimed yet */
	unsigned nr_forks;
	/* Slots in swap areas adopted in place, and pool objects when the dead daemon shared
	 * any (shared), by the dead daemon's handle: a fork shared them, so another client may
	 * name the same one. Each holds a reference of its own until the old daemon is
	 * released. Open addressing, a power of two or 0. */
	struct slot_alias {
		uint64_t old_handle, handle;
	} *aliases;
	size_t nr_aliases, cap_aliases;
	struct store *store; /* the aliases' references are in it */
	bool shared;
	uint64_t forks_deadline_usec; /* after which they are given up */
};

static struct old_daemon *olds;

static void aliases_free(struct old_daemon *o, struct store *s);

/*
 * The swap areas while a dead daemon's clients may have pages in slots not reserved yet
 * (adopt_swap_init()). Main thread only, but for state_dirty.
 */
static struct {
	struct store *store;
	char path[PATH_MAX];	     /* the state file; "" without swap areas */
	struct swapstate_proc *held; /* processes to adopt or see gone before slots go out */
	size_t nr_held;
	bool holding;		  /* the store's areas are held (store_set_swap_held()) */
	uint64_t forks_deadline_usec; /* fork snapshots held until then at most */
	_Atomic bool state_dirty; /* a record was retired: rewrite the file */
} S;

int adopt_init(void)
{
	if (!pmem_enabled())
		return 0;
	table = pmem_alloc(sizeof(*table));
	if (!table)
		return -ENOMEM;
	pmem_set_root(PMEM_ROOT_CLIENTS, table);
	return 0;
}

static void held_forget(pid_t pid, uint64_t start_time);

/* Puts rec, filled in, where a successor looks, magic last. Frees it on failure. */
static int record_publish(struct client_record *rec, uint64_t magic)
{
	unsigned i;

	pthread_mutex_lock(&state_lock);
	pthread_mutex_lock(&table_lock);
	for (i = 0; i < CLIENT_TABLE_SLOTS && table->slot[i]; i++)
		;
	if (i < CLIENT_TABLE_SLOTS)
		table->slot[i] = (uint64_t)(uintptr_t)rec;
	pthread_mutex_unlock(&table_lock);
	if (i == CLIENT_TABLE_SLOTS) {
		pthread_mutex_unlock(&state_lock);
		pmem_free(rec, sizeof(*rec));
		return -ENOSPC;
	}
	if (S.path[0]) {
		/* Before the client can have a page evicted, so before its first slot (a fork
		 * snapshot's slots are its parent's, whose line is there already). */
		struct swapstate_proc p = {.pid = rec->pid, .start_time = rec->start_time};
		int r;

		if (magic == FORK_RECORD_MAGIC)
			p = (struct swapstate_proc){.pid = rec->pid, .fork = true, .token = rec->fork_token};
		r = swapstate_append(S.path, &p);
		if (r < 0)
			log_warning_errno(r,
					  "%s: cannot add process %d: %m; after a crash its pages "
					  "in swap areas could be given to others",
					  S.path, rec->pid);
	}
	__atomic_store_n(&rec->magic, magic, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&state_lock);
	return 0;
}

void record_retire(struct client_record *rec)
{
	if (!rec)
		return;
	__atomic_store_n(&rec->magic, 0, __ATOMIC_RELEASE);
	pthread_mutex_lock(&table_lock);
	for (unsigned i = 0; i < CLIENT_TABLE_SLOTS; i++)
		if (table->slot[i] == (uint64_t)(uintptr_t)rec)
			table->slot[i] = 0;
	pthread_mutex_unlock(&table_lock);
	pmem_free(rec, sizeof(*rec));
	atomic_store(&S.state_dirty, true);
}

/* ---- the swap areas after a crash ---- */

/* A process, while it lives; a fork snapshot, until its child claims it or it expires. */
static bool proc_alive(const struct swapstate_proc *p)
{
	if (p->fork)
		return now_usec() < S.forks_deadline_usec;
	return p->start_time && proc_start_time(p->pid) == p->start_time;
}

/* Rewrites the state file: our clients (their records) and the processes we still hold the
 * areas for. Main thread. */
static void state_rewrite(void)
{
	_cleanup_free_ struct swapstate_proc *v = NULL;
	size_t n = 0;
	int r;

	if (!S.path[0])
		return;
	atomic_store(&S.state_dirty, false);
	v = calloc(CLIENT_TABLE_SLOTS + S.nr_held, sizeof(*v));
	if (!v) {
		atomic_store(&S.state_dirty, true); /* next time */
		return;
	}
	pthread_mutex_lock(&state_lock);
	if (table) {
		pthread_mutex_lock(&table_lock);
		for (unsigned i = 0; i < CLIENT_TABLE_SLOTS; i++) {
			const struct client_record *rec = (void *)(uintptr_t)table->slot[i];

			if (rec && rec->magic == FORK_RECORD_MAGIC)
				v[n++] = (struct swapstate_proc){.pid = rec->pid, .fork = true,
								 .token = rec->fork_token};
			else if (rec)
				v[n++] = (struct swapstate_proc){rec->pid, rec->start_time};
		}
		pthread_mutex_unlock(&table_lock);
	}
	if (S.nr_held) /* S.held may be NULL: memcpy must not see it */
		memcpy(v + n, S.held, S.nr_held * sizeof(*v));
	n += S.nr_held;
	r = swapstate_write(S.path, getpid(), v, n);
	pthread_mutex_unlock(&state_lock);
	if (r < 0)
		log_warning_errno(r, "%s: cannot write: %m", S.path);
}

int adopt_swap_init(struct store *s, const char *state_path, uint64_t fork_claim_timeout_usec)
{
	struct swapstate_proc *v = NULL;
	size_t live = 0;
	int n;

	if (snprintf(S.path, sizeof(S.path), "%s", state_path) >= (int)sizeof(S.path)) {
		S.path[0] = '\0';
		return -ENAMETOOLONG;
	}
	S.store = s;
	/* A child waiting for its fork snapshot tries again within a second of our start. */
	S.forks_deadline_usec = now_usec() + fork_claim_timeout_usec;
	n = swapstate_read(S.path, &v);
	if (n < 0 && n != -ENOENT)
		log_warning_errno(n,
				  "%s: cannot read: %m; if a memextd died with pages in swap "
				  "areas, their slots may be given out again",
				  S.path);
	for (int i = 0; i < n; i++)
		if (proc_alive(&v[i]) && v[i].pid != getpid())
			v[live++] = v[i];
	S.held = v;
	S.nr_held = live;
	if (live) {
		/* Their pages may be in any slot: none goes out before they are back or gone. */
		S.holding = true;
		store_set_swap_held(s, true);
		log_info("%zu process(es) of a memextd that died may have pages in the swap areas: "
			 "no slot is handed out until each is adopted or has exited",
			 live);
	}
	state_rewrite();
	return 0;
}

void adopt_swap_exit(void)
{
	unsigned kept = 0;

	if (!S.path[0])
		return;
	if (table)
		for (unsigned i = 0; i < CLIENT_TABLE_SLOTS; i++)
			kept += table->slot[i] != 0;
	/* Clients left to a successor (their records kept) still need their slots. */
	if (kept || S.nr_held)
		state_rewrite();
	else
		unlink(S.path);
	free(S.held);
	S.held = NULL;
	S.nr_held = 0;
	S.path[0] = '\0';
}

/* The process is back: its pages are adopted (their slots reserved) or it has none left. */
static void held_drop(const struct swapstate_proc *p)
{
	for (size_t i = 0; i < S.nr_held;) {
		if (S.held[i].pid == p->pid && S.held[i].start_time == p->start_time &&
		    S.held[i].fork == p->fork && S.held[i].token == p->token)
			S.held[i] = S.held[--S.nr_held];
		else
			i++;
	}
}

static void held_forget(pid_t pid, uint64_t start_time)
{
	held_drop(&(struct swapstate_proc){.pid = pid, .start_time = start_time});
}

/* pagetable_view_walk(): 1 at the first entry whose page is in a slot of a swap area. */
static int entry_in_area(uint64_t vpn, pte_t old, void *userdata)
{
	const struct pmem_view *v = userdata;

	(void)vpn;
	switch (pte_type(old)) {
	case PTE_STORED:
	case PTE_LOADING:
		break;
	case PTE_PRESENT:
		if (old & PTE_CLEAN) /* its copy is kept */
			break;
		return 0;
	default:
		return 0;
	}
	return store_view_in_area(v, pmem_view_root(v, PMEM_ROOT_STORE), pte_payload(old));
}

/* Whether rec's table names a slot of a swap area (or cannot be read whole to tell). */
static bool table_in_area(const struct old_daemon *o, const struct client_record *rec)
{
	return pagetable_view_walk(o->v, rec->pt_root, entry_in_area, (void *)o->v) != 0;
}

/* Whether the swap slots parent's fork snapshot for token may name are still held for it. */
static bool held_fork(pid_t parent, uint32_t token)
{
	for (size_t i = 0; i < S.nr_held; i++)
		if (S.held[i].fork && S.held[i].pid == parent && S.held[i].token == token)
			return true;
	return false;
}

/* A fork snapshot's child is back: the snapshot's pages are adopted. */
static void held_forget_fork(pid_t parent, uint32_t token)
{
	held_drop(&(struct swapstate_proc){.pid = parent, .fork = true, .token = token});
}

static void held_reap(void)
{
	for (size_t i = 0; i < S.nr_held;) {
		if (proc_alive(&S.held[i]))
			i++;
		else
			S.held[i] = S.held[--S.nr_held];
	}
	if (S.holding && !S.nr_held) {
		S.holding = false;
		store_set_swap_held(S.store, false);
		log_info("every process of the memextd that died is adopted or gone: the swap "
			 "areas hand out slots again");
		atomic_store(&S.state_dirty, true);
	}
	if (atomic_load(&S.state_dirty))
		state_rewrite();
}

/* A record for pid's table pt, not published yet; NULL when out of memory. */
static struct client_record *record_new(pid_t pid, const struct pagetable *pt)
{
	struct client_record *rec = pmem_alloc(sizeof(*rec));

	if (rec) {
		rec->pid = pid;
		rec->pt_root = pagetable_root_addr(pt);
	}
	return rec;
}

int client_record_attach(struct client *c)
{
	uint64_t start_time = proc_start_time(c->pid);
	struct client_record *rec;

	/* A process held for that says hello afresh has exec()ed: its old pages went with its
	 * old address space. (A resume is forgotten once adopted.) */
	if (!(c->flags & HELLO_RESUME))
		held_forget(c->pid, start_time);
	rec = table ? record_new(c->pid, c->pt) : NULL;
	if (!table)
		return 0;
	if (!rec)
		return -ENOMEM;
	rec->start_time = start_time;
	if (record_publish(rec, CLIENT_RECORD_MAGIC) < 0)
		return -ENOSPC;
	c->record = rec;
	return 0;
}

void client_record_detach(struct client *c)
{
	record_retire(c->record);
	c->record = NULL;
}

void client_record_set_table(struct client *c)
{
	if (c->record)
		__atomic_store_n(&c->record->pt_root, pagetable_root_addr(c->pt), __ATOMIC_RELEASE);
}

int fork_record_publish(const struct pagetable *pt, pid_t parent, uint32_t token, uid_t uid,
			struct client_record **ret)
{
	struct client_record *rec = table ? record_new(parent, pt) : NULL;

	*ret = NULL;
	if (!table)
		return 0;
	if (!rec)
		return -ENOMEM;
	rec->fork_token = token;
	rec->fork_uid = uid;
	if (record_publish(rec, FORK_RECORD_MAGIC) < 0)
		return -ENOSPC;
	*ret = rec;
	return 0;
}

/* ---- the dead daemons ---- */

static const struct client_record *old_record_of(const struct pmem_view *v, uint64_t addr,
						 uint64_t magic)
{
	const struct client_record *rec = pmem_view_ptr(v, addr, sizeof(*rec));

	return rec && rec->magic == magic ? rec : NULL;
}

static const struct client_record *old_record(const struct pmem_view *v, uint64_t addr)
{
	return old_record_of(v, addr, CLIENT_RECORD_MAGIC);
}

/* Forgets the records in addr[0..*nr) that are gone or name the table root: adopted. */
static void forget_table(const struct pmem_view *v, uint64_t *addr, unsigned *nr, uint64_t magic,
			 uint64_t root)
{
	for (unsigned i = 0; i < *nr;) {
		const struct client_record *rec = old_record_of(v, addr[i], magic);

		if (!rec || rec->pt_root == root)
			addr[i] = addr[--*nr];
		else
			i++;
	}
}

static bool record_alive(const struct client_record *rec)
{
	return rec->start_time && proc_start_time(rec->pid) == rec->start_time;
}

static int old_daemon_open(int fd, uint64_t fork_claim_timeout_usec, struct old_daemon **ret)
{
	const struct client_table *t;
	struct pmem_view *v;
	struct old_daemon *o;
	int r;

	r = pmem_view_open(fd, &v);
	if (r < 0)
		return r;
	for (o = olds; o; o = o->next)
		if (o->v->hdr.created_usec == v->hdr.created_usec &&
		    o->v->hdr.daemon_pid == v->hdr.daemon_pid) {
			pmem_view_close(v); /* the same one, from another client */
			*ret = o;
			return 0;
		}
	o = calloc(1, sizeof(*o));
	t = pmem_view_ptr(v, pmem_view_root(v, PMEM_ROOT_CLIENTS), sizeof(*t));
	if (o && t) {
		o->pending = calloc(CLIENT_TABLE_SLOTS, sizeof(*o->pending));
		o->forks = calloc(CLIENT_TABLE_SLOTS, sizeof(*o->forks));
	}
	if (!o || !t || !o->pending || !o->forks) {
		if (o) {
			free(o->pending);
			free(o->forks);
		}
		free(o);
		pmem_view_close(v);
		return t ? -ENOMEM : -EINVAL;
	}
	o->v = v;
	o->shared = store_view_shared(v, pmem_view_root(v, PMEM_ROOT_STORE));
	for (unsigned i = 0; i < CLIENT_TABLE_SLOTS; i++) {
		const struct client_record *rec = t->slot[i] ? old_record(v, t->slot[i]) : NULL;

		if (rec && record_alive(rec))
			o->pending[o->nr_pending++] = t->slot[i];
		else if (t->slot[i] && old_record_of(v, t->slot[i], FORK_RECORD_MAGIC))
			o->forks[o->nr_forks++] = t->slot[i];
	}
	/* A child waiting for its snapshot tries again within a second. */
	o->forks_deadline_usec = now_usec() + fork_claim_timeout_usec;
	log_info("adopting from memextd %" PRIu64 " (died): %u of its clients are alive, %u fork "
		 "snapshots wait for their child",
		 v->hdr.daemon_pid, o->nr_pending, o->nr_forks);
	o->next = olds;
	olds = o;
	*ret = o;
	return 0;
}

void adopt_reap(void)
{
	held_reap();
	for (struct old_daemon **pp = &olds; *pp;) {
		struct old_daemon *o = *pp;

		for (unsigned i = 0; i < o->nr_pending;) {
			const struct client_record *rec = old_record(o->v, o->pending[i]);

			if (!rec || !record_alive(rec))
				o->pending[i] = o->pending[--o->nr_pending];
			else
				i++;
		}
		if (o->nr_forks && now_usec() > o->forks_deadline_usec) {
			log_warning("memextd %" PRIu64 ": %u fork snapshots were never claimed: "
				    "dropped",
				    o->v->hdr.daemon_pid, o->nr_forks);
			o->nr_forks = 0;
		}
		if (o->nr_pending || o->nr_forks) {
			pp = &o->next;
			continue;
		}
		/* Every client it had is back or gone: its memory goes, for all holders. */
		log_info("the pmem of memextd %" PRIu64 " is released", o->v->hdr.daemon_pid);
		*pp = o->next;
		pmem_view_close(o->v);
		aliases_free(o, o->store);
		free(o->pending);
		free(o->forks);
		free(o);
	}
}

/* ---- rebuilding a client's table ---- */

struct adopt_ctx {
	struct client *c;
	struct old_daemon *o;
	const struct pmem_view *v;
	uint64_t old_store;
	void *buf;
	int64_t restored; /* pages put into our store */
	uint64_t lost;	  /* pages that could not be recovered (poisoned) */
	uint64_t aside_lost;	   /* entries the dead daemon had set aside for a REMAP */
	struct adopt_pages *later; /* a fork child's: what our store refuses waits here */
};

/* Whether the process has the page at vpn itself (resident or in the kernel's swap). */
static bool in_process(struct client *c, uint64_t vpn)
{
	uint64_t e;

	if (pread(c->pagemap_fd, &e, sizeof(e), (off_t)(vpn * sizeof(e))) != (ssize_t)sizeof(e))
		return false;
	return e & (UINT64_C(3) << 62);
}

static int set_entry(struct adopt_ctx *a, uint64_t vpn, pte_t e)
{
	pte_t *pte = pagetable_ensure(a->c->pt, vpn);

	if (!pte)
		return -ENOMEM;
	*pte = e;
	switch (pte_type(e)) {
	case PTE_PRESENT:
		a->c->nr_present++;
		a->c->nr_cached += !!(e & PTE_CLEAN);
		a->c->lru.nr_unevictable += !!(e & PTE_UNEVICTABLE);
		break;
	case PTE_STORED:
		a->c->nr_stored++;
		break;
	default:
		break;
	}
	return 0;
}

static int later_push(struct adopt_pages *l, uint64_t vpn, void *data)
{
	if (l->nr == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct adopt_page *p = reallocarray(l->p, cap, sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->p = p;
		l->cap = cap;
	}
	l->p[l->nr++] = (struct adopt_page){vpn, data};
	return 0;
}

/* A page whose content is nowhere: marked (unevictable until then), and poisoned after the
 * replay (adopt_client); a fork child's, whose memory is not registered yet, once it is
 * (fork_share_place()). */
static int mark_lost(struct adopt_ctx *a, uint64_t vpn, int why)
{
	log_error_errno(why, "client %d: page %#" PRIx64 " could not be recovered: %m", a->c->pid,
			vpn * PAGE_SIZE);
	a->lost++;
	if (a->later && later_push(a->later, vpn, NULL) == 0)
		return 0;
	return set_entry(a, vpn, pte_make(PTE_PRESENT, PTE_UNEVICTABLE, 0));
}

void adopt_pages_free(struct adopt_pages *later)
{
	for (size_t i = 0; i < later->nr; i++)
		free(later->p[i].data);
	free(later->p);
	*later = (struct adopt_pages){0};
}

/* The page in a->buf, for a fork child whose memory is not registered yet. */
static int keep_for_later(struct adopt_ctx *a, uint64_t vpn)
{
	void *data = malloc(PAGE_SIZE);

	if (data) {
		memcpy(data, a->buf, PAGE_SIZE);
		if (later_push(a->later, vpn, data) == 0)
			return 0;
		free(data);
	}
	return mark_lost(a, vpn, -ENOMEM);
}

/*
 * The dead daemon held the page: ours keeps it even past its limit, which then only stops new
 * evictions. Putting it back into the process instead would come before the journal's events
 * are applied and those waiting in the uffd are read: it would fail (EAGAIN) and be poisoned,
 * or land in a range MADV_DONTNEED emptied meanwhile, which must read zero.
 */
static int save_adopted(struct adopt_ctx *a, const void *page, uint64_t *ret_handle)
{
	bool past;
	int r = store_save_adopted(a->c->m->store, page, &past, ret_handle);

	if (r == 0 && past)
		atomic_fetch_add(&a->c->m->totals.adopt_past_limit, 1);
	return r;
}

/* Puts the page in a->buf into our store as vpn's STORED entry; if the store cannot take it
 * (out of memory, a disk error), into the process itself (for a fork child, later: its memory
 * is not registered yet). */
static int keep_page(struct adopt_ctx *a, uint64_t vpn)
{
	struct uffdio_copy copy = {
		.dst = vpn * PAGE_SIZE,
		.src = (uint64_t)(uintptr_t)a->buf,
		.len = PAGE_SIZE,
	};
	uint64_t h;

	if (save_adopted(a, a->buf, &h) == 0) {
		a->restored++;
		return set_entry(a, vpn, pte_make(PTE_STORED, 0, h));
	}
	if (a->later)
		return keep_for_later(a, vpn);
	if (ioctl(a->c->uffd, UFFDIO_COPY, &copy) < 0 && errno != EEXIST)
		return mark_lost(a, vpn, -errno);
	return set_entry(a, vpn, pte_make(PTE_PRESENT, PTE_REF, 0));
}

static struct slot_alias *alias_of(struct old_daemon *o, uint64_t old_handle)
{
	size_t mask = o->cap_aliases - 1, i = (old_handle * UINT64_C(0x9e3779b97f4a7c15)) >> 20;

	for (i &= mask; o->aliases[i].old_handle && o->aliases[i].old_handle != old_handle;
	     i = (i + 1) & mask)
		;
	return &o->aliases[i];
}

/* Remembers that old_handle's slot is handle now, with a reference of its own. */
static void alias_add(struct old_daemon *o, struct store *s, uint64_t old_handle, uint64_t handle)
{
	if ((o->nr_aliases + 1) * 2 > o->cap_aliases) {
		struct slot_alias *old = o->aliases;
		size_t old_cap = o->cap_aliases, cap = old_cap ? old_cap * 2 : 1024;

		o->aliases = calloc(cap, sizeof(*o->aliases));
		if (!o->aliases) {
			o->aliases = old; /* not shared, then: the other side's page is lost */
			return;
		}
		o->cap_aliases = cap;
		for (size_t i = 0; i < old_cap; i++)
			if (old[i].old_handle)
				*alias_of(o, old[i].old_handle) = old[i];
		free(old);
	}
	if (store_dup(s, handle) == 0) {
		o->store = s;
		*alias_of(o, old_handle) = (struct slot_alias){old_handle, handle};
		o->nr_aliases++;
	}
}

static void aliases_free(struct old_daemon *o, struct store *s)
{
	for (size_t i = 0; i < o->cap_aliases; i++)
		if (o->aliases[i].old_handle)
			store_drop(s, o->aliases[i].handle);
	free(o->aliases);
}

/*
 * store_adopt() into our store; counts what it restored, and the pages left in swap areas. A
 * slot another client adopted already (a fork shared it) is shared again.
 */
static int adopt_handle(struct adopt_ctx *a, uint64_t old_handle, uint64_t *ret_handle)
{
	struct store *s = a->c->m->store;
	struct slot_alias *al = a->o->cap_aliases ? alias_of(a->o, old_handle) : NULL;
	int r;

	if (al && al->old_handle && store_dup(s, al->handle) == 0) {
		*ret_handle = al->handle;
		r = 0;
	} else {
		bool past = false;

		r = store_adopt(s, a->v, a->old_store, old_handle, a->buf, &past, ret_handle);
		if (r == 0 && past)
			atomic_fetch_add(&a->c->m->totals.adopt_past_limit, 1);
		/* A slot must not be adopted twice; a pool object could be, but a copy for each
		 * side of a fork would need up to twice the pool the dead daemon had. */
		if (r == 0 && (store_load_may_block(s, *ret_handle) || a->o->shared))
			alias_add(a->o, s, old_handle, *ret_handle);
	}
	if (r == 0) {
		a->restored++;
		if (store_load_may_block(s, *ret_handle))
			atomic_fetch_add(&a->c->m->totals.adopt_swap_pages, 1);
	}
	return r;
}

static int adopt_stored(struct adopt_ctx *a, uint64_t vpn, uint64_t old_handle)
{
	uint64_t h;
	int r = adopt_handle(a, old_handle, &h);

	if (r == 0)
		return set_entry(a, vpn, pte_make(PTE_STORED, 0, h));
	/* Not adopted as it was (out of memory, its slot taken here): saved anew, if it can be
	 * read, or put back into the process. */
	if (store_view_load(a->v, a->old_store, old_handle, a->buf) < 0)
		return mark_lost(a, vpn, r);
	return keep_page(a, vpn);
}

/* A page of the batch the dead daemon had in flight: in the process, in staging, or gone
 * with the range (DEAD). */
static int adopt_moving(struct adopt_ctx *a, uint64_t vpn, pte_t old)
{
	struct client *c = a->c;

	if (old & PTE_DEAD)
		return 0;
	if (in_process(c, vpn))
		return set_entry(a, vpn, pte_make(PTE_PRESENT, PTE_REF, 0));
	for (unsigned half = 0; half < 2; half++) {
		uint64_t addr =
			c->staging.start + (half * MEMEXT_STAGING_PAGES + pte_payload(old)) * PAGE_SIZE;
		struct iovec local = {a->buf, PAGE_SIZE}, remote = {(void *)(uintptr_t)addr, PAGE_SIZE};

		if (addr + PAGE_SIZE > c->staging.end || !in_process(c, addr / PAGE_SIZE))
			continue;
		if (process_vm_readv(c->pid, &local, 1, &remote, 1, 0) != PAGE_SIZE)
			return mark_lost(a, vpn, -errno);
		return keep_page(a, vpn);
	}
	return mark_lost(a, vpn, -ENOENT);
}

static int adopt_one(uint64_t vpn, pte_t old, void *userdata)
{
	struct adopt_ctx *a = userdata;

	if (vpn >= VPN_USER_END) {
		/* Set aside for a REMAP the dead daemon had not read: the journal does not
		 * know them, and the REMAP will take the source's entries. */
		if (a->aside_lost++ == 0)
			log_error("client %d: pages set aside for an mremap are lost", a->c->pid);
		return 0;
	}
	switch (pte_type(old)) {
	case PTE_PRESENT:
		if (old & PTE_CLEAN) {
			uint64_t h;

			/* Its copy is kept again, or the page is just resident: the write
			 * protection then costs one fault that finds it not clean. */
			if (adopt_handle(a, pte_payload(old), &h) == 0)
				return set_entry(a, vpn, pte_make(PTE_PRESENT, PTE_CLEAN, h));
		}
		return set_entry(a, vpn, pte_make(PTE_PRESENT, 0, 0));
	case PTE_STORED:
		return adopt_stored(a, vpn, pte_payload(old));
	case PTE_LOADING:
		/* Installed before the crash, or not. */
		if (in_process(a->c, vpn))
			return set_entry(a, vpn, pte_make(PTE_PRESENT, PTE_REF, 0));
		return adopt_stored(a, vpn, pte_payload(old));
	case PTE_MOVING:
		return adopt_moving(a, vpn, old);
	default:
		return 0;
	}
}

static int poison_lost(uint64_t vpn, pte_t *pte, void *userdata)
{
	struct client *c = userdata;
	struct uffdio_poison p = {.range = {.start = vpn * PAGE_SIZE, .len = PAGE_SIZE}};

	if (pte_type(*pte) == PTE_PRESENT && (*pte & PTE_UNEVICTABLE)) {
		/* SIGBUS on access is better than any wrong byte. */
		if (ioctl(c->uffd, UFFDIO_POISON, &p) < 0 && errno != EEXIST)
			log_error_errno(-errno, "client %d: cannot poison lost page %#" PRIx64 ": %m", c->pid,
				  vpn * PAGE_SIZE);
		lru_del(&c->lru, *pte);
		*pte = pte_make(PTE_PRESENT, 0, 0);
	}
	return 0;
}

/* The events the dead daemon read and had not finished applying, in the order read. */
static void replay_journal(struct client *c, const struct client_record *rec)
{
	for (unsigned i = 0; i < CLIENT_JOURNAL_MSGS; i++) {
		struct uffd_msg msg = rec->journal[i];

		if (msg.event == 0 || msg.event == UFFD_EVENT_PAGEFAULT)
			continue;
		log_debug("client %d: replaying uffd event %u", c->pid, msg.event);
		fault_replay_event(c, &msg);
	}
}

/* Rebuilds c's table from the dead daemon's table that rec names, replays rec's journal and
 * poisons what is nowhere. Returns the pages restored to our store, or -errno. */
static int64_t adopt_table(struct client *c, struct old_daemon *o, const struct client_record *rec,
			   struct adopt_pages *later)
{
	struct adopt_ctx a = {
		.c = c,
		.o = o,
		.v = o->v,
		.old_store = pmem_view_root(o->v, PMEM_ROOT_STORE),
		.buf = aligned_alloc(PAGE_SIZE, PAGE_SIZE),
		.later = later,
	};
	int r;

	if (!a.buf)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	r = pagetable_view_walk(o->v, rec->pt_root, adopt_one, &a);
	pthread_mutex_unlock(&c->lock);
	free(a.buf);
	if (r < 0)
		log_error_errno(r, "client %d: its page table could not be read whole: %m", c->pid);
	if (rec->magic == CLIENT_RECORD_MAGIC) {
		fault_adopt_ring(c, &rec->ring);
		replay_journal(c, rec);
	}
	pthread_mutex_lock(&c->lock);
	pagetable_walk(c->pt, 0, UINT64_MAX / PAGE_SIZE, poison_lost, c);
	pthread_mutex_unlock(&c->lock);
	if (a.lost) {
		atomic_fetch_add(&c->m->totals.adopt_poisoned, a.lost);
		log_error("client %d: %" PRIu64 " pages could not be recovered and were poisoned",
			  c->pid, a.lost);
	}
	return r < 0 ? r : a.restored;
}

/* Adopts c from its own record in o, if o has one (-ENOENT: nothing of it was evicted). */
static int64_t adopt_pending(struct client *c, struct old_daemon *o, struct adopt_pages *later)
{
	const struct client_record *rec = NULL;
	unsigned i;
	int64_t n;

	for (i = 0; i < o->nr_pending; i++) {
		rec = old_record(o->v, o->pending[i]);
		if (rec && rec->pid == c->pid && rec->start_time == proc_start_time(c->pid))
			break;
	}
	if (i == o->nr_pending)
		return -ENOENT;
	n = adopt_table(c, o, rec, later);
	/* A fork child that had its answer: the snapshot's table is its own, and so are the
	 * swap slots held for the snapshot (none is handed out while one is held). */
	for (unsigned k = 0; k < o->nr_forks; k++) {
		const struct client_record *snap =
			old_record_of(o->v, o->forks[k], FORK_RECORD_MAGIC);

		if (snap && snap->pt_root == rec->pt_root)
			held_forget_fork(snap->pid, snap->fork_token);
	}
	forget_table(o->v, o->forks, &o->nr_forks, FORK_RECORD_MAGIC, rec->pt_root);
	o->pending[i] = o->pending[--o->nr_pending];
	return n;
}

int64_t adopt_client(struct client *c, int old_pmem_fd)
{
	struct old_daemon *o;
	int64_t n = pmem_is_own(old_pmem_fd)
			    ? -ENOENT
			    : old_daemon_open(old_pmem_fd, c->m->cfg.fork_claim_timeout_usec, &o);

	if (n < 0)
		close(old_pmem_fd);
	else
		n = adopt_pending(c, o, NULL);
	/* Back, whatever it brought: its slots are reserved or it has none. */
	held_forget(c->pid, proc_start_time(c->pid));
	adopt_reap();
	return n;
}

int64_t adopt_fork_child(struct client *c, int old_pmem_fd, pid_t parent, uint32_t token, uid_t uid,
			 struct adopt_pages *later)
{
	const struct client_record *rec = NULL;
	struct old_daemon *o;
	unsigned i;
	int64_t n;
	int r = old_daemon_open(old_pmem_fd, c->m->cfg.fork_claim_timeout_usec, &o);

	if (r < 0) {
		close(old_pmem_fd);
		return r;
	}
	for (i = 0; i < o->nr_forks; i++) {
		rec = old_record_of(o->v, o->forks[i], FORK_RECORD_MAGIC);
		if (rec && rec->pid == parent && rec->fork_token == token && rec->fork_uid == uid)
			break;
	}
	if (i == o->nr_forks) {
		/* Its own record: the dead daemon may have died before registering its memory. */
		n = adopt_pending(c, o, later);
		held_forget(c->pid, proc_start_time(c->pid));
	} else if (S.path[0] && !held_fork(parent, token) && table_in_area(o, rec)) {
		/* Some of its pages are in swap slots, and we hold none for it: not any more
		 * (fork-claim-timeout-sec from our start, held_reap()), or never (a daemon
		 * between the dead one and us let them go, or the state file did not list it).
		 * Given out again, they may hold others' pages now. The child aborts. Pages all
		 * in the pool (pmem, which the child holds) are safe however late. */
		log_error("client %d: came for the pages its parent %d shared at fork after the "
			  "swap slots they may be in were held for it (fork-claim-timeout-sec from "
			  "this memextd's start): refused",
			  c->pid, (int)parent);
		o->forks[i] = o->forks[--o->nr_forks];
		n = -ETIME;
	} else {
		n = adopt_table(c, o, rec, later);
		o->forks[i] = o->forks[--o->nr_forks];
		held_forget_fork(parent, token);
		/* The child's record from before its answer names the same table: done with. */
		forget_table(o->v, o->pending, &o->nr_pending, CLIENT_RECORD_MAGIC, rec->pt_root);
	}
	adopt_reap();
	return n;
}
