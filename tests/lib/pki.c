// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "cleanup.h"
#include "ssl_cleanup.h"
#include "pki.h"

struct pki_opts pki_root_opts(const char *td)
{
	struct pki_opts o = {
		.cn = "test root CA",
		.bc = "critical,CA:TRUE",
		.ku = "critical,keyCertSign,cRLSign",
		.not_before = -3600,
		.not_after = 30 * 86400,
	};

	snprintf(o.san, sizeof(o.san), "URI:spiffe://%s", td);
	return o;
}

struct pki_opts pki_inter_opts(const char *td)
{
	struct pki_opts o = pki_root_opts(td);

	o.cn = "test intermediate CA";
	o.bc = "critical,CA:TRUE,pathlen:0";
	o.not_after = 7 * 86400;
	return o;
}

struct pki_opts pki_leaf_opts(const char *id)
{
	struct pki_opts o = {
		.cn = "test workload",
		.bc = "critical,CA:FALSE",
		.ku = "critical,digitalSignature",
		.eku = "serverAuth,clientAuth",
		.not_before = -60,
		.not_after = 3600,
	};

	snprintf(o.san, sizeof(o.san), "URI:%s", id);
	return o;
}

static int pki_add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
	_cleanup_x509_extension_ X509_EXTENSION *ext = NULL;

	if (!value || !*value)
		return 0;
	ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	if (!ext || !X509_add_ext(cert, ext, -1))
		return -EINVAL;
	return 0;
}

static int pki_set_names(X509 *cert, const struct pki_opts *o, const struct pki_cert *issuer)
{
	X509_NAME *name = X509_get_subject_name(cert);

	if (o->cn &&
	    (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
					 (const unsigned char *)"fedguard-test", -1, -1, 0) ||
	     !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)o->cn,
					 -1, -1, 0)))
		return -EINVAL;
	name = issuer ? X509_get_subject_name(issuer->cert) : name;
	return X509_set_issuer_name(cert, name) ? 0 : -EINVAL;
}

static int pki_set_serial_validity(X509 *cert, const struct pki_opts *o, time_t now)
{
	unsigned char bytes[16];
	_cleanup_bignum_ BIGNUM *bn = NULL;

	if (RAND_bytes(bytes, sizeof(bytes)) != 1)
		return -EIO;
	bytes[0] &= 0x7f;
	bytes[0] |= 0x01;
	bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
		return -ENOMEM;
	if (!X509_set_version(cert, X509_VERSION_3) ||
	    !ASN1_TIME_set(X509_getm_notBefore(cert), now + o->not_before) ||
	    !ASN1_TIME_set(X509_getm_notAfter(cert), now + o->not_after))
		return -EINVAL;
	return 0;
}

static int pki_add_exts(X509 *cert, const struct pki_opts *o, const struct pki_cert *issuer)
{
	X509V3_CTX ctx;

	X509V3_set_ctx(&ctx, issuer ? issuer->cert : cert, cert, NULL, NULL, 0);
	if (pki_add_ext(cert, &ctx, NID_basic_constraints, o->bc) ||
	    pki_add_ext(cert, &ctx, NID_key_usage, o->ku) ||
	    pki_add_ext(cert, &ctx, NID_ext_key_usage, o->eku) ||
	    pki_add_ext(cert, &ctx, NID_subject_alt_name, o->san))
		return -EINVAL;
	if (o->no_key_ids)
		return 0;
	if (pki_add_ext(cert, &ctx, NID_subject_key_identifier, "hash") ||
	    pki_add_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always"))
		return -EINVAL;
	return 0;
}

int pki_make(const struct pki_opts *opts, const struct pki_cert *issuer, time_t now,
	     struct pki_cert *out)
{
	_cleanup_evp_pkey_ EVP_PKEY *key = EVP_EC_gen("P-256");
	_cleanup_x509_ X509 *cert = X509_new();
	EVP_PKEY *sign_key;
	int r;

	if (!key || !cert)
		return -ENOMEM;
	sign_key = issuer ? issuer->key : key;
	if (!X509_set_pubkey(cert, key))
		return -EINVAL;
	r = pki_set_names(cert, opts, issuer);
	if (!r)
		r = pki_set_serial_validity(cert, opts, now);
	if (!r)
		r = pki_add_exts(cert, opts, issuer);
	if (r) {
		ERR_print_errors_fp(stderr);
		return r;
	}
	if (!X509_sign(cert, sign_key, EVP_sha256()))
		return -EINVAL;
	out->cert = take_ptr(cert);
	out->key = take_ptr(key);
	return 0;
}

void pki_free(struct pki_cert *c)
{
	X509_free(c->cert);
	EVP_PKEY_free(c->key);
	c->cert = NULL;
	c->key = NULL;
}

STACK_OF(X509) *pki_stack(X509 *first, ...)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	X509 *c;
	va_list ap;

	if (!sk)
		return NULL;
	va_start(ap, first);
	for (c = first; c; c = va_arg(ap, X509 *)) {
		X509_up_ref(c);
		sk_X509_push(sk, c);
	}
	va_end(ap);
	return sk;
}

X509 *pki_tamper(X509 *cert)
{
	_cleanup_free_ unsigned char *der = NULL;
	const unsigned char *p;
	int len;

	len = i2d_X509(cert, &der);
	if (len <= 0)
		return NULL;
	/* The last byte is in the signature value: the DER stays well-formed. */
	der[len - 1] ^= 0x01;
	p = der;
	return d2i_X509(NULL, &p, len);
}

int pki_write_chain(const char *path, STACK_OF(X509) *chain)
{
	_cleanup_fclose_ FILE *f = fopen(path, "we");
	int i;

	if (!f)
		return -errno;
	for (i = 0; i < sk_X509_num(chain); i++)
		if (!PEM_write_X509(f, sk_X509_value(chain, i)))
			return -EIO;
	return fflush(f) ? -errno : 0;
}

int pki_write_key(const char *path, EVP_PKEY *key)
{
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	f = fdopen(take_fd(&fd), "w");
	if (!f)
		return -errno;
	if (!PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL))
		return -EIO;
	return fflush(f) ? -errno : 0;
}
