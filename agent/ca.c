// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "cleanup.h"
#include "spiffe.h"
#include "ssl_cleanup.h"
#include "svid.h"

enum {
	CA_NAME_MAX = 64, /* ub-common-name and ub-organizational-unit-name */
	CA_SERIAL_BYTES = 16,
};

/* The extensions of each kind, in x509v3_config(5) syntax; NULL: none. */
static const struct {
	const char *bc, *ku, *eku, *akid;
} ca_profiles[] = {
	[CA_ROOT] = {"critical,CA:TRUE", "critical,keyCertSign,cRLSign", NULL, NULL},
	[CA_NODE] = {"critical,CA:TRUE,pathlen:0", "critical,keyCertSign,cRLSign", NULL,
		     "keyid:always"},
	[CA_LEAF] = {"critical,CA:FALSE", "critical,digitalSignature,keyAgreement",
		     "serverAuth,clientAuth", "keyid:always"},
};

/* Writes a message into why (when there is room for one) and returns ret. */
__attribute__((format(printf, 4, 5))) static int ca_fail(int ret, char *why, size_t why_len,
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

int ca_key_new(EVP_PKEY **out)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");

	if (!key) {
		ERR_clear_error();
		return -ENOMEM;
	}
	*out = key;
	return 0;
}

int ca_cert_not_after(X509 *cert, time_t *out)
{
	struct tm tm;
	time_t t;

	if (!ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm))
		return -EINVAL;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*out = t;
	return 0;
}

int ca_cert_trust_domain(X509 *cert, char *td, char *why, size_t why_len)
{
	char id[SPIFFE_ID_MAX + 1];
	struct spiffe_id parsed;
	int r;

	r = svid_cert_spiffe_id(cert, id, sizeof(id));
	if (r == -ENOENT)
		return ca_fail(-EINVAL, why, why_len,
			       "the signing certificate has no URI SAN, so no trust domain");
	if (r)
		return ca_fail(-EINVAL, why, why_len,
			       "the signing certificate has no single valid SPIFFE ID as URI SAN");
	spiffe_parse(id, &parsed, NULL, 0);
	if (parsed.path_len)
		return ca_fail(
			-EINVAL, why, why_len,
			"the signing certificate's SPIFFE ID '%s' has a path: a signing certificate's ID is spiffe://TRUST-DOMAIN",
			id);
	snprintf(td, SPIFFE_TRUST_DOMAIN_MAX + 1, "%.*s", (int)parsed.td_len, parsed.td);
	return 0;
}

/* The issuer's checks: a CA, its key, and the trust domain req's ID must be in. */
static int ca_check_issuer(const struct ca_request *req, const struct spiffe_id *id, X509 *issuer,
			   EVP_PKEY *issuer_key, char *why, size_t why_len)
{
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	time_t issuer_end;
	int r;

	if (!(X509_get_extension_flags(issuer) & EXFLAG_CA) ||
	    !(X509_get_key_usage(issuer) & KU_KEY_CERT_SIGN))
		return ca_fail(-EINVAL, why, why_len,
			       "the issuer is not a CA certificate with keyCertSign");
	if (!issuer_key || X509_check_private_key(issuer, issuer_key) != 1) {
		ERR_clear_error();
		return ca_fail(-EINVAL, why, why_len,
			       "the issuer's key is not the key of its certificate");
	}
	r = ca_cert_trust_domain(issuer, td, why, why_len);
	if (r)
		return r;
	if (!spiffe_in_trust_domain(id, td))
		return ca_fail(
			-EINVAL, why, why_len,
			"'%s' is not in trust domain '%s': a trust domain vouches only for its own IDs",
			req->spiffe_id, td);
	if (ca_cert_not_after(issuer, &issuer_end))
		return ca_fail(-EINVAL, why, why_len, "the issuer's notAfter does not decode");
	if (req->not_after > issuer_end)
		return ca_fail(-ERANGE, why, why_len,
			       "the certificate would outlive its issuer, which expires first");
	return 0;
}

/* What req asks for makes sense for its kind and issuer. */
static int ca_check_request(const struct ca_request *req, X509 *issuer, EVP_PKEY *issuer_key,
			    char *why, size_t why_len)
{
	char msg[SPIFFE_WHY_MAX];
	struct spiffe_id id;

	if ((unsigned int)req->kind > CA_LEAF)
		return ca_fail(-EINVAL, why, why_len, "unknown kind of certificate %d", req->kind);
	if (spiffe_parse(req->spiffe_id, &id, msg, sizeof(msg)))
		return ca_fail(-EINVAL, why, why_len, "'%s' is not a SPIFFE ID: %s",
			       req->spiffe_id ? req->spiffe_id : "", msg);
	if (req->kind == CA_LEAF && !id.path_len)
		return ca_fail(
			-EINVAL, why, why_len,
			"'%s' has no path: an SVID names a workload, spiffe://TRUST-DOMAIN/PATH",
			req->spiffe_id);
	if (req->kind != CA_LEAF && id.path_len)
		return ca_fail(
			-EINVAL, why, why_len,
			"'%s' has a path: a signing certificate's ID is spiffe://TRUST-DOMAIN",
			req->spiffe_id);
	if (req->not_after <= req->not_before)
		return ca_fail(-EINVAL, why, why_len, "notAfter is not after notBefore");
	if ((req->kind == CA_ROOT) != !issuer)
		return ca_fail(-EINVAL, why, why_len,
			       req->kind == CA_ROOT
				       ? "a root is self-signed: no issuer"
				       : "only a root is self-signed: an issuer is needed");
	if (issuer)
		return ca_check_issuer(req, &id, issuer, issuer_key, why, why_len);
	return 0;
}

/* Subject O=fedguard[, OU=TD], CN=common_name; issuer's subject as issuer name. */
static int ca_set_names(X509 *cert, const struct ca_request *req, X509 *issuer)
{
	X509_NAME *name = X509_get_subject_name(cert);
	char cn[CA_NAME_MAX + 1], ou[SPIFFE_TRUST_DOMAIN_MAX + 1];
	struct spiffe_id id;

	spiffe_parse(req->spiffe_id, &id, NULL, 0);
	snprintf(cn, sizeof(cn), "%s", req->common_name ? req->common_name : "fedguard");
	snprintf(ou, sizeof(ou), "%.*s", (int)id.td_len, id.td);
	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"fedguard",
					-1, -1, 0))
		return -ENOMEM;
	if (strlen(ou) <= CA_NAME_MAX &&
	    !X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8, (const unsigned char *)ou, -1,
					-1, 0))
		return -ENOMEM;
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
					-1, 0))
		return -ENOMEM;
	if (!X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name))
		return -ENOMEM;
	return 0;
}

/* Version 3, a positive random serial, the validity period. */
static int ca_set_serial_validity(X509 *cert, const struct ca_request *req)
{
	unsigned char bytes[CA_SERIAL_BYTES];
	_cleanup_bignum_ BIGNUM *bn = NULL;

	if (RAND_bytes(bytes, sizeof(bytes)) != 1)
		return -EIO;
	bytes[0] = (bytes[0] & 0x7f) | 0x40; /* positive, and always 16 bytes long */
	bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
		return -ENOMEM;
	if (!X509_set_version(cert, X509_VERSION_3) ||
	    !ASN1_TIME_set(X509_getm_notBefore(cert), req->not_before) ||
	    !ASN1_TIME_set(X509_getm_notAfter(cert), req->not_after))
		return -ENOMEM;
	return 0;
}

static int ca_add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
	_cleanup_x509_extension_ X509_EXTENSION *ext = NULL;

	if (!value)
		return 0;
	ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	if (!ext || !X509_add_ext(cert, ext, -1))
		return -ENOMEM;
	return 0;
}

/* The extensions of req's kind; the SKID goes first, as the AKID of a root refers to it. */
static int ca_add_extensions(X509 *cert, const struct ca_request *req, X509 *issuer)
{
	char san[SPIFFE_ID_MAX + sizeof("URI:")];
	X509V3_CTX ctx;

	/* spiffe_parse() allows no ',' in an ID: the config string holds one name. */
	snprintf(san, sizeof(san), "URI:%s", req->spiffe_id);
	X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
	if (ca_add_ext(cert, &ctx, NID_basic_constraints, ca_profiles[req->kind].bc) ||
	    ca_add_ext(cert, &ctx, NID_key_usage, ca_profiles[req->kind].ku) ||
	    ca_add_ext(cert, &ctx, NID_ext_key_usage, ca_profiles[req->kind].eku) ||
	    ca_add_ext(cert, &ctx, NID_subject_key_identifier, "hash") ||
	    ca_add_ext(cert, &ctx, NID_authority_key_identifier, ca_profiles[req->kind].akid) ||
	    ca_add_ext(cert, &ctx, NID_subject_alt_name, san))
		return -ENOMEM;
	return 0;
}

int ca_issue(const struct ca_request *req, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
	     X509 **out, char *why, size_t why_len)
{
	_cleanup_x509_ X509 *cert = NULL;
	int r;

	r = ca_check_request(req, issuer, issuer_key, why, why_len);
	if (r)
		return r;
	cert = X509_new();
	if (!cert || !X509_set_pubkey(cert, key)) {
		ERR_clear_error();
		return ca_fail(-ENOMEM, why, why_len, "out of memory making the certificate");
	}
	r = ca_set_names(cert, req, issuer);
	if (!r)
		r = ca_set_serial_validity(cert, req);
	if (!r)
		r = ca_add_extensions(cert, req, issuer);
	if (!r && !X509_sign(cert, issuer ? issuer_key : key, EVP_sha256()))
		r = -ENOMEM;
	if (r) {
		ERR_clear_error();
		return ca_fail(r, why, why_len, "making the certificate of '%s' failed: %s",
			       req->spiffe_id, strerror(-r));
	}
	*out = take_ptr(cert);
	return 0;
}
