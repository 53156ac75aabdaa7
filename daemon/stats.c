/* SPDX-License-Identifier: MIT */
#include "stats.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "forkshare.h"
#include "macro.h"
#include "manager.h"
#include "memext-build.h"
#include "size.h"
#include "store.h"
#include "sysmem.h"

/* One client's figures, copied under its lock so a report is consistent per client. */
struct client_figures {
	int pid;
	char comm[16];
	uint64_t budget_bytes, resident_pages, evicted_pages, cached_pages;
	uint64_t pswpin, pswpout, faults, zero_faults, parked, throttled, move_failed;
	uint64_t fault_usec_total;
	uint64_t agent_faults, agent_unshare_faults;
	uint64_t gate_waits, gate_wait_usec, gate_deferred;
	uint64_t p50_usec, p99_usec;
	uint64_t active_pages, inactive_pages;		/* resident pages on each LRU list */
	uint64_t unevictable_pages;			/* ... and on none: mlocked, not rw */
	uint64_t workingset_refault, workingset_activate, workingset_restore;
	/* "untracked" (below track-above), "active", "draining", "drained", "forking",
	 * "no-agent", "stopped", "left" (memextctl(1)) */
	const char *state;
};

static const char *client_state(const struct client *c)
{
	if (atomic_load(&c->left))
		return "left";
	if (!c->armed)
		return "untracked";
	if (c->drain_requested)
		return c->nr_stored ? "draining" : "drained";
	if (c->fork_requested || c->evict_paused)
		return "forking";
	if (c->agent_gone)
		return "no-agent";
	if (atomic_load(&c->stalled_batch))
		return "stopped";
	return "active";
}

static void figures_of(struct client *c, struct client_figures *f)
{
	uint64_t snap[HIST_BUCKETS];

	pthread_mutex_lock(&c->lock);
	/* Not tracked yet: what the process has resident, from its last look. */
	f->resident_pages = c->armed ? c->nr_present : c->rss_pages;
	f->evicted_pages = c->nr_stored;
	f->cached_pages = c->nr_cached;
	f->active_pages = c->lru.nr_active;
	f->unevictable_pages = c->lru.nr_unevictable;
	/* MOVING entries count as inactive: they were isolated from that list. */
	f->inactive_pages = c->nr_present > f->active_pages + f->unevictable_pages
				    ? c->nr_present - f->active_pages - f->unevictable_pages
				    : 0;
	f->workingset_refault = c->lru.refault;
	f->workingset_activate = c->lru.activate;
	f->workingset_restore = c->lru.restore;
	f->state = client_state(c);
	pthread_mutex_unlock(&c->lock);
	f->pid = c->pid;
	memcpy(f->comm, c->comm, sizeof(f->comm));
	f->budget_bytes = c->budget_pages * PAGE_SIZE;
	f->pswpin = atomic_load(&c->stats.pswpin);
	f->pswpout = atomic_load(&c->stats.pswpout);
	f->faults = atomic_load(&c->stats.faults);
	f->zero_faults = atomic_load(&c->stats.zero_faults);
	f->parked = atomic_load(&c->stats.parked);
	f->throttled = atomic_load(&c->stats.throttled);
	f->move_failed = atomic_load(&c->stats.move_failed);
	f->fault_usec_total = atomic_load(&c->stats.fault_usec_total);
	f->agent_faults = atomic_load(&c->stats.agent_faults);
	f->agent_unshare_faults = atomic_load(&c->stats.agent_unshare_faults);
	f->gate_waits = atomic_load(&c->stats.gate_waits);
	f->gate_wait_usec = atomic_load(&c->stats.gate_wait_usec);
	f->gate_deferred = atomic_load(&c->stats.gate_deferred);
	hist_snapshot(&c->stats.fault_usec, snap);
	f->p50_usec = hist_quantile(snap, 0.50);
	f->p99_usec = hist_quantile(snap, 0.99);
}

static unsigned collect(struct manager *m, struct client_figures **ret)
{
	struct client_figures *v;
	unsigned n = 0;

	pthread_mutex_lock(&m->clients_lock);
	v = calloc(m->nr_clients + 1, sizeof(*v));
	for (struct client *c = m->clients; v && c; c = c->next)
		figures_of(c, &v[n++]);
	pthread_mutex_unlock(&m->clients_lock);
	*ret = v;
	return v ? n : 0;
}

static double mean(uint64_t sum, uint64_t n)
{
	return n ? (double)sum / (double)n : 0.0;
}

/* comm is the kernel's task name: escape what JSON needs escaped. */
static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

/* Per swap area: what bd_stat says for the whole store, area by area. */
static void write_json_swap_areas(struct manager *m, FILE *f)
{
	struct store_swap_stats a[8];
	int n = store_get_swap_stats(m->store, a, ARRAY_SIZE(a));

	fputs(",\"swap_areas\":[", f);
	for (int i = 0; i < n && i < (int)ARRAY_SIZE(a); i++) {
		fprintf(f, "%s{\"path\":", i ? "," : "");
		json_string(f, a[i].path);
		fprintf(f,
			",\"priority\":%d,\"block_device\":%s,\"total_slots\":%" PRIu64
			",\"used_slots\":%" PRIu64 ",\"reads\":%" PRIu64 ",\"writes\":%" PRIu64
			",\"read_errors\":%" PRIu64 ",\"write_errors\":%" PRIu64 "}",
			a[i].prio, a[i].bdev ? "true" : "false", a[i].total_slots, a[i].used_slots,
			a[i].bd_reads, a[i].bd_writes, a[i].read_errors, a[i].write_errors);
	}
	fputc(']', f);
}

static void write_text_swap_areas(struct manager *m, FILE *f)
{
	struct store_swap_stats a[8];
	int n = store_get_swap_stats(m->store, a, ARRAY_SIZE(a));
	char b[32];

	for (int i = 0; i < n && i < (int)ARRAY_SIZE(a); i++)
		fprintf(f, "    %s (priority %d): %" PRIu64 " of %" PRIu64 " pages used (%s), %" PRIu64
			   " reads, %" PRIu64 " writes, %" PRIu64 " errors\n",
			a[i].path, a[i].prio, a[i].used_slots, a[i].total_slots,
			format_size(a[i].used_slots * PAGE_SIZE, b, sizeof(b)), a[i].bd_reads,
			a[i].bd_writes, a[i].read_errors + a[i].write_errors);
}

static void write_json(struct manager *m, FILE *f, const struct client_figures *v, unsigned n,
		       const struct store_stats *st)
{
	uint64_t snap[HIST_BUCKETS];
	bool first = true;

	hist_snapshot(&m->totals.fault_usec, snap);
	fprintf(f, "{\"version\":\"%s\",\"uptime_usec\":%" PRIu64 ",\"clients\":[", MEMEXT_VERSION,
		now_usec() - m->start_usec);
	for (unsigned i = 0; i < n; i++) {
		const struct client_figures *c = &v[i];

		fprintf(f, "%s{\"pid\":%d,\"comm\":", i ? "," : "", c->pid);
		json_string(f, c->comm);
		fprintf(f,
			",\"state\":\"%s\",\"budget_bytes\":%" PRIu64 ",\"resident_pages\":%" PRIu64
			",\"evicted_pages\":%" PRIu64 ",\"swapcache_pages\":%" PRIu64
			",\"pswpin\":%" PRIu64 ",\"pswpout\":%" PRIu64
			",\"faults\":%" PRIu64 ",\"zero_faults\":%" PRIu64 ",\"parked_faults\":%" PRIu64
			",\"throttled_faults\":%" PRIu64 ",\"move_failed\":%" PRIu64
			",\"fault_usec_mean\":%.1f,\"fault_usec_p50\":%" PRIu64
			",\"fault_usec_p99\":%" PRIu64 ",\"active_pages\":%" PRIu64
			",\"inactive_pages\":%" PRIu64 ",\"unevictable_pages\":%" PRIu64
			",\"workingset_refault\":%" PRIu64
			",\"workingset_activate\":%" PRIu64 ",\"workingset_restore\":%" PRIu64
			",\"agent_faults\":%" PRIu64 ",\"agent_unshare_faults\":%" PRIu64
			",\"gate_waits\":%" PRIu64
			",\"gate_wait_usec\":%" PRIu64 ",\"gate_deferred\":%" PRIu64 "}",
			c->state, c->budget_bytes, c->resident_pages, c->evicted_pages,
			c->cached_pages, c->pswpin,
			c->pswpout, c->faults, c->zero_faults, c->parked, c->throttled, c->move_failed,
			mean(c->fault_usec_total, c->faults), c->p50_usec, c->p99_usec,
			c->active_pages, c->inactive_pages, c->unevictable_pages,
			c->workingset_refault, c->workingset_activate, c->workingset_restore, c->agent_faults,
			c->agent_unshare_faults, c->gate_waits, c->gate_wait_usec, c->gate_deferred);
	}
	fprintf(f,
		"],\"totals\":{\"pswpin\":%" PRIu64 ",\"pswpout\":%" PRIu64 ",\"faults\":%" PRIu64
		",\"zero_faults\":%" PRIu64 ",\"throttled_faults\":%" PRIu64
		",\"readahead\":%" PRIu64 ",\"pswpout_clean\":%" PRIu64
		",\"wp_faults\":%" PRIu64 ",\"clients_seen\":%" PRIu64
		",\"clients_no_uffd\":%" PRIu64 ",\"clients_left\":%" PRIu64
		",\"reclaim_scanned\":%" PRIu64
		",\"reclaim_stolen\":%" PRIu64
		",\"reclaim_failed\":%" PRIu64 ",\"reclaim_stalled\":%" PRIu64
		",\"stopped_holds\":%" PRIu64 ",\"stalled_landed_stopped\":%" PRIu64
		",\"move_unreported\":%" PRIu64 ",\"reclaim_deactivated\":%" PRIu64
		",\"unevictable_culled\":%" PRIu64
		",\"unevictable_rescued\":%" PRIu64
		",\"workingset_refault\":%" PRIu64 ",\"workingset_activate\":%" PRIu64
		",\"workingset_restore\":%" PRIu64 ",\"forks_shared\":%" PRIu64
		",\"forks_drained\":%" PRIu64 ",\"fork_pages_shared\":%" PRIu64
		",\"fork_pages_unshared\":%" PRIu64
		",\"fault_homed\":%" PRIu64 ",\"fault_unhomed\":%" PRIu64
		",\"adopt_swap_pages\":%" PRIu64 ",\"adopt_poisoned\":%" PRIu64
		",\"adopt_past_limit\":%" PRIu64 ",\"remaps_set_aside\":%" PRIu64
		",\"io_overflow\":%" PRIu64 ",\"hand_backs\":%" PRIu64
		",\"hand_back_pages\":%" PRIu64 ",\"taken_back\":%" PRIu64
		",\"fork_snapshots\":%u"
		",\"fault_usec_p50\":%" PRIu64
		",\"fault_usec_p99\":%" PRIu64 ",\"fault_usec_histogram\":[",
		atomic_load(&m->totals.pswpin), atomic_load(&m->totals.pswpout),
		atomic_load(&m->totals.faults), atomic_load(&m->totals.zero_faults),
		atomic_load(&m->totals.throttled), atomic_load(&m->totals.readahead),
		atomic_load(&m->totals.pswpout_clean),
		atomic_load(&m->totals.wp_faults), atomic_load(&m->totals.clients_seen),
		atomic_load(&m->totals.clients_no_uffd), atomic_load(&m->totals.clients_left),
		atomic_load(&m->totals.reclaim_scanned),
		atomic_load(&m->totals.pswpout),
		atomic_load(&m->totals.reclaim_failed), atomic_load(&m->totals.reclaim_stalled),
		atomic_load(&m->totals.stopped_holds),
		atomic_load(&m->totals.stalled_landed_stopped),
		atomic_load(&m->totals.move_unreported), atomic_load(&m->totals.reclaim_deactivated),
		atomic_load(&m->totals.unevictable_culled), atomic_load(&m->totals.unevictable_rescued),
		atomic_load(&m->totals.workingset_refault),
		atomic_load(&m->totals.workingset_activate),
		atomic_load(&m->totals.workingset_restore),
		atomic_load(&m->totals.forks_shared), atomic_load(&m->totals.forks_drained),
		atomic_load(&m->totals.fork_pages_shared),
		atomic_load(&m->totals.fork_pages_unshared), atomic_load(&m->totals.fault_homed),
		atomic_load(&m->totals.fault_unhomed), atomic_load(&m->totals.adopt_swap_pages),
		atomic_load(&m->totals.adopt_poisoned), atomic_load(&m->totals.adopt_past_limit),
		atomic_load(&m->totals.remaps_set_aside), atomic_load(&m->totals.io_overflow),
		atomic_load(&m->totals.hand_backs), atomic_load(&m->totals.hand_back_pages),
		atomic_load(&m->totals.taken_back), fork_share_count(m), hist_quantile(snap, 0.50),
		hist_quantile(snap, 0.99));
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		if (!snap[i])
			continue;
		fprintf(f, "%s{\"le_usec\":%" PRIu64 ",\"count\":%" PRIu64 "}", first ? "" : ",",
			hist_bucket_max(i), snap[i]);
		first = false;
	}
	fprintf(f,
		"]},\"store\":{\"orig_data_size\":%" PRIu64 ",\"compr_data_size\":%" PRIu64
		",\"mem_used_total\":%" PRIu64 ",\"mem_limit\":%" PRIu64 ",\"mem_used_max\":%" PRIu64
		",\"same_pages\":%" PRIu64 ",\"pages_compacted\":%" PRIu64 ",\"huge_pages\":%" PRIu64
		",\"stored_pages\":%" PRIu64 ",\"limit_rejects\":%" PRIu64 ",\"failed_loads\":%" PRIu64
		",\"bd_count\":%" PRIu64 ",\"bd_reads\":%" PRIu64 ",\"bd_writes\":%" PRIu64
		",\"bd_read_errors\":%" PRIu64 ",\"bd_write_errors\":%" PRIu64
		",\"written_back\":%" PRIu64 ",\"shared_handles\":%" PRIu64 "}",
		st->orig_data_size, st->compr_data_size, st->mem_used_total, st->mem_limit,
		st->mem_used_max, st->same_pages, st->pages_compacted, st->huge_pages, st->stored_pages,
		st->limit_rejects, st->failed_loads, st->bd_count, st->bd_reads, st->bd_writes,
		st->bd_read_errors, st->bd_write_errors, st->written_back, st->shared_handles);
	write_json_swap_areas(m, f);
	fprintf(f,
		",\"system\":{\"mem_total\":%" PRIu64 ",\"mem_available\":%" PRIu64
		",\"level\":\"%s\",\"reclaim_rounds\":%" PRIu64 "}",
		atomic_load(&m->sys_total_bytes), atomic_load(&m->sys_available_bytes),
		sysmem_level_name((enum sysmem_level)atomic_load(&m->sys_level)),
		atomic_load(&m->totals.sys_reclaim_rounds));
	fputs("}\n", f);
}

static void write_client_table(FILE *f, const struct client_figures *v, unsigned n)
{
	char a[32], b[32], c[32];

	fprintf(f, "%8s %-16s %-9s %10s %10s %10s %10s %10s %10s %7s %7s\n", "PID", "COMMAND",
		"STATE", "BUDGET", "RESIDENT", "EVICTED", "PSWPIN", "PSWPOUT", "FAULTS", "P50_US",
		"P99_US");
	for (unsigned i = 0; i < n; i++)
		fprintf(f,
			"%8d %-16s %-9s %10s %10s %10s %10" PRIu64 " %10" PRIu64 " %10" PRIu64
			" %7" PRIu64 " %7" PRIu64 "\n",
			v[i].pid, v[i].comm, v[i].state,
			v[i].budget_bytes ? format_size(v[i].budget_bytes, a, sizeof(a)) : "none",
			format_size(v[i].resident_pages * PAGE_SIZE, b, sizeof(b)),
			format_size(v[i].evicted_pages * PAGE_SIZE, c, sizeof(c)), v[i].pswpin,
			v[i].pswpout, v[i].faults, v[i].p50_usec, v[i].p99_usec);
}

/* The lists and refault detection: totals, then one line per client. */
static void write_text_lru(struct manager *m, FILE *f, const struct client_figures *v,
			   unsigned n)
{
	fprintf(f, "workingset: %" PRIu64 " refaults, %" PRIu64 " activated, %" PRIu64
		   " restored; %" PRIu64 " pages deactivated\n",
		atomic_load(&m->totals.workingset_refault),
		atomic_load(&m->totals.workingset_activate),
		atomic_load(&m->totals.workingset_restore),
		atomic_load(&m->totals.reclaim_deactivated));
	fprintf(f, "unevictable: %" PRIu64 " pages culled (mlocked, pinned, not read-write), %" PRIu64
		   " rescued\n",
		atomic_load(&m->totals.unevictable_culled),
		atomic_load(&m->totals.unevictable_rescued));
	for (unsigned i = 0; i < n; i++)
		fprintf(f, "  pid %d: %" PRIu64 " active, %" PRIu64 " inactive, %" PRIu64
			   " unevictable pages; %" PRIu64 " refaults, %" PRIu64 " activated, %" PRIu64
			   " restored\n",
			v[i].pid, v[i].active_pages, v[i].inactive_pages, v[i].unevictable_pages,
			v[i].workingset_refault, v[i].workingset_activate, v[i].workingset_restore);
}

static void write_text(struct manager *m, FILE *f, const struct client_figures *v, unsigned n,
		       const struct store_stats *st)
{
	uint64_t snap[HIST_BUCKETS];
	char a[32], b[32];

	hist_snapshot(&m->totals.fault_usec, snap);
	fprintf(f, "memextd %s, %u client%s\n\n", MEMEXT_VERSION, n, n == 1 ? "" : "s");
	write_client_table(f, v, n);
	fprintf(f, "\nstore:\n");
	fprintf(f, "  stored pages     %" PRIu64 " (%" PRIu64 " same-filled, %" PRIu64 " huge, %" PRIu64
		   " shared with fork children)\n",
		st->stored_pages, st->same_pages, st->huge_pages, st->shared_handles);
	fprintf(f, "  orig_data_size   %s\n", format_size(st->orig_data_size, a, sizeof(a)));
	fprintf(f, "  compr_data_size  %s\n", format_size(st->compr_data_size, a, sizeof(a)));
	fprintf(f, "  mem_used_total   %s (max %s)\n", format_size(st->mem_used_total, a, sizeof(a)),
		format_size(st->mem_used_max, b, sizeof(b)));
	if (st->mem_limit)
		fprintf(f, "  mem_limit        %s\n", format_size(st->mem_limit, a, sizeof(a)));
	if (st->bd_total_slots)
		fprintf(f, "  swap files       %" PRIu64 " of %" PRIu64 " pages used, %" PRIu64
			   " reads, %" PRIu64 " writes (%" PRIu64 " written back), %" PRIu64
			   " I/O errors\n",
			st->bd_count, st->bd_total_slots, st->bd_reads, st->bd_writes, st->written_back,
			st->bd_read_errors + st->bd_write_errors);
	write_text_swap_areas(m, f);
	if (st->stored_pages && st->mem_used_total)
		fprintf(f, "  saved            %s (ratio %.2f)\n",
			format_size(st->orig_data_size > st->mem_used_total
					    ? st->orig_data_size - st->mem_used_total
					    : 0,
				    a, sizeof(a)),
			(double)st->orig_data_size / (double)st->mem_used_total);
	fprintf(f, "\nfaults: %" PRIu64 " (%" PRIu64 " zero-filled, %" PRIu64
		   " throttled), service time p50 %" PRIu64 " us, p99 %" PRIu64 " us, mean %.1f us\n",
		atomic_load(&m->totals.faults), atomic_load(&m->totals.zero_faults),
		atomic_load(&m->totals.throttled),
		hist_quantile(snap, 0.50), hist_quantile(snap, 0.99),
		mean(atomic_load(&m->totals.fault_usec_total), atomic_load(&m->totals.faults)));
	fprintf(f, "reclaim: %" PRIu64 " scanned, %" PRIu64 " stolen (%" PRIu64
		   " clean: no compression), %" PRIu64 " refused by the kernel, %" PRIu64
		   " batches waited for a stopped process, %" PRIu64 " rounds let a stopped "
		   "process's agent run\n",
		atomic_load(&m->totals.reclaim_scanned), atomic_load(&m->totals.pswpout),
		atomic_load(&m->totals.pswpout_clean), atomic_load(&m->totals.reclaim_failed),
		atomic_load(&m->totals.reclaim_stalled), atomic_load(&m->totals.stopped_holds));
	fprintf(f, "system: %s of %s available, watermark level %s, %" PRIu64
		   " reclaim rounds for the system\n",
		format_size(atomic_load(&m->sys_available_bytes), a, sizeof(a)),
		format_size(atomic_load(&m->sys_total_bytes), b, sizeof(b)),
		sysmem_level_name((enum sysmem_level)atomic_load(&m->sys_level)),
		atomic_load(&m->totals.sys_reclaim_rounds));
	fprintf(f, "swap-in: %" PRIu64 " read ahead, %" PRIu64
		   " first writes to clean pages, %" PRIu64
		   " swap file reads queued beyond a process's 16 in flight\n",
		atomic_load(&m->totals.readahead), atomic_load(&m->totals.wp_faults),
		atomic_load(&m->totals.io_overflow));
	fprintf(f, "fault threads: %" PRIu64 " times a client went to one (its threads faulted "
		   "side by side), %" PRIu64 " back to all\n",
		atomic_load(&m->totals.fault_homed), atomic_load(&m->totals.fault_unhomed));
	if (atomic_load(&m->totals.hand_backs))
		fprintf(f, "own userfaultfds: %" PRIu64 " ranges handed to the application, %" PRIu64
			   " evicted pages brought back for them, %" PRIu64 " taken back\n",
			atomic_load(&m->totals.hand_backs), atomic_load(&m->totals.hand_back_pages),
			atomic_load(&m->totals.taken_back));
	write_text_lru(m, f, v, n);
	fprintf(f, "totals: %" PRIu64 " pswpin, %" PRIu64 " pswpout, %" PRIu64 " clients seen\n",
		atomic_load(&m->totals.pswpin), atomic_load(&m->totals.pswpout),
		atomic_load(&m->totals.clients_seen));
	if (atomic_load(&m->totals.clients_no_uffd))
		fprintf(f, "%" PRIu64 " processes ran without memext: they could not make a "
			   "userfaultfd (the log says why)\n",
			atomic_load(&m->totals.clients_no_uffd));
	if (atomic_load(&m->totals.clients_left))
		fprintf(f, "%" PRIu64 " processes left memext before a seccomp filter or a "
			   "user namespace\n",
			atomic_load(&m->totals.clients_left));
	fprintf(f, "forks: %" PRIu64 " shared %" PRIu64 " evicted pages with the child, %" PRIu64
		   " brought every page back first; %" PRIu64 " resident pages unshared to evict; "
		   "%u snapshots wait for their child\n",
		atomic_load(&m->totals.forks_shared), atomic_load(&m->totals.fork_pages_shared),
		atomic_load(&m->totals.forks_drained), atomic_load(&m->totals.fork_pages_unshared),
		fork_share_count(m));
	if (atomic_load(&m->totals.adopt_swap_pages) || atomic_load(&m->totals.adopt_poisoned) ||
	    atomic_load(&m->totals.adopt_past_limit))
		fprintf(f,
			"adopted after a crash: %" PRIu64 " pages in place in swap areas, %" PRIu64
			" past the store's limit, %" PRIu64 " poisoned (found nowhere)\n",
			atomic_load(&m->totals.adopt_swap_pages),
			atomic_load(&m->totals.adopt_past_limit),
			atomic_load(&m->totals.adopt_poisoned));
}

/* Prometheus label values: backslash, double quote and newline are escaped. */
static void prom_label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void prom_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_value(FILE *f, const char *name, const char *type, const char *help,
		       uint64_t value)
{
	prom_head(f, name, type, help);
	fprintf(f, "%s %" PRIu64 "\n", name, value);
}

static void write_prometheus(struct manager *m, FILE *f, const struct client_figures *v,
			     unsigned n, const struct store_stats *st)
{
	static const struct {
		const char *name, *type, *help;
		size_t offset;
		uint64_t scale;
	} per_client[] = {
		{"memext_client_budget_bytes", "gauge", "Resident memory the client may keep.",
		 offsetof(struct client_figures, budget_bytes), 1},
		{"memext_client_resident_bytes", "gauge", "Managed memory resident in the client.",
		 offsetof(struct client_figures, resident_pages), PAGE_SIZE},
		{"memext_client_evicted_bytes", "gauge", "Client memory held by the store.",
		 offsetof(struct client_figures, evicted_pages), PAGE_SIZE},
		{"memext_client_pswpin_total", "counter", "Pages brought back into the client.",
		 offsetof(struct client_figures, pswpin), 1},
		{"memext_client_pswpout_total", "counter", "Pages evicted from the client.",
		 offsetof(struct client_figures, pswpout), 1},
		{"memext_client_faults_total", "counter", "Page faults of the client answered.",
		 offsetof(struct client_figures, faults), 1},
		{"memext_client_active_bytes", "gauge", "Client memory on the active LRU list.",
		 offsetof(struct client_figures, active_pages), PAGE_SIZE},
		{"memext_client_inactive_bytes", "gauge", "Client memory on the inactive LRU list.",
		 offsetof(struct client_figures, inactive_pages), PAGE_SIZE},
		{"memext_client_unevictable_bytes", "gauge",
		 "Client memory the kernel refused to evict (mlocked, pinned, not read-write).",
		 offsetof(struct client_figures, unevictable_pages), PAGE_SIZE},
		{"memext_client_workingset_refault_total", "counter",
		 "Evicted pages of the client brought back.",
		 offsetof(struct client_figures, workingset_refault), 1},
		{"memext_client_workingset_activate_total", "counter",
		 "Refaults of the client within the workingset size, activated at once.",
		 offsetof(struct client_figures, workingset_activate), 1},
		{"memext_client_workingset_restore_total", "counter",
		 "Activated refaults of the client that were active before eviction.",
		 offsetof(struct client_figures, workingset_restore), 1},
	};
	uint64_t snap[HIST_BUCKETS], cum = 0;

	prom_value(f, "memext_clients", "gauge", "Clients connected now.", n);
	for (size_t k = 0; k < ARRAY_SIZE(per_client); k++) {
		prom_head(f, per_client[k].name, per_client[k].type, per_client[k].help);
		for (unsigned i = 0; i < n; i++) {
			uint64_t val;

			memcpy(&val, (const char *)&v[i] + per_client[k].offset, sizeof(val));
			fprintf(f, "%s{pid=\"%d\",comm=\"", per_client[k].name, v[i].pid);
			prom_label(f, v[i].comm);
			fprintf(f, "\"} %" PRIu64 "\n", val * per_client[k].scale);
		}
	}
	prom_value(f, "memext_pswpin_total", "counter", "Pages brought back from the store.",
		   atomic_load(&m->totals.pswpin));
	prom_value(f, "memext_pswpout_total", "counter", "Pages evicted into the store.",
		   atomic_load(&m->totals.pswpout));
	prom_value(f, "memext_readahead_pages_total", "counter",
		   "Pages brought back ahead of a fault (swap-in readahead).",
		   atomic_load(&m->totals.readahead));
	prom_value(f, "memext_pswpout_clean_total", "counter",
		   "Pages evicted clean: their kept copy reused, no compression.",
		   atomic_load(&m->totals.pswpout_clean));
	prom_value(f, "memext_wp_faults_total", "counter",
		   "First writes to pages brought back clean (their copy dropped).",
		   atomic_load(&m->totals.wp_faults));
	prom_value(f, "memext_zero_faults_total", "counter",
		   "Faults answered with zero pages (memory never evicted).",
		   atomic_load(&m->totals.zero_faults));
	prom_value(f, "memext_throttled_faults_total", "counter",
		   "Faults that waited for reclaim: less than the min watermark was free.",
		   atomic_load(&m->totals.throttled));
	prom_value(f, "memext_reclaim_scanned_total", "counter",
		   "Pages the reclaim clock looked at.", atomic_load(&m->totals.reclaim_scanned));
	prom_value(f, "memext_reclaim_stolen_total", "counter", "Pages reclaim evicted.",
		   atomic_load(&m->totals.pswpout));
	prom_value(f, "memext_reclaim_failed_total", "counter",
		   "Pages the kernel refused to move out.", atomic_load(&m->totals.reclaim_failed));
	prom_value(f, "memext_reclaim_stalled_total", "counter",
		   "Batches whose process was stopped before its agent moved them out.",
		   atomic_load(&m->totals.reclaim_stalled));
	prom_value(f, "memext_stopped_holds_total", "counter",
		   "Reclaim rounds that let the agent of a stopped process run to evict from it.",
		   atomic_load(&m->totals.stopped_holds));
	prom_value(f, "memext_unevictable_culled_total", "counter",
		   "Pages set aside as unevictable: the kernel refused them (mlocked, not "
		   "read-write).",
		   atomic_load(&m->totals.unevictable_culled));
	prom_value(f, "memext_unevictable_rescued_total", "counter",
		   "Unevictable pages put back on the lists (munlock, mprotect, retry).",
		   atomic_load(&m->totals.unevictable_rescued));
	prom_value(f, "memext_io_overflow_total", "counter",
		   "Faults on pages in a swap area queued for an I/O worker while their process "
		   "had 16 reads in flight.",
		   atomic_load(&m->totals.io_overflow));
	prom_value(f, "memext_reclaim_deactivated_total", "counter",
		   "Pages moved from the active to the inactive list.",
		   atomic_load(&m->totals.reclaim_deactivated));
	prom_value(f, "memext_workingset_refault_total", "counter",
		   "Evicted pages brought back (refaults).", atomic_load(&m->totals.workingset_refault));
	prom_value(f, "memext_workingset_activate_total", "counter",
		   "Refaults within the workingset size, activated at once.",
		   atomic_load(&m->totals.workingset_activate));
	prom_value(f, "memext_workingset_restore_total", "counter",
		   "Activated refaults that were active before their eviction.",
		   atomic_load(&m->totals.workingset_restore));
	prom_value(f, "memext_clients_seen_total", "counter", "Clients ever accepted.",
		   atomic_load(&m->totals.clients_seen));
	prom_value(f, "memext_clients_no_uffd_total", "counter",
		   "Processes that ran without memext: they could not make a userfaultfd.",
		   atomic_load(&m->totals.clients_no_uffd));
	prom_value(f, "memext_clients_left_total", "counter",
		   "Processes that left memext before a seccomp filter or a user namespace.",
		   atomic_load(&m->totals.clients_left));
	prom_value(f, "memext_adopt_swap_pages_total", "counter",
		   "Pages of a dead daemon's clients adopted in place in a swap area.",
		   atomic_load(&m->totals.adopt_swap_pages));
	prom_value(f, "memext_adopt_past_limit_total", "counter",
		   "Pages of a dead daemon's clients kept past the store's limit.",
		   atomic_load(&m->totals.adopt_past_limit));
	prom_value(f, "memext_remaps_set_aside_total", "counter",
		   "mremaps whose event came after another move into their source.",
		   atomic_load(&m->totals.remaps_set_aside));
	prom_value(f, "memext_adopt_poisoned_total", "counter",
		   "Pages of a dead daemon's clients found nowhere and poisoned (SIGBUS).",
		   atomic_load(&m->totals.adopt_poisoned));
	prom_value(f, "memext_system_mem_available_bytes", "gauge",
		   "MemAvailable at reclaim's last look.", atomic_load(&m->sys_available_bytes));
	prom_value(f, "memext_system_watermark_level", "gauge",
		   "0: above the system's watermarks, 1: below low (reclaim from every client), "
		   "2: below min (growth throttled).",
		   (uint64_t)atomic_load(&m->sys_level));
	prom_value(f, "memext_system_reclaim_rounds_total", "counter",
		   "Reclaim rounds run because the system as a whole was short of memory.",
		   atomic_load(&m->totals.sys_reclaim_rounds));
	prom_value(f, "memext_forks_shared_total", "counter",
		   "Forks whose child shared the parent's evicted pages.",
		   atomic_load(&m->totals.forks_shared));
	prom_value(f, "memext_forks_drained_total", "counter",
		   "Forks that brought every evicted page back first.",
		   atomic_load(&m->totals.forks_drained));
	prom_value(f, "memext_fork_pages_unshared_total", "counter",
		   "Resident pages shared with a fork child that were made exclusive to evict them.",
		   atomic_load(&m->totals.fork_pages_unshared));
	prom_value(f, "memext_fault_homed_total", "counter",
		   "Times a client whose threads faulted side by side went to one fault thread.",
		   atomic_load(&m->totals.fault_homed));
	prom_value(f, "memext_fault_unhomed_total", "counter",
		   "Times a client went back to every fault thread.",
		   atomic_load(&m->totals.fault_unhomed));
	prom_value(f, "memext_hand_backs_total", "counter",
		   "Ranges handed to an application's own userfaultfd.",
		   atomic_load(&m->totals.hand_backs));
	prom_value(f, "memext_hand_back_pages_total", "counter",
		   "Evicted pages brought back to hand their range to an application's userfaultfd.",
		   atomic_load(&m->totals.hand_back_pages));
	prom_value(f, "memext_taken_back_total", "counter",
		   "Ranges taken back once the application's own userfaultfd let go of them.",
		   atomic_load(&m->totals.taken_back));
	prom_value(f, "memext_fork_snapshots", "gauge",
		   "Snapshots of a parent's evicted pages waiting for its fork child to claim them.",
		   fork_share_count(m));

	hist_snapshot(&m->totals.fault_usec, snap);
	prom_head(f, "memext_fault_duration_seconds", "histogram",
		  "Time from reading a fault to answering it.");
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		cum += snap[i];
		if (snap[i] || i == HIST_BUCKETS - 1)
			fprintf(f, "memext_fault_duration_seconds_bucket{le=\"%.6f\"} %" PRIu64 "\n",
				(double)(hist_bucket_max(i) + 1) / 1e6, cum);
	}
	fprintf(f, "memext_fault_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
	fprintf(f, "memext_fault_duration_seconds_sum %.6f\n",
		(double)atomic_load(&m->totals.fault_usec_total) / 1e6);
	fprintf(f, "memext_fault_duration_seconds_count %" PRIu64 "\n", cum);

	prom_value(f, "memext_store_orig_data_bytes", "gauge",
		   "Uncompressed size of the stored pages (zram orig_data_size).",
		   st->orig_data_size);
	prom_value(f, "memext_store_compr_data_bytes", "gauge",
		   "Compressed size of the stored pages (zram compr_data_size).",
		   st->compr_data_size);
	prom_value(f, "memext_store_mem_used_bytes", "gauge",
		   "Memory the store takes from the system (zram mem_used_total).",
		   st->mem_used_total);
	prom_value(f, "memext_store_mem_limit_bytes", "gauge", "Store limit, 0 for none.",
		   st->mem_limit);
	prom_value(f, "memext_store_mem_used_max_bytes", "gauge",
		   "High-water mark of the store's memory.", st->mem_used_max);
	prom_value(f, "memext_store_same_pages", "gauge", "Pages stored as one repeated word.",
		   st->same_pages);
	prom_value(f, "memext_store_huge_pages", "gauge", "Pages stored uncompressed.",
		   st->huge_pages);
	prom_value(f, "memext_store_stored_pages", "gauge", "Pages held by the store.",
		   st->stored_pages);
	prom_value(f, "memext_store_pages_compacted_total", "counter",
		   "Pages given back by compaction.", st->pages_compacted);
	prom_value(f, "memext_store_bd_count_pages", "gauge",
		   "Pages in swap files now (zram bd_count).", st->bd_count);
	prom_value(f, "memext_store_bd_reads_total", "counter", "Pages read from swap files.",
		   st->bd_reads);
	prom_value(f, "memext_store_bd_writes_total", "counter", "Pages written to swap files.",
		   st->bd_writes);
}

static void write_classes(struct manager *m, FILE *f)
{
	struct store_class_stats cls[512];
	int n = store_get_class_stats(m->store, cls, ARRAY_SIZE(cls));

	fprintf(f, "%6s %6s %6s %10s %12s %12s %10s %10s %10s\n", "SIZE", "PAGES", "OBJS",
		"ZSPAGES", "OBJ_ALLOC", "OBJ_USED", "PAGES_USED", "FREEABLE", "COMPACTED");
	for (int i = 0; i < n && i < (int)ARRAY_SIZE(cls); i++) {
		if (!cls[i].zspages && !cls[i].pages_compacted)
			continue;
		fprintf(f,
			"%6u %6u %6u %10" PRIu64 " %12" PRIu64 " %12" PRIu64 " %10" PRIu64
			" %10" PRIu64 " %10" PRIu64 "\n",
			cls[i].size, cls[i].pages_per_zspage, cls[i].objs_per_zspage, cls[i].zspages,
			cls[i].objs_allocated, cls[i].objs_used, cls[i].pages_used,
			cls[i].pages_freeable, cls[i].pages_compacted);
	}
}

void stats_write(struct manager *m, enum stats_format format, FILE *f)
{
	struct client_figures *v = NULL;
	struct store_stats st;
	unsigned n = collect(m, &v);

	store_get_stats(m->store, &st);
	switch (format) {
	case STATS_JSON:
		write_json(m, f, v, n, &st);
		break;
	case STATS_PROMETHEUS:
		write_prometheus(m, f, v, n, &st);
		break;
	case STATS_CLIENTS:
		write_client_table(f, v, n);
		break;
	case STATS_CLASSES:
		write_classes(m, f);
		break;
	case STATS_TEXT:
	default:
		write_text(m, f, v, n, &st);
		break;
	}
	free(v);
}

int stats_write_client(struct manager *m, pid_t pid, FILE *f)
{
	struct client_figures fig;
	int r = -ESRCH;

	pthread_mutex_lock(&m->clients_lock);
	for (struct client *c = m->clients; c; c = c->next)
		if (c->pid == pid) {
			figures_of(c, &fig);
			r = 0;
			break;
		}
	pthread_mutex_unlock(&m->clients_lock);
	if (r < 0)
		return r;
	/* comm last: it may hold spaces. */
	fprintf(f,
		"pid=%d state=%s budget_bytes=%" PRIu64 " resident_pages=%" PRIu64
		" evicted_pages=%" PRIu64 " faults=%" PRIu64 " pswpin=%" PRIu64 " pswpout=%" PRIu64
		" fault_usec_p50=%" PRIu64 " fault_usec_p99=%" PRIu64 " comm=%s\n",
		fig.pid, fig.state, fig.budget_bytes, fig.resident_pages, fig.evicted_pages,
		fig.faults, fig.pswpin, fig.pswpout, fig.p50_usec, fig.p99_usec, fig.comm);
	return 0;
}
