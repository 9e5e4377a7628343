// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "spiffe.h"

#define SPIFFE_SCHEME	  "spiffe://"
#define SPIFFE_SCHEME_LEN (sizeof(SPIFFE_SCHEME) - 1)

static const char *const spiffe_messages[] = {
	[SPIFFE_OK] = "valid",
	[SPIFFE_EMPTY] = "empty string, expected 'spiffe://TRUST-DOMAIN[/PATH]'",
	[SPIFFE_TOO_LONG] = "longer than the maximum of 2048 bytes",
	[SPIFFE_BAD_SCHEME] = "does not start with 'spiffe://'",
	[SPIFFE_EMPTY_TRUST_DOMAIN] = "trust domain is empty",
	[SPIFFE_TRUST_DOMAIN_TOO_LONG] = "trust domain is longer than the maximum of 255 bytes",
	[SPIFFE_BAD_TRUST_DOMAIN_CHAR] = "trust domain contains a byte outside a-z 0-9 . _ -",
	[SPIFFE_TRUST_DOMAIN_IS_URI] =
		"expected a bare trust domain name such as 'example.org', not a URI",
	[SPIFFE_PORT] = "a SPIFFE ID has no port",
	[SPIFFE_USERINFO] = "a SPIFFE ID has no userinfo",
	[SPIFFE_EMPTY_SEGMENT] = "path has an empty segment ('//')",
	[SPIFFE_DOT_SEGMENT] = "path has a '.' or '..' segment",
	[SPIFFE_TRAILING_SLASH] = "path ends in '/'",
	[SPIFFE_BAD_PATH_CHAR] = "path contains a byte outside A-Z a-z 0-9 . _ -",
	[SPIFFE_PERCENT_ENCODED] = "percent-encoding is not allowed in a SPIFFE ID",
	[SPIFFE_QUERY] = "a SPIFFE ID has no query",
	[SPIFFE_FRAGMENT] = "a SPIFFE ID has no fragment",
	[SPIFFE_BAD_WILDCARD] = "'*' is only allowed as the whole last path segment ('/*')",
};

_Static_assert(sizeof(spiffe_messages) / sizeof(spiffe_messages[0]) == SPIFFE_ERR_MAX,
	       "every enum spiffe_err value needs a message");

/*
 * The detailed message of a reason with an offset: lead, the offending part
 * (see spiffe_show_part()), " at offset N", tail. A reason without a lead
 * is described by its fixed message alone.
 */
static const struct {
	const char *lead;
	const char *tail;
} spiffe_details[SPIFFE_ERR_MAX] = {
	[SPIFFE_BAD_TRUST_DOMAIN_CHAR] = {"trust domain contains", " (allowed: a-z 0-9 . _ -)"},
	[SPIFFE_PORT] = {"port separator", ": a trust domain has no port"},
	[SPIFFE_USERINFO] = {"userinfo separator", ": a trust domain has no userinfo"},
	[SPIFFE_EMPTY_SEGMENT] = {"empty path segment", ""},
	[SPIFFE_DOT_SEGMENT] = {"relative path segment", ": not allowed in a SPIFFE ID"},
	[SPIFFE_TRAILING_SLASH] = {"trailing", ": a SPIFFE ID path does not end in '/'"},
	[SPIFFE_BAD_PATH_CHAR] = {"path contains", " (allowed: A-Z a-z 0-9 . _ -)"},
	[SPIFFE_PERCENT_ENCODED] = {"percent-encoding", ": not allowed in a SPIFFE ID"},
	[SPIFFE_QUERY] = {"query", ": a SPIFFE ID has no query"},
	[SPIFFE_FRAGMENT] = {"fragment", ": a SPIFFE ID has no fragment"},
	[SPIFFE_BAD_WILDCARD] = {"wildcard",
				 ": only allowed as the whole last path segment ('/*')"},
};

const char *spiffe_strerror(enum spiffe_err err)
{
	if ((unsigned int)err >= SPIFFE_ERR_MAX)
		return "unknown SPIFFE ID error";
	return spiffe_messages[err];
}

static bool spiffe_td_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static bool spiffe_path_char_ok(unsigned char c)
{
	return spiffe_td_char_ok(c) || (c >= 'A' && c <= 'Z');
}

/*
 * The reason of a byte that is wrong wherever it appears, or SPIFFE_OK for
 * any other byte. In a pattern, a misplaced '*' is a wildcard mistake rather
 * than a bad character.
 */
static enum spiffe_err spiffe_uri_char_err(unsigned char c, bool pattern)
{
	switch (c) {
	case '%':
		return SPIFFE_PERCENT_ENCODED;
	case '?':
		return SPIFFE_QUERY;
	case '#':
		return SPIFFE_FRAGMENT;
	case '*':
		return pattern ? SPIFFE_BAD_WILDCARD : SPIFFE_OK;
	default:
		return SPIFFE_OK;
	}
}

/*
 * Checks the trust domain s[start, end). The whole authority is searched
 * for '@' first: in "user:pw@td" the ':' belongs to the userinfo, and
 * reporting a port would mislead.
 */
static enum spiffe_err spiffe_check_td(const char *s, size_t start, size_t end, bool pattern,
				       size_t *offset)
{
	const char *at = memchr(s + start, '@', end - start);
	enum spiffe_err err;
	size_t i;

	if (at) {
		*offset = at - s;
		return SPIFFE_USERINFO;
	}
	for (i = start; i < end; i++) {
		if (spiffe_td_char_ok(s[i]))
			continue;
		err = spiffe_uri_char_err(s[i], pattern);
		if (err == SPIFFE_OK)
			err = s[i] == ':' ? SPIFFE_PORT : SPIFFE_BAD_TRUST_DOMAIN_CHAR;
		*offset = i;
		return err;
	}
	if (end == start) {
		*offset = start;
		return SPIFFE_EMPTY_TRUST_DOMAIN;
	}
	if (end - start > SPIFFE_TRUST_DOMAIN_MAX) {
		*offset = start + SPIFFE_TRUST_DOMAIN_MAX;
		return SPIFFE_TRUST_DOMAIN_TOO_LONG;
	}
	return SPIFFE_OK;
}

/*
 * Checks the path segment s[start, end), preceded by a '/' at start - 1.
 * last: nothing follows the segment. *wildcard is set when the segment is
 * a pattern's final "*".
 */
static enum spiffe_err spiffe_check_segment(const char *s, size_t start, size_t end, bool last,
					    bool pattern, size_t *offset, bool *wildcard)
{
	size_t len = end - start;
	enum spiffe_err err;
	size_t i;

	for (i = start; i < end; i++) {
		if (spiffe_path_char_ok(s[i]))
			continue;
		if (pattern && s[i] == '*' && len == 1 && last) {
			*wildcard = true;
			return SPIFFE_OK;
		}
		err = spiffe_uri_char_err(s[i], pattern);
		*offset = i;
		return err == SPIFFE_OK ? SPIFFE_BAD_PATH_CHAR : err;
	}
	if (len == 0) {
		*offset = start - 1;
		return last ? SPIFFE_TRAILING_SLASH : SPIFFE_EMPTY_SEGMENT;
	}
	if ((len == 1 || len == 2) && strncmp(s + start, "..", len) == 0) {
		*offset = start;
		return SPIFFE_DOT_SEGMENT;
	}
	return SPIFFE_OK;
}

/* Checks what follows the trust domain, s[start, len): "" or "/seg...". */
static enum spiffe_err spiffe_check_path(const char *s, size_t start, size_t len, bool pattern,
					 size_t *offset, bool *wildcard)
{
	enum spiffe_err err;
	size_t seg, end;

	if (start < len && s[start] != '/') {
		/* the trust domain ended at '?' or '#' */
		*offset = start;
		return spiffe_uri_char_err(s[start], pattern);
	}
	for (seg = start + 1; seg <= len; seg = end + 1) {
		end = seg;
		while (end < len && s[end] != '/')
			end++;
		err = spiffe_check_segment(s, seg, end, end == len, pattern, offset, wildcard);
		if (err)
			return err;
	}
	return SPIFFE_OK;
}

/* The validator behind IDs and patterns; *wildcard only for patterns. */
static enum spiffe_err spiffe_check_uri(const char *s, bool pattern, struct spiffe_id *out,
					bool *wildcard, size_t *offset)
{
	size_t len, td_end;
	enum spiffe_err err;

	*wildcard = false;
	*offset = 0;
	if (!s || !s[0])
		return SPIFFE_EMPTY;
	len = strnlen(s, SPIFFE_ID_MAX + 1);
	if (len > SPIFFE_ID_MAX) {
		*offset = SPIFFE_ID_MAX;
		return SPIFFE_TOO_LONG;
	}
	if (strncmp(s, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) != 0)
		return SPIFFE_BAD_SCHEME;

	td_end = SPIFFE_SCHEME_LEN + strcspn(s + SPIFFE_SCHEME_LEN, "/?#");
	err = spiffe_check_td(s, SPIFFE_SCHEME_LEN, td_end, pattern, offset);
	if (err)
		return err;
	err = spiffe_check_path(s, td_end, len, pattern, offset, wildcard);
	if (err)
		return err;

	out->td = s + SPIFFE_SCHEME_LEN;
	out->td_len = td_end - SPIFFE_SCHEME_LEN;
	out->path = s + td_end;
	out->path_len = len - td_end;
	return SPIFFE_OK;
}

/* Writes the offending part of s at offset into buf: quoted, or as a byte value. */
static void spiffe_show_part(const char *s, enum spiffe_err err, size_t offset, char *buf,
			     size_t len)
{
	unsigned char c = s[offset];

	if (err == SPIFFE_EMPTY_SEGMENT)
		snprintf(buf, len, "'//'");
	else if (err == SPIFFE_DOT_SEGMENT)
		snprintf(buf, len, "'%s'", s[offset + 1] == '.' ? ".." : ".");
	else if (c >= 0x20 && c < 0x7f)
		snprintf(buf, len, "'%c'", c);
	else
		snprintf(buf, len, "byte 0x%02x", c);
}

/* Writes the message of err, found at offset in s, into why. */
static void spiffe_format_why(const char *s, enum spiffe_err err, size_t offset, char *why,
			      size_t why_len)
{
	char part[16];

	if (why_len == 0)
		return;
	if (err == SPIFFE_BAD_SCHEME && strncasecmp(s, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) == 0) {
		snprintf(why, why_len, "scheme '%.*s' must be lowercase 'spiffe://'",
			 (int)SPIFFE_SCHEME_LEN, s);
		return;
	}
	if ((unsigned int)err >= SPIFFE_ERR_MAX || !spiffe_details[err].lead) {
		snprintf(why, why_len, "%s", spiffe_strerror(err));
		return;
	}
	spiffe_show_part(s, err, offset, part, sizeof(part));
	snprintf(why, why_len, "%s %s at offset %zu%s", spiffe_details[err].lead, part, offset,
		 spiffe_details[err].tail);
}

enum spiffe_err spiffe_check(const char *s, struct spiffe_id *out, size_t *offset)
{
	struct spiffe_id id;
	enum spiffe_err err;
	bool wildcard;
	size_t off;

	err = spiffe_check_uri(s, false, &id, &wildcard, &off);
	if (err) {
		if (offset)
			*offset = off;
		return err;
	}
	if (out)
		*out = id;
	return SPIFFE_OK;
}

int spiffe_parse(const char *s, struct spiffe_id *out, char *why, size_t why_len)
{
	enum spiffe_err err;
	size_t off;

	err = spiffe_check(s, out, &off);
	if (err) {
		spiffe_format_why(s, err, off, why, why_len);
		return -EINVAL;
	}
	return 0;
}

enum spiffe_err spiffe_pattern_check(const char *s, struct spiffe_pattern *out, size_t *offset)
{
	struct spiffe_id id;
	enum spiffe_err err;
	bool wildcard;
	size_t off;

	err = spiffe_check_uri(s, true, &id, &wildcard, &off);
	if (err) {
		if (offset)
			*offset = off;
		return err;
	}
	if (wildcard)
		id.path_len -= 2; /* the '/' and the '*' */
	if (out) {
		out->base = id;
		out->subtree = wildcard;
	}
	return SPIFFE_OK;
}

int spiffe_pattern_parse(const char *s, struct spiffe_pattern *out, char *why, size_t why_len)
{
	enum spiffe_err err;
	size_t off;

	err = spiffe_pattern_check(s, out, &off);
	if (err) {
		spiffe_format_why(s, err, off, why, why_len);
		return -EINVAL;
	}
	return 0;
}

/* Whether the first len bytes of a bare trust domain name hold a "scheme://". */
static bool spiffe_td_has_scheme(const char *td, size_t len)
{
	const char *colon = memchr(td, ':', len);

	return colon && strncmp(colon, "://", 3) == 0;
}

/* spiffe_td_check(), writing *offset whatever the result. */
static enum spiffe_err spiffe_check_bare_td(const char *td, size_t *offset)
{
	size_t len;

	*offset = 0;
	if (!td)
		return SPIFFE_EMPTY_TRUST_DOMAIN;
	/* one byte past the maximum is enough to know the name is too long */
	len = strnlen(td, SPIFFE_TRUST_DOMAIN_MAX + 1);
	if (spiffe_td_has_scheme(td, len))
		return SPIFFE_TRUST_DOMAIN_IS_URI;
	return spiffe_check_td(td, 0, len, false, offset);
}

enum spiffe_err spiffe_td_check(const char *td, size_t *offset)
{
	enum spiffe_err err;
	size_t off;

	err = spiffe_check_bare_td(td, &off);
	if (err && offset)
		*offset = off;
	return err;
}

int spiffe_td_valid(const char *td, char *why, size_t why_len)
{
	enum spiffe_err err;
	size_t off;

	err = spiffe_td_check(td, &off);
	if (err) {
		spiffe_format_why(td, err, off, why, why_len);
		return -EINVAL;
	}
	return 0;
}

bool spiffe_in_trust_domain(const struct spiffe_id *id, const char *td)
{
	if (!id || !td || !id->td)
		return false;
	/* equal over td_len bytes means td has no NUL before td[td_len] */
	return strncmp(id->td, td, id->td_len) == 0 && td[id->td_len] == '\0';
}

bool spiffe_pattern_match(const struct spiffe_pattern *pattern, const struct spiffe_id *id)
{
	const struct spiffe_id *base;

	if (!pattern || !id)
		return false;
	base = &pattern->base;
	if (base->td_len != id->td_len || memcmp(base->td, id->td, id->td_len) != 0)
		return false;
	if (!pattern->subtree)
		return base->path_len == id->path_len &&
		       memcmp(base->path, id->path, id->path_len) == 0;
	/* strictly below: the base path, then '/' and at least one segment */
	return id->path_len > base->path_len && memcmp(base->path, id->path, base->path_len) == 0 &&
	       id->path[base->path_len] == '/';
}

bool spiffe_match(const char *pattern, const char *id)
{
	struct spiffe_pattern p;
	struct spiffe_id i;

	if (spiffe_pattern_check(pattern, &p, NULL) || spiffe_check(id, &i, NULL))
		return false;
	return spiffe_pattern_match(&p, &i);
}

bool spiffe_match_trust_domain(const char *td, const char *id)
{
	struct spiffe_id i;

	if (spiffe_check(id, &i, NULL))
		return false;
	return spiffe_in_trust_domain(&i, td);
}
