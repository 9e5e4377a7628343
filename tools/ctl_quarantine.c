// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardctl quarantine add|del|list: cuts an identity (a SPIFFE ID) or a
 * whole trust domain (spiffe://TD) off. "add" returns once the agent has
 * rewritten the maps and destroyed the target's sockets.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "ctl.h"
#include "ctl_client.h"
#include "ctl_util.h"

static int quarantine_add(struct ctl *ctl, int argc, char **argv)
{
	static const char *const names[] = {"TARGET", NULL};
	static const struct ctl_argspec spec[] = {
		{CTL_OPT_REASON, "--reason", "reason", CTL_ARG_STRING, false},
		{},
	};
	_cleanup_json_ struct json_object *result = NULL;
	struct json_object *args;
	char kind[32], destroyed[32];
	int r;

	r = ctl_positional("quarantine add", argc, argv, names);
	if (r)
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "target", json_object_new_string(argv[0]));
	r = ctl_args_from_opts(ctl, "quarantine add", spec, args);
	if (r) {
		json_object_put(args);
		return r;
	}
	r = ctl_request(ctl, "quarantine.add", args, &result);
	if (r)
		return r;
	if (ctl->json) {
		ctl_print_json(result);
		return 0;
	}
	printf("quarantined %s (%s) in %.3f ms, sockets destroyed: %s\n",
	       json_object_get_string(ctl_jget(result, "target")),
	       ctl_jfield(result, "kind", kind, sizeof(kind)),
	       (double)json_object_get_int64(ctl_jget(result, "elapsed_us")) / 1000.0,
	       ctl_jfield(result, "sockets_destroyed", destroyed, sizeof(destroyed)));
	return 0;
}

static int quarantine_del(struct ctl *ctl, int argc, char **argv)
{
	static const char *const names[] = {"TARGET", NULL};
	_cleanup_json_ struct json_object *result = NULL;
	struct json_object *args;
	int r;

	r = ctl_positional("quarantine del", argc, argv, names);
	if (r)
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "target", json_object_new_string(argv[0]));
	r = ctl_request(ctl, "quarantine.del", args, &result);
	if (r)
		return r;
	if (ctl->json)
		ctl_print_json(result);
	else
		printf("%s is no longer quarantined\n", argv[0]);
	return 0;
}

/* "since" is in seconds since the epoch; shown in UTC. */
static const char *since_text(struct json_object *rec, char *buf, size_t len)
{
	struct json_object *v = ctl_jget(rec, "since");
	time_t t;
	struct tm tm;

	if (!json_object_is_type(v, json_type_int))
		return ctl_jtext(v, buf, len);
	t = (time_t)json_object_get_int64(v);
	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		return ctl_jtext(v, buf, len);
	return buf;
}

static int quarantine_list(struct ctl *ctl, int argc, char **argv)
{
	static const char *const none[] = {NULL};
	_cleanup_json_ struct json_object *result = NULL, *rows = NULL;
	struct json_object *list, *rec;
	char target[512], kind[32], since[64], reason[512], origin[300];
	size_t i;
	int r;

	r = ctl_positional("quarantine list", argc, argv, none);
	if (r)
		return r;
	r = ctl_request(ctl, "quarantine.list", NULL, &result);
	if (r)
		return r;
	if (ctl->json) {
		ctl_print_json(result);
		return 0;
	}
	list = ctl_jget(result, "quarantine");
	if (!ctl_jlen(list)) {
		printf("nothing is quarantined\n");
		return 0;
	}
	rows = json_object_new_array();
	ctl_table_row(rows, 5, "TARGET", "KIND", "SINCE", "ORIGIN", "REASON");
	for (i = 0; i < ctl_jlen(list); i++) {
		rec = json_object_array_get_idx(list, i);
		/* this node's own, the mesh's (with the node that issued it), or a trust domain's */
		if (ctl_jget(rec, "issuer"))
			snprintf(origin, sizeof(origin), "%s (%s)",
				 json_object_get_string(ctl_jget(rec, "origin")),
				 json_object_get_string(ctl_jget(rec, "issuer")));
		else
			snprintf(origin, sizeof(origin), "%s",
				 ctl_jget(rec, "origin") ? json_object_get_string(
								   ctl_jget(rec, "origin"))
							 : "local");
		ctl_table_row(rows, 5, ctl_jfield(rec, "target", target, sizeof(target)),
			      ctl_jfield(rec, "kind", kind, sizeof(kind)),
			      since_text(rec, since, sizeof(since)), origin,
			      ctl_jfield(rec, "reason", reason, sizeof(reason)));
	}
	ctl_table_print(rows);
	return 0;
}

static const struct option quarantine_add_opts[] = {
	{"reason", required_argument, NULL, CTL_OPT_REASON},
	{},
};

const struct ctl_cmd ctl_quarantine_verbs[] = {
	{
		.name = "add",
		.args = "ID|spiffe://TD [--reason TEXT]",
		.help = "quarantine an identity or a whole trust domain, destroying its sockets",
		.run = quarantine_add,
		.opts = quarantine_add_opts,
		.opts_help = "  --reason TEXT       why, kept with the record\n",
	},
	{
		.name = "del",
		.args = "ID|spiffe://TD",
		.help = "lift the quarantine of an identity or trust domain",
		.run = quarantine_del,
	},
	{
		.name = "list",
		.args = "",
		.help = "list what is quarantined, since when and why",
		.run = quarantine_list,
	},
	{},
};
