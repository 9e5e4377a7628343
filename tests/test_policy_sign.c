// SPDX-License-Identifier: Apache-2.0
/*
 * Signed policy documents (agent/policy_sign.c): keys made here with
 * OpenSSL, documents signed and checked, and every way a signature text can
 * be wrong reported with its own reason.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "policy_sign.h"

static const char doc[] = "version: 3\n"
			  "rules:\n"
			  "  - name: a-calls-b\n"
			  "    action: allow\n"
			  "    from: {spiffe_id: spiffe://mesh.test/a}\n"
			  "    to: {spiffe_id: spiffe://mesh.test/b}\n"
			  "    ports: [8080]\n";

static EVP_PKEY *key, *other;
static char *sig;
static char why[POLICY_SIG_WHY_MAX];

static void setup(void)
{
	key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	cr_assert(key && other);
	cr_assert_eq(policy_sign(doc, strlen(doc), key, &sig), 0);
}

static void teardown(void)
{
	EVP_PKEY_free(key);
	EVP_PKEY_free(other);
	free(sig);
}

static int verify_text(const char *text)
{
	why[0] = 0;
	return policy_verify(doc, strlen(doc), text, key, why, sizeof(why));
}

/* The signature text with the first occurrence of from replaced by to. */
static char *edited(const char *from, const char *to)
{
	const char *at = strstr(sig, from);
	char *out;

	cr_assert_not_null(at, "'%s' is not in the signature:\n%s", from, sig);
	cr_assert_geq(asprintf(&out, "%.*s%s%s", (int)(at - sig), sig, to, at + strlen(from)), 0);
	return out;
}

TestSuite(policy_sign, .init = setup, .fini = teardown);

Test(policy_sign, round_trip_verifies)
{
	char fp[POLICY_KEY_FP_MAX], line[128];

	cr_assert_eq(verify_text(sig), 0, "%s", why);
	cr_assert_eq(policy_key_fingerprint(key, fp), 0);
	snprintf(line, sizeof(line), "\nkey: %s\n", fp);
	cr_expect(strncmp(sig, POLICY_SIG_MAGIC "\nalgorithm: ed25519\n", 39) == 0, "%s", sig);
	cr_expect_not_null(strstr(sig, line), "%s", sig);
}

Test(policy_sign, every_changed_byte_is_a_bad_signature)
{
	char copy[sizeof(doc)];
	size_t i;

	for (i = 0; i < strlen(doc); i++) {
		memcpy(copy, doc, sizeof(doc));
		copy[i] ^= 0x01;
		cr_assert_eq(policy_verify(copy, strlen(doc), sig, key, why, sizeof(why)), -EBADMSG,
			     "byte %zu changed", i);
	}
	cr_expect_not_null(strstr(why, "bad signature"), "%s", why);
	cr_expect_eq(policy_verify(doc, strlen(doc) - 1, sig, key, why, sizeof(why)), -EBADMSG,
		     "a truncated document");
}

Test(policy_sign, another_key_is_named_with_both_fingerprints)
{
	char fp_key[POLICY_KEY_FP_MAX], fp_other[POLICY_KEY_FP_MAX];

	cr_assert_eq(policy_key_fingerprint(key, fp_key), 0);
	cr_assert_eq(policy_key_fingerprint(other, fp_other), 0);
	cr_assert_str_neq(fp_key, fp_other);
	cr_assert_eq(policy_verify(doc, strlen(doc), sig, other, why, sizeof(why)), -EKEYREJECTED);
	cr_expect_not_null(strstr(why, "signed by another key"), "%s", why);
	cr_expect_not_null(strstr(why, fp_key), "%s", why);
	cr_expect_not_null(strstr(why, fp_other), "%s", why);
}

Test(policy_sign, a_signature_claiming_the_right_key_but_made_by_another_is_bad)
{
	char fp_key[POLICY_KEY_FP_MAX], fp_other[POLICY_KEY_FP_MAX], *forged, *o_sig;

	cr_assert_eq(policy_sign(doc, strlen(doc), other, &o_sig), 0);
	cr_assert_eq(policy_key_fingerprint(key, fp_key), 0);
	cr_assert_eq(policy_key_fingerprint(other, fp_other), 0);
	forged = strdup(o_sig);
	memcpy(strstr(forged, fp_other), fp_key, strlen(fp_key));
	cr_expect_eq(verify_text(forged), -EBADMSG, "%s", why);
	free(forged);
	free(o_sig);
}

Test(policy_sign, unknown_algorithm)
{
	char *t = edited("algorithm: ed25519", "algorithm: ecdsa-p256");

	cr_expect_eq(verify_text(t), -EPROTONOSUPPORT, "%s", why);
	cr_expect_not_null(strstr(why, "unknown signature algorithm 'ecdsa-p256'"), "%s", why);
	free(t);
}

Test(policy_sign, malformed_texts)
{
	static const char *const bad[][2] = {
		{"fedguard-policy-signature 1", "fedguard-policy-signature 2"},
		{"algorithm: ", "algo: "},
		{"key: sha256:", "key sha256:"},
		{"signature: ", "signature:"},
		{"signature: ", "signature: !!!!"},
		{"signature: ", "signature: AAAA"},
		{"\nkey:", "\n\nkey:"},
	};
	char *t;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = edited(bad[i][0], bad[i][1]);
		cr_expect_eq(verify_text(t), -EINVAL, "edit %zu: %s", i, why);
		cr_expect_not_null(strstr(why, "malformed signature"), "edit %zu: %s", i, why);
		free(t);
	}
	cr_expect_eq(verify_text(""), -EINVAL);
	cr_expect_eq(verify_text("garbage\n"), -EINVAL);
	t = edited("\n", "\r\n");
	cr_expect_eq(verify_text(t), -EINVAL, "CRLF: %s", why);
	free(t);
	cr_assert_geq(asprintf(&t, "%sextra\n", sig), 0);
	cr_expect_eq(verify_text(t), -EINVAL, "trailing text: %s", why);
	free(t);
}

Test(policy_sign, a_garbled_signature_value_is_bad_or_malformed)
{
	char *t = strdup(sig), *v = strstr(t, "signature: ") + strlen("signature: ");

	v[10] = v[10] == 'A' ? 'B' : 'A';
	cr_expect_eq(verify_text(t), -EBADMSG, "%s", why);
	v[10] = '*';
	cr_expect_eq(verify_text(t), -EINVAL, "%s", why);
	free(t);
}

Test(policy_sign, the_last_newline_is_optional)
{
	char *t = strndup(sig, strlen(sig) - 1);

	cr_expect_eq(verify_text(t), 0, "%s", why);
	free(t);
}

/* Writes key's PEM (private or public) to a temporary file; its path. */
static char *pem_file(EVP_PKEY *k, bool private)
{
	static char path[64];
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "/tmp/fg-policy-key-XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	cr_assert(private ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL)
			  : PEM_write_PUBKEY(f, k));
	fclose(f);
	return path;
}

Test(policy_sign, keys_load_from_pem_and_only_ed25519)
{
	EVP_PKEY *priv = NULL, *pub = NULL, *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	char *path;
	int r;

	path = pem_file(key, true);
	r = policy_key_load_private(path, &priv, why, sizeof(why));
	unlink(path);
	cr_assert_eq(r, 0, "%s", why);
	path = pem_file(key, false);
	r = policy_key_load_public(path, &pub, why, sizeof(why));
	cr_assert_eq(r, 0, "%s", why);
	cr_expect_eq(policy_key_load_private(path, &priv, why, sizeof(why)), -EINVAL,
		     "a public key is not a private key");
	unlink(path);
	cr_expect_eq(policy_verify(doc, strlen(doc), sig, pub, why, sizeof(why)), 0, "%s", why);
	path = pem_file(ec, false);
	cr_expect_eq(policy_key_load_public(path, &pub, why, sizeof(why)), -EINVAL);
	cr_expect_not_null(strstr(why, "not an Ed25519 key"), "%s", why);
	unlink(path);
	cr_expect_eq(policy_key_load_public("/nonexistent/policy.pub", &pub, why, sizeof(why)),
		     -ENOENT);
	cr_expect_eq(policy_sign(doc, strlen(doc), ec, &path), -EINVAL, "ECDSA is not signed with");
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(ec);
}
