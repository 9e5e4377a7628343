// SPDX-License-Identifier: Apache-2.0
/*
 * Tests of agent/svid.c, the X.509-SVID validator, on certificates made here
 * with OpenSSL (lib/pki.c): a table of chains that must be rejected, each
 * for its own reason and with a message naming the cause; accepted chains
 * with their SPIFFE ID, trust domain and expiry; the SPIFFE ID reader and
 * the PEM loaders.
 *
 * Every chain is judged at a fixed time, NOW, far from the wall clock:
 * the validator must use the time it is given.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "lib/pki.h"
#include "svid.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* 2030-01-01T00:00:00Z */
static const time_t NOW = 1893456000;

#define TD     "example.org"
#define WEB_ID "spiffe://example.org/web"
#define OMIT   "" /* in a leaf override: leave the extension out */

/*
 * The world every case runs in: trust domain example.org (root A and its
 * intermediate), other.org (root B and its intermediate), and certificates
 * no bundle lists. trust knows example.org, other.org and revoked.org (a
 * trust domain without authorities).
 */
struct world {
	struct pki_cert root_a, inter_a, root_b, inter_b;
	struct pki_cert rogue_root;    /* claims example.org, in no bundle */
	struct pki_cert rogue_inter;   /* signed by rogue_root */
	struct pki_cert nonca_inter;   /* CA:FALSE, signed by root A */
	struct pki_cert nosign_inter;  /* CA:TRUE without keyCertSign, signed by root A */
	struct pki_cert expired_inter; /* signed by root A, expired at NOW */
	struct pki_cert deep_inter;    /* CA below inter_a, which has pathlen:0 */
	STACK_OF(X509) *roots_a, *roots_b, *roots_none;
	struct svid_td_roots domains[3];
	struct svid_trust trust;
};

static void make(struct pki_cert *out, const struct pki_opts *o, const struct pki_cert *issuer)
{
	int r = pki_make(o, issuer, NOW, out);

	cr_assert_eq(r, 0, "pki_make(%s): %s", o->cn ? o->cn : "(no CN)", strerror(-r));
}

static void world_make(struct world *w)
{
	struct pki_opts o;

	memset(w, 0, sizeof(*w));
	o = pki_root_opts(TD);
	make(&w->root_a, &o, NULL);
	o = pki_inter_opts(TD);
	make(&w->inter_a, &o, &w->root_a);
	o = pki_root_opts("other.org");
	make(&w->root_b, &o, NULL);
	o = pki_inter_opts("other.org");
	make(&w->inter_b, &o, &w->root_b);

	o = pki_root_opts(TD);
	o.cn = "rogue root CA";
	make(&w->rogue_root, &o, NULL);
	o = pki_inter_opts(TD);
	make(&w->rogue_inter, &o, &w->rogue_root);
	o = pki_inter_opts(TD);
	o.bc = "critical,CA:FALSE";
	o.ku = "critical,digitalSignature";
	make(&w->nonca_inter, &o, &w->root_a);
	o = pki_inter_opts(TD);
	o.ku = "critical,digitalSignature";
	make(&w->nosign_inter, &o, &w->root_a);
	o = pki_inter_opts(TD);
	o.not_before = -2 * 86400;
	o.not_after = -86400;
	make(&w->expired_inter, &o, &w->root_a);
	o = pki_inter_opts(TD);
	o.cn = "test deep CA"; /* not self-issued: a CA of the same name would not count */
	o.bc = "critical,CA:TRUE";
	make(&w->deep_inter, &o, &w->inter_a);

	w->roots_a = pki_stack(w->root_a.cert, NULL);
	w->roots_b = pki_stack(w->root_b.cert, NULL);
	w->roots_none = pki_stack(NULL);
	w->domains[0] = (struct svid_td_roots){TD, w->roots_a};
	w->domains[1] = (struct svid_td_roots){"other.org", w->roots_b};
	w->domains[2] = (struct svid_td_roots){"revoked.org", w->roots_none};
	w->trust = (struct svid_trust){w->domains, ARRAY_SIZE(w->domains)};
}

static void world_free(struct world *w)
{
	struct pki_cert *all[] = {&w->root_a,	   &w->inter_a,	     &w->root_b,
				  &w->inter_b,	   &w->rogue_root,   &w->rogue_inter,
				  &w->nonca_inter, &w->nosign_inter, &w->expired_inter,
				  &w->deep_inter};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(all); i++)
		pki_free(all[i]);
	sk_X509_pop_free(w->roots_a, X509_free);
	sk_X509_pop_free(w->roots_b, X509_free);
	sk_X509_pop_free(w->roots_none, X509_free);
}

/* Who signs a case's leaf, and what the peer sends after it. */
enum signer {
	BY_ROOT_A,	   /* root A; chain: leaf */
	BY_INTER_A,	   /* intermediate A; chain: leaf, inter A */
	BY_INTER_A_UNSENT, /* intermediate A; chain: leaf alone */
	BY_ROOT_B,	   /* other.org's root; chain: leaf */
	BY_INTER_B,	   /* other.org's intermediate; chain: leaf, inter B */
	BY_ROGUE_ROOT,	   /* a root claiming example.org; chain: leaf, rogue root */
	BY_ROGUE_INTER,	   /* its intermediate; chain: leaf, rogue inter */
	BY_NONCA_INTER,	   /* a CA:FALSE "intermediate" of root A; chain: leaf, it */
	BY_NOSIGN_INTER,   /* a CA without keyCertSign; chain: leaf, it */
	BY_EXPIRED_INTER,  /* an expired intermediate of root A; chain: leaf, it */
	BY_DEEP_INTER,	   /* below inter A's pathlen:0; chain: leaf, deep, inter A */
	BY_SELF,	   /* the leaf signs itself; chain: leaf */
};

/*
 * One chain and its expected rejection. The leaf is pki_leaf_opts(id) with
 * the overrides that are set: NULL keeps the default, OMIT removes the
 * extension; san replaces the whole SAN when set.
 */
struct reject_case {
	const char *name;
	const char *id;	 /* the leaf's SPIFFE ID (default WEB_ID) */
	const char *san; /* a raw subjectAltName instead of "URI:id" */
	const char *bc;
	const char *ku;
	long not_before, not_after; /* when not both 0 */
	bool no_key_ids;	    /* no subject/authorityKeyIdentifier */
	enum signer signer;
	bool tamper;		 /* flip a bit of the leaf's signature */
	const char *expected_id; /* the peer the caller expects, or NULL */
	enum svid_reason reason;
	const char *mentions; /* a part of the message that names the cause */
};

static const struct reject_case reject_cases[] = {
	{"no URI SAN", .san = "DNS:web.example.org", .reason = SVID_NO_URI_SAN,
	 .mentions = "leaf has no URI SAN"},
	{"no subjectAltName at all", .san = OMIT, .reason = SVID_NO_URI_SAN,
	 .mentions = "leaf has no URI SAN"},
	{"two URI SANs", .san = "URI:spiffe://example.org/web,URI:spiffe://example.org/db",
	 .reason = SVID_MANY_URI_SANS, .mentions = "more than one URI SAN"},
	{"URI SAN of another scheme", .san = "URI:https://example.org/web",
	 .reason = SVID_BAD_SPIFFE_ID,
	 .mentions =
		 "'https://example.org/web' is not a SPIFFE ID: does not start with 'spiffe://'"},
	{"uppercase trust domain", .san = "URI:spiffe://Example.org/web",
	 .reason = SVID_BAD_SPIFFE_ID, .mentions = "trust domain contains 'E' at offset 9"},
	{"leaf ID without a path", .id = "spiffe://example.org", .reason = SVID_NO_PATH,
	 .mentions = "leaf SPIFFE ID 'spiffe://example.org' has no path"},
	{"leaf with CA:TRUE", .bc = "critical,CA:TRUE", .reason = SVID_LEAF_IS_CA,
	 .mentions = "'spiffe://example.org/web' is a CA certificate (basicConstraints CA:TRUE)"},
	{"leaf with keyCertSign", .ku = "critical,digitalSignature,keyCertSign",
	 .reason = SVID_LEAF_CAN_SIGN, .mentions = "has keyUsage keyCertSign"},
	{"leaf with cRLSign", .ku = "critical,digitalSignature,cRLSign",
	 .reason = SVID_LEAF_CAN_SIGN, .mentions = "has keyUsage cRLSign"},
	{"leaf without digitalSignature", .ku = "critical,keyEncipherment,keyAgreement",
	 .reason = SVID_NO_DIGITAL_SIGNATURE, .mentions = "lacks keyUsage digitalSignature"},
	{"leaf without keyUsage", .ku = OMIT, .reason = SVID_NO_KEY_USAGE,
	 .mentions = "has no keyUsage extension"},
	{"leaf with non-critical keyUsage", .ku = "digitalSignature",
	 .reason = SVID_KEY_USAGE_NOT_CRITICAL,
	 .mentions = "keyUsage extension not marked critical"},
	{"expired leaf", .not_before = -7200, .not_after = -3600, .reason = SVID_EXPIRED,
	 .mentions = "expired at 2029-12-31T23:00:00Z (now is 2030-01-01T00:00:00Z)"},
	{"leaf expiring exactly now", .not_before = -7200, .not_after = 0, .reason = SVID_EXPIRED,
	 .mentions = "expired at 2030-01-01T00:00:00Z"},
	{"leaf not yet valid", .not_before = 60, .not_after = 3600, .reason = SVID_NOT_YET_VALID,
	 .mentions = "not valid before 2030-01-01T00:01:00Z (now is 2030-01-01T00:00:00Z)"},
	{"unknown trust domain", .id = "spiffe://unknown.org/web", .reason = SVID_NO_BUNDLE,
	 .mentions = "no bundle for trust domain 'unknown.org'"},
	{"trust domain without authorities", .id = "spiffe://revoked.org/web",
	 .reason = SVID_NO_BUNDLE,
	 .mentions = "the bundle of trust domain 'revoked.org' has no X.509 authorities"},
	{"signed by another trust domain's root", .signer = BY_ROOT_B, .reason = SVID_UNTRUSTED,
	 .mentions = "no path to the 1 X.509 authority of trust domain 'example.org'"},
	{"via another trust domain's intermediate", .signer = BY_INTER_B, .reason = SVID_UNTRUSTED,
	 .mentions = "trust domain 'example.org'"},
	{"this domain's root vouching for another's ID", .id = "spiffe://other.org/web",
	 .reason = SVID_UNTRUSTED, .mentions = "trust domain 'other.org'"},
	{"a root the peer sends itself", .signer = BY_ROGUE_ROOT, .reason = SVID_UNTRUSTED,
	 .mentions = "self-signed certificate in certificate chain"},
	{"an intermediate not signed by a bundle root", .signer = BY_ROGUE_INTER,
	 .reason = SVID_UNTRUSTED, .mentions = "'CN=rogue root CA,O=fedguard-test'"},
	{"the intermediate not sent", .signer = BY_INTER_A_UNSENT, .reason = SVID_UNTRUSTED,
	 .mentions = "unable to get local issuer certificate"},
	{"self-signed leaf", .signer = BY_SELF, .reason = SVID_UNTRUSTED,
	 .mentions = "trust domain 'example.org'"},
	{"an intermediate that is not a CA", .signer = BY_NONCA_INTER, .reason = SVID_SIGNER_NOT_CA,
	 .mentions =
		 "certificate 1 of the chain ('CN=test intermediate CA,O=fedguard-test') is not a CA"},
	{"an intermediate without keyCertSign", .signer = BY_NOSIGN_INTER,
	 .reason = SVID_SIGNER_NOT_CA, .mentions = "has no keyUsage keyCertSign"},
	{"an expired intermediate", .signer = BY_EXPIRED_INTER, .reason = SVID_SIGNER_EXPIRED,
	 .mentions =
		 "failed at certificate 1 ('CN=test intermediate CA,O=fedguard-test'): certificate has expired"},
	{"beyond an intermediate's path length", .signer = BY_DEEP_INTER,
	 .reason = SVID_PATH_INVALID, .mentions = "path length constraint exceeded"},
	{"leaf without authorityKeyIdentifier (X509_STRICT)", .no_key_ids = true,
	 .reason = SVID_PATH_INVALID, .mentions = "Missing Authority Key Identifier"},
	{"tampered leaf signature", .signer = BY_INTER_A, .tamper = true,
	 .reason = SVID_BAD_SIGNATURE, .mentions = "certificate signature failure"},
	{"the wrong SPIFFE ID for the expected peer", .signer = BY_INTER_A,
	 .expected_id = "spiffe://example.org/db", .reason = SVID_ID_MISMATCH,
	 .mentions = "SVID is 'spiffe://example.org/web', expected 'spiffe://example.org/db'"},
	{"an ID of another trust domain expected", .expected_id = "spiffe://other.org/web",
	 .reason = SVID_ID_MISMATCH, .mentions = "expected 'spiffe://other.org/web'"},
};

static const struct pki_cert *signer_cert(struct world *w, enum signer s)
{
	switch (s) {
	case BY_ROOT_A:
		return &w->root_a;
	case BY_INTER_A:
	case BY_INTER_A_UNSENT:
		return &w->inter_a;
	case BY_ROOT_B:
		return &w->root_b;
	case BY_INTER_B:
		return &w->inter_b;
	case BY_ROGUE_ROOT:
		return &w->rogue_root;
	case BY_ROGUE_INTER:
		return &w->rogue_inter;
	case BY_NONCA_INTER:
		return &w->nonca_inter;
	case BY_NOSIGN_INTER:
		return &w->nosign_inter;
	case BY_EXPIRED_INTER:
		return &w->expired_inter;
	case BY_DEEP_INTER:
		return &w->deep_inter;
	case BY_SELF:
		return NULL;
	}
	return NULL;
}

/* The chain the peer sends: the leaf, then what enum signer says. */
static STACK_OF(X509) *case_chain(struct world *w, enum signer s, X509 *leaf)
{
	switch (s) {
	case BY_ROOT_A:
	case BY_INTER_A_UNSENT:
	case BY_ROOT_B:
	case BY_SELF:
		return pki_stack(leaf, NULL);
	case BY_DEEP_INTER:
		return pki_stack(leaf, w->deep_inter.cert, w->inter_a.cert, NULL);
	default:
		return pki_stack(leaf, signer_cert(w, s)->cert, NULL);
	}
}

static struct pki_opts case_leaf_opts(const struct reject_case *c)
{
	struct pki_opts o = pki_leaf_opts(c->id ? c->id : WEB_ID);

	if (c->san)
		snprintf(o.san, sizeof(o.san), "%s", c->san);
	if (c->bc)
		o.bc = c->bc;
	if (c->ku)
		o.ku = c->ku;
	o.no_key_ids = c->no_key_ids;
	if (c->not_before || c->not_after) {
		o.not_before = c->not_before;
		o.not_after = c->not_after;
	}
	return o;
}

/* Runs one case: its reason, its message; out and why untouched where they must be. */
static void run_reject_case(struct world *w, const struct reject_case *c)
{
	struct pki_opts o = case_leaf_opts(c);
	struct pki_cert leaf = {};
	STACK_OF(X509) *chain;
	struct svid_result res;
	char why[SVID_WHY_MAX] = "";
	int r;

	make(&leaf, &o, signer_cert(w, c->signer));
	if (c->tamper) {
		X509 *bad = pki_tamper(leaf.cert);

		cr_assert_not_null(bad, "%s: tampering failed", c->name);
		X509_free(leaf.cert);
		leaf.cert = bad;
	}
	chain = case_chain(w, c->signer, leaf.cert);
	memset(&res, 0xa5, sizeof(res));

	r = svid_verify(chain, &w->trust, c->expected_id, NOW, &res, why, sizeof(why));
	cr_log_info("%s: %s: %s", c->name, svid_reason_name(r), why);
	cr_expect_eq(r, (int)c->reason, "%s: got %d (%s: %s), expected %d (%s)", c->name, r,
		     svid_reason_name(r), why, c->reason, svid_reason_name(c->reason));
	cr_expect_not_null(strstr(why, c->mentions), "%s: message '%s' does not mention '%s'",
			   c->name, why, c->mentions);
	cr_expect_eq(res.spiffe_id[0], (char)0xa5, "%s: result written on rejection", c->name);

	sk_X509_pop_free(chain, X509_free);
	pki_free(&leaf);
}

Test(svid, rejects_each_defective_chain_for_its_reason)
{
	struct world w;
	size_t i;

	world_make(&w);
	for (i = 0; i < ARRAY_SIZE(reject_cases); i++)
		run_reject_case(&w, &reject_cases[i]);
	world_free(&w);
}

Test(svid, every_reason_has_a_name_and_a_text)
{
	int i, j;

	for (i = 0; i < SVID_REASON_MAX; i++) {
		cr_expect_neq(strcmp(svid_reason_name(i), "unknown"), 0, "reason %d", i);
		for (j = 0; j < i; j++)
			cr_expect_neq(strcmp(svid_reason_name(i), svid_reason_name(j)), 0,
				      "reasons %d and %d share a name", i, j);
	}
	cr_expect_str_eq(svid_reason_name(SVID_REASON_MAX), "unknown");
	cr_expect_str_eq(svid_strreason(-1), "unknown SVID rejection reason");
}

Test(svid, rejects_an_empty_chain)
{
	STACK_OF(X509) *chain = sk_X509_new_null();
	struct svid_trust trust = {};
	char why[SVID_WHY_MAX] = "";

	cr_assert_eq(svid_verify(chain, &trust, NULL, NOW, NULL, why, sizeof(why)),
		     SVID_EMPTY_CHAIN);
	cr_expect_str_eq(why, "the chain has no certificate");
	sk_X509_free(chain);
}

Test(svid, refuses_bad_arguments)
{
	struct world w;
	struct pki_opts o = pki_leaf_opts(WEB_ID);
	struct pki_cert leaf;
	struct svid_td_roots twice[2];
	struct svid_trust trust = {twice, 2};
	STACK_OF(X509) *chain;
	char why[SVID_WHY_MAX] = "";

	world_make(&w);
	make(&leaf, &o, &w.root_a);
	chain = pki_stack(leaf.cert, NULL);
	twice[0] = twice[1] = (struct svid_td_roots){TD, w.roots_a};

	cr_expect_eq(svid_verify(NULL, &w.trust, NULL, NOW, NULL, why, sizeof(why)), -EINVAL);
	cr_expect_eq(svid_verify(chain, &w.trust, "spiffe://example.org/a//b", NOW, NULL, why,
				 sizeof(why)),
		     -EINVAL);
	cr_expect_not_null(
		strstr(why, "expected SPIFFE ID 'spiffe://example.org/a//b' is not valid"), "%s",
		why);
	cr_expect_eq(svid_verify(chain, &trust, NULL, NOW, NULL, why, sizeof(why)), -EINVAL);
	cr_expect_str_eq(why, "trust domain 'example.org' is listed twice in the trust given");

	sk_X509_pop_free(chain, X509_free);
	pki_free(&leaf);
	world_free(&w);
}

/* Verifies chain, expecting acceptance as WEB_ID in example.org until not_after. */
static void expect_accepted(const char *what, STACK_OF(X509) *chain,
			    const struct svid_trust *trust, const char *expected_id,
			    time_t not_after)
{
	struct svid_result res;
	char why[SVID_WHY_MAX] = "untouched";
	int r;

	memset(&res, 0, sizeof(res));
	r = svid_verify(chain, trust, expected_id, NOW, &res, why, sizeof(why));
	cr_expect_eq(r, SVID_OK, "%s: rejected (%s): %s", what, svid_reason_name(r), why);
	cr_expect_str_eq(why, "untouched", "%s: why written on success", what);
	cr_expect_str_eq(res.spiffe_id, WEB_ID, "%s", what);
	cr_expect_str_eq(res.td, TD, "%s", what);
	cr_expect_eq(res.not_after, not_after, "%s: not_after %lld, expected %lld", what,
		     (long long)res.not_after, (long long)not_after);
}

Test(svid, accepts_a_leaf_signed_by_the_root)
{
	struct world w;
	struct pki_opts o = pki_leaf_opts(WEB_ID);
	struct pki_cert leaf;
	STACK_OF(X509) *chain;

	world_make(&w);
	make(&leaf, &o, &w.root_a);
	chain = pki_stack(leaf.cert, NULL);

	expect_accepted("no expected ID", chain, &w.trust, NULL, NOW + 3600);
	expect_accepted("expected ID", chain, &w.trust, WEB_ID, NOW + 3600);

	sk_X509_pop_free(chain, X509_free);
	pki_free(&leaf);
	world_free(&w);
}

Test(svid, accepts_a_leaf_via_an_intermediate)
{
	struct world w;
	struct pki_opts o = pki_leaf_opts(WEB_ID);
	struct pki_cert leaf;
	STACK_OF(X509) *chain, *with_root;

	world_make(&w);
	make(&leaf, &o, &w.inter_a);
	chain = pki_stack(leaf.cert, w.inter_a.cert, NULL);
	/* A peer that also sends the root, and an unrelated CA, changes nothing. */
	with_root = pki_stack(leaf.cert, w.root_b.cert, w.root_a.cert, w.inter_a.cert, NULL);

	expect_accepted("leaf, intermediate", chain, &w.trust, WEB_ID, NOW + 3600);
	expect_accepted("leaf, other root, root, intermediate", with_root, &w.trust, WEB_ID,
			NOW + 3600);

	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(with_root, X509_free);
	pki_free(&leaf);
	world_free(&w);
}

/*
 * The expiry is the earliest notAfter of the validated path, wherever it
 * is: the leaf, the intermediate, or the root.
 */
Test(svid, expiry_is_the_earliest_not_after_of_the_path)
{
	static const struct {
		const char *what;
		long root, inter, leaf; /* notAfter, seconds after NOW */
		long expected;
	} cases[] = {
		{"leaf earliest", 86400, 7200, 3600, 3600},
		{"intermediate earliest", 86400, 1800, 3600, 1800},
		{"root earliest", 600, 7200, 3600, 600},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct pki_opts ro = pki_root_opts(TD), io = pki_inter_opts(TD),
				lo = pki_leaf_opts(WEB_ID);
		struct pki_cert root, inter, leaf;
		STACK_OF(X509) *roots, *chain;
		struct svid_td_roots d;
		struct svid_trust trust = {&d, 1};

		ro.not_after = cases[i].root;
		io.not_after = cases[i].inter;
		lo.not_after = cases[i].leaf;
		make(&root, &ro, NULL);
		make(&inter, &io, &root);
		make(&leaf, &lo, &inter);
		roots = pki_stack(root.cert, NULL);
		chain = pki_stack(leaf.cert, inter.cert, NULL);
		d = (struct svid_td_roots){TD, roots};

		expect_accepted(cases[i].what, chain, &trust, NULL, NOW + cases[i].expected);

		sk_X509_pop_free(roots, X509_free);
		sk_X509_pop_free(chain, X509_free);
		pki_free(&leaf);
		pki_free(&inter);
		pki_free(&root);
	}
}

/* Accepted variations: what the specification allows must pass. */
Test(svid, accepts_what_the_specification_allows)
{
	static const struct {
		const char *what;
		const char *san, *bc, *ku;
	} cases[] = {
		{"a DNS SAN beside the URI SAN", "DNS:web.example.org,URI:" WEB_ID, NULL, NULL},
		{"no basicConstraints (CA:FALSE by default)", NULL, OMIT, NULL},
		{"keyEncipherment and keyAgreement too", NULL, NULL,
		 "critical,digitalSignature,keyEncipherment,keyAgreement"},
	};
	struct world w;
	size_t i;

	world_make(&w);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct pki_opts o = pki_leaf_opts(WEB_ID);
		struct pki_cert leaf;
		STACK_OF(X509) *chain;

		if (cases[i].san)
			snprintf(o.san, sizeof(o.san), "%s", cases[i].san);
		if (cases[i].bc)
			o.bc = cases[i].bc;
		if (cases[i].ku)
			o.ku = cases[i].ku;
		make(&leaf, &o, &w.inter_a);
		chain = pki_stack(leaf.cert, w.inter_a.cert, NULL);
		expect_accepted(cases[i].what, chain, &w.trust, WEB_ID, NOW + 3600);
		sk_X509_pop_free(chain, X509_free);
		pki_free(&leaf);
	}
	world_free(&w);
}

/*
 * A bundle authority need not be self-signed: with only the intermediate
 * in example.org's bundle, it is the anchor, and the root is not needed.
 */
Test(svid, any_bundle_authority_is_an_anchor)
{
	struct world w;
	struct pki_opts o = pki_leaf_opts(WEB_ID);
	struct pki_cert leaf;
	STACK_OF(X509) *roots, *chain;
	struct svid_td_roots d;
	struct svid_trust trust = {&d, 1};

	world_make(&w);
	make(&leaf, &o, &w.inter_a);
	roots = pki_stack(w.inter_a.cert, NULL);
	chain = pki_stack(leaf.cert, NULL);
	d = (struct svid_td_roots){TD, roots};

	expect_accepted("intermediate as the anchor", chain, &trust, WEB_ID, NOW + 3600);

	sk_X509_pop_free(roots, X509_free);
	sk_X509_pop_free(chain, X509_free);
	pki_free(&leaf);
	world_free(&w);
}

/* The same chain moves from accepted to expired as now passes its notAfter. */
Test(svid, judges_at_the_time_it_is_given)
{
	struct world w;
	struct pki_opts o = pki_leaf_opts(WEB_ID);
	struct pki_cert leaf;
	STACK_OF(X509) *chain;
	char why[SVID_WHY_MAX];

	world_make(&w);
	make(&leaf, &o, &w.root_a);
	chain = pki_stack(leaf.cert, NULL);

	cr_expect_eq(svid_verify(chain, &w.trust, NULL, NOW + 3599, NULL, why, sizeof(why)),
		     SVID_OK, "%s", why);
	cr_expect_eq(svid_verify(chain, &w.trust, NULL, NOW + 3600, NULL, why, sizeof(why)),
		     SVID_EXPIRED);
	cr_expect_eq(svid_verify(chain, &w.trust, NULL, NOW - 61, NULL, why, sizeof(why)),
		     SVID_NOT_YET_VALID);

	sk_X509_pop_free(chain, X509_free);
	pki_free(&leaf);
	world_free(&w);
}

Test(svid, reads_the_spiffe_id_of_a_certificate)
{
	static const struct {
		const char *san;
		int ret;
	} cases[] = {
		{"URI:" WEB_ID, 0},
		{"DNS:x.example.org,URI:" WEB_ID, 0},
		{"DNS:x.example.org", -ENOENT},
		{"", -ENOENT},
		{"URI:spiffe://example.org/a,URI:spiffe://example.org/b", -ENOTUNIQ},
		{"URI:spiffe://example.org/a/", -EINVAL},
		{"URI:http://example.org/a", -EINVAL},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct pki_opts o = pki_leaf_opts(WEB_ID);
		struct pki_cert c;
		char buf[SPIFFE_ID_MAX + 1] = "untouched";

		snprintf(o.san, sizeof(o.san), "%s", cases[i].san);
		make(&c, &o, NULL);
		cr_expect_eq(svid_cert_spiffe_id(c.cert, buf, sizeof(buf)), cases[i].ret,
			     "SAN '%s'", cases[i].san);
		cr_expect_str_eq(buf, cases[i].ret ? "untouched" : WEB_ID, "SAN '%s'",
				 cases[i].san);
		pki_free(&c);
	}
}

Test(svid, spiffe_id_needs_room_in_the_buffer)
{
	struct pki_opts o = pki_leaf_opts(WEB_ID);
	struct pki_cert c;
	char buf[sizeof(WEB_ID)];

	make(&c, &o, NULL);
	memset(buf, 'x', sizeof(buf));
	cr_expect_eq(svid_cert_spiffe_id(c.cert, buf, sizeof(buf) - 1), -ENOSPC);
	cr_expect_eq(buf[0], 'x');
	cr_expect_eq(svid_cert_spiffe_id(c.cert, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, WEB_ID);
	pki_free(&c);
}

/* A private directory for files, removed by the test's end. */
static void tmpdir(char *buf, size_t len)
{
	snprintf(buf, len, "%s/fg-svid-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	cr_assert_not_null(mkdtemp(buf), "mkdtemp: %s", strerror(errno));
}

static void write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(content, f);
	fclose(f);
}

Test(svid, loads_a_chain_in_file_order)
{
	struct world w;
	struct pki_opts o = pki_leaf_opts(WEB_ID);
	struct pki_cert leaf;
	STACK_OF(X509) *chain, *loaded = NULL;
	char dir[256], path[300], why[SVID_WHY_MAX] = "";
	int i;

	world_make(&w);
	make(&leaf, &o, &w.inter_a);
	chain = pki_stack(leaf.cert, w.inter_a.cert, NULL);
	tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/chain.pem", dir);
	cr_assert_eq(pki_write_chain(path, chain), 0);

	cr_assert_eq(svid_load_chain(path, &loaded, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(sk_X509_num(loaded), 2);
	for (i = 0; i < 2; i++)
		cr_expect_eq(X509_cmp(sk_X509_value(loaded, i), sk_X509_value(chain, i)), 0,
			     "certificate %d", i);
	cr_expect_eq(svid_verify(loaded, &w.trust, WEB_ID, NOW, NULL, why, sizeof(why)), SVID_OK,
		     "%s", why);

	unlink(path);
	rmdir(dir);
	sk_X509_pop_free(loaded, X509_free);
	sk_X509_pop_free(chain, X509_free);
	pki_free(&leaf);
	world_free(&w);
}

Test(svid, chain_load_errors_name_the_file_and_the_cause)
{
	static const struct {
		const char *name;
		const char *content; /* NULL: no such file */
		int ret;
		const char *mentions;
	} cases[] = {
		{"missing.pem", NULL, -ENOENT, "missing.pem': No such file or directory"},
		{"empty.pem", "", -ENODATA, "empty.pem': no PEM certificate in the file"},
		{"text.pem", "not a certificate\n", -ENODATA, "no PEM certificate"},
		{"broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		 -EBADMSG, "broken.pem': certificate 1 does not decode"},
		{"truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n", -EBADMSG,
		 "certificate 1 does not decode"},
	};
	char dir[256], path[300], why[SVID_WHY_MAX];
	size_t i;

	tmpdir(dir, sizeof(dir));
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		STACK_OF(X509) *out = (STACK_OF(X509) *)&out;

		snprintf(path, sizeof(path), "%s/%s", dir, cases[i].name);
		if (cases[i].content)
			write_file(path, cases[i].content);
		why[0] = '\0';
		cr_expect_eq(svid_load_chain(path, &out, why, sizeof(why)), cases[i].ret, "%s: %s",
			     cases[i].name, why);
		cr_expect_not_null(strstr(why, cases[i].mentions), "%s: '%s'", cases[i].name, why);
		cr_expect_eq(out, (STACK_OF(X509) *)&out, "%s: out written on failure",
			     cases[i].name);
		unlink(path);
	}
	rmdir(dir);
}

Test(svid, loads_a_key_and_names_the_file_on_errors)
{
	struct pki_opts o = pki_leaf_opts(WEB_ID);
	struct pki_cert c;
	STACK_OF(X509) *only_cert;
	EVP_PKEY *key = NULL;
	char dir[256], path[300], why[SVID_WHY_MAX] = "";
	FILE *f;

	make(&c, &o, NULL);
	tmpdir(dir, sizeof(dir));

	snprintf(path, sizeof(path), "%s/key.pem", dir);
	cr_assert_eq(pki_write_key(path, c.key), 0);
	cr_assert_eq(svid_load_key(path, &key, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(EVP_PKEY_eq(key, c.key), 1, "the key read back is another key");
	EVP_PKEY_free(key);
	key = NULL;

	snprintf(path, sizeof(path), "%s/cert.pem", dir);
	only_cert = pki_stack(c.cert, NULL);
	cr_assert_eq(pki_write_chain(path, only_cert), 0);
	cr_expect_eq(svid_load_key(path, &key, why, sizeof(why)), -ENODATA);
	cr_expect_not_null(strstr(why, "cert.pem': no PEM private key in the file"), "%s", why);

	snprintf(path, sizeof(path), "%s/encrypted.pem", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert(PEM_write_PKCS8PrivateKey(f, c.key, EVP_aes_256_cbc(), "secret", 6, NULL, NULL));
	fclose(f);
	cr_expect_eq(svid_load_key(path, &key, why, sizeof(why)), -EBADMSG);
	cr_expect_not_null(strstr(why, "encrypted.pem': the private key is encrypted"), "%s", why);

	snprintf(path, sizeof(path), "%s/broken.pem", dir);
	write_file(path, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
	cr_expect_eq(svid_load_key(path, &key, why, sizeof(why)), -EBADMSG);
	cr_expect_not_null(
		strstr(why, "broken.pem': the private key ('PRIVATE KEY' block) does not decode"),
		"%s", why);
	unlink(path);

	snprintf(path, sizeof(path), "%s/none.pem", dir);
	cr_expect_eq(svid_load_key(path, &key, why, sizeof(why)), -ENOENT);
	cr_expect_not_null(strstr(why, "none.pem': No such file or directory"), "%s", why);
	cr_expect_null(key);

	snprintf(path, sizeof(path), "%s/key.pem", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/cert.pem", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/encrypted.pem", dir);
	unlink(path);
	rmdir(dir);
	sk_X509_pop_free(only_cert, X509_free);
	pki_free(&c);
}
