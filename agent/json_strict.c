// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "json_strict.h"

enum {
	NAME_SHOWN_MAX = 64, /* bytes of a member name quoted in a message */
};

/* One level of the path to the value being scanned: a member or an element. */
struct path_elem {
	const char *name; /* NULL for an array element */
	size_t index;
};

/*
 * The walk over the text. path[0..depth) leads to the value at pos; names
 * are borrowed from the json-c strings that `names` holds while their
 * member's value is scanned.
 */
struct scan {
	const char *s;
	size_t len;
	size_t pos;
	unsigned int depth;
	unsigned int depth_max;
	struct json_tokener *names; /* decodes member names as json-c does */
	struct path_elem path[JSON_STRICT_DEPTH_MAX];
	char *why;
	size_t why_len;
};

static int scan_value(struct scan *sc);

__attribute__((format(printf, 2, 3))) static int syntax_error(struct scan *sc, const char *fmt, ...)
{
	char cause[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cause, sizeof(cause), fmt, ap);
	va_end(ap);
	if (sc->why_len)
		snprintf(sc->why, sc->why_len, "not JSON: %s at offset %zu", cause, sc->pos);
	return -EINVAL;
}

static void skip_ws(struct scan *sc)
{
	while (sc->pos < sc->len && strchr(" \t\r\n", sc->s[sc->pos]) && sc->s[sc->pos])
		sc->pos++;
}

static bool at(const struct scan *sc, char c)
{
	return sc->pos < sc->len && sc->s[sc->pos] == c;
}

static bool is_digit(const struct scan *sc)
{
	return sc->pos < sc->len && sc->s[sc->pos] >= '0' && sc->s[sc->pos] <= '9';
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* One escape after a backslash at pos; leaves pos after it. */
static int scan_escape(struct scan *sc)
{
	sc->pos++;
	if (sc->pos < sc->len && strchr("\"\\/bfnrt", sc->s[sc->pos]) && sc->s[sc->pos]) {
		sc->pos++;
		return 0;
	}
	if (!at(sc, 'u'))
		return syntax_error(sc, "unknown escape sequence in a string");
	sc->pos++;
	for (int i = 0; i < 4; i++, sc->pos++)
		if (sc->pos >= sc->len || !is_hex(sc->s[sc->pos]))
			return syntax_error(sc, "\\u not followed by 4 hex digits");
	return 0;
}

/* A string from the '"' at pos; leaves pos after its closing '"'. */
static int scan_string(struct scan *sc)
{
	int r;

	sc->pos++;
	while (sc->pos < sc->len) {
		unsigned char c = (unsigned char)sc->s[sc->pos];

		if (c == '"') {
			sc->pos++;
			return 0;
		}
		if (c < 0x20)
			return syntax_error(sc, "control character 0x%02x in a string", c);
		if (c == '\\') {
			r = scan_escape(sc);
			if (r)
				return r;
			continue;
		}
		sc->pos++;
	}
	return syntax_error(sc, "unterminated string");
}

/*
 * Whether the integer digits (no sign, no leading zero) fit 64 bits: the
 * magnitude of a negative one in int64_t, a positive one in uint64_t.
 */
static bool integer_fits(const char *digits, size_t n, bool negative)
{
	const char *limit = negative ? "9223372036854775808" : "18446744073709551615";
	size_t limit_len = strlen(limit);

	if (n != limit_len)
		return n < limit_len;
	return memcmp(digits, limit, n) <= 0;
}

static void scan_digits(struct scan *sc)
{
	while (is_digit(sc))
		sc->pos++;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? from pos. */
static int scan_number(struct scan *sc)
{
	size_t start = sc->pos, int_start, int_end;
	bool negative = at(sc, '-'), integer = true;

	if (negative)
		sc->pos++;
	int_start = sc->pos;
	if (!is_digit(sc))
		return syntax_error(sc, "'-' not followed by a digit");
	if (at(sc, '0'))
		sc->pos++;
	else
		scan_digits(sc);
	int_end = sc->pos;
	if (at(sc, '.')) {
		sc->pos++;
		if (!is_digit(sc))
			return syntax_error(sc, "no digit after a decimal point");
		scan_digits(sc);
		integer = false;
	}
	if (at(sc, 'e') || at(sc, 'E')) {
		sc->pos++;
		if (at(sc, '+') || at(sc, '-'))
			sc->pos++;
		if (!is_digit(sc))
			return syntax_error(sc, "no digit in an exponent");
		scan_digits(sc);
		integer = false;
	}
	if (integer && !integer_fits(sc->s + int_start, int_end - int_start, negative)) {
		sc->pos = start;
		return syntax_error(sc, "integer beyond 64 bits");
	}
	return 0;
}

static int scan_literal(struct scan *sc)
{
	static const char *const literals[] = {"true", "false", "null"};

	for (size_t i = 0; i < sizeof(literals) / sizeof(literals[0]); i++) {
		size_t n = strlen(literals[i]);

		if (sc->len - sc->pos >= n && !memcmp(sc->s + sc->pos, literals[i], n)) {
			sc->pos += n;
			return 0;
		}
	}
	if (sc->s[sc->pos] == '\'')
		return syntax_error(sc, "single quote (strings take double quotes)");
	if ((unsigned char)sc->s[sc->pos] < 0x20 || (unsigned char)sc->s[sc->pos] > 0x7e)
		return syntax_error(sc, "unexpected byte 0x%02x", (unsigned char)sc->s[sc->pos]);
	return syntax_error(sc, "unexpected '%c'", sc->s[sc->pos]);
}

/* Appends name, at most NAME_SHOWN_MAX bytes of it, control bytes and quotes as '?'. */
static size_t append_name(char *buf, size_t size, size_t used, const char *name)
{
	for (size_t i = 0; name[i] && i < NAME_SHOWN_MAX && used + 1 < size; i++) {
		unsigned char c = (unsigned char)name[i];

		buf[used++] = (c < 0x20 || c == 0x7f || c == '\'') ? '?' : (char)c;
	}
	buf[used] = '\0';
	return used;
}

/* "keys[0].x5c" for the path of the value being scanned; "" at the top. */
static void path_format(const struct scan *sc, char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned int i = 0; i < sc->depth && used + 1 < size; i++) {
		const struct path_elem *e = &sc->path[i];
		int n;

		if (!e->name) {
			n = snprintf(buf + used, size - used, "[%zu]", e->index);
			used = n < 0 ? used : used + (size_t)n;
			continue;
		}
		if (i)
			used = append_name(buf, size, used, ".");
		used = append_name(buf, size, used, e->name);
	}
	if (used >= size)
		buf[size - 1] = '\0';
}

static int duplicate_error(struct scan *sc, const char *name, size_t offset)
{
	char path[256], shown[NAME_SHOWN_MAX + 1];

	path_format(sc, path, sizeof(path));
	append_name(shown, sizeof(shown), 0, name);
	if (sc->why_len)
		snprintf(sc->why, sc->why_len, "%s%sduplicate member '%s' at offset %zu", path,
			 path[0] ? ": " : "", shown, offset);
	return -EINVAL;
}

/*
 * The member name at pos, decoded by json-c into *name (the caller's to
 * put) and added to seen, the names met so far in its object.
 */
static int scan_member_name(struct scan *sc, struct json_object *seen, struct json_object **name)
{
	size_t start = sc->pos;
	struct json_object *n;
	const char *s;
	int r;

	r = scan_string(sc);
	if (r)
		return r;
	json_tokener_reset(sc->names);
	n = json_tokener_parse_ex(sc->names, sc->s + start, (int)(sc->pos - start));
	if (!n) {
		sc->pos = start;
		return syntax_error(sc, "member name: %s",
				    json_tokener_error_desc(json_tokener_get_error(sc->names)));
	}
	s = json_object_get_string(n);
	if (strlen(s) != (size_t)json_object_get_string_len(n)) {
		json_object_put(n);
		sc->pos = start;
		return syntax_error(sc, "member name with a NUL character");
	}
	if (json_object_object_get_ex(seen, s, NULL)) {
		r = duplicate_error(sc, s, start);
		json_object_put(n);
		return r;
	}
	if (json_object_object_add(seen, s, NULL)) {
		json_object_put(n);
		return -ENOMEM;
	}
	*name = n;
	return 0;
}

static int enter(struct scan *sc)
{
	if (sc->depth >= sc->depth_max)
		return syntax_error(sc, "nesting deeper than %u levels", sc->depth_max);
	sc->pos++;
	skip_ws(sc);
	return 0;
}

/* One "name": value of an object, and the ',' or '}' after it. */
static int scan_member(struct scan *sc, struct json_object *seen, bool *last)
{
	struct json_object *name = NULL;
	int r;

	if (!at(sc, '"'))
		return syntax_error(sc, "expected a member name in double quotes");
	r = scan_member_name(sc, seen, &name);
	if (r)
		return r;
	skip_ws(sc);
	if (!at(sc, ':')) {
		json_object_put(name);
		return syntax_error(sc, "expected ':' after a member name");
	}
	sc->pos++;
	sc->path[sc->depth++] = (struct path_elem){.name = json_object_get_string(name)};
	r = scan_value(sc);
	sc->depth--;
	json_object_put(name);
	if (r)
		return r;
	skip_ws(sc);
	*last = at(sc, '}');
	if (!*last && !at(sc, ','))
		return syntax_error(sc, "expected ',' or '}' after a member");
	sc->pos++;
	skip_ws(sc);
	return 0;
}

static int scan_object(struct scan *sc)
{
	struct json_object *seen;
	bool last = false;
	int r;

	r = enter(sc);
	if (r)
		return r;
	if (at(sc, '}')) {
		sc->pos++;
		return 0;
	}
	seen = json_object_new_object();
	if (!seen)
		return -ENOMEM;
	while (!last) {
		r = scan_member(sc, seen, &last);
		if (r)
			break;
	}
	json_object_put(seen);
	return r;
}

static int scan_array(struct scan *sc)
{
	int r;

	r = enter(sc);
	if (r)
		return r;
	if (at(sc, ']')) {
		sc->pos++;
		return 0;
	}
	sc->path[sc->depth] = (struct path_elem){.index = 0};
	for (;;) {
		sc->depth++;
		r = scan_value(sc);
		sc->depth--;
		if (r)
			return r;
		skip_ws(sc);
		if (at(sc, ']'))
			break;
		if (!at(sc, ','))
			return syntax_error(sc, "expected ',' or ']' after an element");
		sc->pos++;
		sc->path[sc->depth].index++;
	}
	sc->pos++;
	return 0;
}

static int scan_value(struct scan *sc)
{
	skip_ws(sc);
	if (sc->pos >= sc->len)
		return syntax_error(sc, "unexpected end of the document");
	switch (sc->s[sc->pos]) {
	case '{':
		return scan_object(sc);
	case '[':
		return scan_array(sc);
	case '"':
		return scan_string(sc);
	case '-':
	case '0' ... '9':
		return scan_number(sc);
	default:
		return scan_literal(sc);
	}
}

/* json-c's tree of text, which scan_value() has found to be strict JSON. */
static int build_tree(const char *text, size_t len, unsigned int depth_max,
		      struct json_object **out, char *why, size_t why_len)
{
	struct json_tokener *tok;
	enum json_tokener_error err;
	struct json_object *obj;

	/* json-c refuses a container at depth max_depth - 1: depth_max + 1 allows depth_max. */
	tok = json_tokener_new_ex((int)depth_max + 1);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, text, (int)len);
	err = json_tokener_get_error(tok);
	/* A bare number at the end of the text ends only at a terminator. */
	if (err == json_tokener_continue) {
		obj = json_tokener_parse_ex(tok, "", 1);
		err = json_tokener_get_error(tok);
	}
	if (err != json_tokener_success) {
		if (why_len)
			snprintf(why, why_len, "not JSON: %s at offset %zu",
				 json_tokener_error_desc(err), json_tokener_get_parse_end(tok));
		json_tokener_free(tok);
		return -EINVAL;
	}
	json_tokener_free(tok);
	*out = obj;
	return 0;
}

int json_strict_parse(const char *text, size_t len, unsigned int depth_max,
		      struct json_object **out, char *why, size_t why_len)
{
	struct scan sc = {
		.s = text,
		.len = len,
		.depth_max = depth_max,
		.why = why,
		.why_len = why_len,
	};
	int r;

	if (!depth_max || depth_max > JSON_STRICT_DEPTH_MAX || len > INT32_MAX)
		return -EINVAL;
	sc.names = json_tokener_new_ex(1);
	if (!sc.names)
		return -ENOMEM;
	json_tokener_set_flags(sc.names, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	r = scan_value(&sc);
	skip_ws(&sc);
	if (!r && sc.pos < len)
		r = syntax_error(&sc, "data after the end of the document");
	json_tokener_free(sc.names);
	if (r)
		return r;
	return build_tree(text, len, depth_max, out, why, why_len);
}
