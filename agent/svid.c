// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "cleanup.h"
#include "ssl_cleanup.h"
#include "svid.h"

static const struct {
	const char *name;
	const char *text;
} svid_reasons[] = {
	[SVID_OK] = {"ok", "valid X.509-SVID"},
	[SVID_EMPTY_CHAIN] = {"empty-chain", "no certificate"},
	[SVID_NO_URI_SAN] = {"no-uri-san", "the leaf has no URI SAN"},
	[SVID_MANY_URI_SANS] = {"many-uri-sans", "the leaf has more than one URI SAN"},
	[SVID_BAD_SPIFFE_ID] = {"bad-spiffe-id", "the leaf's URI SAN is not a valid SPIFFE ID"},
	[SVID_NO_PATH] = {"no-path", "the leaf's SPIFFE ID has no path"},
	[SVID_LEAF_IS_CA] = {"leaf-is-ca", "the leaf is a CA certificate"},
	[SVID_NO_KEY_USAGE] = {"no-key-usage", "the leaf has no keyUsage"},
	[SVID_KEY_USAGE_NOT_CRITICAL] = {"key-usage-not-critical",
					 "the leaf's keyUsage is not critical"},
	[SVID_NO_DIGITAL_SIGNATURE] = {"no-digital-signature",
				       "the leaf's keyUsage lacks digitalSignature"},
	[SVID_LEAF_CAN_SIGN] = {"leaf-can-sign", "the leaf's keyUsage allows signing certificates"},
	[SVID_NOT_YET_VALID] = {"not-yet-valid", "the leaf is not valid yet"},
	[SVID_EXPIRED] = {"expired", "the leaf has expired"},
	[SVID_NO_BUNDLE] = {"no-bundle", "no bundle for the leaf's trust domain"},
	[SVID_SIGNER_NOT_CA] = {"signer-not-ca", "a certificate after the leaf is not a CA"},
	[SVID_UNTRUSTED] = {"untrusted", "no path to an authority of the leaf's trust domain"},
	[SVID_BAD_SIGNATURE] = {"bad-signature", "a signature does not verify"},
	[SVID_SIGNER_EXPIRED] = {"signer-expired", "a signing certificate is not valid now"},
	[SVID_PATH_INVALID] = {"path-invalid", "path validation failed"},
	[SVID_ID_MISMATCH] = {"id-mismatch", "not the expected SPIFFE ID"},
};

_Static_assert(sizeof(svid_reasons) / sizeof(svid_reasons[0]) == SVID_REASON_MAX,
	       "every enum svid_reason value needs a name and a text");

const char *svid_strreason(enum svid_reason reason)
{
	if ((unsigned int)reason >= SVID_REASON_MAX)
		return "unknown SVID rejection reason";
	return svid_reasons[reason].text;
}

const char *svid_reason_name(enum svid_reason reason)
{
	if ((unsigned int)reason >= SVID_REASON_MAX)
		return "unknown";
	return svid_reasons[reason].name;
}

/* Writes a message into why (when there is room for one) and returns ret. */
__attribute__((format(printf, 4, 5))) static int svid_fail(int ret, char *why, size_t why_len,
							   const char *fmt, ...)
{
	va_list ap;

	if (why_len) {
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return ret;
}

/* The reason of OpenSSL's latest error, and the error queue emptied. */
static const char *svid_ossl_error(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *s = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return s ? s : "unknown OpenSSL error";
}

/* A distinguished name as "CN=...,O=...", for messages. */
static void svid_name(const X509_NAME *name, char *buf, size_t len)
{
	_cleanup_bio_ BIO *bio = BIO_new(BIO_s_mem());
	int n;

	snprintf(buf, len, "(unprintable name)");
	if (!bio || X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0)
		return;
	n = BIO_read(bio, buf, (int)len - 1);
	if (n > 0)
		buf[n] = '\0';
	else
		snprintf(buf, len, "(empty name)");
}

static void svid_subject(X509 *cert, char *buf, size_t len)
{
	svid_name(X509_get_subject_name(cert), buf, len);
}

/* Copies s (n bytes, any bytes) into buf for a message: \xNN for the unprintable. */
static void svid_quote(const unsigned char *s, size_t n, char *buf, size_t len)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 5 < len; i++) {
		if (s[i] >= 0x20 && s[i] < 0x7f)
			buf[o++] = (char)s[i];
		else
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", s[i]);
	}
	if (i < n && o + 4 <= len)
		o += (size_t)snprintf(buf + o, len - o, "...");
	buf[o] = '\0';
}

/* An ASN1_TIME as a time_t: -EINVAL when it cannot be read. */
static int svid_asn1_time(const ASN1_TIME *t, time_t *out)
{
	struct tm tm;
	time_t v;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return -EINVAL;
	v = timegm(&tm);
	if (v == (time_t)-1)
		return -EINVAL;
	*out = v;
	return 0;
}

/* t as "2024-01-31T12:00:00Z". */
static const char *svid_fmt_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "@%lld", (long long)t);
	return buf;
}

/*
 * The single URI SAN of cert, borrowed from *names (which the caller frees).
 * -ENOENT none, -ENOTUNIQ more than one, -EBADMSG a subjectAltName that does
 * not decode or is repeated.
 */
static int svid_uri_san(X509 *cert, GENERAL_NAMES **names, const ASN1_IA5STRING **uri)
{
	const ASN1_IA5STRING *found = NULL;
	GENERAL_NAMES *gens;
	int crit, i;

	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
	if (!gens) {
		ERR_clear_error();
		return crit == -1 ? -ENOENT : -EBADMSG;
	}
	*names = gens;
	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);

		if (gn->type != GEN_URI)
			continue;
		if (found)
			return -ENOTUNIQ;
		found = gn->d.uniformResourceIdentifier;
	}
	if (!found)
		return -ENOENT;
	*uri = found;
	return 0;
}

/*
 * Copies a URI SAN into buf as a C string: -EINVAL when it holds a NUL
 * (which would hide what follows it), -ENOSPC when it does not fit.
 */
static int svid_uri_copy(const ASN1_IA5STRING *uri, char *buf, size_t len)
{
	const unsigned char *data = ASN1_STRING_get0_data(uri);
	int n = ASN1_STRING_length(uri);

	if (n < 0 || memchr(data, '\0', (size_t)n))
		return -EINVAL;
	if ((size_t)n >= len)
		return -ENOSPC;
	memcpy(buf, data, (size_t)n);
	buf[n] = '\0';
	return 0;
}

int svid_cert_spiffe_id(X509 *cert, char *buf, size_t len)
{
	_cleanup_general_names_ GENERAL_NAMES *names = NULL;
	const ASN1_IA5STRING *uri = NULL;
	char id[SPIFFE_ID_MAX + 1];
	int r;

	if (!cert || !buf)
		return -EINVAL;
	r = svid_uri_san(cert, &names, &uri);
	if (r == -EBADMSG)
		return -EINVAL;
	if (r)
		return r;
	r = svid_uri_copy(uri, id, sizeof(id));
	if (r)
		return -EINVAL; /* longer than any SPIFFE ID, or with a NUL */
	if (spiffe_parse(id, NULL, NULL, 0))
		return -EINVAL;
	if (strlen(id) >= len)
		return -ENOSPC;
	memcpy(buf, id, strlen(id) + 1);
	return 0;
}

/*
 * Leaf rule 1: exactly one URI SAN, a SPIFFE ID with a path. Copies it into
 * id (SPIFFE_ID_MAX + 1 bytes) and returns SVID_OK, or a reason.
 */
static int svid_check_leaf_id(X509 *leaf, char *id, char *why, size_t why_len)
{
	_cleanup_general_names_ GENERAL_NAMES *names = NULL;
	const ASN1_IA5STRING *uri = NULL;
	char msg[SPIFFE_WHY_MAX], shown[160];
	struct spiffe_id parsed;
	int r;

	r = svid_uri_san(leaf, &names, &uri);
	if (r == -ENOENT)
		return svid_fail(
			SVID_NO_URI_SAN, why, why_len,
			"leaf has no URI SAN: an X.509-SVID carries its SPIFFE ID as exactly one URI SAN");
	if (r == -ENOTUNIQ)
		return svid_fail(SVID_MANY_URI_SANS, why, why_len,
				 "leaf has more than one URI SAN: an X.509-SVID has exactly one");
	if (r)
		return svid_fail(
			SVID_PATH_INVALID, why, why_len,
			"leaf has a subjectAltName extension that does not decode or is repeated");
	svid_quote(ASN1_STRING_get0_data(uri), (size_t)ASN1_STRING_length(uri), shown,
		   sizeof(shown));
	if (svid_uri_copy(uri, id, SPIFFE_ID_MAX + 1))
		return svid_fail(SVID_BAD_SPIFFE_ID, why, why_len,
				 "leaf URI SAN '%s' is not a SPIFFE ID: %s", shown,
				 ASN1_STRING_length(uri) > SPIFFE_ID_MAX
					 ? "longer than the maximum of 2048 bytes"
					 : "it contains a NUL byte");
	if (spiffe_parse(id, &parsed, msg, sizeof(msg)))
		return svid_fail(SVID_BAD_SPIFFE_ID, why, why_len,
				 "leaf URI SAN '%s' is not a SPIFFE ID: %s", shown, msg);
	if (!parsed.path_len)
		return svid_fail(
			SVID_NO_PATH, why, why_len,
			"leaf SPIFFE ID '%s' has no path: it names the trust domain, not a workload",
			id);
	return SVID_OK;
}

/* The signing bits of a key usage, for messages. */
static const char *svid_signing_usage(uint32_t ku)
{
	if ((ku & KU_KEY_CERT_SIGN) && (ku & KU_CRL_SIGN))
		return "keyCertSign and cRLSign";
	return ku & KU_KEY_CERT_SIGN ? "keyCertSign" : "cRLSign";
}

/* Leaf rules 2 and 3: not a CA, keyUsage critical with digitalSignature only for signing. */
static int svid_check_leaf_usage(X509 *leaf, const char *id, char *why, size_t why_len)
{
	uint32_t flags = X509_get_extension_flags(leaf);
	uint32_t ku = X509_get_key_usage(leaf);
	X509_EXTENSION *ext;

	if (flags & EXFLAG_INVALID)
		return svid_fail(SVID_PATH_INVALID, why, why_len,
				 "leaf '%s' has an extension that does not decode or is repeated",
				 id);
	if ((flags & EXFLAG_BCONS) && (flags & EXFLAG_CA))
		return svid_fail(
			SVID_LEAF_IS_CA, why, why_len,
			"leaf '%s' is a CA certificate (basicConstraints CA:TRUE): an X.509-SVID leaf must be CA:FALSE",
			id);
	if (!(flags & EXFLAG_KUSAGE))
		return svid_fail(
			SVID_NO_KEY_USAGE, why, why_len,
			"leaf '%s' has no keyUsage extension: an X.509-SVID must have one, with digitalSignature",
			id);
	ext = X509_get_ext(leaf, X509_get_ext_by_NID(leaf, NID_key_usage, -1));
	if (!ext || !X509_EXTENSION_get_critical(ext))
		return svid_fail(SVID_KEY_USAGE_NOT_CRITICAL, why, why_len,
				 "leaf '%s' has a keyUsage extension not marked critical", id);
	if (ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN))
		return svid_fail(
			SVID_LEAF_CAN_SIGN, why, why_len,
			"leaf '%s' has keyUsage %s: a leaf must not sign certificates or CRLs", id,
			svid_signing_usage(ku));
	if (!(ku & KU_DIGITAL_SIGNATURE))
		return svid_fail(SVID_NO_DIGITAL_SIGNATURE, why, why_len,
				 "leaf '%s' lacks keyUsage digitalSignature", id);
	return SVID_OK;
}

/* Leaf rule 4: notBefore <= now < notAfter. */
static int svid_check_leaf_time(X509 *leaf, const char *id, time_t now, char *why, size_t why_len)
{
	char t1[32], t2[32];
	time_t nb, na;

	if (svid_asn1_time(X509_get0_notBefore(leaf), &nb) ||
	    svid_asn1_time(X509_get0_notAfter(leaf), &na))
		return svid_fail(SVID_PATH_INVALID, why, why_len,
				 "leaf '%s' has a validity period that does not decode", id);
	if (nb > now)
		return svid_fail(SVID_NOT_YET_VALID, why, why_len,
				 "leaf '%s' is not valid before %s (now is %s)", id,
				 svid_fmt_time(nb, t1, sizeof(t1)),
				 svid_fmt_time(now, t2, sizeof(t2)));
	if (na <= now)
		return svid_fail(SVID_EXPIRED, why, why_len, "leaf '%s' expired at %s (now is %s)",
				 id, svid_fmt_time(na, t1, sizeof(t1)),
				 svid_fmt_time(now, t2, sizeof(t2)));
	return SVID_OK;
}

/*
 * The authorities of trust domain td in trust, into *roots (NULL or empty
 * when it lists none): SVID_OK, SVID_NO_BUNDLE or -EINVAL (listed twice).
 */
static int svid_find_roots(const struct svid_trust *trust, const char *td, STACK_OF(X509) **roots,
			   char *why, size_t why_len)
{
	const struct svid_td_roots *found = NULL;
	size_t i;

	for (i = 0; trust && i < trust->n; i++) {
		if (!trust->domains[i].td || strcmp(trust->domains[i].td, td))
			continue;
		if (found)
			return svid_fail(-EINVAL, why, why_len,
					 "trust domain '%s' is listed twice in the trust given",
					 td);
		found = &trust->domains[i];
	}
	if (!found)
		return svid_fail(SVID_NO_BUNDLE, why, why_len, "no bundle for trust domain '%s'",
				 td);
	if (sk_X509_num(found->roots) <= 0)
		return svid_fail(SVID_NO_BUNDLE, why, why_len,
				 "the bundle of trust domain '%s' has no X.509 authorities", td);
	*roots = found->roots;
	return SVID_OK;
}

/* Rule 3: every certificate after the leaf is a CA with keyCertSign. */
static int svid_check_signers(STACK_OF(X509) *chain, char *why, size_t why_len)
{
	char subject[256];
	int i;

	for (i = 1; i < sk_X509_num(chain); i++) {
		X509 *c = sk_X509_value(chain, i);
		uint32_t flags = X509_get_extension_flags(c);

		svid_subject(c, subject, sizeof(subject));
		if (!(flags & EXFLAG_CA))
			return svid_fail(
				SVID_SIGNER_NOT_CA, why, why_len,
				"certificate %d of the chain ('%s') is not a CA (no basicConstraints CA:TRUE): only signing certificates may follow the leaf",
				i, subject);
		if (!(flags & EXFLAG_KUSAGE) || !(X509_get_key_usage(c) & KU_KEY_CERT_SIGN))
			return svid_fail(
				SVID_SIGNER_NOT_CA, why, why_len,
				"certificate %d of the chain ('%s') has no keyUsage keyCertSign: it cannot sign certificates",
				i, subject);
	}
	return SVID_OK;
}

/* The reason of an X509_verify_cert() error. */
static enum svid_reason svid_path_reason(int err)
{
	switch (err) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_UNTRUSTED:
		return SVID_UNTRUSTED;
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
	case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
		return SVID_BAD_SIGNATURE;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return SVID_SIGNER_EXPIRED;
	case X509_V_ERR_INVALID_CA:
		return SVID_SIGNER_NOT_CA;
	default:
		return SVID_PATH_INVALID;
	}
}

/* The rejection of a failed X509_verify_cert(), with its place in the path. */
static int svid_path_fail(X509_STORE_CTX *ctx, const char *td, int nroots, char *why,
			  size_t why_len)
{
	int err = X509_STORE_CTX_get_error(ctx);
	int depth = X509_STORE_CTX_get_error_depth(ctx);
	X509 *cur = X509_STORE_CTX_get_current_cert(ctx);
	enum svid_reason reason = svid_path_reason(err);
	char subject[256] = "unknown certificate", issuer[256] = "unknown issuer";

	if (cur) {
		svid_subject(cur, subject, sizeof(subject));
		svid_name(X509_get_issuer_name(cur), issuer, sizeof(issuer));
	}
	if (reason == SVID_UNTRUSTED)
		return svid_fail(
			reason, why, why_len,
			"no path to the %d X.509 authorit%s of trust domain '%s': %s, at certificate %d ('%s', issued by '%s')",
			nroots, nroots == 1 ? "y" : "ies", td, X509_verify_cert_error_string(err),
			depth, subject, issuer);
	return svid_fail(
		reason, why, why_len,
		"path validation against trust domain '%s' failed at certificate %d ('%s'): %s", td,
		depth, subject, X509_verify_cert_error_string(err));
}

/* A store whose only anchors are roots. */
static X509_STORE *svid_store(STACK_OF(X509) *roots)
{
	_cleanup_x509_store_ X509_STORE *store = X509_STORE_new();
	int i;

	if (!store)
		return NULL;
	for (i = 0; i < sk_X509_num(roots); i++)
		if (!X509_STORE_add_cert(store, sk_X509_value(roots, i)))
			return NULL;
	return take_ptr(store);
}

/* The earliest notAfter over a validated path. */
static int svid_path_not_after(STACK_OF(X509) *path, time_t *out)
{
	time_t earliest = 0, t;
	int i;

	for (i = 0; i < sk_X509_num(path); i++) {
		if (svid_asn1_time(X509_get0_notAfter(sk_X509_value(path, i)), &t))
			return -EINVAL;
		if (i == 0 || t < earliest)
			earliest = t;
	}
	if (!sk_X509_num(path))
		return -EINVAL;
	*out = earliest;
	return 0;
}

/*
 * Rule 4: RFC 5280 path validation of the leaf at now, chain's certificates
 * untrusted, roots the only anchors. On SVID_OK, *not_after is the earliest
 * notAfter of the path.
 */
static int svid_verify_path(STACK_OF(X509) *chain, const char *td, STACK_OF(X509) *roots,
			    time_t now, time_t *not_after, char *why, size_t why_len)
{
	_cleanup_x509_store_ X509_STORE *store = svid_store(roots);
	_cleanup_x509_store_ctx_ X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509_VERIFY_PARAM *param;
	int ok;

	if (!store || !ctx || !X509_STORE_CTX_init(ctx, store, sk_X509_value(chain, 0), chain)) {
		ERR_clear_error();
		return svid_fail(-ENOMEM, why, why_len,
				 "out of memory building the store of trust domain '%s'", td);
	}
	/*
	 * Every authority of a bundle is an anchor, self-signed or not
	 * (PARTIAL_CHAIN); X509_STRICT adds RFC 5280's profile checks.
	 */
	param = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT | X509_V_FLAG_PARTIAL_CHAIN);
	X509_VERIFY_PARAM_set_time(param, now);
	X509_VERIFY_PARAM_set_depth(param, SVID_DEPTH_MAX);
	ok = X509_verify_cert(ctx);
	if (ok <= 0 && X509_STORE_CTX_get_error(ctx) == X509_V_OK) {
		ERR_clear_error();
		return svid_fail(-ENOMEM, why, why_len,
				 "path validation against trust domain '%s' could not run: %s", td,
				 svid_ossl_error());
	}
	if (ok <= 0) {
		ERR_clear_error();
		return svid_path_fail(ctx, td, sk_X509_num(roots), why, why_len);
	}
	if (svid_path_not_after(X509_STORE_CTX_get0_chain(ctx), not_after))
		return svid_fail(
			SVID_PATH_INVALID, why, why_len,
			"a certificate of the validated path has a notAfter that does not decode");
	return SVID_OK;
}

/* The leaf's rules, in the order of svid_verify()'s comment. */
static int svid_check_leaf(X509 *leaf, time_t now, char *id, char *why, size_t why_len)
{
	int r;

	r = svid_check_leaf_id(leaf, id, why, why_len);
	if (r)
		return r;
	r = svid_check_leaf_usage(leaf, id, why, why_len);
	if (r)
		return r;
	return svid_check_leaf_time(leaf, id, now, why, why_len);
}

int svid_verify(STACK_OF(X509) *chain, const struct svid_trust *trust, const char *expected_id,
		time_t now, struct svid_result *out, char *why, size_t why_len)
{
	char id[SPIFFE_ID_MAX + 1], msg[SPIFFE_WHY_MAX];
	STACK_OF(X509) *roots = NULL;
	struct svid_result res = {};
	struct spiffe_id parsed;
	int r;

	if (!chain)
		return svid_fail(-EINVAL, why, why_len, "no chain given");
	if (expected_id && spiffe_parse(expected_id, NULL, msg, sizeof(msg)))
		return svid_fail(-EINVAL, why, why_len, "expected SPIFFE ID '%s' is not valid: %s",
				 expected_id, msg);
	if (sk_X509_num(chain) <= 0)
		return svid_fail(SVID_EMPTY_CHAIN, why, why_len, "the chain has no certificate");

	r = svid_check_leaf(sk_X509_value(chain, 0), now, id, why, why_len);
	if (r)
		return r;
	spiffe_parse(id, &parsed, NULL, 0);
	snprintf(res.td, sizeof(res.td), "%.*s", (int)parsed.td_len, parsed.td);

	r = svid_find_roots(trust, res.td, &roots, why, why_len);
	if (r)
		return r;
	r = svid_check_signers(chain, why, why_len);
	if (r)
		return r;
	r = svid_verify_path(chain, res.td, roots, now, &res.not_after, why, why_len);
	if (r)
		return r;

	if (expected_id && strcmp(id, expected_id))
		return svid_fail(SVID_ID_MISMATCH, why, why_len, "SVID is '%s', expected '%s'", id,
				 expected_id);
	memcpy(res.spiffe_id, id, sizeof(id));
	if (out)
		*out = res;
	return SVID_OK;
}

/* Opens path for reading as a BIO: -errno with a message. */
static int svid_open(const char *path, BIO **out, char *why, size_t why_len)
{
	_cleanup_fclose_ FILE *f = NULL;
	BIO *bio;
	int err;

	f = fopen(path, "re");
	if (!f) {
		err = errno;
		return svid_fail(-err, why, why_len, "'%s': %s", path, strerror(err));
	}
	bio = BIO_new_fp(f, BIO_CLOSE);
	if (!bio) {
		ERR_clear_error();
		return svid_fail(-ENOMEM, why, why_len, "'%s': out of memory", path);
	}
	f = NULL; /* the BIO closes it */
	*out = bio;
	return 0;
}

/* Whether OpenSSL's last error is PEM's "no more PEM blocks" (end of file). */
static bool svid_pem_eof(void)
{
	unsigned long e = ERR_peek_last_error();

	return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

int svid_load_chain(const char *path, STACK_OF(X509) **out, char *why, size_t why_len)
{
	_cleanup_x509_stack_ STACK_OF(X509) *certs = sk_X509_new_null();
	_cleanup_bio_ BIO *bio = NULL;
	X509 *cert;
	int r;

	if (!certs)
		return svid_fail(-ENOMEM, why, why_len, "'%s': out of memory", path);
	r = svid_open(path, &bio, why, why_len);
	if (r)
		return r;
	ERR_clear_error();
	while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		if (!sk_X509_push(certs, cert)) {
			X509_free(cert);
			return svid_fail(-ENOMEM, why, why_len, "'%s': out of memory", path);
		}
	}
	if (!svid_pem_eof())
		return svid_fail(-EBADMSG, why, why_len, "'%s': certificate %d does not decode: %s",
				 path, sk_X509_num(certs) + 1, svid_ossl_error());
	ERR_clear_error();
	if (!sk_X509_num(certs))
		return svid_fail(-ENODATA, why, why_len, "'%s': no PEM certificate in the file",
				 path);
	*out = take_ptr(certs);
	return 0;
}

/* Whether a PEM block is a private key, and whether an encrypted one. */
static bool svid_pem_is_key(const char *name, const char *header, bool *encrypted)
{
	size_t n = strlen(name), k = strlen("PRIVATE KEY");

	if (n < k || strcmp(name + n - k, "PRIVATE KEY"))
		return false;
	*encrypted = !strcmp(name, "ENCRYPTED PRIVATE KEY") || strstr(header, "ENCRYPTED");
	return true;
}

/*
 * The first PEM block of bio that holds a private key, decoded. PEM blocks
 * are walked by hand rather than with PEM_read_bio_PrivateKey(), whose
 * errors do not tell "no key in the file" from "a key that does not decode".
 */
static int svid_read_key(BIO *bio, const char *path, EVP_PKEY **out, char *why, size_t why_len)
{
	for (;;) {
		_cleanup_openssl_free_ char *name = NULL, *header = NULL;
		_cleanup_openssl_free_ unsigned char *data = NULL;
		const unsigned char *p;
		bool encrypted;
		EVP_PKEY *key;
		long len;

		if (!PEM_read_bio(bio, &name, &header, &data, &len)) {
			if (svid_pem_eof()) {
				ERR_clear_error();
				return svid_fail(-ENODATA, why, why_len,
						 "'%s': no PEM private key in the file", path);
			}
			return svid_fail(-EBADMSG, why, why_len, "'%s': not a valid PEM file: %s",
					 path, svid_ossl_error());
		}
		if (!svid_pem_is_key(name, header, &encrypted))
			continue;
		if (encrypted)
			return svid_fail(
				-EBADMSG, why, why_len,
				"'%s': the private key is encrypted; fedguard reads unencrypted keys only",
				path);
		p = data;
		key = d2i_AutoPrivateKey(NULL, &p, len);
		if (!key)
			return svid_fail(-EBADMSG, why, why_len,
					 "'%s': the private key ('%s' block) does not decode: %s",
					 path, name, svid_ossl_error());
		*out = key;
		return 0;
	}
}

int svid_load_key(const char *path, EVP_PKEY **out, char *why, size_t why_len)
{
	_cleanup_bio_ BIO *bio = NULL;
	int r;

	r = svid_open(path, &bio, why, why_len);
	if (r)
		return r;
	ERR_clear_error();
	return svid_read_key(bio, path, out, why, why_len);
}
