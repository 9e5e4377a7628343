// SPDX-License-Identifier: Apache-2.0
/*
 * Table tests of agent/spiffe.c: valid and invalid IDs (each with its reason,
 * the offset of the offending part and what the message must name), selector
 * patterns, the matcher, and bare trust domain names. Every input is copied
 * into a heap block of its exact size, so that a read past the terminating
 * NUL is caught by AddressSanitizer in the sanitized build.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spiffe.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct good_id {
	const char *in;
	const char *td;
	const char *path;
};

struct bad_input {
	const char *in;
	enum spiffe_err err;
	size_t offset;
	const char *mentions; /* a part of the message that names the cause */
};

static const struct good_id good_ids[] = {
	{"spiffe://td", "td", ""},
	{"spiffe://a/b", "a", "/b"},
	{"spiffe://example.org/ns/web", "example.org", "/ns/web"},
	{"spiffe://staging.example.com/payments/mysql", "staging.example.com", "/payments/mysql"},
	{"spiffe://k8s-west.example.com/ns/staging/sa/default", "k8s-west.example.com",
	 "/ns/staging/sa/default"},
	{"spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453", "example.com",
	 "/9eebccd2-12bf-40a6-b262-65fe0487d453"},
	{"spiffe://a_b-c.0/AZ-az_09.x", "a_b-c.0", "/AZ-az_09.x"},
	{"spiffe://1.2.3.4/x", "1.2.3.4", "/x"},
	{"spiffe://td/UPPER/Case", "td", "/UPPER/Case"},
	{"spiffe://td/.../.x/x./..y", "td", "/.../.x/x./..y"},
	{"spiffe://-._/-/_", "-._", "/-/_"},
};

static const struct bad_input bad_ids[] = {
	{"", SPIFFE_EMPTY, 0, "empty"},
	{"SPIFFE://td/x", SPIFFE_BAD_SCHEME, 0, "scheme 'SPIFFE://' must be lowercase"},
	{"Spiffe://td/x", SPIFFE_BAD_SCHEME, 0, "scheme 'Spiffe://' must be lowercase"},
	{"spiffe:/td", SPIFFE_BAD_SCHEME, 0, "does not start with 'spiffe://'"},
	{"spiffe:td/x", SPIFFE_BAD_SCHEME, 0, "does not start with 'spiffe://'"},
	{"https://td/x", SPIFFE_BAD_SCHEME, 0, "does not start with 'spiffe://'"},
	{" spiffe://td/x", SPIFFE_BAD_SCHEME, 0, "does not start with 'spiffe://'"},
	{"td/x", SPIFFE_BAD_SCHEME, 0, "does not start with 'spiffe://'"},
	{"spiffe://", SPIFFE_EMPTY_TRUST_DOMAIN, 9, "trust domain is empty"},
	{"spiffe:///x", SPIFFE_EMPTY_TRUST_DOMAIN, 9, "trust domain is empty"},
	{"spiffe://?x", SPIFFE_EMPTY_TRUST_DOMAIN, 9, "trust domain is empty"},
	{"spiffe://TD/x", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 9, "'T' at offset 9"},
	{"spiffe://exAmple.org", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 11, "'A' at offset 11"},
	{"spiffe://[::1]/x", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 9, "'[' at offset 9"},
	{"spiffe://t d/x", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 10, "' ' at offset 10"},
	{"spiffe://t\xc3\xa9/x", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 10, "byte 0xc3 at offset 10"},
	{"spiffe://td*/x", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 11, "'*' at offset 11"},
	{"spiffe://td:443/x", SPIFFE_PORT, 11, "':' at offset 11"},
	{"spiffe://td:/x", SPIFFE_PORT, 11, "':' at offset 11"},
	{"spiffe://user@td/x", SPIFFE_USERINFO, 13, "'@' at offset 13"},
	{"spiffe://user:pw@td/x", SPIFFE_USERINFO, 16, "'@' at offset 16"},
	{"spiffe://@td", SPIFFE_USERINFO, 9, "'@' at offset 9"},
	{"spiffe://td/a%20b", SPIFFE_PERCENT_ENCODED, 13, "'%' at offset 13"},
	{"spiffe://t%64/x", SPIFFE_PERCENT_ENCODED, 10, "'%' at offset 10"},
	{"spiffe://td/x?y", SPIFFE_QUERY, 13, "'?' at offset 13"},
	{"spiffe://td?y", SPIFFE_QUERY, 11, "'?' at offset 11"},
	{"spiffe://td/x#y", SPIFFE_FRAGMENT, 13, "'#' at offset 13"},
	{"spiffe://td#y", SPIFFE_FRAGMENT, 11, "'#' at offset 11"},
	{"spiffe://td//x", SPIFFE_EMPTY_SEGMENT, 11, "'//' at offset 11"},
	{"spiffe://td/x//y", SPIFFE_EMPTY_SEGMENT, 13, "'//' at offset 13"},
	{"spiffe://td/./x", SPIFFE_DOT_SEGMENT, 12, "'.' at offset 12"},
	{"spiffe://td/x/..", SPIFFE_DOT_SEGMENT, 14, "'..' at offset 14"},
	{"spiffe://td/.", SPIFFE_DOT_SEGMENT, 12, "'.' at offset 12"},
	{"spiffe://td/../x", SPIFFE_DOT_SEGMENT, 12, "'..' at offset 12"},
	{"spiffe://td/x/", SPIFFE_TRAILING_SLASH, 13, "'/' at offset 13"},
	{"spiffe://td/", SPIFFE_TRAILING_SLASH, 11, "'/' at offset 11"},
	{"spiffe://td/a b", SPIFFE_BAD_PATH_CHAR, 13, "' ' at offset 13"},
	{"spiffe://td/a:b", SPIFFE_BAD_PATH_CHAR, 13, "':' at offset 13"},
	{"spiffe://td/a@b", SPIFFE_BAD_PATH_CHAR, 13, "'@' at offset 13"},
	{"spiffe://td/a\\b", SPIFFE_BAD_PATH_CHAR, 13, "'\\' at offset 13"},
	{"spiffe://td/*", SPIFFE_BAD_PATH_CHAR, 12, "'*' at offset 12"},
	{"spiffe://td/caf\xc3\xa9", SPIFFE_BAD_PATH_CHAR, 15, "byte 0xc3 at offset 15"},
	{"spiffe://td/a\tb", SPIFFE_BAD_PATH_CHAR, 13, "byte 0x09 at offset 13"},
	{"spiffe://td/x\n", SPIFFE_BAD_PATH_CHAR, 13, "byte 0x0a at offset 13"},
	/* several rules broken: the leftmost is reported */
	{"spiffe://td//x?y", SPIFFE_EMPTY_SEGMENT, 11, "'//' at offset 11"},
	{"spiffe://td/x?y/", SPIFFE_QUERY, 13, "'?' at offset 13"},
	{"spiffe://Td:1/x", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 9, "'T' at offset 9"},
};

/* A copy of s in a heap block of exactly its size; NULL stays NULL. */
static char *exact_copy(const char *s)
{
	char *copy;

	if (!s)
		return NULL;
	copy = strdup(s);
	cr_assert_not_null(copy, "out of memory");
	return copy;
}

/* A string of len bytes: prefix, then fill repeated. */
static char *make_string(const char *prefix, char fill, size_t len)
{
	size_t plen = strlen(prefix);
	char *s = malloc(len + 1);

	cr_assert_not_null(s, "out of memory");
	cr_assert_leq(plen, len);
	memcpy(s, prefix, plen);
	memset(s + plen, fill, len - plen);
	s[len] = '\0';
	return s;
}

static void expect_good_id(const char *in, const char *td, const char *path)
{
	struct spiffe_id id = {0};
	char why[] = "untouched";
	char *s = exact_copy(in);
	size_t off = 4242;

	cr_expect_eq(spiffe_check(s, &id, &off), SPIFFE_OK, "'%s' is valid: %s", in,
		     spiffe_strerror(spiffe_check(s, NULL, NULL)));
	cr_expect_eq(off, 4242, "'%s': offset written on success", in);
	cr_expect_eq(id.td, s + strlen("spiffe://"), "'%s': trust domain not in the input", in);
	cr_expect_eq(id.td_len, strlen(td), "'%s': trust domain length %zu", in, id.td_len);
	cr_expect(id.td && strncmp(id.td, td, id.td_len) == 0, "'%s': trust domain '%.*s'", in,
		  (int)id.td_len, id.td);
	cr_expect_eq(id.path_len, strlen(path), "'%s': path length %zu", in, id.path_len);
	cr_expect(id.path && strncmp(id.path, path, id.path_len) == 0, "'%s': path '%.*s'", in,
		  (int)id.path_len, id.path);
	cr_expect_eq(spiffe_parse(s, NULL, why, sizeof(why)), 0, "'%s': parse: %s", in, why);
	cr_expect_str_eq(why, "untouched", "'%s': why written on success", in);
	free(s);
}

static void expect_bad_id(const struct bad_input *c)
{
	const struct spiffe_id sentinel = {"sentinel", 8, "/sentinel", 9};
	struct spiffe_id id = sentinel;
	char *s = exact_copy(c->in);
	char why[512] = "";
	size_t off = SIZE_MAX;
	enum spiffe_err err;

	err = spiffe_check(s, &id, &off);
	cr_expect_eq(err, c->err, "'%s': reason %d (%s), expected %d (%s)", c->in, err,
		     spiffe_strerror(err), c->err, spiffe_strerror(c->err));
	cr_expect_eq(off, c->offset, "'%s': offset %zu, expected %zu", c->in, off, c->offset);
	cr_expect(memcmp(&id, &sentinel, sizeof(id)) == 0, "'%s': out written on failure", c->in);
	cr_expect_eq(spiffe_parse(s, &id, why, sizeof(why)), -EINVAL, "'%s' parsed", c->in);
	cr_expect(memcmp(&id, &sentinel, sizeof(id)) == 0, "'%s': out written on failure", c->in);
	cr_expect_not_null(strstr(why, c->mentions), "'%s': message \"%s\" does not mention \"%s\"",
			   c->in, why, c->mentions);
	cr_expect_lt(strlen(why), SPIFFE_WHY_MAX, "'%s': message longer than SPIFFE_WHY_MAX",
		     c->in);
	free(s);
}

Test(spiffe, valid_ids)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(good_ids); i++)
		expect_good_id(good_ids[i].in, good_ids[i].td, good_ids[i].path);
}

Test(spiffe, invalid_ids)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad_ids); i++)
		expect_bad_id(&bad_ids[i]);
}

Test(spiffe, null_is_empty)
{
	struct bad_input c = {NULL, SPIFFE_EMPTY, 0, "empty"};

	expect_bad_id(&c);
}

Test(spiffe, length_limit_is_2048_bytes)
{
	char *at_max = make_string("spiffe://td/", 'a', SPIFFE_ID_MAX);
	char *over = make_string("spiffe://td/", 'a', SPIFFE_ID_MAX + 1);
	char *over_bad_scheme = make_string("http://td/", 'a', SPIFFE_ID_MAX + 1);
	struct bad_input c = {over, SPIFFE_TOO_LONG, SPIFFE_ID_MAX, "2048 bytes"};

	expect_good_id(at_max, "td", at_max + strlen("spiffe://td"));
	expect_bad_id(&c);
	/* the length is checked before anything else */
	c.in = over_bad_scheme;
	expect_bad_id(&c);
	free(at_max);
	free(over);
	free(over_bad_scheme);
}

Test(spiffe, trust_domain_limit_is_255_bytes)
{
	char *td_max = make_string("", 'a', SPIFFE_TRUST_DOMAIN_MAX);
	char *td_over = make_string("", 'a', SPIFFE_TRUST_DOMAIN_MAX + 1);
	char id_max[512], id_over[512];
	struct bad_input c = {id_over, SPIFFE_TRUST_DOMAIN_TOO_LONG, 9 + SPIFFE_TRUST_DOMAIN_MAX,
			      "255 bytes"};

	snprintf(id_max, sizeof(id_max), "spiffe://%s/x", td_max);
	snprintf(id_over, sizeof(id_over), "spiffe://%s/x", td_over);
	expect_good_id(id_max, td_max, "/x");
	expect_bad_id(&c);
	free(td_max);
	free(td_over);
}

Test(spiffe, why_is_truncated_and_terminated)
{
	char why[8];

	memset(why, 'x', sizeof(why));
	cr_assert_eq(spiffe_parse("spiffe://TD/x", NULL, why, sizeof(why)), -EINVAL);
	cr_expect_str_eq(why, "trust d");
	/* no buffer at all */
	cr_expect_eq(spiffe_parse("spiffe://TD/x", NULL, NULL, 0), -EINVAL);
}

Test(spiffe, strerror_names_every_reason)
{
	int i, j;

	for (i = 0; i < SPIFFE_ERR_MAX; i++) {
		cr_assert_not_null(spiffe_strerror(i), "reason %d", i);
		for (j = 0; j < i; j++)
			cr_expect_str_neq(spiffe_strerror(i), spiffe_strerror(j),
					  "reasons %d and %d share a message", i, j);
	}
	cr_expect_str_eq(spiffe_strerror(SPIFFE_ERR_MAX), "unknown SPIFFE ID error");
	cr_expect_str_eq(spiffe_strerror((enum spiffe_err) - 1), "unknown SPIFFE ID error");
}

struct good_pattern {
	const char *in;
	bool subtree;
	const char *td;
	const char *path; /* of the base, without the '*' segment */
};

static const struct good_pattern good_patterns[] = {
	{"spiffe://td/ns/web/*", true, "td", "/ns/web"},
	{"spiffe://td/ns/web", false, "td", "/ns/web"},
	{"spiffe://td", false, "td", ""},
	{"spiffe://td/*", true, "td", ""},
	{"spiffe://example.org/a.b/*", true, "example.org", "/a.b"},
};

static const struct bad_input bad_patterns[] = {
	{"spiffe://td/ns/*/x", SPIFFE_BAD_WILDCARD, 15, "'*' at offset 15"},
	{"spiffe://td/ns/web*", SPIFFE_BAD_WILDCARD, 18, "'*' at offset 18"},
	{"spiffe://td/*x", SPIFFE_BAD_WILDCARD, 12, "'*' at offset 12"},
	{"spiffe://td/**", SPIFFE_BAD_WILDCARD, 12, "'*' at offset 12"},
	{"spiffe://td/*/", SPIFFE_BAD_WILDCARD, 12, "'*' at offset 12"},
	{"spiffe://*.td/x", SPIFFE_BAD_WILDCARD, 9, "'*' at offset 9"},
	{"spiffe://td*", SPIFFE_BAD_WILDCARD, 11, "'*' at offset 11"},
	{"spiffe://*", SPIFFE_BAD_WILDCARD, 9, "'*' at offset 9"},
	{"*", SPIFFE_BAD_SCHEME, 0, "does not start with 'spiffe://'"},
	{"SPIFFE://td/*", SPIFFE_BAD_SCHEME, 0, "must be lowercase"},
	{"spiffe://TD/*", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 9, "'T' at offset 9"},
	{"spiffe://td/ns//*", SPIFFE_EMPTY_SEGMENT, 14, "'//' at offset 14"},
	{"spiffe://td/../*", SPIFFE_DOT_SEGMENT, 12, "'..' at offset 12"},
	{"spiffe://td/ns/web/", SPIFFE_TRAILING_SLASH, 18, "'/' at offset 18"},
	{"spiffe://td/x?*", SPIFFE_QUERY, 13, "'?' at offset 13"},
	{"spiffe://td/%2A", SPIFFE_PERCENT_ENCODED, 12, "'%' at offset 12"},
	{"", SPIFFE_EMPTY, 0, "empty"},
};

Test(spiffe, valid_patterns)
{
	const struct good_pattern *c;
	struct spiffe_pattern p;
	char why[] = "untouched";
	size_t i;

	for (i = 0; i < ARRAY_SIZE(good_patterns); i++) {
		c = &good_patterns[i];
		memset(&p, 0, sizeof(p));
		cr_expect_eq(spiffe_pattern_parse(c->in, &p, why, sizeof(why)), 0, "'%s': %s",
			     c->in, why);
		cr_expect_eq(p.subtree, c->subtree, "'%s': subtree %d", c->in, p.subtree);
		cr_expect_eq(p.base.td_len, strlen(c->td), "'%s': trust domain length", c->in);
		cr_expect(p.base.td && strncmp(p.base.td, c->td, p.base.td_len) == 0,
			  "'%s': trust domain '%.*s'", c->in, (int)p.base.td_len, p.base.td);
		cr_expect_eq(p.base.path_len, strlen(c->path), "'%s': base path length %zu", c->in,
			     p.base.path_len);
		cr_expect(p.base.path && strncmp(p.base.path, c->path, p.base.path_len) == 0,
			  "'%s': base path '%.*s'", c->in, (int)p.base.path_len, p.base.path);
		cr_expect_str_eq(why, "untouched", "'%s': why written on success", c->in);
	}
}

Test(spiffe, invalid_patterns)
{
	const struct bad_input *c;
	struct spiffe_pattern p;
	char why[512] = "";
	enum spiffe_err err;
	size_t i, off;

	for (i = 0; i < ARRAY_SIZE(bad_patterns); i++) {
		c = &bad_patterns[i];
		p.subtree = true;
		p.base.td = "sentinel";
		off = SIZE_MAX;
		err = spiffe_pattern_check(c->in, &p, &off);
		cr_expect_eq(err, c->err, "'%s': reason %d (%s), expected %d (%s)", c->in, err,
			     spiffe_strerror(err), c->err, spiffe_strerror(c->err));
		cr_expect_eq(off, c->offset, "'%s': offset %zu, expected %zu", c->in, off,
			     c->offset);
		cr_expect(p.subtree && strcmp(p.base.td, "sentinel") == 0,
			  "'%s': out written on failure", c->in);
		cr_expect_eq(spiffe_pattern_parse(c->in, NULL, why, sizeof(why)), -EINVAL,
			     "'%s' parsed", c->in);
		cr_expect_not_null(strstr(why, c->mentions),
				   "'%s': message \"%s\" does not mention \"%s\"", c->in, why,
				   c->mentions);
	}
}

Test(spiffe, pattern_length_limit_is_2048_bytes)
{
	char *at_max = make_string("spiffe://td/", 'a', SPIFFE_ID_MAX);
	char *over = make_string("spiffe://td/", 'a', SPIFFE_ID_MAX + 1);

	/* the pattern counts as written, its wildcard segment included */
	memcpy(at_max + SPIFFE_ID_MAX - 2, "/*", 2);
	memcpy(over + SPIFFE_ID_MAX - 1, "/*", 2);
	cr_expect_eq(spiffe_pattern_check(at_max, NULL, NULL), SPIFFE_OK);
	cr_expect_eq(spiffe_pattern_check(over, NULL, NULL), SPIFFE_TOO_LONG);
	free(at_max);
	free(over);
}

struct match_case {
	const char *pattern;
	const char *id;
	bool match;
};

static const struct match_case match_cases[] = {
	/* exact */
	{"spiffe://td/ns/web", "spiffe://td/ns/web", true},
	{"spiffe://td/ns/web", "spiffe://td/ns/web/a", false},
	{"spiffe://td/ns/web", "spiffe://td/ns/we", false},
	{"spiffe://td/ns/web", "spiffe://td/ns/webx", false},
	{"spiffe://td/ns/web", "spiffe://td/NS/web", false},
	{"spiffe://td/ns/web", "spiffe://other/ns/web", false},
	{"spiffe://td/ns/web", "spiffe://td", false},
	/* strictly below */
	{"spiffe://td/ns/web/*", "spiffe://td/ns/web/a", true},
	{"spiffe://td/ns/web/*", "spiffe://td/ns/web/a/b/c", true},
	{"spiffe://td/ns/web/*", "spiffe://td/ns/web", false},
	{"spiffe://td/ns/web/*", "spiffe://td/ns/webx", false},
	{"spiffe://td/ns/web/*", "spiffe://td/ns/webx/a", false},
	{"spiffe://td/ns/web/*", "spiffe://td/ns", false},
	{"spiffe://td/ns/web/*", "spiffe://td2/ns/web/a", false},
	{"spiffe://td/ns/web/*", "spiffe://t/ns/web/a", false},
	{"spiffe://td/ns/web/*", "spiffe://td.evil/ns/web/a", false},
	/* the trust domain's own ID */
	{"spiffe://td", "spiffe://td", true},
	{"spiffe://td", "spiffe://td/x", false},
	{"spiffe://td", "spiffe://tdx", false},
	{"spiffe://td/*", "spiffe://td/x", true},
	{"spiffe://td/*", "spiffe://td/x/y", true},
	{"spiffe://td/*", "spiffe://td", false},
	{"spiffe://td/*", "spiffe://tdx/x", false},
	/* an invalid side never matches, even where the bytes would */
	{"spiffe://td/ns/web/*", "spiffe://td/ns/web/../../admin", false},
	{"spiffe://td/ns/web/*", "spiffe://td/ns/web//a", false},
	{"spiffe://td/ns/web/*", "spiffe://td/ns/web/a/", false},
	{"spiffe://td/ns/web/*", "spiffe://td/ns/web/*", false},
	{"spiffe://td/ns/web/*", "spiffe://td/ns/web/a?b", false},
	{"spiffe://td/ns/*/web", "spiffe://td/ns/x/web", false},
	{"spiffe://TD/x", "spiffe://TD/x", false},
	{"spiffe://td/x/", "spiffe://td/x/", false},
	{NULL, "spiffe://td", false},
	{"spiffe://td", NULL, false},
};

Test(spiffe, match)
{
	const struct match_case *c;
	char *pattern, *id;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(match_cases); i++) {
		c = &match_cases[i];
		pattern = exact_copy(c->pattern);
		id = exact_copy(c->id);
		cr_expect_eq(spiffe_match(pattern, id), c->match, "'%s' %s '%s'", c->id,
			     c->match ? "should match" : "should not match", c->pattern);
		free(pattern);
		free(id);
	}
}

Test(spiffe, pattern_match_handles_null)
{
	struct spiffe_pattern p;
	struct spiffe_id id;

	cr_assert_eq(spiffe_pattern_check("spiffe://td/*", &p, NULL), SPIFFE_OK);
	cr_assert_eq(spiffe_check("spiffe://td/x", &id, NULL), SPIFFE_OK);
	cr_expect(spiffe_pattern_match(&p, &id));
	cr_expect_not(spiffe_pattern_match(NULL, &id));
	cr_expect_not(spiffe_pattern_match(&p, NULL));
}

static const char *const good_tds[] = {
	"example.org", "td", "a", "1.2.3.4", "a_b-c.d", "-", "trust_domain_name.example.com",
};

static const struct bad_input bad_tds[] = {
	{"", SPIFFE_EMPTY_TRUST_DOMAIN, 0, "trust domain is empty"},
	{"Example.org", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 0, "'E' at offset 0"},
	{"example.org:443", SPIFFE_PORT, 11, "':' at offset 11"},
	{"user@example.org", SPIFFE_USERINFO, 4, "'@' at offset 4"},
	{"spiffe://example.org", SPIFFE_TRUST_DOMAIN_IS_URI, 0, "bare trust domain name"},
	{"SPIFFE://example.org/x", SPIFFE_TRUST_DOMAIN_IS_URI, 0, "not a URI"},
	{"example.org/x", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 11, "'/' at offset 11"},
	{"ex%41mple", SPIFFE_PERCENT_ENCODED, 2, "'%' at offset 2"},
	{"td?x", SPIFFE_QUERY, 2, "'?' at offset 2"},
	{"td#x", SPIFFE_FRAGMENT, 2, "'#' at offset 2"},
	{"t d", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 1, "' ' at offset 1"},
	{"*.example.org", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 0, "'*' at offset 0"},
	{"caf\xc3\xa9", SPIFFE_BAD_TRUST_DOMAIN_CHAR, 3, "byte 0xc3 at offset 3"},
};

Test(spiffe, valid_trust_domains)
{
	char *td_max = make_string("", 'z', SPIFFE_TRUST_DOMAIN_MAX);
	char why[] = "untouched";
	char *td;
	size_t i, off;

	for (i = 0; i < ARRAY_SIZE(good_tds); i++) {
		td = exact_copy(good_tds[i]);
		off = 4242;
		cr_expect_eq(spiffe_td_check(td, &off), SPIFFE_OK, "'%s'", td);
		cr_expect_eq(off, 4242, "'%s': offset written on success", td);
		cr_expect_eq(spiffe_td_valid(td, why, sizeof(why)), 0, "'%s': %s", td, why);
		free(td);
	}
	cr_expect_eq(spiffe_td_valid(td_max, why, sizeof(why)), 0, "255 bytes: %s", why);
	cr_expect_str_eq(why, "untouched");
	free(td_max);
}

Test(spiffe, invalid_trust_domains)
{
	char *td_over = make_string("", 'z', SPIFFE_TRUST_DOMAIN_MAX + 1);
	struct bad_input over = {td_over, SPIFFE_TRUST_DOMAIN_TOO_LONG, SPIFFE_TRUST_DOMAIN_MAX,
				 "255 bytes"};
	const struct bad_input *c;
	char why[512], *td;
	enum spiffe_err err;
	size_t i, off;

	for (i = 0; i <= ARRAY_SIZE(bad_tds); i++) {
		c = i < ARRAY_SIZE(bad_tds) ? &bad_tds[i] : &over;
		td = exact_copy(c->in);
		off = SIZE_MAX;
		err = spiffe_td_check(td, &off);
		cr_expect_eq(err, c->err, "'%s': reason %d (%s), expected %d (%s)", c->in, err,
			     spiffe_strerror(err), c->err, spiffe_strerror(c->err));
		cr_expect_eq(off, c->offset, "'%s': offset %zu, expected %zu", c->in, off,
			     c->offset);
		cr_expect_eq(spiffe_td_valid(td, why, sizeof(why)), -EINVAL, "'%s' valid", c->in);
		cr_expect_not_null(strstr(why, c->mentions),
				   "'%s': message \"%s\" does not mention \"%s\"", c->in, why,
				   c->mentions);
		free(td);
	}
	cr_expect_eq(spiffe_td_check(NULL, NULL), SPIFFE_EMPTY_TRUST_DOMAIN);
	free(td_over);
}

Test(spiffe, in_trust_domain)
{
	struct spiffe_id id;

	cr_assert_eq(spiffe_check("spiffe://example.org/x", &id, NULL), SPIFFE_OK);
	cr_expect(spiffe_in_trust_domain(&id, "example.org"));
	cr_expect_not(spiffe_in_trust_domain(&id, "example.or"));
	cr_expect_not(spiffe_in_trust_domain(&id, "example.org."));
	cr_expect_not(spiffe_in_trust_domain(&id, "Example.org"));
	cr_expect_not(spiffe_in_trust_domain(&id, "org"));
	cr_expect_not(spiffe_in_trust_domain(&id, ""));
	cr_expect_not(spiffe_in_trust_domain(&id, NULL));
	cr_expect_not(spiffe_in_trust_domain(NULL, "example.org"));
}

static const struct match_case td_match_cases[] = {
	{"example.org", "spiffe://example.org", true},
	{"example.org", "spiffe://example.org/a/b", true},
	{"example.org", "spiffe://example.org.evil/x", false},
	{"example.org", "spiffe://evil.example.org/x", false},
	{"example", "spiffe://example.org/x", false},
	{"example.org", "spiffe://EXAMPLE.org/x", false},
	{"Example.org", "spiffe://example.org/x", false},
	{"example.org", "spiffe://example.org/", false},
	{"example.org", "spiffe://user@example.org/x", false},
	{NULL, "spiffe://example.org", false},
	{"example.org", NULL, false},
};

Test(spiffe, match_trust_domain)
{
	const struct match_case *c;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(td_match_cases); i++) {
		c = &td_match_cases[i];
		cr_expect_eq(spiffe_match_trust_domain(c->pattern, c->id), c->match,
			     "'%s' %s trust domain '%s'", c->id,
			     c->match ? "should be in" : "should not be in", c->pattern);
	}
}

/*
 * Every byte value in the middle of a trust domain and of a path segment:
 * the allowed sets are spelled out here as the specification gives them.
 */
static enum spiffe_err expected_td_byte(int c)
{
	if (strchr("abcdefghijklmnopqrstuvwxyz0123456789._-", c))
		return SPIFFE_OK;
	switch (c) {
	case ':':
		return SPIFFE_PORT;
	case '@':
		return SPIFFE_USERINFO;
	case '%':
		return SPIFFE_PERCENT_ENCODED;
	default:
		return SPIFFE_BAD_TRUST_DOMAIN_CHAR;
	}
}

static enum spiffe_err expected_path_byte(int c)
{
	if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-", c))
		return SPIFFE_OK;
	switch (c) {
	case '%':
		return SPIFFE_PERCENT_ENCODED;
	case '?':
		return SPIFFE_QUERY;
	case '#':
		return SPIFFE_FRAGMENT;
	default:
		return SPIFFE_BAD_PATH_CHAR;
	}
}

Test(spiffe, every_byte)
{
	char td[] = "spiffe://t?d/x";
	char path[] = "spiffe://td/a?b";
	enum spiffe_err err;
	size_t off;
	int c;

	/* NUL ends the string; '/', '?' and '#' end the trust domain */
	for (c = 1; c < 256; c++) {
		td[10] = (char)c;
		off = SIZE_MAX;
		err = spiffe_check(td, NULL, &off);
		if (!strchr("/?#", c)) {
			cr_expect_eq(err, expected_td_byte(c), "byte 0x%02x in trust domain: %s", c,
				     spiffe_strerror(err));
			cr_expect(err == SPIFFE_OK || off == 10, "byte 0x%02x: offset %zu", c, off);
		}
		if (c == '/')
			continue;
		path[13] = (char)c;
		off = SIZE_MAX;
		err = spiffe_check(path, NULL, &off);
		cr_expect_eq(err, expected_path_byte(c), "byte 0x%02x in path: %s", c,
			     spiffe_strerror(err));
		cr_expect(err == SPIFFE_OK || off == 13, "byte 0x%02x: offset %zu", c, off);
	}
}
