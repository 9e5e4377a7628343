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
#include "log.h"
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

static struct json_object *record_new(bool td, const char *reason)
{
	struct json_object *rec = json_object_new_object();

	json_object_object_add(rec, "kind", json_object_new_string(td ? "trust_domain"
								       : "identity"));
	json_object_object_add(rec, "reason", json_object_new_string(reason ? reason : ""));
	json_object_object_add(rec, "since", json_object_new_int64((int64_t)time(NULL)));
	return rec;
}

/*
 * Rewrites the maps, destroys the sockets, then persists: the fsync of the
 * state file is not on the path to the applications' error. If persisting
 * fails, the maps go back and the command fails; destroyed sockets stay
 * destroyed.
 */
static int quarantine_commit(struct agent *a, const char *target, bool td, const char *reason,
			     unsigned int *destroyed, struct control_error *err)
{
	struct json_object *next, *old;
	int r;

	next = state_copy(a->state);
	if (!next)
		return control_error_set(err, "internal", "out of memory");
	/* already in force: keep its record, only the tear-down is repeated */
	if (!json_object_object_get_ex(state_section(a->state, "quarantine"), target, &old))
		state_put(next, "quarantine", target, record_new(td, reason));
	r = number_target(next, target, td, err);
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
	return agent_persist(a, next, err);
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
	r = quarantine_commit(a, target, td, reason, &destroyed, err);
	if (r)
		return r;
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
	struct agent *a = ctx;
	struct json_object *next, *old;
	const char *target;
	int r;

	r = control_arg_string(args, "target", true, &target, err);
	if (r)
		return r;
	if (!json_object_object_get_ex(state_section(a->state, "quarantine"), target, &old))
		return control_error_set(err, "not_found", "'%s' is not quarantined", target);
	next = state_copy(a->state);
	if (!next)
		return control_error_set(err, "internal", "out of memory");
	state_put(next, "quarantine", target, NULL);
	return agent_commit(a, next, err);
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
