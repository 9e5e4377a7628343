// SPDX-License-Identifier: Apache-2.0
/* fedguard-ca bundle and verify: a trust domain's bundle, and judging a chain. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "bundle.h"
#include "ca.h"
#include "cleanup.h"
#include "fgca.h"
#include "log.h"
#include "ssl_cleanup.h"
#include "svid.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum {
	FGCA_REFRESH_HINT = 300, /* seconds, the default spiffe_refresh_hint */
	FGCA_BUNDLES_MAX = 64,	 /* --bundle options of one verify */
};

struct fgca_bundle_args {
	const char *ca;
	bool has_sequence, json;
	uint64_t sequence, refresh_hint;
};

static int fgca_bundle_parse(const struct fgca_cmd *cmd, int argc, char **argv,
			     struct fgca_bundle_args *a)
{
	int c, r = 0;

	while (!r && (c = fgca_getopt(cmd, argc, argv, &a->json)) != -1) {
		if (c == FGCA_OPT_CA) {
			a->ca = optarg;
		} else if (c == FGCA_OPT_SEQUENCE) {
			r = fgca_parse_u64(cmd, "--sequence", optarg, 0, INT64_MAX, &a->sequence);
			a->has_sequence = true;
		} else if (c == FGCA_OPT_REFRESH_HINT) {
			r = fgca_parse_u64(cmd, "--refresh-hint", optarg, 1, INT32_MAX,
					   &a->refresh_hint);
		} else {
			return c < 0 ? -c : c; /* FGCA_HELP or FGCA_USAGE */
		}
	}
	if (!r && optind < argc)
		r = fgca_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	if (!r && !a->ca)
		r = fgca_usage_error(cmd, "--ca is required");
	return r;
}

/*
 * The bundle of the root CA in dir: every certificate of its ca.pem (more
 * than one while a root is being replaced), all of one trust domain. The
 * key is not needed.
 */
static int fgca_root_bundle(const char *dir, struct bundle **out)
{
	_cleanup_x509_stack_ STACK_OF(X509) *certs = NULL;
	_cleanup_bundle_ struct bundle *b = NULL;
	char path[PATH_MAX], why[BUNDLE_WHY_MAX], td[SPIFFE_TRUST_DOMAIN_MAX + 1],
		first_td[SPIFFE_TRUST_DOMAIN_MAX + 1] = "";
	int i, r;

	r = fgca_path(path, dir, FGCA_ROOT_CERT);
	if (!r)
		r = svid_load_chain(path, &certs, why, sizeof(why));
	if (r) {
		log_error("%s", why);
		return r;
	}
	for (i = 0; i < sk_X509_num(certs); i++) {
		X509 *cert = sk_X509_value(certs, i);

		if (ca_cert_trust_domain(cert, i ? td : first_td, why, sizeof(why))) {
			log_error("'%s': certificate %d: %s", path, i + 1, why);
			return -EINVAL;
		}
		if (i && strcmp(td, first_td)) {
			log_error("'%s': certificate %d is of trust domain '%s', the first of '%s'",
				  path, i + 1, td, first_td);
			return -EINVAL;
		}
		if (!b && (r = bundle_new(first_td, &b)))
			return log_error_errno(r, "cannot make a bundle for '%s'", first_td);
		r = bundle_add_authority(b, cert, why, sizeof(why));
		if (r) {
			log_error("'%s': certificate %d: %s", path, i + 1, why);
			return r;
		}
	}
	*out = take_ptr(b);
	return 0;
}

static int fgca_bundle(const struct fgca_cmd *cmd, int argc, char **argv)
{
	struct fgca_bundle_args a = {.refresh_hint = FGCA_REFRESH_HINT};
	_cleanup_bundle_ struct bundle *b = NULL;
	_cleanup_free_ char *json = NULL;
	int r;

	r = fgca_bundle_parse(cmd, argc, argv, &a);
	if (r)
		return r;
	r = fgca_root_bundle(a.ca, &b);
	if (r)
		return r;

	b->has_sequence = true;
	b->sequence = a.has_sequence ? a.sequence : (uint64_t)time(NULL);
	b->has_refresh_hint = true;
	b->refresh_hint = a.refresh_hint;
	r = bundle_write(b, &json);
	if (r)
		return log_error_errno(r, "cannot write the bundle of '%s'", b->td);
	fputs(json, stdout);
	return 0;
}

const struct fgca_cmd fgca_cmd_bundle = {
	.name = "bundle",
	.synopsis = "--ca DIR [--sequence N] [--refresh-hint SECONDS]",
	.help = "print the SPIFFE bundle (JWK Set) of the root CA in --ca; the output is always JSON",
	.opts_help =
		"  --ca DIR                the root CA's directory; every certificate of its ca.pem\n"
		"  --sequence N            spiffe_sequence (default: the current Unix time)\n"
		"  --refresh-hint SECONDS  spiffe_refresh_hint (default 300)\n",
	.opts =
		(const struct option[]){
			{"ca", required_argument, NULL, FGCA_OPT_CA},
			{"sequence", required_argument, NULL, FGCA_OPT_SEQUENCE},
			{"refresh-hint", required_argument, NULL, FGCA_OPT_REFRESH_HINT},
			{},
		},
	.run = fgca_bundle,
};

/* What verify is given; the bundles are loaded from bundle_args. */
struct fgca_verify_args {
	const char *bundle_args[FGCA_BUNDLES_MAX];
	size_t n;
	const char *expected_id, *chain;
	bool json;
};

static int fgca_verify_parse(const struct fgca_cmd *cmd, int argc, char **argv,
			     struct fgca_verify_args *a)
{
	int c;

	while ((c = fgca_getopt(cmd, argc, argv, &a->json)) != -1) {
		if (c == FGCA_OPT_SPIFFE_ID) {
			a->expected_id = optarg;
		} else if (c == FGCA_OPT_BUNDLE) {
			if (a->n == FGCA_BUNDLES_MAX)
				return fgca_usage_error(cmd, "more than %d --bundle options",
							FGCA_BUNDLES_MAX);
			a->bundle_args[a->n++] = optarg;
		} else {
			return c < 0 ? -c : c; /* FGCA_HELP or FGCA_USAGE */
		}
	}
	if (optind != argc - 1)
		return fgca_usage_error(cmd, "expected one CHAIN.pem, got %d arguments",
					argc - optind);
	a->chain = argv[optind];
	if (!a->n)
		return fgca_usage_error(cmd, "at least one --bundle TD=FILE is required");
	return 0;
}

/* Whether the file starts (after blanks) with "-----BEGIN": PEM, not JSON. */
static bool fgca_is_pem(const char *path)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char buf[64] = "";
	size_t n, i = 0;

	if (!f)
		return false; /* the bundle loader reports why */
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	while (i < n && strchr(" \t\r\n", buf[i]))
		i++;
	return !strncmp(buf + i, "-----BEGIN", strlen("-----BEGIN"));
}

/*
 * One --bundle TD=FILE: a SPIFFE bundle (JSON), or a PEM file of roots.
 * 0, FGCA_USAGE, or -errno after logging.
 */
static int fgca_load_bundle(const struct fgca_cmd *cmd, const char *arg, struct bundle **out)
{
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1], why[BUNDLE_WHY_MAX];
	const char *eq = strchr(arg, '='), *path;
	int r;

	if (!eq || eq == arg || !eq[1] || (size_t)(eq - arg) > SPIFFE_TRUST_DOMAIN_MAX)
		return fgca_usage_error(cmd, "--bundle '%s': expected TD=FILE", arg);
	snprintf(td, sizeof(td), "%.*s", (int)(eq - arg), arg);
	path = eq + 1;
	if (spiffe_td_valid(td, why, sizeof(why)))
		return fgca_usage_error(cmd, "--bundle '%s': trust domain '%s': %s", arg, td, why);
	if (fgca_is_pem(path))
		r = bundle_from_pem_file(td, path, out, why, sizeof(why));
	else
		r = bundle_load_file(td, path, out, why, sizeof(why));
	if (r)
		log_error("%s", why);
	return r;
}

/* Every bundle, each trust domain once, into set. */
static int fgca_load_bundles(const struct fgca_cmd *cmd, const struct fgca_verify_args *a,
			     struct bundle_set *set)
{
	size_t i;
	int r;

	for (i = 0; i < a->n; i++) {
		_cleanup_bundle_ struct bundle *b = NULL;

		r = fgca_load_bundle(cmd, a->bundle_args[i], &b);
		if (r)
			return r;
		if (bundle_set_lookup(set, b->td))
			return fgca_usage_error(cmd, "trust domain '%s' is given twice", b->td);
		r = bundle_set_replace(set, b->td, b);
		if (r)
			return log_error_errno(r, "cannot keep the bundle of '%s'", b->td);
		b = NULL; /* the set owns it */
	}
	return 0;
}

static void fgca_json_put(json_object **o)
{
	json_object_put(*o);
}

/* Prints verify's answer: the SVID's ID and expiry, or the rejection. */
static void fgca_verify_print(bool json, int reason, const struct svid_result *res, const char *why)
{
	__attribute__((cleanup(fgca_json_put))) json_object *o = NULL;
	char expiry[32];

	if (!json) {
		if (reason)
			printf("rejected: %s\n", why);
		else
			printf("%s (trust domain '%s', valid until %s)\n", res->spiffe_id, res->td,
			       fgca_time(res->not_after, expiry, sizeof(expiry)));
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "valid", json_object_new_boolean(!reason));
	if (reason) {
		json_object_object_add(o, "reason",
				       json_object_new_string(svid_reason_name(reason)));
		json_object_object_add(o, "message", json_object_new_string(why));
	} else {
		json_object_object_add(o, "spiffe_id", json_object_new_string(res->spiffe_id));
		json_object_object_add(o, "trust_domain", json_object_new_string(res->td));
		json_object_object_add(
			o, "not_after",
			json_object_new_string(fgca_time(res->not_after, expiry, sizeof(expiry))));
		json_object_object_add(o, "not_after_unix", json_object_new_int64(res->not_after));
	}
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* svid_verify() of the chain file against the bundles of set, now. */
static int fgca_verify_chain(const struct fgca_verify_args *a, const struct bundle_set *set)
{
	struct svid_td_roots domains[FGCA_BUNDLES_MAX];
	struct svid_trust trust = {domains, bundle_set_count(set)};
	_cleanup_x509_stack_ STACK_OF(X509) *chain = NULL;
	struct svid_result res;
	char why[SVID_WHY_MAX];
	size_t i;
	int r;

	for (i = 0; i < trust.n; i++) {
		const struct bundle *b = bundle_set_at(set, i);

		domains[i] = (struct svid_td_roots){b->td, b->authorities};
	}
	r = svid_load_chain(a->chain, &chain, why, sizeof(why));
	if (r) {
		log_error("%s", why);
		return r;
	}
	r = svid_verify(chain, &trust, a->expected_id, time(NULL), &res, why, sizeof(why));
	if (r < 0) {
		log_error("cannot verify '%s': %s", a->chain, why);
		return r;
	}
	fgca_verify_print(a->json, r, &res, why);
	return r ? FGCA_REJECTED : 0;
}

static int fgca_verify(const struct fgca_cmd *cmd, int argc, char **argv)
{
	struct fgca_verify_args a = {};
	_cleanup_bundle_set_ struct bundle_set *set = NULL;
	char why[SPIFFE_WHY_MAX];
	int r;

	r = fgca_verify_parse(cmd, argc, argv, &a);
	if (r)
		return r;
	if (a.expected_id && spiffe_parse(a.expected_id, NULL, why, sizeof(why)))
		return fgca_usage_error(cmd, "--spiffe-id '%s': %s", a.expected_id, why);

	r = bundle_set_new(&set);
	if (r)
		return log_error_errno(r, "cannot keep bundles");
	r = fgca_load_bundles(cmd, &a, set);
	if (r)
		return r;
	return fgca_verify_chain(&a, set);
}

const struct fgca_cmd fgca_cmd_verify = {
	.name = "verify",
	.synopsis = "--bundle TD=FILE [--bundle TD=FILE]... [--spiffe-id ID] CHAIN.pem",
	.help = "validate an X.509-SVID chain (leaf first) against the bundle of its trust domain; exit 0 when valid, 1 when rejected",
	.opts_help =
		"  --bundle TD=FILE        trust domain TD's bundle: a SPIFFE bundle (JSON) or, when\n"
		"                          FILE starts with -----BEGIN, a PEM file of its root CAs\n"
		"  --spiffe-id ID          accept only this SPIFFE ID\n",
	.opts =
		(const struct option[]){
			{"bundle", required_argument, NULL, FGCA_OPT_BUNDLE},
			{"spiffe-id", required_argument, NULL, FGCA_OPT_SPIFFE_ID},
			{},
		},
	.run = fgca_verify,
};
