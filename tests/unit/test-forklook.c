/* SPDX-License-Identifier: MIT */
/*
 * Which looks of a reclaim thread serve a fork that waits (daemon/forklook.h), on a model of
 * reclaim.c: clients with a fork_requested flag, rounds over a snapshot of them taken after
 * reading the request number. A request of a client the round's snapshot lacks (a new process
 * that forks at once) is served by the next round; the single flag it replaced lost it.
 * Requests of clients another thread holds are looked for again; nothing is scanned for
 * nothing once every request is served.
 */
#include <stdbool.h>
#include <stdint.h>

#include "daemon/forklook.h"

#include "check.h"

#define NR 8

struct world {
	uint64_t seq;	    /* fork_seq */
	bool requested[NR]; /* fork_requested */
	bool listed[NR];    /* on the manager's list of clients */
	bool held[NR];	    /* claimed by another reclaim thread */
	bool dead[NR];	    /* its fork_requested set, gone since */
};

/* A reclaim thread and its round. */
struct thread {
	struct forklook l;
	uint64_t snap;
	bool in_snapshot[NR];
	unsigned scans; /* looks that went through the clients */
};

static void request(struct world *w, unsigned i)
{
	w->requested[i] = true;
	w->seq++;
}

static void round_begins(struct thread *t, const struct world *w)
{
	t->snap = w->seq;
	for (unsigned i = 0; i < NR; i++)
		t->in_snapshot[i] = w->listed[i];
	forklook_round(&t->l);
}

/* serve_forks()'s loop over a snapshot: serves what it can; returns how many. */
static unsigned scan(struct world *w, const bool *in_snapshot, bool *missed)
{
	unsigned served = 0;

	*missed = false;
	for (unsigned i = 0; i < NR; i++) {
		if (!in_snapshot[i] || !w->requested[i] || w->dead[i])
			continue;
		if (w->held[i]) {
			*missed = true;
			continue;
		}
		w->requested[i] = false;
		served++;
	}
	return served;
}

/* serve_forks(): returns how many it served. */
static unsigned look(struct thread *t, struct world *w)
{
	uint64_t seq = w->seq;
	unsigned served;
	bool missed;

	if (!forklook_needed(&t->l, seq))
		return 0;
	t->scans++;
	served = scan(w, t->in_snapshot, &missed);
	forklook_done(&t->l, seq, t->snap, missed);
	return served;
}

/* The rule it replaced: one flag, cleared by whoever looks, set again only by a look that was
 * not its round's first. */
struct old_thread {
	bool in_snapshot[NR];
};

static unsigned old_look(bool *flag, const struct old_thread *t, struct world *w, bool first)
{
	unsigned served;
	bool missed;

	if (!*flag)
		return 0;
	*flag = false;
	served = scan(w, t->in_snapshot, &missed);
	if (missed || (!served && !first))
		*flag = true;
	return served;
}

int main(void)
{
	/* No request ever: no look scans. */
	{
		struct world w = {.listed = {true, true, true}};
		struct thread t = {0};

		for (unsigned r = 0; r < 10; r++) {
			round_begins(&t, &w);
			for (unsigned k = 0; k < 3; k++)
				check(look(&t, &w) == 0);
		}
		check(t.scans == 0);
	}
	/* A client of the snapshot asks mid-round: the next look serves it, and no look after
	 * that scans, in this round or the next. */
	{
		struct world w = {.listed = {true, true, true}};
		struct thread t = {0};

		round_begins(&t, &w);
		check(look(&t, &w) == 0);
		request(&w, 1);
		check(look(&t, &w) == 1 && !w.requested[1]);
		check(look(&t, &w) == 0);
		round_begins(&t, &w);
		check(look(&t, &w) == 0 && look(&t, &w) == 0);
		/* The serving look, and the next round's first, which settles. */
		check(t.scans == 2);
	}
	/* A new process says hello after the round's snapshot and forks before the round's
	 * first look: that look cannot serve it, the rest of the round does not look again, and
	 * the next round serves it. */
	{
		struct world w = {.listed = {true, true}};
		struct thread t = {0};

		round_begins(&t, &w);
		w.listed[5] = true;
		request(&w, 5);
		check(look(&t, &w) == 0 && w.requested[5]);
		check(look(&t, &w) == 0 && t.scans == 1);
		round_begins(&t, &w);
		check(look(&t, &w) == 1 && !w.requested[5]);
		round_begins(&t, &w);
		check(look(&t, &w) == 0 && t.scans == 2);
	}
	/* The same with the old flag: the request is never served, however many rounds come,
	 * until another process asks (the hang seen under load). */
	{
		struct world w = {.listed = {true, true}};
		struct old_thread t = {.in_snapshot = {true, true}};
		bool flag = false;

		w.listed[5] = true;
		request(&w, 5);
		flag = true;
		check(old_look(&flag, &t, &w, true) == 0);
		t.in_snapshot[5] = true; /* the next rounds have it */
		for (unsigned r = 0; r < 10; r++)
			for (unsigned k = 0; k < 3; k++)
				check(old_look(&flag, &t, &w, k == 0) == 0);
		check(w.requested[5]); /* lost */
		request(&w, 0);
		flag = true;
		check(old_look(&flag, &t, &w, true) == 2 && !w.requested[5]);
	}
	/* A request whose client another thread holds is looked for at each look until it can
	 * be served. */
	{
		struct world w = {.listed = {true, true, true}, .held = {[2] = true}};
		struct thread t = {0};

		round_begins(&t, &w);
		request(&w, 2);
		check(look(&t, &w) == 0 && look(&t, &w) == 0 && t.scans == 2);
		w.held[2] = false;
		check(look(&t, &w) == 1 && !w.requested[2]);
		check(look(&t, &w) == 0 && t.scans == 3);
	}
	/* Two threads: the one that serves and the other, which finds nothing left and settles
	 * after one scan. */
	{
		struct world w = {.listed = {true, true, true, true}};
		struct thread a = {0}, b = {0};

		round_begins(&a, &w);
		round_begins(&b, &w);
		request(&w, 3);
		check(look(&a, &w) == 1);
		check(look(&b, &w) == 0 && look(&b, &w) == 0 && b.scans == 1);
		round_begins(&b, &w);
		check(look(&b, &w) == 0 && b.scans == 2);
		round_begins(&b, &w);
		check(look(&b, &w) == 0 && b.scans == 2);
	}
	/* A request comes while a look goes through the clients (after it read the number):
	 * that look serves it if it finds it, and the next look goes through them again. */
	{
		struct world w = {.listed = {true, true, true}};
		struct thread t = {0};
		uint64_t seq;
		bool missed;

		round_begins(&t, &w);
		request(&w, 0);
		seq = w.seq;
		check(forklook_needed(&t.l, seq));
		request(&w, 1); /* mid-look */
		check(scan(&w, t.in_snapshot, &missed) == 2 && !missed);
		forklook_done(&t.l, seq, t.snap, missed);
		check(forklook_needed(&t.l, w.seq));
		check(look(&t, &w) == 0);
		round_begins(&t, &w);
		check(look(&t, &w) == 0 && !forklook_needed(&t.l, w.seq));
	}
	/* A client that died with its request: nothing to serve, settled after one scan. */
	{
		struct world w = {.listed = {true, true}};
		struct thread t = {0};

		round_begins(&t, &w);
		request(&w, 1);
		w.dead[1] = true;
		round_begins(&t, &w);
		check(look(&t, &w) == 0 && t.scans == 1);
		check(look(&t, &w) == 0 && t.scans == 1);
		round_begins(&t, &w);
		check(look(&t, &w) == 0 && t.scans == 1);
	}
	return 0;
}
