/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fedguardd's workload identity and peer authentication, when it runs with
 * --trust-domain: the SVIDs of the node and its workloads (svids.h), the
 * trust bundles, and the authentication engine (auth.h), fed with the
 * identities of the state document and the policy in force. It asks for
 * handshakes on auth-needed events, on drops for missing or expired
 * authentication, and ahead of time for every pair policy wants
 * authenticated (pre-authentication); it writes fg_auth, renews SVIDs and
 * authentications from a timer in the main loop, and removes the
 * authentications of a trust domain that is no longer trusted.
 *
 * Everything here runs on the agent's main thread; the handshakes run on
 * the engine's threads. Functions return 0 or a negative errno and log the
 * cause of a failure.
 */
#ifndef FEDGUARD_PEERAUTH_H
#define FEDGUARD_PEERAUTH_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include <linux/types.h>

struct agent;
struct bundle;
struct control_error;
struct json_object;

struct peerauth_opts {
	const char *trust_domain; /* --trust-domain: NULL runs without identity */
	const char *node_cert;	  /* --node-cert: node-ca.pem of fedguard-ca issue-node */
	const char *node_key;	  /* --node-key: node-ca.key */
	const char *node_name;	  /* --node-name: NULL for the host name */
	const char **bundles;	  /* --bundle TD=FILE */
	unsigned int n_bundles;
	unsigned int svid_ttl;	  /* --svid-ttl, seconds */
	const char *listen;	  /* --auth-listen ADDR:PORT */
	const char *tunnel_listen;   /* --tunnel-listen ADDR:PORT: the encrypted transport */
	const char *tunnel_redirect; /* --tunnel-redirect ADDR:PORT, NULL for the default */
};

/*
 * Where this node's workloads reach the tunnel's redirect listener: the
 * --tunnel-redirect address, else the --tunnel-listen address (the node
 * address when that is a wildcard) with the next port. 0, or -EINVAL
 * (logged) when it is no address a workload can connect to.
 */
int peerauth_tunnel_redirect(const struct peerauth_opts *o, const __u8 node[16],
			     struct sockaddr_storage *out, socklen_t *len);

/* Whether the agent carries tunnels (--tunnel-listen). */
bool peerauth_tunnel_running(const struct agent *a);

/* Cuts the tunnelled flows of quarantined identities and of untrusted trust domains. */
void peerauth_tunnel_cut(struct agent *a);

struct metrics_buf;

/* The tunnel's metrics (fedguard_tunnel_*), when it runs. */
void peerauth_tunnel_metrics(struct agent *a, struct metrics_buf *b);

/* The tunnel's part of the status reply, when it runs. */
void peerauth_tunnel_status(struct agent *a, struct json_object *result);

/*
 * Checks the options that belong together before anything starts: with
 * --trust-domain, --node-cert, --node-key, --auth-listen and --node-address
 * are required, and no other option of the set goes without it. 0 or
 * -EINVAL after logging the usage error.
 */
int peerauth_opts_check(const struct peerauth_opts *o, bool have_node_address);

/* Starts identity and authentication for a restored agent (a->auth). */
int peerauth_start(struct agent *a, const struct peerauth_opts *o);

/* Stops the engine's threads and frees everything; fg_auth stays as it is. */
void peerauth_stop(struct agent *a);

/* The agent's own trust domain. */
const char *peerauth_trust_domain(const struct agent *a);

/* The node's own SPIFFE ID, spiffe://TD/fedguard/node/NAME; NULL without --trust-domain. */
const char *peerauth_node_id(const struct agent *a);

/* The spiffe_sequence of td's bundle in force: 0, or -ENOENT (no bundle, or none set). */
int peerauth_bundle_sequence(const struct agent *a, const char *td, uint64_t *seq);

/*
 * After a committed change of the state: SVIDs for the workloads, a new
 * view for the engine, pre-authentication of the pairs policy wants.
 */
void peerauth_state_changed(struct agent *a);

/* The descriptors to poll (outcomes, timer, the tunnel's events): how many were written to p. */
size_t peerauth_pollfds(struct agent *a, struct pollfd *p, size_t max);

/* Handles the descriptors of peerauth_pollfds() that are ready. */
void peerauth_dispatch(struct agent *a, const struct pollfd *p, size_t n);

/*
 * Deletes every fg_auth entry, and makes the engine forget its sessions so
 * that the next handshakes are full ones; works without --trust-domain
 * too. *removed counts the entries.
 */
int peerauth_flush(struct agent *a, unsigned int *removed);

/*
 * How many SVIDs the node holds and the earliest notAfter among them (0
 * when none), for the metrics; -ENOENT without --trust-domain.
 */
int peerauth_svids_expiry(struct agent *a, size_t *count, time_t *earliest);

/* --- bundles (peerauth_bundles.c) ------------------------------------------------- */

/*
 * bundle.set: replaces td's bundle with the SPIFFE bundle document json,
 * refusing a lower spiffe_sequence than the one in force. When the
 * authorities changed, the trust domain's authentications are removed and
 * asked for again; a revoked bundle (empty keys) also cuts its sockets.
 * The change is kept in the state directory and outlives a restart.
 */
int peerauth_bundle_set(struct agent *a, const char *td, const char *json, size_t len,
			struct json_object *result, struct control_error *err);

/*
 * bundle.del: forgets td's bundle (the agent's own trust domain cannot be
 * deleted), removes its fg_auth entries and destroys its sockets that
 * policy binds to mTLS.
 */
int peerauth_bundle_del(struct agent *a, const char *td, struct json_object *result,
			struct control_error *err);

/* Whether td's bundle was deleted at run time (bundle.del), which outlives a restart. */
bool peerauth_bundle_deleted(const struct agent *a, const char *td);

/* bundle.list: [{trust_domain, authorities, sequence, refresh_hint, revoked, own}]. */
int peerauth_bundle_list(struct agent *a, struct json_object *result);

/* Internal to peerauth*.c: the bundles at start, and a new trust for the engine. */
int peerauth_bundles_load(struct agent *a, const struct peerauth_opts *o);
int peerauth_trust_update(struct agent *a);

/*
 * Internal: removes the fg_auth entries whose local or peer identity is in
 * trust domain td, and the engine's pairs of them; with cut, also destroys
 * the sockets bound to mTLS with its peers. Counts in *removed, *destroyed.
 */
int peerauth_drop_trust_domain(struct agent *a, const char *td, bool cut, unsigned int *removed,
			       unsigned int *destroyed);

#endif /* FEDGUARD_PEERAUTH_H */
