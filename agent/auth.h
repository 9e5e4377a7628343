/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Peer authentication: the agents that own two identities prove them to
 * each other in a mutual TLS 1.3 handshake and then each writes the pair
 * into fg_auth (docs/ARCHITECTURE.md, "Peer authentication").
 *
 * The asker, the agent of local identity L, connects to the agent of the
 * remote identity R at R's node address and the port of its own
 * --auth-listen (every node listens on the same port). It names R in the
 * TLS server name (auth_sni_name(): a hash of R's SPIFFE ID, as a DNS name)
 * so that the answerer can present R's SVID, and presents L's. After the
 * handshake it sends one request, which names R exactly and says which of
 * the two initiates connections; the answerer replies with one status.
 *
 *   request  "FG", version 1, direction (FG_DIR_EGRESS: L initiates to R;
 *            FG_DIR_INGRESS: R initiates to L), length of R's ID (2 bytes,
 *            network order), R's ID
 *   reply    status (0 authenticated, 1 refused), length (1 byte), a reason
 *
 * Each side validates the other's chain with svid_verify() against the
 * authorities of that SVID's own trust domain; the asker requires exactly
 * R, the answerer takes whatever ID the chain proves and requires that it
 * is a known identity whose registered node is the address the asker
 * connects from. Each checks its own policy for the pair in its own
 * direction. The answerer writes fg_auth {R, L, L's node} before it
 * replies; the asker writes {L, R, R's node} once the reply says yes. The
 * expiry is the earliest notAfter of both chains, in CLOCK_MONOTONIC.
 *
 * Handshakes run on worker threads, never on the caller's: askers on up to
 * askers_max threads, answerers on up to answerers_max, every step bounded
 * by timeout_ms. Results come back to the caller's thread through an
 * eventfd (auth_engine_fd(), auth_engine_collect()).
 *
 * Conventions: functions return >= 0 or a negative errno; output
 * parameters are written only on success. Nothing here logs above debug.
 */
#ifndef FEDGUARD_AUTH_H
#define FEDGUARD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <fedguard/abi.h>

struct bundle_set;
struct svid_trust;
struct svids;

enum {
	AUTH_TIMEOUT_MS_DEFAULT = 3000, /* a whole exchange, every step included */
	AUTH_ASKERS_MAX_DEFAULT = 16,
	AUTH_ANSWERERS_MAX_DEFAULT = 64,
	AUTH_ANSWERERS_PER_NODE = 8,	/* exchanges at once with one address */
	AUTH_QUEUED_PER_NODE = 64,	/* connections from one address waiting for those */
	AUTH_WORKER_LINGER_MS = 2000,	/* an idle worker waits this long for a job */
	AUTH_SNI_MAX = 96,		/* bytes of auth_sni_name()'s name, NUL included */
	AUTH_WHY_MAX = 256,
	AUTH_PAIRS_MAX = 65536,		/* pairs the engine keeps track of (fg_auth's size) */
	AUTH_OUTCOMES_MAX = 1024,	/* uncollected outcomes kept; older ones dropped */
};

/* --- the identities and policy the engine judges by: a view -------------------- */

/*
 * An immutable snapshot of what the agent knows: identities by SPIFFE ID
 * and number, whether each is a local workload, the node that owns it, and
 * which pairs policy allows in which direction. Built with the add
 * functions, then sealed, then shared by reference.
 */
struct auth_view;

int auth_view_new(struct auth_view **out);

/*
 * An identity: local (a workload of this node, which the engine may
 * present) or remote; node is its owning node's address (IPv4-mapped for
 * v4), NULL when unknown.
 */
int auth_view_add_identity(struct auth_view *v, const char *spiffe_id, __u32 num, bool local,
			   const __u8 node[16]);

/* The same with the number of its trust domain (the tunnel records it in fg_tun_peer). */
int auth_view_add_identity_td(struct auth_view *v, const char *spiffe_id, __u32 num, __u32 td,
			      bool local, const __u8 node[16]);

/*
 * Policy allows connections between local identity local and peer (a
 * number, or FG_ID_ANY) in direction dir (FG_DIR_EGRESS: local initiates),
 * with auth mode auth (enum fg_auth_mode). Adding a pair again keeps the
 * stricter auth mode.
 */
int auth_view_add_pair(struct auth_view *v, __u8 dir, __u32 local, __u32 peer, __u8 auth);

/*
 * Sorts the view for lookups; nothing can be added after. -EEXIST when
 * two identities have the same number or SPIFFE ID, -ENOMEM.
 */
int auth_view_seal(struct auth_view *v);

struct auth_view *auth_view_get(struct auth_view *v);
void auth_view_put(struct auth_view *v);

/* Whether the sealed view allows local and peer in direction dir (auth: the strictest mode). */
bool auth_view_allows(const struct auth_view *v, __u8 dir, __u32 local, __u32 peer, __u8 *auth);

/* --- trust --------------------------------------------------------------------- */

/* An immutable copy of the authorities of a bundle set, for svid_verify(). */
struct auth_trust;

int auth_trust_new(const struct bundle_set *set, struct auth_trust **out);
struct auth_trust *auth_trust_get(struct auth_trust *t);
void auth_trust_put(struct auth_trust *t);

/* The authorities, for svid_verify(); valid as long as a reference to t is held. */
const struct svid_trust *auth_trust_svid(const struct auth_trust *t);

/* --- the engine ------------------------------------------------------------------ */

/* One pair to authenticate, as the asker sees it. */
struct auth_ask {
	__u32 local;
	__u32 peer;
	__u8 node[16]; /* the peer's node */
	__u8 dir;      /* FG_DIR_EGRESS: local initiates; FG_DIR_INGRESS: peer does */
};

enum auth_role {
	AUTH_ASKER = 1,
	AUTH_ANSWERER = 2,
};

/* What one exchange came to, for the caller's log. */
struct auth_outcome {
	struct fg_auth_key key; /* {this side's identity, the other's, the other's node} */
	__u8 role;		/* enum auth_role */
	__u8 dir;		/* of the request */
	bool ok;		/* authenticated, and fg_auth written */
	bool resumed;		/* a resumed TLS session */
	__u64 expiry_ns;	/* CLOCK_MONOTONIC, when ok */
	__u32 elapsed_us;	/* from queueing (asker) or accept (answerer) to the end */
	char why[AUTH_WHY_MAX]; /* the cause, when not ok */
};

/* Where authenticated pairs go; called with the engine's lock held, from any thread. */
struct auth_ops {
	int (*write)(void *ctx, const struct fg_auth_key *key, __u64 expiry_ns);
};

struct auth_config {
	struct sockaddr_storage listen; /* --auth-listen; its port is every peer's */
	socklen_t listen_len;
	__u8 node[16];			/* this node's address: askers connect from it */
	unsigned int timeout_ms;	/* 0: AUTH_TIMEOUT_MS_DEFAULT */
	unsigned int askers_max;	/* 0: AUTH_ASKERS_MAX_DEFAULT */
	unsigned int answerers_max;	/* 0: AUTH_ANSWERERS_MAX_DEFAULT */
	const struct auth_ops *ops;
	void *ops_ctx;
};

struct auth_engine;

/* "ADDR:PORT" or "[ADDR]:PORT" (IPv4 or IPv6, port 1 to 65535): 0 or -EINVAL. */
int auth_parse_listen(const char *s, struct sockaddr_storage *out, socklen_t *len);

/*
 * The TLS server name that asks for id: "<64 hex digits of SHA-256(id) in
 * two labels>.fedguard.invalid". buf holds AUTH_SNI_MAX bytes.
 */
void auth_sni_name(const char *id, char *buf);

/* An engine that serves nothing yet: -EINVAL (bad config), -ENOMEM, why says which. */
int auth_engine_new(const struct auth_config *cfg, struct svids *svids, struct auth_engine **out,
		    char *why, size_t why_len);

/* Binds and listens on cfg->listen and starts the accepting thread: 0 or -errno, why. */
int auth_engine_start(struct auth_engine *e, char *why, size_t why_len);

/* Stops every thread (in-flight exchanges are cut short) and frees the engine. */
void auth_engine_free(struct auth_engine *e);

/* The port the engine listens on (after auth_engine_start()); peers' port too. */
__u16 auth_engine_port(const struct auth_engine *e);

/* Replaces the view (taking the caller's reference). */
void auth_engine_set_view(struct auth_engine *e, struct auth_view *v);

/*
 * Replaces the trust (taking the caller's reference). An exchange that
 * validated with the old trust writes nothing after this returns.
 */
void auth_engine_set_trust(struct auth_engine *e, struct auth_trust *t);

/*
 * Queues a handshake: 0; -EALREADY when one for the pair is in flight or
 * its authentication is valid for long enough; -EAGAIN when the pair
 * failed recently and waits before the next attempt; -ENOSPC, -ESHUTDOWN.
 */
int auth_engine_ask(struct auth_engine *e, const struct auth_ask *ask);

/*
 * Pre-authentication: asks for every pair the view wants authenticated
 * from this side (egress, auth mode mTLS, the peer's node known) that
 * holds no valid authentication. Returns how many were queued.
 */
int auth_engine_preauth(struct auth_engine *e);

/*
 * Timed work at now (CLOCK_MONOTONIC ns): asks again for the pairs this
 * side asked for once two thirds of their authentication's lifetime have
 * passed, and forgets expired pairs. Returns when to call it next (0:
 * nothing pending).
 */
__u64 auth_engine_tick(struct auth_engine *e, __u64 now_ns);

/*
 * Forgets the pairs (and their TLS sessions) for which match() says true,
 * or all of them when match is NULL, so that the next ask is a full
 * handshake. The fg_auth entries are the caller's to delete. Returns how
 * many pairs were forgotten.
 */
int auth_engine_forget(struct auth_engine *e, bool (*match)(const struct fg_auth_key *k, void *arg),
		       void *arg);

/* Readable (an eventfd) when outcomes wait to be collected. */
int auth_engine_fd(const struct auth_engine *e);

/* Moves up to max uncollected outcomes to out, oldest first; returns how many. */
size_t auth_engine_collect(struct auth_engine *e, struct auth_outcome *out, size_t max);

/* CLOCK_MONOTONIC in ns: the clock of fg_auth expiries and of auth_engine_tick(). */
__u64 auth_now_ns(void);

/* Exchanges in flight right now (askers and answerers). */
unsigned int auth_engine_busy(struct auth_engine *e);

#endif /* FEDGUARD_AUTH_H */
