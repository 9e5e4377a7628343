// SPDX-License-Identifier: Apache-2.0
/*
 * Tests of agent/ca.c, the issuing of roots, node signing certificates and
 * SVIDs: what it issues passes the validator (agent/svid.c) and has the
 * extensions of its kind, and what it must refuse (an ID outside the
 * issuer's trust domain, a CA's ID with a path, a certificate outliving its
 * issuer...) is refused with a message.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "ca.h"
#include "svid.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const time_t NOW = 1893456000; /* 2030-01-01T00:00:00Z */

/* A root, a node CA and a leaf of example.org, all made by ca_issue(). */
struct hierarchy {
	EVP_PKEY *root_key, *node_key, *leaf_key;
	X509 *root, *node, *leaf;
};

static void issue(const struct ca_request *req, EVP_PKEY **key, X509 *issuer, EVP_PKEY *issuer_key,
		  X509 **out)
{
	char why[256] = "";
	int r;

	cr_assert_eq(ca_key_new(key), 0);
	r = ca_issue(req, *key, issuer, issuer_key, out, why, sizeof(why));
	cr_assert_eq(r, 0, "ca_issue(%s): %s", req->spiffe_id, why);
}

static void hierarchy_make(struct hierarchy *h)
{
	struct ca_request root = {CA_ROOT, "spiffe://example.org", "root", NOW - 60, NOW + 86400};
	struct ca_request node = {CA_NODE, "spiffe://example.org", "node n1", NOW - 60, NOW + 7200};
	struct ca_request leaf = {CA_LEAF, "spiffe://example.org/web", "web", NOW - 60, NOW + 3600};

	memset(h, 0, sizeof(*h));
	issue(&root, &h->root_key, NULL, NULL, &h->root);
	issue(&node, &h->node_key, h->root, h->root_key, &h->node);
	issue(&leaf, &h->leaf_key, h->node, h->node_key, &h->leaf);
}

static void hierarchy_free(struct hierarchy *h)
{
	X509_free(h->root);
	X509_free(h->node);
	X509_free(h->leaf);
	EVP_PKEY_free(h->root_key);
	EVP_PKEY_free(h->node_key);
	EVP_PKEY_free(h->leaf_key);
}

Test(ca, issues_a_chain_the_validator_accepts)
{
	struct hierarchy h;
	STACK_OF(X509) *roots, *chain;
	struct svid_td_roots d;
	struct svid_trust trust = {&d, 1};
	struct svid_result res;
	char why[SVID_WHY_MAX] = "";

	hierarchy_make(&h);
	roots = sk_X509_new_null();
	chain = sk_X509_new_null();
	sk_X509_push(roots, h.root);
	sk_X509_push(chain, h.leaf);
	sk_X509_push(chain, h.node);
	d = (struct svid_td_roots){"example.org", roots};

	cr_assert_eq(
		svid_verify(chain, &trust, "spiffe://example.org/web", NOW, &res, why, sizeof(why)),
		SVID_OK, "%s", why);
	cr_expect_eq(res.not_after, NOW + 3600);

	sk_X509_free(roots);
	sk_X509_free(chain);
	hierarchy_free(&h);
}

Test(ca, each_kind_has_its_extensions)
{
	struct hierarchy h;
	BASIC_CONSTRAINTS *bc;
	char id[SPIFFE_ID_MAX + 1];

	hierarchy_make(&h);

	cr_expect(X509_get_extension_flags(h.root) & EXFLAG_CA);
	cr_expect(X509_get_extension_flags(h.root) & EXFLAG_SS, "root not self-signed");
	cr_expect_eq(X509_get_key_usage(h.root), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	cr_expect_not_null(X509_get0_subject_key_id(h.root));
	cr_expect_eq(svid_cert_spiffe_id(h.root, id, sizeof(id)), 0);
	cr_expect_str_eq(id, "spiffe://example.org");

	bc = X509_get_ext_d2i(h.node, NID_basic_constraints, NULL, NULL);
	cr_assert_not_null(bc);
	cr_expect(bc->ca);
	cr_expect_eq(ASN1_INTEGER_get(bc->pathlen), 0);
	BASIC_CONSTRAINTS_free(bc);
	cr_expect_eq(X509_get_key_usage(h.node), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	cr_expect_not_null(X509_get0_authority_key_id(h.node));
	cr_expect_eq(svid_cert_spiffe_id(h.node, id, sizeof(id)), 0);
	cr_expect_str_eq(id, "spiffe://example.org");

	cr_expect_not(X509_get_extension_flags(h.leaf) & EXFLAG_CA);
	cr_expect_eq(X509_get_key_usage(h.leaf), KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT);
	cr_expect_eq(X509_get_extended_key_usage(h.leaf), XKU_SSL_SERVER | XKU_SSL_CLIENT);
	cr_expect_eq(svid_cert_spiffe_id(h.leaf, id, sizeof(id)), 0);
	cr_expect_str_eq(id, "spiffe://example.org/web");
	cr_expect_neq(
		ASN1_INTEGER_cmp(X509_get0_serialNumber(h.leaf), X509_get0_serialNumber(h.node)), 0,
		"two certificates share a serial number");

	hierarchy_free(&h);
}

Test(ca, refuses_what_a_trust_domain_cannot_vouch_for)
{
	static const struct {
		const char *what;
		struct ca_request req;
		int issuer; /* 0 none, 1 root, 2 node, 3 leaf */
		bool wrong_key;
		int ret;
		const char *mentions;
	} cases[] = {
		{"an ID of another trust domain",
		 {CA_LEAF, "spiffe://other.org/web", "x", NOW, NOW + 60},
		 2,
		 false,
		 -EINVAL,
		 "'spiffe://other.org/web' is not in trust domain 'example.org'"},
		{"a node CA of another trust domain",
		 {CA_NODE, "spiffe://other.org", "x", NOW, NOW + 60},
		 1,
		 false,
		 -EINVAL,
		 "not in trust domain 'example.org'"},
		{"a leaf without a path",
		 {CA_LEAF, "spiffe://example.org", "x", NOW, NOW + 60},
		 2,
		 false,
		 -EINVAL,
		 "has no path"},
		{"a signing certificate with a path",
		 {CA_NODE, "spiffe://example.org/fedguard/node/n1", "x", NOW, NOW + 60},
		 1,
		 false,
		 -EINVAL,
		 "has a path: a signing certificate's ID is spiffe://TRUST-DOMAIN"},
		{"an invalid ID",
		 {CA_LEAF, "spiffe://example.org/a//b", "x", NOW, NOW + 60},
		 2,
		 false,
		 -EINVAL,
		 "is not a SPIFFE ID: empty path segment"},
		{"a root with an issuer",
		 {CA_ROOT, "spiffe://example.org", "x", NOW, NOW + 60},
		 1,
		 false,
		 -EINVAL,
		 "a root is self-signed"},
		{"a leaf without an issuer",
		 {CA_LEAF, "spiffe://example.org/web", "x", NOW, NOW + 60},
		 0,
		 false,
		 -EINVAL,
		 "an issuer is needed"},
		{"an issuer that is a leaf",
		 {CA_LEAF, "spiffe://example.org/db", "x", NOW, NOW + 60},
		 3,
		 false,
		 -EINVAL,
		 "the issuer is not a CA certificate"},
		{"another key than the issuer's",
		 {CA_LEAF, "spiffe://example.org/web", "x", NOW, NOW + 60},
		 2,
		 true,
		 -EINVAL,
		 "the issuer's key is not the key of its certificate"},
		{"outliving the issuer",
		 {CA_LEAF, "spiffe://example.org/web", "x", NOW, NOW + 7201},
		 2,
		 false,
		 -ERANGE,
		 "would outlive its issuer"},
		{"an empty validity period",
		 {CA_LEAF, "spiffe://example.org/web", "x", NOW, NOW},
		 2,
		 false,
		 -EINVAL,
		 "notAfter is not after notBefore"},
	};
	struct hierarchy h;
	size_t i;

	hierarchy_make(&h);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		X509 *issuers[] = {NULL, h.root, h.node, h.leaf};
		EVP_PKEY *keys[] = {NULL, h.root_key, h.node_key, h.leaf_key};
		EVP_PKEY *key = NULL;
		X509 *out = NULL;
		char why[256] = "";
		int r;

		cr_assert_eq(ca_key_new(&key), 0);
		r = ca_issue(&cases[i].req, key, issuers[cases[i].issuer],
			     cases[i].wrong_key ? h.root_key : keys[cases[i].issuer], &out, why,
			     sizeof(why));
		cr_expect_eq(r, cases[i].ret, "%s: got %d (%s)", cases[i].what, r, why);
		cr_expect_not_null(strstr(why, cases[i].mentions), "%s: '%s'", cases[i].what, why);
		cr_expect_null(out, "%s: a certificate despite the refusal", cases[i].what);
		X509_free(out);
		EVP_PKEY_free(key);
	}
	hierarchy_free(&h);
}

Test(ca, trust_domain_of_a_signing_certificate)
{
	struct hierarchy h;
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1] = "", why[256] = "";

	hierarchy_make(&h);
	cr_expect_eq(ca_cert_trust_domain(h.node, td, why, sizeof(why)), 0, "%s", why);
	cr_expect_str_eq(td, "example.org");
	cr_expect_eq(ca_cert_trust_domain(h.leaf, td, why, sizeof(why)), -EINVAL);
	cr_expect_not_null(strstr(why, "'spiffe://example.org/web' has a path"), "%s", why);
	hierarchy_free(&h);
}
