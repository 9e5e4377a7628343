/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fetching a foreign trust domain's bundle from its bundle endpoint, with
 * the `https_spiffe` profile of the SPIFFE Trust Domain and Bundle
 * specification (docs/identity.md, "Bundle endpoint"), and the policy of
 * when to fetch again.
 *
 * The endpoint is authenticated by its X.509-SVID, validated by
 * svid_verify() against the bundle of the trust domain in force, and must
 * be exactly the SPIFFE ID the operator configured for it; DNS names and
 * the system's CA store play no part. A fetched bundle replaces the one in
 * force only if it is at least as new by spiffe_sequence.
 *
 * bep_fetch() blocks its caller for up to timeout_ms: call it from a
 * worker thread, never from the agent's main loop. It is safe to call from
 * several threads at once.
 *
 * Conventions: functions return 0 or a negative errno; output parameters
 * are written only on success, why only on failure. Nothing here logs.
 */
#ifndef FEDGUARD_BUNDLE_FETCH_H
#define FEDGUARD_BUNDLE_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct bundle;

enum {
	BEP_FETCH_WHY_MAX = 1024,
	BEP_REFRESH_DEFAULT = 300,   /* seconds, when the bundle has no spiffe_refresh_hint */
	BEP_REFRESH_MIN = 30,	     /* a shorter hint is taken as this */
	BEP_REFRESH_MAX = 86400,     /* a longer hint is taken as this */
	BEP_KICK_INTERVAL = 30,	     /* seconds between fetches for unknown keys, per trust domain */
	BEP_KICK_TDS_MAX = 1024,     /* trust domains a limiter keeps track of */
};

/*
 * Fetches the bundle of trust domain td from url (https only) and parses it
 * with bundle_parse(). Refused, with the cause in why:
 *
 * - -EINVAL: td is not current's trust domain, expected_id is no SPIFFE ID
 *   of td, url is not https, max_bytes or timeout_ms is 0;
 * - -EKEYREJECTED: current has no authorities (a revoked trust domain
 *   cannot authenticate its endpoint: the operator must bootstrap it
 *   again), or the endpoint's SVID is not valid for current's authorities
 *   or is not expected_id (the validator's reason in why);
 * - -ETIMEDOUT: the whole transfer took longer than timeout_ms;
 * - -EFBIG: the body is longer than max_bytes (the transfer is aborted
 *   there, not read to its end);
 * - -EBADMSG: a status other than 200, or a body bundle_parse() refuses;
 * - -ESTALE: the bundle's spiffe_sequence is lower than current's; or equal
 *   to it with different content (a publisher must bump the sequence with
 *   every change, so a second document under one number is a replay or a
 *   mistake); or absent while current has one;
 * - -ECONNREFUSED, -EHOSTUNREACH, -EPROTO, -EIO: connecting, TLS, HTTP;
 * - -ENOMEM.
 *
 * A bundle with an empty key set is accepted: it revokes td (*out has
 * revoked set), and the caller must act on it. *out is the caller's.
 */
int bep_fetch(const char *url, const char *expected_id, const struct bundle *current,
	      const char *td, size_t max_bytes, unsigned int timeout_ms, struct bundle **out,
	      char *why, size_t why_len);

/*
 * When to fetch b's trust domain again after a fetch at now: now plus
 * b's spiffe_refresh_hint (BEP_REFRESH_DEFAULT without one), kept between
 * BEP_REFRESH_MIN and BEP_REFRESH_MAX.
 */
time_t bep_next_refresh(const struct bundle *b, time_t now);

/*
 * Limits fetches made at once because a peer's SVID was signed by a key
 * not yet known, to one per interval seconds per trust domain, so that
 * peers presenting unknown keys cannot make the agent hammer an endpoint.
 * Not locked: one thread uses a limiter.
 */
struct bep_kick;

/* interval 0: BEP_KICK_INTERVAL. -ENOMEM. */
int bep_kick_new(unsigned int interval, struct bep_kick **out);
void bep_kick_free(struct bep_kick *k);

/*
 * Whether td may be fetched at now for an unknown key; if so, records now
 * as td's last such fetch. False while BEP_KICK_TDS_MAX other trust
 * domains are tracked (the regular refresh still runs).
 */
bool bep_kick_allow(struct bep_kick *k, const char *td, time_t now);

/* Forgets td (a trust domain removed from the federation). */
void bep_kick_forget(struct bep_kick *k, const char *td);

#endif /* FEDGUARD_BUNDLE_FETCH_H */
