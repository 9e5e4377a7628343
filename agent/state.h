/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's registrations as one JSON document: the single source the
 * kernel maps are derived from (datapath_apply()) and what persists in
 * <state-dir>/state.json. Requests change a copy and the agent commits the
 * copy only once the datapath and the disk have taken it, so a failed
 * request changes nothing.
 *
 *   {
 *     "format": 1,
 *     "next_identity": 256, "next_td": 1,
 *     "identities":    { "spiffe://td/a": 256, ... },
 *     "trust_domains": { "td": 1, ... },
 *     "workloads":  { "spiffe://td/a": { "cgroup": PATH, "cgroup_id": N,
 *                     "ips": [ADDR], "netns": PATH, "labels": {K: V} } },
 *     "endpoints":  { "spiffe://td/b": { "ips": [ADDR/LEN], "node": ADDR,
 *                     "labels": {K: V} } },
 *     "quarantine": { "spiffe://td/a" | "spiffe://td": { "kind": "identity"
 *                     | "trust_domain", "reason": TEXT, "since": UNIX-SECONDS } },
 *     "policy":     { "version": N, "source": NAME, "document": TEXT,
 *                     "signature": TEXT (when it was applied with one) }
 *   }
 *
 * Numeric identities are handed out from next_identity upwards and never
 * reused, so a number can never name two SPIFFE IDs, not even in a stale map
 * entry. An identity's number is kept while anything refers to it.
 */
#ifndef FEDGUARD_STATE_H
#define FEDGUARD_STATE_H

#include <stdbool.h>

#include <json-c/json.h>
#include <linux/types.h>

#define STATE_FILE "state.json"
#define STATE_FORMAT 1

/* An empty state. */
struct json_object *state_new(void);

/* Reads <dir>/state.json; an empty state when there is none. Logs the cause. */
int state_load(const char *dir, struct json_object **out);

/* Writes <dir>/state.json atomically (temporary file, fsync, rename). */
int state_save(const char *dir, struct json_object *state);

/* A deep copy, for a request to change. */
struct json_object *state_copy(struct json_object *state);

/* One of "workloads", "endpoints", "quarantine", "identities", ... */
struct json_object *state_section(struct json_object *state, const char *name);

/* The number of a SPIFFE ID (or of a trust domain's own ID), allocated on first use. */
int state_identity(struct json_object *state, const char *spiffe_id, __u32 *id);

/* The number of a SPIFFE ID, 0 when it has none. */
__u32 state_identity_find(struct json_object *state, const char *spiffe_id);

/* The number of a trust domain, allocated on first use. */
int state_trust_domain(struct json_object *state, const char *td, __u32 *id);

/* Forgets the numbers nothing refers to any more (never reused). */
void state_collect(struct json_object *state);

/* Sets a member of the named section (taking @value), or deletes it when NULL. */
void state_put(struct json_object *state, const char *section, const char *key,
	       struct json_object *value);

#endif /* FEDGUARD_STATE_H */
