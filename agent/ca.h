/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Issuing X.509-SVIDs and their signing certificates, for fedguard-ca and
 * (later) the agent's own minting of workload SVIDs. Keys are ECDSA P-256,
 * signatures ECDSA with SHA-256, serial numbers 127 random bits. What each
 * kind of certificate holds is in docs/identity.md ("Certificates").
 *
 * A trust domain vouches only for its own IDs: an issuer signs only
 * certificates whose SPIFFE ID is in the trust domain of its own
 * (the trust domain of its URI SAN).
 *
 * Conventions: functions return 0 or a negative errno; output parameters
 * are written only on success, why only on failure (and only when why_len
 * is not 0). Nothing here logs or touches files.
 */
#ifndef FEDGUARD_CA_H
#define FEDGUARD_CA_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

enum ca_kind {
	/*
	 * A trust domain's root: self-signed, URI SAN spiffe://TD,
	 * basicConstraints critical CA:TRUE, keyUsage critical
	 * keyCertSign+cRLSign, subjectKeyIdentifier.
	 */
	CA_ROOT,
	/*
	 * A node's signing certificate: an intermediate CA, URI SAN
	 * spiffe://TD (a signing certificate's SPIFFE ID has no path),
	 * CA:TRUE with pathlen:0, keyCertSign+cRLSign, both key identifiers.
	 */
	CA_NODE,
	/*
	 * An X.509-SVID: URI SAN the workload's ID (with a path),
	 * basicConstraints critical CA:FALSE, keyUsage critical
	 * digitalSignature+keyAgreement, extKeyUsage serverAuth+clientAuth,
	 * both key identifiers.
	 */
	CA_LEAF,
};

struct ca_request {
	enum ca_kind kind;
	const char *spiffe_id;	 /* "spiffe://TD" for CA_ROOT and CA_NODE */
	const char *common_name; /* subject CN, cut at 64 bytes; the subject is
				    O=fedguard, OU=TD (if it fits 64 bytes), CN */
	time_t not_before;
	time_t not_after;
};

/* A new ECDSA P-256 key: 0 or -ENOMEM. */
int ca_key_new(EVP_PKEY **out);

/*
 * Issues a certificate of req for key's public half, signed by issuer and
 * issuer_key, or self-signed by key when issuer is NULL (CA_ROOT only, and
 * a root must be self-signed). Refuses with -EINVAL and a message in why:
 * an invalid SPIFFE ID, a CA's ID with a path or a leaf's without, an ID
 * outside the issuer's trust domain, an issuer that is not a CA or has no
 * SPIFFE ID, an issuer_key that is not the issuer's, not_after <= not_before;
 * -ERANGE when not_after is later than the issuer's notAfter. Also -ENOMEM.
 */
int ca_issue(const struct ca_request *req, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
	     X509 **out, char *why, size_t why_len);

/*
 * The trust domain of a signing certificate: its SPIFFE ID must be a bare
 * trust domain ID, spiffe://TD. td holds SPIFFE_TRUST_DOMAIN_MAX + 1 bytes.
 * 0, or -EINVAL with a message in why.
 */
int ca_cert_trust_domain(X509 *cert, char *td, char *why, size_t why_len);

/* cert's notAfter as a time_t: 0, or -EINVAL when it does not decode. */
int ca_cert_not_after(X509 *cert, time_t *out);

#endif /* FEDGUARD_CA_H */
