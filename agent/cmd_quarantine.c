// SPDX-License-Identifier: Apache-2.0
/*
 * quarantine.*: cut an identity, or a whole trust domain, off at once. add
 * returns after the maps are rewritten and the identity's TCP sockets in
 * every workload namespace are destroyed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "commands.h"
#include "datapath.h"
#include "fed.h"
#include "log.h"
#include "peerauth.h"
#include "spiffe.h"
#include "state.h"

#define REASON_MAX 256

static long long elapsed_us(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000000LL + (now.tv_nsec - start->tv_nsec) / 1000;
}

/* Numbers what the record names: an identity and its trust domain, or a trust domain. */
static int number_target(struct json_object *next, const char *target, bool td,
			 struct control_error *err)
{
	struct spiffe_id sid;
	char name[256];
	__u32 num;

	if (!td)
		return command_number_identity(next, target, &num, err);
	spiffe_parse(target, &sid, NULL, 0);
	snprintf(name, sizeof(name), "%.*s", (int)sid.td_len, sid.td);
	if (state_trust_domain(next, name, &num))
		return control_error_set(err, "internal", "no trust domain numbers left");
	return 0;
}

/*
 * A new record. With a mesh store it is the mesh's: origin "mesh", issued by
 * this node, and not in the store yet (fed_sync.c marks it once it is).
 */
static struct json_object *record_new(struct agent *a, bool td, const char *reason)
{
	struct json_object *rec = json_object_new_object();

	json_object_object_add(rec, "kind", json_object_new_string(td ? "trust_domain"
								       : "identity"));
	json_object_object_add(rec, "reason", json_object_new_string(reason ? reason : ""));
	json_object_object_add(rec, "since", json_object_new_int64((int64_t)time(NULL)));
	if (fed_active(a)) {
		json_object_object_add(rec, "issuer", json_object_new_string(fed_node_name(a)));
		json_object_object_add(rec, "origin", json_object_new_string("mesh"));
		json_object_object_add(rec, "in_store", json_object_new_boolean(false));
	}
	return rec;
}

static const char *record_origin(struct agent *a, const char *target)
{
	struct json_object *rec, *o;

	if (!json_object_object_get_ex(state_section(a->state, "quarantine"), target, &rec) ||
	    !json_object_object_get_ex(rec, "origin", &o))
		return NULL;
	return json_object_get_string(o);
}

/* A record of the mesh in force here goes to the store, without what is local to it. */
static void publish(struct agent *a, const char *target)
{
	const char *origin = record_origin(a, target);
	struct json_object *rec;

	if (!origin || strcmp(origin, "mesh") != 0)
		return;
	rec = state_copy(json_object_object_get(state_section(a->state, "quarantine"), target));
	json_object_object_del(rec, "origin");
	json_object_object_del(rec, "in_store");
	fed_quarantine_changed(a, target, rec);
	json_object_put(rec);
}

/*
 * Rewrites the maps, destroys the sockets, then persists: the fsync of the
 * state file is not on the path to the applications' error. If persisting
 * fails, the maps go back and the command fails; destroyed sockets stay
 * destroyed.
 */
int quarantine_enforce(struct agent *a, const char *target, struct json_object *record,
		       unsigned int *destroyed, struct control_error *err)
{
	struct json_object *next, *old;
	struct spiffe_id sid;
	int r;

	*destroyed = 0;
	next = state_copy(a->state);
	if (!next) {
		json_object_put(record);
		return control_error_set(err, "internal", "out of memory");
	}
	/* already in force: keep its record, only the tear-down is repeated */
	if (!json_object_object_get_ex(state_section(a->state, "quarantine"), target, &old))
		state_put(next, "quarantine", target, record);
	else
		json_object_put(record);
	spiffe_parse(target, &sid, NULL, 0);
	r = number_target(next, target, sid.path_len == 0, err);
	if (r) {
		json_object_put(next);
		return r;
	}
	r = agent_apply(a, next, err);
	if (r)
		return r;
	r = datapath_destroy_sockets(&a->dp, next, destroyed);
	if (r)
		log_warn_errno(r, "quarantine '%s': destroying its sockets", target);
	peerauth_tunnel_cut(a);	/* the maps say so now: tunnelled flows go too */
	return agent_persist(a, next, err);
}

int quarantine_lift(struct agent *a, const char *target, struct control_error *err)
{
	struct json_object *next, *old;

	if (!json_object_object_get_ex(state_section(a->state, "quarantine"), target, &old))
		return control_error_set(err, "not_found", "'%s' is not quarantined", target);
	next = state_copy(a->state);
	if (!next)
		return control_error_set(err, "internal", "out of memory");
	state_put(next, "quarantine", target, NULL);
	return agent_commit(a, next, err);
}

void quarantine_automatic(struct agent *a, const char *target, const char *kind, __u64 alert)
{
	struct control_error err = {};
	unsigned int destroyed = 0;
	char reason[REASON_MAX + 1];
	struct spiffe_id sid;

	if (spiffe_parse(target, &sid, NULL, 0) ||
	    json_object_object_get_ex(state_section(a->state, "quarantine"), target, NULL))
		return;	/* no ID, or in force already */
	snprintf(reason, sizeof(reason), "automatic: %s alert %llu", kind,
		 (unsigned long long)alert);
	if (quarantine_enforce(a, target, record_new(a, sid.path_len == 0, reason), &destroyed,
			       &err)) {
		log_error("automatic quarantine of '%s' failed: %s", target, err.message);
		return;
	}
	log_warn("quarantine '%s' in force automatically (%s alert %llu, --alert-quarantine): %u "
		 "sockets destroyed", target, kind, (unsigned long long)alert, destroyed);
	publish(a, target);
}

COMMAND(cmd_quarantine_add)
{
	struct agent *a = ctx;
	const char *target, *reason = NULL;
	unsigned int destroyed = 0;
	struct timespec start;
	struct spiffe_id sid;
	bool td;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &start);
	r = command_spiffe_id(args, "target", &target, err);
	if (!r)
		r = control_arg_string(args, "reason", false, &reason, err);
	if (!r && reason && strlen(reason) > REASON_MAX)
		r = control_error_set(err, "invalid_argument", "reason: longer than %d bytes",
				      REASON_MAX);
	if (r)
		return r;
	spiffe_parse(target, &sid, NULL, 0);
	td = sid.path_len == 0;
	r = quarantine_enforce(a, target, record_new(a, td, reason), &destroyed, err);
	if (r)
		return r;
	publish(a, target);
	log_info("quarantine '%s' in force: %u sockets destroyed in %lld us", target, destroyed,
		 elapsed_us(&start));
	json_object_object_add(result, "target", json_object_new_string(target));
	json_object_object_add(result, "kind", json_object_new_string(td ? "trust_domain"
									  : "identity"));
	json_object_object_add(result, "sockets_destroyed", json_object_new_int64(destroyed));
	json_object_object_add(result, "elapsed_us", json_object_new_int64(elapsed_us(&start)));
	return 0;
}

COMMAND(cmd_quarantine_del)
{
	const char *target;
	int r;

	struct agent *a = ctx;
	const char *origin;
	bool mesh;

	r = control_arg_string(args, "target", true, &target, err);
	if (r)
		return r;
	origin = record_origin(a, target);
	if (origin && strncmp(origin, "td:", 3) == 0)
		return control_error_set(err, CONTROL_E_PERMISSION_DENIED,
					 "'%s' was quarantined by trust domain '%s', which alone "
					 "can release it", target, origin + 3);
	mesh = origin && strcmp(origin, "mesh") == 0;
	r = quarantine_lift(a, target, err);
	if (!r && mesh)
		fed_quarantine_changed(a, target, NULL);
	return r;
}

COMMAND(cmd_quarantine_list)
{
	struct agent *a = ctx;
	struct json_object *list = json_object_new_array();

	json_object_object_foreach(state_section(a->state, "quarantine"), target, rec)
	{
		struct json_object *item = state_copy(rec);

		json_object_object_add(item, "target", json_object_new_string(target));
		json_object_array_add(list, item);
	}
	json_object_object_add(result, "quarantine", list);
	return 0;
}
