/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The mesh: fedguardd with --store keeps the shared state of its trust
 * domain's agents in etcd (mstore.h) under /fedguard/<TD>/ (docs/federation.md):
 *
 *   policy               the signed policy document in force in the mesh
 *   quarantine/<target>  a quarantine record of the mesh
 *   nodes/<name>         each agent's record (leased): address, versions
 *   endpoints/<name>     each agent's workloads (leased): address -> SPIFFE ID
 *
 * The store's content is mirrored in memory and the local state document
 * is derived from it: the endpoints of the other agents (origin
 * "node:NAME"), the mesh's quarantines (origin "mesh") and the newest
 * signed policy. A change made at this agent (quarantine, policy, its
 * workloads) is applied here first and then written to the store, so the
 * agent never waits for etcd and keeps enforcing the last state it knows
 * while etcd is unreachable.
 *
 * Everything here runs on the agent's main thread.
 */
#ifndef FEDGUARD_FED_H
#define FEDGUARD_FED_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#include "commands.h"

struct agent;
struct json_object;
struct peerauth_opts;

struct fed_opts {
	const char *store;	/* --store etcd=URL[,URL...]; NULL: a standalone agent */
	unsigned int lease_ttl;	/* --store-lease-ttl, seconds; 0: the default */
	const char *peer_listen;	/* --peer-listen ADDR:PORT: links with peers and meshes */
	const char *bundle_listen;	/* --bundle-endpoint-listen ADDR:PORT */
	const char **federate;		/* --federate-with TD=URL,ENDPOINT-ID[,BUNDLE-FILE] */
	unsigned int n_federate;
	const char **share_names;	/* --share-names-with TD: alerts to it unredacted */
	unsigned int n_share_names;
};

/*
 * The options that belong together: --store needs --trust-domain (the node's
 * identity and name) and --policy-key (a mesh accepts only signed policies).
 * 0 or -EINVAL after logging the usage error.
 */
int fed_opts_check(const struct fed_opts *o, const struct peerauth_opts *auth,
		   bool have_policy_key);

/* Starts the mesh store client for a restored agent (a->fed); nothing without --store. */
int fed_start(struct agent *a, const struct fed_opts *o);
void fed_stop(struct agent *a);

size_t fed_pollfds(struct agent *a, struct pollfd *p, size_t max);
void fed_dispatch(struct agent *a, const struct pollfd *p, size_t n);

/* After every committed change of the state: the node's records in the store. */
void fed_state_changed(struct agent *a);

/*
 * Whether quarantine records made here belong to the mesh (a store is
 * configured): then they carry origin "mesh" and go to the store.
 */
bool fed_active(const struct agent *a);

/* This agent's name in the mesh (NAME of its node SVID), or NULL without a store. */
const char *fed_node_name(const struct agent *a);

/* A quarantine of the mesh, taken (record) or lifted (NULL) at this agent. */
void fed_quarantine_changed(struct agent *a, const char *target, struct json_object *record);

/* A policy applied at this agent: to the store for the rest of the mesh. */
void fed_policy_applied(struct agent *a);

/* The trust bundles changed: the links' authorities, the bundle endpoint's document. */
void fed_trust_changed(struct agent *a);

/*
 * Trust domain td was removed (bundle.del): what its mesh announced goes
 * too (endpoints, quarantines), and its links; counts in result.
 */
void fed_trust_domain_removed(struct agent *a, const char *td, struct json_object *result);

/* A peer of trust domain td presented a key not in its bundle: fetch it now (limited). */
void fed_bundles_kick(struct agent *a, const char *td);

/*
 * An alert raised here (alert_to_json()'s object, borrowed): to the mesh's
 * agents in full, to federated meshes' agents redacted (docs/federation.md,
 * "Alerts").
 */
void fed_alert_raised(struct agent *a, struct json_object *alert);

/* The alerts other agents sent, newest last, for fedguardctl alerts (result["remote"]). */
void fed_alerts(struct agent *a, struct json_object *result);

struct metrics_buf;

/* The mesh's metrics: the store, peers by state, federated bundles' age, alerts received. */
void fed_metrics(struct agent *a, struct metrics_buf *b);

/* "store": {...} of fedguardctl status. */
void fed_status(struct agent *a, struct json_object *result);

COMMAND(cmd_peer_list);
COMMAND(cmd_policy_status);

#endif /* FEDGUARD_FED_H */
