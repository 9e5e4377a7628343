// SPDX-License-Identifier: Apache-2.0
/*
 * The built fedguard-ca ($FEDGUARD_CA), run as an operator would: a trust
 * domain's root, a node, an SVID, the bundle, and verify's answers (exit 0
 * valid, 1 rejected) for the genuine chain and for chains of another trust
 * domain, of a forged CA claiming this one, and with a tampered signature;
 * and the mesh's policy key.
 * Every run gets its own directory under $TMPDIR, removed afterwards.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "lib/pki.h"
#include "svid.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum {
	ARGS_MAX = 16,
	OUTPUT_MAX = 65536,
};

/* The outcome of one run of fedguard-ca. */
struct run {
	int status; /* exit status, or -1 when it did not exit */
	char out[OUTPUT_MAX];
	char err[OUTPUT_MAX];
};

static char dir[256];

static void setup(void)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	cr_assert_not_null(getenv("FEDGUARD_CA"), "FEDGUARD_CA is not set: run through meson test");
	snprintf(dir, sizeof(dir), "%s/fg-ca-tool-XXXXXX", tmp);
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void teardown(void)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(ca_tool, .init = setup, .fini = teardown);

/* dir/name, in a static buffer of its own per call site's slot. */
static const char *at(int slot, const char *name)
{
	static char paths[8][512];

	snprintf(paths[slot], sizeof(paths[slot]), "%s/%s", dir, name);
	return paths[slot];
}

static void slurp(int fd, char *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	close(fd);
}

/* Runs fedguard-ca with the given arguments (NULL-terminated) and waits for it. */
static void run_ca(struct run *r, ...)
{
	char *argv[ARGS_MAX + 2] = {getenv("FEDGUARD_CA")};
	int out = open(dir, O_TMPFILE | O_RDWR, 0600);
	int err = open(dir, O_TMPFILE | O_RDWR, 0600);
	int i = 1, status;
	va_list ap;
	pid_t pid;

	cr_assert(out >= 0 && err >= 0, "O_TMPFILE in '%s': %s", dir, strerror(errno));
	va_start(ap, r);
	while (i <= ARGS_MAX && (argv[i] = va_arg(ap, char *)))
		i++;
	va_end(ap);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		dup2(out, STDOUT_FILENO);
		dup2(err, STDERR_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	slurp(out, r->out, sizeof(r->out));
	slurp(err, r->err, sizeof(r->err));
}

/* run_ca() that must exit with status, else the test fails showing stderr. */
#define run_expect(r, status_, ...)                                                                \
	do {                                                                                       \
		run_ca((r), __VA_ARGS__, NULL);                                                    \
		cr_assert_eq((r)->status, (status_), "exit %d, expected %d; stderr: %s",           \
			     (r)->status, (status_), (r)->err);                                    \
	} while (0)

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

/* A root for example.org, node n1, and an SVID of spiffe://example.org/web from the node. */
static void make_trust_domain(void)
{
	struct run r;

	run_expect(&r, 0, "init", "--trust-domain", "example.org", "--out", at(0, "root"));
	run_expect(&r, 0, "issue-node", "--ca", at(0, "root"), "--node", "n1", "--out",
		   at(1, "n1"));
	run_expect(&r, 0, "svid", "--ca", at(0, "n1"), "--spiffe-id", "spiffe://example.org/web",
		   "--out", at(1, "web"));
	run_expect(&r, 0, "bundle", "--ca", at(0, "root"), "--sequence", "7");
	write_text(at(0, "bundle.json"), r.out);
}

Test(ca_tool, help_everywhere_and_usage_errors_exit_2)
{
	static const char *const cmds[] = {"init", "issue-node", "svid", "bundle", "verify",
					   "policy-key"};
	static struct run help, r;
	char usage[64];
	size_t i;

	run_expect(&help, 0, "--help");
	for (i = 0; i < ARRAY_SIZE(cmds); i++) {
		cr_expect_not_null(strstr(help.out, cmds[i]), "--help does not list '%s'", cmds[i]);
		run_expect(&r, 0, cmds[i], "--help");
		snprintf(usage, sizeof(usage), "Usage: fedguard-ca %s ", cmds[i]);
		cr_expect_not_null(strstr(r.out, usage), "%s --help: %s", cmds[i], r.out);
	}
	run_expect(&r, 2, "frobnicate");
	cr_expect_not_null(strstr(r.err, "unknown command 'frobnicate'"), "%s", r.err);
	run_expect(&r, 2, "init", "--trust-domain", "example.org");
	cr_expect_not_null(strstr(r.err, "--out is required"), "%s", r.err);
	run_expect(&r, 2, "init", "--trust-domain", "Example.org", "--out", at(0, "x"));
	cr_expect_not_null(strstr(r.err, "trust domain contains 'E'"), "%s", r.err);
	run_expect(&r, 2, "svid", "--ca", dir, "--spiffe-id", "spiffe://example.org/x", "--out",
		   dir, "--ttl", "ten");
	cr_expect_not_null(strstr(r.err, "--ttl 'ten'"), "%s", r.err);
	run_expect(&r, 2, "verify", "--bundle", "example.org", at(0, "chain.pem"));
	run_ca(&r, NULL);
	cr_expect_eq(r.status, 2);
}

Test(ca_tool, init_writes_a_private_key_and_refuses_to_overwrite)
{
	struct stat st;
	struct run r;

	run_expect(&r, 0, "init", "--trust-domain", "example.org", "--out", at(0, "root"));
	cr_expect_not_null(strstr(r.out, "spiffe://example.org"), "%s", r.out);
	cr_assert_eq(stat(at(0, "root/ca.key"), &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600, "ca.key has mode %o", st.st_mode & 0777);

	run_expect(&r, 1, "init", "--trust-domain", "example.org", "--out", at(0, "root"));
	cr_expect_not_null(strstr(r.err, "root/ca.pem' exists: refusing to overwrite it"), "%s",
			   r.err);
	run_expect(&r, 0, "init", "--trust-domain", "example.org", "--out", at(0, "root"),
		   "--force");
	cr_assert_eq(stat(at(0, "root/ca.key"), &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600, "ca.key has mode %o after --force",
		     st.st_mode & 0777);
}

/* The JSON object of a run's stdout; the caller puts it. */
static json_object *output_json(const struct run *r)
{
	json_object *o = json_tokener_parse(r->out);

	cr_assert_not_null(o, "not JSON: %s", r->out);
	return o;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	cr_assert(json_object_object_get_ex(o, key, &v), "no '%s' in %s", key,
		  json_object_to_json_string(o));
	return json_object_get_string(v);
}

/* Base64 of cert's DER, as x5c holds it. */
static void cert_b64(X509 *cert, char *buf, size_t len)
{
	unsigned char *der = NULL;
	int n = i2d_X509(cert, &der);

	cr_assert(n > 0 && (size_t)(4 * ((n + 2) / 3)) < len);
	EVP_EncodeBlock((unsigned char *)buf, der, n);
	OPENSSL_free(der);
}

Test(ca_tool, the_bundle_lists_the_root)
{
	json_object *doc, *keys, *key, *x5c, *v;
	STACK_OF(X509) *roots = NULL;
	char why[SVID_WHY_MAX], b64[4096];
	struct run r;

	make_trust_domain();
	cr_assert_eq(svid_load_chain(at(0, "root/ca.pem"), &roots, why, sizeof(why)), 0, "%s", why);
	cert_b64(sk_X509_value(roots, 0), b64, sizeof(b64));
	run_expect(&r, 0, "bundle", "--ca", at(0, "root"), "--sequence", "42", "--refresh-hint",
		   "60");
	doc = output_json(&r);

	cr_assert(json_object_object_get_ex(doc, "keys", &keys));
	cr_assert_eq(json_object_array_length(keys), 1);
	key = json_object_array_get_idx(keys, 0);
	cr_expect_str_eq(jstr(key, "use"), "x509-svid");
	cr_assert(json_object_object_get_ex(key, "x5c", &x5c));
	cr_assert_eq(json_object_array_length(x5c), 1);
	cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(x5c, 0)), b64);
	cr_assert(json_object_object_get_ex(doc, "spiffe_sequence", &v));
	cr_expect_eq(json_object_get_int64(v), 42);
	cr_assert(json_object_object_get_ex(doc, "spiffe_refresh_hint", &v));
	cr_expect_eq(json_object_get_int64(v), 60);

	json_object_put(doc);
	sk_X509_pop_free(roots, X509_free);
}

/* "td=DIR/name" for --bundle, in a static buffer per slot. */
static const char *bundle_arg(int slot, const char *td, const char *name)
{
	static char args[4][600];

	snprintf(args[slot], sizeof(args[slot]), "%s=%s/%s", td, dir, name);
	return args[slot];
}

Test(ca_tool, verify_accepts_the_genuine_chains)
{
	json_object *o, *v;
	time_t before, after;
	struct run r;

	before = time(NULL);
	make_trust_domain();
	after = time(NULL);

	/* the workload's SVID, via the node CA, against the JSON bundle */
	run_expect(&r, 0, "verify", "--bundle", bundle_arg(0, "example.org", "bundle.json"),
		   at(0, "web/svid.pem"));
	cr_expect_not_null(strstr(r.out, "spiffe://example.org/web (trust domain 'example.org'"),
			   "%s", r.out);

	/* the same as JSON, with the expected ID; expiry one hour after issuing */
	run_expect(&r, 0, "verify", "-j", "--bundle", bundle_arg(0, "example.org", "bundle.json"),
		   "--spiffe-id", "spiffe://example.org/web", at(0, "web/svid.pem"));
	o = output_json(&r);
	cr_assert(json_object_object_get_ex(o, "valid", &v));
	cr_expect(json_object_get_boolean(v));
	cr_expect_str_eq(jstr(o, "spiffe_id"), "spiffe://example.org/web");
	cr_expect_str_eq(jstr(o, "trust_domain"), "example.org");
	cr_assert(json_object_object_get_ex(o, "not_after_unix", &v));
	cr_expect(json_object_get_int64(v) >= before + 3600 &&
			  json_object_get_int64(v) <= after + 3600,
		  "not_after %lld outside [%lld, %lld]", (long long)json_object_get_int64(v),
		  (long long)before + 3600, (long long)after + 3600);
	json_object_put(o);

	/* the node's own SVID, against the root's PEM file as the bundle */
	run_expect(&r, 0, "verify", "--bundle", bundle_arg(0, "example.org", "root/ca.pem"),
		   "--spiffe-id", "spiffe://example.org/fedguard/node/n1", at(0, "n1/node.pem"));

	/* an SVID signed by the root itself */
	run_expect(&r, 0, "svid", "--ca", at(0, "root"), "--spiffe-id", "spiffe://example.org/db",
		   "--out", at(1, "db"));
	run_expect(&r, 0, "verify", "--bundle", bundle_arg(0, "example.org", "bundle.json"),
		   at(0, "db/svid.pem"));
}

/* verify must exit 1 with "rejected: " and the reason named in its JSON. */
static void expect_rejected(const char *bundle, const char *chain, const char *expected_id,
			    const char *reason, const char *mentions)
{
	json_object *o;
	struct run r;

	if (expected_id)
		run_ca(&r, "verify", "--bundle", bundle, "--spiffe-id", expected_id, chain, NULL);
	else
		run_ca(&r, "verify", "--bundle", bundle, chain, NULL);
	cr_expect_eq(r.status, 1, "%s: exit %d; stdout: %s; stderr: %s", chain, r.status, r.out,
		     r.err);
	cr_expect_eq(strncmp(r.out, "rejected: ", 10), 0, "%s: %s", chain, r.out);
	cr_expect_not_null(strstr(r.out, mentions), "%s: '%s' does not mention '%s'", chain, r.out,
			   mentions);

	if (expected_id)
		run_ca(&r, "verify", "-j", "--bundle", bundle, "--spiffe-id", expected_id, chain,
		       NULL);
	else
		run_ca(&r, "verify", "-j", "--bundle", bundle, chain, NULL);
	cr_expect_eq(r.status, 1);
	o = output_json(&r);
	cr_expect_str_eq(jstr(o, "reason"), reason, "%s", chain);
	json_object_put(o);
}

Test(ca_tool, verify_rejects_other_domains_and_forgeries)
{
	struct run r;

	make_trust_domain();

	/* other.org's own SVID: example.org's bundle says nothing about it */
	run_expect(&r, 0, "init", "--trust-domain", "other.org", "--out", at(0, "other"));
	run_expect(&r, 0, "svid", "--ca", at(0, "other"), "--spiffe-id", "spiffe://other.org/web",
		   "--out", at(1, "other-web"));
	expect_rejected(bundle_arg(0, "example.org", "bundle.json"), at(0, "other-web/svid.pem"),
			NULL, "no-bundle", "no bundle for trust domain 'other.org'");
	/* nor does example.org's root vouch for other.org */
	expect_rejected(bundle_arg(0, "other.org", "bundle.json"), at(0, "other-web/svid.pem"),
			NULL, "untrusted", "trust domain 'other.org'");

	/* a second CA claiming example.org, unknown to its bundle */
	run_expect(&r, 0, "init", "--trust-domain", "example.org", "--out", at(0, "forged"));
	run_expect(&r, 0, "svid", "--ca", at(0, "forged"), "--spiffe-id",
		   "spiffe://example.org/web", "--out", at(1, "forged-web"));
	expect_rejected(bundle_arg(0, "example.org", "bundle.json"), at(0, "forged-web/svid.pem"),
			NULL, "untrusted",
			"no path to the 1 X.509 authority of trust domain 'example.org'");

	/* the genuine SVID, but not the peer expected */
	expect_rejected(bundle_arg(0, "example.org", "bundle.json"), at(0, "web/svid.pem"),
			"spiffe://example.org/db", "id-mismatch",
			"SVID is 'spiffe://example.org/web', expected 'spiffe://example.org/db'");
}

Test(ca_tool, verify_rejects_a_tampered_chain)
{
	STACK_OF(X509) *chain = NULL;
	char why[SVID_WHY_MAX];
	X509 *bad;

	make_trust_domain();
	cr_assert_eq(svid_load_chain(at(0, "web/svid.pem"), &chain, why, sizeof(why)), 0, "%s",
		     why);
	bad = pki_tamper(sk_X509_value(chain, 0));
	cr_assert_not_null(bad);
	X509_free(sk_X509_value(chain, 0));
	sk_X509_set(chain, 0, bad);
	cr_assert_eq(pki_write_chain(at(0, "tampered.pem"), chain), 0);

	expect_rejected(bundle_arg(0, "example.org", "bundle.json"), at(0, "tampered.pem"), NULL,
			"bad-signature", "certificate signature failure");
	sk_X509_pop_free(chain, X509_free);
}

Test(ca_tool, a_ca_vouches_only_for_its_trust_domain)
{
	struct run r;

	make_trust_domain();
	run_expect(&r, 1, "svid", "--ca", at(0, "n1"), "--spiffe-id", "spiffe://other.org/web",
		   "--out", at(1, "x"));
	cr_expect_not_null(
		strstr(r.err, "'spiffe://other.org/web' is not in trust domain 'example.org'"),
		"%s", r.err);
	cr_expect_neq(access(at(0, "x/svid.pem"), F_OK), 0, "a file was written anyway");
	run_expect(&r, 1, "issue-node", "--ca", at(0, "n1"), "--node", "n2", "--out", at(1, "n2"));
	cr_expect_not_null(strstr(r.err, "holds no root CA"), "%s", r.err);
}

/* "sha256:" and the hex SHA-256 of key's DER public key, computed here. */
static void fingerprint(EVP_PKEY *key, char *buf, size_t len)
{
	unsigned char *der = NULL, md[SHA256_DIGEST_LENGTH];
	int n = i2d_PUBKEY(key, &der);
	size_t i;

	cr_assert(n > 0 && len >= 7 + 2 * sizeof(md) + 1);
	SHA256(der, (size_t)n, md);
	OPENSSL_free(der);
	strcpy(buf, "sha256:");
	for (i = 0; i < sizeof(md); i++)
		snprintf(buf + 7 + 2 * i, 3, "%02x", md[i]);
}

static EVP_PKEY *read_key(const char *path, bool private)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *key;

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	key = private ? PEM_read_PrivateKey(f, NULL, NULL, NULL)
		      : PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	cr_assert_not_null(key, "'%s' is not a PEM %s key", path, private ? "private" : "public");
	return key;
}

Test(ca_tool, policy_key_makes_an_ed25519_pair_and_refuses_to_overwrite)
{
	EVP_PKEY *priv, *pub;
	char fp[80];
	json_object *o;
	struct stat st;
	struct run r;

	run_expect(&r, 0, "policy-key", "--out", at(0, "policy"), "-j");
	cr_assert_eq(stat(at(0, "policy/policy.key"), &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600, "policy.key has mode %o", st.st_mode & 0777);
	cr_assert_eq(stat(at(0, "policy/policy.pub"), &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0644, "policy.pub has mode %o", st.st_mode & 0777);
	priv = read_key(at(0, "policy/policy.key"), true);
	pub = read_key(at(0, "policy/policy.pub"), false);
	cr_expect(EVP_PKEY_is_a(priv, "ED25519"), "policy.key is %s", EVP_PKEY_get0_type_name(priv));
	cr_expect_eq(EVP_PKEY_eq(priv, pub), 1, "policy.pub is not the public half of policy.key");
	fingerprint(pub, fp, sizeof(fp));
	o = output_json(&r);
	cr_expect_str_eq(jstr(o, "fingerprint"), fp);
	cr_expect_str_eq(jstr(o, "algorithm"), "ed25519");
	json_object_put(o);

	run_expect(&r, 1, "policy-key", "--out", at(0, "policy"));
	cr_expect_not_null(strstr(r.err, "policy/policy.key' exists: refusing to overwrite it"),
			   "%s", r.err);
	run_expect(&r, 0, "policy-key", "--out", at(0, "policy"), "--force");
	cr_expect_not_null(strstr(r.out, "sha256:"), "%s", r.out);
	EVP_PKEY_free(pub);
	pub = read_key(at(0, "policy/policy.pub"), false);
	cr_expect_neq(EVP_PKEY_eq(priv, pub), 1, "--force kept the old key");
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	run_expect(&r, 2, "policy-key");
	cr_expect_not_null(strstr(r.err, "--out is required"), "%s", r.err);
}
