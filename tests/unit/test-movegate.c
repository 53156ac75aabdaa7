/* SPDX-License-Identifier: MIT */
/*
 * shared/movegate.h, the agent's side against the daemon's, in two threads:
 *  - never both inside: each side, once in, finds the other out, many times over;
 *  - a mark the daemon sets inside is seen by the agent's next entry (the agent checks the
 *    marks inside and never "moves" a marked slot: every slot marked before that entry
 *    stays unmoved);
 *  - neither starves: both sides get in a fixed number of times.
 * Plus the single-threaded rules: the daemon waits while the agent is in, the agent backs off
 * while the daemon reads, slots wrap at MEMEXT_STAGING_PAGES (the mlocked half), clear.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "shared/movegate.h"

#include "check.h"

#define ROUNDS 100000

static struct move_gate gate;
static atomic_int agent_in, daemon_in;
/* Both sides run until both have had ROUNDS turns, so they overlap whatever the scheduler. */
static atomic_uint agent_done, daemon_done;
static pthread_barrier_t start;
/* Slot -> the daemon's round that marked it (0: never), and whether the agent moved it. */
static atomic_uint marked_round[MEMEXT_STAGING_PAGES];
static atomic_bool moved[MEMEXT_STAGING_PAGES];

static bool both_done(void)
{
	return atomic_load(&agent_done) >= ROUNDS && atomic_load(&daemon_done) >= ROUNDS;
}

static void *agent(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&start);
	for (unsigned i = 0; !both_done(); i++) {
		unsigned slot = i % MEMEXT_STAGING_PAGES;

		while (!move_gate_try_enter(&gate))
			while (move_gate_reading(&gate))
				sched_yield();
		atomic_store(&agent_in, 1);
		check(atomic_load(&daemon_in) == 0);
		/* "Moves" the slot unless it is marked: a mark made before we got in is seen. */
		if (!move_gate_cancelled(&gate, slot))
			atomic_store(&moved[slot], true);
		atomic_store(&agent_in, 0);
		move_gate_leave(&gate);
		atomic_fetch_add(&agent_done, 1);
	}
	return NULL;
}

static void *daemon_side(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&start);
	for (unsigned round = 1; !both_done(); round++) {
		unsigned slot = (round * 37) % MEMEXT_STAGING_PAGES;

		move_gate_close(&gate);
		while (!move_gate_agent_out(&gate))
			sched_yield();
		atomic_store(&daemon_in, 1);
		check(atomic_load(&agent_in) == 0);
		/* An event took this slot: from now on the agent must not move it. Whatever it
		 * moved before is cleared here, as a new batch would. */
		if (!atomic_load(&marked_round[slot])) {
			atomic_store(&moved[slot], false);
			atomic_store(&marked_round[slot], round);
			move_gate_cancel(&gate, slot);
		}
		atomic_store(&daemon_in, 0);
		move_gate_open(&gate);
		atomic_fetch_add(&daemon_done, 1);
	}
	return NULL;
}

static void test_two_threads(void)
{
	pthread_t a, d;

	check(pthread_barrier_init(&start, NULL, 2) == 0);
	check(pthread_create(&a, NULL, agent, NULL) == 0);
	check(pthread_create(&d, NULL, daemon_side, NULL) == 0);
	check(pthread_join(a, NULL) == 0);
	check(pthread_join(d, NULL) == 0);
	/* A marked slot was never moved after its mark (it was reset when marked). */
	for (unsigned s = 0; s < MEMEXT_STAGING_PAGES; s++)
		if (atomic_load(&marked_round[s]))
			check(!atomic_load(&moved[s]));
	check(!gate.moving && !gate.reading);
}

static void test_rules(void)
{
	struct move_gate g = {0};

	/* The agent is in: the daemon, flag up, waits; the agent leaves, the daemon gets in. */
	check(move_gate_try_enter(&g));
	move_gate_close(&g);
	check(!move_gate_agent_out(&g));
	check(!move_gate_agent_unsharing(&g));
	move_gate_leave(&g);
	check(move_gate_agent_out(&g));
	/* The daemon reads: the agent backs off, its flag down, until the daemon is done. */
	check(!move_gate_try_enter(&g));
	check(g.moving == 0);
	check(move_gate_reading(&g));
	move_gate_open(&g);
	check(!move_gate_reading(&g));
	/* In to make a page exclusive: inside, and the daemon can tell why. */
	check(move_gate_try_enter(&g));
	move_gate_unsharing(&g);
	check(!move_gate_agent_out(&g));
	check(move_gate_agent_unsharing(&g));
	move_gate_leave(&g);
	check(move_gate_agent_out(&g) && !move_gate_agent_unsharing(&g));

	/* Marks: slot i and slot i of the mlocked half are the same slot. */
	move_gate_cancel(&g, 3);
	move_gate_cancel(&g, MEMEXT_STAGING_PAGES + 70);
	check(move_gate_cancelled(&g, 3));
	check(move_gate_cancelled(&g, MEMEXT_STAGING_PAGES + 3));
	check(move_gate_cancelled(&g, 70));
	check(!move_gate_cancelled(&g, 4));
	check(!move_gate_cancelled(&g, 69));
	move_gate_clear(&g);
	for (unsigned s = 0; s < 2 * MEMEXT_STAGING_PAGES; s++)
		check(!move_gate_cancelled(&g, s));
}

int main(void)
{
	test_rules();
	test_two_threads();
	return 0;
}
