// SPDX-License-Identifier: Apache-2.0
/*
 * The encrypted transport end to end: two meshes (a.test, b.test) of two
 * nodes each (tests/lib/fedworld.h), every agent with --tunnel-listen.
 * Policy, the same in both meshes: a1's workload calls b1's across the
 * meshes (no transport said: encrypted), and a2's inside mesh a with
 * `transport: authenticated` (the direct path, mTLS between the agents).
 *
 * What crosses between the nodes is captured with tcpdump on the bridge
 * they share: a known payload sent through the tunnel must not be in the
 * capture, while the payload of the direct flow must be (so the capture
 * itself is shown to work).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "auth.h"
#include "lib/etcd.h"
#include "lib/fedworld.h"
#include "lib/require.h"
#include "lib/sandbox.h"

enum {
	WAIT_MS = 15000,
	ECHO_MS = 3000,
	TUNNEL_PORT = 18446,	/* the redirect listener is on the next port */
	METRICS_PORT = 18464,
};

static struct fw_world w;
static struct fw_node *a1 = &w.node[0], *a2 = &w.node[1], *b1 = &w.node[2];

/* --- the world -------------------------------------------------------------------------------- */

/* Every agent with the tunnel, metrics on its node's address, and allowed flows reported. */
static const char *const *agent_args(const struct fw_node *n, void *ctx)
{
	static char tunnel[FW_NODES_MAX][64], metrics[FW_NODES_MAX][64];
	static const char *args[FW_NODES_MAX][4];
	int i = n->idx - 1;

	snprintf(tunnel[i], sizeof(tunnel[i]), "--tunnel-listen=%s:%d", n->addr, TUNNEL_PORT);
	snprintf(metrics[i], sizeof(metrics[i]), "--metrics-listen=%s:%d", n->addr, METRICS_PORT);
	args[i][0] = tunnel[i];
	args[i][1] = metrics[i];
	args[i][2] = "--log-allowed";
	args[i][3] = NULL;
	return args[i];
}

static void world_up(void)
{
	char why[256];

	fg_test_require_root_bpf();
	fg_etcd_require();
	if (fw_up(&w, 2, 2, agent_args, NULL, why, sizeof(why)))
		cr_assert_fail("%s", why);
}

static void world_down(void)
{
	fw_teardown(&w);
}

TestSuite(tunnel, .init = world_up, .fini = world_down, .timeout = 300);

static const char *policy(void)
{
	static char doc[2048];

	snprintf(doc, sizeof(doc),
		 "version: 1\n"
		 "rules:\n"
		 "  - name: a1-to-b1\n"
		 "    action: allow\n"
		 "    from: {spiffe_id: %s}\n"
		 "    to: {spiffe_id: %s}\n"
		 "    ports: [8080]\n"
		 "  - name: a1-to-a2\n"
		 "    action: allow\n"
		 "    transport: authenticated\n"
		 "    auth: required\n"
		 "    from: {spiffe_id: %s}\n"
		 "    to: {spiffe_id: %s}\n"
		 "    ports: [8080]\n",
		 a1->wid, b1->wid, a1->wid, a2->wid);
	return doc;
}

static long policy_version(struct fw_node *n)
{
	struct json_object *res = NULL, *p, *v;
	long version = -1;

	if (fw_request(n, "status", NULL, &res) == 0 &&
	    json_object_object_get_ex(res, "policy", &p) && json_object_object_get_ex(p, "version", &v))
		version = json_object_get_int64(v);
	json_object_put(res);
	return version;
}

/* o's member name as a string, "" when o has none: records differ in what they carry. */
static const char *member_str(struct json_object *o, const char *name)
{
	const char *s = json_object_get_string(json_object_object_get(o, name));

	return s ? s : "";
}

static bool knows(struct fw_node *n, const char *id)
{
	struct json_object *res = NULL, *list;
	bool found = false;

	if (fw_request(n, "endpoint.list", NULL, &res) == 0 &&
	    json_object_object_get_ex(res, "endpoints", &list))
		for (size_t i = 0; !found && i < json_object_array_length(list); i++)
			found = strcmp(member_str(json_object_array_get_idx(list, i),
						  "spiffe_id"), id) == 0;
	json_object_put(res);
	return found;
}

/* Both meshes' policy in force everywhere, and the endpoints each side needs. */
static void ready(void)
{
	struct { struct fw_node *at; const char *id; } need[] = {
		{ a1, b1->wid }, { b1, a1->wid }, { a1, a2->wid }, { a2, a1->wid },
	};
	char out[4096];
	long t0;

	cr_assert_eq(fw_policy_apply(&w, a1, policy(), NULL, out, sizeof(out)), 0, "%s", out);
	cr_assert_eq(fw_policy_apply(&w, b1, policy(), NULL, out, sizeof(out)), 0, "%s", out);
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		t0 = fw_now_ms();
		while (fw_now_ms() - t0 < WAIT_MS &&
		       (!knows(need[i].at, need[i].id) || policy_version(need[i].at) != 1))
			usleep(20000);
		cr_assert(knows(need[i].at, need[i].id), "%s learns '%s'", need[i].at->name,
			  need[i].id);
	}
}

/* A tunnel status field of n's agent, or -1. */
static long tunnel_field(struct fw_node *n, const char *field)
{
	struct json_object *res = NULL, *t, *v;
	long value = -1;

	if (fw_request(n, "status", NULL, &res) == 0 && json_object_object_get_ex(res, "tunnel", &t) &&
	    json_object_object_get_ex(t, field, &v))
		value = json_object_get_int64(v);
	json_object_put(res);
	return value;
}

/* The tunnel's lines of the agents' logs, for a failure to explain itself. */
static void logs_tail(void)
{
	for (int i = 0; i < w.n_nodes; i++)
		sb_sh("grep -h 'tunnel' %s | tail -n 5 >&2", fw_log_path(&w.node[i]));
}

/* GET /metrics of n's agent, from n's node namespace: the response, in out. */
static void scrape(struct fw_node *n, char *out, size_t len)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: fedguard\r\nConnection: close\r\n\r\n";
	int fd = sb_connect_in(NULL, n->ns, AF_INET, SOCK_STREAM, n->addr, METRICS_PORT);
	size_t have = 0;
	ssize_t r;

	out[0] = 0;
	cr_assert_geq(fd, 0, "metrics of %s: %s", n->name, strerror(-fd));
	cr_assert_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	for (long t0 = fw_now_ms(); have < len - 1 && fw_now_ms() - t0 < 5000;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 1000) <= 0)
			continue;
		r = read(fd, out + have, len - 1 - have);
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	out[have] = 0;
	close(fd);
}

/* --- capture ---------------------------------------------------------------------------------- */

struct capture {
	pid_t pid;
	char path[PATH_MAX + 16];
};

/* tcpdump on the bridge between the nodes, writing every packet as it comes. */
static void capture_start(struct capture *c)
{
	snprintf(c->path, sizeof(c->path), "%s/wire.pcap", w.dir);
	c->pid = fork();
	cr_assert_geq(c->pid, 0);
	if (c->pid == 0) {
		/*
		 * -Z root: the capture goes into the world's directory, root's alone;
		 * --immediate-mode: no packet waits in the kernel's buffer when it stops
		 */
		execlp("ip", "ip", "netns", "exec", w.xns, "tcpdump", "-Z", "root",
		       "--immediate-mode", "-i", "br0", "-U", "-s", "0", "-w", c->path,
		       (char *)NULL);
		_exit(127);
	}
	/* tcpdump says nothing on stdout when it is ready: wait for its file */
	for (int i = 0; i < 300 && access(c->path, F_OK); i++)
		usleep(10000);
	usleep(200000);
	cr_assert_eq(access(c->path, F_OK), 0, "tcpdump did not start");
}

static void capture_stop(struct capture *c)
{
	usleep(200000);	/* what is in flight reaches the file */
	kill(c->pid, SIGTERM);
	waitpid(c->pid, NULL, 0);
}

/* Whether the capture holds needle anywhere, in any packet. */
static bool captured(const struct capture *c, const char *needle)
{
	return sb_sh("grep -qaF '%s' %s", needle, c->path) == 0;
}

/* --- tests ------------------------------------------------------------------------------------ */

/* The flow_id of n's latest tunnel record between local and peer, allowed; "" when none. */
static void tunnel_record(struct fw_node *n, const char *local, const char *peer, char *id,
			  size_t len)
{
	struct json_object *res = NULL, *flows;

	id[0] = 0;
	if (fw_request(n, "observe", "{\"last\": 1000}", &res) ||
	    !json_object_object_get_ex(res, "flows", &flows)) {
		json_object_put(res);
		return;
	}
	for (size_t i = 0; i < json_object_array_length(flows); i++) {
		struct json_object *o = json_object_array_get_idx(flows, i), *l, *p, *f;

		if (strcmp(member_str(o, "event"), "tunnel") ||
		    strcmp(member_str(o, "verdict"), "allow") ||
		    !json_object_object_get_ex(o, "local", &l) ||
		    !json_object_object_get_ex(o, "peer", &p) ||
		    !json_object_object_get_ex(o, "flow_id", &f))
			continue;
		if (!strcmp(member_str(l, "spiffe_id"), local) &&
		    !strcmp(member_str(p, "spiffe_id"), peer))
			snprintf(id, len, "%s", json_object_get_string(f));
	}
	json_object_put(res);
}

/*
 * The flow a1 -> b1 as the agents and the datapath report it: both agents
 * record the tunnel with one flow ID; b1's datapath records name a1's
 * workload as the peer of b1's (the socket was bound to the caller, not to
 * the agent); a1's metrics count the flow.
 */
static void check_seen_with_both_identities(void)
{
	static char out[65536];
	char at_a1[32] = "", at_b1[32] = "";
	bool seen = false;

	for (long t0 = fw_now_ms(); fw_now_ms() - t0 < WAIT_MS && (!at_a1[0] || !at_b1[0]);) {
		tunnel_record(a1, a1->wid, b1->wid, at_a1, sizeof(at_a1));
		tunnel_record(b1, b1->wid, a1->wid, at_b1, sizeof(at_b1));
		usleep(50000);
	}
	cr_expect(at_a1[0], "a1 has no tunnel record of the flow");
	cr_expect_str_eq(at_a1, at_b1, "both agents' records of the flow carry one flow ID");

	/* the workload's accepted socket, bound by sockops: a line naming both */
	for (long t0 = fw_now_ms(); !seen && fw_now_ms() - t0 < WAIT_MS; usleep(50000)) {
		fw_ctl(b1, out, sizeof(out), "observe -j --last 200 --verdict allow");
		for (char *l = strtok(out, "\n"); l && !seen; l = strtok(NULL, "\n"))
			seen = strstr(l, "\"sockops\"") && strstr(l, a1->wid) && strstr(l, b1->wid);
	}
	cr_expect(seen, "b1's datapath records do not bind b1's socket to a1's workload");
	scrape(a1, out, sizeof(out));
	cr_expect_not_null(strstr(out, "fedguard_tunnel_flows_total{direction=\"out\"} 1"),
			   "a1's metrics: %.3000s", strstr(out, "fedguard_tunnel") ?: out);
}

Test(tunnel, an_encrypted_flow_leaves_no_trace_on_the_wire_and_a_direct_one_does)
{
	char secret[64], plain[64];
	struct sockaddr_in peer;
	socklen_t len = sizeof(peer);
	struct capture c;
	int fd, direct;

	snprintf(secret, sizeof(secret), "tunnelled-secret-%d-%ld", getpid(), (long)time(NULL));
	snprintf(plain, sizeof(plain), "direct-payload-%d-%ld", getpid(), (long)time(NULL));
	ready();
	capture_start(&c);

	fd = sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, b1->waddr, SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "a1 -> b1 (encrypted): %s", strerror(-fd));
	cr_expect_eq(getpeername(fd, (struct sockaddr *)&peer, &len), 0);
	cr_expect_eq(peer.sin_addr.s_addr, inet_addr(b1->waddr),
		     "getpeername shows the destination the application asked for");
	cr_expect_eq(ntohs(peer.sin_port), SB_ECHO_PORT);
	if (sb_echo(fd, secret, ECHO_MS)) {
		logs_tail();
		cr_expect_fail("the payload does not come back through the tunnel");
	}

	direct = sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, a2->waddr, SB_ECHO_PORT);
	cr_assert_geq(direct, 0, "a1 -> a2 (authenticated): %s", strerror(-direct));
	cr_expect_eq(sb_echo(direct, plain, ECHO_MS), 0);
	capture_stop(&c);
	close(fd);
	close(direct);

	cr_expect(!captured(&c, secret), "the tunnelled payload is readable on the wire");
	check_seen_with_both_identities();
	cr_expect(captured(&c, plain),
		  "the direct flow's payload is not in the capture: the capture shows nothing");
	cr_expect_geq(tunnel_field(a1, "flows_out") + tunnel_field(a1, "active"), 1);
	cr_expect_eq(sb_sh("tcpdump -nr %s 'tcp port %d' 2>/dev/null | grep -q .", c.path,
			   TUNNEL_PORT),
		     0, "the flow crossed on the tunnel port");
}

/* The policy in force, and a1's workload calling b1's through a tunnel: the fd. */
static int tunnelled_call(void)
{
	int fd;

	ready();
	fd = sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, b1->waddr, SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "a1 -> b1 (encrypted): %s", strerror(-fd));
	cr_assert_eq(sb_echo(fd, "before", ECHO_MS), 0);
	return fd;
}

Test(tunnel, quarantine_cuts_a_tunnelled_flow_on_both_ends)
{
	char out[4096];
	long t0;
	int fd = tunnelled_call();

	cr_expect_eq(tunnel_field(a1, "active"), 1, "one flow leaves a1");
	cr_expect_eq(tunnel_field(b1, "active"), 1, "one flow arrives at b1");

	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "quarantine add %s", a1->wid), 0, "%s", out);
	cr_expect_neq(sb_echo(fd, "after", ECHO_MS), 0, "the quarantined flow still carries data");
	close(fd);
	t0 = fw_now_ms();
	while (fw_now_ms() - t0 < WAIT_MS && (tunnel_field(a1, "active") || tunnel_field(b1, "active")))
		usleep(20000);
	cr_expect_eq(tunnel_field(a1, "active"), 0, "a1 still relays the flow");
	cr_expect_eq(tunnel_field(b1, "active"), 0, "b1 still relays the flow");
	fd = sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, b1->waddr, SB_ECHO_PORT);
	cr_expect_eq(fd, -EPERM, "a new connection of the quarantined workload is refused at once");
	if (fd >= 0)
		close(fd);
}

/* --- a gibibyte and a half-close -------------------------------------------------------------- */

enum {
	BULK_BYTES = 1 << 30,
	BULK_CHUNK = 64 * 1024,
	BULK_MS = 120000,	/* the whole transfer, both ways */
};

/* The bytes of the stream from offset on: xorshift64, the same on both ends. */
static void stream_fill(__u64 *state, unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		__u64 x = *state;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		*state = x;
		memcpy(buf + i, &x, len - i < 8 ? len - i : 8);
	}
}

struct bulk_writer {
	int fd;
	int err;
	__u64 sent;
};

/* Sends BULK_BYTES, then half-closes: the echo must still come back, then end. */
static void *bulk_write(void *arg)
{
	struct bulk_writer *bw = arg;
	static unsigned char buf[BULK_CHUNK];
	__u64 state = 0x9e3779b97f4a7c15ull;
	long t0 = fw_now_ms();

	while (bw->sent < BULK_BYTES && fw_now_ms() - t0 < BULK_MS) {
		struct pollfd p = { .fd = bw->fd, .events = POLLOUT };
		ssize_t n;

		stream_fill(&state, buf, sizeof(buf));
		for (size_t off = 0; off < sizeof(buf);) {
			if (poll(&p, 1, 1000) < 0 || fw_now_ms() - t0 >= BULK_MS) {
				bw->err = ETIMEDOUT;
				return NULL;
			}
			n = send(bw->fd, buf + off, sizeof(buf) - off, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN) {
				bw->err = errno;
				return NULL;
			}
			off += n > 0 ? (size_t)n : 0;
		}
		bw->sent += sizeof(buf);
	}
	if (shutdown(bw->fd, SHUT_WR))
		bw->err = errno;
	return NULL;
}

/* Reads the echo to its end, checking every byte against the stream; the bytes that matched. */
static __u64 bulk_read(int fd, int *err)
{
	static unsigned char got[BULK_CHUNK], want[BULK_CHUNK];
	__u64 state = 0x9e3779b97f4a7c15ull, n_ok = 0;
	size_t have = 0;	/* bytes of want[] already compared */
	long t0 = fw_now_ms();

	stream_fill(&state, want, sizeof(want));
	while (fw_now_ms() - t0 < BULK_MS) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 1000) <= 0)
			continue;
		n = recv(fd, got, sizeof(want) - have, MSG_DONTWAIT);
		if (n == 0)
			return n_ok;	/* the half-close came back as the end of the echo */
		if (n < 0) {
			if (errno == EAGAIN)
				continue;
			*err = errno;
			return n_ok;
		}
		if (memcmp(got, want + have, (size_t)n)) {
			*err = EILSEQ;
			return n_ok;
		}
		n_ok += (__u64)n;
		have += (size_t)n;
		if (have == sizeof(want)) {
			stream_fill(&state, want, sizeof(want));
			have = 0;
		}
	}
	*err = ETIMEDOUT;
	return n_ok;
}

Test(tunnel, a_gibibyte_and_a_half_close_cross_intact)
{
	struct bulk_writer bw = { .fd = -1 };
	pthread_t writer;
	__u64 got;
	int err = 0;

	ready();
	bw.fd = sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, b1->waddr, SB_ECHO_PORT);
	cr_assert_geq(bw.fd, 0, "a1 -> b1 (encrypted): %s", strerror(-bw.fd));
	cr_assert_eq(pthread_create(&writer, NULL, bulk_write, &bw), 0);
	got = bulk_read(bw.fd, &err);
	pthread_join(writer, NULL);
	close(bw.fd);
	cr_expect_eq(bw.err, 0, "sending: %s", strerror(bw.err));
	cr_expect_eq(bw.sent, (__u64)BULK_BYTES);
	cr_expect_eq(err, 0, "the echo after %llu bytes: %s", (unsigned long long)got,
		     err == EILSEQ ? "a byte differs" : strerror(err));
	cr_expect_eq(got, (__u64)BULK_BYTES, "%llu bytes came back of %d",
		     (unsigned long long)got, BULK_BYTES);
}

/* --- callers that are not who they must be ---------------------------------------------------- */

/*
 * A TLS 1.3 client on the tunnel port of b1, from node ns, presenting
 * cert/key and asking for b1's workload; what b1 answered, in out.
 */
static void rogue_call(const char *ns, const char *cert, const char *key, char *out, size_t len)
{
	char sni[AUTH_SNI_MAX], path[PATH_MAX + 32];
	FILE *f;
	size_t n;

	auth_sni_name(b1->wid, sni);
	snprintf(path, sizeof(path), "%s/rogue.out", w.dir);
	sb_sh("ip netns exec %s timeout 10 openssl s_client -quiet -tls1_3 -connect %s:%d "
	      "-servername %s -cert %s -key %s < /dev/null > %s 2>/dev/null",
	      ns, b1->addr, TUNNEL_PORT, sni, cert, key, path);
	f = fopen(path, "re");
	n = f ? fread(out, 1, len - 1, f) : 0;
	out[n] = 0;
	for (size_t i = 0; i < n; i++)	/* the status bytes before the reason */
		out[i] = out[i] ? out[i] : ' ';
	if (f)
		fclose(f);
}

static void mint(const char *ca_dir, const char *id, const char *out)
{
	cr_assert_eq(sb_sh("%s svid --ca %s --spiffe-id %s --ttl 3600 --out %s >/dev/null",
			   getenv("FEDGUARD_CA"), ca_dir, id, out), 0, "minting %s", id);
}

Test(tunnel, callers_with_the_wrong_identity_are_refused)
{
	char ca[PATH_MAX + 16], dir[PATH_MAX + 16], cert[PATH_MAX + 32], key[PATH_MAX + 32];
	char out[1024];
	long refused;

	ready();
	refused = tunnel_field(b1, "refused_in");
	snprintf(ca, sizeof(ca), "%s/ca", w.mesh[0].dir);

	/* a genuine SVID of a.test, for an identity nobody registered */
	snprintf(dir, sizeof(dir), "%s/intruder", w.dir);
	mint(ca, "spiffe://a.test/ns/intruder/app", dir);
	snprintf(cert, sizeof(cert), "%s/svid.pem", dir);
	snprintf(key, sizeof(key), "%s/svid.key", dir);
	rogue_call(a1->ns, cert, key, out, sizeof(out));
	cr_expect_not_null(strstr(out, "is no identity this node knows"), "b1 answered '%s'", out);

	/* a1's workload's genuine SVID, presented from a2's node */
	snprintf(dir, sizeof(dir), "%s/stolen", w.dir);
	mint(ca, a1->wid, dir);
	snprintf(cert, sizeof(cert), "%s/svid.pem", dir);
	snprintf(key, sizeof(key), "%s/svid.key", dir);
	rogue_call(a2->ns, cert, key, out, sizeof(out));
	cr_expect_not_null(strstr(out, "is not registered at the node it calls from"),
			   "b1 answered '%s'", out);

	/* a1's workload's ID, signed by another CA that calls itself a.test */
	snprintf(dir, sizeof(dir), "%s/rogue-ca", w.dir);
	cr_assert_eq(sb_sh("%s init --trust-domain a.test --out %s >/dev/null",
			   getenv("FEDGUARD_CA"), dir), 0);
	snprintf(ca, sizeof(ca), "%s", dir);
	snprintf(dir, sizeof(dir), "%s/forged", w.dir);
	mint(ca, a1->wid, dir);
	snprintf(cert, sizeof(cert), "%s/svid.pem", dir);
	snprintf(key, sizeof(key), "%s/svid.key", dir);
	rogue_call(a1->ns, cert, key, out, sizeof(out));
	cr_expect_not_null(strstr(out, "SVID is rejected"), "b1 answered '%s'", out);

	cr_expect_eq(tunnel_field(b1, "refused_in"), refused + 3, "b1 counts three refusals");
	cr_expect_eq(tunnel_field(b1, "flows_in"), 0, "nothing was relayed to b1's workload");
}

Test(tunnel, deleting_a_trust_domains_bundle_cuts_its_tunnels)
{
	char out[4096];
	long t0;
	int fd = tunnelled_call();

	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "bundle del b.test"), 0, "%s", out);
	cr_expect_neq(sb_echo(fd, "after", ECHO_MS), 0, "a1 still trusts b.test's workload");
	close(fd);
	t0 = fw_now_ms();
	while (fw_now_ms() - t0 < WAIT_MS && tunnel_field(a1, "active"))
		usleep(20000);
	cr_expect_eq(tunnel_field(a1, "active"), 0, "a1 still relays to b.test");
	cr_expect_geq(tunnel_field(a1, "cut"), 1, "a1 cut the flow");
}

Test(tunnel, closing_a_tunnelled_connection_ends_its_flow_at_both_agents)
{
	long t0;
	int fd = tunnelled_call();

	cr_expect_eq(tunnel_field(a1, "active"), 1);
	/*
	 * A plain close(): its FIN leaves after sock_release forgot the socket's binding.
	 * Dropped, the flow lingered for minutes until retransmits gave up; the bound on
	 * the wait below is far above the milliseconds it takes, and far below that.
	 */
	close(fd);
	t0 = fw_now_ms();
	while (fw_now_ms() - t0 < WAIT_MS && (tunnel_field(a1, "active") || tunnel_field(b1, "active")))
		usleep(20000);
	cr_expect_eq(tunnel_field(a1, "active"), 0, "a1 still relays a closed connection");
	cr_expect_eq(tunnel_field(b1, "active"), 0, "b1 still relays a closed connection");
	cr_expect_eq(tunnel_field(a1, "cut"), 0, "the flow was cut, not closed");
}
