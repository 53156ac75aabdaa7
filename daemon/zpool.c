/* SPDX-License-Identifier: MIT */
/*
 * zpool: zsmalloc rebuilt in user space.
 *
 * Layout. Objects are packed by size class (16-byte steps). A class has one geometry,
 * pages_per_zspage and objs_per_zspage, chosen for little waste; neighbouring classes with the
 * same geometry are merged into the larger, which packs them just as densely (zsmalloc does the
 * same). A zspage is 1..16 pages at consecutive virtual addresses, so an object that spans a
 * page boundary is still read in place, with no copy. Zspages are carved out of arena chunks:
 * 2^14 zspages of one pages_per_zspage each, reserved with mmap(MAP_NORESERVE) and touched only
 * when used. An emptied zspage's pages go back with MADV_DONTNEED (the RSS falls at once); the
 * address range stays mapped for reuse, so nothing in the pool is ever unmapped while the pool
 * lives.
 *
 * Handles. A handle indexes the handle table, whose 64-bit entry says where the object is:
 *
 *   63      FREE: not an object; bits 0..30 link the free list
 *   54..62  pins: readers (or the storing thread) that need the object to stay put
 *   28..53  zspage id: arena chunk (12 bits) and zspage within it (14 bits)
 *   12..27  byte offset of the object in its zspage
 *    0..11  object size - 1
 *
 * There is no per-object metadata besides the entry: a zspage's free slots are linked through
 * the slots themselves, and compaction finds the objects to move by scanning the handle table
 * for entries that point into the zspages it empties (one pass for all classes, a few ms per
 * million objects). A zspage descriptor is 16 bytes in a table indexed by zspage id.
 *
 * Locking.
 *   pool->compact_lock  one compaction at a time
 *   class->lock         a class's zspages, their slots and fullness lists, and the location of
 *                       every object of the class in its handle entry
 *   pool->arena_lock    arena chunks and the free zspage ids
 *   pool->grow_lock     handle table growth; taken with no other lock held
 * Order: compact_lock -> class->lock -> arena_lock. No path holds two class locks.
 *
 * Readers and compaction. zpool_obj_map() takes no lock: it pins the object with a CAS that
 * adds one to the pin count of the entry it read, and reads the location from that same entry.
 * Compaction, under the class lock, copies an unpinned object to its new slot and then
 * publishes the new location with a CAS from the exact entry it read (pins zero) to the new
 * one. So either the reader pinned first, the CAS fails and the object stays (the copy is
 * undone), or the CAS came first and the reader's pin lands on the new location, whose bytes
 * the CAS released. A reader that pins and unpins between compaction's read and its CAS leaves
 * the entry as it was: its reads were of the old slot, which is freed only after the CAS.
 * Unpinning is a release and compaction's CAS an acquire, so a slot is reused only after every
 * read of it. zpool_obj_drop() waits, under the class lock, until no pin is held.
 *
 * Compaction, per class under its lock, takes the sparsest zspages off the fullness lists
 * ("isolates" them) while the others' free slots can take their objects; stores never go to an
 * isolated zspage. Then it scans the handle table and moves every object found in an isolated
 * zspage; last, it gives back the emptied zspages and puts back those a pinned object kept.
 */
#include "zpool.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "macro.h"
#include "pmem.h"

#define ENT_LEN_BITS 12
#define ENT_OFF_SHIFT 12
#define ENT_OFF_BITS 16
#define ENT_ID_SHIFT 28
#define ENT_ID_BITS 26
#define ENT_PIN_SHIFT 54
#define ENT_PIN_BITS 9
#define ENT_PIN_ONE (UINT64_C(1) << ENT_PIN_SHIFT)
#define ENT_PIN_MASK ((((UINT64_C(1) << ENT_PIN_BITS) - 1)) << ENT_PIN_SHIFT)
#define ENT_FREE (UINT64_C(1) << 63)

static_assert(ENT_OFF_SHIFT == ENT_LEN_BITS, "entry fields must be contiguous");
static_assert(ENT_ID_SHIFT == ENT_OFF_SHIFT + ENT_OFF_BITS, "entry fields must be contiguous");
static_assert(ENT_PIN_SHIFT == ENT_ID_SHIFT + ENT_ID_BITS, "entry fields must be contiguous");
static_assert(ENT_PIN_SHIFT + ENT_PIN_BITS == 63, "entry fields must be contiguous");
static_assert(PAGE_SIZE == (1u << ENT_LEN_BITS), "sizes 1..PAGE_SIZE are kept as size - 1");
static_assert(ZPOOL_MAX_ZSPAGE_PAGES * PAGE_SIZE <= (1u << ENT_OFF_BITS), "offsets fit 16 bits");

#define CHUNK_ZSPAGES_SHIFT 14
#define CHUNK_ZSPAGES (1u << CHUNK_ZSPAGES_SHIFT)
#define MAX_CHUNKS (1u << (ENT_ID_BITS - CHUNK_ZSPAGES_SHIFT))

#define HTAB_CHUNK_SHIFT 20 /* entries per handle-table chunk: 8 MiB of address space */
#define HTAB_CHUNK_ENTRIES (1u << HTAB_CHUNK_SHIFT)
#define HANDLE_LIMIT (1u << 31) /* handles are below this: 31 bits, as free-list links */
#define HTAB_MAX_CHUNKS (HANDLE_LIMIT >> HTAB_CHUNK_SHIFT)
#define ENTRIES_PER_PAGE (PAGE_SIZE / sizeof(uint64_t))

#define SLOT_NONE 0xffffu /* end of a slot free list */
#define ZSPAGE_NONE UINT32_MAX
#define GROUP_FULL (ZPOOL_NR_FULLNESS - 1)
#define GROUP_NONE 0xff /* on no list: isolated by compaction */

#define DEFAULT_MAX_ZSPAGE_PAGES 16
#define DEFAULT_CLASS_DELTA 16
/*
 * A class takes the fewest pages per zspage whose waste is within 1% of the least: a smaller
 * zspage empties sooner, and each class's last, part-used zspage costs less.
 */
#define GEOMETRY_SLACK_PCT 1

/* 16 bytes per zspage, in a table by id, touched as ids are first used. */
struct zspage {
	uint32_t prev, next; /* ids, in class->groups[group]; ZSPAGE_NONE at either end */
	uint16_t inuse;	     /* slots holding an object */
	uint16_t free_head;  /* a freed slot, linked to the next through its first 2 bytes */
	uint16_t bump;	     /* slots from here on never held an object */
	uint8_t group;	     /* fullness group, GROUP_NONE when on no list */
	uint8_t unused;
};
static_assert(sizeof(struct zspage) == 16, "zspage descriptors are 16 bytes");

struct size_class {
	pthread_mutex_t lock;
	uint32_t groups[ZPOOL_NR_FULLNESS]; /* ids of the first zspage per fullness group */
	uint32_t size;			    /* bytes per slot */
	uint16_t pages_per_zspage;
	uint16_t objs_per_zspage;
	/* Under lock: */
	uint64_t nr_zspages;
	uint64_t objs_inuse;
	uint64_t nr_in_group[ZPOOL_NR_FULLNESS];
	uint64_t pages_compacted;
} __attribute__((aligned(64)));

struct arena_chunk {
	char *base; /* CHUNK_ZSPAGES zspages of zspage_bytes */
	size_t zspage_bytes;
	unsigned pages_per_zspage;
	struct zspage *desc; /* descriptor per zspage; mmap'd, touched as ids are first used */
};

/* Per pages_per_zspage value: where new zspages of that length come from. Under arena_lock. */
struct arena_group {
	uint32_t *free_ids; /* ids given back, reused first */
	size_t nr_free, cap_free;
	int chunk;     /* chunk being carved, -1: none yet */
	uint32_t next; /* first never-used index in it */
};

struct zpool {
	struct zpool_config cfg;
	unsigned delta; /* class step, bytes */
	unsigned nr_classes;
	struct size_class *classes;   /* nr_classes, ascending sizes */
	struct size_class **class_of; /* by (size - 1) / delta */

	_Atomic(_Atomic uint64_t *) htab[HTAB_MAX_CHUNKS];
	_Atomic uint64_t handle_free; /* free-list head: ABA tag << 32 | handle, 0 when empty */
	_Atomic uint32_t handle_next; /* first never-used handle */
	pthread_mutex_t grow_lock;

	pthread_mutex_t compact_lock;

	pthread_mutex_t arena_lock;
	_Atomic(struct arena_chunk *) chunks[MAX_CHUNKS];
	_Atomic unsigned nr_chunks; /* grows under arena_lock */
	struct arena_group arena[ZPOOL_MAX_ZSPAGE_PAGES + 1];

	_Atomic uint64_t pages;
	_Atomic uint64_t mem_bytes; /* pages and metadata */
	_Atomic uint64_t mem_max_bytes;
	_Atomic uint64_t metadata_bytes;
	/* Of metadata_bytes, what zpool_trim() gives back: handle-table and descriptor pages. */
	_Atomic uint64_t htab_bytes, desc_bytes;
	_Atomic uint64_t objs, obj_bytes;
	_Atomic uint64_t pages_compacted;
	_Atomic uint64_t limit_rejects;
};

/* ---- entries ---- */

static inline uint64_t ent_make(uint32_t id, uint32_t off, size_t len)
{
	return (uint64_t)id << ENT_ID_SHIFT | (uint64_t)off << ENT_OFF_SHIFT | (uint64_t)(len - 1);
}

static inline uint32_t ent_id(uint64_t e)
{
	return (uint32_t)(e >> ENT_ID_SHIFT) & ((1u << ENT_ID_BITS) - 1);
}

static inline uint32_t ent_off(uint64_t e)
{
	return (uint32_t)(e >> ENT_OFF_SHIFT) & ((1u << ENT_OFF_BITS) - 1);
}

static inline size_t ent_len(uint64_t e)
{
	return (size_t)(e & ((1u << ENT_LEN_BITS) - 1)) + 1;
}

/* ---- memory accounting ---- */

static void mem_track_max(struct zpool *pool, uint64_t now)
{
	uint64_t max = atomic_load_explicit(&pool->mem_max_bytes, memory_order_relaxed);

	while (now > max && !atomic_compare_exchange_weak(&pool->mem_max_bytes, &max, now))
		;
}

/* Metadata is charged whatever the limit: it is small and its absence would lose objects. */
static void mem_charge_metadata(struct zpool *pool, int64_t bytes)
{
	atomic_fetch_add(&pool->metadata_bytes, (uint64_t)bytes);
	mem_track_max(pool, atomic_fetch_add(&pool->mem_bytes, (uint64_t)bytes) + (uint64_t)bytes);
}

/* Returns false, charging nothing, when bytes more would pass the limit; with past_limit,
 * charges them all the same and sets *past_limit. */
static bool mem_charge_limited(struct zpool *pool, uint64_t bytes, bool *past_limit)
{
	uint64_t now = atomic_fetch_add(&pool->mem_bytes, bytes) + bytes;

	if (pool->cfg.mem_limit_bytes && now > pool->cfg.mem_limit_bytes) {
		if (past_limit) {
			*past_limit = true;
		} else {
			atomic_fetch_sub(&pool->mem_bytes, bytes);
			return false;
		}
	}
	mem_track_max(pool, now);
	return true;
}

static void *map_reserve(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* A huge page would make one small zspage cost 2 MiB and defeat MADV_DONTNEED. */
	(void)madvise(p, bytes, MADV_NOHUGEPAGE);
	return p;
}

/* ---- handle table ---- */

/* Entry of handle h, or NULL if h was never handed out. */
static inline _Atomic uint64_t *handle_entry(struct zpool *pool, uint32_t h)
{
	_Atomic uint64_t *chunk;

	if (unlikely(h == 0 || h >= atomic_load_explicit(&pool->handle_next, memory_order_relaxed)))
		return NULL;
	chunk = atomic_load_explicit(&pool->htab[h >> HTAB_CHUNK_SHIFT], memory_order_acquire);
	if (unlikely(!chunk))
		return NULL;
	return &chunk[h & (HTAB_CHUNK_ENTRIES - 1)];
}

static int htab_grow(struct zpool *pool, unsigned idx)
{
	_Atomic uint64_t *chunk;
	int r = 0;

	pthread_mutex_lock(&pool->grow_lock);
	if (!atomic_load_explicit(&pool->htab[idx], memory_order_relaxed)) {
		/* In pmem: a restarted daemon finds the objects through it. */
		chunk = pmem_alloc(HTAB_CHUNK_ENTRIES * sizeof(uint64_t));
		if (chunk)
			atomic_store_explicit(&pool->htab[idx], chunk, memory_order_release);
		else
			r = -ENOMEM;
	}
	pthread_mutex_unlock(&pool->grow_lock);
	return r;
}

static int handle_alloc(struct zpool *pool, uint32_t *ret)
{
	uint64_t head = atomic_load_explicit(&pool->handle_free, memory_order_acquire);
	uint32_t h;
	int r;

	while ((uint32_t)head != 0) {
		/* If another thread takes h first, the entry read here may be anything, but then
		 * the tag has moved on and the CAS fails. */
		uint64_t next = atomic_load_explicit(handle_entry(pool, (uint32_t)head),
						     memory_order_relaxed);
		uint64_t new_head = ((head >> 32) + 1) << 32 | (next & (HANDLE_LIMIT - 1));

		if (atomic_compare_exchange_weak_explicit(&pool->handle_free, &head, new_head,
							  memory_order_acquire,
							  memory_order_acquire)) {
			*ret = (uint32_t)head;
			return 0;
		}
	}

	h = atomic_fetch_add(&pool->handle_next, 1);
	if (h >= HANDLE_LIMIT - 1) {
		atomic_store(&pool->handle_next, HANDLE_LIMIT - 1);
		return -ENOSPC;
	}
	if (!atomic_load_explicit(&pool->htab[h >> HTAB_CHUNK_SHIFT], memory_order_acquire)) {
		r = htab_grow(pool, h >> HTAB_CHUNK_SHIFT);
		if (r < 0)
			return r; /* h is lost: its entry has no memory */
	}
	/* Entries are used in order, so the first handle of a page is the one that touches it. */
	if (h % ENTRIES_PER_PAGE == 0) {
		mem_charge_metadata(pool, PAGE_SIZE);
		atomic_fetch_add(&pool->htab_bytes, PAGE_SIZE);
	}
	/* Until the store fills it in, a lookup of h must not take it for an object. */
	atomic_store_explicit(handle_entry(pool, h), ENT_FREE, memory_order_relaxed);
	*ret = h;
	return 0;
}

static void handle_free(struct zpool *pool, uint32_t h)
{
	_Atomic uint64_t *ent = handle_entry(pool, h);
	uint64_t head = atomic_load_explicit(&pool->handle_free, memory_order_relaxed);

	do {
		atomic_store_explicit(ent, ENT_FREE | (uint32_t)head, memory_order_relaxed);
	} while (!atomic_compare_exchange_weak_explicit(
		&pool->handle_free, &head, ((head >> 32) + 1) << 32 | h, memory_order_release,
		memory_order_relaxed));
}

/* ---- arena ---- */

static inline struct arena_chunk *arena_chunk(struct zpool *pool, uint32_t id)
{
	return atomic_load_explicit(&pool->chunks[id >> CHUNK_ZSPAGES_SHIFT], memory_order_acquire);
}

static inline char *zspage_addr(struct zpool *pool, uint32_t id)
{
	struct arena_chunk *c = arena_chunk(pool, id);

	return c->base + (size_t)(id & (CHUNK_ZSPAGES - 1)) * c->zspage_bytes;
}

/* The caller holds the lock of the class the zspage belongs to. */
static inline struct zspage *zspage_of(struct zpool *pool, uint32_t id)
{
	return &arena_chunk(pool, id)->desc[id & (CHUNK_ZSPAGES - 1)];
}

static int arena_chunk_new(struct zpool *pool, unsigned pages, int *ret)
{
	unsigned nr = atomic_load_explicit(&pool->nr_chunks, memory_order_relaxed);
	struct arena_chunk *c;

	if (nr >= MAX_CHUNKS)
		return -ENOSPC;
	c = pmem_alloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->pages_per_zspage = pages;
	c->zspage_bytes = (size_t)pages * PAGE_SIZE;
	c->base = pmem_alloc(CHUNK_ZSPAGES * c->zspage_bytes);
	if (!c->base)
		goto out_free_chunk;
	/* A huge page would make one small zspage cost 2 MiB and defeat the discard. */
	(void)madvise(c->base, CHUNK_ZSPAGES * c->zspage_bytes, MADV_NOHUGEPAGE);
	c->desc = map_reserve(CHUNK_ZSPAGES * sizeof(*c->desc));
	if (!c->desc)
		goto out_unmap_base;
	mem_charge_metadata(pool, (int64_t)sizeof(*c));
	atomic_store_explicit(&pool->chunks[nr], c, memory_order_release);
	atomic_store_explicit(&pool->nr_chunks, nr + 1, memory_order_release);
	*ret = (int)nr;
	return 0;

out_unmap_base:
	pmem_free(c->base, CHUNK_ZSPAGES * c->zspage_bytes);
out_free_chunk:
	pmem_free(c, sizeof(*c));
	return -ENOMEM;
}

static int arena_id_alloc(struct zpool *pool, unsigned pages, uint32_t *ret)
{
	struct arena_group *g = &pool->arena[pages];
	int r = 0;

	pthread_mutex_lock(&pool->arena_lock);
	if (g->nr_free) {
		*ret = g->free_ids[--g->nr_free];
		goto out;
	}
	if (g->chunk < 0 || g->next == CHUNK_ZSPAGES) {
		r = arena_chunk_new(pool, pages, &g->chunk);
		if (r < 0)
			goto out;
		g->next = 0;
	}
	/* Descriptors are used in id order: the first of a page touches it. */
	if (g->next % (PAGE_SIZE / sizeof(struct zspage)) == 0) {
		mem_charge_metadata(pool, PAGE_SIZE);
		atomic_fetch_add(&pool->desc_bytes, PAGE_SIZE);
	}
	*ret = (uint32_t)g->chunk << CHUNK_ZSPAGES_SHIFT | g->next++;
out:
	pthread_mutex_unlock(&pool->arena_lock);
	return r;
}

static void arena_id_free(struct zpool *pool, unsigned pages, uint32_t id)
{
	struct arena_group *g = &pool->arena[pages];
	struct arena_chunk *c = arena_chunk(pool, id);

	/* The pages go back now; the address range stays ours for the next zspage. */
	pmem_discard(zspage_addr(pool, id), c->zspage_bytes);

	pthread_mutex_lock(&pool->arena_lock);
	if (g->nr_free == g->cap_free) {
		size_t cap = MAX(g->cap_free * 2, 64);
		uint32_t *p = realloc(g->free_ids, cap * sizeof(*p));

		/* Without room to remember it, the id is not reused: only address space is lost. */
		if (!p)
			goto out;
		mem_charge_metadata(pool, (int64_t)((cap - g->cap_free) * sizeof(*p)));
		g->free_ids = p;
		g->cap_free = cap;
	}
	g->free_ids[g->nr_free++] = id;
out:
	pthread_mutex_unlock(&pool->arena_lock);
}

/* ---- zspages, under the class lock ---- */

static inline unsigned zspage_group(const struct size_class *class, const struct zspage *zs)
{
	if (zs->inuse == class->objs_per_zspage)
		return GROUP_FULL;
	return (unsigned)zs->inuse * 10 / class->objs_per_zspage;
}

static void class_link(struct zpool *pool, struct size_class *class, uint32_t id)
{
	struct zspage *zs = zspage_of(pool, id);
	unsigned g = zspage_group(class, zs);

	zs->group = (uint8_t)g;
	zs->prev = ZSPAGE_NONE;
	zs->next = class->groups[g];
	if (zs->next != ZSPAGE_NONE)
		zspage_of(pool, zs->next)->prev = id;
	class->groups[g] = id;
	class->nr_in_group[g]++;
}

static void class_unlink(struct zpool *pool, struct size_class *class, uint32_t id)
{
	struct zspage *zs = zspage_of(pool, id);

	if (zs->prev != ZSPAGE_NONE)
		zspage_of(pool, zs->prev)->next = zs->next;
	else
		class->groups[zs->group] = zs->next;
	if (zs->next != ZSPAGE_NONE)
		zspage_of(pool, zs->next)->prev = zs->prev;
	class->nr_in_group[zs->group]--;
	zs->group = GROUP_NONE;
	zs->prev = zs->next = ZSPAGE_NONE;
}

static void class_regroup(struct zpool *pool, struct size_class *class, uint32_t id)
{
	struct zspage *zs = zspage_of(pool, id);

	if (zs->group != GROUP_NONE && zs->group != zspage_group(class, zs)) {
		class_unlink(pool, class, id);
		class_link(pool, class, id);
	}
}

/* The fullest zspage with a free slot: filling it keeps the sparse ones sparse for compaction. */
static uint32_t class_find_dst(struct size_class *class)
{
	for (int g = GROUP_FULL - 1; g >= 0; g--)
		if (class->groups[g] != ZSPAGE_NONE)
			return class->groups[g];
	return ZSPAGE_NONE;
}

/* The sparsest zspage, looking at a bounded number in the sparsest non-empty group. */
static uint32_t class_find_src(struct zpool *pool, struct size_class *class)
{
	for (unsigned g = 0; g < GROUP_FULL; g++) {
		uint32_t best = class->groups[g];
		unsigned n = 0;

		if (best == ZSPAGE_NONE)
			continue;
		for (uint32_t id = best; id != ZSPAGE_NONE && n < 64; n++) {
			const struct zspage *zs = zspage_of(pool, id);

			if (zs->inuse < zspage_of(pool, best)->inuse)
				best = id;
			id = zs->next;
		}
		return best;
	}
	return ZSPAGE_NONE;
}

static uint64_t class_free_slots(const struct size_class *class)
{
	return class->nr_zspages * class->objs_per_zspage - class->objs_inuse;
}

static int zspage_new(struct zpool *pool, struct size_class *class, bool *past_limit, uint32_t *ret)
{
	size_t pages = class->pages_per_zspage;
	struct zspage *zs;
	uint32_t id;
	int r;

	if (!mem_charge_limited(pool, pages * PAGE_SIZE, past_limit))
		return -ENOSPC;
	r = arena_id_alloc(pool, (unsigned)pages, &id);
	if (r < 0) {
		atomic_fetch_sub(&pool->mem_bytes, pages * PAGE_SIZE);
		return r;
	}
	atomic_fetch_add(&pool->pages, pages);
	zs = zspage_of(pool, id);
	*zs = (struct zspage){
		.prev = ZSPAGE_NONE,
		.next = ZSPAGE_NONE,
		.free_head = SLOT_NONE,
		.group = GROUP_NONE,
	};
	class->nr_zspages++;
	*ret = id;
	return 0;
}

/* Gives back an empty zspage that is on no list; the class lock need not be held. */
static void zspage_release(struct zpool *pool, struct size_class *class, uint32_t id)
{
	size_t pages = class->pages_per_zspage;

	arena_id_free(pool, (unsigned)pages, id);
	atomic_fetch_sub(&pool->pages, pages);
	atomic_fetch_sub(&pool->mem_bytes, pages * PAGE_SIZE);
}

static unsigned zspage_slot_alloc(struct zpool *pool, struct size_class *class, uint32_t id)
{
	struct zspage *zs = zspage_of(pool, id);
	unsigned i;

	if (zs->free_head != SLOT_NONE) {
		i = zs->free_head;
		memcpy(&zs->free_head, zspage_addr(pool, id) + (size_t)i * class->size,
		       sizeof(zs->free_head));
	} else {
		assert(zs->bump < class->objs_per_zspage);
		i = zs->bump++;
	}
	zs->inuse++;
	class->objs_inuse++;
	class_regroup(pool, class, id);
	return i;
}

/*
 * Returns true when the zspage is now empty; then, if it is on a list, the caller unlinks and
 * releases it (an isolated one is compaction's to release).
 */
static bool zspage_slot_free(struct zpool *pool, struct size_class *class, uint32_t id, unsigned i)
{
	struct zspage *zs = zspage_of(pool, id);

	/* No reader can see the slot now: its entry is free or points elsewhere. */
	memcpy(zspage_addr(pool, id) + (size_t)i * class->size, &zs->free_head,
	       sizeof(zs->free_head));
	zs->free_head = (uint16_t)i;
	zs->inuse--;
	class->objs_inuse--;
	if (zs->inuse == 0)
		return true;
	class_regroup(pool, class, id);
	return false;
}

/* ---- objects ---- */

static inline struct size_class *class_of(const struct zpool *pool, size_t len)
{
	return pool->class_of[(len - 1) / pool->delta];
}

int zpool_obj_store(struct zpool *pool, const void *data, size_t len, bool *past_limit,
		    uint32_t *ret_handle)
{
	struct size_class *class;
	_Atomic uint64_t *ent;
	unsigned slot;
	uint32_t h, id;
	char *dst;
	int r;

	if (len == 0 || len > PAGE_SIZE)
		return -EINVAL;
	class = class_of(pool, len);
	r = handle_alloc(pool, &h);
	if (r < 0)
		return r;
	ent = handle_entry(pool, h);

	pthread_mutex_lock(&class->lock);
	id = class_find_dst(class);
	if (id == ZSPAGE_NONE) {
		r = zspage_new(pool, class, past_limit, &id);
		if (r < 0) {
			pthread_mutex_unlock(&class->lock);
			if (r == -ENOSPC)
				atomic_fetch_add(&pool->limit_rejects, 1);
			handle_free(pool, h);
			return r;
		}
		class_link(pool, class, id);
	}
	slot = zspage_slot_alloc(pool, class, id);
	dst = zspage_addr(pool, id) + (size_t)slot * class->size;
	/* Pinned while we fill it, so compaction cannot copy it half-written. */
	atomic_store_explicit(ent, ent_make(id, slot * class->size, len) | ENT_PIN_ONE,
			      memory_order_relaxed);
	pthread_mutex_unlock(&class->lock);

	memcpy(dst, data, len);
	atomic_fetch_sub_explicit(ent, ENT_PIN_ONE, memory_order_release);

	atomic_fetch_add_explicit(&pool->objs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&pool->obj_bytes, len, memory_order_relaxed);
	*ret_handle = h;
	return 0;
}

int zpool_obj_drop(struct zpool *pool, uint32_t handle)
{
	_Atomic uint64_t *ent = handle_entry(pool, handle);
	struct size_class *class;
	bool release;
	uint32_t id;
	uint64_t e;
	size_t len;

	if (!ent)
		return -ENOENT;
	e = atomic_load_explicit(ent, memory_order_acquire);
	for (;;) {
		if (e & ENT_FREE)
			return -ENOENT;
		class = class_of(pool, ent_len(e));
		pthread_mutex_lock(&class->lock);
		e = atomic_load_explicit(ent, memory_order_acquire);
		/* Only a caller's race (drop against drop) changes the class under us. */
		if ((e & ENT_FREE) || class_of(pool, ent_len(e)) != class) {
			pthread_mutex_unlock(&class->lock);
			continue;
		}
		if (!(e & ENT_PIN_MASK) &&
		    atomic_compare_exchange_strong_explicit(ent, &e, ENT_FREE, memory_order_acq_rel,
							    memory_order_acquire))
			break;
		/* A reader has it mapped: it holds no lock and will unpin within microseconds. */
		pthread_mutex_unlock(&class->lock);
		cpu_relax();
		e = atomic_load_explicit(ent, memory_order_acquire);
	}

	len = ent_len(e);
	id = ent_id(e);
	release = zspage_slot_free(pool, class, id, ent_off(e) / class->size) &&
		  zspage_of(pool, id)->group != GROUP_NONE;
	if (release) {
		class_unlink(pool, class, id);
		class->nr_zspages--;
	}
	pthread_mutex_unlock(&class->lock);
	if (release)
		zspage_release(pool, class, id);

	handle_free(pool, handle);
	atomic_fetch_sub_explicit(&pool->objs, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&pool->obj_bytes, len, memory_order_relaxed);
	return (int)len;
}

int zpool_obj_map(struct zpool *pool, uint32_t handle, const void **ret_data, size_t *ret_len)
{
	_Atomic uint64_t *ent = handle_entry(pool, handle);
	uint64_t e;

	if (unlikely(!ent))
		return -ENOENT;
	e = atomic_load_explicit(ent, memory_order_relaxed);
	for (;;) {
		if (unlikely(e & ENT_FREE))
			return -ENOENT;
		if (unlikely((e & ENT_PIN_MASK) == ENT_PIN_MASK)) {
			cpu_relax();
			e = atomic_load_explicit(ent, memory_order_relaxed);
			continue;
		}
		if (likely(atomic_compare_exchange_weak_explicit(
			    ent, &e, e + ENT_PIN_ONE, memory_order_acquire, memory_order_relaxed)))
			break;
	}
	*ret_data = zspage_addr(pool, ent_id(e)) + ent_off(e);
	*ret_len = ent_len(e);
	return 0;
}

void zpool_obj_unmap(struct zpool *pool, uint32_t handle)
{
	atomic_fetch_sub_explicit(handle_entry(pool, handle), ENT_PIN_ONE, memory_order_release);
}

int zpool_obj_read(struct zpool *pool, uint32_t handle, void *buf, size_t buf_len)
{
	const void *data;
	size_t len;
	int r;

	r = zpool_obj_map(pool, handle, &data, &len);
	if (r < 0)
		return r;
	if (len <= buf_len)
		memcpy(buf, data, len);
	zpool_obj_unmap(pool, handle);
	return len <= buf_len ? (int)len : -ENOBUFS;
}

/* ---- compaction ---- */

struct isolated {
	uint32_t id;
	uint32_t class; /* index in pool->classes */
};

struct compaction {
	uint64_t *evacuate; /* bitmap by zspage id: isolated zspages, in chunks below nr_chunks */
	unsigned nr_chunks;
	struct isolated *zspages;
	size_t nr, cap;
};

static bool compaction_marked(const struct compaction *cc, uint32_t id)
{
	if ((id >> CHUNK_ZSPAGES_SHIFT) >= cc->nr_chunks)
		return false;
	return cc->evacuate[id / 64] & (UINT64_C(1) << (id % 64));
}

/*
 * Takes zspages of the class off its lists, sparsest first, while the free slots of those left
 * can hold all their objects. Returns -ENOMEM when it could not remember one (none is then
 * taken off).
 */
static int class_isolate(struct zpool *pool, struct size_class *class, struct compaction *cc)
{
	uint64_t free_slots;
	int r = 0;

	pthread_mutex_lock(&class->lock);
	/*
	 * Taking off a zspage with u objects takes its objs - u free slots from the others' count;
	 * moving the u objects takes u more: each isolation costs objs_per_zspage free slots.
	 */
	free_slots = class_free_slots(class);
	while (free_slots >= class->objs_per_zspage) {
		uint32_t id = class_find_src(pool, class);

		if (id == ZSPAGE_NONE)
			break;
		if (cc->nr == cc->cap) {
			size_t cap = MAX(cc->cap * 2, 64);
			struct isolated *p = realloc(cc->zspages, cap * sizeof(*p));

			if (!p) {
				r = -ENOMEM;
				break;
			}
			cc->zspages = p;
			cc->cap = cap;
		}
		class_unlink(pool, class, id);
		cc->zspages[cc->nr++] = (struct isolated){id, (uint32_t)(class - pool->classes)};
		cc->evacuate[id / 64] |= UINT64_C(1) << (id % 64);
		free_slots -= class->objs_per_zspage;
	}
	pthread_mutex_unlock(&class->lock);
	return r;
}

/* Moves the object of handle h (entry e, in an isolated zspage) to dst. Under the class lock. */
static void obj_move(struct zpool *pool, struct size_class *class, _Atomic uint64_t *ent,
		     uint64_t e, uint32_t dst)
{
	uint32_t src = ent_id(e);
	unsigned j;

	if (e & ENT_PIN_MASK)
		return; /* mapped: it stays, and so does its zspage */
	j = zspage_slot_alloc(pool, class, dst);
	memcpy(zspage_addr(pool, dst) + (size_t)j * class->size,
	       zspage_addr(pool, src) + ent_off(e), ent_len(e));
	if (!atomic_compare_exchange_strong_explicit(ent, &e,
						     ent_make(dst, j * class->size, ent_len(e)),
						     memory_order_acq_rel, memory_order_acquire)) {
		/* Pinned since we looked: leave it. dst keeps its other objects. */
		zspage_slot_free(pool, class, dst, j);
		return;
	}
	zspage_slot_free(pool, class, src, ent_off(e) / class->size);
}

/* Moves every object out of the isolated zspages, in one pass over the handle table. */
static void evacuate(struct zpool *pool, const struct compaction *cc)
{
	uint32_t end = atomic_load(&pool->handle_next);

	for (uint32_t h = 1; h < end; h++) {
		_Atomic uint64_t *ent = handle_entry(pool, h);
		struct size_class *class;
		uint64_t e;
		uint32_t dst;

		if (!ent)
			continue;
		e = atomic_load_explicit(ent, memory_order_relaxed);
		if ((e & ENT_FREE) || !compaction_marked(cc, ent_id(e)))
			continue;
		class = class_of(pool, ent_len(e));
		pthread_mutex_lock(&class->lock);
		/*
		 * Dropped since, or dropped and stored again: then not here, for nothing is stored
		 * into an isolated zspage. If it still points here, it is the same object.
		 */
		e = atomic_load_explicit(ent, memory_order_acquire);
		if (!(e & ENT_FREE) && compaction_marked(cc, ent_id(e)) &&
		    class_of(pool, ent_len(e)) == class) {
			dst = class_find_dst(class);
			if (dst != ZSPAGE_NONE)
				obj_move(pool, class, ent, e, dst);
		}
		pthread_mutex_unlock(&class->lock);
	}
}

uint64_t zpool_compact(struct zpool *pool)
{
	struct compaction cc = {};
	uint64_t freed = 0;

	pthread_mutex_lock(&pool->compact_lock);
	cc.nr_chunks = atomic_load(&pool->nr_chunks);
	cc.evacuate = calloc((size_t)cc.nr_chunks * CHUNK_ZSPAGES / 64 + 1, sizeof(uint64_t));
	if (!cc.evacuate)
		goto out;
	for (unsigned i = 0; i < pool->nr_classes; i++)
		if (class_isolate(pool, &pool->classes[i], &cc) < 0)
			break;
	if (cc.nr)
		evacuate(pool, &cc);

	/* Give back what is empty now; put back what a pinned object kept. */
	for (size_t k = 0; k < cc.nr; k++) {
		struct size_class *class = &pool->classes[cc.zspages[k].class];
		uint32_t id = cc.zspages[k].id;
		bool empty;

		pthread_mutex_lock(&class->lock);
		empty = zspage_of(pool, id)->inuse == 0;
		if (empty) {
			class->nr_zspages--;
			class->pages_compacted += class->pages_per_zspage;
			freed += class->pages_per_zspage;
		} else {
			class_link(pool, class, id);
		}
		pthread_mutex_unlock(&class->lock);
		if (empty)
			zspage_release(pool, class, id);
	}
	atomic_fetch_add(&pool->pages_compacted, freed);
out:
	free(cc.zspages);
	free(cc.evacuate);
	pthread_mutex_unlock(&pool->compact_lock);
	return freed;
}

static uint64_t class_freeable_pages(const struct size_class *class)
{
	return class_free_slots(class) / class->objs_per_zspage * class->pages_per_zspage;
}

uint64_t zpool_freeable_pages(struct zpool *pool)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < pool->nr_classes; i++) {
		struct size_class *class = &pool->classes[i];

		pthread_mutex_lock(&class->lock);
		n += class_freeable_pages(class);
		pthread_mutex_unlock(&class->lock);
	}
	return n;
}

/* ---- set-up ---- */

/*
 * Pages per zspage for objects of size bytes: the fewest whose waste is within
 * GEOMETRY_SLACK_PCT of the least.
 */
static void class_geometry(uint32_t size, unsigned max_pages, uint16_t *ret_pages,
			   uint16_t *ret_objs)
{
	uint64_t best_waste = 0, best_bytes = 0;
	unsigned best = 0;

	for (unsigned p = 1; p <= max_pages; p++) {
		uint64_t bytes = (uint64_t)p * PAGE_SIZE, waste = bytes % size;

		/* waste / bytes < best_waste / best_bytes, without division */
		if (bytes >= size && (!best || waste * best_bytes < best_waste * bytes)) {
			best = p;
			best_waste = waste;
			best_bytes = bytes;
		}
	}
	for (unsigned p = 1; p < best; p++) {
		uint64_t bytes = (uint64_t)p * PAGE_SIZE, waste = bytes % size;

		/* waste / bytes <= best_waste / best_bytes + GEOMETRY_SLACK_PCT / 100 */
		if (bytes >= size &&
		    100 * waste * best_bytes <=
			    100 * best_waste * bytes + GEOMETRY_SLACK_PCT * bytes * best_bytes) {
			best = p;
			best_bytes = bytes;
			break;
		}
	}
	*ret_pages = (uint16_t)best;
	*ret_objs = (uint16_t)(best_bytes / size);
}

static int classes_init(struct zpool *pool)
{
	unsigned nr_sizes = PAGE_SIZE / pool->delta, n = 0;
	uint16_t pages, objs;

	pool->class_of = calloc(nr_sizes, sizeof(*pool->class_of));
	pool->classes = calloc(nr_sizes, sizeof(*pool->classes));
	if (!pool->class_of || !pool->classes)
		return -ENOMEM;

	/* From the largest size down, so a merged class takes the size of its largest member. */
	for (unsigned k = nr_sizes; k >= 1; k--) {
		uint32_t size = k * pool->delta;
		struct size_class *prev = n ? &pool->classes[n - 1] : NULL;

		class_geometry(size, pool->cfg.max_zspage_pages, &pages, &objs);
		if (prev && prev->pages_per_zspage == pages && prev->objs_per_zspage == objs) {
			pool->class_of[k - 1] = prev;
			continue;
		}
		pool->classes[n] = (struct size_class){
			.size = size,
			.pages_per_zspage = pages,
			.objs_per_zspage = objs,
		};
		for (unsigned g = 0; g < ZPOOL_NR_FULLNESS; g++)
			pool->classes[n].groups[g] = ZSPAGE_NONE;
		pool->class_of[k - 1] = &pool->classes[n];
		n++;
	}
	/* Put them in ascending order, keeping the lookup table pointing at the same classes. */
	for (unsigned i = 0; i < n / 2; i++) {
		struct size_class t = pool->classes[i];

		pool->classes[i] = pool->classes[n - 1 - i];
		pool->classes[n - 1 - i] = t;
	}
	for (unsigned k = 0; k < nr_sizes; k++)
		pool->class_of[k] = &pool->classes[n - 1 - (pool->class_of[k] - pool->classes)];
	for (unsigned i = 0; i < n; i++) {
		pthread_mutexattr_t attr;

		pthread_mutexattr_init(&attr);
		/* Held for a few hundred nanoseconds at most: spin a little before sleeping. */
		pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
		pthread_mutex_init(&pool->classes[i].lock, &attr);
		pthread_mutexattr_destroy(&attr);
	}
	pool->nr_classes = n;
	return 0;
}

int zpool_new(const struct zpool_config *cfg, struct zpool **ret)
{
	struct zpool_config c = cfg ? *cfg : (struct zpool_config){};
	struct zpool *pool;
	int r;

	if (!c.max_zspage_pages)
		c.max_zspage_pages = DEFAULT_MAX_ZSPAGE_PAGES;
	if (!c.class_delta_bytes)
		c.class_delta_bytes = DEFAULT_CLASS_DELTA;
	if (c.max_zspage_pages > ZPOOL_MAX_ZSPAGE_PAGES ||
	    (c.class_delta_bytes != 8 && c.class_delta_bytes != 16 && c.class_delta_bytes != 32 &&
	     c.class_delta_bytes != 64))
		return -EINVAL;

	/* Page aligned, zeroed; in pmem, where a restarted daemon finds the objects. */
	pool = pmem_alloc(sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	pool->cfg = c;
	pool->delta = c.class_delta_bytes;
	pthread_mutex_init(&pool->grow_lock, NULL);
	pthread_mutex_init(&pool->compact_lock, NULL);
	pthread_mutex_init(&pool->arena_lock, NULL);
	for (unsigned p = 0; p <= ZPOOL_MAX_ZSPAGE_PAGES; p++)
		pool->arena[p].chunk = -1;
	atomic_store(&pool->handle_next, 1); /* 0 is never a handle */

	r = classes_init(pool);
	if (r < 0)
		goto out_free_pool;
	r = htab_grow(pool, 0);
	if (r < 0)
		goto out_free_pool;
	mem_charge_metadata(pool, (int64_t)(sizeof(*pool) + PAGE_SIZE +
					    PAGE_SIZE / pool->delta * sizeof(*pool->class_of) +
					    pool->nr_classes * sizeof(*pool->classes)));
	*ret = pool;
	return 0;

out_free_pool:
	zpool_free(pool);
	return r;
}

void zpool_free(struct zpool *pool)
{
	if (!pool)
		return;
	for (unsigned i = 0; i < atomic_load(&pool->nr_chunks); i++) {
		struct arena_chunk *c = atomic_load(&pool->chunks[i]);

		munmap(c->desc, CHUNK_ZSPAGES * sizeof(*c->desc));
		pmem_free(c->base, CHUNK_ZSPAGES * c->zspage_bytes);
		pmem_free(c, sizeof(*c));
	}
	for (unsigned i = 0; i < HTAB_MAX_CHUNKS; i++) {
		_Atomic uint64_t *chunk = atomic_load(&pool->htab[i]);

		if (chunk)
			pmem_free((void *)chunk, HTAB_CHUNK_ENTRIES * sizeof(uint64_t));
	}
	for (unsigned p = 0; p <= ZPOOL_MAX_ZSPAGE_PAGES; p++)
		free(pool->arena[p].free_ids);
	for (unsigned i = 0; pool->classes && i < pool->nr_classes; i++)
		pthread_mutex_destroy(&pool->classes[i].lock);
	free(pool->classes);
	free(pool->class_of);
	pthread_mutex_destroy(&pool->grow_lock);
	pthread_mutex_destroy(&pool->compact_lock);
	pthread_mutex_destroy(&pool->arena_lock);
	pmem_free(pool, sizeof(*pool));
}

int zpool_trim(struct zpool *pool)
{
	uint64_t bytes;

	if (atomic_load(&pool->objs) || atomic_load(&pool->pages))
		return -EBUSY;
	pthread_mutex_lock(&pool->grow_lock);
	pthread_mutex_lock(&pool->arena_lock);
	/* Handles start again from 1: the table's pages go back. Its first page stays charged
	 * (zpool_new charges it) and is touched again by the next handle. */
	for (unsigned i = 0; i < HTAB_MAX_CHUNKS; i++) {
		_Atomic uint64_t *chunk = atomic_load(&pool->htab[i]);

		if (chunk)
			pmem_discard((void *)chunk, HTAB_CHUNK_ENTRIES * sizeof(uint64_t));
	}
	atomic_store(&pool->handle_next, 1);
	atomic_store(&pool->handle_free, ((atomic_load(&pool->handle_free) >> 32) + 1) << 32);
	/* The arena starts again: every chunk (address space, descriptors) and id list goes. */
	for (unsigned i = 0; i < atomic_load(&pool->nr_chunks); i++) {
		struct arena_chunk *c = atomic_load(&pool->chunks[i]);

		munmap(c->desc, CHUNK_ZSPAGES * sizeof(*c->desc));
		pmem_free(c->base, CHUNK_ZSPAGES * c->zspage_bytes);
		pmem_free(c, sizeof(*c));
		atomic_store(&pool->chunks[i], NULL);
		mem_charge_metadata(pool, -(int64_t)sizeof(*c));
	}
	atomic_store(&pool->nr_chunks, 0);
	for (unsigned p = 0; p <= ZPOOL_MAX_ZSPAGE_PAGES; p++) {
		struct arena_group *g = &pool->arena[p];

		mem_charge_metadata(pool, -(int64_t)(g->cap_free * sizeof(*g->free_ids)));
		free(g->free_ids);
		*g = (struct arena_group){.chunk = -1};
	}
	bytes = atomic_exchange(&pool->htab_bytes, 0) + atomic_exchange(&pool->desc_bytes, 0);
	atomic_fetch_sub(&pool->metadata_bytes, bytes);
	atomic_fetch_sub(&pool->mem_bytes, bytes);
	pthread_mutex_unlock(&pool->arena_lock);
	pthread_mutex_unlock(&pool->grow_lock);
	return 0;
}

/* ---- figures ---- */

size_t zpool_huge_class_size(const struct zpool *pool)
{
	for (unsigned i = 0; i < pool->nr_classes; i++) {
		const struct size_class *class = &pool->classes[i];

		if (class->objs_per_zspage <= class->pages_per_zspage)
			return i ? pool->classes[i - 1].size + 1 : 1;
	}
	return PAGE_SIZE;
}

void zpool_get_stats(struct zpool *pool, struct zpool_stats *ret)
{
	*ret = (struct zpool_stats){
		.pages = atomic_load(&pool->pages),
		.metadata_bytes = atomic_load(&pool->metadata_bytes),
		.mem_used_bytes = atomic_load(&pool->mem_bytes),
		.mem_used_max_bytes = atomic_load(&pool->mem_max_bytes),
		.objs = atomic_load(&pool->objs),
		.obj_bytes = atomic_load(&pool->obj_bytes),
		.pages_compacted = atomic_load(&pool->pages_compacted),
		.limit_rejects = atomic_load(&pool->limit_rejects),
	};
}

unsigned zpool_nr_classes(const struct zpool *pool)
{
	return pool->nr_classes;
}

int zpool_get_class_stats(struct zpool *pool, unsigned idx, struct zpool_class_stats *ret)
{
	struct size_class *class;

	if (idx >= pool->nr_classes)
		return -ENOENT;
	class = &pool->classes[idx];
	pthread_mutex_lock(&class->lock);
	*ret = (struct zpool_class_stats){
		.size = class->size,
		.pages_per_zspage = class->pages_per_zspage,
		.objs_per_zspage = class->objs_per_zspage,
		.zspages = class->nr_zspages,
		.objs_allocated = class->nr_zspages * class->objs_per_zspage,
		.objs_inuse = class->objs_inuse,
		.pages_used = class->nr_zspages * class->pages_per_zspage,
		.pages_freeable = class_freeable_pages(class),
		.pages_compacted = class->pages_compacted,
	};
	memcpy(ret->fullness, class->nr_in_group, sizeof(ret->fullness));
	pthread_mutex_unlock(&class->lock);
	return 0;
}

/*
 * Recovery: reading a dead daemon's pool (pmem.h). Only the handle table and the arena are
 * followed, never the class lists or descriptors: an entry names its object's place and size
 * by itself. Entries are published with one store after the object is in place and freed
 * only after their entry stopped naming it (compaction: the CAS), so any entry read here that
 * is not FREE names whole bytes.
 */
int zpool_view_read(const struct pmem_view *v, uint64_t old_pool, uint32_t handle, void *buf,
		    size_t buf_len)
{
	const struct zpool *pool = pmem_view_ptr(v, old_pool, sizeof(*pool));
	const struct arena_chunk *c;
	const uint64_t *chunk;
	const void *obj;
	uint64_t e;
	size_t len;

	if (!pool)
		return -EBADMSG;
	if (handle == 0 || handle >= HANDLE_LIMIT ||
	    handle >= atomic_load_explicit(&pool->handle_next, memory_order_relaxed))
		return -ENOENT;
	chunk = pmem_view_ptr(v, (uint64_t)(uintptr_t)atomic_load_explicit(
					 &pool->htab[handle >> HTAB_CHUNK_SHIFT], memory_order_relaxed),
			      HTAB_CHUNK_ENTRIES * sizeof(uint64_t));
	if (!chunk)
		return -EBADMSG;
	e = chunk[handle & (HTAB_CHUNK_ENTRIES - 1)];
	if (e & ENT_FREE)
		return -ENOENT;
	c = pmem_view_ptr(v,
			  (uint64_t)(uintptr_t)atomic_load_explicit(
				  &pool->chunks[ent_id(e) >> CHUNK_ZSPAGES_SHIFT], memory_order_relaxed),
			  sizeof(*c));
	len = (size_t)(e & (PAGE_SIZE - 1)) + 1;
	if (!c || c->zspage_bytes == 0 || c->zspage_bytes > ZPOOL_MAX_ZSPAGE_PAGES * PAGE_SIZE ||
	    ent_off(e) + len > c->zspage_bytes)
		return -EBADMSG;
	obj = pmem_view_ptr(v,
			    (uint64_t)(uintptr_t)c->base +
				    (uint64_t)(ent_id(e) & (CHUNK_ZSPAGES - 1)) * c->zspage_bytes +
				    ent_off(e),
			    len);
	if (!obj)
		return -EBADMSG;
	if (len > buf_len)
		return -ENOBUFS;
	memcpy(buf, obj, len);
	return (int)len;
}
