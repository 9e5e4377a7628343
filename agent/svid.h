/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one X.509-SVID validator of fedguard, for `fedguard-ca verify` and the
 * agent's mTLS handshakes alike, after the SPIFFE X509-SVID specification
 * (docs/identity.md, "What the validator checks").
 *
 * A chain is judged against the X.509 authorities of the leaf's own trust
 * domain only, the one named in its URI SAN: another trust domain's
 * authorities never vouch for it, and the certificates the peer sends after
 * its leaf are untrusted intermediates, never anchors.
 *
 * Conventions: functions return >= 0 or a negative errno; output parameters
 * are written only on success, why only on failure (and only when why_len is
 * not 0; a longer message is cut short). Nothing here logs. Nothing keeps
 * state: concurrent calls are safe as long as the trust they read does not
 * change under them.
 */
#ifndef FEDGUARD_SVID_H
#define FEDGUARD_SVID_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "spiffe.h"

enum {
	SVID_WHY_MAX = 1024, /* why buffer size for every message with names of usual length */
	SVID_DEPTH_MAX = 8,  /* certificates between the leaf and the anchor, at most */
};

/*
 * Why a chain is not a valid X.509-SVID. 0 is acceptance; svid_verify()
 * returns one of the others for a rejection. The names in comments are
 * svid_reason_name()'s, as `fedguard-ca verify -j` prints them.
 */
enum svid_reason {
	SVID_OK = 0,
	SVID_EMPTY_CHAIN,	     /* "empty-chain": no certificate at all */
	SVID_NO_URI_SAN,	     /* "no-uri-san" */
	SVID_MANY_URI_SANS,	     /* "many-uri-sans": more than one URI SAN */
	SVID_BAD_SPIFFE_ID,	     /* "bad-spiffe-id": the URI SAN is not a SPIFFE ID */
	SVID_NO_PATH,		     /* "no-path": the ID of a trust domain, not a workload */
	SVID_LEAF_IS_CA,	     /* "leaf-is-ca": basicConstraints CA:TRUE */
	SVID_NO_KEY_USAGE,	     /* "no-key-usage" */
	SVID_KEY_USAGE_NOT_CRITICAL, /* "key-usage-not-critical" */
	SVID_NO_DIGITAL_SIGNATURE,   /* "no-digital-signature" */
	SVID_LEAF_CAN_SIGN,	     /* "leaf-can-sign": keyCertSign or cRLSign */
	SVID_NOT_YET_VALID,	     /* "not-yet-valid": the leaf's notBefore is after now */
	SVID_EXPIRED,		     /* "expired": the leaf's notAfter is not after now */
	SVID_NO_BUNDLE,		     /* "no-bundle": no authorities for the leaf's trust domain */
	SVID_SIGNER_NOT_CA,	     /* "signer-not-ca": a certificate after the leaf is no CA */
	SVID_UNTRUSTED,		     /* "untrusted": no path to the trust domain's authorities */
	SVID_BAD_SIGNATURE,	     /* "bad-signature" */
	SVID_SIGNER_EXPIRED,	     /* "signer-expired": a signer is expired or not yet valid */
	SVID_PATH_INVALID,	     /* "path-invalid": any other path validation failure */
	SVID_ID_MISMATCH,	     /* "id-mismatch": valid, but not the expected SPIFFE ID */
	SVID_REASON_MAX,
};

/*
 * The X.509 authorities of one trust domain, as its SPIFFE bundle lists
 * them. Both members are borrowed: svid_verify() neither keeps nor frees
 * them. roots may be NULL or empty (a trust domain without X.509
 * authorities, or a revoked one): then nothing of td validates.
 */
struct svid_td_roots {
	const char *td;		/* bare trust domain name, "example.org" */
	STACK_OF(X509) *roots; /* its authorities; each one is a trust anchor */
};

/*
 * What a validator trusts: one entry per trust domain it knows, in any
 * order. A trust domain name appears at most once (svid_verify() fails with
 * -EINVAL when the leaf's trust domain is listed twice). To fill it from a
 * bundle_set: one entry per bundle_set_at(i), {b->td, b->authorities}.
 */
struct svid_trust {
	const struct svid_td_roots *domains;
	size_t n;
};

/* What an accepted SVID says. */
struct svid_result {
	char spiffe_id[SPIFFE_ID_MAX + 1];
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	/*
	 * The earliest notAfter over the leaf and every certificate of the path
	 * that validated it, the anchor included: when the authentication
	 * expires.
	 */
	time_t not_after;
};

/* A fixed description of a reason, or "unknown SVID rejection reason". */
const char *svid_strreason(enum svid_reason reason);

/* The short name of a reason ("untrusted", see enum svid_reason), or "unknown". */
const char *svid_reason_name(enum svid_reason reason);

/*
 * Validates chain (the peer's leaf first, then the intermediates it sent, in
 * any order) as an X.509-SVID at time now:
 *
 * 1. the leaf has exactly one URI SAN, a valid SPIFFE ID with a path;
 *    basicConstraints, if present, says CA:FALSE; keyUsage is present,
 *    critical, has digitalSignature and neither keyCertSign nor cRLSign;
 *    notBefore <= now < notAfter;
 * 2. trust has authorities for the leaf's trust domain;
 * 3. every other certificate of chain is a CA (CA:TRUE and keyCertSign);
 * 4. RFC 5280 path validation at now, with the X509_STRICT checks, from the
 *    leaf through chain's certificates (untrusted) to one of that trust
 *    domain's authorities (any of them is an anchor, self-signed or not);
 * 5. when expected_id is not NULL, the leaf's SPIFFE ID is exactly it.
 *
 * Returns SVID_OK and fills *out (when out is not NULL); a positive enum
 * svid_reason for a rejection, with a message in why that names the
 * certificate and the cause; or -EINVAL (chain is NULL, expected_id is no
 * valid SPIFFE ID, the trust domain is listed twice in trust) or -ENOMEM,
 * with a message in why.
 */
int svid_verify(STACK_OF(X509) *chain, const struct svid_trust *trust, const char *expected_id,
		time_t now, struct svid_result *out, char *why, size_t why_len);

/*
 * The SPIFFE ID of cert's single URI SAN, as a NUL-terminated string in buf.
 * Returns 0, or -ENOENT (no URI SAN), -ENOTUNIQ (more than one), -EINVAL
 * (not a valid SPIFFE ID, or a NUL inside), -ENOSPC (buf is too small: a
 * buffer of SPIFFE_ID_MAX + 1 bytes always fits), -ENOMEM. buf is written
 * only on success. It checks the ID only, not that cert is a leaf: use
 * svid_verify() to authenticate.
 */
int svid_cert_spiffe_id(X509 *cert, char *buf, size_t len);

/*
 * Reads every certificate of a PEM file, in file order; other PEM blocks
 * (keys) are skipped. Returns 0 and sets *out (the caller frees it with
 * sk_X509_pop_free()), or -errno of reading, -ENODATA (no certificate),
 * -EBADMSG (a certificate that does not decode), -ENOMEM, with a message in
 * why that names the file.
 */
int svid_load_chain(const char *path, STACK_OF(X509) **out, char *why, size_t why_len);

/*
 * Reads the first private key of a PEM file (PKCS#8 or traditional, not
 * encrypted); other PEM blocks are skipped. Returns 0 and sets *out, or
 * -errno of reading, -ENODATA (no key), -EBADMSG (not PEM, an encrypted key,
 * a key that does not decode), with a message in why that names the file.
 */
int svid_load_key(const char *path, EVP_PKEY **out, char *why, size_t why_len);

#endif /* FEDGUARD_SVID_H */
