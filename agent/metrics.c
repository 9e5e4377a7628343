// SPDX-License-Identifier: Apache-2.0
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_MAX_DEFAULT (16 * 1024 * 1024)

void metrics_buf_free(struct metrics_buf *b)
{
	free(b->p);
	*b = (struct metrics_buf){};
}

static bool reserve(struct metrics_buf *b, size_t more)
{
	size_t max = b->max ? b->max : METRICS_MAX_DEFAULT;
	size_t cap = b->cap ? b->cap : 4096;
	char *p;

	if (b->err)
		return false;
	if (b->len + more + 1 > max) {
		b->err = -E2BIG;
		return false;
	}
	while (cap < b->len + more + 1)
		cap *= 2;
	if (cap == b->cap)
		return true;
	p = realloc(b->p, cap);
	if (!p) {
		b->err = -ENOMEM;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void put(struct metrics_buf *b, const char *s, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void puts_(struct metrics_buf *b, const char *s)
{
	put(b, s, strlen(s));
}

bool metrics_name_valid(const char *name, bool label)
{
	if (!name || !*name)
		return false;
	for (const char *c = name; *c; c++) {
		bool alpha = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
			     (!label && *c == ':');

		if (!alpha && !(c != name && *c >= '0' && *c <= '9'))
			return false;
	}
	return true;
}

/* Escapes backslash and newline, and double quote when quoted. */
static void escape(struct metrics_buf *b, const char *s, bool quoted)
{
	for (; *s; s++) {
		if (*s == '\\')
			puts_(b, "\\\\");
		else if (*s == '\n')
			puts_(b, "\\n");
		else if (*s == '"' && quoted)
			puts_(b, "\\\"");
		else
			put(b, s, 1);
	}
}

void metrics_escape_label(struct metrics_buf *b, const char *value)
{
	escape(b, value, true);
}

void metrics_family(struct metrics_buf *b, const char *name, const char *type, const char *help)
{
	if (!metrics_name_valid(name, false)) {
		b->err = b->err ? b->err : -EINVAL;
		return;
	}
	puts_(b, "# HELP ");
	puts_(b, name);
	puts_(b, " ");
	escape(b, help, false);
	puts_(b, "\n# TYPE ");
	puts_(b, name);
	puts_(b, " ");
	puts_(b, type);
	puts_(b, "\n");
}

/* name{labels} for the pairs in ap; false after a bad name. */
static bool sample_head(struct metrics_buf *b, const char *name, va_list ap)
{
	const char *label, *value;
	bool first = true;

	if (!metrics_name_valid(name, false))
		return false;
	puts_(b, name);
	while ((label = va_arg(ap, const char *))) {
		value = va_arg(ap, const char *);
		if (!metrics_name_valid(label, true) || !value)
			return false;
		puts_(b, first ? "{" : ",");
		puts_(b, label);
		puts_(b, "=\"");
		escape(b, value, true);
		puts_(b, "\"");
		first = false;
	}
	if (!first)
		puts_(b, "}");
	return true;
}

void metrics_u64(struct metrics_buf *b, const char *name, __u64 value, ...)
{
	char num[32];
	va_list ap;
	bool ok;

	va_start(ap, value);
	ok = sample_head(b, name, ap);
	va_end(ap);
	if (!ok) {
		b->err = b->err ? b->err : -EINVAL;
		return;
	}
	snprintf(num, sizeof(num), " %llu\n", (unsigned long long)value);
	puts_(b, num);
}

void metrics_f64(struct metrics_buf *b, const char *name, double value, ...)
{
	char num[40];
	va_list ap;
	bool ok;

	va_start(ap, value);
	ok = sample_head(b, name, ap);
	va_end(ap);
	if (!ok) {
		b->err = b->err ? b->err : -EINVAL;
		return;
	}
	if (isnan(value))
		snprintf(num, sizeof(num), " NaN\n");
	else if (isinf(value))
		snprintf(num, sizeof(num), " %sInf\n", value > 0 ? "+" : "-");
	else
		snprintf(num, sizeof(num), " %.17g\n", value);
	puts_(b, num);
}
