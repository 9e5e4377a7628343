// SPDX-License-Identifier: Apache-2.0
/*
 * Tests of agent/bundle.c and agent/json_strict.c with certificates made by
 * OpenSSL in the test: CAs of ECDSA P-256, P-384 and RSA 2048, a leaf, and
 * keys JWK has no name for here. Bundles written by bundle_write() are read
 * back; the key parameters it writes are checked against the key itself by
 * another route (the encoded public point, the modulus); then a table of
 * documents, each with the outcome and the words its message must contain.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "bundle.h"
#include "cleanup.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define TD	      "example.org"
#define PREFIX	      "bundle for '" TD "': "

/* The certificates of every test, made anew in each test's process. */
static struct {
	EVP_PKEY *ec_key, *rsa_key, *p384_key, *leaf_key, *ed_key, *k1_key;
	X509 *ec_ca;   /* ECDSA P-256 */
	X509 *rsa_ca;  /* RSA 2048 */
	X509 *p384_ca; /* ECDSA P-384 */
	X509 *leaf;    /* P-256, CA:FALSE */
	X509 *ed_ca;   /* Ed25519: JWK's kty OKP, which fedguard does not take */
	X509 *k1_ca;   /* EC secp256k1: a curve without a JWK name here */
} F;

/* ------------------------------------------------------------ certificates */

static void add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	cr_assert_not_null(ext, "extension %d '%s'", nid, value);
	cr_assert(X509_add_ext(x, ext, -1));
	X509_EXTENSION_free(ext);
}

/* A self-signed certificate of key; bc is its basicConstraints, NULL for none. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *bc, const char *ku)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *name;

	cr_assert_not_null(x);
	cr_assert(X509_set_version(x, X509_VERSION_3));
	cr_assert(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++));
	cr_assert(X509_gmtime_adj(X509_getm_notBefore(x), -60));
	cr_assert(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
	cr_assert(X509_set_pubkey(x, key));
	name = X509_get_subject_name(x);
	cr_assert(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn,
					     -1, -1, 0));
	cr_assert(X509_set_issuer_name(x, name));
	if (bc)
		add_ext(x, NID_basic_constraints, bc);
	add_ext(x, NID_key_usage, ku);
	add_ext(x, NID_subject_alt_name, "URI:spiffe://" TD);
	/* Ed25519 signs without a separate digest. */
	cr_assert(X509_sign(x, key, EVP_PKEY_is_a(key, "ED25519") ? NULL : EVP_sha256()));
	return x;
}

static X509 *make_ca(EVP_PKEY *key, const char *cn)
{
	return make_cert(key, cn, "critical,CA:TRUE", "critical,keyCertSign,cRLSign");
}

static void fixture_init(void)
{
	F.ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	F.rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	F.p384_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	F.leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	cr_assert(F.ec_key && F.rsa_key && F.p384_key && F.leaf_key, "key generation");
	F.ec_ca = make_ca(F.ec_key, "ec root");
	F.rsa_ca = make_ca(F.rsa_key, "rsa root");
	F.p384_ca = make_ca(F.p384_key, "p384 root");
	F.leaf = make_cert(F.leaf_key, "leaf", "critical,CA:FALSE", "critical,digitalSignature");
	F.ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	F.k1_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
	cr_assert(F.ed_key && F.k1_key, "key generation");
	F.ed_ca = make_ca(F.ed_key, "ed25519 root");
	F.k1_ca = make_ca(F.k1_key, "secp256k1 root");
}

static void fixture_fini(void)
{
	X509_free(F.ec_ca);
	X509_free(F.rsa_ca);
	X509_free(F.p384_ca);
	X509_free(F.leaf);
	X509_free(F.ed_ca);
	X509_free(F.k1_ca);
	EVP_PKEY_free(F.ec_key);
	EVP_PKEY_free(F.rsa_key);
	EVP_PKEY_free(F.p384_key);
	EVP_PKEY_free(F.leaf_key);
	EVP_PKEY_free(F.ed_key);
	EVP_PKEY_free(F.k1_key);
}

TestSuite(bundle, .init = fixture_init, .fini = fixture_fini, .timeout = 30);

/* ---------------------------------------------------------------- helpers */

static char *b64(const unsigned char *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);

	cr_assert_not_null(out);
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

/* base64url (unpadded) to bytes, through the standard alphabet. */
static unsigned char *b64url_decode(const char *s, size_t *n)
{
	size_t len = strlen(s), padded = (len + 3) / 4 * 4;
	_cleanup_free_ char *std = calloc(1, padded + 1);
	unsigned char *out = malloc(padded);
	int r;

	cr_assert(std && out);
	for (size_t i = 0; i < padded; i++)
		std[i] = i >= len ? '=' : s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	r = EVP_DecodeBlock(out, (unsigned char *)std, (int)padded);
	cr_assert_geq(r, 0, "base64url '%s'", s);
	*n = (size_t)r - (padded - len);
	return out;
}

/* The DER of cert, with extra zero bytes after it. */
static unsigned char *cert_der(X509 *cert, size_t extra, size_t *n)
{
	int len = i2d_X509(cert, NULL);
	unsigned char *der = calloc(1, (size_t)len + extra), *p = der;

	cr_assert(len > 0 && der);
	cr_assert_eq(i2d_X509(cert, &p), len);
	*n = (size_t)len + extra;
	return der;
}

static char *cert_b64(X509 *cert, size_t extra)
{
	size_t n;
	_cleanup_free_ unsigned char *der = cert_der(cert, extra, &n);

	return b64(der, n);
}

/* The DER of key's SubjectPublicKeyInfo: a real DER object that is no certificate. */
static char *spki_b64(EVP_PKEY *key)
{
	unsigned char *der = NULL;
	int len = i2d_PUBKEY(key, &der);
	char *out;

	cr_assert_gt(len, 0);
	out = b64(der, (size_t)len);
	OPENSSL_free(der);
	return out;
}

static char *jwk_param_of(EVP_PKEY *key, const char *name)
{
	_cleanup_bundle_ struct bundle *b = NULL;
	_cleanup_free_ char *json = NULL;
	X509 *ca = make_ca(key, "param source");
	struct json_object *doc, *keys, *v;
	char *out;

	cr_assert_eq(bundle_new(TD, &b), 0);
	cr_assert_eq(bundle_add_authority(b, ca, NULL, 0), 0);
	X509_free(ca);
	cr_assert_eq(bundle_write(b, &json), 0);
	doc = json_tokener_parse(json);
	cr_assert(json_object_object_get_ex(doc, "keys", &keys));
	cr_assert(json_object_object_get_ex(json_object_array_get_idx(keys, 0), name, &v));
	out = strdup(json_object_get_string(v));
	json_object_put(doc);
	return out;
}

static struct bundle *parse_ok(const char *json, size_t len)
{
	struct bundle *b = NULL;
	char why[BUNDLE_WHY_MAX] = "";
	int r;

	r = bundle_parse(TD, json, len, &b, why, sizeof(why));
	cr_assert_eq(r, 0, "bundle_parse: %d, %s\n%s", r, why, json);
	cr_assert_str_empty(why, "why written on success: %s", why);
	cr_assert_not_null(b);
	return b;
}

static char *write_ok(const struct bundle *b)
{
	char *json = NULL;
	int r;

	r = bundle_write(b, &json);
	cr_assert_eq(r, 0, "bundle_write: %d", r);
	cr_assert_not_null(json);
	return json;
}

static void assert_same_certs(const struct bundle *b, X509 *const *certs, int n)
{
	cr_assert_eq(sk_X509_num(b->authorities), n, "%d authorities, expected %d",
		     sk_X509_num(b->authorities), n);
	for (int i = 0; i < n; i++)
		cr_assert_eq(X509_cmp(sk_X509_value(b->authorities, i), certs[i]), 0,
			     "authority %d is not the certificate written", i);
}

static char *tmp_file(const char *content, size_t len)
{
	char *path = strdup("/tmp/fg-bundle-XXXXXX");
	int fd;

	cr_assert_not_null(path);
	fd = mkstemp(path);
	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	cr_assert_eq(write(fd, content, len), (ssize_t)len);
	close(fd);
	return path;
}

/* ------------------------------------------------------------ round trips */

Test(bundle, written_bundle_reads_back_the_same)
{
	_cleanup_bundle_ struct bundle *b = NULL, *back = NULL;
	_cleanup_free_ char *json = NULL, *again = NULL, *rewritten = NULL;
	X509 *certs[] = {F.ec_ca, F.rsa_ca, F.p384_ca};

	cr_assert_eq(bundle_new(TD, &b), 0);
	for (size_t i = 0; i < ARRAY_SIZE(certs); i++)
		cr_assert_eq(bundle_add_authority(b, certs[i], NULL, 0), 0);
	b->has_sequence = true;
	b->sequence = 42;
	b->has_refresh_hint = true;
	b->refresh_hint = 300;
	json = write_ok(b);
	back = parse_ok(json, strlen(json));

	cr_assert_str_eq(back->td, TD);
	assert_same_certs(back, certs, ARRAY_SIZE(certs));
	cr_assert(back->has_sequence && back->sequence == 42);
	cr_assert(back->has_refresh_hint && back->refresh_hint == 300);
	cr_assert(!back->revoked);
	cr_assert_eq(back->skipped, 0);

	/* Deterministic: the same bundle, and the bundle read back, give the same bytes. */
	again = write_ok(b);
	rewritten = write_ok(back);
	cr_assert_str_eq(again, json);
	cr_assert_str_eq(rewritten, json);
}

Test(bundle, sequence_and_hint_are_optional_and_64_bit)
{
	_cleanup_bundle_ struct bundle *b = NULL, *back = NULL, *big = NULL;
	_cleanup_free_ char *json = NULL;
	const char *max = "{\"keys\": [], \"spiffe_sequence\": 18446744073709551615}";

	cr_assert_eq(bundle_new(TD, &b), 0);
	cr_assert_eq(bundle_add_authority(b, F.rsa_ca, NULL, 0), 0);
	json = write_ok(b);
	cr_assert_null(strstr(json, "spiffe_"), "unset members written:\n%s", json);
	back = parse_ok(json, strlen(json));
	cr_assert(!back->has_sequence && !back->has_refresh_hint);
	assert_same_certs(back, &F.rsa_ca, 1);

	big = parse_ok(max, strlen(max));
	cr_assert(big->has_sequence);
	cr_assert_eq(big->sequence, UINT64_MAX);
}

/* What the writer states about a key is the key, read by another route. */
Test(bundle, written_key_parameters_are_the_certificate_key)
{
	EVP_PKEY *ec[] = {F.ec_key, F.p384_key};
	const char *crv[] = {"P-256", "P-384"};
	const size_t coord[] = {32, 48};

	for (size_t i = 0; i < ARRAY_SIZE(ec); i++) {
		_cleanup_free_ char *c = jwk_param_of(ec[i], "crv");
		_cleanup_free_ char *x = jwk_param_of(ec[i], "x");
		_cleanup_free_ char *y = jwk_param_of(ec[i], "y");
		_cleanup_free_ unsigned char *xb = NULL, *yb = NULL;
		unsigned char point[1 + 2 * 66];
		size_t xn, yn, point_len;

		cr_assert_str_eq(c, crv[i]);
		xb = b64url_decode(x, &xn);
		yb = b64url_decode(y, &yn);
		cr_assert_eq(xn, coord[i], "x of %s: %zu bytes", crv[i], xn);
		cr_assert_eq(yn, coord[i], "y of %s: %zu bytes", crv[i], yn);
		cr_assert(EVP_PKEY_get_octet_string_param(ec[i], OSSL_PKEY_PARAM_PUB_KEY, point,
							  sizeof(point), &point_len));
		cr_assert_eq(point_len, 1 + 2 * coord[i]);
		cr_assert_eq(point[0], 0x04, "not an uncompressed point");
		cr_assert_arr_eq(point + 1, xb, xn, "x of %s is not the public point's", crv[i]);
		cr_assert_arr_eq(point + 1 + xn, yb, yn, "y of %s is not the public point's",
				 crv[i]);
	}
}

Test(bundle, written_rsa_parameters_are_the_certificate_key)
{
	_cleanup_free_ char *n = jwk_param_of(F.rsa_key, "n");
	_cleanup_free_ char *e = jwk_param_of(F.rsa_key, "e");
	_cleanup_free_ unsigned char *nb = NULL;
	BIGNUM *want = NULL, *got;
	size_t len;

	cr_assert_str_eq(e, "AQAB", "e of 65537 is 'AQAB', got '%s'", e);
	nb = b64url_decode(n, &len);
	cr_assert_eq(len, 256, "n of RSA 2048 has 256 bytes, got %zu", len);
	cr_assert_neq(nb[0], 0, "n has a leading zero byte");
	got = BN_bin2bn(nb, (int)len, NULL);
	cr_assert(EVP_PKEY_get_bn_param(F.rsa_key, OSSL_PKEY_PARAM_RSA_N, &want));
	cr_assert_eq(BN_cmp(got, want), 0, "n is not the modulus");
	BN_free(got);
	BN_free(want);
}

Test(bundle, written_json_is_plain_jwks)
{
	_cleanup_bundle_ struct bundle *b = NULL;
	_cleanup_free_ char *json = NULL, *x5c = cert_b64(F.ec_ca, 0);
	struct json_object *doc, *keys, *key, *v;

	cr_assert_eq(bundle_new(TD, &b), 0);
	cr_assert_eq(bundle_add_authority(b, F.ec_ca, NULL, 0), 0);
	json = write_ok(b);
	cr_assert_null(strstr(json, "\\/"), "escaped slashes:\n%s", json);
	cr_assert_eq(json[strlen(json) - 1], '\n');
	doc = json_tokener_parse(json);
	cr_assert(json_object_object_get_ex(doc, "keys", &keys));
	cr_assert_eq(json_object_array_length(keys), 1);
	key = json_object_array_get_idx(keys, 0);
	cr_assert(json_object_object_get_ex(key, "use", &v));
	cr_assert_str_eq(json_object_get_string(v), "x509-svid");
	cr_assert(json_object_object_get_ex(key, "kty", &v));
	cr_assert_str_eq(json_object_get_string(v), "EC");
	cr_assert(!json_object_object_get_ex(key, "kid", NULL), "x509-svid keys carry no kid");
	cr_assert(json_object_object_get_ex(key, "x5c", &v));
	cr_assert_eq(json_object_array_length(v), 1);
	cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 0)), x5c);
	json_object_put(doc);
}

Test(bundle, empty_keys_revoke_the_trust_domain)
{
	_cleanup_bundle_ struct bundle *b = NULL, *back = NULL, *fresh = NULL;
	_cleanup_free_ char *json = NULL;
	char *out = NULL;
	const char *doc = "{\"keys\": [], \"spiffe_sequence\": 9}";

	b = parse_ok(doc, strlen(doc));
	cr_assert(b->revoked);
	cr_assert_eq(sk_X509_num(b->authorities), 0);
	json = write_ok(b);
	back = parse_ok(json, strlen(json));
	cr_assert(back->revoked && back->sequence == 9);

	/* An empty key set is written only when asked for. */
	cr_assert_eq(bundle_new(TD, &fresh), 0);
	cr_assert_eq(bundle_write(fresh, &out), -EINVAL);
	fresh->revoked = true;
	cr_assert_eq(bundle_add_authority(fresh, F.ec_ca, NULL, 0), 0);
	cr_assert_eq(bundle_write(fresh, &out), -EINVAL, "revoked, with an authority");
	fresh->revoked = false;
	fresh->has_refresh_hint = true;
	cr_assert_eq(bundle_write(fresh, &out), -EINVAL, "refresh hint 0");
	cr_assert_null(out, "json_out written on failure");
}

/* ------------------------------------------------------ document table */

/*
 * A document with placeholders: @EC@, @RSA@, @P384@ (CAs), @LEAF@ (not a
 * CA), @ED@ (Ed25519 CA), @K1@ (secp256k1 CA), @SPKI@ (DER, not a
 * certificate), @TRAIL@ (the EC CA with 3 bytes after it), each in base64;
 * @ECX@, @ECY@ (the EC CA's point) and @LEAFX@ (another key's x) in
 * base64url.
 */
struct doc_case {
	const char *name;
	const char *doc;
	int r;
	int authorities;      /* on success */
	unsigned int skipped; /* on success */
	bool revoked;	      /* on success */
	const char *mentions; /* on failure: words of the message after PREFIX */
};

#define EC_KEY_DOC(extra) "{\"use\": \"x509-svid\", \"kty\": \"EC\", " extra "\"x5c\": [\"@EC@\"]}"
#define EC_KEY		  EC_KEY_DOC("")

static const struct doc_case doc_cases[] = {
	/* valid */
	{"one EC key", "{\"keys\": [" EC_KEY "]}", 0, 1, 0, false, NULL},
	{"EC key with its parameters",
	 "{\"keys\": [" EC_KEY_DOC("\"crv\": \"P-256\", \"x\": \"@ECX@\", \"y\": \"@ECY@\", ") "]}",
	 0, 1, 0, false, NULL},
	{"RSA and P-384 keys, unknown members everywhere",
	 "{\"spiffe_sequence\": 7, \"spiffe_refresh_hint\": 60, \"ext\": {\"a\": [1, null]},"
	 " \"keys\": [{\"use\": \"x509-svid\", \"kty\": \"RSA\", \"x5c\": [\"@RSA@\"],"
	 " \"alg\": \"RS256\", \"more\": {\"x\": [true]}},"
	 " {\"kty\": \"EC\", \"x5c\": [\"@P384@\"], \"use\": \"x509-svid\"}]}",
	 0, 2, 0, false, NULL},
	{"empty keys: revoked", "{\"keys\": []}", 0, 0, 0, true, NULL},
	{"jwt-svid key ignored, one valid key remains",
	 "{\"keys\": [{\"use\": \"jwt-svid\", \"kty\": \"EC\", \"kid\": \"k1\", \"crv\": \"P-256\","
	 " \"x\": \"AAAA\", \"y\": \"AAAA\"}, " EC_KEY "]}",
	 0, 1, 1, false, NULL},
	{"use is case-sensitive", "{\"keys\": [{\"use\": \"X509-SVID\"}, " EC_KEY "]}", 0, 1, 1,
	 false, NULL},
	{"only jwt-svid keys: no authority, not revoked",
	 "{\"keys\": [{\"use\": \"jwt-svid\", \"kty\": \"RSA\"}]}", 0, 0, 1, false, NULL},
	{"unknown kty ignored whole",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"OKP\", \"x5c\": [\"@ED@\"]},"
	 " {\"use\": \"x509-svid\", \"kty\": \"oct\", \"x5c\": \"junk\"}, " EC_KEY "]}",
	 0, 1, 2, false, NULL},
	{"sequence 0", "{\"keys\": [], \"spiffe_sequence\": 0}", 0, 0, 0, true, NULL},
	{"whitespace around", " \r\n\t{\"keys\": []}\n\n", 0, 0, 0, true, NULL},

	/* the document */
	{"not JSON", "{\"keys\": [}", -EINVAL, 0, 0, false,
	 "not JSON: unexpected '}' at offset 10"},
	{"empty document", "", -EINVAL, 0, 0, false, "not JSON: unexpected end"},
	{"single quotes", "{'keys': []}", -EINVAL, 0, 0, false, "not JSON"},
	{"NaN", "{\"keys\": [], \"x\": NaN}", -EINVAL, 0, 0, false, "not JSON: unexpected 'N'"},
	{"data after the object", "{\"keys\": []} {}", -EINVAL, 0, 0, false,
	 "data after the end of the document"},
	{"not an object: array", "[{\"keys\": []}]", -EINVAL, 0, 0, false, "not a JSON object"},
	{"not an object: string", "\"keys\"", -EINVAL, 0, 0, false, "not a JSON object"},
	{"not an object: null", "null", -EINVAL, 0, 0, false, "not a JSON object"},
	{"too deep", "{\"keys\": [], \"x\": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}", -EINVAL, 0, 0,
	 false, "nesting deeper than 16 levels"},
	{"deep enough", "{\"keys\": [], \"x\": [[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]}", 0, 0, 0, true,
	 NULL},
	{"duplicate keys at the top", "{\"keys\": [], \"keys\": [" EC_KEY "]}", -EINVAL, 0, 0,
	 false, "duplicate member 'keys' at offset 13"},
	{"duplicate keys, one escaped", "{\"keys\": [" EC_KEY "], \"k\\u0065ys\": []}", -EINVAL, 0,
	 0, false, "duplicate member 'keys'"},
	{"duplicate use in a key",
	 "{\"keys\": [{\"use\": \"jwt-svid\", \"use\": \"x509-svid\", \"kty\": \"EC\","
	 " \"x5c\": [\"@EC@\"]}]}",
	 -EINVAL, 0, 0, false, "keys[0]: duplicate member 'use'"},
	{"duplicate x5c in the second key",
	 "{\"keys\": [" EC_KEY ", {\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"@EC@\"],"
	 " \"x5c\": [\"@RSA@\"]}]}",
	 -EINVAL, 0, 0, false, "keys[1]: duplicate member 'x5c'"},
	{"duplicate sequence", "{\"keys\": [], \"spiffe_sequence\": 1, \"spiffe_sequence\": 2}",
	 -EINVAL, 0, 0, false, "duplicate member 'spiffe_sequence'"},

	/* keys */
	{"keys missing", "{\"spiffe_sequence\": 1}", -EINVAL, 0, 0, false, "no member 'keys'"},
	{"keys not an array", "{\"keys\": {}}", -EINVAL, 0, 0, false, "keys: not an array"},
	{"keys null", "{\"keys\": null}", -EINVAL, 0, 0, false, "keys: not an array"},
	{"a key not an object", "{\"keys\": [" EC_KEY ", 1]}", -EINVAL, 0, 0, false,
	 "keys[1]: not an object"},
	{"use missing", "{\"keys\": [{\"kty\": \"EC\", \"x5c\": [\"@EC@\"]}]}", -EINVAL, 0, 0,
	 false, "keys[0]: no member 'use'"},
	{"use not a string", "{\"keys\": [{\"use\": 1}]}", -EINVAL, 0, 0, false,
	 "keys[0].use: not a string"},
	{"kty missing", "{\"keys\": [{\"use\": \"x509-svid\", \"x5c\": [\"@EC@\"]}]}", -EINVAL, 0,
	 0, false, "keys[0]: no member 'kty'"},
	{"kty not a string", "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": [], \"x5c\": []}]}",
	 -EINVAL, 0, 0, false, "keys[0].kty: not a string"},
	{"x5c missing", "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\"}]}", -EINVAL, 0, 0,
	 false, "keys[0]: no member 'x5c'"},
	{"x5c not an array",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": \"@EC@\"}]}", -EINVAL, 0,
	 0, false, "keys[0].x5c: not an array"},
	{"x5c empty", "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": []}]}",
	 -EINVAL, 0, 0, false, "keys[0].x5c: 0 certificates, expected exactly one"},
	{"x5c with two certificates",
	 "{\"keys\": [" EC_KEY ", {\"use\": \"x509-svid\", \"kty\": \"EC\","
	 " \"x5c\": [\"@EC@\", \"@RSA@\"]}]}",
	 -EINVAL, 0, 0, false, "keys[1].x5c: 2 certificates, expected exactly one"},
	{"x5c element not a string",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [1]}]}", -EINVAL, 0, 0,
	 false, "keys[0].x5c[0]: not a string"},
	{"bad base64",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"MII*\"]}]}", -EINVAL, 0,
	 0, false, "keys[0].x5c[0]: not valid base64"},
	{"base64url alphabet",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"MI-_\"]}]}", -EINVAL, 0,
	 0, false, "keys[0].x5c[0]: not valid base64"},
	{"base64 without padding",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"QUJDRA\"]}]}", -EINVAL,
	 0, 0, false, "keys[0].x5c[0]: not valid base64"},
	{"base64 with a line break",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"MIIB\\nMIIB\"]}]}",
	 -EINVAL, 0, 0, false, "keys[0].x5c[0]: not valid base64"},
	{"empty string", "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"\"]}]}",
	 -EINVAL, 0, 0, false, "keys[0].x5c[0]: not valid base64"},
	{"DER that is no certificate",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"@SPKI@\"]}]}", -EINVAL,
	 0, 0, false, "keys[0].x5c[0]: not a DER X.509 certificate"},
	{"bytes after the certificate",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"@TRAIL@\"]}]}", -EINVAL,
	 0, 0, false, "keys[0].x5c[0]: 3 bytes after the DER certificate"},
	{"not a CA",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"@LEAF@\"]}]}", -EINVAL,
	 0, 0, false, "keys[0].x5c[0]: not a CA certificate"},
	{"kty RSA, key EC",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"RSA\", \"x5c\": [\"@EC@\"]}]}", -EINVAL,
	 0, 0, false, "keys[0].kty: 'RSA', but the certificate's key is EC"},
	{"kty EC, key RSA",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"@RSA@\"]}]}", -EINVAL,
	 0, 0, false, "keys[0].kty: 'EC', but the certificate's key is RSA"},
	{"kty EC, key Ed25519",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"@ED@\"]}]}", -EINVAL, 0,
	 0, false, "keys[0].kty: 'EC', but the certificate's key is ED25519"},
	{"EC curve without a JWK name",
	 "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"@K1@\"]}]}", -EINVAL, 0,
	 0, false, "keys[0].x5c[0]: EC curve 'secp256k1' is not one of P-256, P-384, P-521"},
	{"x of another key", "{\"keys\": [" EC_KEY_DOC("\"x\": \"@LEAFX@\", ") "]}", -EINVAL, 0, 0,
	 false, "keys[0].x: does not match the certificate's public key"},
	{"crv of another curve", "{\"keys\": [" EC_KEY_DOC("\"crv\": \"P-384\", ") "]}", -EINVAL, 0,
	 0, false, "keys[0].crv: does not match the certificate's public key"},
	{"y not a string", "{\"keys\": [" EC_KEY_DOC("\"y\": 5, ") "]}", -EINVAL, 0, 0, false,
	 "keys[0].y: not a string"},

	/* spiffe_sequence, spiffe_refresh_hint */
	{"negative sequence", "{\"keys\": [], \"spiffe_sequence\": -1}", -EINVAL, 0, 0, false,
	 "spiffe_sequence: -1, expected a non-negative integer"},
	{"float sequence", "{\"keys\": [], \"spiffe_sequence\": 1.5}", -EINVAL, 0, 0, false,
	 "spiffe_sequence: not an integer"},
	{"integral float sequence", "{\"keys\": [], \"spiffe_sequence\": 1.0}", -EINVAL, 0, 0,
	 false, "spiffe_sequence: not an integer"},
	{"exponent sequence", "{\"keys\": [], \"spiffe_sequence\": 1e3}", -EINVAL, 0, 0, false,
	 "spiffe_sequence: not an integer"},
	{"string sequence", "{\"keys\": [], \"spiffe_sequence\": \"5\"}", -EINVAL, 0, 0, false,
	 "spiffe_sequence: not an integer"},
	{"null sequence", "{\"keys\": [], \"spiffe_sequence\": null}", -EINVAL, 0, 0, false,
	 "spiffe_sequence: not an integer"},
	{"sequence beyond 64 bits", "{\"keys\": [], \"spiffe_sequence\": 18446744073709551616}",
	 -EINVAL, 0, 0, false, "not JSON: integer beyond 64 bits"},
	{"refresh hint 0", "{\"keys\": [], \"spiffe_refresh_hint\": 0}", -EINVAL, 0, 0, false,
	 "spiffe_refresh_hint: 0, expected a positive integer"},
	{"negative refresh hint", "{\"keys\": [], \"spiffe_refresh_hint\": -60}", -EINVAL, 0, 0,
	 false, "spiffe_refresh_hint: -60, expected a positive integer"},
	{"string refresh hint", "{\"keys\": [], \"spiffe_refresh_hint\": \"60\"}", -EINVAL, 0, 0,
	 false, "spiffe_refresh_hint: not an integer"},
};

struct var {
	const char *name;
	char *value;
};

/* doc with every @NAME@ replaced by its value. */
static char *expand(const char *doc, const struct var *vars, size_t n_vars)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	cr_assert_not_null(f);
	for (const char *p = doc; *p; p++) {
		const char *end = *p == '@' ? strchr(p + 1, '@') : NULL;
		size_t i;

		for (i = 0; end && i < n_vars; i++)
			if (strlen(vars[i].name) == (size_t)(end - p - 1) &&
			    !memcmp(vars[i].name, p + 1, (size_t)(end - p - 1)))
				break;
		if (!end || i == n_vars) {
			fputc(*p, f);
			continue;
		}
		fputs(vars[i].value, f);
		p = end;
	}
	fclose(f);
	return out;
}

static void check_case(const struct doc_case *c, const char *doc)
{
	_cleanup_bundle_ struct bundle *b = NULL;
	char why[BUNDLE_WHY_MAX] = "";
	int r;

	r = bundle_parse(TD, doc, strlen(doc), &b, why, sizeof(why));
	cr_expect_eq(r, c->r, "%s: %d, expected %d (%s)", c->name, r, c->r, why);
	if (r != c->r)
		return;
	if (r) {
		cr_expect_null(b, "%s: out written on failure", c->name);
		cr_expect(!strncmp(why, PREFIX, strlen(PREFIX)), "%s: message '%s'", c->name, why);
		cr_expect_not_null(strstr(why, c->mentions), "%s: message '%s' does not say '%s'",
				   c->name, why, c->mentions);
		return;
	}
	cr_expect_str_empty(why, "%s: why written on success", c->name);
	cr_expect_eq(sk_X509_num(b->authorities), c->authorities, "%s: %d authorities", c->name,
		     sk_X509_num(b->authorities));
	cr_expect_eq(b->skipped, c->skipped, "%s: %u skipped", c->name, b->skipped);
	cr_expect_eq(b->revoked, c->revoked, "%s: revoked %d", c->name, b->revoked);
}

Test(bundle, document_table)
{
	struct var vars[] = {
		{"EC", cert_b64(F.ec_ca, 0)},
		{"RSA", cert_b64(F.rsa_ca, 0)},
		{"P384", cert_b64(F.p384_ca, 0)},
		{"LEAF", cert_b64(F.leaf, 0)},
		{"ED", cert_b64(F.ed_ca, 0)},
		{"K1", cert_b64(F.k1_ca, 0)},
		{"SPKI", spki_b64(F.ec_key)},
		{"TRAIL", cert_b64(F.ec_ca, 3)},
		{"ECX", jwk_param_of(F.ec_key, "x")},
		{"ECY", jwk_param_of(F.ec_key, "y")},
		{"LEAFX", jwk_param_of(F.leaf_key, "x")},
	};

	for (size_t i = 0; i < ARRAY_SIZE(doc_cases); i++) {
		_cleanup_free_ char *doc = expand(doc_cases[i].doc, vars, ARRAY_SIZE(vars));

		check_case(&doc_cases[i], doc);
	}
	for (size_t i = 0; i < ARRAY_SIZE(vars); i++)
		free(vars[i].value);
}

/* ---------------------------------------------------------------- limits */

/* {"keys": [], "pad": "xxx..."} of exactly len bytes. */
static char *padded_doc(size_t len)
{
	const char *head = "{\"keys\": [], \"pad\": \"", *tail = "\"}";
	char *doc = malloc(len + 1);

	cr_assert_not_null(doc);
	memset(doc, 'x', len);
	memcpy(doc, head, strlen(head));
	memcpy(doc + len - strlen(tail), tail, strlen(tail));
	doc[len] = '\0';
	return doc;
}

Test(bundle, size_limit)
{
	_cleanup_free_ char *at_limit = padded_doc(BUNDLE_SIZE_MAX);
	_cleanup_free_ char *over = padded_doc(BUNDLE_SIZE_MAX + 1);
	_cleanup_bundle_ struct bundle *ok = parse_ok(at_limit, BUNDLE_SIZE_MAX);
	struct bundle *b = NULL;
	char why[BUNDLE_WHY_MAX] = "";

	cr_assert(ok->revoked);
	cr_assert_eq(bundle_parse(TD, over, BUNDLE_SIZE_MAX + 1, &b, why, sizeof(why)), -EFBIG);
	cr_assert_null(b);
	cr_assert_str_eq(why, PREFIX "1048577 bytes, more than the limit of 1048576");
}

Test(bundle, nul_bytes_and_the_length)
{
	const char doc[] = "{\"keys\": []}\0{\"keys\": 1}";
	const char in_name[] = "{\"keys\": [], \"keys\\u0000x\": 1}";
	struct bundle *b = NULL;
	char why[BUNDLE_WHY_MAX] = "";

	/* Only len bytes are read: the document ends before the NUL. */
	bundle_free(parse_ok(doc, strlen(doc)));
	cr_assert_eq(bundle_parse(TD, doc, sizeof(doc) - 1, &b, why, sizeof(why)), -EINVAL);
	cr_assert_str_eq(why, PREFIX "not JSON: data after the end of the document at offset 12");
	/* json-c would cut the name at the NUL, and see "keys" twice. */
	cr_assert_eq(bundle_parse(TD, in_name, strlen(in_name), &b, why, sizeof(why)), -EINVAL);
	cr_assert_str_eq(why, PREFIX "not JSON: member name with a NUL character at offset 13");
	cr_assert_null(b);
}

Test(bundle, trust_domain_name_is_checked)
{
	const char *doc = "{\"keys\": []}";
	struct bundle *b = NULL;
	char why[BUNDLE_WHY_MAX] = "";

	cr_assert_eq(bundle_parse("Example.org", doc, strlen(doc), &b, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "bundle for 'Example.org': invalid trust domain name"), "%s",
			   why);
	cr_assert_eq(bundle_parse("spiffe://example.org", doc, strlen(doc), &b, NULL, 0), -EINVAL);
	cr_assert_eq(bundle_new("", &b), -EINVAL);
	cr_assert_null(b);
}

/* ------------------------------------------------------------------ files */

Test(bundle, load_file)
{
	_cleanup_bundle_ struct bundle *b = NULL, *back = NULL;
	_cleanup_free_ char *json = NULL, *path = NULL, *bad = NULL, *big = NULL;
	_cleanup_free_ char *big_doc = padded_doc(BUNDLE_SIZE_MAX + 1);
	char why[BUNDLE_WHY_MAX] = "", want[BUNDLE_WHY_MAX];
	struct bundle *none = NULL;

	cr_assert_eq(bundle_new(TD, &b), 0);
	cr_assert_eq(bundle_add_authority(b, F.p384_ca, NULL, 0), 0);
	json = write_ok(b);
	path = tmp_file(json, strlen(json));
	cr_assert_eq(bundle_load_file(TD, path, &back, why, sizeof(why)), 0, "%s", why);
	assert_same_certs(back, &F.p384_ca, 1);

	bad = tmp_file("{\"keys\": 1}", 11);
	cr_assert_eq(bundle_load_file(TD, bad, &none, why, sizeof(why)), -EINVAL);
	snprintf(want, sizeof(want), "bundle for '%s' in '%s': keys: not an array", TD, bad);
	cr_assert_str_eq(why, want);

	big = tmp_file(big_doc, BUNDLE_SIZE_MAX + 1);
	cr_assert_eq(bundle_load_file(TD, big, &none, why, sizeof(why)), -EFBIG);
	cr_assert_not_null(strstr(why, "larger than the limit of 1048576 bytes"), "%s", why);

	unlink(path);
	cr_assert_eq(bundle_load_file(TD, path, &none, why, sizeof(why)), -ENOENT);
	cr_assert_not_null(strstr(why, "cannot open: No such file"), "%s", why);
	cr_assert_null(none);
	unlink(bad);
	unlink(big);
}

static char *pem_of(X509 *const *certs, size_t n, EVP_PKEY *key)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	cr_assert_not_null(f);
	for (size_t i = 0; i < n; i++) {
		cr_assert(PEM_write_X509(f, certs[i]));
		if (i == 0 && key)
			cr_assert(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
	}
	fclose(f);
	return out;
}

static int from_pem(const char *pem, char *why, size_t why_len, struct bundle **out)
{
	_cleanup_free_ char *path = tmp_file(pem, strlen(pem));
	int r = bundle_from_pem_file(TD, path, out, why, why_len);

	unlink(path);
	return r;
}

Test(bundle, from_pem_file)
{
	X509 *cas[] = {F.ec_ca, F.rsa_ca}, *with_leaf[] = {F.ec_ca, F.leaf};
	_cleanup_free_ char *good = pem_of(cas, 2, F.ec_key);
	_cleanup_free_ char *leaf = pem_of(with_leaf, 2, NULL);
	_cleanup_bundle_ struct bundle *b = NULL;
	struct bundle *none = NULL;
	char why[BUNDLE_WHY_MAX] = "";

	/* The private key between the certificates is skipped. */
	cr_assert_eq(from_pem(good, why, sizeof(why), &b), 0, "%s", why);
	assert_same_certs(b, cas, 2);
	cr_assert(!b->revoked);

	cr_assert_eq(from_pem(leaf, why, sizeof(why), &none), -EINVAL);
	cr_assert(!strncmp(why, PREFIX "'/tmp/fg-bundle-", strlen(PREFIX "'/tmp/fg-bundle-")), "%s",
		  why);
	cr_assert_not_null(strstr(why, "': certificate 2 '/CN=leaf': not a CA certificate"), "%s",
			   why);
	cr_assert_eq(from_pem("", why, sizeof(why), &none), -ENODATA);
	cr_assert_not_null(strstr(why, "no PEM certificate"), "%s", why);
	cr_assert_eq(from_pem("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", why,
			      sizeof(why), &none),
		     -EBADMSG);
	cr_assert_not_null(strstr(why, "certificate 1 does not decode"), "%s", why);
	cr_assert_eq(bundle_from_pem_file(TD, "/nonexistent/ca.pem", &none, why, sizeof(why)),
		     -ENOENT);
	cr_assert_null(none);
}

/* ------------------------------------------------------------ authorities */

Test(bundle, add_authority_checks_the_certificate)
{
	_cleanup_bundle_ struct bundle *b = NULL;
	X509 *no_bc = make_cert(F.ec_key, "no constraints", NULL, "critical,keyCertSign"), *own;
	char why[BUNDLE_WHY_MAX] = "";

	cr_assert_eq(bundle_new(TD, &b), 0);
	cr_assert_eq(bundle_add_authority(b, F.leaf, why, sizeof(why)), -EINVAL);
	cr_assert_str_eq(why, "certificate '/CN=leaf': not a CA certificate (no basicConstraints "
			      "CA:TRUE)");
	cr_assert_eq(bundle_add_authority(b, no_bc, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "not a CA certificate"), "%s", why);
	cr_assert_eq(bundle_add_authority(b, F.ed_ca, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "key type ED25519 is neither EC nor RSA"), "%s", why);
	cr_assert_eq(bundle_add_authority(b, F.k1_ca, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "EC curve 'secp256k1'"), "%s", why);
	cr_assert_eq(sk_X509_num(b->authorities), 0);

	X509_free(no_bc);

	/* The bundle holds a reference of its own: the caller's may go. */
	own = make_ca(F.ec_key, "owned");
	cr_assert_eq(bundle_add_authority(b, own, NULL, 0), 0);
	X509_free(own);
	cr_assert_eq(sk_X509_num(b->authorities), 1);
	cr_assert(X509_check_ca(sk_X509_value(b->authorities, 0)));
}

/* ------------------------------------------------------------ bundle_set */

static struct bundle *bundle_of(const char *td, X509 *ca)
{
	struct bundle *b = NULL;

	cr_assert_eq(bundle_new(td, &b), 0);
	cr_assert_eq(bundle_add_authority(b, ca, NULL, 0), 0);
	return b;
}

Test(bundle, set_keeps_trust_domains_apart)
{
	_cleanup_bundle_set_ struct bundle_set *set = NULL;
	struct bundle *a = bundle_of("a.example", F.ec_ca), *b = bundle_of("b.example", F.rsa_ca);
	struct bundle *a2 = bundle_of("a.example", F.p384_ca);

	cr_assert_eq(bundle_set_new(&set), 0);
	cr_assert_eq(bundle_set_replace(set, "b.example", b), 0);
	cr_assert_eq(bundle_set_replace(set, "a.example", a), 0);
	/* Never under another trust domain's name; the caller keeps the bundle. */
	cr_assert_eq(bundle_set_replace(set, "b.example", a2), -EINVAL);
	cr_assert_eq(bundle_set_lookup(set, "b.example"), b);
	cr_assert_eq(bundle_set_count(set), 2);
	cr_assert_str_eq(bundle_set_at(set, 0)->td, "a.example");
	cr_assert_str_eq(bundle_set_at(set, 1)->td, "b.example");
	cr_assert_null(bundle_set_at(set, 2));

	cr_assert_eq(bundle_set_replace(set, "a.example", a2), 0);
	cr_assert_eq(bundle_set_lookup(set, "a.example"), a2);
	cr_assert_eq(bundle_set_count(set), 2);
	cr_assert_eq(bundle_set_replace(set, "a.example", a2), 0, "replacing with itself");
	cr_assert_null(bundle_set_lookup(set, "c.example"));
	cr_assert_null(bundle_set_lookup(set, "a.exampl"));

	cr_assert_eq(bundle_set_delete(set, "a.example"), 0);
	cr_assert_eq(bundle_set_delete(set, "a.example"), -ENOENT);
	cr_assert_null(bundle_set_lookup(set, "a.example"));
	cr_assert_eq(bundle_set_lookup(set, "b.example"), b);
	cr_assert_eq(bundle_set_count(set), 1);
}
