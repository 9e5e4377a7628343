// SPDX-License-Identifier: Apache-2.0
/* fedguard-ca init, issue-node and svid: the commands that issue certificates. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ca.h"
#include "cleanup.h"
#include "fgca.h"
#include "log.h"
#include "ssl_cleanup.h"
#include "svid.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum {
	/*
	 * Every certificate starts a minute in the past, so that a peer whose
	 * clock is slightly behind does not see it as not yet valid.
	 */
	FGCA_BACKDATE = 60,
	FGCA_DAY = 86400,
	FGCA_ROOT_DAYS = 3650,
	FGCA_NODE_DAYS = 365,
	FGCA_DAYS_MAX = 36500,
	FGCA_SVID_TTL = 3600,
	FGCA_TTL_MIN = 60,
};

/* What the issuing commands are given. */
struct fgca_args {
	const char *td, *out, *ca, *node, *spiffe_id;
	uint64_t days, ttl;
	bool force, json;
};

/* Parses cmd's options into a; no positional argument is accepted. */
static int fgca_parse(const struct fgca_cmd *cmd, int argc, char **argv, struct fgca_args *a)
{
	int c, r = 0;

	while (!r && (c = fgca_getopt(cmd, argc, argv, &a->json)) != -1) {
		switch (c) {
		case FGCA_OPT_TRUST_DOMAIN:
			a->td = optarg;
			break;
		case FGCA_OPT_OUT:
			a->out = optarg;
			break;
		case FGCA_OPT_CA:
			a->ca = optarg;
			break;
		case FGCA_OPT_NODE:
			a->node = optarg;
			break;
		case FGCA_OPT_SPIFFE_ID:
			a->spiffe_id = optarg;
			break;
		case FGCA_OPT_FORCE:
			a->force = true;
			break;
		case FGCA_OPT_DAYS:
			r = fgca_parse_u64(cmd, "--days", optarg, 1, FGCA_DAYS_MAX, &a->days);
			break;
		case FGCA_OPT_TTL:
			r = fgca_parse_u64(cmd, "--ttl", optarg, FGCA_TTL_MIN,
					   (uint64_t)FGCA_DAYS_MAX * FGCA_DAY, &a->ttl);
			break;
		default:
			return c < 0 ? -c : c; /* FGCA_HELP or FGCA_USAGE */
		}
	}
	if (!r && optind < argc)
		r = fgca_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	return r;
}

/* Fails with a usage error when a required option is missing. */
static int fgca_require(const struct fgca_cmd *cmd, const char *value, const char *opt)
{
	return value ? 0 : fgca_usage_error(cmd, "%s is required", opt);
}

/* not_after, or the issuer's notAfter when that is earlier (with a warning). */
static time_t fgca_cap_expiry(const struct fgca_issuer *is, time_t not_after)
{
	char t1[32], t2[32];
	time_t end;

	if (ca_cert_not_after(is->cert, &end) || not_after <= end)
		return not_after;
	log_warn("'%s' expires at %s, before the requested %s: the new certificate expires with it",
		 is->cert_path, fgca_time(end, t1, sizeof(t1)),
		 fgca_time(not_after, t2, sizeof(t2)));
	return end;
}

/* A new key and a certificate of req signed by issuer (NULL: self-signed). */
static int fgca_issue(const struct ca_request *req, const struct fgca_issuer *issuer,
		      EVP_PKEY **key_out, X509 **cert_out)
{
	_cleanup_evp_pkey_ EVP_PKEY *key = NULL;
	char why[SVID_WHY_MAX];
	int r;

	r = ca_key_new(&key);
	if (r)
		return log_error_errno(r, "cannot make an ECDSA P-256 key");
	r = ca_issue(req, key, issuer ? issuer->cert : NULL, issuer ? issuer->key : NULL, cert_out,
		     why, sizeof(why));
	if (r) {
		log_error("cannot issue a certificate for '%s': %s", req->spiffe_id, why);
		return r;
	}
	*key_out = take_ptr(key);
	return 0;
}

/*
 * Checks that what was just issued validates as an SVID of id against
 * anchor, so that no file is written for a chain a peer would reject.
 */
static int fgca_self_check(STACK_OF(X509) *chain, X509 *anchor, const char *td, const char *id,
			   time_t now)
{
	_cleanup_x509_stack_ STACK_OF(X509) *roots = sk_X509_new_null();
	struct svid_td_roots d = {td, roots};
	struct svid_trust trust = {&d, 1};
	char why[SVID_WHY_MAX];
	int r;

	if (fgca_push(roots, anchor))
		return log_error_errno(-ENOMEM, "cannot check the new SVID");
	r = svid_verify(chain, &trust, id, now, NULL, why, sizeof(why));
	if (r) {
		log_error("the new SVID of '%s' does not validate: %s", id, why);
		return r < 0 ? r : -EPROTO;
	}
	return 0;
}

static int fgca_init(const struct fgca_cmd *cmd, int argc, char **argv)
{
	static const char *const files[] = {FGCA_ROOT_CERT, FGCA_ROOT_KEY, NULL};
	struct fgca_args a = {.days = FGCA_ROOT_DAYS};
	_cleanup_x509_stack_ STACK_OF(X509) *certs = sk_X509_new_null();
	_cleanup_evp_pkey_ EVP_PKEY *key = NULL;
	char id[SPIFFE_ID_MAX + 1], why[SPIFFE_WHY_MAX];
	struct fgca_file out[2] = {{"certificate"}, {"key"}};
	struct ca_request req = {.kind = CA_ROOT, .common_name = "fedguard root CA"};
	X509 *cert = NULL;
	time_t now = time(NULL);
	int r;

	r = fgca_parse(cmd, argc, argv, &a);
	if (!r)
		r = fgca_require(cmd, a.td, "--trust-domain");
	if (!r)
		r = fgca_require(cmd, a.out, "--out");
	if (r)
		return r;
	if (spiffe_td_valid(a.td, why, sizeof(why)))
		return fgca_usage_error(cmd, "--trust-domain '%s': %s", a.td, why);

	r = fgca_check_absent(a.out, files, a.force);
	if (!r)
		r = fgca_mkdir(a.out);
	if (r)
		return r;

	snprintf(id, sizeof(id), "spiffe://%s", a.td);
	req.spiffe_id = id;
	req.not_before = now - FGCA_BACKDATE;
	req.not_after = now + (time_t)a.days * FGCA_DAY;
	r = fgca_issue(&req, NULL, &key, &cert);
	if (r)
		return r;
	r = fgca_push(certs, cert);
	X509_free(cert);
	if (r)
		return log_error_errno(r, "cannot issue the root CA");

	r = fgca_write_key(a.out, FGCA_ROOT_KEY, key, a.force);
	if (!r)
		r = fgca_write_certs(a.out, FGCA_ROOT_CERT, certs, a.force);
	if (r)
		return r;
	fgca_path(out[0].path, a.out, FGCA_ROOT_CERT);
	fgca_path(out[1].path, a.out, FGCA_ROOT_KEY);
	fgca_report(a.json, "root", id, a.td, req.not_after, out, ARRAY_SIZE(out));
	return 0;
}

const struct fgca_cmd fgca_cmd_init = {
	.name = "init",
	.synopsis = "--trust-domain TD --out DIR [--days N] [--force]",
	.help = "create the root CA of a trust domain: DIR/ca.pem and DIR/ca.key",
	.opts_help =
		"  --trust-domain TD       the trust domain, e.g. example.org\n"
		"  --out DIR               where to write ca.pem and ca.key (created if missing)\n"
		"  --days N                validity in days (default 3650)\n"
		"  --force                 replace existing files\n",
	.opts =
		(const struct option[]){
			{"trust-domain", required_argument, NULL, FGCA_OPT_TRUST_DOMAIN},
			{"out", required_argument, NULL, FGCA_OPT_OUT},
			{"days", required_argument, NULL, FGCA_OPT_DAYS},
			{"force", no_argument, NULL, FGCA_OPT_FORCE},
			{},
		},
	.run = fgca_init,
};

/*
 * The node's SPIFFE ID, spiffe://TD/fedguard/node/NAME, into id: NAME is one
 * path segment. 0 or FGCA_USAGE.
 */
static int fgca_node_id(const struct fgca_cmd *cmd, const char *td, const char *name, char *id)
{
	char why[SPIFFE_WHY_MAX];

	if (strchr(name, '/'))
		return fgca_usage_error(
			cmd, "--node '%s': a node name is one path segment, without '/'", name);
	if (snprintf(id, SPIFFE_ID_MAX + 1, "spiffe://%s/fedguard/node/%s", td, name) >
	    SPIFFE_ID_MAX)
		return fgca_usage_error(cmd, "--node '%s': the node's SPIFFE ID would be too long",
					name);
	if (spiffe_parse(id, NULL, why, sizeof(why)))
		return fgca_usage_error(cmd, "--node '%s': not valid in a SPIFFE ID ('%s'): %s",
					name, id, why);
	return 0;
}

/* The node CA and the node's SVID, both valid until not_after. */
struct fgca_node {
	EVP_PKEY *ca_key, *key;
	X509 *ca_cert, *cert;
};

static void fgca_node_free(struct fgca_node *n)
{
	EVP_PKEY_free(n->ca_key);
	EVP_PKEY_free(n->key);
	X509_free(n->ca_cert);
	X509_free(n->cert);
}

static int fgca_node_issue(const struct fgca_issuer *root, const char *name, const char *id,
			   time_t now, time_t not_after, struct fgca_node *n)
{
	struct fgca_issuer node_ca = {.is_root = false};
	char td_id[SPIFFE_ID_MAX + 1], ca_cn[64], cn[64];
	struct ca_request req;
	int r;

	snprintf(td_id, sizeof(td_id), "spiffe://%s", root->td);
	snprintf(ca_cn, sizeof(ca_cn), "fedguard node CA %s", name);
	snprintf(cn, sizeof(cn), "fedguard node %s", name);
	req = (struct ca_request){CA_NODE, td_id, ca_cn, now - FGCA_BACKDATE, not_after};
	r = fgca_issue(&req, root, &n->ca_key, &n->ca_cert);
	if (r)
		return r;
	node_ca.cert = n->ca_cert;
	node_ca.key = n->ca_key;
	req = (struct ca_request){CA_LEAF, id, cn, now - FGCA_BACKDATE, not_after};
	return fgca_issue(&req, &node_ca, &n->key, &n->cert);
}

static int fgca_node_write(const struct fgca_args *a, struct fgca_node *n, STACK_OF(X509) *chain)
{
	_cleanup_x509_stack_ STACK_OF(X509) *ca_file = sk_X509_new_null();
	int r;

	if (fgca_push(ca_file, n->ca_cert))
		return log_error_errno(-ENOMEM, "cannot write the node's files");
	r = fgca_write_key(a->out, FGCA_NODE_CA_KEY, n->ca_key, a->force);
	if (!r)
		r = fgca_write_key(a->out, FGCA_NODE_KEY, n->key, a->force);
	if (!r)
		r = fgca_write_certs(a->out, FGCA_NODE_CA_CERT, ca_file, a->force);
	if (!r)
		r = fgca_write_certs(a->out, FGCA_NODE_CERT, chain, a->force);
	return r;
}

/* Refuses an output directory that holds a root CA: see fgca_issuer_kind(). */
static int fgca_not_root_dir(const char *dir)
{
	char path[PATH_MAX];

	if (fgca_path(path, dir, FGCA_ROOT_CERT))
		return -ENAMETOOLONG;
	if (access(path, F_OK) == 0) {
		log_error(
			"'%s' holds a root CA (%s): write a node's files to a directory of their own",
			dir, path);
		return -EEXIST;
	}
	return 0;
}

static int fgca_issue_node_files(const struct fgca_args *a, const struct fgca_issuer *root,
				 const char *id)
{
	static const char *const files[] = {FGCA_NODE_CA_CERT, FGCA_NODE_CA_KEY, FGCA_NODE_CERT,
					    FGCA_NODE_KEY, NULL};
	_cleanup_x509_stack_ STACK_OF(X509) *chain = sk_X509_new_null();
	struct fgca_file out[4] = {{"ca_certificate"}, {"ca_key"}, {"certificate"}, {"key"}};
	struct fgca_node n = {};
	time_t now = time(NULL);
	time_t not_after = fgca_cap_expiry(root, now + (time_t)a->days * FGCA_DAY);
	int r;

	r = fgca_not_root_dir(a->out);
	if (!r)
		r = fgca_check_absent(a->out, files, a->force);
	if (!r)
		r = fgca_mkdir(a->out);
	if (!r)
		r = fgca_node_issue(root, a->node, id, now, not_after, &n);
	if (!r && (fgca_push(chain, n.cert) || fgca_push(chain, n.ca_cert)))
		r = log_error_errno(-ENOMEM, "cannot issue the node's certificates");
	if (!r)
		r = fgca_self_check(chain, root->cert, root->td, id, now);
	if (!r)
		r = fgca_node_write(a, &n, chain);
	fgca_node_free(&n);
	if (r)
		return r;
	fgca_path(out[0].path, a->out, FGCA_NODE_CA_CERT);
	fgca_path(out[1].path, a->out, FGCA_NODE_CA_KEY);
	fgca_path(out[2].path, a->out, FGCA_NODE_CERT);
	fgca_path(out[3].path, a->out, FGCA_NODE_KEY);
	fgca_report(a->json, "node", id, root->td, not_after, out, ARRAY_SIZE(out));
	return 0;
}

static int fgca_issue_node(const struct fgca_cmd *cmd, int argc, char **argv)
{
	struct fgca_args a = {.days = FGCA_NODE_DAYS};
	struct fgca_issuer root;
	char id[SPIFFE_ID_MAX + 1];
	int r;

	r = fgca_parse(cmd, argc, argv, &a);
	if (!r)
		r = fgca_require(cmd, a.ca, "--ca");
	if (!r)
		r = fgca_require(cmd, a.node, "--node");
	if (!r)
		r = fgca_require(cmd, a.out, "--out");
	if (r)
		return r;

	r = fgca_issuer_load(a.ca, true, &root);
	if (r)
		return r;
	r = fgca_node_id(cmd, root.td, a.node, id);
	if (!r)
		r = fgca_issue_node_files(&a, &root, id);
	fgca_issuer_free(&root);
	return r;
}

const struct fgca_cmd fgca_cmd_issue_node = {
	.name = "issue-node",
	.synopsis = "--ca DIR --node NAME --out DIR [--days N] [--force]",
	.help = "issue a node's signing CA and the node's own SVID, signed by the root CA in --ca",
	.opts_help =
		"  --ca DIR                the root CA's directory (fedguard-ca init)\n"
		"  --node NAME             the node's name: its SPIFFE ID is spiffe://TD/fedguard/node/NAME\n"
		"  --out DIR               where to write node-ca.pem, node-ca.key, node.pem, node.key\n"
		"  --days N                validity in days (default 365, at most the root's)\n"
		"  --force                 replace existing files\n",
	.opts =
		(const struct option[]){
			{"ca", required_argument, NULL, FGCA_OPT_CA},
			{"node", required_argument, NULL, FGCA_OPT_NODE},
			{"out", required_argument, NULL, FGCA_OPT_OUT},
			{"days", required_argument, NULL, FGCA_OPT_DAYS},
			{"force", no_argument, NULL, FGCA_OPT_FORCE},
			{},
		},
	.run = fgca_issue_node,
};

/* The SVID's chain: the leaf, then the node CA when a node CA issued it. */
static int fgca_svid_chain(const struct fgca_issuer *is, X509 *leaf, STACK_OF(X509) **out)
{
	_cleanup_x509_stack_ STACK_OF(X509) *chain = sk_X509_new_null();

	if (fgca_push(chain, leaf) || (!is->is_root && fgca_push(chain, is->cert)))
		return log_error_errno(-ENOMEM, "cannot issue the SVID");
	*out = take_ptr(chain);
	return 0;
}

static int fgca_svid_files(const struct fgca_args *a, const struct fgca_issuer *is)
{
	static const char *const files[] = {FGCA_SVID_CERT, FGCA_SVID_KEY, NULL};
	_cleanup_x509_stack_ STACK_OF(X509) *chain = NULL;
	_cleanup_evp_pkey_ EVP_PKEY *key = NULL;
	_cleanup_x509_ X509 *leaf = NULL;
	struct fgca_file out[2] = {{"certificate"}, {"key"}};
	time_t now = time(NULL);
	struct ca_request req = {CA_LEAF, a->spiffe_id, "fedguard SVID", now - FGCA_BACKDATE,
				 fgca_cap_expiry(is, now + (time_t)a->ttl)};
	int r;

	r = fgca_check_absent(a->out, files, a->force);
	if (!r)
		r = fgca_mkdir(a->out);
	if (!r)
		r = fgca_issue(&req, is, &key, &leaf);
	if (!r)
		r = fgca_svid_chain(is, leaf, &chain);
	if (!r)
		r = fgca_self_check(chain, is->cert, is->td, a->spiffe_id, now);
	if (!r)
		r = fgca_write_key(a->out, FGCA_SVID_KEY, key, a->force);
	if (!r)
		r = fgca_write_certs(a->out, FGCA_SVID_CERT, chain, a->force);
	if (r)
		return r;
	fgca_path(out[0].path, a->out, FGCA_SVID_CERT);
	fgca_path(out[1].path, a->out, FGCA_SVID_KEY);
	fgca_report(a->json, "svid", a->spiffe_id, is->td, req.not_after, out, ARRAY_SIZE(out));
	return 0;
}

/* The ID is valid, names a workload and is in the issuer's trust domain. */
static int fgca_svid_check_id(const struct fgca_cmd *cmd, const struct fgca_issuer *is,
			      const char *id)
{
	char why[SPIFFE_WHY_MAX];
	struct spiffe_id parsed;

	if (spiffe_parse(id, &parsed, why, sizeof(why)))
		return fgca_usage_error(cmd, "--spiffe-id '%s': %s", id, why);
	if (!parsed.path_len)
		return fgca_usage_error(
			cmd,
			"--spiffe-id '%s' has no path: an SVID names a workload, spiffe://TD/PATH",
			id);
	if (!spiffe_in_trust_domain(&parsed, is->td)) {
		log_error(
			"'%s' is not in trust domain '%s' of '%s': a trust domain vouches only for its own IDs",
			id, is->td, is->cert_path);
		return -EPERM;
	}
	return 0;
}

static int fgca_svid(const struct fgca_cmd *cmd, int argc, char **argv)
{
	struct fgca_args a = {.ttl = FGCA_SVID_TTL};
	struct fgca_issuer is;
	int r;

	r = fgca_parse(cmd, argc, argv, &a);
	if (!r)
		r = fgca_require(cmd, a.ca, "--ca");
	if (!r)
		r = fgca_require(cmd, a.spiffe_id, "--spiffe-id");
	if (!r)
		r = fgca_require(cmd, a.out, "--out");
	if (r)
		return r;

	r = fgca_issuer_load(a.ca, false, &is);
	if (r)
		return r;
	r = fgca_svid_check_id(cmd, &is, a.spiffe_id);
	if (!r)
		r = fgca_svid_files(&a, &is);
	fgca_issuer_free(&is);
	return r;
}

const struct fgca_cmd fgca_cmd_svid = {
	.name = "svid",
	.synopsis = "--ca DIR --spiffe-id ID --out DIR [--ttl SECONDS] [--force]",
	.help = "issue an X.509-SVID and its key, signed by the root or node CA in --ca",
	.opts_help =
		"  --ca DIR                a root CA's directory (ca.pem) or a node's (node-ca.pem)\n"
		"  --spiffe-id ID          the SVID's SPIFFE ID, in the CA's trust domain\n"
		"  --out DIR               where to write svid.pem (the chain) and svid.key\n"
		"  --ttl SECONDS           validity (default 3600, at least 60, at most the CA's)\n"
		"  --force                 replace existing files\n",
	.opts =
		(const struct option[]){
			{"ca", required_argument, NULL, FGCA_OPT_CA},
			{"spiffe-id", required_argument, NULL, FGCA_OPT_SPIFFE_ID},
			{"out", required_argument, NULL, FGCA_OPT_OUT},
			{"ttl", required_argument, NULL, FGCA_OPT_TTL},
			{"force", no_argument, NULL, FGCA_OPT_FORCE},
			{},
		},
	.run = fgca_svid,
};
