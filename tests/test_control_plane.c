// SPDX-License-Identifier: Apache-2.0
/*
 * The control plane as an operator drives it: only fedguardd and
 * fedguardctl (the binaries named by $FEDGUARDD and $FEDGUARDCTL), two
 * workloads each in its own cgroup and network namespace, a policy file
 * allowing A -> B:8080/tcp and nothing else.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include <fedguard/abi.h>

#include "lib/mapfill.h"
#include "lib/require.h"
#include "lib/sandbox.h"

#define A "spiffe://mesh.test/ns/shop/a"
#define B "spiffe://mesh.test/ns/shop/b"

enum {
	ECHO_MS = 2000,
	ABORT_WAIT_MS = 2000,	/* bound on waiting for the torn-down socket */
	OUTPUT_MAX = 1 << 20,	/* policy apply --all lists thousands of entries */
};

static struct sandbox sb;
static char policy_path[PATH_MAX];
static char output[OUTPUT_MAX];

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

static long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

static void write_policy(void)
{
	FILE *f;

	snprintf(policy_path, sizeof(policy_path), "/tmp/fedguard-%s-policy.yaml", sb.instance);
	f = fopen(policy_path, "w");
	cr_assert_not_null(f);
	fprintf(f, "version: 1\n"
		   "rules:\n"
		   "  - name: a-calls-b\n"
		   "    action: allow\n"
		   "    transport: authenticated\n"
		   "    from: {spiffe_id: %s}\n"
		   "    to: {spiffe_id: %s}\n"
		   "    ports: [%d]\n"
		   "    protocols: [tcp]\n",
		   A, B, SB_ECHO_PORT);
	fclose(f);
}

static void register_workloads(void)
{
	cr_assert_eq(ctl("workload add --spiffe-id %s --cgroup %s --ip %s --ip %s "
			 "--netns /var/run/netns/%s --label app=a",
			 A, sb.cg_client, SB_CLIENT_V4, SB_CLIENT_V6, sb.ns_client), 0,
		     "workload add a: %s", output);
	cr_assert_eq(ctl("workload add --spiffe-id %s --cgroup %s --ip %s --ip %s "
			 "--netns /var/run/netns/%s --label app=b",
			 B, sb.cg_server, SB_SERVER_V4, SB_SERVER_V6, sb.ns_server), 0,
		     "workload add b: %s", output);
	write_policy();
	cr_assert_eq(ctl("policy apply %s", policy_path), 0, "policy apply: %s", output);
}

static void setup(void)
{
	int r;

	fg_test_require_root_bpf();
	cr_assert_not_null(getenv("FEDGUARDCTL"), "FEDGUARDCTL is not set");
	r = sb_setup(&sb, true);
	cr_assert_eq(r, 0, "sandbox: %s", strerror(-r));
	r = sb_agent_start(&sb);
	cr_assert_eq(r, 0, "fedguardd did not become ready (%s); log: %s", strerror(-r),
		     sb_log_path(&sb));
	register_workloads();
}

static void teardown(void)
{
	if (policy_path[0])
		unlink(policy_path);
	sb_teardown(&sb);
}

TestSuite(control_plane, .init = setup, .fini = teardown, .timeout = 120);

Test(control_plane, allowed_call)
{
	int fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);

	cr_assert_geq(fd, 0, "A -> B:8080 refused: %s", strerror(-fd));
	cr_expect_eq(sb_echo(fd, "a to b", ECHO_MS), 0);
	close(fd);
	fd = sb_connect(&sb, AF_INET6, SOCK_STREAM, SB_SERVER_V6, SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "A -> B:8080 over IPv6 refused: %s", strerror(-fd));
	cr_expect_eq(sb_echo(fd, "a to b", ECHO_MS), 0);
	close(fd);
}

Test(control_plane, denied_by_port)
{
	int fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_OTHER_PORT);

	cr_expect_eq(fd, -EPERM, "A -> B:8081: got %d", fd);
	fd = sb_connect(&sb, AF_INET, SOCK_DGRAM, SB_SERVER_V4, SB_ECHO_PORT);
	cr_expect_eq(fd, -EPERM, "A -> B:8080/udp: got %d", fd);
}

Test(control_plane, denied_by_identity)
{
	int fd = sb_connect_from(&sb, SB_SERVER, AF_INET, SOCK_STREAM, SB_CLIENT_V4, SB_ECHO_PORT);

	cr_expect_eq(fd, -EPERM, "B -> A:8080: got %d", fd);
}

Test(control_plane, policy_check_names_the_rule)
{
	cr_assert_eq(ctl("policy check %s %s %d/tcp", A, B, SB_ECHO_PORT), 0, "%s", output);
	cr_expect(strstr(output, "a-calls-b") != NULL, "check output: %s", output);
	cr_expect_eq(ctl("-j policy check %s %s %d/tcp", B, A, SB_ECHO_PORT), 0, "%s", output);
	cr_expect(strstr(output, "\"deny\"") != NULL, "check output: %s", output);
}

/* Waits (bounded) until the socket reports an error; returns it (positive errno) or 0. */
static int wait_for_error(int fd, long *at_us)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int err = 0;
	socklen_t len = sizeof(err);
	char c;

	if (poll(&p, 1, ABORT_WAIT_MS) != 1)
		return 0;
	*at_us = now_us();
	if (recv(fd, &c, 1, MSG_DONTWAIT) < 0)
		return errno;
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	return err;
}

Test(control_plane, quarantine_cuts_a_live_connection_and_release_restores)
{
	int fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	long start, seen = 0;
	int err;

	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	cr_assert_eq(sb_echo(fd, "before", ECHO_MS), 0);

	start = now_us();
	cr_assert_eq(ctl("quarantine add %s --reason test", A), 0, "quarantine add: %s", output);
	err = wait_for_error(fd, &seen);
	cr_expect_eq(err, ECONNABORTED, "the application saw %d (%s), not ECONNABORTED", err,
		     strerror(err));
	/* both local ends: A's socket and the one B accepted */
	cr_expect(strstr(output, "sockets destroyed: 2") != NULL, "agent said: %s", output);
	fprintf(stderr, "quarantine: connection aborted %.2f ms after 'fedguardctl quarantine "
			"add' started (CLI process included); agent said: %s",
		seen ? (seen - start) / 1000.0 : -1.0, output);
	close(fd);
	cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT), -EPERM,
		     "a quarantined identity connected");

	cr_assert_eq(ctl("quarantine del %s", A), 0, "quarantine del: %s", output);
	fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "after release: %s", strerror(-fd));
	cr_expect_eq(sb_echo(fd, "after release", ECHO_MS), 0);
	close(fd);
}

Test(control_plane, state_persists_across_restart)
{
	cr_assert_eq(ctl("quarantine add %s --reason persist", B), 0, "%s", output);
	cr_assert_eq(sb_agent_stop(&sb, SIGTERM), 0);

	/* no agent: the pinned maps keep enforcing the quarantine */
	cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT), -EPERM,
		     "quarantine not enforced while the agent is down");

	cr_assert_eq(sb_agent_start(&sb), 0, "restart; log: %s", sb_log_path(&sb));
	cr_expect_eq(ctl("-j workload list"), 0, "%s", output);
	cr_expect(strstr(output, A) && strstr(output, B), "workloads lost: %s", output);
	cr_expect_eq(ctl("-j quarantine list"), 0, "%s", output);
	cr_expect(strstr(output, B) != NULL, "quarantine lost: %s", output);
	cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT), -EPERM);

	cr_assert_eq(ctl("quarantine del %s", B), 0, "%s", output);
	int fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);

	cr_assert_geq(fd, 0, "policy lost across restart: %s", strerror(-fd));
	close(fd);
}

Test(control_plane, non_root_client_is_refused)
{
	char cmd[2048];
	int st;

	snprintf(cmd, sizeof(cmd),
		 "setpriv --reuid=65534 --regid=65534 --clear-groups %s --instance %s "
		 "workload list >/dev/null 2>&1",
		 getenv("FEDGUARDCTL"), sb.instance);
	st = system(cmd);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "a non-root client got status %d", st);
	cr_expect_eq(ctl("workload list"), 0, "root is refused: %s", output);
}

Test(control_plane, bad_input_changes_nothing)
{
	cr_expect_eq(ctl("workload add --spiffe-id spiffe://Mesh.test/x --cgroup %s", sb.cg_root),
		     1, "%s", output);
	cr_expect(strstr(output, "trust domain") != NULL, "message: %s", output);
	cr_expect_eq(ctl("quarantine add not-an-id"), 1, "%s", output);
	cr_expect_eq(ctl("workload frobnicate"), 2, "%s", output);
	int fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);

	cr_expect_geq(fd, 0, "allowed traffic broke after bad requests");
	if (fd >= 0)
		close(fd);
}

Test(control_plane, trust_domain_quarantine_covers_identities_registered_later)
{
	cr_assert_eq(ctl("quarantine add spiffe://mesh.test --reason td"), 0, "%s", output);
	cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT), -EPERM);

	/* A registered again, after the quarantine: still covered */
	cr_assert_eq(ctl("workload del %s", A), 0, "%s", output);
	cr_assert_eq(ctl("workload add --spiffe-id %s --cgroup %s --ip %s --netns /var/run/netns/%s",
			 A, sb.cg_client, SB_CLIENT_V4, sb.ns_client), 0, "%s", output);
	cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT), -EPERM,
		     "an identity registered after its trust domain's quarantine connected");

	cr_assert_eq(ctl("quarantine del spiffe://mesh.test"), 0, "%s", output);
	int fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);

	cr_expect_geq(fd, 0, "after release: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
}

Test(control_plane, invalid_policy_leaves_the_old_one_in_force)
{
	FILE *f = fopen(policy_path, "w");
	int fd;

	cr_assert_not_null(f);
	fputs("version: 2\nrules:\n  - name: broken\n    action: allow\n    from: any\n"
	      "    to: any\n    ports: [99999]\n", f);
	fclose(f);
	cr_expect_eq(ctl("policy apply %s", policy_path), 1, "%s", output);
	cr_expect(strstr(output, ":7:") != NULL && strstr(output, "broken") != NULL,
		  "error without line or rule name: %s", output);
	cr_expect_eq(ctl("-j policy show"), 0, "%s", output);
	cr_expect(strstr(output, "a-calls-b") != NULL, "old policy gone: %s", output);
	fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "allowed traffic broke after a refused policy: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
	cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_OTHER_PORT), -EPERM);
}

/* Writes a one-rule policy, a -> @to (a selector, or any) on @ports ("" for every port). */
static void write_rule(int version, const char *name, const char *to, const char *ports)
{
	FILE *f = fopen(policy_path, "w");

	cr_assert_not_null(f);
	fprintf(f, "version: %d\nrules:\n  - name: %s\n    action: allow\n"
		   "    transport: authenticated\n    from: {spiffe_id: %s}\n    to: %s\n"
		   "%s%s%s    protocols: [tcp]\n", version, name, A, to,
		   *ports ? "    ports: [" : "", ports, *ports ? "]\n" : "");
	fclose(f);
}

static size_t count_of(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/*
 * 800 ports make 1,600 entries: apply's lists stop at 1,000 of each unless
 * --all, the counts are always whole, and a removed entry names its rule in
 * the policy it leaves.
 */
Test(control_plane, apply_lists_a_thousand_entries_unless_asked_for_all)
{
	char to[256];

	snprintf(to, sizeof(to), "{spiffe_id: %s}", B);
	write_rule(2, "many", to, "\"9000-9799\"");

	cr_assert_eq(ctl("policy apply %s --dry-run", policy_path), 0, "%s", output);
	cr_expect(strstr(output, "1600 entries (+1600 -2), dry run") != NULL, "%s", output);
	cr_expect_eq(count_of(output, "\n+  "), 1000, "added rows listed");
	cr_expect_eq(count_of(output, "a-calls-b"), 2, "removed rows by their old rule: %.400s",
		     output);
	cr_expect(strstr(output, "(602 more entries not listed; --all lists every one)") == NULL,
		  "%s", output);
	cr_expect(strstr(output, "(600 more entries not listed; --all lists every one)") != NULL,
		  "no note of the rows left out: %s", output + strlen(output) - 200);

	cr_assert_eq(ctl("-j policy apply %s --dry-run", policy_path), 0, "%.400s", output);
	cr_expect(strstr(output, "\"added_count\":1600") != NULL, "%.400s", output);
	cr_expect(strstr(output, "\"removed_count\":2") != NULL, "%.400s", output);
	cr_expect(strstr(output, "\"truncated\":true") != NULL, "%.400s", output);
	cr_expect_eq(count_of(output, "\"rule\":\"many\""), 1000);

	cr_assert_eq(ctl("-j policy apply %s --dry-run --all", policy_path), 0, "%.400s", output);
	cr_expect_eq(count_of(output, "\"rule\":\"many\""), 1600);
	cr_expect(strstr(output, "\"truncated\":false") != NULL, "%.400s", output);

	cr_assert_eq(ctl("policy apply %s", policy_path), 0, "%s", output);
	cr_expect(strstr(output, "1600 entries (+1600 -2), generation") != NULL, "%s", output);
	cr_expect_eq(ctl("-j policy show"), 0);
	cr_expect_eq(count_of(output, "\"rule\":\"many\""), 1600, "entries in force");
	cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT), -EPERM,
		     "the old rule's port still passes");
}

/* A connection from a to b's port: 0, or the -errno of connect(). */
static int connect_and_close(int port)
{
	int fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, port);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

/* The shape the agent wrote into the generation entry of the policy in force. */
static __u8 shape_in_force(void)
{
	struct fg_policy_key meta = {.dir = FG_DIR_META};
	struct fg_policy_value v = {};
	int fd = sb_map(&sb, "fg_policy");

	cr_assert_geq(fd, 0, "fg_policy: %s", strerror(-fd));
	cr_assert_eq(bpf_map_lookup_elem(fd, &meta, &v), 0, "no generation entry");
	close(fd);
	cr_assert_eq(v.action, FG_ACT_META);
	return v.shape;
}

/*
 * The generation entry tells the datapath which wildcards the rules lack,
 * so that it skips their probes: none for exact rules, and each wildcard
 * clears its bit. Traffic follows the rules all the while.
 */
Test(control_plane, the_policy_in_force_says_which_wildcards_it_has)
{
	char to[256], port[16];

	cr_expect_eq(shape_in_force(), FG_SHAPE_NO_ANY_PEER | FG_SHAPE_NO_ANY_PORT,
		     "a-calls-b is exact");
	snprintf(to, sizeof(to), "{spiffe_id: %s}", B);
	write_rule(2, "a-calls-b-anywhere", to, "");
	cr_assert_eq(ctl("policy apply %s", policy_path), 0, "%s", output);
	cr_expect_eq(shape_in_force(), FG_SHAPE_NO_ANY_PEER, "every port: a port-0 entry");
	cr_expect_eq(connect_and_close(SB_OTHER_PORT), 0, "any port of b is allowed now");

	snprintf(port, sizeof(port), "%d", SB_ECHO_PORT);
	write_rule(3, "a-calls-anyone", "any", port);
	cr_assert_eq(ctl("policy apply %s", policy_path), 0, "%s", output);
	cr_expect_eq(shape_in_force(), FG_SHAPE_NO_ANY_PORT, "to any: an any-peer entry");
	cr_expect_eq(connect_and_close(SB_ECHO_PORT), 0, "the any-peer allow is probed");
	cr_expect_eq(connect_and_close(SB_OTHER_PORT), -EPERM);
}

/* The identity fg_ipcache holds for the host route of @addr, 0 when it has none. */
static __u32 ipcache_identity(const char *addr)
{
	struct fg_ipcache_key k = {};
	struct fg_ipcache_value v = {};
	int fd = sb_map(&sb, "fg_ipcache"), r;

	cr_assert_geq(fd, 0, "fg_ipcache: %s", strerror(-fd));
	cr_assert_eq(fg_test_addr_parse(addr, &k.family, k.addr), 0);
	k.prefixlen = FG_IPCACHE_PREFIX_BASE + (k.family == FG_AF_INET ? 32 : 128);
	r = bpf_map_lookup_elem(fd, &k, &v);
	close(fd);
	return r ? 0 : v.identity;
}

/* Entries in fg_ipcache. */
static int ipcache_entries(void)
{
	struct fg_ipcache_key k, *prev = NULL, next;
	int fd = sb_map(&sb, "fg_ipcache"), n = 0;

	cr_assert_geq(fd, 0);
	while (bpf_map_get_next_key(fd, prev, &next) == 0 && n < 100000) {
		k = next;
		prev = &k;
		n++;
	}
	close(fd);
	return n;
}

/*
 * The agent writes only what a registration changes: the map must still
 * follow every change exactly. An endpoint's address comes, goes, comes
 * back elsewhere; a workload's addresses go with it.
 */
Test(control_plane, the_ipcache_follows_each_registration_exactly)
{
	const char *e = "spiffe://mesh.test/ns/shop/e";
	int base = ipcache_entries();
	__u32 id;

	cr_assert_eq(ctl("endpoint add --spiffe-id %s --ip 10.77.0.1 --label v=1", e), 0, "%s",
		     output);
	id = ipcache_identity("10.77.0.1");
	cr_expect_neq(id, 0, "no entry for the endpoint's address");
	cr_expect_eq(ipcache_entries(), base + 1);

	cr_assert_eq(ctl("endpoint del %s", e), 0, "%s", output);
	cr_expect_eq(ipcache_identity("10.77.0.1"), 0, "the entry outlived its endpoint");
	cr_expect_eq(ipcache_entries(), base);

	cr_assert_eq(ctl("endpoint add --spiffe-id %s --ip 10.77.0.2 --ip fd77::2", e), 0, "%s",
		     output);
	cr_expect_eq(ipcache_identity("10.77.0.1"), 0, "the old address came back");
	cr_expect_neq(ipcache_identity("10.77.0.2"), 0);
	cr_expect_neq(ipcache_identity("fd77::2"), 0);
	cr_expect_eq(ipcache_entries(), base + 2);

	cr_assert_eq(ctl("workload del %s", B), 0, "%s", output);
	cr_expect_eq(ipcache_identity(SB_SERVER_V4), 0, "a deleted workload's address stays");
	cr_expect_eq(ipcache_entries(), base);
	cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT), -EPERM,
		     "a call to a deleted workload passes");
}
