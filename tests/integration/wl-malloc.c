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
	/* History, for the report of a mismatch: how it was made, its last realloc. */
	const char *made_by;
	unsigned nr_reallocs;
	char *moved_from;
	size_t moved_from_len;
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

/*
 * Describes the damage to a block on stderr: each run of wrong pages, and whether it reads
 * zero (a page lost: the fault was answered with zeroes) or something else (a page from
 * elsewhere, or stale).
 */
/* The mapping that holds addr, from /proc/self/smaps: "um" in VmFlags means uffd-registered. */
static void print_vma(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool inside = false;

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) { /* a mapping's first line */
			inside = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
			if (inside)
				fprintf(stderr, "  mapping: %s", line);
		} else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
			fprintf(stderr, "  %s", line);
		}
	}
	fclose(f);
}

static void describe_damage(const struct block *b, size_t len)
{
	const char *base = (const char *)((uintptr_t)b->ptr & ~(uintptr_t)(WL_PAGE_SIZE - 1));
	/* mmap, not malloc: the heap itself may be what is damaged. */
	char *want = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	size_t first = 0, runs = 0;
	bool in_run = false, run_zero = true;

	if (want == MAP_FAILED)
		return;
	wl_stream_fill(want, len, b->seed);
	for (const char *pg = base; pg < b->ptr + len; pg += WL_PAGE_SIZE) {
		size_t lo = pg < b->ptr ? 0 : (size_t)(pg - b->ptr);
		size_t hi = (size_t)(pg + WL_PAGE_SIZE - b->ptr);
		bool bad, zero = true;

		hi = hi < len ? hi : len;
		bad = memcmp(b->ptr + lo, want + lo, hi - lo) != 0;
		for (size_t i = lo; bad && i < hi && zero; i++)
			zero = !b->ptr[i];
		if (bad && !in_run) {
			in_run = true;
			run_zero = zero;
			first = lo;
		} else if (bad) {
			run_zero &= zero;
		}
		if (in_run && (!bad || hi == len)) {
			size_t end = bad ? hi : lo;

			if (runs++ < 8)
				fprintf(stderr, "  wrong: offsets %zu-%zu (%p-%p), %s\n", first, end,
					(void *)(b->ptr + first), (void *)(b->ptr + end),
					run_zero ? "all zero" : "not zero");
			in_run = false;
		}
	}
	munmap(want, len);
	print_vma(b->ptr);
	fprintf(stderr, "  %zu run(s) of wrong pages; block made by %s, %u realloc(s)", runs,
		b->made_by ? b->made_by : "?", b->nr_reallocs);
	if (b->moved_from)
		fprintf(stderr, ", the last moved it from %p (%zu bytes)", (void *)b->moved_from,
			b->moved_from_len);
	fputc('\n', stderr);
}

static void block_fail(struct worker *w, const struct block *b, const char *what, size_t len)
{
	ptrdiff_t off = wl_stream_check(b->ptr, len, b->seed);

	if (off < 0)
		wl_mismatch("thread %u: %s: block %p (%zu bytes): checksum differs but the content "
			    "matches its stream: checksum bookkeeping bug",
			    w->id, what, (void *)b->ptr, b->len);
	describe_damage(b, len);
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
	b->nr_reallocs = 0;
	b->moved_from = NULL;
	if (how == 0) {
		b->made_by = "calloc";
		b->ptr = calloc(1, len);
		w->nr_calloc++;
	} else if (how == 1) {
		size_t align = (size_t)64 << wl_rand_below(&w->rng, 7); /* 64 B .. 4 KiB */
		b->len = (len + align - 1) / align * align;
		b->made_by = "aligned_alloc";
		b->ptr = aligned_alloc(align, b->len);
		w->nr_aligned++;
	} else {
		b->made_by = "malloc";
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
	b->nr_reallocs++;
	if (p != b->ptr) {
		b->moved_from = b->ptr;
		b->moved_from_len = b->len;
	}
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
