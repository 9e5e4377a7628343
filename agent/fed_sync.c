// SPDX-License-Identifier: Apache-2.0
/*
 * The local state brought to the mirror of the mesh store (fed.h): the
 * newest signed policy, the mesh's quarantines, and the other agents'
 * endpoints. Everything the store says is checked as if an operator had
 * typed it: a record that does not parse, a policy that fails its
 * signature or is older than the one in force, an endpoint of another
 * trust domain or on an address someone else holds, is logged and left
 * out, and nothing in force is weakened by it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fedguard/abi.h>
#include <openssl/rand.h>

#include "addr.h"
#include "agent.h"
#include "commands.h"
#include "fed_int.h"
#include "io.h"
#include "log.h"
#include "mstore.h"
#include "spiffe.h"
#include "state.h"

#define QUARANTINE_KEY "quarantine/"
#define ENDPOINTS_KEY "endpoints/"
#define REASON_MAX 256

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static const char *string_of(struct json_object *o, const char *name)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* --- policy ---------------------------------------------------------------------------------- */

static void sync_policy(struct agent *a)
{
	struct fed *f = a->fed;
	struct json_object *rec, *e, *v, *result;
	struct control_error err = {};
	const char *doc, *sig;
	int64_t version, mine = fed_policy_version(a);

	f->policy_rev = json_object_object_get_ex(f->mirror, "policy", &e) &&
				json_object_object_get_ex(e, "rev", &v)
			? json_object_get_int64(v)
			: 0;
	rec = fed_mirror_json(f, "policy");
	if (!rec) {
		fed_policy_publish(a);	/* a new mesh, or an emptied store: ours, if signed */
		return;
	}
	doc = string_of(rec, "document");
	sig = string_of(rec, "signature");
	version = json_object_object_get_ex(rec, "version", &v) ? json_object_get_int64(v) : 0;
	if (!doc || !sig || version <= 0) {
		log_warn("mesh store: key 'policy' is no signed policy record: ignored, version "
			 "%lld stays in force", (long long)mine);
	} else if (version > mine) {
		result = json_object_new_object();
		if (policy_apply_text(a, doc, string_of(rec, "source"), sig, false, 0, result,
				      &err))
			log_error("mesh store: policy version %lld refused: %s; version %lld stays "
				  "in force", (long long)version, err.message, (long long)mine);
		else
			log_info("mesh store: policy version %lld in force (was %lld)",
				 (long long)version, (long long)mine);
		json_object_put(result);
	} else if (version < mine) {
		log_warn("mesh store: the store holds policy version %lld, older than version "
			 "%lld in force here: writing ours", (long long)version, (long long)mine);
		fed_policy_publish(a);
	}
	json_object_put(rec);
}

/* --- quarantine -------------------------------------------------------------------------------- */

/* A quarantine record of the store as local state keeps it, or NULL (and why). */
static struct json_object *quarantine_record(const char *target, struct json_object *rec,
					     const char *origin, bool in_store, char *why,
					     size_t why_len)
{
	struct json_object *out, *v;
	struct spiffe_id sid;
	const char *kind = rec ? string_of(rec, "kind") : NULL, *reason;

	if (spiffe_parse(target, &sid, why, why_len))
		return NULL;
	if (!kind || strcmp(kind, sid.path_len ? "identity" : "trust_domain")) {
		snprintf(why, why_len, "no kind, or not the kind of '%s'", target);
		return NULL;
	}
	reason = string_of(rec, "reason");
	if (reason && strlen(reason) > REASON_MAX) {
		snprintf(why, why_len, "a reason longer than %d bytes", REASON_MAX);
		return NULL;
	}
	out = json_object_new_object();
	json_object_object_add(out, "kind", json_object_new_string(kind));
	json_object_object_add(out, "reason", json_object_new_string(reason ? reason : ""));
	json_object_object_add(out, "since", json_object_new_int64(
					     json_object_object_get_ex(rec, "since", &v)
						     ? json_object_get_int64(v) : 0));
	if (string_of(rec, "issuer"))
		json_object_object_add(out, "issuer",
				       json_object_new_string(string_of(rec, "issuer")));
	json_object_object_add(out, "origin", json_object_new_string(origin));
	if (strcmp(origin, "mesh") == 0)	/* a push may arrive before the store has it */
		json_object_object_add(out, "in_store", json_object_new_boolean(in_store));
	return out;
}

static bool in_mirror(struct fed *f, const char *target)
{
	char key[SPIFFE_ID_MAX + 32];

	snprintf(key, sizeof(key), QUARANTINE_KEY "%s", target);
	return json_object_object_get_ex(f->mirror, key, NULL);
}

static bool mesh_record(struct json_object *rec, bool *in_store)
{
	const char *origin = string_of(rec, "origin");
	struct json_object *v;

	*in_store = json_object_object_get_ex(rec, "in_store", &v) && json_object_get_boolean(v);
	return origin && strcmp(origin, "mesh") == 0;
}

static void enforce_record(struct agent *a, const char *target, struct json_object *rec,
			   const char *origin, bool in_store)
{
	struct control_error err = {};
	unsigned int destroyed = 0;
	struct json_object *local;
	char why[256] = "";

	local = quarantine_record(target, rec, origin, in_store, why, sizeof(why));
	if (!local) {
		log_warn("quarantine record of '%s' from '%s' ignored: %s", target, origin, why);
		return;
	}
	if (quarantine_enforce(a, target, local, &destroyed, &err))
		log_error("quarantine of '%s' from '%s' not in force: %s", target, origin,
			  err.message);
	else
		log_info("quarantine '%s' from '%s' in force: %u sockets destroyed", target, origin,
			 destroyed);
}

void fed_enforce(struct agent *a, const char *target, struct json_object *rec, const char *origin)
{
	enforce_record(a, target, rec, origin, false);
}

/* Whether rec is a record of the mesh that this node issued and the store has not shown yet. */
static bool issued_here_unstored(struct agent *a, struct json_object *rec)
{
	const char *issuer = string_of(rec, "issuer");
	bool stored;

	return mesh_record(rec, &stored) && !stored && issuer && strcmp(issuer, a->fed->name) == 0;
}

/*
 * A record this node issued while the store was away, released at another
 * agent: our put of it is still queued, and may reach the store after that
 * agent's deletion and quarantine the target again in the whole mesh. A
 * deletion queued behind our put keeps the release, whatever the order.
 */
static void delete_after_put(struct agent *a, const char *target)
{
	char key[SPIFFE_ID_MAX + 32];
	int r;

	snprintf(key, sizeof(key), QUARANTINE_KEY "%s", target);
	r = mstore_delete(a->fed->ms, key);
	if (r)
		log_error_errno(r, "mesh store: release of '%s' not queued for the store", target);
}

void fed_lift(struct agent *a, const char *target, const char *origin)
{
	struct control_error err = {};
	struct json_object *rec;
	bool unstored;
	const char *o;

	if (!json_object_object_get_ex(state_section(a->state, "quarantine"), target, &rec))
		return;
	o = string_of(rec, "origin");
	if (!o || strcmp(o, origin) != 0) {
		log_warn("release of '%s' from '%s' ignored: its quarantine here is %s's", target,
			 origin, o ? o : "this node");
		return;
	}
	unstored = issued_here_unstored(a, rec);
	if (quarantine_lift(a, target, &err)) {
		log_error("release of '%s' from '%s' failed: %s", target, origin, err.message);
		return;
	}
	log_info("quarantine of '%s' lifted by '%s'", target, origin);
	if (unstored)
		delete_after_put(a, target);
}

/* The store's record of target, enforced here. */
static void enforce(struct agent *a, const char *target)
{
	char key[SPIFFE_ID_MAX + 32];
	struct json_object *rec;

	snprintf(key, sizeof(key), QUARANTINE_KEY "%s", target);
	rec = fed_mirror_json(a->fed, key);
	enforce_record(a, target, rec, "mesh", true);
	json_object_put(rec);
}

static void lift(struct agent *a, const char *target)
{
	fed_lift(a, target, "mesh");
}

/* Marks the mesh's records the store holds as stored; 0 or the commit's error. */
static int mark_stored(struct agent *a)
{
	struct json_object *next = NULL;
	struct control_error err = {};

	json_object_object_foreach(state_section(a->state, "quarantine"), target, rec)
	{
		bool stored;

		if (!mesh_record(rec, &stored) || stored || !in_mirror(a->fed, target))
			continue;
		if (!next)
			next = state_copy(a->state);
		json_object_object_add(json_object_object_get(state_section(next, "quarantine"),
							      target),
				       "in_store", json_object_new_boolean(true));
	}
	return next ? agent_commit(a, next, &err) : 0;
}

/* Whether rec names this node as its issuer (a record without one counts as ours). */
static bool issued_here(struct agent *a, struct json_object *rec)
{
	const char *issuer = string_of(rec, "issuer");

	return !issuer || strcmp(issuer, a->fed->name) == 0;
}

/*
 * A record another agent issued, pushed to us, that the store does not
 * hold: its issuer puts it there (its write may still be queued behind an
 * outage), or released it while we could not hear the release. We do not
 * write it (that would undo a release), and lift it only if the store still
 * lacks it after FED_UNCONFIRMED_MS.
 */
static void await_confirmation(struct agent *a, const char *target)
{
	struct fed *f = a->fed;

	if (!f->unconfirmed)
		f->unconfirmed = json_object_new_object();
	if (!json_object_object_get_ex(f->unconfirmed, target, NULL))
		json_object_object_add(f->unconfirmed, target, json_object_new_int64(io_now_ms()));
}

void fed_sync_unconfirmed(struct agent *a)
{
	struct fed *f = a->fed;
	struct json_object *due = json_object_new_array();

	if (!f->unconfirmed || !f->synced) {
		json_object_put(due);
		return;
	}
	json_object_object_foreach(f->unconfirmed, target, since)
	{
		if (io_now_ms() - json_object_get_int64(since) >= FED_UNCONFIRMED_MS ||
		    in_mirror(f, target))
			json_object_array_add(due, json_object_new_string(target));
	}
	for (size_t i = 0; i < json_object_array_length(due); i++) {
		const char *t = json_object_get_string(json_object_array_get_idx(due, i));
		struct json_object *rec;
		bool stored;

		if (!in_mirror(f, t) &&
		    json_object_object_get_ex(state_section(a->state, "quarantine"), t, &rec) &&
		    mesh_record(rec, &stored) && !stored) {
			log_info("quarantine of '%s': the store has not had it for %d ms since we "
				 "listed it: released by its issuer", t, FED_UNCONFIRMED_MS);
			lift(a, t);
		}
		json_object_object_del(f->unconfirmed, t);
	}
	json_object_put(due);
}

/*
 * A record of the mesh that the store no longer holds was lifted by some
 * agent, if the store had it. One it never had was taken while the store
 * was away: if this node issued it, it goes to the store now; if another
 * did, that agent writes it, and this one waits (await_confirmation()).
 */
static void sync_quarantine_all(struct agent *a)
{
	struct json_object *lifted = json_object_new_array(), *held = json_object_new_array();

	mark_stored(a);
	json_object_object_foreach(state_section(a->state, "quarantine"), target, rec)
	{
		bool stored;

		if (!mesh_record(rec, &stored) || in_mirror(a->fed, target))
			continue;
		if (stored)
			json_object_array_add(lifted, json_object_new_string(target));
		else if (issued_here(a, rec))
			json_object_array_add(held, json_object_new_string(target));
		else
			await_confirmation(a, target);
	}
	for (size_t i = 0; i < json_object_array_length(held); i++) {
		const char *t = json_object_get_string(json_object_array_get_idx(held, i));
		struct json_object *copy = state_copy(json_object_object_get(
			state_section(a->state, "quarantine"), t));

		json_object_object_del(copy, "origin");
		json_object_object_del(copy, "in_store");
		fed_quarantine_changed(a, t, copy);
		json_object_put(copy);
	}
	for (size_t i = 0; i < json_object_array_length(lifted); i++)
		lift(a, json_object_get_string(json_object_array_get_idx(lifted, i)));
	json_object_object_foreach(a->fed->mirror, key, e)
	{
		(void)e;
		if (starts(key, QUARANTINE_KEY) &&
		    !json_object_object_get_ex(state_section(a->state, "quarantine"),
					       key + strlen(QUARANTINE_KEY), NULL))
			enforce(a, key + strlen(QUARANTINE_KEY));
	}
	json_object_put(lifted);
	json_object_put(held);
}

static void sync_quarantine_one(struct agent *a, const char *target)
{
	struct json_object *local;
	bool stored;

	if (!json_object_object_get_ex(state_section(a->state, "quarantine"), target, &local)) {
		if (in_mirror(a->fed, target))
			enforce(a, target);
		return;
	}
	if (!mesh_record(local, &stored))
		return;		/* a local or foreign record: not the store's to change */
	if (in_mirror(a->fed, target))
		mark_stored(a);
	else if (stored)
		lift(a, target);
}

/* --- endpoints --------------------------------------------------------------------------------- */

static bool host_address(const char *s)
{
	struct fg_ipcache_key k;

	return addr_parse_prefix(s, &k) == 0 &&
	       k.prefixlen == FG_IPCACHE_PREFIX_BASE + (k.family == FG_AF_INET ? 32 : 128);
}

bool fed_take_endpoint(struct agent *a, struct json_object *next, const char *td,
		       const char *origin, const char *node, struct json_object *ep)
{
	struct json_object *args = json_object_new_object(), *ips, *labels, *reg;
	struct control_error err = {};
	const char *id = string_of(ep, "spiffe_id");
	struct spiffe_id sid;
	char why[256] = "";
	__u32 num;
	bool ok = false;

	if (!id || spiffe_parse(id, &sid, why, sizeof(why)))
		snprintf(err.message, sizeof(err.message), "not a SPIFFE ID: %s", why);
	else if (!spiffe_in_trust_domain(&sid, td))
		snprintf(err.message, sizeof(err.message),
			 "not of trust domain '%s' (a mesh speaks only for its own identities)", td);
	else if (json_object_object_get_ex(state_section(next, "endpoints"), id, NULL))
		snprintf(err.message, sizeof(err.message), "registered already");
	else if (!json_object_object_get_ex(ep, "ips", &ips) ||
		 !json_object_is_type(ips, json_type_array))
		snprintf(err.message, sizeof(err.message), "no addresses");
	else
		ok = true;
	for (size_t i = 0; ok && i < json_object_array_length(ips); i++)
		if (!host_address(json_object_get_string(json_object_array_get_idx(ips, i)))) {
			snprintf(err.message, sizeof(err.message), "'%s' is no host address",
				 json_object_get_string(json_object_array_get_idx(ips, i)));
			ok = false;
		}
	if (ok) {
		json_object_object_add(args, "ips", json_object_get(ips));
		json_object_object_add(args, "node", json_object_new_string(node));
		if (json_object_object_get_ex(ep, "labels", &labels))
			json_object_object_add(args, "labels", json_object_get(labels));
		ok = registry_endpoint_reg(next, id, args, &reg, &err) == 0;
	}
	if (ok) {
		json_object_object_add(reg, "origin", json_object_new_string(origin));
		state_put(next, "endpoints", id, reg);
		ok = command_number_identity(next, id, &num, &err) == 0;
	}
	if (!ok)
		log_warn("endpoint '%s' from '%s' ignored: %s", id ? id : "?", origin, err.message);
	json_object_put(args);
	return ok;
}

/* The endpoints of node (from key endpoints/NODE) into next. */
static void take_node(struct agent *a, struct json_object *next, const char *key)
{
	const char *node = key + strlen(ENDPOINTS_KEY), *addr;
	struct json_object *rec = fed_mirror_json(a->fed, key), *list;
	char origin[300];
	__u8 bin[16];

	addr = rec ? string_of(rec, "node") : NULL;
	if (!addr || addr_parse_node(addr, bin) ||
	    !json_object_object_get_ex(rec, "endpoints", &list) ||
	    !json_object_is_type(list, json_type_array)) {
		log_warn("mesh store: key '%s' is no endpoints record: ignored", key);
		json_object_put(rec);
		return;
	}
	snprintf(origin, sizeof(origin), "node:%s", node);
	for (size_t i = 0; i < json_object_array_length(list); i++)
		fed_take_endpoint(a, next, a->fed->td, origin, addr,
				  json_object_array_get_idx(list, i));
	json_object_put(rec);
}

/* Every endpoint the other agents publish, instead of those they published before. */
static void sync_endpoints(struct agent *a)
{
	struct json_object *next = state_copy(a->state), *eps;
	struct control_error err = {};
	char own[300];

	if (!next)
		return;
	eps = state_section(next, "endpoints");
	json_object_object_foreach(state_section(a->state, "endpoints"), id, e)
	{
		const char *origin = string_of(e, "origin");

		if (origin && starts(origin, "node:"))
			json_object_object_del(eps, id);
	}
	snprintf(own, sizeof(own), ENDPOINTS_KEY "%s", a->fed->name);
	json_object_object_foreach(a->fed->mirror, key, v)
	{
		(void)v;
		if (starts(key, ENDPOINTS_KEY) && strcmp(key, own) != 0)
			take_node(a, next, key);
	}
	if (json_object_equal(state_section(next, "endpoints"),
			      state_section(a->state, "endpoints"))) {
		json_object_put(next);
		return;
	}
	if (agent_commit(a, next, &err))
		log_error("mesh store: the mesh's endpoints are not in force: %s", err.message);
	else
		log_info("mesh store: %d endpoints in force",
			 json_object_object_length(state_section(a->state, "endpoints")));
}

/* --- dispatch ---------------------------------------------------------------------------------- */

/*
 * The mesh's redaction key (docs/federation.md, "Alerts"): made by the first
 * agent that finds none, as 32 random bytes in hex; put only if absent, so
 * all agents end up with one key.
 */
static void sync_redaction_key(struct agent *a)
{
	unsigned char raw[32];
	char hex[sizeof(raw) * 2 + 3];
	int r;

	if (json_object_object_get_ex(a->fed->mirror, "redaction-key", NULL))
		return;
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return;
	hex[0] = '"';
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(hex + 1 + 2 * i, 3, "%02x", raw[i]);
	snprintf(hex + 1 + 2 * sizeof(raw), 2, "\"");
	r = mstore_put_if(a->fed->ms, "redaction-key", hex, 0);
	if (r)
		log_warn_errno(r, "mesh store: no redaction key queued");
}

void fed_sync_all(struct agent *a)
{
	sync_redaction_key(a);
	sync_policy(a);
	sync_quarantine_all(a);
	sync_endpoints(a);
	fed_links_peers_sync(a);
}

void fed_sync_key(struct agent *a, const char *key)
{
	if (strcmp(key, "policy") == 0)
		sync_policy(a);
	else if (starts(key, QUARANTINE_KEY))
		sync_quarantine_one(a, key + strlen(QUARANTINE_KEY));
	else if (starts(key, ENDPOINTS_KEY))
		sync_endpoints(a);
	else if (starts(key, "nodes/"))
		fed_links_peers_sync(a);
}
