// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardctl workload|endpoint add|del|list: the local workloads (a cgroup,
 * its addresses, its labels) and the remote endpoints (addresses or
 * prefixes owned by a SPIFFE ID on another node) the agent knows.
 */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "ctl.h"
#include "ctl_client.h"
#include "ctl_util.h"

/* Registers one workload or endpoint from the options of ctl. */
static int registry_add(struct ctl *ctl, const char *what, const struct ctl_argspec *spec, int argc,
			char **argv)
{
	static const char *const none[] = {NULL};
	_cleanup_json_ struct json_object *result = NULL;
	struct json_object *args = json_object_new_object();
	char cmd[32], command[32], id[32];
	int r;

	snprintf(cmd, sizeof(cmd), "%s add", what);
	snprintf(command, sizeof(command), "%s.add", what);
	r = ctl_positional(cmd, argc, argv, none);
	if (!r)
		r = ctl_args_from_opts(ctl, cmd, spec, args);
	if (r) {
		json_object_put(args);
		return r;
	}
	r = ctl_request(ctl, command, args, &result);
	if (r)
		return r;
	if (ctl->json)
		ctl_print_json(result);
	else
		printf("%s %s registered as identity %s\n", what,
		       json_object_get_string(ctl_jget(result, "spiffe_id")),
		       ctl_jfield(result, "identity", id, sizeof(id)));
	return 0;
}

static int registry_del(struct ctl *ctl, const char *what, int argc, char **argv)
{
	static const char *const names[] = {"ID", NULL};
	_cleanup_json_ struct json_object *result = NULL;
	struct json_object *args;
	char cmd[32], command[32];
	int r;

	snprintf(cmd, sizeof(cmd), "%s del", what);
	snprintf(command, sizeof(command), "%s.del", what);
	r = ctl_positional(cmd, argc, argv, names);
	if (r)
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "spiffe_id", json_object_new_string(argv[0]));
	r = ctl_request(ctl, command, args, &result);
	if (r)
		return r;
	if (ctl->json)
		ctl_print_json(result);
	else
		printf("%s %s removed\n", what, argv[0]);
	return 0;
}

/*
 * Lists a section of registrations as a table of the given columns (the
 * members of each entry); header names them in capitals.
 */
static int registry_list(struct ctl *ctl, const char *what, const char *section,
			 const char *const columns[], const char *const header[], int argc,
			 char **argv)
{
	static const char *const none[] = {NULL};
	_cleanup_json_ struct json_object *result = NULL, *rows = NULL;
	struct json_object *list, *item, *row;
	char cmd[32], command[32], cell[1024];
	size_t i, c;
	int r;

	snprintf(cmd, sizeof(cmd), "%s list", what);
	snprintf(command, sizeof(command), "%s.list", what);
	r = ctl_positional(cmd, argc, argv, none);
	if (r)
		return r;
	r = ctl_request(ctl, command, NULL, &result);
	if (r)
		return r;
	if (ctl->json) {
		ctl_print_json(result);
		return 0;
	}
	list = ctl_jget(result, section);
	if (!ctl_jlen(list)) {
		printf("no %ss\n", what);
		return 0;
	}
	rows = json_object_new_array();
	row = json_object_new_array();
	for (c = 0; header[c]; c++)
		json_object_array_add(row, json_object_new_string(header[c]));
	json_object_array_add(rows, row);
	for (i = 0; i < ctl_jlen(list); i++) {
		item = json_object_array_get_idx(list, i);
		row = json_object_new_array();
		for (c = 0; columns[c]; c++)
			json_object_array_add(row, json_object_new_string(ctl_jfield(
							   item, columns[c], cell, sizeof(cell))));
		json_object_array_add(rows, row);
	}
	ctl_table_print(rows);
	return 0;
}

static const struct ctl_argspec workload_spec[] = {
	{CTL_OPT_SPIFFE_ID, "--spiffe-id", "spiffe_id", CTL_ARG_STRING, true},
	{CTL_OPT_CGROUP, "--cgroup", "cgroup", CTL_ARG_STRING, true},
	{CTL_OPT_IP, "--ip", "ips", CTL_ARG_ARRAY, false},
	{CTL_OPT_NETNS, "--netns", "netns", CTL_ARG_STRING, false},
	{CTL_OPT_LABEL, "--label", "labels", CTL_ARG_LABELS, false},
	{},
};

static const struct ctl_argspec endpoint_spec[] = {
	{CTL_OPT_SPIFFE_ID, "--spiffe-id", "spiffe_id", CTL_ARG_STRING, true},
	{CTL_OPT_IP, "--ip", "ips", CTL_ARG_ARRAY, true},
	{CTL_OPT_NODE, "--node", "node", CTL_ARG_STRING, false},
	{CTL_OPT_LABEL, "--label", "labels", CTL_ARG_LABELS, false},
	{},
};

static int workload_add(struct ctl *ctl, int argc, char **argv)
{
	return registry_add(ctl, "workload", workload_spec, argc, argv);
}

static int workload_del(struct ctl *ctl, int argc, char **argv)
{
	return registry_del(ctl, "workload", argc, argv);
}

static int workload_list(struct ctl *ctl, int argc, char **argv)
{
	static const char *const columns[] = {"spiffe_id", "identity", "cgroup", "ips",
					      "netns",	   "labels",   NULL};
	static const char *const header[] = {"SPIFFE ID", "IDENTITY", "CGROUP", "IPS",
					     "NETNS",	  "LABELS",   NULL};

	return registry_list(ctl, "workload", "workloads", columns, header, argc, argv);
}

static int endpoint_add(struct ctl *ctl, int argc, char **argv)
{
	return registry_add(ctl, "endpoint", endpoint_spec, argc, argv);
}

static int endpoint_del(struct ctl *ctl, int argc, char **argv)
{
	return registry_del(ctl, "endpoint", argc, argv);
}

static int endpoint_list(struct ctl *ctl, int argc, char **argv)
{
	static const char *const columns[] = {"spiffe_id", "identity", "ips", "node",
					      "labels", "origin", NULL};
	static const char *const header[] = {"SPIFFE ID", "IDENTITY", "IPS", "NODE",
					     "LABELS", "ORIGIN", NULL};

	return registry_list(ctl, "endpoint", "endpoints", columns, header, argc, argv);
}

static const struct option workload_add_opts[] = {
	{"spiffe-id", required_argument, NULL, CTL_OPT_SPIFFE_ID},
	{"cgroup", required_argument, NULL, CTL_OPT_CGROUP},
	{"ip", required_argument, NULL, CTL_OPT_IP},
	{"netns", required_argument, NULL, CTL_OPT_NETNS},
	{"label", required_argument, NULL, CTL_OPT_LABEL},
	{},
};

static const struct option endpoint_add_opts[] = {
	{"spiffe-id", required_argument, NULL, CTL_OPT_SPIFFE_ID},
	{"ip", required_argument, NULL, CTL_OPT_IP},
	{"node", required_argument, NULL, CTL_OPT_NODE},
	{"label", required_argument, NULL, CTL_OPT_LABEL},
	{},
};

static const char workload_add_help[] =
	"  --spiffe-id ID      its SPIFFE ID (required)\n"
	"  --cgroup PATH       its cgroup, absolute or under the cgroup2 mount (required)\n"
	"  --ip ADDR           an IPv4 or IPv6 address of the workload (repeatable)\n"
	"  --netns PATH        its network namespace, e.g. /run/netns/NAME\n"
	"  --label KEY=VALUE   a label for policy selectors (repeatable)\n";

static const char endpoint_add_help[] =
	"  --spiffe-id ID      its SPIFFE ID (required)\n"
	"  --ip ADDR[/LEN]     an address or prefix it owns (required, repeatable)\n"
	"  --node ADDR         the address of the node that runs it\n"
	"  --label KEY=VALUE   a label for policy selectors (repeatable)\n";

const struct ctl_cmd ctl_workload_verbs[] = {
	{
		.name = "add",
		.args = "--spiffe-id ID --cgroup PATH [--ip ADDR]... [--netns PATH] [--label KEY=VALUE]...",
		.help = "register a local workload: the SPIFFE ID of the processes of a cgroup",
		.run = workload_add,
		.opts = workload_add_opts,
		.opts_help = workload_add_help,
	},
	{
		.name = "del",
		.args = "ID",
		.help = "remove the workload registered as ID",
		.run = workload_del,
	},
	{
		.name = "list",
		.args = "",
		.help = "list the registered workloads",
		.run = workload_list,
	},
	{},
};

const struct ctl_cmd ctl_endpoint_verbs[] = {
	{
		.name = "add",
		.args = "--spiffe-id ID --ip ADDR[/LEN]... [--node ADDR] [--label KEY=VALUE]...",
		.help = "register a remote endpoint: addresses owned by a SPIFFE ID elsewhere",
		.run = endpoint_add,
		.opts = endpoint_add_opts,
		.opts_help = endpoint_add_help,
	},
	{
		.name = "del",
		.args = "ID",
		.help = "remove the endpoint registered as ID",
		.run = endpoint_del,
	},
	{
		.name = "list",
		.args = "",
		.help = "list the registered endpoints",
		.run = endpoint_list,
	},
	{},
};
