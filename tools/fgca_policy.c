// SPDX-License-Identifier: Apache-2.0
/*
 * fedguard-ca policy-key: the mesh's policy signing key, an Ed25519 key
 * pair (docs/identity.md, "The policy key"). policy.key signs policy
 * documents (fedguardctl policy sign); policy.pub is what every agent of
 * the mesh is given (fedguardd --policy-key).
 */
#include <errno.h>
#include <stdio.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "fgca.h"
#include "log.h"
#include "policy_sign.h"
#include "ssl_cleanup.h"

struct fgca_policy_args {
	const char *out;
	bool force, json;
};

static int fgca_policy_parse(const struct fgca_cmd *cmd, int argc, char **argv,
			     struct fgca_policy_args *a)
{
	int c;

	while ((c = fgca_getopt(cmd, argc, argv, &a->json)) != -1) {
		if (c == FGCA_OPT_OUT)
			a->out = optarg;
		else if (c == FGCA_OPT_FORCE)
			a->force = true;
		else
			return c < 0 ? -c : c; /* FGCA_HELP or FGCA_USAGE */
	}
	if (optind < argc)
		return fgca_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	if (!a->out)
		return fgca_usage_error(cmd, "--out is required");
	return 0;
}

static void fgca_policy_report(bool json, const char *fp, const char *key, const char *pub)
{
	struct json_object *o;

	if (!json) {
		printf("made the policy key %s (Ed25519):\n  %-16s %s\n  %-16s %s\n", fp,
		       "private key", key, "public key", pub);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "kind", json_object_new_string("policy-key"));
	json_object_object_add(o, "algorithm", json_object_new_string(POLICY_SIG_ALGORITHM));
	json_object_object_add(o, "fingerprint", json_object_new_string(fp));
	json_object_object_add(o, "key", json_object_new_string(key));
	json_object_object_add(o, "public_key", json_object_new_string(pub));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static int fgca_policy_key(const struct fgca_cmd *cmd, int argc, char **argv)
{
	static const char *const files[] = {FGCA_POLICY_KEY, FGCA_POLICY_PUB, NULL};
	struct fgca_policy_args a = {};
	_cleanup_evp_pkey_ EVP_PKEY *key = NULL;
	char fp[POLICY_KEY_FP_MAX], key_path[PATH_MAX], pub_path[PATH_MAX];
	int r;

	r = fgca_policy_parse(cmd, argc, argv, &a);
	if (r)
		return r;

	r = fgca_check_absent(a.out, files, a.force);
	if (!r)
		r = fgca_mkdir(a.out);
	if (!r)
		r = fgca_path(key_path, a.out, FGCA_POLICY_KEY);
	if (!r)
		r = fgca_path(pub_path, a.out, FGCA_POLICY_PUB);
	if (r)
		return r;

	r = policy_key_generate(&key);
	if (!r)
		r = policy_key_fingerprint(key, fp);
	if (r)
		return log_error_errno(r, "cannot make an Ed25519 key");

	/* The private key first: a public key alone would sign nothing. */
	r = fgca_write_key(a.out, FGCA_POLICY_KEY, key, a.force);
	if (!r)
		r = fgca_write_pubkey(a.out, FGCA_POLICY_PUB, key, a.force);
	if (r)
		return r;
	fgca_policy_report(a.json, fp, key_path, pub_path);
	return 0;
}

const struct fgca_cmd fgca_cmd_policy_key = {
	.name = "policy-key",
	.synopsis = "--out DIR [--force]",
	.help = "create the mesh's policy signing key (Ed25519): DIR/policy.key and DIR/policy.pub",
	.opts_help =
		"  --out DIR               where to write policy.key and policy.pub (created if missing)\n"
		"  --force                 replace existing files\n",
	.opts =
		(const struct option[]){
			{"out", required_argument, NULL, FGCA_OPT_OUT},
			{"force", no_argument, NULL, FGCA_OPT_FORCE},
			{},
		},
	.run = fgca_policy_key,
};
