/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fedguardctl: "fedguardctl [GLOBAL OPTIONS] OBJECT [VERB] [ARGS]", driven
 * by a table of commands. An entry is either an object with a table of
 * verbs, or a command that runs.
 */
#ifndef FEDGUARD_CTL_H
#define FEDGUARD_CTL_H

#include <limits.h>
#include <stdbool.h>

/* A command's result after it printed a usage error: exit status 2. */
#define CTL_USAGE 1

struct ctl {
	const char *instance;
	const char *socket_path; /* --socket, else socket_buf */
	bool socket_given;
	char socket_buf[108];	/* control_default_path(instance) */
	char pin_dir[PATH_MAX]; /* FG_PIN_ROOT/<instance> */
	bool json;
};

struct ctl_cmd {
	const char *name;
	const char *args; /* synopsis of the arguments, "" for none */
	const char *help; /* one line */
	/* 0, CTL_USAGE or -errno; argv: what follows the command and its options. */
	int (*run)(struct ctl *ctl, int argc, char **argv);
	const struct ctl_cmd *verbs; /* an object's verbs, NULL-name terminated */
};

/* fedguardctl status: the pinned state of the instance. */
int ctl_status(struct ctl *ctl, int argc, char **argv);

#endif /* FEDGUARD_CTL_H */
