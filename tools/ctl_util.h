/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the verbs of fedguardctl share: turning their options into the args
 * of a request, checking positional arguments, reading results, and
 * printing them as JSON (-j) or as aligned text.
 */
#ifndef FEDGUARD_CTL_UTIL_H
#define FEDGUARD_CTL_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "ctl.h"

struct json_object;

void ctl_json_putp(struct json_object **o);
#define _cleanup_json_ __attribute__((cleanup(ctl_json_putp)))

enum ctl_arg_kind {
	CTL_ARG_STRING, /* given at most once */
	CTL_ARG_ARRAY,	/* repeatable: an array of strings */
	CTL_ARG_LABELS, /* repeatable KEY=VALUE: an object of strings */
	CTL_ARG_FLAG,	/* no argument: true */
};

/* How one option of a verb becomes one member of the request's args. */
struct ctl_argspec {
	int opt;	  /* enum ctl_opt */
	const char *flag; /* "--spiffe-id", for messages */
	const char *name; /* the member of args */
	enum ctl_arg_kind kind;
	bool required;
};

/*
 * Builds the args of a request from ctl->opts by spec (terminated by an
 * entry with opt 0) into *args, which may already hold members. On a
 * missing required option, a repeated single one or a malformed KEY=VALUE,
 * prints the usage error naming it and returns CTL_USAGE.
 */
int ctl_args_from_opts(const struct ctl *ctl, const char *cmd, const struct ctl_argspec *spec,
		       struct json_object *args);

/*
 * Checks that argv holds exactly the positional arguments named by names
 * (NULL-terminated); else prints which one is missing or unexpected and
 * returns CTL_USAGE.
 */
int ctl_positional(const char *cmd, int argc, char **argv, const char *const names[]);

/* Reads a whole file of at most max bytes into a NUL-terminated *out; logs the cause. */
int ctl_read_file(const char *path, size_t max, char **out, size_t *len);

/* A member of o, or NULL. */
struct json_object *ctl_jget(struct json_object *o, const char *key);

/* The length of an array; 0 for anything else (absent, null, not an array). */
size_t ctl_jlen(struct json_object *v);

/*
 * A value as one cell of text: strings as they are, numbers, arrays joined
 * by ",", objects as "k=v,...", null, absent or empty as "-".
 */
const char *ctl_jtext(struct json_object *v, char *buf, size_t len);

/* ctl_jtext() of member key of o. */
const char *ctl_jfield(struct json_object *o, const char *key, char *buf, size_t len);

/* Prints v as indented JSON on stdout (the -j output). */
void ctl_print_json(struct json_object *v);

/*
 * An aligned table: rows is an array of rows, each an array of strings (the
 * first row is the header). Columns are separated by two spaces; the last
 * one is not padded.
 */
void ctl_table_row(struct json_object *rows, size_t ncol, ...);

/*
 * A command without arguments: sends command, then prints its result as
 * JSON (-j) or with print. 0, CTL_USAGE or -errno.
 */
int ctl_run_simple(struct ctl *ctl, const char *cmd, const char *command, int argc, char **argv,
		   void (*print)(struct json_object *result));
void ctl_table_print(struct json_object *rows);

#endif /* FEDGUARD_CTL_UTIL_H */
