// SPDX-License-Identifier: Apache-2.0
/*
 * observe and alerts: the records the agent keeps, and with "follow" the
 * records to come. A following connection gets the usual reply first;
 * then control_serve() hands it to the take function, which makes it a
 * follower of the observer (docs/control-protocol.md, "Streaming").
 */
#include <errno.h>
#include <string.h>

#include "agent.h"
#include "fed.h"
#include "observe_int.h"
#include "reason.h"
#include "spiffe.h"

#define SINCE_MAX (1LL << 50) /* ms: far beyond any real time, far below overflow */

/* The filter of an observe request; strings borrowed from args. */
static int filter_args(struct json_object *args, struct flow_filter *f, int64_t *last, bool *follow,
		       struct control_error *err)
{
	const char *verdict = NULL, *reason = NULL;
	int64_t since = 0, port = 0;
	int r, v;

	r = control_arg_int(args, "last", false, 0, INT32_MAX, last, err);
	if (!r)
		r = control_arg_int(args, "since_ms", false, 0, SINCE_MAX, &since, err);
	if (!r)
		r = control_arg_int(args, "port", false, 1, 65535, &port, err);
	if (!r)
		r = control_arg_string(args, "verdict", false, &verdict, err);
	if (!r)
		r = control_arg_string(args, "reason", false, &reason, err);
	if (!r)
		r = control_arg_string(args, "identity", false, &f->identity, err);
	if (!r)
		r = control_arg_string(args, "trust_domain", false, &f->trust_domain, err);
	if (!r)
		r = control_arg_bool(args, "follow", false, follow, err);
	if (r)
		return r;
	v = verdict ? flow_verdict_from_name(verdict) : 0;
	if (v < 0)
		return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
					 "verdict '%s': expected allow, deny or pending", verdict);
	f->verdict = (__u8)v;
	if (reason && reason_from_name(reason) < 0)
		return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
					 "reason '%s': no such reason (see fedguardctl status)",
					 reason);
	f->reason = reason ? reason_from_name(reason) + 1 : 0;
	if (f->identity && spiffe_check(f->identity, NULL, 0))
		return control_error_set(err, CONTROL_E_INVALID_ARGUMENT,
					 "identity '%s' is not a SPIFFE ID", f->identity);
	f->since_ms = since;
	f->port = (__u16)port;
	return 0;
}

int cmd_observe(void *ctx, struct json_object *args, struct json_object *result,
		struct control_error *err)
{
	struct agent *a = ctx;
	struct observe *o = a->observe;
	struct flow_filter f = {};
	struct json_object *list;
	bool follow = false;
	int64_t last = -1;
	size_t skip = 0, match = 0;
	int r;

	r = filter_args(args, &f, &last, &follow, err);
	if (r)
		return r;
	if (follow && observe_followers(o) == OBSERVE_FOLLOWERS_MAX)
		return control_error_set(err, CONTROL_E_INTERNAL,
					 "%d clients follow already: the most this agent serves",
					 OBSERVE_FOLLOWERS_MAX);
	if (last < 0)
		last = follow ? 0 : OBSERVE_LAST_DEFAULT;
	for (size_t i = 0; i < o->ring_n; i++)
		match += flow_filter_match(&f, observe_ring_at(o, i));
	skip = match > (size_t)last ? match - (size_t)last : 0;
	list = json_object_new_array();
	for (size_t i = 0; i < o->ring_n && last; i++) {
		const struct flow_record *rec = observe_ring_at(o, i);

		if (!flow_filter_match(&f, rec) || (skip && skip--))
			continue;
		json_object_array_add(list, flow_to_json(rec, o->instance));
	}
	json_object_object_add(result, "flows", list);
	json_object_object_add(result, "kept", json_object_new_uint64(o->ring_n));
	json_object_object_add(result, "follow", json_object_new_boolean(follow));
	return 0;
}

int cmd_observe_take(void *ctx, struct json_object *args, int fd)
{
	struct agent *a = ctx;
	struct control_error err = {};
	struct flow_filter f = {};
	bool follow = false;
	int64_t last;

	if (filter_args(args, &f, &last, &follow, &err) || !follow)
		return 0;
	return observe_follow(a->observe, fd, false, &f) == 0;
}

struct alert_list {
	struct json_object *list;
	const char *instance;
	size_t skip;
};

static void alert_add(void *ctx, const struct alert *al)
{
	struct alert_list *l = ctx;

	if (l->skip) {
		l->skip--;
		return;
	}
	json_object_array_add(l->list, alert_to_json(al, l->instance));
}

static void alert_count(void *ctx, const struct alert *al)
{
	(void)al;
	(*(size_t *)ctx)++;
}

int cmd_alerts(void *ctx, struct json_object *args, struct json_object *result,
	       struct control_error *err)
{
	struct agent *a = ctx;
	struct observe *o = a->observe;
	struct alert_list l = {.instance = o->instance};
	bool follow = false;
	int64_t last = -1;
	size_t n = 0;
	int r;

	r = control_arg_int(args, "last", false, 0, INT32_MAX, &last, err);
	if (!r)
		r = control_arg_bool(args, "follow", false, &follow, err);
	if (r)
		return r;
	if (follow && observe_followers(o) == OBSERVE_FOLLOWERS_MAX)
		return control_error_set(err, CONTROL_E_INTERNAL,
					 "%d clients follow already: the most this agent serves",
					 OBSERVE_FOLLOWERS_MAX);
	alerts_each(o->alerts, 0, alert_count, &n);
	if (last >= 0 && n > (size_t)last)
		l.skip = n - (size_t)last;
	l.list = json_object_new_array();
	alerts_each(o->alerts, 0, alert_add, &l);
	json_object_object_add(result, "alerts", l.list);
	json_object_object_add(result, "follow", json_object_new_boolean(follow));
	fed_alerts(a, result);	/* from the mesh's and federated meshes' agents */
	return 0;
}

int cmd_alerts_take(void *ctx, struct json_object *args, int fd)
{
	struct agent *a = ctx;
	struct flow_filter none = {};
	bool follow = false;

	if (!json_object_object_get_ex(args, "follow", NULL))
		return 0;
	follow = json_object_get_boolean(json_object_object_get(args, "follow"));
	return follow && observe_follow(a->observe, fd, true, &none) == 0;
}
