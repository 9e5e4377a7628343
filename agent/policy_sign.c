// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "policy_sign.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/sha.h>

#include "cleanup.h"
#include "ssl_cleanup.h"

enum {
	SIG_LEN = 64,	  /* an Ed25519 signature */
	SIG_B64_LEN = 88, /* its base64: 4 * ceil(64 / 3) */
	FIELD_MAX = 256,  /* bytes of one field's value */
};

static void cleanup_md_ctx(EVP_MD_CTX **p)
{
	EVP_MD_CTX_free(*p);
}

#define _cleanup_md_ctx_ __attribute__((cleanup(cleanup_md_ctx)))

__attribute__((format(printf, 4, 5))) static int why_set(char *why, size_t len, int r,
							 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return r;
}

int policy_key_fingerprint(EVP_PKEY *key, char fp[POLICY_KEY_FP_MAX])
{
	_cleanup_openssl_free_ unsigned char *der = NULL;
	unsigned char md[SHA256_DIGEST_LENGTH];
	int len = i2d_PUBKEY(key, &der);
	size_t i;

	if (len <= 0 || !SHA256(der, (size_t)len, md))
		return -ENOMEM;
	strcpy(fp, "sha256:");
	for (i = 0; i < sizeof(md); i++)
		snprintf(fp + 7 + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int policy_key_generate(EVP_PKEY **out)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

	if (!key)
		return -ENOMEM;
	*out = key;
	return 0;
}

int policy_sign(const char *buf, size_t len, EVP_PKEY *key, char **sig_text)
{
	_cleanup_md_ctx_ EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[SIG_LEN], b64[SIG_B64_LEN + 1];
	char fp[POLICY_KEY_FP_MAX], *text;
	size_t sig_len = sizeof(sig);

	if (!EVP_PKEY_is_a(key, "ED25519"))
		return -EINVAL;
	if (!ctx || policy_key_fingerprint(key, fp))
		return -ENOMEM;
	if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
	    EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)buf, len) != 1 ||
	    sig_len != SIG_LEN)
		return -EINVAL; /* a public key only */
	EVP_EncodeBlock(b64, sig, SIG_LEN);
	if (asprintf(&text,
		     POLICY_SIG_MAGIC "\nalgorithm: " POLICY_SIG_ALGORITHM
				      "\nkey: %s\nsignature: %s\n",
		     fp, b64) < 0)
		return -ENOMEM;
	*sig_text = text;
	return 0;
}

/*
 * One line "NAME: VALUE" at *p into value; *p moves past its newline (the
 * last line may lack one). -EINVAL with why when the line is not that.
 */
static int sig_field(const char **p, int line, const char *name, char value[FIELD_MAX], char *why,
		     size_t why_len)
{
	const char *end = strchrnul(*p, '\n');
	size_t n = strlen(name);

	if (strncmp(*p, name, n) || strncmp(*p + n, ": ", 2))
		return why_set(why, why_len, -EINVAL,
			       "malformed signature: line %d is not '%s: ...'", line, name);
	*p += n + 2;
	if ((size_t)(end - *p) >= FIELD_MAX || end == *p)
		return why_set(why, why_len, -EINVAL,
			       "malformed signature: line %d: the %s is empty or too long", line,
			       name);
	memcpy(value, *p, (size_t)(end - *p));
	value[end - *p] = 0;
	*p = *end ? end + 1 : end;
	return 0;
}

/* The base64 of exactly one signature, canonical (re-encoding gives it back). */
static int sig_decode(const char *b64, unsigned char sig[SIG_LEN], char *why, size_t why_len)
{
	unsigned char buf[SIG_B64_LEN], again[SIG_B64_LEN + 1];

	if (strlen(b64) != SIG_B64_LEN ||
	    EVP_DecodeBlock(buf, (const unsigned char *)b64, SIG_B64_LEN) < SIG_LEN)
		return why_set(why, why_len, -EINVAL,
			       "malformed signature: the signature is not the base64 of %d bytes",
			       SIG_LEN);
	EVP_EncodeBlock(again, buf, SIG_LEN);
	if (strcmp((const char *)again, b64))
		return why_set(
			why, why_len, -EINVAL,
			"malformed signature: the signature is not canonical base64 of %d bytes",
			SIG_LEN);
	memcpy(sig, buf, SIG_LEN);
	return 0;
}

/* The parts of a signature text: the key's fingerprint and the signature. */
static int sig_parse(const char *text, char fp[FIELD_MAX], unsigned char sig[SIG_LEN], char *why,
		     size_t why_len)
{
	size_t n = strlen(POLICY_SIG_MAGIC);
	char alg[FIELD_MAX], b64[FIELD_MAX];
	const char *p = text;
	int r;

	if (strncmp(p, POLICY_SIG_MAGIC, n) || p[n] != '\n')
		return why_set(why, why_len, -EINVAL,
			       "malformed signature: the first line is not '" POLICY_SIG_MAGIC "'");
	p += n + 1;
	r = sig_field(&p, 2, "algorithm", alg, why, why_len);
	if (r)
		return r;
	if (strcmp(alg, POLICY_SIG_ALGORITHM))
		return why_set(why, why_len, -EPROTONOSUPPORT,
			       "unknown signature algorithm '%.64s': only " POLICY_SIG_ALGORITHM
			       " is supported",
			       alg);
	r = sig_field(&p, 3, "key", fp, why, why_len);
	if (!r)
		r = sig_field(&p, 4, "signature", b64, why, why_len);
	if (r)
		return r;
	if (*p)
		return why_set(why, why_len, -EINVAL,
			       "malformed signature: unexpected text after line 4");
	return sig_decode(b64, sig, why, why_len);
}

int policy_verify(const char *buf, size_t len, const char *sig_text, EVP_PKEY *pub, char *why,
		  size_t why_len)
{
	_cleanup_md_ctx_ EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char fp[FIELD_MAX], want[POLICY_KEY_FP_MAX];
	unsigned char sig[SIG_LEN];
	int r;

	if (!ctx || policy_key_fingerprint(pub, want))
		return why_set(why, why_len, -ENOMEM, "out of memory");
	r = sig_parse(sig_text, fp, sig, why, why_len);
	if (r)
		return r;
	if (strcmp(fp, want))
		return why_set(why, why_len, -EKEYREJECTED,
			       "signed by another key: the signature names key %.80s, the mesh's "
			       "policy key is %s",
			       fp, want);
	if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) != 1)
		return why_set(why, why_len, -EINVAL, "the policy key is not an Ed25519 key");
	if (EVP_DigestVerify(ctx, sig, SIG_LEN, (const unsigned char *)buf, len) != 1)
		return why_set(why, why_len, -EBADMSG,
			       "bad signature: the document is not the one key %s signed "
			       "(changed after signing)",
			       want);
	return 0;
}

/* A PEM key of path through read (PEM_read_bio_PrivateKey or _PUBKEY), checked to be Ed25519. */
static int key_load(const char *path,
		    EVP_PKEY *(*read)(BIO *, EVP_PKEY **, pem_password_cb *, void *),
		    const char *what, EVP_PKEY **out, char *why, size_t why_len)
{
	_cleanup_bio_ BIO *bio = NULL;
	_cleanup_evp_pkey_ EVP_PKEY *key = NULL;
	_cleanup_fclose_ FILE *f = fopen(path, "re");

	if (!f)
		return why_set(why, why_len, -errno, "policy key '%s': %s", path, strerror(errno));
	bio = BIO_new_fp(f, BIO_NOCLOSE);
	if (!bio)
		return why_set(why, why_len, -ENOMEM, "policy key '%s': out of memory", path);
	key = read(bio, NULL, NULL, NULL);
	if (!key)
		return why_set(why, why_len, -EINVAL, "policy key '%s': not a PEM %s", path, what);
	if (!EVP_PKEY_is_a(key, "ED25519"))
		return why_set(why, why_len, -EINVAL, "policy key '%s': not an Ed25519 key (%s)",
			       path, EVP_PKEY_get0_type_name(key));
	*out = take_ptr(key);
	return 0;
}

int policy_key_load_private(const char *path, EVP_PKEY **out, char *why, size_t why_len)
{
	return key_load(path, PEM_read_bio_PrivateKey, "private key", out, why, why_len);
}

int policy_key_load_public(const char *path, EVP_PKEY **out, char *why, size_t why_len)
{
	return key_load(path, PEM_read_bio_PUBKEY, "public key (BEGIN PUBLIC KEY)", out, why,
			why_len);
}
