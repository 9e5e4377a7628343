// SPDX-License-Identifier: Apache-2.0
/*
 * Links between agents (link.h) in the agent: the mesh's peers and the
 * cross-mesh links (docs/federation.md, "Peers" and "Federation").
 *
 * Every agent dials every other agent of its mesh (the store's node
 * records say where), so each pair has two links, and a message to the
 * mesh goes out on this agent's own dials. An agent dials, for each
 * --federate-with entry, the agent that serves that mesh's bundle
 * endpoint; the other mesh's agents dial ours. Over a link that another
 * mesh's agent dialed, this agent tells that mesh what it may know: the
 * endpoints of this mesh its identities may call, and the quarantines of
 * this mesh's own identities, whole sets, again whenever they change; and
 * raises alerts. What a link brings in is checked as if an operator had
 * typed it, and a mesh speaks only for identities of its own trust domain.
 *
 * Messages are JSON objects with a "type":
 *   state           {policy_version, bundle_sequence}         mesh peers
 *   quarantine      {op: add|del, target, record}             mesh peers
 *   endpoints       {endpoints: [{spiffe_id, ips, node, labels}]}  cross-mesh
 *   quarantine_set  {records: {target: record}}               cross-mesh
 *   alert           {kind, trust_domain, ...}                 cross-mesh, mesh
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fedguard/abi.h>
#include <openssl/hmac.h>

#include "addr.h"
#include "agent.h"
#include "auth.h"
#include "commands.h"
#include "fed_int.h"
#include "io.h"
#include "link.h"
#include "log.h"
#include "observe.h"
#include "peerauth.h"
#include "peerauth_int.h"
#include "policy_compile.h"
#include "policy_parse.h"
#include "spiffe.h"
#include "state.h"

enum {
	EVENTS_BATCH = 128,
	PROTO = 1,
};

#define NODE_PATH "/fedguard/node/"

static const char *str_of(struct json_object *o, const char *name)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* Whether id is the node SVID of an agent of trust domain td. */
static bool node_id_of(const char *id, const char *td)
{
	size_t n = strlen(td);

	return strncmp(id, "spiffe://", 9) == 0 && strncmp(id + 9, td, n) == 0 &&
	       strncmp(id + 9 + n, NODE_PATH, strlen(NODE_PATH)) == 0 &&
	       id[9 + n + strlen(NODE_PATH)] != 0;
}

struct fed_remote *fed_remote_find(struct fed *f, const char *td)
{
	for (size_t i = 0; i < f->n_remotes; i++)
		if (strcmp(f->remotes[i].td, td) == 0)
			return &f->remotes[i];
	return NULL;
}

/* --- callbacks, on link threads: only what is immutable after the start ------------------ */

static bool admit(void *ctx, const struct link_peer *peer, char *why, size_t why_len)
{
	struct fed *f = ctx;

	if (strcmp(peer->td, f->td) != 0 && !fed_remote_find(f, peer->td)) {
		snprintf(why, why_len, "trust domain '%s' is not federated with mesh '%s'",
			 peer->td, f->td);
		return false;
	}
	if (!node_id_of(peer->spiffe_id, peer->td)) {
		snprintf(why, why_len, "'%s' is no agent's node SVID (spiffe://%s" NODE_PATH "NAME)",
			 peer->spiffe_id, peer->td);
		return false;
	}
	return true;
}

static char *hello(void *ctx, const struct link_peer *peer)
{
	struct fed *f = ctx;
	char *text = NULL;

	if (asprintf(&text, "{\"proto\":%d,\"node\":\"%s\",\"trust_domain\":\"%s\"}", PROTO,
		     f->name, f->td) < 0)
		return NULL;
	return text;
}

/* --- sending ---------------------------------------------------------------------------------- */

static void send_json(struct fed *f, uint64_t id, struct json_object *msg)
{
	const char *text = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN);
	int r = link_send(f->links, id, text, strlen(text));

	if (r && r != -ENOTCONN)
		log_warn_errno(r, "link %llu: message not sent", (unsigned long long)id);
}

/* To every peer of the mesh whose link (our dial) is up. */
static void to_mesh(struct fed *f, struct json_object *msg)
{
	for (size_t i = 0; i < f->n_peers; i++)
		if (f->peers[i].up)
			send_json(f, f->peers[i].dial, msg);
}

static struct json_object *msg_new(const char *type)
{
	struct json_object *m = json_object_new_object();

	json_object_object_add(m, "type", json_object_new_string(type));
	return m;
}

static struct json_object *state_msg(struct agent *a)
{
	struct json_object *m = msg_new("state");
	uint64_t seq = 0;

	json_object_object_add(m, "policy_version", json_object_new_int64(fed_policy_version(a)));
	if (peerauth_bundle_sequence(a, a->fed->td, &seq) == 0)
		json_object_object_add(m, "bundle_sequence", json_object_new_int64((int64_t)seq));
	return m;
}

/* This node's numbers, no names: what its peers and federated meshes may see of it. */
static struct json_object *telemetry_msg(struct agent *a)
{
	struct json_object *m = msg_new("telemetry"), *t = json_object_new_object();
	struct observe_totals tot;

	observe_totals(a->observe, &tot);
	json_object_object_add(t, "drops", json_object_new_int64((int64_t)tot.drops));
	json_object_object_add(t, "quarantine_hits",
			       json_object_new_int64((int64_t)tot.quarantine_hits));
	json_object_object_add(t, "allows", json_object_new_int64((int64_t)tot.allows));
	json_object_object_add(t, "auth_ok", json_object_new_int64((int64_t)tot.auth_ok));
	json_object_object_add(t, "auth_failed", json_object_new_int64((int64_t)tot.auth_failed));
	json_object_object_add(t, "alerts", json_object_new_int64((int64_t)tot.alerts));
	json_object_object_add(t, "quarantined", json_object_new_int(json_object_object_length(
							 state_section(a->state, "quarantine"))));
	json_object_object_add(m, "node", json_object_new_string(a->fed->name));
	json_object_object_add(m, "trust_domain", json_object_new_string(a->fed->td));
	json_object_object_add(m, "totals", t);
	return m;
}

void fed_links_telemetry(struct agent *a)
{
	struct fed *f = a->fed;
	struct json_object *m;

	if (!f->links)
		return;
	m = telemetry_msg(a);
	to_mesh(f, m);
	for (size_t i = 0; i < f->n_clients; i++)
		send_json(f, f->clients[i].id, m);
	for (size_t i = 0; i < f->n_remotes; i++)
		if (f->remotes[i].up)
			send_json(f, f->remotes[i].dial, m);
	json_object_put(m);
}

void fed_links_quarantine(struct agent *a, const char *target, struct json_object *record)
{
	struct json_object *m = msg_new("quarantine");

	if (!a->fed->links)
		return;
	json_object_object_add(m, "op", json_object_new_string(record ? "add" : "del"));
	json_object_object_add(m, "target", json_object_new_string(target));
	if (record)
		json_object_object_add(m, "record", json_object_get(record));
	to_mesh(a->fed, m);
	json_object_put(m);
}

/* --- what another mesh may know -------------------------------------------------------------- */

/* The policy document in force, parsed (the caller's), or NULL. */
static struct policy_doc *policy_of(struct agent *a)
{
	struct json_object *p, *t;
	struct policy_doc *doc = NULL;
	struct policy_error err;
	const char *text;

	if (!json_object_object_get_ex(a->state, "policy", &p) ||
	    !json_object_object_get_ex(p, "document", &t))
		return NULL;
	text = json_object_get_string(t);
	if (policy_parse_buffer("policy", text, strlen(text), &doc, &err))
		return NULL;
	return doc;
}

/* One endpoint entry of an exported set, from a registration. */
static struct json_object *export_entry(const char *id, struct json_object *reg, const char *node)
{
	struct json_object *e = json_object_new_object(), *v;

	json_object_object_add(e, "spiffe_id", json_object_new_string(id));
	json_object_object_add(e, "ips", json_object_get(json_object_object_get(reg, "ips")));
	json_object_object_add(e, "node", json_object_new_string(node));
	if (json_object_object_get_ex(reg, "labels", &v))
		json_object_object_add(e, "labels", json_object_get(v));
	return e;
}

/*
 * The endpoints of this mesh (own workloads, and the other agents' from the
 * store) that policy lets identities of td call, or lets call identities
 * of td (td's agents must know who calls them).
 */
static struct json_object *export_endpoints(struct agent *a, const char *td)
{
	struct policy_doc *doc = policy_of(a);
	struct json_object *list = json_object_new_array();
	struct datapath_view v = {};

	if (doc && datapath_view(a->state, &v) == 0) {
		for (size_t i = 0; i < v.n; i++) {
			const char *id = v.ids[i].spiffe_id, *node;
			struct json_object *reg, *origin;
			struct spiffe_id sid;
			bool local = v.ids[i].local;

			if (spiffe_parse(id, &sid, NULL, 0) || !spiffe_in_trust_domain(&sid, a->fed->td))
				continue;
			reg = json_object_object_get(state_section(a->state, local ? "workloads"
										  : "endpoints"), id);
			if (!local && (!json_object_object_get_ex(reg, "origin", &origin) ||
				       strncmp(json_object_get_string(origin), "node:", 5)))
				continue;	/* only what this mesh itself publishes */
			node = local ? a->node_addr : str_of(reg, "node");
			if (!node || !json_object_object_get(reg, "ips") ||
			    (!policy_admits_from_td(doc, td, &v.ids[i]) &&
			     !policy_admits_to_td(doc, &v.ids[i], td)))
				continue;
			json_object_array_add(list, export_entry(id, reg, node));
		}
	}
	datapath_view_free(&v);
	policy_doc_free(doc);
	return list;
}

/* The quarantines of this mesh's own identities (or its whole trust domain). */
static struct json_object *export_quarantine(struct agent *a)
{
	struct json_object *set = json_object_new_object();

	json_object_object_foreach(state_section(a->state, "quarantine"), target, rec)
	{
		const char *origin = str_of(rec, "origin");
		struct json_object *out;

		if (!spiffe_match_trust_domain(a->fed->td, target) ||
		    (origin && strncmp(origin, "td:", 3) == 0))
			continue;
		out = state_copy(rec);
		json_object_object_del(out, "origin");
		json_object_object_del(out, "in_store");
		json_object_object_add(set, target, out);
	}
	return set;
}

/* Sends msg to client c unless it is what c got last (kept in *last). */
static void send_changed(struct fed *f, struct fed_client *c, struct json_object *msg, char **last)
{
	const char *text = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN);

	if (*last && strcmp(*last, text) == 0)
		return;
	free(*last);
	*last = strdup(text);
	send_json(f, c->id, msg);
}

/* --- alerts ------------------------------------------------------------------------------------ */

enum {
	ALERT_IDS_MAX = 4096,	/* alert ids remembered against duplicates */
	REDACT_HASH_BYTES = 12,
};

/* Whether id was seen already; remembers it. */
static bool alert_seen(struct fed *f, const char *id)
{
	if (json_object_object_get_ex(f->alert_ids, id, NULL))
		return true;
	if (json_object_object_length(f->alert_ids) >= ALERT_IDS_MAX) {
		json_object_put(f->alert_ids);	/* forget the old ones: they will not come again */
		f->alert_ids = json_object_new_object();
	}
	json_object_object_add(f->alert_ids, id, NULL);
	return false;
}

/*
 * id as another mesh may see it: its trust domain and a keyed hash of its
 * path ("spiffe://TD/#HEX"), with the mesh's redaction key from the store;
 * "spiffe://TD/#" while the key is not known yet.
 */
static const char *redact(struct fed *f, const char *id, char *buf, size_t len)
{
	struct json_object *key = fed_mirror_json(f, "redaction-key");
	const char *k = key && json_object_is_type(key, json_type_string)
				? json_object_get_string(key) : NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	struct spiffe_id sid;
	size_t used;

	if (spiffe_parse(id, &sid, NULL, 0)) {
		json_object_put(key);
		return "?";
	}
	used = (size_t)snprintf(buf, len, "spiffe://%.*s/#", (int)sid.td_len, sid.td);
	if (k && HMAC(EVP_sha256(), k, (int)strlen(k), (const unsigned char *)sid.path,
		      sid.path_len, md, &n))
		for (unsigned int i = 0; i < REDACT_HASH_BYTES && i < n && used + 3 < len; i++)
			used += (size_t)snprintf(buf + used, len - used, "%02x", md[i]);
	json_object_put(key);
	return buf;
}

static bool shares_names(struct fed *f, const char *td)
{
	for (unsigned int i = 0; i < f->n_share_names; i++)
		if (strcmp(f->share_names[i], td) == 0)
			return true;
	return false;
}

/*
 * An alert of this mesh for an agent of trust domain td: names of other
 * trust domains than td redacted, the free text (it names them too)
 * dropped, unless --share-names-with td.
 */
static struct json_object *alert_for(struct fed *f, struct json_object *msg, const char *td)
{
	struct json_object *out = state_copy(msg);
	const char *target = str_of(msg, "target");
	char buf[SPIFFE_TRUST_DOMAIN_MAX + 48];

	if (shares_names(f, td))
		return out;
	json_object_object_del(out, "reason");
	if (target && !spiffe_match_trust_domain(td, target)) {
		json_object_object_add(out, "target", json_object_new_string(
					       redact(f, target, buf, sizeof(buf))));
		json_object_object_add(out, "redacted", json_object_new_boolean(true));
	}
	return out;
}

/* An alert of this mesh to the agents of other meshes we link with, each as it may see it. */
static void alert_to_federation(struct agent *a, struct json_object *msg)
{
	struct fed *f = a->fed;
	struct json_object *m;

	for (size_t i = 0; i < f->n_clients; i++) {
		m = alert_for(f, msg, f->clients[i].td);
		send_json(f, f->clients[i].id, m);
		json_object_put(m);
	}
	for (size_t i = 0; i < f->n_remotes; i++) {
		if (!f->remotes[i].up)
			continue;
		m = alert_for(f, msg, f->remotes[i].td);
		send_json(f, f->remotes[i].dial, m);
		json_object_put(m);
	}
}

void fed_alert_raised(struct agent *a, struct json_object *alert)
{
	struct fed *f = a->fed;
	struct json_object *m, *subject = json_object_object_get(alert, "subject");
	char id[SPIFFE_ID_MAX + 32];

	if (!f || !f->links)
		return;
	m = msg_new("alert");
	snprintf(id, sizeof(id), "%s#%lld", f->node_id,
		 (long long)json_object_get_int64(json_object_object_get(alert, "alert_id")));
	json_object_object_add(m, "id", json_object_new_string(id));
	json_object_object_add(m, "kind", json_object_get(json_object_object_get(alert, "kind")));
	json_object_object_add(m, "trust_domain", json_object_new_string(f->td));
	json_object_object_add(m, "node", json_object_new_string(f->name));
	json_object_object_add(m, "time", json_object_get(json_object_object_get(alert, "time")));
	json_object_object_add(m, "target", json_object_get(json_object_object_get(subject,
										   "spiffe_id")));
	json_object_object_add(m, "count", json_object_get(json_object_object_get(alert, "count")));
	json_object_object_add(m, "window_s", json_object_get(json_object_object_get(alert,
										     "window_s")));
	json_object_object_add(m, "reason", json_object_get(json_object_object_get(alert,
										   "message")));
	alert_seen(f, id);
	to_mesh(f, m);
	alert_to_federation(a, m);
	json_object_put(m);
}

/*
 * Quarantines this mesh put on identities of trust domain td (or on td
 * itself): the mesh's own records, not the ones td's mesh told us.
 */
static bool foreign_quarantine_of(const char *td, const char *target, struct json_object *rec)
{
	const char *origin = str_of(rec, "origin");

	return spiffe_match_trust_domain(td, target) && origin && strncmp(origin, "td:", 3) != 0;
}

/* The id of the alert of one quarantine: its target and when it was issued. */
static void foreign_alert_id(const char *target, struct json_object *rec, char *id, size_t len)
{
	snprintf(id, len, "%s@%lld", target,
		 (long long)json_object_get_int64(json_object_object_get(rec, "since")));
}

/* An alert about a quarantine of c's identities, redacted as every alert to c's mesh is. */
static void foreign_alert_send(struct agent *a, struct fed_client *c, const char *id,
			       const char *kind, const char *target, struct json_object *rec)
{
	struct json_object *m = msg_new("alert"), *out;

	json_object_object_add(m, "id", json_object_new_string(id));
	json_object_object_add(m, "kind", json_object_new_string(kind));
	json_object_object_add(m, "trust_domain", json_object_new_string(a->fed->td));
	json_object_object_add(m, "node", json_object_new_string(a->fed->name));
	json_object_object_add(m, "target", json_object_new_string(target));
	if (rec)
		json_object_object_add(m, "reason",
				       json_object_get(json_object_object_get(rec, "reason")));
	out = alert_for(a->fed, m, c->td);
	send_json(a->fed, c->id, out);
	json_object_put(out);
	json_object_put(m);
}

/*
 * Releases first: every quarantine c was alerted about that is no longer in
 * force here (released, or issued again, which is another alert) gets an
 * alert saying so, under the id of its quarantine's alert and "/released".
 */
static void alert_foreign_releases(struct agent *a, struct fed_client *c)
{
	struct json_object *quarantine = state_section(a->state, "quarantine");
	struct json_object *gone = json_object_new_array();
	char id[SPIFFE_ID_MAX + 48];

	json_object_object_foreach(c->alerted, key, target_of)
	{
		const char *target = json_object_get_string(target_of);
		struct json_object *rec;

		if (json_object_object_get_ex(quarantine, target, &rec) &&
		    foreign_quarantine_of(c->td, target, rec)) {
			foreign_alert_id(target, rec, id, sizeof(id));
			if (strcmp(id, key) == 0)
				continue;
		}
		json_object_array_add(gone, json_object_new_string(key));
	}
	for (size_t i = 0; i < json_object_array_length(gone); i++) {
		const char *was = json_object_get_string(json_object_array_get_idx(gone, i));

		snprintf(id, sizeof(id), "%s/released", was);
		foreign_alert_send(a, c, id, "foreign_quarantine_released",
				   json_object_get_string(json_object_object_get(c->alerted, was)),
				   NULL);
		json_object_object_del(c->alerted, was);
	}
	json_object_put(gone);
}

/* Alerts to c, an agent of another mesh, for quarantines this mesh put on its identities. */
static void alert_foreign_quarantines(struct agent *a, struct fed_client *c)
{
	char id[SPIFFE_ID_MAX + 48];

	alert_foreign_releases(a, c);
	json_object_object_foreach(state_section(a->state, "quarantine"), target, rec)
	{
		if (!foreign_quarantine_of(c->td, target, rec))
			continue;
		foreign_alert_id(target, rec, id, sizeof(id));
		if (json_object_object_get_ex(c->alerted, id, NULL))
			continue;
		json_object_object_add(c->alerted, id, json_object_new_string(target));
		foreign_alert_send(a, c, id, "foreign_quarantine", target, rec);
	}
}

static void export_to(struct agent *a, struct fed_client *c)
{
	struct json_object *m = msg_new("endpoints");

	json_object_object_add(m, "endpoints", export_endpoints(a, c->td));
	send_changed(a->fed, c, m, &c->last_endpoints);
	json_object_put(m);
	m = msg_new("quarantine_set");
	json_object_object_add(m, "records", export_quarantine(a));
	send_changed(a->fed, c, m, &c->last_quarantine);
	json_object_put(m);
	alert_foreign_quarantines(a, c);
}

void fed_links_state_changed(struct agent *a)
{
	struct fed *f = a->fed;
	struct json_object *m;
	const char *text;

	if (!f->links)
		return;
	for (size_t i = 0; i < f->n_clients; i++)
		export_to(a, &f->clients[i]);
	m = state_msg(a);
	text = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
	if (!f->last_state || strcmp(f->last_state, text)) {
		free(f->last_state);
		f->last_state = strdup(text);
		to_mesh(f, m);
	}
	json_object_put(m);
}

/* --- what other meshes say ----------------------------------------------------------------- */

/* The endpoints td's mesh publishes, instead of those it published before. */
static void take_endpoints(struct agent *a, struct fed_remote *r, struct json_object *msg)
{
	struct json_object *list = json_object_object_get(msg, "endpoints");
	struct json_object *next = state_copy(a->state), *eps = state_section(next, "endpoints");
	struct control_error err = {};
	char origin[SPIFFE_TRUST_DOMAIN_MAX + 8];

	snprintf(origin, sizeof(origin), "td:%s", r->td);
	json_object_object_foreach(state_section(a->state, "endpoints"), id, e)
	{
		const char *o = str_of(e, "origin");

		if (o && strcmp(o, origin) == 0)
			json_object_object_del(eps, id);
	}
	for (size_t i = 0; json_object_is_type(list, json_type_array) &&
			   i < json_object_array_length(list); i++) {
		struct json_object *ep = json_object_array_get_idx(list, i);
		const char *node = str_of(ep, "node");

		if (!node) {
			log_warn("mesh '%s': an endpoint without a node: ignored", r->td);
			continue;
		}
		fed_take_endpoint(a, next, r->td, origin, node, ep);
	}
	if (json_object_equal(eps, state_section(a->state, "endpoints"))) {
		json_object_put(next);
		return;
	}
	if (agent_commit(a, next, &err))
		log_error("mesh '%s': its endpoints are not in force: %s", r->td, err.message);
	else
		log_info("mesh '%s': its endpoints in force (%zu announced)", r->td,
			 json_object_is_type(list, json_type_array) ? json_object_array_length(list)
								     : 0);
}

/* td's quarantines of its own identities: enforced here too, and lifted when td lifts them. */
static void take_quarantine_set(struct agent *a, struct fed_remote *r, struct json_object *msg)
{
	struct json_object *set = json_object_object_get(msg, "records");
	struct json_object *gone = json_object_new_array();
	char origin[SPIFFE_TRUST_DOMAIN_MAX + 8];

	if (!json_object_is_type(set, json_type_object)) {
		log_warn("mesh '%s': a quarantine set that is no object: ignored", r->td);
		json_object_put(gone);
		return;
	}
	snprintf(origin, sizeof(origin), "td:%s", r->td);
	json_object_object_foreach(state_section(a->state, "quarantine"), t, held)
	{
		const char *o = str_of(held, "origin");

		if (o && strcmp(o, origin) == 0 && !json_object_object_get_ex(set, t, NULL))
			json_object_array_add(gone, json_object_new_string(t));
	}
	for (size_t i = 0; i < json_object_array_length(gone); i++)
		fed_lift(a, json_object_get_string(json_object_array_get_idx(gone, i)), origin);
	json_object_object_foreach(set, target, rec)
	{
		if (!spiffe_match_trust_domain(r->td, target)) {
			log_warn("mesh '%s' asks to quarantine '%s', which is not of its trust "
				 "domain: refused (a mesh speaks only for its own identities)",
				 r->td, target);
			continue;
		}
		if (!json_object_object_get_ex(state_section(a->state, "quarantine"), target, NULL))
			fed_enforce(a, target, rec, origin);
	}
	json_object_put(gone);
}

/*
 * An alert from another agent: kept once (by its id), and, when it comes
 * from this mesh, passed on to the other meshes' agents linked to us.
 */
static void take_alert(struct agent *a, const char *from, struct json_object *msg, bool mesh)
{
	const char *kind = str_of(msg, "kind"), *td = str_of(msg, "trust_domain");
	const char *id = str_of(msg, "id");

	if (!kind || !td || !id) {
		log_warn("link from '%s': an alert without id, kind or trust domain: ignored", from);
		return;
	}
	if (alert_seen(a->fed, id))
		return;
	if (!mesh && strcmp(td, from) != 0) {
		log_warn("an alert from '%s' says it comes from '%s': ignored (a mesh speaks only "
			 "for itself)", from, td);
		return;
	}
	if (mesh) {
		struct json_object *m;

		for (size_t i = 0; i < a->fed->n_clients; i++) {
			m = alert_for(a->fed, msg, a->fed->clients[i].td);
			send_json(a->fed, a->fed->clients[i].id, m);
			json_object_put(m);
		}
	}
	log_warn("alert from mesh '%s' (%s): %s %s%s%s", td, from, kind,
		 str_of(msg, "target") ? str_of(msg, "target") : "",
		 str_of(msg, "reason") ? ": " : "", str_of(msg, "reason") ? str_of(msg, "reason") : "");
	fed_alert_received(a, msg);
}

/* A mesh peer's quarantine push, as the store would bring it. */
static void take_push(struct agent *a, const char *from, struct json_object *msg)
{
	const char *op = str_of(msg, "op"), *target = str_of(msg, "target");

	if (!op || !target) {
		log_warn("peer '%s': a quarantine message without op or target: ignored", from);
		return;
	}
	if (strcmp(op, "add") == 0)
		fed_enforce(a, target, json_object_object_get(msg, "record"), "mesh");
	else if (strcmp(op, "del") == 0)
		fed_lift(a, target, "mesh");
}

/* A node's numbers, kept by its node SVID for peer list (the sender is who the link proved). */
static void take_telemetry(struct agent *a, const char *from, struct json_object *msg)
{
	struct json_object *t = json_object_object_get(msg, "totals");

	if (!from || !json_object_is_type(t, json_type_object))
		return;
	json_object_object_add(a->fed->telemetry, from, json_object_get(t));
}

static struct fed_peer *peer_by_dial(struct fed *f, uint64_t id)
{
	for (size_t i = 0; i < f->n_peers; i++)
		if (f->peers[i].dial == id)
			return &f->peers[i];
	return NULL;
}

static struct fed_peer *peer_by_id(struct fed *f, const char *spiffe_id)
{
	for (size_t i = 0; spiffe_id && i < f->n_peers; i++)
		if (strcmp(f->peers[i].spiffe_id, spiffe_id) == 0)
			return &f->peers[i];
	return NULL;
}

static struct fed_remote *remote_by_dial(struct fed *f, uint64_t id)
{
	for (size_t i = 0; i < f->n_remotes; i++)
		if (f->remotes[i].dial == id)
			return &f->remotes[i];
	return NULL;
}

static struct fed_client *client_by_id(struct fed *f, uint64_t id)
{
	for (size_t i = 0; i < f->n_clients; i++)
		if (f->clients[i].id == id)
			return &f->clients[i];
	return NULL;
}

/* A mesh peer's state message: its versions. */
static void take_state(struct fed_peer *p, struct json_object *msg)
{
	if (!p)
		return;
	p->policy_version = json_object_get_int64(json_object_object_get(msg, "policy_version"));
	p->bundle_sequence = json_object_get_int64(json_object_object_get(msg, "bundle_sequence"));
	p->has_state = true;
}

/*
 * What a message may do depends on who the link proved its sender to be:
 * an agent of this mesh may push quarantines and state; an agent of a
 * federated mesh only what its mesh may tell (over our dial to it:
 * endpoints, quarantine sets) and alerts and numbers.
 */
static void on_message(struct agent *a, struct link_event *ev)
{
	struct fed *f = a->fed;
	struct json_object *msg = json_tokener_parse(ev->text);
	const char *type = str_of(msg, "type");
	bool mesh = ev->peer_td && strcmp(ev->peer_td, f->td) == 0;
	struct fed_remote *r = mesh ? NULL : remote_by_dial(f, ev->id);
	struct fed_peer *p = mesh ? peer_by_dial(f, ev->id) : NULL;

	if (mesh && !p)
		p = peer_by_id(f, ev->peer_id);
	if (!type || !ev->peer_td) {
		log_warn("link %llu: a message without a type or sender: ignored",
			 (unsigned long long)ev->id);
	} else if (strcmp(type, "telemetry") == 0) {
		take_telemetry(a, ev->peer_id, msg);
	} else if (r && strcmp(type, "endpoints") == 0) {
		take_endpoints(a, r, msg);
	} else if (r && strcmp(type, "quarantine_set") == 0) {
		take_quarantine_set(a, r, msg);
	} else if (strcmp(type, "alert") == 0) {
		take_alert(a, ev->peer_td, msg, mesh);
	} else if (mesh && strcmp(type, "quarantine") == 0) {
		take_push(a, ev->peer_id, msg);
	} else if (mesh && strcmp(type, "state") == 0) {
		take_state(p, msg);
	} else {
		log_warn("link %llu from '%s': a message of type '%s' that this link does not "
			 "carry: ignored", (unsigned long long)ev->id,
			 ev->peer_id ? ev->peer_id : "?", type);
	}
	if (p)
		p->last_seen = time(NULL);
	if (r)
		r->last_seen = time(NULL);
	json_object_put(msg);
}

static void client_add(struct agent *a, struct link_event *ev)
{
	struct fed *f = a->fed;
	struct fed_client *grown = realloc(f->clients, (f->n_clients + 1) * sizeof(*grown)), *c;

	if (!grown)
		return;
	f->clients = grown;
	c = &f->clients[f->n_clients++];
	*c = (struct fed_client){ .id = ev->id, .alerted = json_object_new_object() };
	snprintf(c->td, sizeof(c->td), "%s", ev->peer_td);
	snprintf(c->node_id, sizeof(c->node_id), "%s", ev->peer_id);
	log_info("mesh '%s': agent '%s' linked", c->td, c->node_id);
	export_to(a, c);
}

static void client_del(struct fed *f, uint64_t id)
{
	for (size_t i = 0; i < f->n_clients; i++) {
		if (f->clients[i].id != id)
			continue;
		free(f->clients[i].last_endpoints);
		free(f->clients[i].last_quarantine);
		json_object_put(f->clients[i].alerted);
		f->clients[i] = f->clients[--f->n_clients];
		return;
	}
}

static void on_up(struct agent *a, struct link_event *ev)
{
	struct fed *f = a->fed;
	struct fed_peer *p = peer_by_dial(f, ev->id);
	struct fed_remote *r = remote_by_dial(f, ev->id);
	struct json_object *m;

	if (p) {
		p->up = true;
		p->last_seen = time(NULL);
		m = state_msg(a);
		send_json(f, p->dial, m);
		json_object_put(m);
	} else if (r) {
		r->up = true;
		r->last_seen = time(NULL);
		r->last_error[0] = 0;
		log_info("mesh '%s': linked to '%s'", r->td, r->endpoint_id);
	} else if (ev->dir == LINK_IN && ev->peer_td && strcmp(ev->peer_td, f->td) != 0) {
		client_add(a, ev);
	} else if ((p = peer_by_id(f, ev->peer_id))) {
		p->last_seen = time(NULL);
	}
}

static void on_down(struct agent *a, struct link_event *ev)
{
	struct fed *f = a->fed;
	struct fed_peer *p = peer_by_dial(f, ev->id);
	struct fed_remote *r = remote_by_dial(f, ev->id);

	if (p) {
		if (p->up)
			log_info("peer '%s': link down: %s", p->name, ev->text ? ev->text : "");
		p->up = false;
	} else if (r) {
		if (r->up || strcmp(r->last_error, ev->text ? ev->text : ""))
			log_warn("mesh '%s': link to '%s' %s: %s", r->td, r->endpoint_id,
				 r->up ? "lost" : "not up", ev->text ? ev->text : "");
		r->up = false;
		snprintf(r->last_error, sizeof(r->last_error), "%s", ev->text ? ev->text : "");
		if (ev->text && strstr(ev->text, "(untrusted)"))
			fed_bundles_kick(a, r->td);	/* signed by a key we do not know yet? */
	} else if (client_by_id(f, ev->id)) {
		log_info("mesh '%s': agent '%s' unlinked: %s", client_by_id(f, ev->id)->td,
			 client_by_id(f, ev->id)->node_id, ev->text ? ev->text : "");
		client_del(f, ev->id);
	} else if (!ev->was_up && ev->dir == LINK_IN && ev->text) {
		log_warn("link from %s refused: %s", ev->peer_id ? ev->peer_id : "an unknown peer",
			 ev->text);
	}
}

void fed_links_dispatch(struct agent *a)
{
	struct link_event ev[EVENTS_BATCH];
	size_t n = link_engine_collect(a->fed->links, ev, EVENTS_BATCH);

	for (size_t i = 0; i < n; i++) {
		if (ev[i].type == LINK_EV_UP)
			on_up(a, &ev[i]);
		else if (ev[i].type == LINK_EV_MESSAGE)
			on_message(a, &ev[i]);
		else
			on_down(a, &ev[i]);
		link_event_release(&ev[i]);
	}
}

/* --- peers from the store ---------------------------------------------------------------------- */

static void peer_dial(struct fed *f, struct fed_peer *p)
{
	char addr[96];
	int r;

	snprintf(addr, sizeof(addr), strchr(p->addr, ':') ? "[%s]:%u" : "%s:%u", p->addr,
		 p->peer_port);
	r = link_dial(f->links, addr, p->spiffe_id, &p->dial);
	if (r)
		log_warn_errno(r, "peer '%s' at %s: no link", p->name, addr);
	else
		log_info("peer '%s': linking to %s", p->name, addr);
}

/* One node record into the peers table; false when it is not a peer to dial. */
static bool peer_from_record(struct fed *f, const char *name, struct json_object *rec,
			     struct fed_peer *out)
{
	const char *id = str_of(rec, "spiffe_id"), *addr = str_of(rec, "address");
	int64_t port = json_object_get_int64(json_object_object_get(rec, "peer_port"));
	char want[SPIFFE_ID_MAX + 1];
	__u8 bin[16];

	snprintf(want, sizeof(want), "spiffe://%s" NODE_PATH "%s", f->td, name);
	if (!id || strcmp(id, want) || !addr || addr_parse_node(addr, bin) || port < 1 ||
	    port > 65535)
		return false;
	*out = (struct fed_peer){ .peer_port = (unsigned int)port };
	snprintf(out->name, sizeof(out->name), "%s", name);
	snprintf(out->spiffe_id, sizeof(out->spiffe_id), "%s", id);
	snprintf(out->addr, sizeof(out->addr), "%s", addr);
	return true;
}

void fed_links_peers_sync(struct agent *a)
{
	struct fed *f = a->fed;
	struct fed_peer *next = NULL;
	size_t n = 0;

	if (!f->links)
		return;
	json_object_object_foreach(f->mirror, key, e)
	{
		struct json_object *rec;
		struct fed_peer p, *grown;

		(void)e;
		if (strncmp(key, "nodes/", 6) != 0 || strcmp(key + 6, f->name) == 0)
			continue;
		rec = fed_mirror_json(f, key);
		if (rec && peer_from_record(f, key + 6, rec, &p) &&
		    (grown = realloc(next, (n + 1) * sizeof(*grown)))) {
			struct fed_peer *old = NULL;

			next = grown;
			for (size_t i = 0; i < f->n_peers && !old; i++)
				if (strcmp(f->peers[i].name, p.name) == 0)
					old = &f->peers[i];
			/* the same agent at the same place keeps its link */
			if (old && strcmp(old->addr, p.addr) == 0 && old->peer_port == p.peer_port) {
				next[n++] = *old;
				old->dial = 0;
			} else {
				next[n++] = p;
				peer_dial(f, &next[n - 1]);
			}
		}
		json_object_put(rec);
	}
	for (size_t i = 0; i < f->n_peers; i++)
		if (f->peers[i].dial) {
			log_info("peer '%s': gone from the store, unlinked", f->peers[i].name);
			link_undial(f->links, f->peers[i].dial);
		}
	free(f->peers);
	f->peers = next;
	f->n_peers = n;
}

/* --- trust, start, stop --------------------------------------------------------------------------- */

void fed_links_trust_changed(struct agent *a)
{
	struct auth_trust *t;

	if (!a->fed || !a->fed->links || auth_trust_new(a->auth->bundles, &t))
		return;
	link_engine_set_trust(a->fed->links, t);
}

static int dial_remotes(struct fed *f)
{
	for (size_t i = 0; i < f->n_remotes; i++) {
		struct fed_remote *r = &f->remotes[i];
		char addr[96];
		int err;

		snprintf(addr, sizeof(addr), strchr(r->host, ':') ? "[%s]:%u" : "%s:%u", r->host,
			 f->peer_port);
		err = link_dial(f->links, addr, r->endpoint_id, &r->dial);
		if (err)
			return log_error_errno(err, "mesh '%s': cannot link to %s", r->td, addr);
		log_info("mesh '%s': linking to '%s' at %s", r->td, r->endpoint_id, addr);
	}
	return 0;
}

int fed_links_start(struct agent *a, const char *listen)
{
	struct fed *f = a->fed;
	struct link_config cfg = { .svids = a->auth->svids, .admit = admit, .hello = hello,
				   .ctx = f };
	char why[LINK_WHY_MAX] = "";
	int r;

	if (link_parse_listen(listen, &cfg.listen, &cfg.listen_len))
		return log_error_errno(-EINVAL, "--peer-listen '%s': not ADDR:PORT", listen);
	f->peer_port = addr_sockaddr_port(&cfg.listen);
	if (a->node_addr[0]) {
		struct sockaddr_storage src;
		socklen_t len;
		char with_port[96];

		snprintf(with_port, sizeof(with_port), strchr(a->node_addr, ':') ? "[%s]:1" : "%s:1",
			 a->node_addr);
		if (link_parse_listen(with_port, &src, &len) == 0) {
			((struct sockaddr_in *)&src)->sin_port = 0;	/* same place in both */
			cfg.source = src;
			cfg.source_len = len;
		}
	}
	r = link_engine_new(&cfg, &f->links, why, sizeof(why));
	if (!r)
		r = link_engine_start(f->links, why, sizeof(why));
	if (r)
		return log_error_errno(r, "links on '%s': %s", listen, why);
	fed_links_trust_changed(a);
	log_info("links: listening on %s for the mesh's peers and federated meshes", listen);
	return dial_remotes(f);
}

void fed_links_stop(struct fed *f)
{
	link_engine_free(f->links);
	f->links = NULL;
	for (size_t i = 0; i < f->n_clients; i++) {
		free(f->clients[i].last_endpoints);
		free(f->clients[i].last_quarantine);
		json_object_put(f->clients[i].alerted);
	}
	free(f->clients);
	free(f->peers);
	free(f->last_state);
}

/* --- views ----------------------------------------------------------------------------------------- */

/* The link info of connection id in list, or NULL. */
static const struct link_info *info_of(const struct link_info *list, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (list[i].id == id)
			return &list[i];
	return NULL;
}

/* The last bytes from peer_id on any connection, in seconds of wall time; 0: never. */
static time_t last_rx(const struct link_info *list, size_t n, const char *peer_id)
{
	int64_t best = 0;

	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].peer_id, peer_id) == 0 && list[i].last_rx_ms > best)
			best = list[i].last_rx_ms;
	return best ? time(NULL) - (time_t)((io_now_ms() - best) / 1000) : 0;
}

void fed_links_peer_item(struct agent *a, const char *name, struct json_object *item)
{
	struct fed *f = a->fed;
	struct link_info *list = NULL;
	const struct link_info *li;
	size_t n = 0;

	if (!f->links || link_list(f->links, &list, &n))
		return;
	for (size_t i = 0; i < f->n_peers; i++) {
		struct fed_peer *p = &f->peers[i];

		if (strcmp(p->name, name) != 0)
			continue;
		li = info_of(list, n, p->dial);
		json_object_object_add(item, "state", json_object_new_string(
						      p->up ? "up" : "connecting"));
		if (li && li->last_error[0] && !p->up)
			json_object_object_add(item, "last_error",
					       json_object_new_string(li->last_error));
		if (last_rx(list, n, p->spiffe_id))
			json_object_object_add(item, "last_seen", json_object_new_int64(
					       (int64_t)last_rx(list, n, p->spiffe_id)));
		if (p->has_state) {
			json_object_object_add(item, "policy_version",
					       json_object_new_int64(p->policy_version));
			json_object_object_add(item, "bundle_sequence",
					       json_object_new_int64(p->bundle_sequence));
		}
		json_object_object_add(item, "telemetry", json_object_get(json_object_object_get(
							  f->telemetry, p->spiffe_id)));
	}
	free(list);
}

/* The federated meshes' agents this one links with, as peer list items. */
void fed_links_remote_items(struct agent *a, struct json_object *list)
{
	struct fed *f = a->fed;
	struct link_info *info = NULL;
	size_t n = 0;

	if (!f->links || link_list(f->links, &info, &n))
		return;
	for (size_t i = 0; i < f->n_remotes; i++) {
		struct fed_remote *r = &f->remotes[i];
		struct json_object *item = json_object_new_object();
		const struct link_info *li = info_of(info, n, r->dial);
		uint64_t seq;

		json_object_object_add(item, "node", json_object_new_string(
						     strrchr(r->endpoint_id, '/') + 1));
		json_object_object_add(item, "spiffe_id", json_object_new_string(r->endpoint_id));
		json_object_object_add(item, "trust_domain", json_object_new_string(r->td));
		json_object_object_add(item, "address", json_object_new_string(r->host));
		json_object_object_add(item, "kind", json_object_new_string("federation"));
		json_object_object_add(item, "state", json_object_new_string(
						      r->up ? "up" : "connecting"));
		json_object_object_add(item, "telemetry", json_object_get(json_object_object_get(
							  f->telemetry, r->endpoint_id)));
		if (li && li->last_error[0] && !r->up)
			json_object_object_add(item, "last_error",
					       json_object_new_string(li->last_error));
		if (last_rx(info, n, r->endpoint_id))
			json_object_object_add(item, "last_seen", json_object_new_int64(
					       (int64_t)last_rx(info, n, r->endpoint_id)));
		if (peerauth_bundle_sequence(a, r->td, &seq) == 0)
			json_object_object_add(item, "bundle_sequence",
					       json_object_new_int64((int64_t)seq));
		json_object_array_add(list, item);
	}
	for (size_t i = 0; i < f->n_clients; i++) {
		struct json_object *item = json_object_new_object();
		struct fed_client *c = &f->clients[i];

		json_object_object_add(item, "node", json_object_new_string(
						     strrchr(c->node_id, '/') + 1));
		json_object_object_add(item, "spiffe_id", json_object_new_string(c->node_id));
		json_object_object_add(item, "trust_domain", json_object_new_string(c->td));
		json_object_object_add(item, "kind", json_object_new_string("federation"));
		json_object_object_add(item, "state", json_object_new_string("linked to us"));
		json_object_object_add(item, "telemetry", json_object_get(json_object_object_get(
							  f->telemetry, c->node_id)));
		if (last_rx(info, n, c->node_id))
			json_object_object_add(item, "last_seen", json_object_new_int64(
					       (int64_t)last_rx(info, n, c->node_id)));
		json_object_array_add(list, item);
	}
	free(info);
}

void fed_trust_domain_removed(struct agent *a, const char *td, struct json_object *result)
{
	struct fed *f = a->fed;
	struct json_object *next;
	struct control_error err = {};
	char origin[SPIFFE_TRUST_DOMAIN_MAX + 8];
	int endpoints = 0, quarantines = 0, links = 0;

	if (!f)
		return;
	snprintf(origin, sizeof(origin), "td:%s", td);
	next = state_copy(a->state);
	json_object_object_foreach(state_section(a->state, "endpoints"), id, e)
	{
		const char *o = str_of(e, "origin");

		if (o && strcmp(o, origin) == 0 && ++endpoints)
			json_object_object_del(state_section(next, "endpoints"), id);
	}
	json_object_object_foreach(state_section(a->state, "quarantine"), t, q)
	{
		const char *o = str_of(q, "origin");

		if (o && strcmp(o, origin) == 0 && ++quarantines)
			json_object_object_del(state_section(next, "quarantine"), t);
	}
	if (endpoints + quarantines == 0)
		json_object_put(next);
	else if (agent_commit(a, next, &err))
		log_error("trust domain '%s': its endpoints and quarantines stay: %s", td,
			  err.message);
	if (f->links)
		links = link_close_td(f->links, td, "the trust domain was removed from the federation");
	log_info("trust domain '%s' removed: %d endpoints, %d of its quarantines, %d links", td,
		 endpoints, quarantines, links);
	json_object_object_add(result, "endpoints_removed", json_object_new_int(endpoints));
	json_object_object_add(result, "links_closed", json_object_new_int(links));
}
