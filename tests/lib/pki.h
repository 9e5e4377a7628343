/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Certificates for tests, made with OpenSSL on the spot: a root, an
 * intermediate, a leaf, each with the extensions, validity and SANs a test
 * chooses, including wrong ones. Independent of fedguard-ca's own issuing
 * code, so that the validator is never tested only against its sibling.
 * Keys are ECDSA P-256; signatures SHA-256.
 */
#ifndef FG_TEST_PKI_H
#define FG_TEST_PKI_H

#include <stdbool.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/*
 * What goes into one certificate. Extension values are in OpenSSL's
 * configuration syntax (x509v3_config(5)), e.g. "critical,CA:TRUE" or
 * "URI:spiffe://example.org/web"; NULL (or "" for san) leaves the extension
 * out.
 */
struct pki_opts {
	const char *cn;	 /* subject commonName (with O=fedguard-test); NULL: empty subject */
	char san[4608];	 /* subjectAltName */
	const char *bc;	 /* basicConstraints */
	const char *ku;	 /* keyUsage */
	const char *eku; /* extendedKeyUsage */
	bool no_key_ids; /* leave out subjectKeyIdentifier and authorityKeyIdentifier */
	long not_before; /* seconds relative to the now given to pki_make() */
	long not_after;
};

/* A certificate and its private key, both owned. */
struct pki_cert {
	X509 *cert;
	EVP_PKEY *key;
};

/* A root CA of trust domain td: CA:TRUE, keyCertSign+cRLSign, URI SAN spiffe://td. */
struct pki_opts pki_root_opts(const char *td);

/* An intermediate (signing) CA of trust domain td: as a root, with pathlen:0. */
struct pki_opts pki_inter_opts(const char *td);

/*
 * A leaf SVID of SPIFFE ID id: CA:FALSE, critical digitalSignature,
 * serverAuth+clientAuth, one URI SAN.
 */
struct pki_opts pki_leaf_opts(const char *id);

/*
 * Makes a certificate with a new key, signed by issuer (NULL: self-signed).
 * Returns 0 or a negative errno; out is written only on success.
 */
int pki_make(const struct pki_opts *opts, const struct pki_cert *issuer, time_t now,
	     struct pki_cert *out);

void pki_free(struct pki_cert *c);

/* A new stack of the given certificates (NULL-terminated), each referenced. */
STACK_OF(X509) *pki_stack(X509 *first, ...);

/* A copy of cert whose signature has one bit flipped; NULL on failure. */
X509 *pki_tamper(X509 *cert);

/* Writes the certificates of chain to path as PEM: 0 or -errno. */
int pki_write_chain(const char *path, STACK_OF(X509) *chain);

/* Writes key to path as unencrypted PKCS#8 PEM: 0 or -errno. */
int pki_write_key(const char *path, EVP_PKEY *key);

#endif /* FG_TEST_PKI_H */
