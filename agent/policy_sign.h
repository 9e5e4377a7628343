/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signed policy documents: a detached signature by the mesh's policy key
 * (Ed25519) over the exact bytes of the document, as a small text file
 * (docs/policy.md, "Signed policies"):
 *
 *   fedguard-policy-signature 1
 *   algorithm: ed25519
 *   key: sha256:<hex of SHA-256 of the DER SubjectPublicKeyInfo>
 *   signature: <base64 of the 64-byte signature>
 *
 * The version lives inside the document; the signature covers it with the
 * rest. Nothing here logs: callers get the reason in `why`.
 */
#ifndef FEDGUARD_POLICY_SIGN_H
#define FEDGUARD_POLICY_SIGN_H

#include <stddef.h>

#include <openssl/evp.h>

#define POLICY_SIG_MAGIC     "fedguard-policy-signature 1"
#define POLICY_SIG_ALGORITHM "ed25519"

enum policy_sign_limits {
	POLICY_SIG_TEXT_MAX = 1024, /* bytes of a signature text */
	POLICY_SIG_WHY_MAX = 512,   /* bytes of a reason */
	POLICY_KEY_FP_MAX = 72,	    /* "sha256:" + 64 hex digits + NUL */
};

/*
 * Signs len bytes of buf with the Ed25519 private key. Returns 0 and sets
 * *sig_text (malloc'ed, NUL-terminated, ending in a newline), or -EINVAL
 * (not an Ed25519 private key), -ENOMEM.
 */
int policy_sign(const char *buf, size_t len, EVP_PKEY *key, char **sig_text);

/*
 * Checks sig_text against len bytes of buf and the public key pub. Returns
 * 0 when valid, else a negative errno with the reason in why:
 *   -EINVAL         malformed signature text
 *   -EPROTONOSUPPORT an algorithm other than ed25519
 *   -EKEYREJECTED   signed by another key (both fingerprints named)
 *   -EBADMSG        the signature does not match: the document changed
 *   -ENOMEM
 */
int policy_verify(const char *buf, size_t len, const char *sig_text, EVP_PKEY *pub, char *why,
		  size_t why_len);

/* "sha256:<hex>" of the DER public key of key into fp: 0 or -ENOMEM. */
int policy_key_fingerprint(EVP_PKEY *key, char fp[POLICY_KEY_FP_MAX]);

/* A new Ed25519 key pair: 0 or -ENOMEM. */
int policy_key_generate(EVP_PKEY **out);

/*
 * Reads an Ed25519 private key (PEM, PKCS#8) or public key (PEM
 * SubjectPublicKeyInfo) from path. 0 and *out, or -errno with why naming
 * the file and the cause (-EINVAL: not such a key).
 */
int policy_key_load_private(const char *path, EVP_PKEY **out, char *why, size_t why_len);
int policy_key_load_public(const char *path, EVP_PKEY **out, char *why, size_t why_len);

#endif /* FEDGUARD_POLICY_SIGN_H */
