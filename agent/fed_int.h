/* SPDX-License-Identifier: Apache-2.0 */
/* The state of fed.c and fed_sync.c; not an API. */
#ifndef FEDGUARD_FED_INT_H
#define FEDGUARD_FED_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "fed.h"
#include "spiffe.h"

struct mstore;

struct fed {
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	char node_id[SPIFFE_ID_MAX + 1];	/* spiffe://TD/fedguard/node/NAME */
	char name[256];				/* NAME: this agent's key in the store */
	char node_addr[64];			/* --node-address */
	char urls[1024];
	time_t started;
	struct mstore *ms;
	/*
	 * The store's content as last seen, key (relative to the prefix) ->
	 * {"v": value text, "rev": mod_revision}; snap while a listing arrives.
	 */
	struct json_object *mirror;
	struct json_object *snap;
	bool synced;				/* a whole listing has arrived */
	int64_t policy_rev;			/* mod_revision of "policy", 0: absent */
};

/* The value of key in the mirror, parsed as JSON (the caller's), or NULL. */
struct json_object *fed_mirror_json(struct fed *f, const char *key);

/* The version of the policy in force here, 0 for none. */
int64_t fed_policy_version(struct agent *a);

/* Writes the signed policy in force to the store, over the revision last seen. */
void fed_policy_publish(struct agent *a);

/* fed_sync.c: the local state brought to the mirror, all of it or what key concerns. */
void fed_sync_all(struct agent *a);
void fed_sync_key(struct agent *a, const char *key);

#endif /* FEDGUARD_FED_INT_H */
