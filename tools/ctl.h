/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fedguardctl: "fedguardctl [GLOBAL OPTIONS] OBJECT [VERB] [ARGS]", driven
 * by a table of commands. An entry is either an object with a table of
 * verbs, or a command that runs. The dispatcher parses every option of a
 * command (its own and the global ones) with getopt_long; the command's run
 * function finds its own options, in command-line order, in ctl->opts.
 */
#ifndef FEDGUARD_CTL_H
#define FEDGUARD_CTL_H

#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

/* A command's result after it printed a usage error: exit status 2. */
#define CTL_USAGE 1

#define CTL_OPTS_MAX 256

/* The long options of the commands; the global ones are below 512. */
enum ctl_opt {
	CTL_OPT_SPIFFE_ID = 512,
	CTL_OPT_CGROUP,
	CTL_OPT_IP,
	CTL_OPT_NETNS,
	CTL_OPT_LABEL,
	CTL_OPT_NODE,
	CTL_OPT_DRY_RUN,
	CTL_OPT_REASON,
	CTL_OPT_FOLLOW,
	CTL_OPT_SINCE,
	CTL_OPT_LAST,
	CTL_OPT_VERDICT,
	CTL_OPT_IDENTITY,
	CTL_OPT_TRUST_DOMAIN,
	CTL_OPT_PORT,
	CTL_OPT_SIGNATURE,
	CTL_OPT_KEY,
	CTL_OPT_OUT,
	CTL_OPT_ALL,
};

/* One command option as given: its enum ctl_opt value and its argument (or NULL). */
struct ctl_optval {
	int opt;
	const char *arg;
};

struct ctl {
	const char *instance;
	const char *socket_path; /* --socket, else socket_buf */
	bool socket_given;
	char socket_buf[108];	/* control_default_path(instance) */
	char pin_dir[PATH_MAX]; /* FG_PIN_ROOT/<instance> */
	bool json;
	struct ctl_optval opts[CTL_OPTS_MAX];
	size_t nopts;
};

struct ctl_cmd {
	const char *name;
	const char *args; /* synopsis of the arguments, "" for none */
	const char *help; /* one line */
	/* 0, CTL_USAGE or -errno; argv: the positional arguments after the command. */
	int (*run)(struct ctl *ctl, int argc, char **argv);
	const struct ctl_cmd *verbs; /* an object's verbs, NULL-name terminated */
	const struct option *opts;   /* the command's own long options, or NULL */
	const char *opts_help;	     /* their help lines, or NULL */
};

/* fedguardctl status: the pinned state of the instance, and the agent's view. */
int ctl_status(struct ctl *ctl, int argc, char **argv);

extern const struct ctl_cmd ctl_workload_verbs[];
extern const struct ctl_cmd ctl_endpoint_verbs[];
extern const struct ctl_cmd ctl_policy_verbs[];

/* policy sign FILE --key KEY [--out SIG]: a detached signature of FILE (tools/ctl_sign.c). */
int ctl_policy_sign(struct ctl *ctl, int argc, char **argv);

/*
 * The signature policy apply sends with FILE: --signature SIG, else FILE.sig
 * when it exists. 0 and *sig (NULL: none), or -errno after logging.
 */
int ctl_policy_signature(const struct ctl *ctl, const char *file, char **sig);
extern const struct ctl_cmd ctl_quarantine_verbs[];
extern const struct ctl_cmd ctl_sockets_verbs[];
extern const struct ctl_cmd ctl_auth_verbs[];
extern const struct ctl_cmd ctl_bundle_verbs[];
extern const struct ctl_cmd ctl_peer_verbs[];

/* policy status: which version every agent of the mesh enforces (tools/ctl_mesh.c). */
int ctl_policy_status(struct ctl *ctl, int argc, char **argv);

/* fedguardctl observe and alerts: flow records and alerts, kept or followed. */
int ctl_observe(struct ctl *ctl, int argc, char **argv);
int ctl_alerts(struct ctl *ctl, int argc, char **argv);
extern const struct option ctl_observe_opts[];
extern const char ctl_observe_help[];
extern const struct option ctl_alerts_opts[];
extern const char ctl_alerts_help[];

#endif /* FEDGUARD_CTL_H */
