/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Prometheus text exposition format (version 0.0.4): a growing buffer
 * that metric families and their samples are written into. Label values
 * and help texts are escaped as the format requires; names are the
 * caller's constants and are checked, not escaped.
 *
 *	metrics_family(&b, "fedguard_x_total", "counter", "What x counts.");
 *	metrics_u64(&b, "fedguard_x_total", 3, "reason", "deny_policy", NULL);
 *
 * A failure (out of memory, a bad name, over max) sticks in b.err; the
 * functions do nothing once it is set. Nothing here logs.
 */
#ifndef FEDGUARD_METRICS_H
#define FEDGUARD_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include <linux/types.h>

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_buf {
	char *p; /* NUL-terminated text, len bytes */
	size_t len;
	size_t cap;
	size_t max; /* refuse to grow past this; 0: 16 MiB */
	int err;    /* the first failure, 0 if none */
};

void metrics_buf_free(struct metrics_buf *b);

/* Whether a metric or label name is valid ([a-zA-Z_:][a-zA-Z0-9_:]*, no ':' in labels). */
bool metrics_name_valid(const char *name, bool label);

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void metrics_family(struct metrics_buf *b, const char *name, const char *type, const char *help);

/*
 * One sample: name{l1="v1",...} value. The variadic arguments are label
 * name and value pairs ending with NULL.
 */
void metrics_u64(struct metrics_buf *b, const char *name, __u64 value, ...)
	__attribute__((sentinel));
void metrics_f64(struct metrics_buf *b, const char *name, double value, ...)
	__attribute__((sentinel));

/* Appends label values escaped: backslash, double quote and newline. */
void metrics_escape_label(struct metrics_buf *b, const char *value);

#endif /* FEDGUARD_METRICS_H */
