// SPDX-License-Identifier: Apache-2.0
/*
 * SPIFFE trust bundles (bundle.h). The JSON text is checked by
 * json_strict_parse() (grammar, duplicate member names), then the tree is
 * read by the SPIFFE Trust Domain and Bundle and X509-SVID specifications.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include "bundle.h"
#include "cleanup.h"
#include "json_strict.h"
#include "ssl_cleanup.h"
#include "svid.h"

enum {
	CAUSE_MAX = 256,    /* bytes of the cause part of a message */
	SUBJECT_SHOWN = 96, /* bytes of a certificate's subject in a message */
	DETAIL_MAX = 128,   /* bytes of what is wrong with a certificate */
};

static inline void json_putp(struct json_object **o)
{
	json_object_put(*o);
}

#define _cleanup_json_ __attribute__((cleanup(json_putp)))

/*
 * What a message is about: "bundle for 'TD'", and " in 'PATH'" when read
 * from a file.
 */
struct source {
	const char *td;
	const char *path; /* NULL for a buffer */
	char *why;
	size_t why_len;
};

__attribute__((format(printf, 3, 4))) static int fail(const struct source *src, int err,
						      const char *fmt, ...)
{
	char cause[CAUSE_MAX];
	va_list ap;

	if (!src->why_len)
		return err;
	va_start(ap, fmt);
	vsnprintf(cause, sizeof(cause), fmt, ap);
	va_end(ap);
	if (src->path)
		snprintf(src->why, src->why_len, "bundle for '%s' in '%s': %s", src->td, src->path,
			 cause);
	else
		snprintf(src->why, src->why_len, "bundle for '%s': %s", src->td, cause);
	return err;
}

/* fail() with "WHAT: strerror(errno)", returning -errno. */
static int fail_errno(const struct source *src, const char *what)
{
	int err = errno;

	return fail(src, -err, "%s: %s", what, strerror(err));
}

/* ---- base64 (RFC 4648 section 4, padded) and base64url (section 5, unpadded) ---- */

static bool base64_valid(const char *s, size_t n, size_t *pad)
{
	size_t p = 0;

	if (!n || n % 4)
		return false;
	if (s[n - 1] == '=')
		p = s[n - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < n - p; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/'))
			return false;
	}
	*pad = p;
	return true;
}

/* Decodes standard, padded base64 with nothing else (no line breaks). */
static int base64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len)
{
	_cleanup_free_ unsigned char *buf = NULL;
	size_t pad;
	int len;

	if (n > INT32_MAX || !base64_valid(s, n, &pad))
		return -EINVAL;
	buf = malloc(n / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	len = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n);
	if (len < 0 || (size_t)len < pad)
		return -EINVAL;
	*out_len = (size_t)len - pad;
	*out = take_ptr(buf);
	return 0;
}

/* base64 of n bytes, or with url set the unpadded base64url of RFC 7515. */
static char *base64_encode(const unsigned char *in, size_t n, bool url)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	size_t len;

	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	if (!url)
		return out;
	len = strlen(out);
	while (len && out[len - 1] == '=')
		out[--len] = '\0';
	for (char *c = out; *c; c++)
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
	return out;
}

/* ---- a certificate's public key as JWK parameters (RFC 7518 section 6) ---- */

/* The parameters of one key; the strings of x, y, n, e are owned. */
struct jwk {
	const char *kty; /* "EC" or "RSA" */
	const char *crv; /* EC: "P-256", "P-384" or "P-521" */
	char *x, *y;	 /* EC: the coordinates, each the full size of the field */
	char *n, *e;	 /* RSA: modulus and exponent, without leading zero bytes */
};

static void jwk_clear(struct jwk *k)
{
	free(k->x);
	free(k->y);
	free(k->n);
	free(k->e);
}

#define _cleanup_jwk_ __attribute__((cleanup(jwk_clear)))

static const struct {
	int nid;
	const char *crv;
	int size; /* bytes of a coordinate */
} ec_curves[] = {
	{NID_X9_62_prime256v1, "P-256", 32},
	{NID_secp384r1, "P-384", 48},
	{NID_secp521r1, "P-521", 66},
};

/* The JWK kty of a key, or NULL for a type JWK has no name for here. */
static const char *jwk_kty(const EVP_PKEY *pk)
{
	if (EVP_PKEY_is_a(pk, "EC"))
		return "EC";
	if (EVP_PKEY_is_a(pk, "RSA"))
		return "RSA";
	return NULL;
}

/* The base64url of a key's BIGNUM parameter, padded with zeros to size bytes (0: minimal). */
static int bn_param_b64url(const EVP_PKEY *pk, const char *param, int size, char **out)
{
	_cleanup_bignum_ BIGNUM *bn = NULL;
	_cleanup_free_ unsigned char *buf = NULL;
	int len;

	if (!EVP_PKEY_get_bn_param(pk, param, &bn))
		return -EINVAL;
	len = size ? size : BN_num_bytes(bn);
	buf = malloc(len ? (size_t)len : 1);
	if (!buf)
		return -ENOMEM;
	if (BN_bn2binpad(bn, buf, len) < 0)
		return -EINVAL;
	*out = base64_encode(buf, (size_t)len, true);
	return *out ? 0 : -ENOMEM;
}

static int jwk_ec(const EVP_PKEY *pk, struct jwk *k, char *cause, size_t cause_len)
{
	char group[64] = "";
	int nid;
	int r;

	EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL);
	nid = OBJ_txt2nid(group);
	for (size_t i = 0; i < sizeof(ec_curves) / sizeof(ec_curves[0]); i++) {
		if (ec_curves[i].nid != nid)
			continue;
		k->crv = ec_curves[i].crv;
		r = bn_param_b64url(pk, OSSL_PKEY_PARAM_EC_PUB_X, ec_curves[i].size, &k->x);
		if (!r)
			r = bn_param_b64url(pk, OSSL_PKEY_PARAM_EC_PUB_Y, ec_curves[i].size, &k->y);
		if (r)
			snprintf(cause, cause_len, "cannot read the EC public key");
		return r;
	}
	snprintf(cause, cause_len, "EC curve '%s' is not one of P-256, P-384, P-521",
		 group[0] ? group : "(explicit parameters)");
	return -EINVAL;
}

/* k for pk, or -EINVAL with the cause when JWK (here) cannot express pk. */
static int jwk_from_pkey(const EVP_PKEY *pk, struct jwk *k, char *cause, size_t cause_len)
{
	struct jwk tmp = {.kty = jwk_kty(pk)};
	int r;

	if (!tmp.kty) {
		snprintf(cause, cause_len, "key type %s is neither EC nor RSA",
			 EVP_PKEY_get0_type_name(pk));
		return -EINVAL;
	}
	if (!strcmp(tmp.kty, "EC")) {
		r = jwk_ec(pk, &tmp, cause, cause_len);
	} else {
		r = bn_param_b64url(pk, OSSL_PKEY_PARAM_RSA_N, 0, &tmp.n);
		if (!r)
			r = bn_param_b64url(pk, OSSL_PKEY_PARAM_RSA_E, 0, &tmp.e);
		if (r)
			snprintf(cause, cause_len, "cannot read the RSA public key");
	}
	if (r) {
		jwk_clear(&tmp);
		return r;
	}
	*k = tmp;
	return 0;
}

/* Whether cert says basicConstraints CA:TRUE (and its extensions decode). */
static bool cert_is_ca(X509 *cert)
{
	uint32_t flags = X509_get_extension_flags(cert);

	return (flags & EXFLAG_CA) && !(flags & EXFLAG_INVALID);
}

/* The checks of an authority: a CA whose key JWK can express, as k. */
static int authority_check(X509 *cert, struct jwk *k, char *cause, size_t cause_len)
{
	EVP_PKEY *pk;

	if (!cert_is_ca(cert)) {
		snprintf(cause, cause_len, "not a CA certificate (no basicConstraints CA:TRUE)");
		return -EINVAL;
	}
	pk = X509_get0_pubkey(cert);
	if (!pk) {
		snprintf(cause, cause_len, "the certificate's public key does not decode");
		return -EINVAL;
	}
	return jwk_from_pkey(pk, k, cause, cause_len);
}

/* ---- struct bundle ---- */

int bundle_new(const char *td, struct bundle **out)
{
	struct bundle *b;

	if (spiffe_td_valid(td, NULL, 0))
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->authorities = sk_X509_new_null();
	if (!b->authorities) {
		free(b);
		return -ENOMEM;
	}
	snprintf(b->td, sizeof(b->td), "%s", td);
	*out = b;
	return 0;
}

void bundle_free(struct bundle *b)
{
	if (!b)
		return;
	sk_X509_pop_free(b->authorities, X509_free);
	free(b);
}

/* Appends cert, taking a reference of the bundle's own. */
static int push_authority(struct bundle *b, X509 *cert)
{
	if (!sk_X509_push(b->authorities, cert))
		return -ENOMEM;
	X509_up_ref(cert);
	return 0;
}

/* Checks cert as an authority and appends it; else "'SUBJECT': CAUSE" in cause. */
static int add_checked(struct bundle *b, X509 *cert, char *cause, size_t cause_len)
{
	_cleanup_jwk_ struct jwk k = {0};
	char subject[SUBJECT_SHOWN], detail[DETAIL_MAX];
	int r;

	r = authority_check(cert, &k, detail, sizeof(detail));
	if (r) {
		X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
		snprintf(cause, cause_len, "'%s': %s", subject, detail);
		ERR_clear_error();
		return r;
	}
	return push_authority(b, cert);
}

int bundle_add_authority(struct bundle *b, X509 *cert, char *why, size_t why_len)
{
	char cause[CAUSE_MAX];
	int r;

	r = add_checked(b, cert, cause, sizeof(cause));
	if (r && why_len)
		snprintf(why, why_len, "certificate %s", cause);
	return r;
}

/* ---- the parser ---- */

/* Whether a JSON string is exactly lit, with no NUL inside. */
static bool json_str_eq(struct json_object *s, const char *lit)
{
	size_t n = strlen(lit);

	return json_object_is_type(s, json_type_string) &&
	       (size_t)json_object_get_string_len(s) == n &&
	       !memcmp(json_object_get_string(s), lit, n);
}

/* The certificate of keys[i].x5c, which holds exactly one, DER in base64. */
static int parse_x5c(const struct source *src, size_t i, struct json_object *key, X509 **out)
{
	_cleanup_free_ unsigned char *der = NULL;
	struct json_object *x5c, *elem;
	const unsigned char *p;
	size_t der_len, n;
	X509 *cert;
	int r;

	if (!json_object_object_get_ex(key, "x5c", &x5c))
		return fail(src, -EINVAL, "keys[%zu]: no member 'x5c' (the CA certificate)", i);
	if (!json_object_is_type(x5c, json_type_array))
		return fail(src, -EINVAL, "keys[%zu].x5c: not an array", i);
	n = json_object_array_length(x5c);
	if (n != 1)
		return fail(src, -EINVAL, "keys[%zu].x5c: %zu certificates, expected exactly one",
			    i, n);
	elem = json_object_array_get_idx(x5c, 0);
	if (!json_object_is_type(elem, json_type_string))
		return fail(src, -EINVAL, "keys[%zu].x5c[0]: not a string", i);
	r = base64_decode(json_object_get_string(elem), (size_t)json_object_get_string_len(elem),
			  &der, &der_len);
	if (r == -ENOMEM)
		return fail(src, r, "out of memory");
	if (r)
		return fail(src, r, "keys[%zu].x5c[0]: not valid base64 (standard, padded)", i);
	p = der;
	cert = d2i_X509(NULL, &p, (long)der_len);
	if (!cert)
		return fail(src, -EINVAL, "keys[%zu].x5c[0]: not a DER X.509 certificate", i);
	if (p != der + der_len) {
		X509_free(cert);
		return fail(src, -EINVAL, "keys[%zu].x5c[0]: %zu bytes after the DER certificate",
			    i, der_len - (size_t)(p - der));
	}
	*out = cert;
	return 0;
}

/* The key parameters that keys[i] states must be those of its certificate. */
static int check_jwk_params(const struct source *src, size_t i, struct json_object *key,
			    const struct jwk *k)
{
	const char *names[] = {"crv", "x", "y", "n", "e"};
	const char *want[] = {k->crv, k->x, k->y, k->n, k->e};
	struct json_object *v;

	for (size_t j = 0; j < sizeof(names) / sizeof(names[0]); j++) {
		if (!want[j] || !json_object_object_get_ex(key, names[j], &v))
			continue;
		if (!json_object_is_type(v, json_type_string))
			return fail(src, -EINVAL, "keys[%zu].%s: not a string", i, names[j]);
		if (!json_str_eq(v, want[j]))
			return fail(src, -EINVAL,
				    "keys[%zu].%s: does not match the certificate's public key", i,
				    names[j]);
	}
	return 0;
}

/* keys[i], an x509-svid key of type kty ("EC" or "RSA"), into b's authorities. */
static int parse_authority(const struct source *src, size_t i, struct json_object *key,
			   const char *kty, struct bundle *b)
{
	_cleanup_x509_ X509 *cert = NULL;
	_cleanup_jwk_ struct jwk k = {0};
	char cause[CAUSE_MAX];
	EVP_PKEY *pk;
	int r;

	r = parse_x5c(src, i, key, &cert);
	if (r)
		return r;
	if (!cert_is_ca(cert))
		return fail(src, -EINVAL,
			    "keys[%zu].x5c[0]: not a CA certificate (no basicConstraints CA:TRUE)",
			    i);
	pk = X509_get0_pubkey(cert);
	if (!pk)
		return fail(src, -EINVAL, "keys[%zu].x5c[0]: the public key does not decode", i);
	if (!jwk_kty(pk) || strcmp(jwk_kty(pk), kty))
		return fail(src, -EINVAL, "keys[%zu].kty: '%s', but the certificate's key is %s", i,
			    kty, EVP_PKEY_get0_type_name(pk));
	r = jwk_from_pkey(pk, &k, cause, sizeof(cause));
	if (r)
		return fail(src, r, "keys[%zu].x5c[0]: %s", i, cause);
	r = check_jwk_params(src, i, key, &k);
	if (r)
		return r;
	r = push_authority(b, cert);
	return r ? fail(src, r, "out of memory") : 0;
}

/*
 * keys[i]. Keys of another use, and x509-svid keys of a type JWK names but
 * fedguard does not know, are ignored whole, as the specification says.
 */
static int parse_key(const struct source *src, size_t i, struct json_object *key, struct bundle *b)
{
	struct json_object *use, *kty;

	if (!json_object_is_type(key, json_type_object))
		return fail(src, -EINVAL, "keys[%zu]: not an object", i);
	if (!json_object_object_get_ex(key, "use", &use))
		return fail(src, -EINVAL, "keys[%zu]: no member 'use'", i);
	if (!json_object_is_type(use, json_type_string))
		return fail(src, -EINVAL, "keys[%zu].use: not a string", i);
	if (!json_str_eq(use, "x509-svid")) {
		b->skipped++;
		return 0;
	}
	if (!json_object_object_get_ex(key, "kty", &kty))
		return fail(src, -EINVAL, "keys[%zu]: no member 'kty'", i);
	if (!json_object_is_type(kty, json_type_string))
		return fail(src, -EINVAL, "keys[%zu].kty: not a string", i);
	if (json_str_eq(kty, "EC"))
		return parse_authority(src, i, key, "EC", b);
	if (json_str_eq(kty, "RSA"))
		return parse_authority(src, i, key, "RSA", b);
	b->skipped++;
	return 0;
}

/* An optional integer member of the top level, at least min. */
static int parse_uint(const struct source *src, struct json_object *doc, const char *name,
		      uint64_t min, bool *has, uint64_t *val)
{
	const char *expected = min ? "a positive integer" : "a non-negative integer";
	struct json_object *v;

	if (!json_object_object_get_ex(doc, name, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return fail(src, -EINVAL, "%s: not an integer, expected %s", name, expected);
	if (json_object_get_int64(v) < 0 || json_object_get_uint64(v) < min)
		return fail(src, -EINVAL, "%s: %" PRId64 ", expected %s", name,
			    json_object_get_int64(v), expected);
	*has = true;
	*val = json_object_get_uint64(v);
	return 0;
}

static int parse_document(const struct source *src, const char *json, size_t len, struct bundle *b)
{
	_cleanup_json_ struct json_object *doc = NULL;
	struct json_object *keys;
	char cause[CAUSE_MAX];
	size_t n;
	int r;

	r = json_strict_parse(json, len, BUNDLE_DEPTH_MAX, &doc, cause, sizeof(cause));
	if (r)
		return r == -ENOMEM ? fail(src, r, "out of memory") : fail(src, r, "%s", cause);
	if (!json_object_is_type(doc, json_type_object))
		return fail(src, -EINVAL, "not a JSON object (a bundle is a JWK Set)");
	if (!json_object_object_get_ex(doc, "keys", &keys))
		return fail(src, -EINVAL, "no member 'keys'");
	if (!json_object_is_type(keys, json_type_array))
		return fail(src, -EINVAL, "keys: not an array");
	r = parse_uint(src, doc, "spiffe_sequence", 0, &b->has_sequence, &b->sequence);
	if (r)
		return r;
	r = parse_uint(src, doc, "spiffe_refresh_hint", 1, &b->has_refresh_hint, &b->refresh_hint);
	if (r)
		return r;
	n = json_object_array_length(keys);
	for (size_t i = 0; i < n; i++) {
		r = parse_key(src, i, json_object_array_get_idx(keys, i), b);
		if (r)
			return r;
	}
	b->revoked = n == 0;
	return 0;
}

/* The trust domain of src, which every message names: checked before anything else. */
static int check_td(const struct source *src)
{
	char cause[SPIFFE_WHY_MAX];

	if (!spiffe_td_valid(src->td, cause, sizeof(cause)))
		return 0;
	if (src->why_len)
		snprintf(src->why, src->why_len, "bundle for '%.*s': invalid trust domain name: %s",
			 SPIFFE_TRUST_DOMAIN_MAX, src->td ? src->td : "", cause);
	return -EINVAL;
}

static int parse_source(const struct source *src, const char *json, size_t len, struct bundle **out)
{
	_cleanup_bundle_ struct bundle *b = NULL;
	int r;

	if (len > BUNDLE_SIZE_MAX)
		return fail(src, -EFBIG, "%zu bytes, more than the limit of %d", len,
			    BUNDLE_SIZE_MAX);
	r = bundle_new(src->td, &b);
	if (r)
		return fail(src, r, "out of memory");
	r = parse_document(src, json, len, b);
	if (r) {
		ERR_clear_error();
		return r;
	}
	*out = take_ptr(b);
	return 0;
}

int bundle_parse(const char *td, const char *json, size_t len, struct bundle **out, char *why,
		 size_t why_len)
{
	const struct source src = {.td = td, .why = why, .why_len = why_len};
	int r;

	r = check_td(&src);
	if (r)
		return r;
	return parse_source(&src, json, len, out);
}

/* Reads a whole file (or pipe) of at most BUNDLE_SIZE_MAX bytes. */
static int read_file(const struct source *src, char **buf, size_t *len)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *data = NULL;
	size_t used = 0;
	ssize_t n;

	fd = open(src->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail_errno(src, "cannot open");
	data = malloc(BUNDLE_SIZE_MAX + 1);
	if (!data)
		return fail(src, -ENOMEM, "out of memory");
	while (used <= BUNDLE_SIZE_MAX) {
		n = read(fd, data + used, BUNDLE_SIZE_MAX + 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail_errno(src, "cannot read");
		if (!n)
			break;
		used += (size_t)n;
	}
	if (used > BUNDLE_SIZE_MAX)
		return fail(src, -EFBIG, "larger than the limit of %d bytes", BUNDLE_SIZE_MAX);
	*buf = take_ptr(data);
	*len = used;
	return 0;
}

int bundle_load_file(const char *td, const char *path, struct bundle **out, char *why,
		     size_t why_len)
{
	const struct source src = {.td = td, .path = path, .why = why, .why_len = why_len};
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = check_td(&src);
	if (r)
		return r;
	r = read_file(&src, &buf, &len);
	if (r)
		return r;
	return parse_source(&src, buf, len, out);
}

int bundle_from_pem_file(const char *td, const char *path, struct bundle **out, char *why,
			 size_t why_len)
{
	const struct source src = {.td = td, .why = why, .why_len = why_len};
	_cleanup_x509_stack_ STACK_OF(X509) *certs = NULL;
	_cleanup_bundle_ struct bundle *b = NULL;
	char cause[CAUSE_MAX];
	int r;

	r = check_td(&src);
	if (r)
		return r;
	r = svid_load_chain(path, &certs, cause, sizeof(cause));
	if (r)
		return fail(&src, r, "%s", cause);
	r = bundle_new(td, &b);
	if (r)
		return fail(&src, r, "out of memory");
	for (int i = 0; i < sk_X509_num(certs); i++) {
		r = add_checked(b, sk_X509_value(certs, i), cause, sizeof(cause));
		if (r)
			return fail(&src, r, "'%s': certificate %d %s", path, i + 1, cause);
	}
	*out = take_ptr(b);
	return 0;
}

/* ---- the writer ---- */

/* Adds name: v to o, taking v (NULL: out of memory). */
static int add_member(struct json_object *o, const char *name, struct json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_object_add(o, name, v)) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

/* The base64 of cert's DER encoding. */
static int cert_base64(X509 *cert, char **out)
{
	_cleanup_free_ unsigned char *der = NULL;
	unsigned char *p;
	int len;

	len = i2d_X509(cert, NULL);
	if (len <= 0)
		return -EINVAL;
	der = malloc((size_t)len);
	if (!der)
		return -ENOMEM;
	p = der;
	if (i2d_X509(cert, &p) != len)
		return -EINVAL;
	*out = base64_encode(der, (size_t)len, false);
	return *out ? 0 : -ENOMEM;
}

/* use, kty and the key's parameters, in that order. */
static int add_key_params(struct json_object *key, const struct jwk *k)
{
	const char *members[][2] = {
		{"use", "x509-svid"}, {"kty", k->kty}, {"crv", k->crv}, {"x", k->x},
		{"y", k->y},	      {"n", k->n},     {"e", k->e},
	};

	for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++)
		if (members[i][1] &&
		    add_member(key, members[i][0], json_object_new_string(members[i][1])))
			return -ENOMEM;
	return 0;
}

/* Appends v to array a, taking v (NULL: out of memory). */
static int add_element(struct json_object *a, struct json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_array_add(a, v)) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

/* The JWK of an authority: use, kty, its key's parameters, x5c. */
static int key_to_json(X509 *cert, struct json_object **out)
{
	_cleanup_json_ struct json_object *key = NULL;
	_cleanup_jwk_ struct jwk k = {0};
	_cleanup_free_ char *b64 = NULL;
	struct json_object *x5c;
	char cause[CAUSE_MAX];
	int r;

	r = authority_check(cert, &k, cause, sizeof(cause));
	if (!r)
		r = cert_base64(cert, &b64);
	if (r)
		return r;
	key = json_object_new_object();
	if (!key || add_key_params(key, &k))
		return -ENOMEM;
	x5c = json_object_new_array();
	r = add_member(key, "x5c", x5c);
	if (!r)
		r = add_element(x5c, json_object_new_string(b64));
	if (r)
		return r;
	*out = take_ptr(key);
	return 0;
}

static int bundle_to_json(const struct bundle *b, struct json_object **out)
{
	_cleanup_json_ struct json_object *doc = json_object_new_object();
	struct json_object *keys, *key;
	int r;

	if (!doc)
		return -ENOMEM;
	keys = json_object_new_array();
	r = add_member(doc, "keys", keys);
	for (int i = 0; !r && i < sk_X509_num(b->authorities); i++) {
		r = key_to_json(sk_X509_value(b->authorities, i), &key);
		if (!r)
			r = add_element(keys, key);
	}
	if (!r && b->has_sequence)
		r = add_member(doc, "spiffe_sequence", json_object_new_uint64(b->sequence));
	if (!r && b->has_refresh_hint)
		r = add_member(doc, "spiffe_refresh_hint", json_object_new_uint64(b->refresh_hint));
	if (r)
		return r;
	*out = take_ptr(doc);
	return 0;
}

int bundle_write(const struct bundle *b, char **json_out)
{
	_cleanup_json_ struct json_object *doc = NULL;
	const char *text;
	char *out;
	int r;

	if ((sk_X509_num(b->authorities) == 0) != b->revoked)
		return -EINVAL;
	if (b->has_refresh_hint && !b->refresh_hint)
		return -EINVAL;
	r = bundle_to_json(b, &doc);
	if (r) {
		ERR_clear_error();
		return r;
	}
	text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
							   JSON_C_TO_STRING_SPACED |
							   JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text || asprintf(&out, "%s\n", text) < 0)
		return -ENOMEM;
	*json_out = out;
	return 0;
}

/* ---- struct bundle_set: a sorted array, for lookups by bisection ---- */

struct bundle_set {
	struct bundle **v; /* sorted by td, bytewise */
	size_t n;
	size_t cap;
};

int bundle_set_new(struct bundle_set **out)
{
	struct bundle_set *set = calloc(1, sizeof(*set));

	if (!set)
		return -ENOMEM;
	*out = set;
	return 0;
}

void bundle_set_free(struct bundle_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++)
		bundle_free(set->v[i]);
	free(set->v);
	free(set);
}

/* Where td is, or would go: sets *found when it is there. */
static size_t set_find(const struct bundle_set *set, const char *td, bool *found)
{
	size_t lo = 0, hi = set->n;

	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(set->v[mid]->td, td);

		if (!c) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bundle_set_replace(struct bundle_set *set, const char *td, struct bundle *b)
{
	struct bundle **v;
	bool found;
	size_t i;

	if (!td || !b || strcmp(td, b->td))
		return -EINVAL;
	i = set_find(set, td, &found);
	if (found && set->v[i] == b)
		return 0;
	if (found) {
		bundle_free(set->v[i]);
		set->v[i] = b;
		return 0;
	}
	if (set->n == set->cap) {
		size_t cap = set->cap ? 2 * set->cap : 8;

		v = reallocarray(set->v, cap, sizeof(*v));
		if (!v)
			return -ENOMEM;
		set->v = v;
		set->cap = cap;
	}
	memmove(&set->v[i + 1], &set->v[i], (set->n - i) * sizeof(*set->v));
	set->v[i] = b;
	set->n++;
	return 0;
}

int bundle_set_delete(struct bundle_set *set, const char *td)
{
	bool found;
	size_t i;

	if (!td)
		return -EINVAL;
	i = set_find(set, td, &found);
	if (!found)
		return -ENOENT;
	bundle_free(set->v[i]);
	memmove(&set->v[i], &set->v[i + 1], (set->n - i - 1) * sizeof(*set->v));
	set->n--;
	return 0;
}

const struct bundle *bundle_set_lookup(const struct bundle_set *set, const char *td)
{
	bool found;
	size_t i;

	if (!td)
		return NULL;
	i = set_find(set, td, &found);
	return found ? set->v[i] : NULL;
}

size_t bundle_set_count(const struct bundle_set *set)
{
	return set->n;
}

const struct bundle *bundle_set_at(const struct bundle_set *set, size_t i)
{
	return i < set->n ? set->v[i] : NULL;
}
