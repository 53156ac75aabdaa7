/* SPDX-License-Identifier: MIT */
#include "stats.h"

#include <inttypes.h>
#include <string.h>

#include "memext-build.h"
#include <stdlib.h>

#include "client.h"
#include "macro.h"
#include "manager.h"
#include "size.h"
#include "store.h"

struct client_figures {
	int pid;
	char comm[16];
	uint64_t budget_bytes, resident_pages, evicted_pages;
	uint64_t pswpin, pswpout, faults, zero_faults, parked, move_failed, fault_usec_total;
};

static unsigned collect(struct manager *m, struct client_figures **ret)
{
	struct client_figures *v;
	unsigned n = 0;

	pthread_mutex_lock(&m->clients_lock);
	v = calloc(m->nr_clients + 1, sizeof(*v));
	for (struct client *c = m->clients; v && c; c = c->next) {
		struct client_figures *f = &v[n++];

		pthread_mutex_lock(&c->lock);
		f->resident_pages = c->nr_present;
		f->evicted_pages = c->nr_stored;
		pthread_mutex_unlock(&c->lock);
		f->pid = c->pid;
		memcpy(f->comm, c->comm, sizeof(f->comm));
		f->budget_bytes = c->budget_pages * PAGE_SIZE;
		f->pswpin = atomic_load(&c->stats.pswpin);
		f->pswpout = atomic_load(&c->stats.pswpout);
		f->faults = atomic_load(&c->stats.faults);
		f->zero_faults = atomic_load(&c->stats.zero_faults);
		f->parked = atomic_load(&c->stats.parked);
		f->move_failed = atomic_load(&c->stats.move_failed);
		f->fault_usec_total = atomic_load(&c->stats.fault_usec_total);
	}
	pthread_mutex_unlock(&m->clients_lock);
	*ret = v;
	return v ? n : 0;
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

static void write_json(struct manager *m, FILE *f, const struct client_figures *v, unsigned n,
		       const struct store_stats *st)
{
	fprintf(f, "{\"version\":\"%s\",\"uptime_usec\":%" PRIu64 ",\"clients\":[", MEMEXT_VERSION,
		now_usec() - m->start_usec);
	for (unsigned i = 0; i < n; i++) {
		const struct client_figures *c = &v[i];

		fprintf(f, "%s{\"pid\":%d,\"comm\":", i ? "," : "", c->pid);
		json_string(f, c->comm);
		fprintf(f,
			",\"budget_bytes\":%" PRIu64 ",\"resident_pages\":%" PRIu64
			",\"evicted_pages\":%" PRIu64 ",\"pswpin\":%" PRIu64 ",\"pswpout\":%" PRIu64
			",\"faults\":%" PRIu64 ",\"zero_faults\":%" PRIu64 ",\"parked_faults\":%" PRIu64
			",\"move_failed\":%" PRIu64 ",\"fault_usec_mean\":%.1f}",
			c->budget_bytes, c->resident_pages, c->evicted_pages, c->pswpin, c->pswpout,
			c->faults, c->zero_faults, c->parked, c->move_failed,
			c->faults ? (double)c->fault_usec_total / (double)c->faults : 0.0);
	}
	fprintf(f,
		"],\"totals\":{\"pswpin\":%" PRIu64 ",\"pswpout\":%" PRIu64 ",\"faults\":%" PRIu64
		",\"zero_faults\":%" PRIu64 ",\"clients_seen\":%" PRIu64
		",\"reclaim_scanned\":%" PRIu64 ",\"reclaim_failed\":%" PRIu64 "}",
		atomic_load(&m->totals.pswpin), atomic_load(&m->totals.pswpout),
		atomic_load(&m->totals.faults), atomic_load(&m->totals.zero_faults),
		atomic_load(&m->totals.clients_seen), atomic_load(&m->totals.reclaim_scanned),
		atomic_load(&m->totals.reclaim_failed));
	fprintf(f,
		",\"store\":{\"orig_data_size\":%" PRIu64 ",\"compr_data_size\":%" PRIu64
		",\"mem_used_total\":%" PRIu64 ",\"mem_limit\":%" PRIu64 ",\"mem_used_max\":%" PRIu64
		",\"same_pages\":%" PRIu64 ",\"pages_compacted\":%" PRIu64 ",\"huge_pages\":%" PRIu64
		",\"stored_pages\":%" PRIu64 ",\"limit_rejects\":%" PRIu64 ",\"failed_loads\":%" PRIu64
		"}}\n",
		st->orig_data_size, st->compr_data_size, st->mem_used_total, st->mem_limit,
		st->mem_used_max, st->same_pages, st->pages_compacted, st->huge_pages, st->stored_pages,
		st->limit_rejects, st->failed_loads);
}

static void write_text(struct manager *m, FILE *f, const struct client_figures *v, unsigned n,
		       const struct store_stats *st)
{
	char a[32], b[32], c[32];

	fprintf(f, "memextd %s, %u client%s\n\n", MEMEXT_VERSION, n, n == 1 ? "" : "s");
	fprintf(f, "%8s %-16s %10s %10s %10s %10s %10s %10s %9s\n", "PID", "COMMAND", "BUDGET",
		"RESIDENT", "EVICTED", "PSWPIN", "PSWPOUT", "FAULTS", "FAULT_US");
	for (unsigned i = 0; i < n; i++)
		fprintf(f,
			"%8d %-16s %10s %10s %10s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %9.1f\n",
			v[i].pid, v[i].comm,
			v[i].budget_bytes ? format_size(v[i].budget_bytes, a, sizeof(a)) : "none",
			format_size(v[i].resident_pages * PAGE_SIZE, b, sizeof(b)),
			format_size(v[i].evicted_pages * PAGE_SIZE, c, sizeof(c)), v[i].pswpin,
			v[i].pswpout, v[i].faults,
			v[i].faults ? (double)v[i].fault_usec_total / (double)v[i].faults : 0.0);
	fprintf(f, "\nstore:\n");
	fprintf(f, "  stored pages     %" PRIu64 " (%" PRIu64 " same-filled, %" PRIu64 " huge)\n",
		st->stored_pages, st->same_pages, st->huge_pages);
	fprintf(f, "  orig_data_size   %s\n", format_size(st->orig_data_size, a, sizeof(a)));
	fprintf(f, "  compr_data_size  %s\n", format_size(st->compr_data_size, a, sizeof(a)));
	fprintf(f, "  mem_used_total   %s (max %s)\n", format_size(st->mem_used_total, a, sizeof(a)),
		format_size(st->mem_used_max, b, sizeof(b)));
	if (st->mem_used_total)
		fprintf(f, "  saved            %s (ratio %.2f)\n",
			format_size(st->orig_data_size > st->mem_used_total
					    ? st->orig_data_size - st->mem_used_total
					    : 0,
				    a, sizeof(a)),
			(double)st->orig_data_size / (double)st->mem_used_total);
	fprintf(f, "\ntotals: %" PRIu64 " pswpin, %" PRIu64 " pswpout, %" PRIu64
		" faults, %" PRIu64 " clients seen\n",
		atomic_load(&m->totals.pswpin), atomic_load(&m->totals.pswpout),
		atomic_load(&m->totals.faults), atomic_load(&m->totals.clients_seen));
}

void stats_write(struct manager *m, enum stats_format format, FILE *f)
{
	struct client_figures *v = NULL;
	struct store_stats st;
	unsigned n = collect(m, &v);

	store_get_stats(m->store, &st);
	if (format == STATS_JSON)
		write_json(m, f, v, n, &st);
	else
		write_text(m, f, v, n, &st);
	free(v);
}
