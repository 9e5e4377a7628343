/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A program's configuration file: a YAML mapping whose keys are the long
 * options of the program (without "--") and whose values are their
 * arguments. It knows nothing of the options themselves: it is driven by
 * the program's getopt_long table, and every value goes through the same
 * function as the command line's, with getopt's optarg set, so that
 * validation is shared and new options are covered without extra work.
 *
 *   option with an argument   a scalar: its argument; a list, only for a
 *                             repeatable option: the option once per item
 *   option without argument   true (given once) or false (not given)
 *   optional argument         true (given without), false, or a scalar
 *
 * Order: the file first, in file order, then the command line. An option
 * the command line gives replaces what the file says for that key (for a
 * repeatable option: the command line's values replace the file's list).
 *
 * Errors name FILE:LINE:COLUMN: the loader's own (unknown keys, wrong
 * types, duplicates), and those the program logs while a file's option is
 * fed or while its combination checks run between config_annotate(c)
 * and config_annotate(NULL) (log.h's per-thread prefix); a combination
 * error is placed at the first key of the file its message names as
 * "--KEY".
 *
 * Not thread-safe; it uses getopt's globals. Functions return 0 or a
 * negative errno and log the cause.
 */
#ifndef FEDGUARD_CONFIG_H
#define FEDGUARD_CONFIG_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

struct config_spec {
	const char *program;		  /* in messages */
	const char *shortopts;		  /* getopt_long's */
	const struct option *opts;	  /* getopt_long's table */
	const char *const *repeatable;	  /* options that may be given several times */
	const char *const *cmdline_only;  /* commands, not settings: refused in a file */
	int config_val;			  /* the option naming the file (--config FILE) */
	int check_val;			  /* the same, to check only (--check-config FILE) */
};

struct config;

/*
 * Scans the command line for the options it gives and for the file
 * (spec->config_val or spec->check_val), and loads that file. On return
 * getopt is reset for the caller's own pass over argv. Returns -EINVAL when
 * the command line does not parse (getopt said why), -errno when the file
 * cannot be read or is not YAML; errors of the file's content are logged
 * and counted, and config_feed() reports them. *out is set once the
 * command line parsed, also when the file failed (without a file: an
 * empty configuration); the caller frees it.
 */
int config_open(const struct config_spec *spec, int argc, char **argv, struct config **out);

void config_free(struct config *c);

/* The file's path, or NULL without one. */
const char *config_path(const struct config *c);

/* Whether the file was given with spec->check_val: check it and start nothing. */
bool config_check_only(const struct config *c);

/* How many options the file gives (list items count one each): an upper bound for arrays. */
size_t config_count(const struct config *c);

/* Whether the command line gives option @name. */
bool config_cmdline_gives(const struct config *c, const char *name);

/*
 * Calls fn(val, ctx) for each option of the file that the command line does
 * not give, in file order, with optarg set to its argument (NULL for a flag);
 * messages fn logs are prefixed with the option's FILE:LINE:COLUMN. Goes on
 * after a failure, so that every error is reported; -EINVAL when fn or the
 * loader found any. fn returns 0 or a negative errno.
 */
int config_feed(struct config *c, int (*fn)(int val, void *ctx), void *ctx);

/* Places the calling thread's messages at the keys they name (NULL: stop). */
void config_annotate(struct config *c);

/*
 * The options whose values differ between the files of @a and @b (as
 * config_feed() would give them, so options the command line gives never
 * differ): calls fn with each option's name, in table order; returns how
 * many. Either may be NULL (no file).
 */
int config_each_change(const struct config *a, const struct config *b,
		       void (*fn)(const char *name, void *ctx), void *ctx);

#endif /* FEDGUARD_CONFIG_H */
