// SPDX-License-Identifier: Apache-2.0
/*
 * fedguardctl: drives a fedguard instance through the agent's control socket
 * (docs/control-protocol.md) and inspects its pinned state. Exit status:
 * 0 ok, 1 failure, 2 usage error. docs/cli.md describes every command.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "ctl.h"
#include "log.h"
#include "pin.h"
#include "sys.h"

#define EXIT_USAGE 2
/* parse_*(): --help or --version was answered; exit 0. */
#define ARGS_DONE 2

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const struct ctl_cmd commands[] = {
	{
		.name = "workload",
		.args = "VERB",
		.help = "register local workloads: add, del, list",
		.verbs = ctl_workload_verbs,
	},
	{
		.name = "endpoint",
		.args = "VERB",
		.help = "register remote endpoints: add, del, list",
		.verbs = ctl_endpoint_verbs,
	},
	{
		.name = "policy",
		.args = "VERB",
		.help = "apply, show and check the policy",
		.verbs = ctl_policy_verbs,
	},
	{
		.name = "quarantine",
		.args = "VERB",
		.help = "cut identities and trust domains off: add, del, list",
		.verbs = ctl_quarantine_verbs,
	},
	{
		.name = "sockets",
		.args = "VERB",
		.help = "sockets bound to identities: list",
		.verbs = ctl_sockets_verbs,
	},
	{
		.name = "auth",
		.args = "VERB",
		.help = "pairs authenticated by mTLS: list, flush",
		.verbs = ctl_auth_verbs,
	},
	{
		.name = "bundle",
		.args = "VERB",
		.help = "trust bundles: set, del, list",
		.verbs = ctl_bundle_verbs,
	},
	{
		.name = "peer",
		.args = "VERB",
		.help = "the other agents of the mesh and of federated meshes: list",
		.verbs = ctl_peer_verbs,
	},
	{
		.name = "observe",
		.args = "[--follow] [--last N] [--since TIME] [FILTER...]",
		.help = "show the flows the datapath reports: drops, quarantine hits, allows",
		.run = ctl_observe,
		.opts = ctl_observe_opts,
		.opts_help = ctl_observe_help,
	},
	{
		.name = "alerts",
		.args = "[--follow] [--last N]",
		.help = "show the alerts raised: deny rates, spoofing, quarantine hits",
		.run = ctl_alerts,
		.opts = ctl_alerts_opts,
		.opts_help = ctl_alerts_help,
	},
	{
		.name = "status",
		.args = "",
		.help = "show programs, links, maps, policy, TC filters, counters and the agent",
		.run = ctl_status,
	},
	{},
};

enum {
	OPT_INSTANCE = 256,
	OPT_SOCKET,
	OPT_VERSION,
};

static const struct option global_opts[] = {
	{"instance", required_argument, NULL, OPT_INSTANCE},
	{"socket", required_argument, NULL, OPT_SOCKET},
	{"json", no_argument, NULL, 'j'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, OPT_VERSION},
	{},
};

static const char options_help[] =
	"  --instance NAME     the instance to act on (default \"default\")\n"
	"  --socket PATH       the agent's control socket (default /run/fedguard/NAME.sock)\n"
	"  -j, --json          JSON output\n"
	"  -h, --help          help (of a command, after its name)\n";

static void usage_table(FILE *out, const char *path, const struct ctl_cmd *table)
{
	const struct ctl_cmd *c;
	char synopsis[256];

	fprintf(out, "Usage: fedguardctl [OPTIONS] %s%s%s [ARGS]\n\n", path, *path ? " " : "",
		*path ? "VERB" : "OBJECT [VERB]");
	fprintf(out, "%s:\n", *path ? "Verbs" : "Commands");
	for (c = table; c->name; c++) {
		snprintf(synopsis, sizeof(synopsis), "%s%s%s", c->name, *c->args ? " " : "",
			 c->args);
		/* A long synopsis gets a line of its own. */
		if (strlen(synopsis) > 24)
			fprintf(out, "  %s\n  %-24s %s\n", synopsis, "", c->help);
		else
			fprintf(out, "  %-24s %s\n", synopsis, c->help);
	}
	fprintf(out, "\nOptions:\n%s", options_help);
	if (!*path)
		fprintf(out, "      --version       print the version\n");
	fprintf(out, "\nRun 'fedguardctl %s%s%s --help' for the help of one.\n", path,
		*path ? " " : "", *path ? "VERB" : "COMMAND");
}

static void usage_cmd(FILE *out, const char *path, const struct ctl_cmd *cmd)
{
	fprintf(out, "Usage: fedguardctl [OPTIONS] %s%s%s\n\n%s.\n\n", path, *cmd->args ? " " : "",
		cmd->args, cmd->help);
	if (cmd->opts_help)
		fprintf(out, "Options:\n%s\n", cmd->opts_help);
	fprintf(out, "Global options:\n%s", options_help);
}

/* Options accepted before the command and after it alike. */
static int parse_opt(struct ctl *ctl, int c)
{
	switch (c) {
	case OPT_INSTANCE:
		ctl->instance = optarg;
		return 0;
	case OPT_SOCKET:
		ctl->socket_path = optarg;
		ctl->socket_given = true;
		return 0;
	case 'j':
		ctl->json = true;
		return 0;
	default:
		return CTL_USAGE;
	}
}

/* The global options followed by the command's own, into opts of n entries. */
static int merge_opts(const struct ctl_cmd *cmd, struct option *opts, size_t n)
{
	size_t i = 0, j;

	for (j = 0; global_opts[j].name && i + 1 < n; j++)
		opts[i++] = global_opts[j];
	for (j = 0; cmd->opts && cmd->opts[j].name && i + 1 < n; j++)
		opts[i++] = cmd->opts[j];
	if (i + 1 == n)
		return -E2BIG;
	memset(&opts[i], 0, sizeof(opts[i]));
	return 0;
}

/* Reports what getopt_long refused, naming the option. */
static int opt_error(const char *path, int c, char **argv)
{
	const char *arg = argv[optind - 1];
	char shortopt[3] = {'-', (char)optopt, '\0'};

	/* For a short option in a cluster, argv[optind - 1] is the cluster. */
	if (optopt && optopt < 256)
		arg = shortopt;
	if (c == ':')
		log_error("%s%soption '%s' needs an argument", path, *path ? ": " : "", arg);
	else
		log_error("%s%sunknown option '%s': see 'fedguardctl %s%s--help'", path,
			  *path ? ": " : "", arg, path, *path ? " " : "");
	return CTL_USAGE;
}

/*
 * getopt_long over argv[1..]: global options are applied, the command's
 * own are collected into ctl->opts, --help prints usage_cmd().
 */
static int parse_leaf(struct ctl *ctl, const char *path, const struct ctl_cmd *cmd, int argc,
		      char **argv)
{
	struct option opts[32];
	int c, r;

	if (merge_opts(cmd, opts, ARRAY_SIZE(opts)))
		return log_error_errno(-E2BIG, "%s: too many options in the command table", path);
	opterr = 0;
	optind = 0; /* a new argv for GNU getopt: rescan from argv[1] */
	while ((c = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
		if (c == 'h') {
			usage_cmd(stdout, path, cmd);
			return ARGS_DONE;
		}
		if (c == '?' || c == ':')
			return opt_error(path, c, argv);
		if (c < CTL_OPT_SPIFFE_ID) {
			r = parse_opt(ctl, c);
			if (r)
				return r;
			continue;
		}
		if (ctl->nopts == CTL_OPTS_MAX) {
			log_error("%s: more than %d options", path, CTL_OPTS_MAX);
			return CTL_USAGE;
		}
		ctl->opts[ctl->nopts++] = (struct ctl_optval){.opt = c, .arg = optarg};
	}
	return 0;
}

/* Validates the instance name and derives the pin directory and the socket path. */
static int ctl_prepare(struct ctl *ctl)
{
	int err;

	if (sys_instance_check(ctl->instance))
		return CTL_USAGE;
	err = pin_path(ctl->pin_dir, sizeof(ctl->pin_dir), ctl->instance, NULL, NULL);
	if (err)
		return err;
	if (ctl->socket_given)
		return 0;
	err = control_default_path(ctl->instance, ctl->socket_buf, sizeof(ctl->socket_buf));
	if (err)
		return log_error_errno(err, "instance '%s': no socket path", ctl->instance);
	ctl->socket_path = ctl->socket_buf;
	return 0;
}

static const struct ctl_cmd *find_cmd(const struct ctl_cmd *table, const char *name)
{
	for (; table->name; table++) {
		if (strcmp(table->name, name) == 0)
			return table;
	}
	return NULL;
}

static bool is_help(const char *arg)
{
	return !strcmp(arg, "help") || !strcmp(arg, "--help") || !strcmp(arg, "-h");
}

/* argv[0] names an entry of table; path is the command line so far. */
static int dispatch(struct ctl *ctl, const struct ctl_cmd *table, const char *path, int argc,
		    char **argv)
{
	const struct ctl_cmd *cmd;
	char sub[128];
	int r;

	if (argc < 1) {
		log_error("missing %s: see 'fedguardctl %s%s--help'", *path ? "verb" : "command",
			  path, *path ? " " : "");
		return CTL_USAGE;
	}
	if (is_help(argv[0])) {
		usage_table(stdout, path, table);
		return 0;
	}
	cmd = find_cmd(table, argv[0]);
	if (!cmd) {
		log_error("unknown command '%s%s%s': see 'fedguardctl %s%s--help'", path,
			  *path ? " " : "", argv[0], path, *path ? " " : "");
		return CTL_USAGE;
	}
	snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? " " : "", cmd->name);
	if (cmd->verbs)
		return dispatch(ctl, cmd->verbs, sub, argc - 1, argv + 1);
	r = parse_leaf(ctl, sub, cmd, argc, argv);
	if (r == ARGS_DONE)
		return 0;
	if (r)
		return r;
	r = ctl_prepare(ctl);
	if (r)
		return r;
	return cmd->run(ctl, argc - optind, argv + optind);
}

/* 0 to dispatch from argv[optind], ARGS_DONE, or CTL_USAGE. */
static int parse_global(struct ctl *ctl, int argc, char **argv)
{
	int c, r;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:jh", global_opts, NULL)) != -1) {
		if (c == '?' || c == ':')
			return opt_error("", c, argv);
		if (c == 'h') {
			usage_table(stdout, "", commands);
			return ARGS_DONE;
		}
		if (c == OPT_VERSION) {
			printf("fedguardctl %s\n", FEDGUARD_VERSION);
			return ARGS_DONE;
		}
		r = parse_opt(ctl, c);
		if (r)
			return r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct ctl ctl = {.instance = "default"};
	int r;

	/* 1. Global options; usage errors exit 2. */
	r = parse_global(&ctl, argc, argv);
	if (r == ARGS_DONE)
		return EXIT_SUCCESS;
	if (r)
		return EXIT_USAGE;

	/* 2. libbpf's messages through our log, as for fedguardd. */
	log_setup_libbpf();

	/* 3. The command: 0, CTL_USAGE or -errno. */
	r = dispatch(&ctl, commands, "", argc - optind, argv + optind);
	if (r == CTL_USAGE)
		return EXIT_USAGE;
	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
