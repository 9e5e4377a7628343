/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The mesh state store client: etcd v3 through its JSON gateway (etcd
 * 3.4's /v3/... endpoints), over libcurl, with json-c. Keys are strings
 * without NUL; values are any bytes. See docs/store.md.
 *
 * A struct store is used from one thread (the agent's main thread); each
 * request is blocking and bounded by a connect timeout and a total timeout,
 * and tries the configured URLs in turn, starting from the last one that
 * answered. A watch runs on its own thread with its own connection and
 * hands its events to the owner's thread through an eventfd and a queue.
 *
 * Errors: -ECONNREFUSED or -ETIMEDOUT (and other connection errnos) when no
 * URL answered; -EIO for an error answer of the gateway, whose message
 * store_last_error() returns, or -EAGAIN when that answer says the request
 * may pass later (HTTP 5xx, gRPC unavailable, deadline exceeded, aborted,
 * cancelled: an etcd starting, stopping or without a leader); -EBADMSG for an answer that is not the JSON
 * expected; -EKEYREJECTED when the server's SVID is refused (the reason in
 * store_last_error()); -ENOENT for a missing key or an expired lease. Details go to
 * the debug log only. Output parameters are written only on success.
 */
#ifndef FEDGUARD_STORE_H
#define FEDGUARD_STORE_H

#include <stddef.h>
#include <stdint.h>

enum {
	STORE_CONNECT_TIMEOUT_MS = 2000,
	STORE_TIMEOUT_MS = 5000,
	STORE_URLS_MAX = 8,
	STORE_PAGE = 500,		/* keys per range request of store_list() */
	STORE_BODY_MAX = 64 << 20,	/* largest answer accepted */
	STORE_WATCH_BACKOFF_MIN_MS = 100,
	STORE_WATCH_BACKOFF_MAX_MS = 5000,
	STORE_WATCH_QUEUE_MAX = 65536,	/* events waiting for drain() */
};

struct svid_trust;

/*
 * The client credential and the server's trust of one https connection, as
 * store_tls.take hands them out: PEM text of the client's certificate chain
 * (leaf first) and key, and the authorities the server's SVID must chain
 * to. Valid until store_tls.put gets them back.
 */
struct store_cred {
	const char *cert_pem;
	size_t cert_len;
	const char *key_pem;
	size_t key_len;
	const struct svid_trust *trust;
	void *handle;			/* the provider's */
};

/*
 * For https URLs, one of two ways. PEM files (tests, tools): the client's
 * certificate and key, and the CA roots the server's certificate must chain
 * to (host names are checked then). Or a provider (the agent, whose node
 * SVID lives in memory and is renewed): take() is called before each
 * connection on whatever thread makes it, put() after; the server must
 * present an X.509-SVID that trust vouches for, with exactly server_id
 * (NULL: any ID of the trust), checked by svid_verify() (curl_svid.h).
 */
struct store_tls {
	const char *cert_file;
	const char *key_file;
	const char *ca_file;
	int (*take)(void *ctx, struct store_cred *out);
	void (*put)(void *ctx, struct store_cred *cred);
	void *ctx;
	const char *server_id;
};

struct store;
struct store_watch;

/*
 * urls: "http://127.0.0.1:2379[,http://...]", at most STORE_URLS_MAX.
 * tls is required for https URLs (NULL for http). Nothing is contacted yet.
 * -EINVAL for a malformed list, -ENOMEM.
 */
int store_open(const char *urls, const struct store_tls *tls, struct store **out);
void store_close(struct store *s);

/* Bounds of every later request (and of watch connections), in ms. */
void store_set_timeouts(struct store *s, long connect_ms, long total_ms);

/* The gateway's message of the last -EIO, or "" */
const char *store_last_error(const struct store *s);

/* lease_id 0: no lease. */
int store_put(struct store *s, const char *key, const void *value, size_t len, int64_t lease_id);

/*
 * Puts key only if its mod_revision is still mod_revision (0: only if the
 * key does not exist), in one transaction: 0 when written, -ECANCELED when
 * the key had changed (nothing written).
 */
int store_put_if(struct store *s, const char *key, const void *value, size_t len,
		 int64_t mod_revision);

/* *value is the caller's to free(), NUL-terminated past len. -ENOENT. */
int store_get(struct store *s, const char *key, void **value, size_t *len, int64_t *mod_revision);

/* A non-zero return of the callback ends store_list() with it. */
typedef int (*store_kv_fn)(void *ctx, const char *key, const void *value, size_t len,
			   int64_t mod_revision);

/*
 * Every key that starts with prefix, in key order, from one snapshot whose
 * revision goes to *revision (watch from *revision + 1 to miss nothing).
 */
int store_list(struct store *s, const char *prefix, store_kv_fn fn, void *ctx, int64_t *revision);

/* Both return the number of keys deleted. */
int store_delete(struct store *s, const char *key);
int store_delete_prefix(struct store *s, const char *prefix);

int store_lease_grant(struct store *s, int64_t ttl_seconds, int64_t *lease_id);
/* -ENOENT when the lease has expired or was revoked. */
int store_lease_keepalive(struct store *s, int64_t lease_id);
int store_lease_revoke(struct store *s, int64_t lease_id);

enum store_event_type {
	STORE_EVENT_PUT,
	STORE_EVENT_DELETE,
	/*
	 * The events from the watch's revision are gone (compacted at
	 * mod_revision). The watch has ended: list again, stop this watch and
	 * start one from the list's revision + 1.
	 */
	STORE_EVENT_RELIST,
	/* The connection was lost (value: NULL, len: 0); the watch retries. */
	STORE_EVENT_DISCONNECTED,
	/* The watch is (again) established. */
	STORE_EVENT_CONNECTED,
};

struct store_event {
	enum store_event_type type;
	const char *key;	/* PUT, DELETE */
	const void *value;	/* PUT */
	size_t len;
	int64_t mod_revision;	/* PUT, DELETE; RELIST: the compact revision */
};

typedef void (*store_watch_fn)(void *ctx, const struct store_event *ev);

/*
 * Watches every key under prefix from from_revision (0: from now) on a
 * worker thread, reconnecting with a backoff from STORE_WATCH_BACKOFF_MIN_MS
 * to STORE_WATCH_BACKOFF_MAX_MS and resuming after the last revision seen.
 * fn is called only from store_watch_drain(), on the caller's thread. The
 * watch uses s's URLs, TLS and timeouts; s must outlive it.
 */
int store_watch_start(struct store *s, const char *prefix, int64_t from_revision,
		      store_watch_fn fn, void *ctx, struct store_watch **out);

/* Readable (an eventfd) while events wait for store_watch_drain(). */
int store_watch_fd(const struct store_watch *w);

/* Delivers the waiting events; returns how many. */
int store_watch_drain(struct store_watch *w);

/* Stops the thread (within about a second) and frees; undelivered events are dropped. */
void store_watch_stop(struct store_watch *w);

#endif /* FEDGUARD_STORE_H */
