// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardctl sockets list, auth list|flush and bundle set|del|list: the
 * identities the kernel binds sockets to, the pairs authenticated by mTLS,
 * and the trust bundles of the agent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bundle.h"
#include "cleanup.h"
#include "ctl.h"
#include "ctl_client.h"
#include "ctl_util.h"
#include "log.h"

/* Runs a command without arguments and prints its result as JSON or by print(). */
/* --- sockets ---------------------------------------------------------------------------------- */

static void print_sockets(struct json_object *result)
{
	static const char *const cols[] = {"cookie", "local",    "peer", "state", "direction",
					   "port",   "protocol", "auth", NULL};
	_cleanup_json_ struct json_object *rows = json_object_new_array();
	struct json_object *list = ctl_jget(result, "sockets"), *row;
	char cell[8][SPIFFE_ID_MAX + 1];

	if (!ctl_jlen(list)) {
		printf("no socket is bound\n");
		return;
	}
	ctl_table_row(rows, 8, "COOKIE", "LOCAL", "PEER", "STATE", "DIRECTION", "PORT", "PROTO",
		      "AUTH");
	for (size_t i = 0; i < ctl_jlen(list); i++) {
		struct json_object *s = json_object_array_get_idx(list, i);

		row = json_object_new_array();
		for (int c = 0; cols[c]; c++)
			json_object_array_add(row, json_object_new_string(
							   ctl_jfield(s, cols[c], cell[c], sizeof(cell[c]))));
		json_object_array_add(rows, row);
	}
	ctl_table_print(rows);
}

static int sockets_list(struct ctl *ctl, int argc, char **argv)
{
	return ctl_run_simple(ctl, "sockets list", "sockets.list", argc, argv, print_sockets);
}

/* --- auth ------------------------------------------------------------------------------------- */

static void print_auth(struct json_object *result)
{
	_cleanup_json_ struct json_object *rows = json_object_new_array();
	struct json_object *list = ctl_jget(result, "auth");
	char local[SPIFFE_ID_MAX + 1], peer[SPIFFE_ID_MAX + 1], node[64], left[32];

	if (!ctl_jlen(list)) {
		printf("no pair is authenticated\n");
		return;
	}
	ctl_table_row(rows, 4, "LOCAL", "PEER", "PEER NODE", "EXPIRES IN");
	for (size_t i = 0; i < ctl_jlen(list); i++) {
		struct json_object *a = json_object_array_get_idx(list, i);

		if (json_object_get_boolean(ctl_jget(a, "valid")))
			snprintf(left, sizeof(left), "%.0f s",
				 json_object_get_double(ctl_jget(a, "expires_in")));
		else
			snprintf(left, sizeof(left), "expired");
		ctl_table_row(rows, 4, ctl_jfield(a, "local", local, sizeof(local)),
			      ctl_jfield(a, "peer", peer, sizeof(peer)),
			      ctl_jfield(a, "peer_node", node, sizeof(node)), left);
	}
	ctl_table_print(rows);
}

static int auth_list(struct ctl *ctl, int argc, char **argv)
{
	return ctl_run_simple(ctl, "auth list", "auth.list", argc, argv, print_auth);
}

static void print_flushed(struct json_object *result)
{
	printf("%lld authentications removed: every pair authenticates again\n",
	       (long long)json_object_get_int64(ctl_jget(result, "removed")));
}

static int auth_flush(struct ctl *ctl, int argc, char **argv)
{
	return ctl_run_simple(ctl, "auth flush", "auth.flush", argc, argv, print_flushed);
}

/* --- bundle ------------------------------------------------------------------------------------ */

/* The bundle document of a file: a SPIFFE bundle as it is, PEM roots made into one. */
static int bundle_document(const char *td, const char *path, char **out)
{
	_cleanup_bundle_ struct bundle *b = NULL;
	char why[BUNDLE_WHY_MAX];
	size_t len;
	int r;

	r = ctl_read_file(path, BUNDLE_SIZE_MAX, out, &len);
	if (r)
		return r;
	if (strncmp(*out + strspn(*out, " \t\r\n"), "-----BEGIN", 10))
		return 0;
	free(*out);
	*out = NULL;
	r = bundle_from_pem_file(td, path, &b, why, sizeof(why));
	if (!r)
		r = bundle_write(b, out);
	if (r)
		return log_error_errno(r, "%s", why);
	return 0;
}

static int bundle_set(struct ctl *ctl, int argc, char **argv)
{
	static const char *const names[] = {"TD", "FILE", NULL};
	_cleanup_json_ struct json_object *result = NULL;
	_cleanup_free_ char *doc = NULL;
	struct json_object *args;
	char n[32], seq[32], removed[32], destroyed[32];
	int r;

	r = ctl_positional("bundle set", argc, argv, names);
	if (!r)
		r = bundle_document(argv[0], argv[1], &doc);
	if (r)
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "trust_domain", json_object_new_string(argv[0]));
	json_object_object_add(args, "document", json_object_new_string(doc));
	r = ctl_request(ctl, "bundle.set", args, &result);
	if (r)
		return r;
	if (ctl->json) {
		ctl_print_json(result);
		return 0;
	}
	printf("bundle of %s set: %s authorities, sequence %s%s; authentications removed: %s, "
	       "sockets destroyed: %s\n", argv[0],
	       ctl_jfield(result, "authorities", n, sizeof(n)),
	       ctl_jfield(result, "sequence", seq, sizeof(seq)),
	       json_object_get_boolean(ctl_jget(result, "revoked")) ? ", revoked" : "",
	       ctl_jfield(result, "auth_removed", removed, sizeof(removed)),
	       ctl_jfield(result, "sockets_destroyed", destroyed, sizeof(destroyed)));
	return 0;
}

static int bundle_del(struct ctl *ctl, int argc, char **argv)
{
	static const char *const names[] = {"TD", NULL};
	_cleanup_json_ struct json_object *result = NULL;
	struct json_object *args;
	char removed[32], destroyed[32];
	int r;

	r = ctl_positional("bundle del", argc, argv, names);
	if (r)
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "trust_domain", json_object_new_string(argv[0]));
	r = ctl_request(ctl, "bundle.del", args, &result);
	if (r)
		return r;
	if (ctl->json) {
		ctl_print_json(result);
		return 0;
	}
	printf("bundle of %s deleted; authentications removed: %s, sockets destroyed: %s\n",
	       argv[0], ctl_jfield(result, "auth_removed", removed, sizeof(removed)),
	       ctl_jfield(result, "sockets_destroyed", destroyed, sizeof(destroyed)));
	return 0;
}

static void print_bundles(struct json_object *result)
{
	_cleanup_json_ struct json_object *rows = json_object_new_array();
	struct json_object *list = ctl_jget(result, "bundles");
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1], n[32], seq[32], hint[32];

	if (!ctl_jlen(list)) {
		printf("no trust bundles (fedguardd runs without --trust-domain)\n");
		return;
	}
	ctl_table_row(rows, 6, "TRUST DOMAIN", "AUTHORITIES", "SEQUENCE", "REFRESH HINT",
		      "REVOKED", "OWN");
	for (size_t i = 0; i < ctl_jlen(list); i++) {
		struct json_object *b = json_object_array_get_idx(list, i);

		ctl_table_row(rows, 6, ctl_jfield(b, "trust_domain", td, sizeof(td)),
			      ctl_jfield(b, "authorities", n, sizeof(n)),
			      ctl_jfield(b, "sequence", seq, sizeof(seq)),
			      ctl_jfield(b, "refresh_hint", hint, sizeof(hint)),
			      json_object_get_boolean(ctl_jget(b, "revoked")) ? "yes" : "no",
			      json_object_get_boolean(ctl_jget(b, "own")) ? "yes" : "no");
	}
	ctl_table_print(rows);
}

static int bundle_list(struct ctl *ctl, int argc, char **argv)
{
	return ctl_run_simple(ctl, "bundle list", "bundle.list", argc, argv, print_bundles);
}

/* --- tables ------------------------------------------------------------------------------------- */

const struct ctl_cmd ctl_sockets_verbs[] = {
	{
		.name = "list",
		.args = "",
		.help = "list the sockets the kernel binds to identities (fg_sockets)",
		.run = sockets_list,
	},
	{},
};

const struct ctl_cmd ctl_auth_verbs[] = {
	{
		.name = "list",
		.args = "",
		.help = "list the pairs authenticated by mTLS (fg_auth) and how long they stay so",
		.run = auth_list,
	},
	{
		.name = "flush",
		.args = "",
		.help = "forget every authentication: the next packets of each pair authenticate again",
		.run = auth_flush,
	},
	{},
};

const struct ctl_cmd ctl_bundle_verbs[] = {
	{
		.name = "set",
		.args = "TD FILE",
		.help = "trust FILE (a SPIFFE bundle, or PEM roots) as trust domain TD's bundle",
		.run = bundle_set,
	},
	{
		.name = "del",
		.args = "TD",
		.help = "stop trusting TD: remove its authentications and cut its mTLS sockets",
		.run = bundle_del,
	},
	{
		.name = "list",
		.args = "",
		.help = "list the trust bundles the agent holds",
		.run = bundle_list,
	},
	{},
};
