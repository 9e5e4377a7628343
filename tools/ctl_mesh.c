// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardctl peer list and policy status: the agents of the mesh as the
 * mesh store (and the links to them) show them, and which policy version
 * each one enforces.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "ctl.h"
#include "ctl_util.h"
#include "spiffe.h"

/* "12s ago" for a UNIX time, "-" for none. */
static const char *ago(struct json_object *o, const char *key, char *buf, size_t len)
{
	struct json_object *v = ctl_jget(o, key);
	long long t = v ? json_object_get_int64(v) : 0, d = (long long)time(NULL) - t;

	if (!t)
		snprintf(buf, len, "-");
	else if (d < 120)
		snprintf(buf, len, "%llds ago", d < 0 ? 0 : d);
	else if (d < 7200)
		snprintf(buf, len, "%lldm ago", d / 60);
	else
		snprintf(buf, len, "%lldh ago", d / 3600);
	return buf;
}

static void print_peers(struct json_object *result)
{
	_cleanup_json_ struct json_object *rows = json_object_new_array();
	struct json_object *list = ctl_jget(result, "peers");
	char node[256], td[SPIFFE_TRUST_DOMAIN_MAX + 1], state[64], addr[64], seen[32], pv[32];
	char seq[32], drops[32];

	if (!ctl_jlen(list)) {
		printf("no peers (fedguardd runs without --store, or the store is not read yet)\n");
		return;
	}
	ctl_table_row(rows, 8, "NODE", "TRUST DOMAIN", "STATE", "ADDRESS", "LAST SEEN",
		      "POLICY", "BUNDLE SEQ", "DROPS");
	for (size_t i = 0; i < ctl_jlen(list); i++) {
		struct json_object *p = json_object_array_get_idx(list, i);
		bool self = json_object_get_boolean(ctl_jget(p, "self"));

		snprintf(node, sizeof(node), "%s%s", json_object_get_string(ctl_jget(p, "node")),
			 self ? " (this node)" : "");
		ctl_table_row(rows, 8, node, ctl_jfield(p, "trust_domain", td, sizeof(td)),
			      ctl_jfield(p, "state", state, sizeof(state)),
			      ctl_jfield(p, "address", addr, sizeof(addr)),
			      ago(p, "last_seen", seen, sizeof(seen)),
			      ctl_jfield(p, "policy_version", pv, sizeof(pv)),
			      ctl_jfield(p, "bundle_sequence", seq, sizeof(seq)),
			      ctl_jfield(ctl_jget(p, "telemetry"), "drops", drops, sizeof(drops)));
	}
	ctl_table_print(rows);
}

static int peer_list(struct ctl *ctl, int argc, char **argv)
{
	return ctl_run_simple(ctl, "peer list", "peer.list", argc, argv, print_peers);
}

static void print_policy_status(struct json_object *result)
{
	_cleanup_json_ struct json_object *rows = json_object_new_array();
	struct json_object *list = ctl_jget(result, "agents");
	char v[32], node[256];

	printf("policy version %s in force here", ctl_jfield(result, "version", v, sizeof(v)));
	if (ctl_jget(result, "store_version"))
		printf(", version %s in the mesh store",
		       ctl_jfield(result, "store_version", v, sizeof(v)));
	printf(": %s\n", json_object_get_boolean(ctl_jget(result, "converged"))
				 ? "every agent enforces it"
				 : "not every agent enforces it yet");
	if (!ctl_jlen(list))
		return;
	ctl_table_row(rows, 2, "NODE", "VERSION");
	for (size_t i = 0; i < ctl_jlen(list); i++) {
		struct json_object *p = json_object_array_get_idx(list, i);

		ctl_table_row(rows, 2, ctl_jfield(p, "node", node, sizeof(node)),
			      ctl_jfield(p, "version", v, sizeof(v)));
	}
	ctl_table_print(rows);
}

int ctl_policy_status(struct ctl *ctl, int argc, char **argv)
{
	return ctl_run_simple(ctl, "policy status", "policy.status", argc, argv,
			      print_policy_status);
}

const struct ctl_cmd ctl_peer_verbs[] = {
	{
		.name = "list",
		.args = "",
		.help = "list the agents of the mesh and of federated meshes, and their state",
		.run = peer_list,
	},
	{},
};
