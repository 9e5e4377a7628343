// SPDX-License-Identifier: Apache-2.0
/*
 * Kernel tests of the whole datapath as fedguardd installs it: a real
 * agent, a workload process in a cgroup of the managed subtree, in its own
 * network namespace, talking over a veth to an echo server. Identities and
 * policy are registered through the control socket; quarantine and the
 * removal of an identity are written straight into the pinned maps, to see
 * the datapath alone act on them.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <fedguard/abi.h>

#include "lib/require.h"
#include "lib/sandbox.h"

enum {
	ECHO_MS = 2000,
	SILENCE_MS = 500,	/* how long a dropped message is waited for */
	CONNECTIONS = 1000,
};

#define CLIENT "spiffe://fedguard.test/client"
#define SERVER "spiffe://fedguard.test/server"

static struct sandbox sb;
static __u32 client_id, server_id;

/* The client workload and the server endpoint, registered as an operator would. */
static void register_identities(void)
{
	char args[PATH_MAX + 512];

	snprintf(args, sizeof(args),
		 "{\"spiffe_id\": \"%s\", \"cgroup\": \"%s\", \"ips\": [\"%s\", \"%s\"],"
		 " \"netns\": \"/var/run/netns/%s\"}",
		 CLIENT, sb.cg_client, SB_CLIENT_V4, SB_CLIENT_V6, sb.ns_client);
	client_id = sb_request_id(&sb, "workload.add", args);
	snprintf(args, sizeof(args), "{\"spiffe_id\": \"%s\", \"ips\": [\"%s\", \"%s\"]}",
		 SERVER, SB_SERVER_V4, SB_SERVER_V6);
	server_id = sb_request_id(&sb, "endpoint.add", args);
	cr_assert(client_id >= FG_ID_DYNAMIC_MIN && server_id >= FG_ID_DYNAMIC_MIN);
}

/* Applies a policy allowing client -> server on @port (TCP and UDP). */
static void allow_port(int port)
{
	char doc[512];

	snprintf(doc, sizeof(doc),
		 "version: 1\nrules:\n  - name: client-to-server\n    action: allow\n"
		 "    transport: authenticated\n"
		 "    from: {spiffe_id: %s}\n    to: {spiffe_id: %s}\n    ports: [%d]\n",
		 CLIENT, SERVER, port);
	cr_assert_eq(sb_policy_apply(&sb, doc), 0, "policy.apply failed");
}

static void allow_echo(void)
{
	allow_port(SB_ECHO_PORT);
}

static __u64 counter(__u32 reason)
{
	int ncpu = libbpf_num_possible_cpus();
	struct fg_counter c[ncpu];
	int fd = sb_map(&sb, "fg_counters");
	__u64 sum = 0;

	cr_assert_geq(fd, 0);
	cr_assert_eq(bpf_map_lookup_elem(fd, &reason, c), 0);
	close(fd);
	for (int i = 0; i < ncpu; i++)
		sum += c[i].packets;
	return sum;
}

/* Entries of fg_sockets bound to @local_id. */
static int sockets_of(__u32 local_id)
{
	int fd = sb_map(&sb, "fg_sockets");
	__u64 key, next, *prev = NULL;
	struct fg_sock_binding b;
	int n = 0;

	cr_assert_geq(fd, 0);
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(fd, &next, &b) == 0 && b.local_id == local_id)
			n++;
		key = next;
		prev = &key;
	}
	close(fd);
	return n;
}

static void setup(void)
{
	int r;

	fg_test_require_root_bpf();
	r = sb_setup(&sb, false);
	cr_assert_eq(r, 0, "sandbox: %s", strerror(-r));
	r = sb_agent_start(&sb);
	cr_assert_eq(r, 0, "fedguardd did not become ready (%s); its log: %s", strerror(-r),
		     sb_log_path(&sb));
	register_identities();
}

static void teardown(void)
{
	sb_teardown(&sb);
}

TestSuite(datapath, .init = setup, .fini = teardown, .timeout = 120);

Test(datapath, allowed_connection_carries_data)
{
	int fd;

	allow_echo();
	fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	cr_expect_eq(sb_echo(fd, "hello over v4", ECHO_MS), 0);
	close(fd);

	fd = sb_connect(&sb, AF_INET6, SOCK_STREAM, SB_SERVER_V6, SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "connect6: %s", strerror(-fd));
	cr_expect_eq(sb_echo(fd, "hello over v6", ECHO_MS), 0);
	close(fd);

	fd = sb_connect(&sb, AF_INET, SOCK_DGRAM, SB_SERVER_V4, SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "udp connect: %s", strerror(-fd));
	cr_expect_eq(sb_echo(fd, "hello over udp", ECHO_MS), 0);
	close(fd);
}

Test(datapath, connect_without_allow_fails_with_eperm)
{
	__u64 before = counter(FG_REASON_DENY_POLICY);
	int fd;

	/* default deny: the agent's initial policy is empty */
	fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	cr_expect_eq(fd, -EPERM, "connect with no policy: got %d (%s)", fd, strerror(-fd));

	allow_echo();
	fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_OTHER_PORT);
	cr_expect_eq(fd, -EPERM, "connect to a port policy does not allow: got %d", fd);
	fd = sb_connect(&sb, AF_INET6, SOCK_STREAM, SB_SERVER_V6, SB_OTHER_PORT);
	cr_expect_eq(fd, -EPERM, "connect6 to a port policy does not allow: got %d", fd);
	cr_expect_geq(counter(FG_REASON_DENY_POLICY), before + 3);
}

Test(datapath, unregistered_process_is_denied)
{
	int fd, cg = sb_map(&sb, "fg_cgroups");

	allow_echo();
	cr_assert_geq(cg, 0);
	cr_assert_eq(bpf_map_delete_elem(cg, &sb.client_cgid), 0);
	close(cg);
	fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	cr_expect_eq(fd, -EPERM, "a process without identity connected: %d", fd);
}

Test(datapath, quarantine_stops_established_connection)
{
	struct fg_quarantine_key k = { .kind = FG_Q_IDENTITY, .id = client_id };
	struct fg_quarantine_value v = { .since_ns = 1, .reason = 1 };
	__u64 before;
	int fd, q;

	allow_echo();
	fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	cr_assert_eq(sb_echo(fd, "before", ECHO_MS), 0);

	before = counter(FG_REASON_DENY_QUARANTINE_LOCAL);
	q = sb_map(&sb, "fg_quarantine");
	cr_assert_geq(q, 0);
	cr_assert_eq(bpf_map_update_elem(q, &k, &v, BPF_ANY), 0);
	close(q);

	cr_expect_eq(sb_echo(fd, "after", SILENCE_MS), -ETIMEDOUT,
		     "traffic of a quarantined identity still flows");
	cr_expect_gt(counter(FG_REASON_DENY_QUARANTINE_LOCAL), before);
	cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT), -EPERM);
	close(fd);
}

Test(datapath, socket_state_released_after_close)
{
	int fd, n;

	allow_echo();
	fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	cr_assert_geq(fd, 0);
	cr_expect_eq(sockets_of(client_id), 1, "an open connection has one binding");
	close(fd);

	n = sb_connect_many(&sb, SB_SERVER_V4, SB_ECHO_PORT, CONNECTIONS);
	cr_expect_eq(n, CONNECTIONS, "only %d of %d connections succeeded", n, CONNECTIONS);
	cr_expect_eq(sockets_of(client_id), 0, "fg_sockets keeps entries of closed sockets");
}

/* Ids of the links pinned under <pin_dir>/links, in directory order. */
static int link_ids(__u32 *ids, int max)
{
	char dir[PATH_MAX], path[PATH_MAX * 2];
	struct dirent *e;
	int count = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%.3000s/links", sb.pin_dir);
	d = opendir(dir);
	cr_assert_not_null(d, "no pinned links at %s", dir);
	while ((e = readdir(d)) && count < max) {
		struct bpf_link_info info = {};
		__u32 len = sizeof(info);
		int fd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		fd = bpf_obj_get(path);
		cr_assert_geq(fd, 0, "open link %s", path);
		cr_assert_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
		ids[count++] = info.id;
		close(fd);
	}
	closedir(d);
	return count;
}

Test(datapath, enforcement_survives_agent_kill_and_is_adopted)
{
	__u32 before[64], after[64];
	int nb, na, fd;

	allow_echo();
	fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	cr_assert_geq(fd, 0);
	nb = link_ids(before, 64);
	cr_assert_eq(nb, 10, "expected 10 pinned cgroup links, found %d", nb);

	cr_assert_eq(sb_agent_stop(&sb, SIGKILL), 0);
	cr_expect_eq(sb_echo(fd, "agent gone", ECHO_MS), 0, "allowed connection broke");
	cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_OTHER_PORT), -EPERM,
		     "denied connect passed while the agent was dead");

	cr_assert_eq(sb_agent_start(&sb), 0, "restart failed; log: %s", sb_log_path(&sb));
	cr_expect(sb_sh("grep -q adopted %s", sb_log_path(&sb)) == 0, "restart did not adopt");
	na = link_ids(after, 64);
	cr_expect_eq(na, nb, "links changed across restart");
	for (int i = 0; i < na && i < nb; i++)
		cr_expect_eq(after[i], before[i], "link %d replaced instead of adopted", i);
	cr_expect_eq(sb_echo(fd, "agent back", ECHO_MS), 0, "allowed connection broke on adopt");
	cr_expect_eq(sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_OTHER_PORT), -EPERM);
	close(fd);
}

Test(datapath, bpftool_shows_names)
{
	allow_echo();
	cr_expect_eq(sb_sh("bpftool map dump pinned %s/fg_policy | grep -q '\"src_id\": %u'",
			   sb.pin_dir, client_id), 0, "policy dump lacks BTF field names");
	cr_expect_eq(sb_sh("bpftool map dump pinned %s/fg_cgroups | grep -q '\"identity\": %u'",
			   sb.pin_dir, client_id), 0, "fg_cgroups dump lacks BTF field names");
	cr_expect_eq(sb_sh("bpftool prog show | grep -q 'name fg_connect4'"), 0);
	cr_expect_eq(sb_sh("bpftool prog show | grep -q 'name fg_skb_egress'"), 0);
}
