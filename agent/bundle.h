/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SPIFFE trust bundles: the X.509 authorities of one trust domain, read
 * from and written as the JWK Set of the SPIFFE Trust Domain and Bundle
 * specification (docs/identity.md, "Trust bundles").
 *
 * A bundle belongs to exactly one trust domain, named by the caller (from
 * configuration, never from the document) and recorded in the bundle.
 * Bundles of different trust domains are never merged: a bundle_set holds
 * one bundle per trust domain name and refuses a bundle under another name
 * than its own, so that one trust domain's keys can never vouch for an
 * identity of another.
 *
 * Parsing is strict where a lax reading could widen trust and lenient where
 * the specification says to ignore (unknown members, unknown `use` or `kty`
 * values). Every rejection is -EINVAL with a message in why that names the
 * trust domain, the place in the document and the cause, e.g.
 * "bundle for 'example.org': keys[2].x5c[0]: not valid base64".
 *
 * Conventions: functions return 0 or a negative errno; output parameters
 * are written only on success, why only on failure (and only when why_len
 * is not 0; a longer message is cut short). Nothing here logs. Nothing
 * here locks: a caller that shares a bundle_set between threads serializes
 * access to it.
 */
#ifndef FEDGUARD_BUNDLE_H
#define FEDGUARD_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "spiffe.h"

enum {
	BUNDLE_SIZE_MAX = 1 << 20, /* bytes of a bundle document or file */
	BUNDLE_DEPTH_MAX = 16,	   /* nesting of JSON objects and arrays */
	BUNDLE_WHY_MAX = 1024,	   /* why buffer size for every message with names of usual length */
};

/*
 * One trust domain's bundle. The bundle owns its certificates; callers read
 * the fields, and may set the sequence, the refresh hint and revoked before
 * bundle_write(). Add authorities with bundle_add_authority() only, which
 * checks them.
 */
struct bundle {
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1]; /* the trust domain, valid by spiffe_td_valid() */
	STACK_OF(X509) *authorities;	      /* CA certificates in document order; never NULL */
	bool has_sequence;		      /* spiffe_sequence was present */
	uint64_t sequence;		      /* spiffe_sequence */
	bool has_refresh_hint;		      /* spiffe_refresh_hint was present */
	uint64_t refresh_hint;		      /* spiffe_refresh_hint, seconds, > 0 */
	/*
	 * The document's `keys` was empty: the trust domain withdrew every
	 * key, and nothing of it validates. (A document whose keys are all of
	 * other uses also yields no authorities, but is not a revocation.)
	 */
	bool revoked;
	unsigned int skipped; /* keys ignored: other `use` (jwt-svid) or unknown `kty` */
};

/* Trust domain name -> bundle, at most one bundle per trust domain. */
struct bundle_set;

/* An empty bundle of trust domain td: -EINVAL if td is not a valid name, -ENOMEM. */
int bundle_new(const char *td, struct bundle **out);

/*
 * Adds cert to b's authorities, taking a reference of its own (the caller
 * keeps its reference). cert must be a CA certificate (basicConstraints
 * CA:TRUE) with an EC (P-256, P-384, P-521) or RSA public key: else -EINVAL
 * with the cause in why. Also -ENOMEM.
 */
int bundle_add_authority(struct bundle *b, X509 *cert, char *why, size_t why_len);

void bundle_free(struct bundle *b);

/*
 * Parses json (len bytes, no NUL needed) as the bundle of trust domain td:
 *
 * - a JSON object (RFC 8259, checked strictly: no duplicate member names,
 *   no NaN, no single quotes, no integer beyond 64 bits), of at most
 *   BUNDLE_SIZE_MAX bytes and BUNDLE_DEPTH_MAX levels of nesting;
 * - `keys` is required and an array of objects; an empty array revokes the
 *   trust domain (revoked = true, no authorities);
 * - each key's `use` is required and a string; keys of other uses than
 *   "x509-svid" are skipped and counted, as are x509-svid keys whose `kty`
 *   is neither "EC" nor "RSA";
 * - an x509-svid key has a string `kty` and an `x5c` of exactly one
 *   standard-base64 DER certificate, which is a CA (CA:TRUE) whose public
 *   key is of type `kty`; `crv`, `x`, `y` (EC) and `n`, `e` (RSA), when
 *   present, must be those of that key, as bundle_write() writes them;
 * - `spiffe_sequence`, when present, is a non-negative integer and
 *   `spiffe_refresh_hint` a positive integer (1.0 and 1e3 are not);
 * - other members, at the top and in keys, are ignored.
 *
 * Returns 0 and sets *out, or -EINVAL (invalid td or document), -EFBIG
 * (more than BUNDLE_SIZE_MAX bytes), -ENOMEM, with the cause in why.
 */
int bundle_parse(const char *td, const char *json, size_t len, struct bundle **out, char *why,
		 size_t why_len);

/* bundle_parse() of a file's content; also -errno when the file cannot be read. */
int bundle_load_file(const char *td, const char *path, struct bundle **out, char *why,
		     size_t why_len);

/*
 * A bundle of trust domain td whose authorities are the certificates of a
 * PEM file, in file order, read by svid_load_chain() (other PEM blocks, such
 * as keys, are skipped), for operators bootstrapping from a CA's ca.pem.
 * Every certificate must pass bundle_add_authority()'s checks. Returns
 * -EINVAL (invalid td, a certificate that is no authority), -ENODATA (no
 * certificate), -EBADMSG (one that does not decode), -ENOMEM or the -errno
 * of reading, with the cause in why.
 */
int bundle_from_pem_file(const char *td, const char *path, struct bundle **out, char *why,
			 size_t why_len);

/*
 * Writes b as a SPIFFE bundle: {"keys": [...], "spiffe_sequence": N,
 * "spiffe_refresh_hint": N} (the last two when set), each authority a key
 * {"use": "x509-svid", "kty", "crv", "x", "y" (EC) or "n", "e" (RSA),
 * "x5c": [base64 DER]}, in that order, pretty-printed, ending in a newline.
 * The same bundle always gives the same bytes. *json_out is the caller's to
 * free(). -EINVAL when b has no authorities and is not revoked (an empty
 * key set would revoke the trust domain: set revoked to mean it), when it
 * is revoked but has authorities, or when its refresh hint is 0; -ENOMEM.
 */
int bundle_write(const struct bundle *b, char **json_out);

/* An empty set: -ENOMEM. */
int bundle_set_new(struct bundle_set **out);

/* Frees the set and every bundle in it. */
void bundle_set_free(struct bundle_set *set);

/*
 * Puts b into the set as the bundle of trust domain td, freeing the bundle
 * it replaces. The set owns b on success only. -EINVAL when td is not
 * b->td (a bundle is never filed under another trust domain), -ENOMEM.
 * Ordering updates by spiffe_sequence is the caller's decision.
 */
int bundle_set_replace(struct bundle_set *set, const char *td, struct bundle *b);

/* Removes and frees td's bundle: -ENOENT when there is none. */
int bundle_set_delete(struct bundle_set *set, const char *td);

/*
 * td's bundle, or NULL. The set keeps ownership: the pointer is valid until
 * td's bundle is replaced or deleted, or the set is freed.
 */
const struct bundle *bundle_set_lookup(const struct bundle_set *set, const char *td);

/* The number of bundles, and the i-th in byte order of trust domain names. */
size_t bundle_set_count(const struct bundle_set *set);
const struct bundle *bundle_set_at(const struct bundle_set *set, size_t i);

static inline void bundle_freep(struct bundle **b)
{
	bundle_free(*b);
}

static inline void bundle_set_freep(struct bundle_set **set)
{
	bundle_set_free(*set);
}

#define _cleanup_bundle_     __attribute__((cleanup(bundle_freep)))
#define _cleanup_bundle_set_ __attribute__((cleanup(bundle_set_freep)))

#endif /* FEDGUARD_BUNDLE_H */
