/* SPDX-License-Identifier: MIT */
/*
 * Slot bookkeeping of one swap area, after mm/swapfile.c.
 *
 * Lock order: percpu_cluster.lock -> swap_cluster.lock -> swap_map.lock. A thread holds at
 * most one percpu_cluster.lock.
 *
 *   percpu_cluster.lock  which cluster a CPU allocates from and where its next scan starts
 *   swap_cluster.lock    the cluster's count and its SWAP_CLUSTER_SLOTS bytes of map[]
 *   swap_map.lock        the free and nonfull lists and every cluster's state
 *
 * A cluster is in exactly one state: FREE (on free_clusters, no slot in use), NONFULL (on
 * nonfull_clusters), FULL (on no list) or CURRENT (owned by one percpu_cluster, on no list).
 * Only the owner of a CURRENT cluster allocates from it, so allocation needs no global lock
 * except to change owners; frees in any cluster take the cluster's lock, and the global one only
 * when the cluster changes list (full -> nonfull, nonfull -> free).
 *
 * Unlike the kernel we keep no frag list or per-order lists: memext swaps single pages only.
 */
#include "swap-map.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

#include "macro.h"

#define NO_CLUSTER UINT32_MAX

enum cluster_state {
	CLUSTER_FREE,
	CLUSTER_NONFULL,
	CLUSTER_FULL,
	CLUSTER_CURRENT,
};

struct swap_cluster {
	pthread_mutex_t lock;
	uint32_t count;		  /* slots taken: in use, plus nr_bad; under lock */
	uint32_t nr_bad;	  /* header, bad and past-the-end slots: never free */
	enum cluster_state state; /* under swap_map.lock */
	uint32_t prev, next;	  /* list links (cluster indices), under swap_map.lock */
};

struct cluster_list {
	uint32_t head, tail; /* NO_CLUSTER when empty */
};

struct percpu_cluster {
	pthread_mutex_t lock;
	uint32_t cluster; /* a CLUSTER_CURRENT cluster, or NO_CLUSTER */
	uint32_t next;	  /* slot where the next scan starts, inside cluster */
} __attribute__((aligned(64)));

struct swap_map {
	uint32_t nr_slots;
	uint32_t nr_clusters;
	uint32_t nr_usable;	  /* slots that can hold a page */
	_Atomic uint32_t nr_used; /* slots with a count of 1..SWAP_MAP_MAX */
	unsigned nr_cpus;

	pthread_mutex_t lock;
	struct cluster_list free_clusters;
	struct cluster_list nonfull_clusters;

	uint8_t *map; /* [nr_slots]: 0 free, 1..SWAP_MAP_MAX references, SWAP_MAP_BAD */
	struct swap_cluster *clusters;
	struct percpu_cluster *percpu;
};

static void list_add_tail(struct swap_map *m, struct cluster_list *l, uint32_t idx)
{
	struct swap_cluster *c = &m->clusters[idx];

	c->next = NO_CLUSTER;
	c->prev = l->tail;
	if (l->tail == NO_CLUSTER)
		l->head = idx;
	else
		m->clusters[l->tail].next = idx;
	l->tail = idx;
}

static void list_del(struct swap_map *m, struct cluster_list *l, uint32_t idx)
{
	struct swap_cluster *c = &m->clusters[idx];

	if (c->prev == NO_CLUSTER)
		l->head = c->next;
	else
		m->clusters[c->prev].next = c->next;
	if (c->next == NO_CLUSTER)
		l->tail = c->prev;
	else
		m->clusters[c->next].prev = c->prev;
	c->prev = c->next = NO_CLUSTER;
}

static uint32_t list_pop(struct swap_map *m, struct cluster_list *l)
{
	uint32_t idx = l->head;

	if (idx != NO_CLUSTER)
		list_del(m, l, idx);
	return idx;
}

int swap_map_new(uint32_t nr_slots, const uint32_t *bad, uint32_t nr_bad, unsigned nr_cpus,
		 struct swap_map **ret)
{
	struct swap_map *m;
	uint32_t nr_bad_slots = 1;

	if (nr_slots < 2)
		return -EINVAL;
	if (!nr_cpus)
		nr_cpus = (unsigned)MAX(get_nprocs_conf(), 1);

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->nr_slots = nr_slots;
	m->nr_clusters =
		(uint32_t)(((uint64_t)nr_slots + SWAP_CLUSTER_SLOTS - 1) / SWAP_CLUSTER_SLOTS);
	m->nr_cpus = nr_cpus;
	m->map = calloc(nr_slots, 1);
	m->clusters = calloc(m->nr_clusters, sizeof(*m->clusters));
	m->percpu = aligned_alloc(64, nr_cpus * sizeof(*m->percpu));
	if (!m->map || !m->clusters || !m->percpu)
		goto out_free_map;

	m->map[0] = SWAP_MAP_BAD;
	for (uint32_t i = 0; i < nr_bad; i++) {
		if (bad[i] == 0 || bad[i] >= nr_slots || m->map[bad[i]] == SWAP_MAP_BAD)
			continue;
		m->map[bad[i]] = SWAP_MAP_BAD;
		nr_bad_slots++;
	}
	if (nr_bad_slots >= nr_slots)
		goto out_free_map_einval;
	m->nr_usable = nr_slots - nr_bad_slots;

	pthread_mutex_init(&m->lock, NULL);
	m->free_clusters = m->nonfull_clusters = (struct cluster_list){NO_CLUSTER, NO_CLUSTER};
	for (uint32_t ci = 0; ci < m->nr_clusters; ci++) {
		struct swap_cluster *c = &m->clusters[ci];
		uint64_t first = (uint64_t)ci * SWAP_CLUSTER_SLOTS;

		pthread_mutex_init(&c->lock, NULL);
		c->prev = c->next = NO_CLUSTER;
		for (uint64_t s = first; s < first + SWAP_CLUSTER_SLOTS; s++)
			if (s >= nr_slots || m->map[s] == SWAP_MAP_BAD)
				c->nr_bad++;
		c->count = c->nr_bad;
		if (c->count == SWAP_CLUSTER_SLOTS) {
			c->state = CLUSTER_FULL;
		} else {
			c->state = CLUSTER_FREE;
			list_add_tail(m, &m->free_clusters, ci);
		}
	}
	for (unsigned i = 0; i < nr_cpus; i++) {
		pthread_mutex_init(&m->percpu[i].lock, NULL);
		m->percpu[i].cluster = NO_CLUSTER;
	}
	*ret = m;
	return 0;

out_free_map_einval:
	swap_map_free(m);
	return -EINVAL;
out_free_map:
	swap_map_free(m);
	return -ENOMEM;
}

void swap_map_free(struct swap_map *m)
{
	if (!m)
		return;
	/* Mutexes were initialised only once all three arrays existed; none is held here. */
	free(m->percpu);
	free(m->clusters);
	free(m->map);
	free(m);
}

static struct percpu_cluster *this_cpu_cluster(struct swap_map *m)
{
	int cpu = sched_getcpu();

	return &m->percpu[cpu < 0 ? 0 : (unsigned)cpu % m->nr_cpus];
}

/* Called with m->lock held. A cluster that now has room goes back on a list. */
static void relocate_cluster(struct swap_map *m, uint32_t idx)
{
	struct swap_cluster *c = &m->clusters[idx];
	bool empty = c->count == c->nr_bad;

	switch (c->state) {
	case CLUSTER_CURRENT:
	case CLUSTER_FREE:
		break;
	case CLUSTER_FULL:
		c->state = empty ? CLUSTER_FREE : CLUSTER_NONFULL;
		list_add_tail(m, empty ? &m->free_clusters : &m->nonfull_clusters, idx);
		break;
	case CLUSTER_NONFULL:
		if (empty) {
			list_del(m, &m->nonfull_clusters, idx);
			c->state = CLUSTER_FREE;
			list_add_tail(m, &m->free_clusters, idx);
		}
		break;
	}
}

/*
 * A fresh cluster for a CPU whose current one is full. Free clusters come first: a whole empty
 * cluster gives the longest runs of consecutive slots, so reclaim writes in large pieces.
 */
static uint32_t take_cluster(struct swap_map *m)
{
	uint32_t idx;

	pthread_mutex_lock(&m->lock);
	idx = list_pop(m, &m->free_clusters);
	if (idx == NO_CLUSTER)
		idx = list_pop(m, &m->nonfull_clusters);
	if (idx != NO_CLUSTER)
		m->clusters[idx].state = CLUSTER_CURRENT;
	pthread_mutex_unlock(&m->lock);
	return idx;
}

/*
 * Called with pc->lock and the cluster's lock held. Takes up to want slots, scanning from
 * pc->next to the end of the cluster and then from its start.
 */
static unsigned scan_cluster(struct swap_map *m, struct percpu_cluster *pc, unsigned want,
			     uint32_t *out)
{
	struct swap_cluster *c = &m->clusters[pc->cluster];
	uint64_t first = (uint64_t)pc->cluster * SWAP_CLUSTER_SLOTS;
	uint64_t end = MIN(first + SWAP_CLUSTER_SLOTS, (uint64_t)m->nr_slots);
	uint64_t s = pc->next;
	unsigned n = 0;

	for (uint64_t scanned = 0; scanned < end - first; scanned++, s++) {
		if (s >= end)
			s = first;
		if (m->map[s])
			continue;
		m->map[s] = 1;
		c->count++;
		out[n++] = (uint32_t)s;
		pc->next = (uint32_t)(s + 1 >= end ? first : s + 1);
		if (n == want || c->count == SWAP_CLUSTER_SLOTS)
			break;
	}
	atomic_fetch_add(&m->nr_used, n);
	return n;
}

/* Called with pc->lock held: allocates from pc's current cluster, taking a new one if needed. */
static unsigned alloc_percpu(struct swap_map *m, struct percpu_cluster *pc, unsigned want,
			     uint32_t *out, bool may_take)
{
	unsigned n = 0;

	while (n < want) {
		struct swap_cluster *c;

		if (pc->cluster == NO_CLUSTER) {
			if (!may_take)
				break;
			pc->cluster = take_cluster(m);
			if (pc->cluster == NO_CLUSTER)
				break;
			pc->next = pc->cluster * SWAP_CLUSTER_SLOTS;
		}
		c = &m->clusters[pc->cluster];
		pthread_mutex_lock(&c->lock);
		n += scan_cluster(m, pc, want - n, out + n);
		if (c->count == SWAP_CLUSTER_SLOTS) {
			pthread_mutex_lock(&m->lock);
			c->state = CLUSTER_FULL;
			pthread_mutex_unlock(&m->lock);
			pc->cluster = NO_CLUSTER;
		}
		pthread_mutex_unlock(&c->lock);
	}
	return n;
}

int swap_map_alloc(struct swap_map *m, unsigned nr, uint32_t *ret_offsets)
{
	struct percpu_cluster *own;
	unsigned n;

	if (!nr)
		return -EINVAL;
	if (atomic_load(&m->nr_used) >= m->nr_usable)
		return -ENOSPC;

	own = this_cpu_cluster(m);
	pthread_mutex_lock(&own->lock);
	n = alloc_percpu(m, own, nr, ret_offsets, true);
	pthread_mutex_unlock(&own->lock);

	/*
	 * No free or nonfull cluster is left, but other CPUs' current clusters may still have
	 * room. Take from them one at a time, holding no other percpu lock, so two CPUs doing this
	 * at once cannot deadlock.
	 */
	for (unsigned i = 0; n < nr && i < m->nr_cpus; i++) {
		struct percpu_cluster *pc = &m->percpu[i];

		if (pc == own)
			continue;
		pthread_mutex_lock(&pc->lock);
		n += alloc_percpu(m, pc, nr - n, ret_offsets + n, false);
		pthread_mutex_unlock(&pc->lock);
	}
	return n ? (int)n : -ENOSPC;
}

static struct swap_cluster *lock_slot_cluster(struct swap_map *m, uint32_t offset)
{
	struct swap_cluster *c;

	if (offset >= m->nr_slots)
		return NULL;
	c = &m->clusters[offset / SWAP_CLUSTER_SLOTS];
	pthread_mutex_lock(&c->lock);
	return c;
}

int swap_map_reserve(struct swap_map *m, uint32_t offset)
{
	struct swap_cluster *c = lock_slot_cluster(m, offset);
	uint32_t idx = offset / SWAP_CLUSTER_SLOTS;

	if (!c)
		return -EINVAL;
	if (m->map[offset]) {
		int r = m->map[offset] == SWAP_MAP_BAD ? -EINVAL : -EBUSY;

		pthread_mutex_unlock(&c->lock);
		return r;
	}
	m->map[offset] = 1;
	c->count++;
	atomic_fetch_add(&m->nr_used, 1);
	/* A CURRENT cluster stays its CPU's, which skips the slot and marks it full in time. */
	pthread_mutex_lock(&m->lock);
	if (c->state == CLUSTER_FREE) {
		list_del(m, &m->free_clusters, idx);
		c->state = CLUSTER_NONFULL;
		list_add_tail(m, &m->nonfull_clusters, idx);
	}
	if (c->state == CLUSTER_NONFULL && c->count == SWAP_CLUSTER_SLOTS) {
		list_del(m, &m->nonfull_clusters, idx);
		c->state = CLUSTER_FULL;
	}
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int swap_map_duplicate(struct swap_map *m, uint32_t offset)
{
	struct swap_cluster *c = lock_slot_cluster(m, offset);
	int r = 0;

	if (!c)
		return -EINVAL;
	if (m->map[offset] == 0 || m->map[offset] == SWAP_MAP_BAD)
		r = -EINVAL;
	else if (m->map[offset] == SWAP_MAP_MAX)
		r = -EOVERFLOW;
	else
		m->map[offset]++;
	pthread_mutex_unlock(&c->lock);
	return r;
}

int swap_map_put(struct swap_map *m, uint32_t offset)
{
	struct swap_cluster *c = lock_slot_cluster(m, offset);
	uint8_t v;

	if (!c)
		return -EINVAL;
	v = m->map[offset];
	if (v == 0 || v == SWAP_MAP_BAD) {
		pthread_mutex_unlock(&c->lock);
		return -EINVAL;
	}
	m->map[offset] = --v;
	if (v == 0) {
		bool was_full = c->count == SWAP_CLUSTER_SLOTS;

		c->count--;
		atomic_fetch_sub(&m->nr_used, 1);
		if (was_full || c->count == c->nr_bad) {
			pthread_mutex_lock(&m->lock);
			relocate_cluster(m, offset / SWAP_CLUSTER_SLOTS);
			pthread_mutex_unlock(&m->lock);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return v;
}

int swap_map_count(struct swap_map *m, uint32_t offset)
{
	struct swap_cluster *c = lock_slot_cluster(m, offset);
	int v;

	if (!c)
		return -EINVAL;
	v = m->map[offset];
	pthread_mutex_unlock(&c->lock);
	return v;
}

uint32_t swap_map_nr_slots(const struct swap_map *m)
{
	return m->nr_slots;
}

uint32_t swap_map_nr_usable(const struct swap_map *m)
{
	return m->nr_usable;
}

uint32_t swap_map_nr_used(const struct swap_map *m)
{
	return atomic_load(&((struct swap_map *)m)->nr_used);
}
