// SPDX-License-Identifier: Apache-2.0
/*
 * fedguard-ca: a trust domain's certificate authority, OpenSSL only. It
 * creates the root CA, node signing CAs and X.509-SVIDs, prints the trust
 * domain's SPIFFE bundle, validates SVID chains with the validator the
 * agent uses, and makes the mesh's policy signing key. docs/identity.md
 * describes every command and file. Exit status: 0 ok (verify: valid), 1
 * failure (verify: rejected), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "fgca.h"
#include "log.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const struct fgca_cmd *const commands[] = {
	&fgca_cmd_init, &fgca_cmd_issue_node, &fgca_cmd_svid, &fgca_cmd_bundle, &fgca_cmd_verify,
	&fgca_cmd_policy_key,
};

static void usage(FILE *out)
{
	size_t i;

	fprintf(out, "Usage: fedguard-ca COMMAND [OPTIONS]\n\nCommands:\n");
	for (i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(out, "  %-12s %s\n", commands[i]->name, commands[i]->help);
	fprintf(out, "\nOptions:\n"
		     "  -h, --help      this help; 'fedguard-ca COMMAND --help' for a command's\n"
		     "      --version   print the version\n");
}

static const struct fgca_cmd *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(commands[i]->name, name))
			return commands[i];
	return NULL;
}

/* The exit status of a command's result. */
static int exit_status(int r)
{
	if (r == 0 || r == FGCA_HELP)
		return 0;
	if (r == FGCA_USAGE)
		return 2;
	return 1;
}

int main(int argc, char **argv)
{
	const struct fgca_cmd *cmd;

	/* 1. the tool's own options, or the command */
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("fedguard-ca %s\n", FEDGUARD_VERSION);
		return 0;
	}
	cmd = find_command(argv[1]);
	if (!cmd) {
		log_error("unknown command '%s': see 'fedguard-ca --help'", argv[1]);
		return 2;
	}

	/* 2. the command, with its own arguments (argv[0] is its name) */
	optind = 0;
	return exit_status(cmd->run(cmd, argc - 1, argv + 1));
}
