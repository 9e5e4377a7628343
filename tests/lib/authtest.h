/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the identity and peer authentication tests share: a trust domain's
 * CAs made on the spot with the project's issuing code (agent/ca.c), its
 * bundle, its files for fedguardd, and forged SVIDs.
 */
#ifndef FG_TEST_AUTHTEST_H
#define FG_TEST_AUTHTEST_H

#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "spiffe.h"

struct bundle_set;

/* A trust domain's root and one node signing CA. */
struct at_ca {
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	X509 *root;
	EVP_PKEY *root_key;
	X509 *node;		/* the node CA */
	EVP_PKEY *node_key;
	STACK_OF(X509) *node_chain; /* node, as node-ca.pem holds it */
};

/*
 * Makes the root (valid from now - 1 day for 30 days) and a node CA valid
 * from now - 1 day until now + node_secs. 0 or -errno.
 */
int at_ca_make(const char *td, time_t now, long node_secs, struct at_ca *out);
void at_ca_free(struct at_ca *ca);

/* Adds (or replaces) ca's trust domain's bundle, its root as the one authority. */
int at_bundle_add(struct bundle_set *set, const struct at_ca *ca);

/*
 * Writes <dir>/node-ca.pem, <dir>/node-ca.key and <dir>/bundle.json (the
 * SPIFFE bundle of the root). 0 or -errno.
 */
int at_ca_write(const struct at_ca *ca, const char *dir);

/*
 * A leaf for id signed by issuer/issuer_key whatever their trust domain
 * (a forgery when they differ), valid from now - 60 for secs seconds.
 */
int at_forge_leaf(const char *id, X509 *issuer, EVP_PKEY *issuer_key, time_t now, long secs,
		  X509 **cert, EVP_PKEY **key);

#endif /* FG_TEST_AUTHTEST_H */
