/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Reclaim: kswapd for memext clients. Wakes when a client passes its low watermark (or every
 * few milliseconds), picks victims with a clock over the page table, and evicts them in
 * batches that no application write can slip through:
 *
 *   1. mark the victims MOVING (faults on them park until the batch lands);
 *   2. the agent in the process UFFDIO_MOVEs them into its staging area: atomic per page, the
 *      application sees either the page or a missing page that faults to us;
 *   3. process_vm_readv the staging area, compress each page into the store;
 *   4. mark them STORED, answer the parked faults, and ask the agent to drop staging.
 *
 * It also drains a client (brings every page back) before a fork and at shutdown.
 */

struct client;
struct manager;

int reclaim_start(struct manager *m);
void reclaim_stop(struct manager *m);

/* Frees what reclaim still holds of a client being freed (a batch its stopped process held). */
void reclaim_client_gone(struct client *c);
