// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardctl policy apply|sign|show|check: sends a policy document (and its
 * signature, when there is one) to the agent (which checks, parses, compiles
 * and swaps it in atomically), signs one, shows the entries in force, and
 * asks what the policy decides for one flow.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "control.h"
#include "ctl.h"
#include "ctl_client.h"
#include "ctl_util.h"
#include "log.h"

static void cell_add(struct json_object *row, const char *text)
{
	json_object_array_add(row, json_object_new_string(text));
}

/* One policy entry as a table row, after a "+"/"-" column when sign is not NULL. */
static void entry_row(struct json_object *rows, const char *sign, struct json_object *e)
{
	static const char *const tail[] = {"direction", "action", "auth", "transport", "rule",
					   NULL};
	struct json_object *row = json_object_new_array();
	char buf[512], port[32], proto[32];
	size_t i;

	if (sign)
		cell_add(row, sign);
	cell_add(row, ctl_jfield(e, "src", buf, sizeof(buf)));
	cell_add(row, ctl_jfield(e, "dst", buf, sizeof(buf)));
	snprintf(buf, sizeof(buf), "%s/%s", ctl_jfield(e, "port", port, sizeof(port)),
		 ctl_jfield(e, "protocol", proto, sizeof(proto)));
	cell_add(row, buf);
	for (i = 0; tail[i]; i++)
		cell_add(row, ctl_jfield(e, tail[i], buf, sizeof(buf)));
	json_object_array_add(rows, row);
}

/* A table of entries: a header, then the entries of each list with its sign. */
static void entries_print(struct json_object *plus, struct json_object *minus, bool signs)
{
	_cleanup_json_ struct json_object *rows = json_object_new_array();
	struct json_object *header = json_object_new_object();
	size_t i;

	json_object_object_add(header, "src", json_object_new_string("SRC"));
	json_object_object_add(header, "dst", json_object_new_string("DST"));
	json_object_object_add(header, "port", json_object_new_string("PORT"));
	json_object_object_add(header, "protocol", json_object_new_string("PROTO"));
	json_object_object_add(header, "direction", json_object_new_string("DIRECTION"));
	json_object_object_add(header, "action", json_object_new_string("ACTION"));
	json_object_object_add(header, "auth", json_object_new_string("AUTH"));
	json_object_object_add(header, "transport", json_object_new_string("TRANSPORT"));
	json_object_object_add(header, "rule", json_object_new_string("RULE"));
	entry_row(rows, signs ? " " : NULL, header);
	json_object_put(header);
	for (i = 0; i < ctl_jlen(plus); i++)
		entry_row(rows, signs ? "+" : NULL, json_object_array_get_idx(plus, i));
	for (i = 0; i < ctl_jlen(minus); i++)
		entry_row(rows, signs ? "-" : NULL, json_object_array_get_idx(minus, i));
	ctl_table_print(rows);
}

/* A list's full length: its count member, or (an agent without one) the list itself. */
static size_t list_count(struct json_object *res, const char *count, struct json_object *list)
{
	struct json_object *n = ctl_jget(res, count);

	return n ? (size_t)json_object_get_int64(n) : ctl_jlen(list);
}

static void print_apply(const char *file, struct json_object *res)
{
	struct json_object *added = ctl_jget(res, "added"), *removed = ctl_jget(res, "removed");
	bool applied = json_object_get_boolean(ctl_jget(res, "applied"));
	size_t n_added = list_count(res, "added_count", added);
	size_t n_removed = list_count(res, "removed_count", removed);
	size_t listed = ctl_jlen(added) + ctl_jlen(removed);
	char version[32], gen[32], entries[32];

	printf("policy version %s from %s: %s entries (+%zu -%zu)",
	       ctl_jfield(res, "version", version, sizeof(version)), file,
	       ctl_jfield(res, "entries", entries, sizeof(entries)), n_added, n_removed);
	if (applied) {
		printf(", generation %s\n", ctl_jfield(res, "generation", gen, sizeof(gen)));
		return;
	}
	printf(", dry run: nothing applied\n");
	if (listed)
		entries_print(added, removed, true);
	if (listed < n_added + n_removed)
		printf("(%zu more entries not listed; --all lists every one)\n",
		       n_added + n_removed - listed);
}

static int policy_apply(struct ctl *ctl, int argc, char **argv)
{
	static const char *const names[] = {"FILE", NULL};
	static const struct ctl_argspec spec[] = {
		{CTL_OPT_DRY_RUN, "--dry-run", "dry_run", CTL_ARG_FLAG, false},
		{CTL_OPT_ALL, "--all", "all_entries", CTL_ARG_FLAG, false},
		{},
	};
	_cleanup_json_ struct json_object *result = NULL, *args = NULL;
	_cleanup_free_ char *text = NULL, *sig = NULL;
	size_t len;
	int r;

	r = ctl_positional("policy apply", argc, argv, names);
	if (r)
		return r;
	args = json_object_new_object();
	r = ctl_args_from_opts(ctl, "policy apply", spec, args);
	if (r)
		return r;
	r = ctl_read_file(argv[0], CONTROL_REQUEST_MAX, &text, &len);
	if (r)
		return r;
	if (strlen(text) != len)
		return log_error_errno(-EINVAL, "policy file '%s' contains a NUL byte", argv[0]);
	r = ctl_policy_signature(ctl, argv[0], &sig);
	if (r)
		return r;
	json_object_object_add(args, "document", json_object_new_string_len(text, (int)len));
	if (sig)
		json_object_object_add(args, "signature", json_object_new_string(sig));
	json_object_object_add(args, "source", json_object_new_string(argv[0]));
	r = ctl_request(ctl, "policy.apply", take_ptr(args), &result);
	if (r)
		return r;
	if (ctl->json)
		ctl_print_json(result);
	else
		print_apply(argv[0], result);
	return 0;
}

static int policy_show(struct ctl *ctl, int argc, char **argv)
{
	static const char *const none[] = {NULL};
	_cleanup_json_ struct json_object *result = NULL;
	struct json_object *entries;
	char version[32], source[512], gen[32];
	int r;

	r = ctl_positional("policy show", argc, argv, none);
	if (r)
		return r;
	r = ctl_request(ctl, "policy.show", NULL, &result);
	if (r)
		return r;
	if (ctl->json) {
		ctl_print_json(result);
		return 0;
	}
	entries = ctl_jget(result, "entries");
	if (!ctl_jget(result, "version"))
		printf("no policy applied: the datapath denies everything\n");
	else
		printf("policy version %s from %s, generation %s, %zu entries\n",
		       ctl_jfield(result, "version", version, sizeof(version)),
		       ctl_jfield(result, "source", source, sizeof(source)),
		       ctl_jfield(result, "generation", gen, sizeof(gen)), ctl_jlen(entries));
	if (ctl_jlen(entries))
		entries_print(entries, NULL, false);
	return 0;
}

/* "8080/tcp" into a port (1-65535) and a protocol (tcp or udp); else a usage error. */
static int parse_port_proto(const char *s, int *port, const char **proto)
{
	const char *slash = strchr(s, '/');
	unsigned long v = 0;
	char *end = NULL;

	errno = 0;
	if (slash && *s >= '0' && *s <= '9')
		v = strtoul(s, &end, 10);
	if (end != slash || errno || v < 1 || v > 65535 ||
	    (strcmp(slash + 1, "tcp") && strcmp(slash + 1, "udp"))) {
		log_error("policy check: '%s' is not PORT/PROTO: a port 1-65535, then /tcp or /udp",
			  s);
		return CTL_USAGE;
	}
	*port = (int)v;
	*proto = slash + 1;
	return 0;
}

static int policy_check(struct ctl *ctl, int argc, char **argv)
{
	static const char *const names[] = {"FROM-ID", "TO-ID", "PORT/PROTO", NULL};
	_cleanup_json_ struct json_object *result = NULL;
	struct json_object *args;
	char rule[256], auth[32];
	const char *proto;
	int r, port;

	r = ctl_positional("policy check", argc, argv, names);
	if (!r)
		r = parse_port_proto(argv[2], &port, &proto);
	if (r)
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "from", json_object_new_string(argv[0]));
	json_object_object_add(args, "to", json_object_new_string(argv[1]));
	json_object_object_add(args, "port", json_object_new_int(port));
	json_object_object_add(args, "protocol", json_object_new_string(proto));
	r = ctl_request(ctl, "policy.check", args, &result);
	if (r)
		return r;
	if (ctl->json) {
		ctl_print_json(result);
		return 0;
	}
	printf("decision: %s\n", json_object_get_string(ctl_jget(result, "decision")));
	printf("rule:     %s\n", ctl_jfield(result, "rule", rule, sizeof(rule)));
	printf("auth:     %s\n", ctl_jfield(result, "auth", auth, sizeof(auth)));
	if (ctl_jget(result, "transport"))
		printf("transport: %s\n", json_object_get_string(ctl_jget(result, "transport")));
	printf("reason:   %s\n", json_object_get_string(ctl_jget(result, "reason")));
	if (ctl_jget(result, "note"))
		printf("note:     %s\n", json_object_get_string(ctl_jget(result, "note")));
	return 0;
}

static const struct option policy_apply_opts[] = {
	{"dry-run", no_argument, NULL, CTL_OPT_DRY_RUN},
	{"all", no_argument, NULL, CTL_OPT_ALL},
	{"signature", required_argument, NULL, CTL_OPT_SIGNATURE},
	{},
};

static const struct option policy_sign_opts[] = {
	{"key", required_argument, NULL, CTL_OPT_KEY},
	{"out", required_argument, NULL, CTL_OPT_OUT},
	{},
};

const struct ctl_cmd ctl_policy_verbs[] = {
	{
		.name = "apply",
		.args = "FILE [--dry-run [--all]] [--signature SIG]",
		.help = "apply the policy document FILE: all of it at once, or nothing",
		.run = policy_apply,
		.opts = policy_apply_opts,
		.opts_help =
			"  --dry-run           show what it would add and remove; apply nothing\n"
			"  --all               list every entry added and removed (default: 1000 of each)\n"
			"  --signature SIG     the signature to send (default: FILE.sig when it exists)\n",
	},
	{
		.name = "status",
		.args = "",
		.help = "which policy version each agent of the mesh enforces",
		.run = ctl_policy_status,
	},
	{
		.name = "sign",
		.args = "FILE --key KEY [--out SIG]",
		.help = "sign the policy document FILE with the mesh's policy key (no agent needed)",
		.run = ctl_policy_sign,
		.opts = policy_sign_opts,
		.opts_help =
			"  --key KEY           the policy key (policy.key of 'fedguard-ca policy-key')\n"
			"  --out SIG           where to write the signature (default FILE.sig; - for stdout)\n",
	},
	{
		.name = "show",
		.args = "",
		.help = "show the policy in force and its entries",
		.run = policy_show,
	},
	{
		.name = "check",
		.args = "FROM-ID TO-ID PORT/PROTO",
		.help = "tell what the policy decides for a flow, e.g. 8080/tcp",
		.run = policy_check,
	},
	{},
};
