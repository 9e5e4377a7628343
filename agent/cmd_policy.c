// SPDX-License-Identifier: Apache-2.0
/*
 * policy.apply, policy.show, policy.check: the policy document in force and
 * the kernel entries compiled from it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <fedguard/abi.h>

#include "agent.h"
#include "commands.h"
#include "datapath.h"
#include "fed.h"
#include "peerauth.h"
#include "policy_compile.h"
#include "policy_parse.h"
#include "policy_sign.h"
#include "state.h"

static const char *id_name(__u32 id, const struct datapath_view *v, char *buf, size_t len)
{
	if (id == FG_ID_ANY)
		return "*";
	for (size_t i = 0; i < v->n; i++)
		if (v->ids[i].id == id)
			return v->ids[i].spiffe_id;
	snprintf(buf, len, "#%u", id);
	return buf;
}

static const char *rule_name(__u32 rule_id, const struct policy_doc *doc)
{
	if (doc && rule_id >= 1 && rule_id <= doc->n_rules)
		return doc->rules[rule_id - 1].name;
	return NULL;
}

static struct json_object *entry_json(const struct policy_entry *e, const struct datapath_view *v,
				      const struct policy_doc *doc)
{
	struct json_object *o = json_object_new_object();
	const char *rule = rule_name(e->value.rule_id, doc);
	char b1[32], b2[32];

	json_object_object_add(o, "src", json_object_new_string(id_name(e->key.src_id, v, b1, 32)));
	json_object_object_add(o, "dst", json_object_new_string(id_name(e->key.dst_id, v, b2, 32)));
	json_object_object_add(o, "port", json_object_new_int(e->key.port));
	json_object_object_add(o, "protocol", json_object_new_string(
					e->key.proto == IPPROTO_TCP ? "tcp" : "udp"));
	json_object_object_add(o, "direction", json_object_new_string(
					e->key.dir == FG_DIR_EGRESS ? "egress" : "ingress"));
	json_object_object_add(o, "action", json_object_new_string(
					e->value.action == FG_ACT_DENY ? "deny" : "allow"));
	json_object_object_add(o, "auth", json_object_new_string(
					e->value.auth == FG_AUTH_MTLS ? "required" : "none"));
	json_object_object_add(o, "transport", json_object_new_string(
					e->value.transport == FG_TRANSPORT_TUNNEL ? "encrypted"
										 : "direct"));
	json_object_object_add(o, "rule", rule ? json_object_new_string(rule)
					       : json_object_new_int64(e->value.rule_id));
	return o;
}

/* The first @max entries of @set as a JSON array. */
static struct json_object *entries_json(const struct policy_entries *set,
					const struct datapath_view *v,
					const struct policy_doc *doc, size_t max)
{
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; set && i < set->n && i < max; i++)
		json_object_array_add(a, entry_json(&set->entries[i], v, doc));
	return a;
}

/* The state's policy document, parsed; NULL (and 0) when none was applied. */
static int state_doc(struct json_object *state, struct policy_doc **doc, struct control_error *err)
{
	struct json_object *p, *t, *s;
	struct policy_error perr;
	const char *text;

	*doc = NULL;
	if (!json_object_object_get_ex(state, "policy", &p) ||
	    !json_object_object_get_ex(p, "document", &t))
		return 0;
	text = json_object_get_string(t);
	if (policy_parse_buffer(json_object_object_get_ex(p, "source", &s) ?
					json_object_get_string(s) : "policy",
				text, strlen(text), doc, &perr))
		return control_error_set(err, "internal", "stored policy: %s", perr.msg);
	return 0;
}

/*
 * Entries added and removed by @next against the map in force: their
 * counts, and the first @list_max of each. A full list of a 100k-entry swap
 * is 200,000 JSON objects, most of the cost of an apply and all of its
 * memory peak, so the lists are cut unless asked for whole. A removed entry
 * names its rule in the document in force, an added one in @doc.
 */
static int diff_result(struct agent *a, struct json_object *next, struct policy_doc *doc,
		       size_t list_max, struct json_object *result, struct control_error *err)
{
	_cleanup_policy_entries_ struct policy_entries *want = NULL, *active = NULL;
	_cleanup_policy_diff_ struct policy_diff *diff = NULL;
	_cleanup_policy_doc_ struct policy_doc *old = NULL;
	struct control_error ignored;
	struct datapath_view v;
	char why[1024];
	__u32 gen;
	int r;

	r = datapath_compile(next, &want, why, sizeof(why));
	if (r)
		return control_error_set(err, "invalid_argument", "%s", why), r;
	/* best effort: removed entries are named by rule number without it */
	if (state_doc(a->state, &old, &ignored))
		old = NULL;
	if (datapath_policy_read(&a->dp, &active, &gen))
		active = calloc(1, sizeof(*active));
	if (!active || policy_diff(active, want, &diff) || datapath_view(next, &v))
		return control_error_set(err, "internal", "out of memory");
	json_object_object_add(result, "version", json_object_new_int64((int64_t)doc->version));
	json_object_object_add(result, "entries", json_object_new_int64((int64_t)want->n));
	json_object_object_add(result, "added_count", json_object_new_int64((int64_t)diff->added.n));
	json_object_object_add(result, "removed_count",
			       json_object_new_int64((int64_t)diff->removed.n));
	json_object_object_add(result, "added", entries_json(&diff->added, &v, doc, list_max));
	json_object_object_add(result, "removed",
			       entries_json(&diff->removed, &v, old, list_max));
	json_object_object_add(result, "truncated",
			       json_object_new_boolean(diff->added.n > list_max ||
						       diff->removed.n > list_max));
	datapath_view_free(&v);
	return 0;
}

/*
 * With a policy key, a document is admitted only with a valid signature over
 * its exact text and a version higher than the one in force (no rollback).
 * The version in force is read from its document, not from the state's copy.
 * Without a key, anything goes, as before signing existed.
 */
static int policy_admit(struct agent *a, const char *text, const char *sig,
			const struct policy_doc *doc, struct control_error *err)
{
	_cleanup_policy_doc_ struct policy_doc *cur = NULL;
	char why[POLICY_SIG_WHY_MAX], fp[POLICY_KEY_FP_MAX] = "";
	const char *code = CONTROL_E_PERMISSION_DENIED;
	int r;

	if (!a->policy_key)
		return 0;
	if (!sig) {
		policy_key_fingerprint(a->policy_key, fp);
		return control_error_set(err, CONTROL_E_PERMISSION_DENIED,
					 "policy version %llu is not signed: this agent accepts "
					 "only policies signed by the mesh's policy key %s",
					 (unsigned long long)doc->version, fp);
	}
	r = policy_verify(text, strlen(text), sig, a->policy_key, why, sizeof(why));
	if (r == -EINVAL) /* a malformed text is a bad argument; the rest, a refusal */
		code = CONTROL_E_INVALID_ARGUMENT;
	else if (r == -ENOMEM)
		code = "internal";
	if (r)
		return control_error_set(err, code, "policy version %llu refused: %s",
					 (unsigned long long)doc->version, why);
	r = state_doc(a->state, &cur, err);
	if (r)
		return r;
	if (cur && doc->version <= cur->version)
		return control_error_set(err, CONTROL_E_PERMISSION_DENIED,
					 "policy version %llu is not newer than version %llu in "
					 "force: refused (rollback)",
					 (unsigned long long)doc->version,
					 (unsigned long long)cur->version);
	return 0;
}

int policy_apply_text(struct agent *a, const char *text, const char *source, const char *sig,
		      bool dry_run, size_t list_max, struct json_object *result,
		      struct control_error *err)
{
	_cleanup_policy_doc_ struct policy_doc *doc = NULL;
	struct json_object *next, *p;
	struct policy_error perr;
	__u32 gen;
	int r;

	source = source ? source : "policy";
	if (policy_parse_buffer(source, text, strlen(text), &doc, &perr))
		return control_error_set(err, "invalid_argument", "%s", perr.msg);
	r = policy_admit(a, text, sig, doc, err);
	if (r)
		return r;

	next = state_copy(a->state);
	p = json_object_new_object();
	json_object_object_add(p, "version", json_object_new_int64((int64_t)doc->version));
	json_object_object_add(p, "source", json_object_new_string(source));
	json_object_object_add(p, "document", json_object_new_string(text));
	if (sig)	/* kept, so that a restart with --policy-key checks it again */
		json_object_object_add(p, "signature", json_object_new_string(sig));
	json_object_object_add(next, "policy", p);
	r = diff_result(a, next, doc, list_max, result, err);
	if (r || dry_run) {
		json_object_put(next);
		json_object_object_add(result, "applied", json_object_new_boolean(false));
		return r;
	}
	r = agent_commit(a, next, err);
	if (r)
		return r;
	datapath_policy_generation(&a->dp, &gen);
	json_object_object_add(result, "generation", json_object_new_int64(gen));
	json_object_object_add(result, "applied", json_object_new_boolean(true));
	return 0;
}

COMMAND(cmd_policy_apply)
{
	const char *text, *source = NULL, *sig = NULL;
	bool dry_run = false, all = false;
	int r;

	r = control_arg_string(args, "document", true, &text, err);
	if (!r)
		r = control_arg_string(args, "source", false, &source, err);
	if (!r)
		r = control_arg_bool(args, "dry_run", false, &dry_run, err);
	if (!r)
		r = control_arg_string(args, "signature", false, &sig, err);
	if (!r)
		r = control_arg_bool(args, "all_entries", false, &all, err);
	if (!r)
		r = policy_apply_text(ctx, text, source, sig, dry_run,
				      all ? SIZE_MAX : POLICY_APPLY_LIST_MAX, result, err);
	if (!r && !dry_run)
		fed_policy_applied(ctx);	/* and on to the rest of the mesh */
	return r;
}

COMMAND(cmd_policy_show)
{
	_cleanup_policy_entries_ struct policy_entries *active = NULL;
	_cleanup_policy_doc_ struct policy_doc *doc = NULL;
	struct agent *a = ctx;
	struct json_object *p, *v;
	struct datapath_view view;
	__u32 gen = 0;
	int r;

	r = state_doc(a->state, &doc, err);
	if (r)
		return r;
	if (json_object_object_get_ex(a->state, "policy", &p)) {
		if (json_object_object_get_ex(p, "version", &v))
			json_object_object_add(result, "version", json_object_get(v));
		if (json_object_object_get_ex(p, "source", &v))
			json_object_object_add(result, "source", json_object_get(v));
	}
	r = datapath_policy_read(&a->dp, &active, &gen);
	if (r || datapath_view(a->state, &view))
		return control_error_set(err, "internal", "map 'fg_policy': %s", strerror(r ? -r : ENOMEM));
	json_object_object_add(result, "generation", json_object_new_int64(gen));
	json_object_object_add(result, "entries", entries_json(active, &view, doc, SIZE_MAX));
	datapath_view_free(&view);
	return 0;
}

static int parse_protocol(const char *s, __u8 *proto, struct control_error *err)
{
	if (strcmp(s, "tcp") == 0)
		*proto = IPPROTO_TCP;
	else if (strcmp(s, "udp") == 0)
		*proto = IPPROTO_UDP;
	else
		return control_error_set(err, "invalid_argument",
					 "protocol: '%s' is not tcp or udp", s);
	return 0;
}

static void verdict_json(const struct policy_verdict *pv, struct json_object *result)
{
	json_object_object_add(result, "decision", json_object_new_string(
					       pv->action == FG_ACT_ALLOW ? "allow" : "deny"));
	json_object_object_add(result, "rule", pv->rule_name ? json_object_new_string(pv->rule_name)
							     : NULL);
	json_object_object_add(result, "auth", json_object_new_string(
					       pv->auth == FG_AUTH_MTLS ? "required" : "none"));
	json_object_object_add(result, "transport", pv->action != FG_ACT_ALLOW ? NULL :
			       json_object_new_string(pv->transport == FG_TRANSPORT_TUNNEL
							      ? "encrypted" : "authenticated"));
	json_object_object_add(result, "reason", json_object_new_string(pv->reason));
}

/* An allow that the datapath will refuse all the same says why. */
static void transport_note(struct agent *a, const struct policy_verdict *pv, __u8 proto,
			   struct json_object *result)
{
	const char *note = NULL;

	if (pv->action != FG_ACT_ALLOW || pv->transport != FG_TRANSPORT_TUNNEL)
		return;
	if (proto != IPPROTO_TCP)
		note = "only TCP takes the tunnel: the datapath refuses this flow (deny_no_tunnel)";
	else if (!peerauth_tunnel_running(a))
		note = "this agent runs no tunnel (--tunnel-listen): the datapath refuses this flow "
		       "(deny_no_tunnel)";
	if (note)
		json_object_object_add(result, "note", json_object_new_string(note));
}

COMMAND(cmd_policy_check)
{
	_cleanup_policy_doc_ struct policy_doc *doc = NULL;
	struct agent *a = ctx;
	const char *from, *to, *proto_s = "tcp";
	struct policy_verdict pv;
	struct datapath_view v;
	int64_t port = 0;
	__u8 proto = IPPROTO_TCP;
	int r;

	r = command_spiffe_id(args, "from", &from, err);
	if (!r)
		r = command_spiffe_id(args, "to", &to, err);
	if (!r)
		r = control_arg_int(args, "port", true, 1, 65535, &port, err);
	if (!r)
		r = control_arg_string(args, "protocol", false, &proto_s, err);
	if (!r)
		r = parse_protocol(proto_s ? proto_s : "tcp", &proto, err);
	if (!r)
		r = state_doc(a->state, &doc, err);
	if (r)
		return r;
	if (!doc) {
		pv = (struct policy_verdict){ .action = FG_ACT_DENY };
		snprintf(pv.reason, sizeof(pv.reason), "no policy applied: default deny");
		verdict_json(&pv, result);
		return 0;
	}
	if (datapath_view(a->state, &v))
		return control_error_set(err, "internal", "out of memory");
	r = policy_check(doc, v.ids, v.n, from, to, (__u16)port, proto, &pv);
	datapath_view_free(&v);
	if (r)
		return control_error_set(err, "invalid_argument",
					 "cannot check '%s' -> '%s' port %lld: %s", from, to,
					 (long long)port, strerror(-r));
	verdict_json(&pv, result);
	transport_note(a, &pv, proto, result);
	return 0;
}
