// SPDX-License-Identifier: Apache-2.0
#include "agent.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "fed.h"
#include "loader.h"
#include "log.h"
#include "observe.h"
#include "peerauth.h"
#include "policy_sign.h"
#include "state.h"

/* Brings the maps back to the committed state after a failed change. */
static void agent_rollback(struct agent *a, struct json_object *next)
{
	char undo[PATH_MAX + 512] = "";

	if (datapath_apply(&a->dp, a->state, undo, sizeof(undo)))
		log_error("could not bring the maps back to the previous state: %s", undo);
	json_object_put(next);
}

int agent_apply(struct agent *a, struct json_object *next, struct control_error *err)
{
	char why[PATH_MAX + 512] = "";
	int r;

	state_collect(next);
	r = datapath_apply(&a->dp, next, why, sizeof(why));
	if (r) {
		agent_rollback(a, next);
		control_error_set(err, r == -EINVAL ? "invalid_argument" : "internal", "%s", why);
	}
	return r;
}

int agent_persist(struct agent *a, struct json_object *next, struct control_error *err)
{
	int r = state_save(a->state_dir, next);

	if (r) {
		agent_rollback(a, next);
		control_error_set(err, "internal", "state file in '%s': %s", a->state_dir,
				  strerror(-r));
		return r;
	}
	json_object_put(a->state);
	a->state = next;
	peerauth_state_changed(a);	/* SVIDs, and the pairs policy wants authenticated */
	fed_state_changed(a);		/* this node's records in the mesh store */
	a->state_gen++;
	return 0;
}

int agent_commit(struct agent *a, struct json_object *next, struct control_error *err)
{
	int r = agent_apply(a, next, err);

	return r ? r : agent_persist(a, next, err);
}

/*
 * With a policy key, the stored policy must be the document its stored
 * signature covers: a changed state file must not bring in a changed policy.
 */
static int agent_policy_trusted(struct agent *a)
{
	struct json_object *p, *doc, *sig;
	char why[POLICY_SIG_WHY_MAX];
	const char *text;
	int r;

	if (!a->policy_key || !json_object_object_get_ex(a->state, "policy", &p))
		return 0;
	if (!json_object_object_get_ex(p, "document", &doc) ||
	    !json_object_is_type(doc, json_type_string))
		return log_error_errno(-EINVAL, "state of '%s': the policy has no document",
				       a->state_dir);
	if (!json_object_object_get_ex(p, "signature", &sig) ||
	    !json_object_is_type(sig, json_type_string)) {
		log_error("state of '%s': the policy in force is not signed, and --policy-key "
			  "requires a signature: refusing to start, the datapath stays as pinned "
			  "(see docs/policy.md, \"Signed policies\")", a->state_dir);
		return -EKEYREJECTED;
	}
	text = json_object_get_string(doc);
	r = policy_verify(text, strlen(text), json_object_get_string(sig), a->policy_key, why,
			  sizeof(why));
	if (r)
		return log_error_errno(r, "state of '%s': the stored policy fails its signature "
				       "check: %s; refusing to start, the datapath stays as pinned",
				       a->state_dir, why);
	return 0;
}

int agent_restore(struct agent *a)
{
	char why[1024] = "";
	int r;

	r = state_load(a->state_dir, &a->state);
	if (!r)
		r = agent_policy_trusted(a);
	if (r)
		return r;
	r = datapath_apply(&a->dp, a->state, why, sizeof(why));
	if (r)
		return log_error_errno(r, "restoring the state of '%s': %s", a->state_dir, why);
	log_info("state of '%s' restored: %d workloads, %d endpoints, %d quarantined",
		 a->state_dir, json_object_object_length(state_section(a->state, "workloads")),
		 json_object_object_length(state_section(a->state, "endpoints")),
		 json_object_object_length(state_section(a->state, "quarantine")));
	return 0;
}

static int cmd_status(void *ctx, struct json_object *args, struct json_object *result,
		      struct control_error *err)
{
	_cleanup_policy_entries_ struct policy_entries *active = NULL;
	struct agent *a = ctx;
	struct json_object *policy, *p = json_object_new_object();
	__u32 gen = 0;

	json_object_object_add(result, "instance", json_object_new_string(a->instance));
	if (a->version)
		json_object_object_add(result, "version", json_object_new_string(a->version));
	json_object_object_add(result, "adopted", json_object_new_boolean(a->loader->adopted));
	json_object_object_add(result, "cgroup", json_object_new_string(a->loader->cgroup.path));
	json_object_object_add(result, "pin_dir", json_object_new_string(a->loader->pin_dir));
	json_object_object_add(result, "state_dir", json_object_new_string(a->state_dir));
	if (json_object_object_get_ex(a->state, "policy", &policy))
		json_object_object_add(p, "version",
				       json_object_get(json_object_object_get(policy, "version")));
	if (datapath_policy_read(&a->dp, &active, &gen) == 0) {
		json_object_object_add(p, "generation", json_object_new_int64(gen));
		json_object_object_add(p, "entries", json_object_new_int64((int64_t)active->n));
	}
	json_object_object_add(result, "policy", p);
	json_object_object_add(result, "workloads",
			       json_object_new_int(json_object_object_length(
				       state_section(a->state, "workloads"))));
	json_object_object_add(result, "endpoints",
			       json_object_new_int(json_object_object_length(
				       state_section(a->state, "endpoints"))));
	json_object_object_add(result, "quarantined",
			       json_object_new_int(json_object_object_length(
				       state_section(a->state, "quarantine"))));
	fed_status(a, result);
	peerauth_tunnel_status(a, result);
	return 0;
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* Arguments not listed are refused by control_serve() before the handler runs. */
const struct control_command agent_commands[] = {
	{ "status", cmd_status, NULL },
	{ "workload.add", cmd_workload_add, ARGS("spiffe_id", "cgroup", "ips", "netns", "labels") },
	{ "workload.del", cmd_workload_del, ARGS("spiffe_id") },
	{ "workload.list", cmd_workload_list, NULL },
	{ "endpoint.add", cmd_endpoint_add, ARGS("spiffe_id", "ips", "node", "labels") },
	{ "endpoint.del", cmd_endpoint_del, ARGS("spiffe_id") },
	{ "endpoint.list", cmd_endpoint_list, NULL },
	{ "policy.apply", cmd_policy_apply,
	  ARGS("document", "source", "dry_run", "signature", "all_entries") },
	{ "policy.show", cmd_policy_show, NULL },
	{ "policy.check", cmd_policy_check, ARGS("from", "to", "port", "protocol") },
	{ "policy.status", cmd_policy_status, NULL },
	{ "peer.list", cmd_peer_list, NULL },
	{ "quarantine.add", cmd_quarantine_add, ARGS("target", "reason") },
	{ "quarantine.del", cmd_quarantine_del, ARGS("target") },
	{ "quarantine.list", cmd_quarantine_list, NULL },
	{ "sockets.list", cmd_sockets_list, NULL },
	{ "auth.list", cmd_auth_list, NULL },
	{ "auth.flush", cmd_auth_flush, NULL },
	{ "bundle.set", cmd_bundle_set, ARGS("trust_domain", "document") },
	{ "bundle.del", cmd_bundle_del, ARGS("trust_domain") },
	{ "bundle.list", cmd_bundle_list, NULL },
	{ "observe", cmd_observe,
	  ARGS("last", "since_ms", "verdict", "reason", "identity", "trust_domain", "port", "follow"),
	  cmd_observe_take },
	{ "alerts", cmd_alerts, ARGS("last", "follow"), cmd_alerts_take },
	{},
};
