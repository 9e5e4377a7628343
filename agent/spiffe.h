/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one SPIFFE ID validator of fedguard, for IDs from certificates,
 * configuration and policy alike, and the matcher of policy selectors.
 *
 * Accepted: "spiffe://" in lowercase, a trust domain of [a-z0-9._-] (at most
 * 255 bytes), then nothing or a path of "/segment" parts, each segment
 * [a-zA-Z0-9._-], neither "." nor "..", no empty segment, no trailing '/';
 * no userinfo, port, percent-encoding, query or fragment; at most 2048 bytes
 * in all. The SPIFFE specification calls the scheme and trust domain
 * case-insensitive but requires the trust domain in lowercase; fedguard
 * accepts only the lowercase form of both, so that two IDs are the same
 * identity exactly when their bytes are equal.
 *
 * When a string breaks several rules, the one reported is the first met in
 * this order: empty, total length, scheme, userinfo, then the trust domain's
 * bytes left to right, its emptiness and length, then the path left to
 * right. Nothing here allocates, and nothing reads past the terminating NUL.
 */
#ifndef FEDGUARD_SPIFFE_H
#define FEDGUARD_SPIFFE_H

#include <stdbool.h>
#include <stddef.h>

enum {
	SPIFFE_ID_MAX = 2048,	       /* bytes of a whole ID or pattern */
	SPIFFE_TRUST_DOMAIN_MAX = 255, /* bytes of a trust domain name */
	SPIFFE_WHY_MAX = 128,	       /* a why buffer this size holds every message */
};

/* Why a string is not a SPIFFE ID (or pattern, or trust domain name). */
enum spiffe_err {
	SPIFFE_OK = 0,
	SPIFFE_EMPTY,	   /* NULL or "" */
	SPIFFE_TOO_LONG,   /* more than SPIFFE_ID_MAX bytes */
	SPIFFE_BAD_SCHEME, /* does not start with "spiffe://" */
	SPIFFE_EMPTY_TRUST_DOMAIN,
	SPIFFE_TRUST_DOMAIN_TOO_LONG, /* more than SPIFFE_TRUST_DOMAIN_MAX bytes */
	SPIFFE_BAD_TRUST_DOMAIN_CHAR, /* a byte outside [a-z0-9._-] */
	SPIFFE_TRUST_DOMAIN_IS_URI,   /* a URI where a bare trust domain name belongs */
	SPIFFE_PORT,		      /* ':' in the authority */
	SPIFFE_USERINFO,	      /* '@' in the authority */
	SPIFFE_EMPTY_SEGMENT,	      /* "//" in the path */
	SPIFFE_DOT_SEGMENT,	      /* a "." or ".." segment */
	SPIFFE_TRAILING_SLASH,
	SPIFFE_BAD_PATH_CHAR,	/* a byte outside [a-zA-Z0-9._-] */
	SPIFFE_PERCENT_ENCODED, /* any '%' */
	SPIFFE_QUERY,		/* any '?' */
	SPIFFE_FRAGMENT,	/* any '#' */
	SPIFFE_BAD_WILDCARD,	/* a pattern's '*' other than a whole last segment */
	SPIFFE_ERR_MAX,
};

/*
 * A parsed ID. It borrows from the string it was parsed from and is valid
 * only as long as that string is. Neither part is NUL-terminated in general:
 * print them with "%.*s". path is "" for the trust domain's own ID, or
 * "/seg[/seg...]".
 */
struct spiffe_id {
	const char *td;
	size_t td_len;
	const char *path;
	size_t path_len;
};

/*
 * A parsed selector pattern: "spiffe://td[/path]" matches that one ID; the
 * same followed by a last segment "*" (a subtree pattern) matches every ID
 * strictly below spiffe://td[/path], never that ID itself. base borrows from
 * the pattern string like a struct spiffe_id and never includes the "*"
 * segment or the '/' before it.
 */
struct spiffe_pattern {
	struct spiffe_id base;
	bool subtree;
};

/* A fixed description of a reason, or "unknown SPIFFE ID error". */
const char *spiffe_strerror(enum spiffe_err err);

/*
 * Validates s as a SPIFFE ID. On SPIFFE_OK, fills *out (if out is not NULL);
 * otherwise writes the byte offset in s of the offending part to *offset
 * (if offset is not NULL).
 */
enum spiffe_err spiffe_check(const char *s, struct spiffe_id *out, size_t *offset);

/*
 * Like spiffe_check(), returning 0 or -EINVAL. On failure, writes a message
 * that names the offending byte or part and its offset into why (if why_len
 * is not 0), e.g. "trust domain contains 'A' at offset 9 (allowed: a-z 0-9
 * . _ -)". out is written only on success, why only on failure.
 */
int spiffe_parse(const char *s, struct spiffe_id *out, char *why, size_t why_len);

/* spiffe_check() and spiffe_parse() for selector patterns. */
enum spiffe_err spiffe_pattern_check(const char *s, struct spiffe_pattern *out, size_t *offset);
int spiffe_pattern_parse(const char *s, struct spiffe_pattern *out, char *why, size_t why_len);

/*
 * Validates a bare trust domain name ("example.org", as in --trust-domain
 * and --bundle TD=FILE) by the same rules as the trust domain of an ID;
 * an empty name is SPIFFE_EMPTY_TRUST_DOMAIN.
 */
enum spiffe_err spiffe_td_check(const char *td, size_t *offset);

/* spiffe_td_check() as 0 or -EINVAL, with a message in why on failure. */
int spiffe_td_valid(const char *td, char *why, size_t why_len);

/* Whether id's trust domain is td, byte for byte. false if either is NULL. */
bool spiffe_in_trust_domain(const struct spiffe_id *id, const char *td);

/* Whether a parsed pattern matches a parsed ID. false if either is NULL. */
bool spiffe_pattern_match(const struct spiffe_pattern *pattern, const struct spiffe_id *id);

/*
 * Whether the ID string id matches the pattern string pattern; false when
 * either is not valid. Validate patterns once, with spiffe_pattern_parse(),
 * where a rejection can be reported.
 */
bool spiffe_match(const char *pattern, const char *id);

/*
 * The whole-trust-domain selector: whether the ID string id is valid and
 * belongs to trust domain td, its own ID ("spiffe://td") included.
 */
bool spiffe_match_trust_domain(const char *td, const char *id);

#endif /* FEDGUARD_SPIFFE_H */
