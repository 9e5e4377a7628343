// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "authtest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "bundle.h"
#include "ca.h"
#include "cleanup.h"
#include "pki.h"
#include "ssl_cleanup.h"

enum {
	DAY = 86400,
};

/* --- certificate authorities ---------------------------------------------------- */

int at_ca_make(const char *td, time_t now, long node_secs, struct at_ca *out)
{
	char id[SPIFFE_ID_MAX + 1], why[512];
	struct ca_request root = { .kind = CA_ROOT, .spiffe_id = id, .common_name = "test root",
				   .not_before = now - DAY, .not_after = now + 30 * DAY };
	struct ca_request node = { .kind = CA_NODE, .spiffe_id = id, .common_name = "test node CA",
				   .not_before = now - DAY, .not_after = now + node_secs };
	struct at_ca ca = {};
	int r;

	snprintf(id, sizeof(id), "spiffe://%s", td);
	snprintf(ca.td, sizeof(ca.td), "%s", td);
	r = ca_key_new(&ca.root_key);
	if (!r)
		r = ca_issue(&root, ca.root_key, NULL, NULL, &ca.root, why, sizeof(why));
	if (!r)
		r = ca_key_new(&ca.node_key);
	if (!r)
		r = ca_issue(&node, ca.node_key, ca.root, ca.root_key, &ca.node, why, sizeof(why));
	if (!r) {
		ca.node_chain = sk_X509_new_null();
		if (!ca.node_chain || !X509_up_ref(ca.node) || !sk_X509_push(ca.node_chain, ca.node))
			r = -ENOMEM;
	}
	if (r) {
		fprintf(stderr, "CA of '%s': %s\n", td, why);
		at_ca_free(&ca);
		return r;
	}
	*out = ca;
	return 0;
}

void at_ca_free(struct at_ca *ca)
{
	X509_free(ca->root);
	EVP_PKEY_free(ca->root_key);
	X509_free(ca->node);
	EVP_PKEY_free(ca->node_key);
	sk_X509_pop_free(ca->node_chain, X509_free);
	memset(ca, 0, sizeof(*ca));
}

static int make_bundle(const struct at_ca *ca, struct bundle **out)
{
	_cleanup_bundle_ struct bundle *b = NULL;
	char why[BUNDLE_WHY_MAX];
	int r = bundle_new(ca->td, &b);

	if (!r)
		r = bundle_add_authority(b, ca->root, why, sizeof(why));
	if (r)
		return r;
	*out = take_ptr(b);
	return 0;
}

int at_bundle_add(struct bundle_set *set, const struct at_ca *ca)
{
	struct bundle *b;
	int r = make_bundle(ca, &b);

	if (r)
		return r;
	r = bundle_set_replace(set, ca->td, b);
	if (r)
		bundle_free(b);
	return r;
}

static int write_text(const char *path, const char *text)
{
	_cleanup_fclose_ FILE *f = fopen(path, "we");

	if (!f)
		return -errno;
	if (fputs(text, f) < 0)
		return -EIO;
	return fflush(f) ? -errno : 0;
}

int at_ca_write(const struct at_ca *ca, const char *dir)
{
	_cleanup_bundle_ struct bundle *b = NULL;
	_cleanup_free_ char *json = NULL;
	char path[PATH_MAX];
	int r;

	snprintf(path, sizeof(path), "%s/node-ca.pem", dir);
	r = pki_write_chain(path, ca->node_chain);
	snprintf(path, sizeof(path), "%s/node-ca.key", dir);
	if (!r)
		r = pki_write_key(path, ca->node_key);
	if (!r)
		r = make_bundle(ca, &b);
	if (!r)
		r = bundle_write(b, &json);
	snprintf(path, sizeof(path), "%s/bundle.json", dir);
	if (!r)
		r = write_text(path, json);
	return r;
}

int at_forge_leaf(const char *id, X509 *issuer, EVP_PKEY *issuer_key, time_t now, long secs,
		  X509 **cert, EVP_PKEY **key)
{
	struct pki_opts o = pki_leaf_opts(id);
	struct pki_cert signer = { .cert = issuer, .key = issuer_key }, leaf;
	int r;

	o.not_after = secs;
	r = pki_make(&o, &signer, now, &leaf);
	if (r)
		return r;
	*cert = leaf.cert;
	*key = leaf.key;
	return 0;
}
