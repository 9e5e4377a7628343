// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "ctl_client.h"
#include "ctl_util.h"
#include "log.h"

void ctl_json_putp(struct json_object **o)
{
	if (*o)
		json_object_put(*o);
}

/* One KEY=VALUE into labels. */
static int add_label(struct json_object *labels, const char *cmd, const char *kv)
{
	const char *eq = strchr(kv, '=');
	char key[256];

	if (!eq || eq == kv) {
		log_error("%s: --label '%s': expected KEY=VALUE", cmd, kv);
		return CTL_USAGE;
	}
	if ((size_t)(eq - kv) >= sizeof(key)) {
		log_error("%s: --label '%s': the key is longer than %zu bytes", cmd, kv,
			  sizeof(key) - 1);
		return CTL_USAGE;
	}
	snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
	if (json_object_object_get_ex(labels, key, NULL)) {
		log_error("%s: --label '%s': label '%s' is given twice", cmd, kv, key);
		return CTL_USAGE;
	}
	json_object_object_add(labels, key, json_object_new_string(eq + 1));
	return 0;
}

/* One option given on the command line into args, by its spec. */
static int add_arg(struct json_object *args, const char *cmd, const struct ctl_argspec *s,
		   const char *value)
{
	struct json_object *v = NULL;

	json_object_object_get_ex(args, s->name, &v);
	switch (s->kind) {
	case CTL_ARG_STRING:
		if (v) {
			log_error("%s: %s is given twice", cmd, s->flag);
			return CTL_USAGE;
		}
		json_object_object_add(args, s->name, json_object_new_string(value));
		return 0;
	case CTL_ARG_FLAG:
		json_object_object_add(args, s->name, json_object_new_boolean(true));
		return 0;
	case CTL_ARG_ARRAY:
		if (!v) {
			v = json_object_new_array();
			json_object_object_add(args, s->name, v);
		}
		json_object_array_add(v, json_object_new_string(value));
		return 0;
	case CTL_ARG_LABELS:
		if (!v) {
			v = json_object_new_object();
			json_object_object_add(args, s->name, v);
		}
		return add_label(v, cmd, value);
	}
	return 0;
}

int ctl_args_from_opts(const struct ctl *ctl, const char *cmd, const struct ctl_argspec *spec,
		       struct json_object *args)
{
	const struct ctl_argspec *s;
	size_t i;
	int r;

	for (i = 0; i < ctl->nopts; i++) {
		for (s = spec; s->opt && s->opt != ctl->opts[i].opt; s++)
			;
		/* The dispatcher only collects the options of this verb. */
		if (!s->opt)
			continue;
		r = add_arg(args, cmd, s, ctl->opts[i].arg);
		if (r)
			return r;
	}
	for (s = spec; s->opt; s++) {
		if (s->required && !json_object_object_get_ex(args, s->name, NULL)) {
			log_error("%s: %s is required: see 'fedguardctl %s --help'", cmd, s->flag,
				  cmd);
			return CTL_USAGE;
		}
	}
	return 0;
}

int ctl_positional(const char *cmd, int argc, char **argv, const char *const names[])
{
	int n;

	for (n = 0; names[n]; n++) {
		if (n >= argc) {
			log_error("%s: missing %s: see 'fedguardctl %s --help'", cmd, names[n],
				  cmd);
			return CTL_USAGE;
		}
	}
	if (argc > n) {
		log_error("%s: unexpected argument '%s'", cmd, argv[n]);
		return CTL_USAGE;
	}
	return 0;
}

int ctl_read_file(const char *path, size_t max, char **out, size_t *len)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t got = 0;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "cannot open '%s'", path);
	buf = malloc(max + 1);
	if (!buf)
		return log_error_errno(-ENOMEM, "cannot read '%s'", path);
	/* One byte more than max tells a file that is too large. */
	while (got <= max && (n = read(fd, buf + got, max + 1 - got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return log_error_errno(-errno, "cannot read '%s'", path);
		got += (size_t)n;
	}
	if (got > max)
		return log_error_errno(-EFBIG, "'%s' is larger than %zu bytes", path, max);
	buf[got] = '\0';
	*out = take_ptr(buf);
	*len = got;
	return 0;
}

struct json_object *ctl_jget(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	json_object_object_get_ex(o, key, &v);
	return v;
}

size_t ctl_jlen(struct json_object *v)
{
	return json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
}

/* Appends s to buf (of len bytes, holding used) with a separator when not first. */
static void append(char *buf, size_t len, size_t *used, const char *sep, const char *s)
{
	int n;

	if (*used >= len)
		return;
	n = snprintf(buf + *used, len - *used, "%s%s", *used ? sep : "", s);
	if (n > 0)
		*used += (size_t)n;
}

const char *ctl_jtext(struct json_object *v, char *buf, size_t len)
{
	char item[512];
	size_t used = 0, i;

	buf[0] = '\0';
	switch (json_object_get_type(v)) {
	case json_type_null:
		return "-";
	case json_type_string:
		return json_object_get_string_len(v) ? json_object_get_string(v) : "-";
	case json_type_array:
		for (i = 0; i < json_object_array_length(v); i++)
			append(buf, len, &used, ",",
			       ctl_jtext(json_object_array_get_idx(v, i), item, sizeof(item)));
		return used ? buf : "-";
	case json_type_object:
		json_object_object_foreach (v, key, val) {
			snprintf(item, sizeof(item), "%s=%s", key, json_object_get_string(val));
			append(buf, len, &used, ",", item);
		}
		return used ? buf : "-";
	default:
		snprintf(buf, len, "%s", json_object_get_string(v));
		return buf;
	}
}

const char *ctl_jfield(struct json_object *o, const char *key, char *buf, size_t len)
{
	return ctl_jtext(ctl_jget(o, key), buf, len);
}

void ctl_print_json(struct json_object *v)
{
	puts(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PRETTY |
						       JSON_C_TO_STRING_NOSLASHESCAPE));
}

void ctl_table_row(struct json_object *rows, size_t ncol, ...)
{
	struct json_object *row = json_object_new_array();
	va_list ap;
	size_t i;

	va_start(ap, ncol);
	for (i = 0; i < ncol; i++)
		json_object_array_add(row, json_object_new_string(va_arg(ap, const char *)));
	va_end(ap);
	json_object_array_add(rows, row);
}

void ctl_table_print(struct json_object *rows)
{
	size_t nrow = json_object_array_length(rows), ncol, r, c, w;
	_cleanup_free_ size_t *width = NULL;
	struct json_object *row;

	if (!nrow)
		return;
	ncol = json_object_array_length(json_object_array_get_idx(rows, 0));
	width = calloc(ncol, sizeof(*width));
	if (!width)
		return;
	for (r = 0; r < nrow; r++) {
		row = json_object_array_get_idx(rows, r);
		for (c = 0; c < ncol; c++) {
			w = strlen(json_object_get_string(json_object_array_get_idx(row, c)));
			width[c] = w > width[c] ? w : width[c];
		}
	}
	for (r = 0; r < nrow; r++) {
		row = json_object_array_get_idx(rows, r);
		for (c = 0; c < ncol; c++) {
			const char *cell =
				json_object_get_string(json_object_array_get_idx(row, c));

			if (c + 1 < ncol)
				printf("%-*s  ", (int)width[c], cell);
			else
				printf("%s\n", cell);
		}
	}
}

int ctl_run_simple(struct ctl *ctl, const char *cmd, const char *command, int argc, char **argv,
		      void (*print)(struct json_object *result))
{
	static const char *const none[] = {NULL};
	_cleanup_json_ struct json_object *result = NULL;
	int r;

	r = ctl_positional(cmd, argc, argv, none);
	if (r)
		return r;
	r = ctl_request(ctl, command, NULL, &result);
	if (r)
		return r;
	if (ctl->json)
		ctl_print_json(result);
	else
		print(result);
	return 0;
}
