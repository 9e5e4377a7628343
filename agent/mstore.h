/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's client of its mesh's state store (etcd through store.h), on a
 * worker thread of its own, so that the agent's main loop never waits for
 * the store (docs/ARCHITECTURE.md, "The mesh store"):
 *
 * - everything under the prefix, first as a snapshot (MSTORE_SNAPSHOT, one
 *   MSTORE_PUT per key, MSTORE_SYNCED), then each change as the watch sees
 *   it, all in one ordered queue; after a compaction or a lost event the
 *   snapshot is simply sent again, so the caller reconciles from
 *   SNAPSHOT..SYNCED and applies single events after that;
 * - writes, queued in order and retried until they land (a write the store
 *   answers with an error is dropped and reported: it would never land);
 * - leased keys (the node's record and its endpoints): kept under one lease
 *   while the agent runs, kept alive every third of the lease's lifetime,
 *   and put again under a new lease when the old one was lost. The lease
 *   is not revoked when the agent stops, so a restart within the lifetime
 *   withdraws nothing; a dead agent's leased keys expire.
 *
 * Keys given to and reported by this module are relative to the prefix.
 * Values are text (JSON). Reachability changes are events too.
 *
 * Threads: every function may be called from the owner's thread while the
 * worker runs; none of them blocks on the store.
 */
#ifndef FEDGUARD_MSTORE_H
#define FEDGUARD_MSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "store.h"

enum {
	MSTORE_LEASE_TTL_DEFAULT = 15,	/* seconds */
	MSTORE_LEASE_TTL_MIN = 3,
	MSTORE_BACKOFF_MIN_MS = 200,
	MSTORE_BACKOFF_MAX_MS = 5000,
	MSTORE_QUEUE_MAX = 65536,	/* events waiting for mstore_collect() */
	MSTORE_OPS_MAX = 65536,		/* writes waiting for the store */
	MSTORE_WHY_MAX = 256,
};

enum mstore_event_type {
	MSTORE_SNAPSHOT = 1,	/* a listing begins: until MSTORE_SYNCED, the keys are all there is */
	MSTORE_PUT,		/* key, value, mod_revision */
	MSTORE_DELETE,		/* key, mod_revision */
	MSTORE_SYNCED,		/* the listing is complete (mod_revision: its revision) */
	MSTORE_REACHABLE,	/* the store answers (again) */
	MSTORE_UNREACHABLE,	/* why */
	MSTORE_REFUSED,		/* a write the store refused or a guarded put that lost: key, why */
};

struct mstore_event {
	enum mstore_event_type type;
	char *key;
	char *value;
	size_t len;
	int64_t mod_revision;
	char why[MSTORE_WHY_MAX];
};

struct mstore_config {
	const char *urls;		/* store_open()'s list */
	const struct store_tls *tls;	/* for https URLs, else NULL */
	const char *prefix;		/* every key lives under it, e.g. "/fedguard/a.example/" */
	unsigned int lease_ttl;		/* seconds; 0: MSTORE_LEASE_TTL_DEFAULT */
	long connect_ms, total_ms;	/* bounds of one request; 0: store.h's defaults */
};

struct mstore_status {
	bool reachable;
	time_t since;			/* of the current reachability */
	char last_error[MSTORE_WHY_MAX];
	int64_t revision;		/* the last revision seen */
	unsigned int pending;		/* writes waiting */
	int64_t lease_id;
};

struct mstore;

/* Starts the worker: -EINVAL for a bad URL list or prefix (why says which), -ENOMEM. */
int mstore_start(const struct mstore_config *cfg, struct mstore **out, char *why, size_t why_len);

/* Stops the worker (within about a second) and frees everything; the lease stays. */
void mstore_stop(struct mstore *m);

/* Readable (an eventfd) while events wait. */
int mstore_fd(const struct mstore *m);

/* Moves up to max events to out, oldest first; each is freed with mstore_event_free(). */
size_t mstore_collect(struct mstore *m, struct mstore_event *out, size_t max);
void mstore_event_free(struct mstore_event *ev);

/* Queued writes: 0, -ENOMEM, -ENOSPC (MSTORE_OPS_MAX waiting). */
int mstore_put(struct mstore *m, const char *key, const char *value);
int mstore_delete(struct mstore *m, const char *key);

/* A put only over mod_revision (0: only if absent); a lost race is MSTORE_REFUSED. */
int mstore_put_if(struct mstore *m, const char *key, const char *value, int64_t mod_revision);

/* A key held by the agent's lease; value NULL removes it. 0 or -ENOMEM. */
int mstore_lease_put(struct mstore *m, const char *key, const char *value);

void mstore_status(struct mstore *m, struct mstore_status *out);

#endif /* FEDGUARD_MSTORE_H */
