/* SPDX-License-Identifier: MIT */
/*
 * wl-malloc SIZE THREADS OPS
 *
 * A glibc-malloc-heavy program. THREADS threads (the main thread among them, so the brk heap
 * is used as well as per-thread arenas, which glibc grows with mprotect) keep up to SIZE bytes
 * live between them in many small (16 B - 1 KiB), medium (1 - 64 KiB) and large (128 KiB -
 * 2 MiB; mmap'd chunks) blocks, from malloc, calloc, aligned_alloc and realloc. Every block
 * holds a stream derived from its own seed and a checksum of it is kept: a block is checked
 * before it is freed or reallocated, the kept prefix is checked after realloc (then the grown
 * tail is filled), calloc'd memory must read zero, and every live block is checked at the end.
 *
 * Phases: "fill" allocates up to the limit, "churn" runs OPS random operations per thread,
 * "verify" checks and frees everything.
 */
#include <malloc.h>
#include <pthread.h>

#include "wl-common.h"

struct block {
	char *ptr;
	size_t len;
	uint64_t seed;
	uint64_t csum;
};

struct worker {
	unsigned id;
	size_t nr_slots;
	struct block *slots;
	size_t live_bytes, limit_bytes;
	uint64_t rng;
	uint64_t nr_malloc, nr_calloc, nr_aligned, nr_realloc, nr_free, nr_check;
};

static size_t total_bytes;
static unsigned nr_threads;
static uint64_t nr_ops;
static pthread_barrier_t barrier;

static uint64_t csum(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t h = 0x84222325cbf29ce4ULL ^ len, w;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	for (; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

static void block_fail(struct worker *w, const struct block *b, const char *what, size_t len)
{
	ptrdiff_t off = wl_stream_check(b->ptr, len, b->seed);

	if (off < 0)
		wl_mismatch("thread %u: %s: block %p (%zu bytes): checksum differs but the content "
			    "matches its stream: checksum bookkeeping bug",
			    w->id, what, (void *)b->ptr, b->len);
	wl_mismatch("thread %u: %s: block %p of %zu bytes, first bad byte at offset %td "
		    "(address %p): 0x%02x",
		    w->id, what, (void *)b->ptr, b->len, off, (void *)(b->ptr + off),
		    (unsigned char)b->ptr[off]);
}

static void block_check(struct worker *w, const struct block *b, const char *what)
{
	w->nr_check++;
	if (csum(b->ptr, b->len) != b->csum)
		block_fail(w, b, what, b->len);
}

static size_t pick_len(struct worker *w)
{
	uint64_t r = wl_rand_below(&w->rng, 100);

	if (r < 77)
		return 16 + wl_rand_below(&w->rng, 1024 - 16);
	if (r < 97)
		return 1024 + wl_rand_below(&w->rng, 63 << 10);
	return (128 << 10) + wl_rand_below(&w->rng, (2 << 20) - (128 << 10));
}

static void block_free(struct worker *w, struct block *b)
{
	block_check(w, b, "before free");
	free(b->ptr);
	w->live_bytes -= b->len;
	w->nr_free++;
	memset(b, 0, sizeof(*b));
}

/* Free random blocks until `need` more bytes fit under the limit. */
static void make_room(struct worker *w, size_t need)
{
	while (w->live_bytes + need > w->limit_bytes && w->live_bytes) {
		struct block *b = &w->slots[wl_rand_below(&w->rng, w->nr_slots)];
		if (b->ptr)
			block_free(w, b);
	}
}

static void block_alloc(struct worker *w, struct block *b)
{
	size_t len = pick_len(w);
	unsigned how = (unsigned)wl_rand_below(&w->rng, 10);

	make_room(w, len);
	b->len = len;
	b->seed = wl_rand(&w->rng);
	if (how == 0) {
		b->ptr = calloc(1, len);
		w->nr_calloc++;
	} else if (how == 1) {
		size_t align = (size_t)64 << wl_rand_below(&w->rng, 7); /* 64 B .. 4 KiB */
		b->len = (len + align - 1) / align * align;
		b->ptr = aligned_alloc(align, b->len);
		w->nr_aligned++;
	} else {
		b->ptr = malloc(len);
		w->nr_malloc++;
	}
	if (!b->ptr)
		wl_die("allocating %zu bytes: %m", b->len);
	if (how == 0) {
		for (size_t i = 0; i < len; i++)
			if (b->ptr[i])
				wl_mismatch("thread %u: calloc(%zu) = %p: byte at offset %zu (address "
					    "%p) is 0x%02x, not zero",
					    w->id, len, (void *)b->ptr, i, (void *)(b->ptr + i),
					    (unsigned char)b->ptr[i]);
	}
	wl_stream_fill(b->ptr, b->len, b->seed);
	b->csum = csum(b->ptr, b->len);
	w->live_bytes += b->len;
}

static void block_realloc(struct worker *w, struct block *b)
{
	size_t len = pick_len(w), keep = len < b->len ? len : b->len;
	char *p;

	block_check(w, b, "before realloc");
	if (len > b->len)
		make_room(w, len - b->len);
	if (!b->ptr) /* make_room freed this very block */
		return;
	p = realloc(b->ptr, len);
	if (!p)
		wl_die("realloc %zu: %m", len);
	b->ptr = p;
	if (wl_stream_check(p, keep, b->seed) >= 0) {
		size_t old = b->len;
		b->len = keep;
		block_fail(w, b, "content kept by realloc", keep);
		b->len = old;
	}
	if (len > keep)
		wl_stream_fill_tail(p, keep, len, b->seed);
	w->live_bytes = w->live_bytes - b->len + len;
	b->len = len;
	b->csum = csum(p, len);
	w->nr_realloc++;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	w->slots = calloc(w->nr_slots, sizeof(*w->slots));
	if (!w->slots)
		wl_die("calloc: %m");

	/* fill: allocate until the limit is reached. */
	for (size_t i = 0; i < w->nr_slots && w->live_bytes < w->limit_bytes * 95 / 100; i++)
		block_alloc(w, &w->slots[i]);
	pthread_barrier_wait(&barrier);
	if (w->id == 0)
		wl_phase("churn");
	pthread_barrier_wait(&barrier);

	for (uint64_t i = 0; i < nr_ops; i++) {
		struct block *b = &w->slots[wl_rand_below(&w->rng, w->nr_slots)];
		unsigned op = (unsigned)wl_rand_below(&w->rng, 10);

		if (!b->ptr)
			block_alloc(w, b);
		else if (op < 4)
			block_check(w, b, "random check");
		else if (op < 7)
			block_realloc(w, b);
		else
			block_free(w, b);
	}
	pthread_barrier_wait(&barrier);
	if (w->id == 0)
		wl_phase("verify");
	pthread_barrier_wait(&barrier);

	/* The last check, then free everything. */
	for (size_t i = 0; i < w->nr_slots; i++)
		if (w->slots[i].ptr)
			block_check(w, &w->slots[i], "final check");
	for (size_t i = 0; i < w->nr_slots; i++)
		if (w->slots[i].ptr)
			block_free(w, &w->slots[i]);
	free(w->slots);
	wl_log("thread %u: %" PRIu64 " malloc, %" PRIu64 " calloc, %" PRIu64
	       " aligned_alloc, %" PRIu64 " realloc, %" PRIu64 " free, %" PRIu64 " checks",
	       w->id, w->nr_malloc, w->nr_calloc, w->nr_aligned, w->nr_realloc, w->nr_free,
	       w->nr_check);
	return NULL;
}

int main(int argc, char **argv)
{
	struct worker workers[64];
	pthread_t tid[64];

	wl_set_prog(argv[0]);
	if (argc != 4)
		wl_die("usage: %s SIZE THREADS OPS_PER_THREAD", argv[0]);
	total_bytes = wl_parse_size(argv[1]);
	nr_threads = (unsigned)wl_parse_u64(argv[2]);
	nr_ops = wl_parse_u64(argv[3]);
	if (!nr_threads || nr_threads > 64 || total_bytes < (16 << 20))
		wl_die("bad SIZE or THREADS");
	/*
	 * A fixed threshold (it also turns off glibc's dynamic one, which would move every large
	 * block into the heaps after the first free): blocks of 256 KiB and up stay mmap'd chunks.
	 */
	if (!mallopt(M_MMAP_THRESHOLD, 256 << 10))
		wl_die("mallopt");
	if (pthread_barrier_init(&barrier, NULL, nr_threads))
		wl_die("pthread_barrier_init");
	wl_log("%zu MiB live at most, %u threads, %" PRIu64 " ops each", total_bytes >> 20,
	       nr_threads, nr_ops);

	wl_phase("fill");
	for (unsigned t = 0; t < nr_threads; t++) {
		workers[t] = (struct worker){
			.id = t,
			.limit_bytes = total_bytes / nr_threads,
			.rng = wl_mix(0x5eed0000ULL + t),
		};
		/* Blocks average ~40 KiB: about two thirds of the slots are live at the limit. */
		workers[t].nr_slots = workers[t].limit_bytes / (26 << 10) + 256;
	}
	for (unsigned t = 1; t < nr_threads; t++)
		if ((errno = pthread_create(&tid[t], NULL, worker_main, &workers[t])))
			wl_die("pthread_create: %m");
	worker_main(&workers[0]); /* the main thread works in the main arena (brk heap) */
	for (unsigned t = 1; t < nr_threads; t++)
		pthread_join(tid[t], NULL);
	wl_log("all blocks verified");
	return 0;
}
