// SPDX-License-Identifier: Apache-2.0
/*
 * The agent's SVID store: what it mints (checked field by field with
 * OpenSSL, and as a whole with the SVID validator against the trust
 * domain's root), how it renews, and what it refuses.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "bundle.h"
#include "ca.h"
#include "lib/authtest.h"
#include "svid.h"
#include "svids.h"

#define TD     "a.test"
#define WEB    "spiffe://a.test/web"
#define DB     "spiffe://a.test/db"
#define NODEID "spiffe://a.test/fedguard/node/n1"

static struct at_ca ca;
static time_t now;
static char why[SVIDS_WHY_MAX];

static void setup(void)
{
	now = time(NULL);
	cr_assert_eq(at_ca_make(TD, now, 86400, &ca), 0);
}

static void teardown(void)
{
	at_ca_free(&ca);
}

TestSuite(svids, .init = setup, .fini = teardown);

static struct svids_config config(unsigned int ttl)
{
	return (struct svids_config){ .trust_domain = TD, .node_name = "n1", .ca = ca.node,
				      .ca_key = ca.node_key, .ca_chain = ca.node_chain,
				      .ttl = ttl };
}

static struct svids *store(unsigned int ttl)
{
	struct svids_config cfg = config(ttl);
	struct svids *s = NULL;

	cr_assert_eq(svids_new(&cfg, now, &s, why, sizeof(why)), 0, "%s", why);
	return s;
}

/* The validator's verdict on cred's chain, against the trust domain's root. */
static int verify(const struct svids_cred *c, time_t at, const char *expected,
		  struct svid_result *res)
{
	STACK_OF(X509) *chain = sk_X509_new_null();
	STACK_OF(X509) *roots = sk_X509_new_null();
	struct svid_td_roots td = { .td = TD, .roots = roots };
	struct svid_trust trust = { .domains = &td, .n = 1 };
	char msg[SVID_WHY_MAX];
	int r;

	sk_X509_push(chain, c->cert);
	for (int i = 0; i < sk_X509_num(c->chain); i++)
		sk_X509_push(chain, sk_X509_value(c->chain, i));
	sk_X509_push(roots, ca.root);
	r = svid_verify(chain, &trust, expected, at, res, msg, sizeof(msg));
	sk_X509_free(chain);
	sk_X509_free(roots);
	return r;
}

static time_t cert_time(const ASN1_TIME *t)
{
	struct tm tm;

	cr_assert(ASN1_TIME_to_tm(t, &tm));
	return timegm(&tm);
}

Test(svids, minted_svid_has_the_x509_svid_profile)
{
	struct svids *s = store(3600);
	const char *ids[] = { WEB };
	struct svids_cred *c;
	struct svid_result res;
	EXTENDED_KEY_USAGE *eku;
	GENERAL_NAMES *sans;
	int crit = -1;

	cr_assert_eq(svids_sync(s, ids, 1, now, why, sizeof(why)), 0, "%s", why);
	c = svids_get(s, WEB);
	cr_assert_not_null(c);
	cr_expect_eq(verify(c, now, WEB, &res), SVID_OK, "the validator refuses the minted SVID");
	sans = X509_get_ext_d2i(c->cert, NID_subject_alt_name, &crit, NULL);
	cr_assert_not_null(sans);
	cr_expect_eq(sk_GENERAL_NAME_num(sans), 1, "exactly one SAN");
	cr_expect_eq(sk_GENERAL_NAME_value(sans, 0)->type, GEN_URI);
	GENERAL_NAMES_free(sans);
	cr_expect(!(X509_get_extension_flags(c->cert) & EXFLAG_CA), "a leaf is no CA");
	cr_expect(X509_get_extension_flags(c->cert) & EXFLAG_BCONS, "basicConstraints present");
	cr_expect(X509_get_key_usage(c->cert) & KU_DIGITAL_SIGNATURE);
	cr_expect(!(X509_get_key_usage(c->cert) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)));
	cr_expect_eq(X509_EXTENSION_get_critical(
			     X509_get_ext(c->cert, X509_get_ext_by_NID(c->cert, NID_key_usage, -1))),
		     1, "keyUsage is critical");
	eku = X509_get_ext_d2i(c->cert, NID_ext_key_usage, NULL, NULL);
	cr_assert_not_null(eku);
	cr_expect_eq(sk_ASN1_OBJECT_num(eku), 2);
	cr_expect(X509_get_extended_key_usage(c->cert) & XKU_SSL_SERVER);
	cr_expect(X509_get_extended_key_usage(c->cert) & XKU_SSL_CLIENT);
	EXTENDED_KEY_USAGE_free(eku);
	cr_expect_eq(EVP_PKEY_get_bits(c->key), 256);
	cr_expect(EVP_PKEY_is_a(c->key, "EC"));
	cr_expect_eq(X509_check_private_key(c->cert, c->key), 1, "the key is not the SVID's");
	cr_expect_eq(cert_time(X509_get0_notBefore(c->cert)), now - SVIDS_BACKDATE);
	cr_expect_eq(cert_time(X509_get0_notAfter(c->cert)), now + 3600);
	cr_expect_eq(c->not_after, now + 3600);
	cr_expect_eq(sk_X509_num(c->chain), 1, "the chain is the node CA");
	cr_expect_eq(X509_cmp(sk_X509_value(c->chain, 0), ca.node), 0);
	svids_cred_put(c);
	svids_free(s);
}

Test(svids, node_has_its_own_svid)
{
	struct svids *s = store(3600);
	struct svids_cred *c = svids_get(s, NODEID);
	struct svid_result res;

	cr_expect_str_eq(svids_node_id(s), NODEID);
	cr_assert_not_null(c, "no SVID for the node");
	cr_expect_eq(verify(c, now, NODEID, &res), SVID_OK);
	cr_expect_eq(svids_count(s), 1);
	svids_cred_put(c);
	svids_free(s);
}

Test(svids, svid_never_outlives_the_node_ca)
{
	struct svids *s;
	struct svids_cred *c;
	time_t ca_end;

	at_ca_free(&ca);
	cr_assert_eq(at_ca_make(TD, now, 600, &ca), 0);	/* the node CA ends in 10 minutes */
	s = store(3600);
	c = svids_get(s, NODEID);
	cr_assert_eq(ca_cert_not_after(ca.node, &ca_end), 0);
	cr_expect_eq(cert_time(X509_get0_notAfter(c->cert)), ca_end);
	cr_expect_eq(c->not_after, ca_end);
	svids_cred_put(c);
	svids_free(s);
}

Test(svids, expired_node_ca_mints_nothing)
{
	struct svids_config cfg;
	struct svids *s = NULL;

	at_ca_free(&ca);
	cr_assert_eq(at_ca_make(TD, now, -10, &ca), 0);	/* ended ten seconds ago */
	cfg = config(3600);
	cr_expect_eq(svids_new(&cfg, now, &s, why, sizeof(why)), -EKEYEXPIRED);
	cr_expect(strstr(why, "no longer valid"), "%s", why);
	cr_expect_null(s);
}

Test(svids, bad_configurations_are_refused_with_a_reason)
{
	struct svids_config cfg;
	struct svids *s = NULL;
	struct at_ca other;

	cfg = config(3600);
	cfg.trust_domain = "b.test";
	cr_expect_eq(svids_new(&cfg, now, &s, why, sizeof(why)), -EINVAL);
	cr_expect(strstr(why, "belongs to trust domain 'a.test'"), "%s", why);

	cr_assert_eq(at_ca_make(TD, now, 86400, &other), 0);
	cfg = config(3600);
	cfg.ca_key = other.node_key;
	cr_expect_eq(svids_new(&cfg, now, &s, why, sizeof(why)), -EINVAL);
	cr_expect(strstr(why, "not the node CA's"), "%s", why);
	at_ca_free(&other);

	cfg = config(3600);
	cfg.ca = ca.root;	/* a CA, but it is the root: fine for signing, still a CA */
	cfg.ca_key = ca.root_key;
	cfg.node_name = "a/b";
	cr_expect_eq(svids_new(&cfg, now, &s, why, sizeof(why)), -EINVAL);
	cr_expect(strstr(why, "node name 'a/b'"), "%s", why);

	cfg = config(SVIDS_TTL_MIN - 1);
	cr_expect_eq(svids_new(&cfg, now, &s, why, sizeof(why)), -EINVAL);
	cr_expect(strstr(why, "TTL"), "%s", why);
	cr_expect_null(s);
}

Test(svids, sync_mints_and_drops_and_keeps_to_its_trust_domain)
{
	struct svids *s = store(3600);
	const char *both[] = { WEB, DB }, *db[] = { DB }, *foreign[] = { "spiffe://b.test/web" };
	struct svids_cred *web;

	cr_assert_eq(svids_sync(s, both, 2, now, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(svids_count(s), 3);
	web = svids_get(s, WEB);
	cr_assert_eq(svids_sync(s, db, 1, now, why, sizeof(why)), 0);
	cr_expect_eq(svids_count(s), 2);
	cr_expect_null(svids_get(s, WEB), "a workload no longer listed keeps its SVID");
	cr_expect_eq(X509_check_private_key(web->cert, web->key), 1, "a held SVID was freed");
	svids_cred_put(web);

	cr_expect_eq(svids_sync(s, foreign, 1, now, why, sizeof(why)), -EINVAL);
	cr_expect(strstr(why, "vouches only for its own"), "%s", why);
	cr_expect_eq(svids_count(s), 2, "a refused sync changed the store");
	svids_free(s);
}

Test(svids, renewal_at_half_life_with_jitter)
{
	struct svids *s = store(1000);
	struct svids_cred *old = svids_get(s, NODEID), *new;
	struct svid_result res;

	cr_expect_geq(old->renew_at, now + 500 - 100);
	cr_expect_leq(old->renew_at, now + 500 + 100);
	cr_expect_eq(svids_next_renewal(s), old->renew_at);
	cr_expect_eq(svids_renew(s, old->renew_at - 1, why, sizeof(why)), 0, "renewed early");
	cr_expect_eq(svids_renew(s, old->renew_at, why, sizeof(why)), 1, "%s", why);
	new = svids_get(s, NODEID);
	cr_expect_neq(new->serial, old->serial);
	cr_expect_eq(new->not_after, old->renew_at + 1000);
	cr_expect_eq(X509_cmp(new->cert, old->cert) != 0, 1);
	/* the old SVID, still held by an exchange, stays intact and valid */
	cr_expect_eq(verify(old, old->renew_at, NODEID, &res), SVID_OK);
	cr_expect_eq(verify(new, old->renew_at, NODEID, &res), SVID_OK);
	svids_cred_put(old);
	svids_cred_put(new);
	svids_free(s);
}

Test(svids, renewal_after_the_node_ca_expired_keeps_the_old_svid)
{
	struct svids *s;
	struct svids_cred *c, *again;
	time_t ca_end;

	at_ca_free(&ca);
	cr_assert_eq(at_ca_make(TD, now, 100, &ca), 0);
	s = store(3600);	/* cut to 100 s: renewal at about 50 s */
	c = svids_get(s, NODEID);
	cr_assert_eq(ca_cert_not_after(ca.node, &ca_end), 0);
	cr_expect_eq(svids_renew(s, ca_end, why, sizeof(why)), -EKEYEXPIRED);
	cr_expect(strstr(why, "no longer valid"), "%s", why);
	again = svids_get(s, NODEID);
	cr_expect_eq(again->serial, c->serial, "a failed renewal dropped the SVID");
	cr_expect_gt(svids_next_renewal(s), ca_end, "no later attempt scheduled");
	cr_expect_leq(svids_next_renewal(s), ca_end + SVIDS_RETRY_MAX);
	svids_cred_put(again);
	svids_cred_put(c);
	svids_free(s);
}
