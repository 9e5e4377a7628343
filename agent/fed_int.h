/* SPDX-License-Identifier: Apache-2.0 */
/* The state of fed*.c; not an API. */
#ifndef FEDGUARD_FED_INT_H
#define FEDGUARD_FED_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "fed.h"
#include "spiffe.h"

struct bep_kick;
struct bep_server;
struct fed_fetcher;
struct link_engine;
struct mstore;

/* Another agent of the mesh, from its record in the store; we keep a link to it. */
struct fed_peer {
	char name[256];
	char spiffe_id[SPIFFE_ID_MAX + 1];
	char addr[64];
	unsigned int peer_port;
	uint64_t dial;			/* our link to it */
	bool up;
	bool has_state;			/* it told us its versions */
	time_t last_seen;
	int64_t policy_version;
	int64_t bundle_sequence;
};

/* A federated mesh (--federate-with): its bundle endpoint, and our link to its agent there. */
struct fed_remote {
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	char url[1024];
	char host[64];			/* of url: where its agent listens for links too */
	char endpoint_id[SPIFFE_ID_MAX + 1];
	char bundle_file[1024];		/* the bootstrap bundle, or "" */
	uint64_t dial;
	bool up;
	time_t last_seen;
	char last_error[512];
	bool fetching;
	time_t next_fetch, fetched_at;
	unsigned int fetch_backoff;	/* seconds, after failures */
	char fetch_error[1024];
};

/* An agent of a federated mesh that linked to us: it learns what its mesh may know. */
struct fed_client {
	uint64_t id;
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	char node_id[SPIFFE_ID_MAX + 1];
	char *last_endpoints, *last_quarantine;	/* what it got last */
	struct json_object *alerted;		/* alert id -> target: quarantines it was told of */
};

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
	/*
	 * Quarantines of the mesh another agent issued that this one heard
	 * of by push but the store did not hold at its last listing: target
	 * -> when that was seen (io_now_ms()). Lifted once absent for
	 * FED_UNCONFIRMED_MS (fed_sync_unconfirmed()).
	 */
	struct json_object *unconfirmed;
	int64_t policy_rev;			/* mod_revision of "policy", 0: absent */
	int timer_fd;				/* 1 s: fetches, the endpoint's SVID */

	struct link_engine *links;		/* --peer-listen: peers and federation */
	unsigned int peer_port;
	struct fed_peer *peers;
	size_t n_peers;
	struct fed_remote *remotes;		/* --federate-with */
	size_t n_remotes;
	struct fed_client *clients;
	size_t n_clients;
	char *last_state;			/* the state message the peers got last */

	struct bep_server *bep;			/* --bundle-endpoint-listen */
	uint64_t bep_serial;			/* of the SVID it presents */
	struct fed_fetcher *fetcher;
	struct bep_kick *kick;

	struct json_object *alerts;		/* alerts from other agents, newest last */
	uint64_t alert_seq;
	struct json_object *alert_ids;		/* ids of alerts seen, not to take twice */
	struct json_object *telemetry;		/* node SVID -> its last totals */
	unsigned int ticks;
	const char **share_names;		/* --share-names-with */
	unsigned int n_share_names;

	/* https stores: the node SVID as PEM and the own trust, for the store's threads */
	pthread_mutex_t tls_lock;
	bool tls;
	struct auth_trust *store_trust;
	uint64_t pem_serial;
	char *cert_pem, *key_pem;
	char store_id[SPIFFE_ID_MAX + 1];	/* what the store must present */
};

/* The value of key in the mirror, parsed as JSON (the caller's), or NULL. */
struct json_object *fed_mirror_json(struct fed *f, const char *key);

/* The version of the policy in force here, 0 for none. */
int64_t fed_policy_version(struct agent *a);

/* Writes the signed policy in force to the store, over the revision last seen. */
void fed_policy_publish(struct agent *a);

/* fed_sync.c: the local state brought to the mirror, all of it or what key concerns. */
void fed_sync_all(struct agent *a);

/*
 * How long a quarantine another agent issued may be missing from the store
 * before this agent, which heard of it by push, takes it as released: more
 * than the store client's longest retry wait, so that an issuer's write
 * queued behind an outage lands first.
 */
enum { FED_UNCONFIRMED_MS = 6000 };

/* Lifts the unconfirmed quarantines whose time is up; every second. */
void fed_sync_unconfirmed(struct agent *a);
void fed_sync_key(struct agent *a, const char *key);

/*
 * One endpoint someone else announced into next (a state being changed),
 * checked as endpoint.add checks it, of trust domain td only, host
 * addresses only, with origin origin and owning node node; false (logged)
 * when refused.
 */
bool fed_take_endpoint(struct agent *a, struct json_object *next, const char *td,
		       const char *origin, const char *node, struct json_object *ep);

/* A quarantine record someone else issued, enforced here with origin origin (logged). */
void fed_enforce(struct agent *a, const char *target, struct json_object *rec, const char *origin);

/* Lifts target's quarantine if its record here has origin origin (logged). */
void fed_lift(struct agent *a, const char *target, const char *origin);

/* fed_links.c */
int fed_links_start(struct agent *a, const char *listen);
void fed_links_stop(struct fed *f);
void fed_links_dispatch(struct agent *a);
void fed_links_peers_sync(struct agent *a);
void fed_links_state_changed(struct agent *a);
void fed_links_quarantine(struct agent *a, const char *target, struct json_object *record);
void fed_links_telemetry(struct agent *a);
void fed_links_trust_changed(struct agent *a);
void fed_links_peer_item(struct agent *a, const char *name, struct json_object *item);
void fed_links_remote_items(struct agent *a, struct json_object *list);
struct fed_remote *fed_remote_find(struct fed *f, const char *td);

/* fed_bundles.c */
int fed_bundles_start(struct agent *a, const char *listen);
void fed_bundles_stop(struct fed *f);
int fed_bundles_fd(struct agent *a);
void fed_bundles_dispatch(struct agent *a);
void fed_bundles_tick(struct agent *a);
void fed_bundles_trust_changed(struct agent *a);

/* An alert another agent sent (a JSON object, borrowed): kept for fedguardctl alerts. */
void fed_alert_received(struct agent *a, struct json_object *msg);

#endif /* FEDGUARD_FED_INT_H */
