// SPDX-License-Identifier: Apache-2.0
/*
 * Signed policies end to end: fedguardd started with --policy-key (a key
 * pair made here with OpenSSL), policies signed with fedguardctl policy
 * sign, and every refusal (unsigned, another key, a changed document, an
 * older version, a tampered state file) checked to leave the policy in
 * force enforcing as before.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "lib/require.h"
#include "lib/sandbox.h"

#define A "spiffe://mesh.test/ns/shop/a"
#define B "spiffe://mesh.test/ns/shop/b"

enum {
	OUTPUT_MAX = 65536,
};

static struct sandbox sb;
static char output[OUTPUT_MAX];
static char dir[PATH_MAX]; /* keys and policies of the test */
static char pub_path[PATH_MAX + 16];

/* Runs fedguardctl for the sandbox's instance; its exit status, output in `output`. */
__attribute__((format(printf, 1, 2))) static int ctl(const char *fmt, ...)
{
	char args[2048], cmd[4096];
	size_t n;
	va_list ap;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s --instance %s %s 2>&1", getenv("FEDGUARDCTL"), sb.instance,
		 args);
	p = popen(cmd, "r");
	cr_assert_not_null(p, "popen %s", cmd);
	n = fread(output, 1, sizeof(output) - 1, p);
	output[n] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A new Ed25519 key pair: DIR/NAME.key, and DIR/NAME.pub when pub is set. */
static void make_key(const char *name, bool pub)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	char path[PATH_MAX + 16];
	FILE *f;

	cr_assert_not_null(key);
	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	f = fopen(path, "w");
	cr_assert(f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
	fclose(f);
	if (pub) {
		f = fopen(pub_path, "w");
		cr_assert(f && PEM_write_PUBKEY(f, key));
		fclose(f);
	}
	EVP_PKEY_free(key);
}

/* DIR/NAME.yaml: policy version `version` allowing A -> B on `port`; its path. */
static const char *policy(const char *name, int version, int port)
{
	static char path[PATH_MAX + 16];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.yaml", dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f,
		"version: %d\n"
		"rules:\n"
		"  - name: a-calls-b-%d\n"
		"    action: allow\n"
		"    transport: authenticated\n"
		"    from: {spiffe_id: %s}\n"
		"    to: {spiffe_id: %s}\n"
		"    ports: [%d]\n"
		"    protocols: [tcp]\n",
		version, port, A, B, port);
	fclose(f);
	return path;
}

/* Signs path with DIR/KEY.key into path.sig. */
static void sign(const char *path, const char *key)
{
	cr_assert_eq(ctl("policy sign %s --key %s/%s.key", path, dir, key), 0, "sign: %s", output);
}

/* A -> B:port allowed (1) or refused with EPERM (0). */
static int allowed(int port)
{
	int fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, port);

	if (fd >= 0) {
		close(fd);
		return 1;
	}
	cr_assert_eq(fd, -EPERM, "A -> B:%d: %s", port, strerror(-fd));
	return 0;
}

/* Policy version 1 (port 8080) in force, and version 2 (8081) neither applied nor allowed. */
static void expect_v1_in_force(const char *after)
{
	cr_expect_eq(allowed(SB_ECHO_PORT), 1, "%s: A -> B:%d no longer allowed", after,
		     SB_ECHO_PORT);
	cr_expect_eq(allowed(SB_OTHER_PORT), 0, "%s: A -> B:%d allowed", after, SB_OTHER_PORT);
	cr_expect_eq(ctl("-j policy show"), 0, "%s", output);
	cr_expect_not_null(strstr(output, "\"version\":1"), "%s: %s", after, output);
}

static void start_agent(void)
{
	int r = sb_agent_start_args(&sb, "--policy-key", pub_path, NULL);

	cr_assert_eq(r, 0, "fedguardd did not become ready (%s); log: %s", strerror(-r),
		     sb_log_path(&sb));
}

static void setup(void)
{
	const char *v1;
	int r;

	fg_test_require_root_bpf();
	cr_assert_not_null(getenv("FEDGUARDCTL"), "FEDGUARDCTL is not set");
	r = sb_setup(&sb, true);
	cr_assert_eq(r, 0, "sandbox: %s", strerror(-r));
	snprintf(dir, sizeof(dir), "/tmp/fedguard-%s-signed", sb.instance);
	cr_assert_eq(sb_sh("mkdir -p %s", dir), 0);
	snprintf(pub_path, sizeof(pub_path), "%s/mesh.pub", dir);
	make_key("mesh", true);
	make_key("rogue", false);
	start_agent();
	cr_assert_eq(ctl("workload add --spiffe-id %s --cgroup %s --ip %s "
			 "--netns /var/run/netns/%s",
			 A, sb.cg_client, SB_CLIENT_V4, sb.ns_client),
		     0, "workload add a: %s", output);
	cr_assert_eq(ctl("workload add --spiffe-id %s --cgroup %s --ip %s "
			 "--netns /var/run/netns/%s",
			 B, sb.cg_server, SB_SERVER_V4, sb.ns_server),
		     0, "workload add b: %s", output);
	v1 = policy("v1", 1, SB_ECHO_PORT);
	sign(v1, "mesh");
	cr_assert_eq(ctl("policy apply %s", v1), 0, "signed policy apply: %s", output);
}

static void teardown(void)
{
	sb_teardown(&sb);
	if (dir[0])
		sb_sh("rm -rf %s", dir);
}

TestSuite(signed_policy, .init = setup, .fini = teardown, .timeout = 120);

Test(signed_policy, a_signed_policy_applies_and_enforces)
{
	const char *v2;

	expect_v1_in_force("the signed policy");
	v2 = policy("v2", 2, SB_OTHER_PORT);
	sign(v2, "mesh");
	cr_assert_eq(ctl("policy apply %s --dry-run", v2), 0, "dry run: %s", output);
	cr_assert_eq(ctl("policy apply %s", v2), 0, "apply v2: %s", output);
	cr_expect_eq(allowed(SB_OTHER_PORT), 1, "v2 not in force");
	cr_expect_eq(allowed(SB_ECHO_PORT), 0, "v1 still in force");
}

Test(signed_policy, only_a_valid_document_is_signed)
{
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/empty.yaml", dir);
	cr_assert_eq(sb_sh("printf 'version: 3\\nrules: []\\n' > %s", path), 0);
	cr_expect_eq(ctl("policy sign %s --key %s/mesh.key", path, dir), 1, "%s", output);
	cr_expect_not_null(strstr(output, "not signed: "), "%s", output);
	cr_expect_not_null(strstr(output, "empty list"), "%s", output);
	cr_expect_neq(sb_sh("test -e %s.sig", path), 0, "a signature was written");
	cr_expect_eq(ctl("policy sign %s", path), 2, "no --key: %s", output);
}

Test(signed_policy, an_unsigned_policy_is_refused)
{
	const char *v2 = policy("v2", 2, SB_OTHER_PORT);

	cr_expect_eq(ctl("policy apply %s", v2), 1, "unsigned policy: %s", output);
	cr_expect_not_null(strstr(output, "policy version 2 is not signed"), "%s", output);
	cr_expect_eq(ctl("policy apply %s --dry-run", v2), 1, "unsigned dry run: %s", output);
	expect_v1_in_force("an unsigned policy");
}

Test(signed_policy, a_policy_signed_with_another_key_is_refused)
{
	const char *v2 = policy("v2", 2, SB_OTHER_PORT);

	sign(v2, "rogue");
	cr_expect_eq(ctl("policy apply %s", v2), 1, "rogue key: %s", output);
	cr_expect_not_null(strstr(output, "signed by another key"), "%s", output);
	expect_v1_in_force("a policy of another key");
}

Test(signed_policy, a_document_changed_after_signing_is_refused)
{
	char path[PATH_MAX + 16];
	const char *v2 = policy("v2", 2, SB_OTHER_PORT);

	sign(v2, "mesh");
	snprintf(path, sizeof(path), "%s", v2);
	/* same version, the signature moved along: the port changes to 8080 + 8081 */
	cr_assert_eq(sb_sh("sed -i 's/ports: \\[%d\\]/ports: [%d, %d]/' %s", SB_OTHER_PORT,
			   SB_ECHO_PORT, SB_OTHER_PORT, path),
		     0);
	cr_expect_eq(ctl("policy apply %s", path), 1, "changed document: %s", output);
	cr_expect_not_null(strstr(output, "bad signature"), "%s", output);
	expect_v1_in_force("a changed document");
}

Test(signed_policy, a_replayed_older_version_is_refused)
{
	char sig[PATH_MAX + 16];
	const char *v2 = policy("v2", 2, SB_OTHER_PORT);

	sign(v2, "mesh");
	cr_assert_eq(ctl("policy apply %s", v2), 0, "apply v2: %s", output);
	snprintf(sig, sizeof(sig), "%s/v1.yaml.sig", dir);
	cr_expect_eq(ctl("policy apply %s/v1.yaml --signature %s", dir, sig), 1, "replay: %s",
		     output);
	cr_expect_not_null(strstr(output, "policy version 1 is not newer than version 2 in force: "
					  "refused (rollback)"),
			   "%s", output);
	cr_expect_eq(ctl("policy apply %s", v2), 1, "same version again: %s", output);
	cr_expect_not_null(strstr(output, "policy version 2 is not newer than version 2"), "%s",
			   output);
	cr_expect_eq(allowed(SB_OTHER_PORT), 1, "v2 no longer in force after the replay");
	cr_expect_eq(allowed(SB_ECHO_PORT), 0, "the replayed v1 is enforced");
}

Test(signed_policy, a_restart_checks_the_stored_policy_again)
{
	char state[PATH_MAX + 16];

	cr_assert_eq(sb_agent_stop(&sb, SIGTERM), 0);
	start_agent();
	expect_v1_in_force("a restart");

	/* the stored document now allows 8081 too; its signature does not cover that */
	cr_assert_eq(sb_agent_stop(&sb, SIGTERM), 0);
	snprintf(state, sizeof(state), "%s/state.json", sb_state_dir(&sb));
	cr_assert_eq(sb_sh("sed -i 's/ports: \\[%d\\]/ports: [%d, %d]/' %s", SB_ECHO_PORT,
			   SB_ECHO_PORT, SB_OTHER_PORT, state),
		     0);
	cr_assert_eq(sb_sh("grep -q '%d, %d' %s", SB_ECHO_PORT, SB_OTHER_PORT, state), 0,
		     "the state file was not changed");
	cr_expect_eq(sb_agent_start_args(&sb, "--policy-key", pub_path, NULL), -ECHILD,
		     "fedguardd started on a tampered state file");
	cr_expect_eq(
		sb_sh("grep -q 'fails its signature check: bad signature' %s", sb_log_path(&sb)), 0,
		"no reason in the log %s", sb_log_path(&sb));
	/* no agent: the pinned maps keep enforcing version 1 as signed */
	cr_expect_eq(allowed(SB_ECHO_PORT), 1, "8080 no longer allowed");
	cr_expect_eq(allowed(SB_OTHER_PORT), 0, "the tampered policy is enforced");
}

Test(signed_policy, an_agent_without_the_key_warns_and_its_unsigned_policy_stops_a_keyed_start)
{
	const char *v2 = policy("v2", 2, SB_OTHER_PORT);
	int r;

	cr_assert_eq(sb_agent_stop(&sb, SIGTERM), 0);
	r = sb_agent_start(&sb);
	cr_assert_eq(r, 0, "fedguardd without --policy-key: %s; log: %s", strerror(-r),
		     sb_log_path(&sb));
	cr_expect_eq(sb_sh("grep -q 'no --policy-key: policy documents are applied without a "
			   "signature check' %s",
			   sb_log_path(&sb)),
		     0, "no warning in %s", sb_log_path(&sb));
	cr_assert_eq(ctl("policy apply %s", v2), 0, "unsigned policy without a key: %s", output);

	cr_assert_eq(sb_agent_stop(&sb, SIGTERM), 0);
	cr_expect_eq(sb_agent_start_args(&sb, "--policy-key", pub_path, NULL), -ECHILD,
		     "fedguardd --policy-key started on an unsigned policy");
	cr_expect_eq(sb_sh("grep -q 'the policy in force is not signed' %s", sb_log_path(&sb)), 0,
		     "no reason in the log %s", sb_log_path(&sb));
	cr_expect_eq(allowed(SB_OTHER_PORT), 1, "the pinned datapath lost version 2");
	cr_expect_eq(allowed(SB_ECHO_PORT), 0, "version 1 came back");
}
