/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The insides of the peer authentication engine, shared by its three
 * files: auth.c (threads, queues, pairs, outcomes), auth_view.c (views and
 * trust) and auth_tls.c (one exchange on the wire). Not an API.
 *
 * Locking: one mutex, e->lock, guards everything in struct auth_engine
 * below it; exchanges run without it and take it to look at the pairs, to
 * take references to the view and the trust, and to record their result.
 */
#ifndef FEDGUARD_AUTH_INT_H
#define FEDGUARD_AUTH_INT_H

#include <pthread.h>
#include <stdbool.h>

#include <openssl/ssl.h>

#include "auth.h"
#include "listener.h"
#include "svid.h"
#include "svids.h"

/* --- views ------------------------------------------------------------------------- */

struct view_id {
	char *spiffe_id;
	__u32 num;
	__u32 td;		/* its trust domain's number, 0 when not given */
	bool local;
	bool has_node;
	__u8 node[16];
	char sni[AUTH_SNI_MAX]; /* auth_sni_name(spiffe_id), for local identities */
};

struct view_pair {
	__u8 dir;
	__u8 auth;
	__u32 local;
	__u32 peer; /* or FG_ID_ANY */
};

struct auth_view {
	int refs;
	bool sealed;
	struct view_id *ids;
	size_t n, cap;
	struct view_id **by_num;  /* sorted by num */
	struct view_id **by_name; /* sorted by spiffe_id */
	struct view_id **by_sni;  /* the local ones, sorted by sni */
	size_t n_local;
	struct view_pair *pairs;  /* sorted by dir, local, peer */
	size_t n_pairs, cap_pairs;
};

const struct view_id *view_by_num(const struct auth_view *v, __u32 num);
const struct view_id *view_by_name(const struct auth_view *v, const char *spiffe_id);
const struct view_id *view_by_sni(const struct auth_view *v, const char *sni);

struct auth_trust {
	int refs;
	struct svid_td_roots *domains;
	struct svid_trust trust;
};

/* --- the engine ----------------------------------------------------------------------- */

/* What the engine remembers of one pair, keyed like fg_auth. */
struct auth_pair {
	struct fg_auth_key key;
	bool used;		/* the slot holds a pair */
	bool in_flight;		/* an ask of ours is queued or running */
	__u8 role;		/* enum auth_role of the valid authentication; 0: none */
	__u8 dir;		/* of that authentication's request */
	__u32 failures;		/* asks that failed in a row */
	__u64 expiry_ns;	/* of the authentication (CLOCK_MONOTONIC) */
	__u64 renew_ns;		/* when to ask again: 2/3 of its lifetime */
	__u64 retry_ns;		/* no ask before this, after a failure */
	SSL_SESSION *session;	/* to resume, as asker */
	__u64 session_cred;	/* serial of our SVID in that session */
};

/* Open addressing, linear probing; never more than half full. */
struct auth_pairs {
	struct auth_pair *slots;
	size_t cap, n;
};

struct worker;

struct auth_job {
	struct auth_job *next;		/* in a pool's queue or the active list */
	__u8 role;			/* enum auth_role */
	struct auth_ask ask;		/* asker */
	int fd;				/* the connection; -1 before it exists */
	__u8 from[16];			/* answerer: the asker's address, as a node */
	__u64 start_ns;
};

struct auth_pool {
	struct auth_job *head, *tail;
	unsigned int queued, running, max;
	unsigned int idle;		/* running workers waiting for a job */
	pthread_cond_t work;		/* a job was queued (CLOCK_MONOTONIC) */
	__u8 role;
};

struct auth_engine {
	struct auth_config cfg;
	struct svids *svids;
	SSL_CTX *client_ctx;
	SSL_CTX *server_ctx;
	struct listener listen;		/* its port is every node's: the one asked at */
	int event_fd;			/* eventfd: outcomes to collect */

	pthread_mutex_t lock;
	pthread_cond_t idle;		/* a worker exited */
	bool stopping;
	struct auth_view *view;
	struct auth_trust *trust;
	__u64 trust_gen;		/* bumped by every set_trust */
	struct auth_pairs pairs;
	struct auth_pool askers, answerers;
	struct auth_job *active;	/* jobs being run */
	struct worker *exited;		/* workers done, to be joined (auth.c) */
	struct auth_outcome *outcomes;	/* a ring of AUTH_OUTCOMES_MAX */
	size_t out_head, out_n;
};

/* What an exchange established, to be recorded by auth_record(). */
struct auth_result {
	struct fg_auth_key key;
	__u8 role;
	__u8 dir;
	bool ok;
	bool resumed;
	__u64 trust_gen;	/* of the trust it validated with */
	time_t not_after;	/* earliest notAfter of both chains */
	__u64 start_ns;
	SSL_SESSION *session;	/* asker: a session to keep (taken), or NULL */
	__u64 session_cred;
	char why[AUTH_WHY_MAX];
};

/*
 * Records an exchange's result: writes fg_auth through ops when it is
 * still valid (same trust, the current view still allows the pair),
 * updates the pair, queues the outcome. Returns whether fg_auth was
 * written. Takes the lock.
 */
bool auth_record(struct auth_engine *e, struct auth_result *res);

/* References to the current view and trust, and the trust's generation. */
void auth_snapshot(struct auth_engine *e, struct auth_view **view, struct auth_trust **trust,
		   __u64 *trust_gen);

/* The asker's cached session of key made with our SVID serial, referenced, or NULL. */
SSL_SESSION *auth_session(struct auth_engine *e, const struct fg_auth_key *key, __u64 cred);

/* The TLS contexts of the engine (auth_tls.c): 0 or -ENOMEM. */
int auth_tls_init(struct auth_engine *e, char *why, size_t why_len);
void auth_tls_free(struct auth_engine *e);

/* One exchange, run on a worker thread (auth_tls.c). */
void auth_run_asker(struct auth_engine *e, struct auth_job *job);
void auth_run_answerer(struct auth_engine *e, struct auth_job *job);

/* Publishes the job's connection so that a stopping engine can shut it down. */
void auth_job_set_fd(struct auth_engine *e, struct auth_job *job, int fd);

#endif /* FEDGUARD_AUTH_INT_H */
