// SPDX-License-Identifier: Apache-2.0
/*
 * Observability end to end, with a real fedguardd ($FEDGUARDD) and
 * fedguardctl ($FEDGUARDCTL) on the sandbox of tests/lib/sandbox: real
 * packets and socket calls of workloads in their cgroups and network
 * namespaces become drops with a reason, which must reach the flow log
 * file and `fedguardctl observe -j`; `observe --follow` streams them; the
 * metrics endpoint is scraped over TCP and checked against the pinned
 * counters; a burst of denies raises an alert; and a flood of denies is
 * limited in the datapath, counted, and leaves a bounded flow log.
 *
 * deny_no_tunnel comes from a connect to an endpoint of another node that
 * policy wants encrypted, on an agent without --tunnel-listen.
 *
 * Reasons no workload can cause here: deny_no_policy (the agent always
 * installs a policy map before it attaches) and the TC-only ones
 * (allow_unmanaged, allow_reply: the sandbox has no --iface).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>

#include <fedguard/abi.h>

#include "lib/mapfill.h"
#include "lib/require.h"
#include "lib/sandbox.h"

#define A	   "spiffe://mesh.test/ns/shop/a"
#define B	   "spiffe://mesh.test/ns/shop/b"
#define C	   "spiffe://mesh.test/ns/remote/c" /* an endpoint on another node */
#define UNKNOWN_V4 "10.231.0.77" /* in the subnet, registered to nobody */
#define REMOTE_V4  "10.231.0.78" /* C's address */
#define SPOOF_V4   "10.231.0.9"	 /* an address of A's interface, not A's */

enum {
	OUTPUT_MAX = 4 * 1024 * 1024,
	WAIT_MS = 10000, /* bound on waiting for a record to show up */
	STEP_MS = 50,
	PORT_DENIED = 8081,    /* no rule: deny_policy */
	PORT_DENY_RULE = 8082, /* a deny rule */
	PORT_MTLS = 8083,      /* allowed with auth: required */
	PORT_TUNNEL = 8084,    /* allowed encrypted; this agent has no tunnel: deny_no_tunnel */
	SCRAPE_MAX = 1024 * 1024,
};

static struct sandbox sb;
static char *output;
static char flow_log[PATH_MAX + 32];
static char nobody_cg[PATH_MAX + 16];

/* --- plumbing ----------------------------------------------------------------- */

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs fedguardctl for the sandbox's instance; its exit status, stdout and stderr in `output`. */
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
	n = fread(output, 1, OUTPUT_MAX - 1, p);
	output[n] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * Runs fn in a child that joined @cgroup and the network namespace @ns;
 * returns fn's result (0 to 255), or -1 when the child failed otherwise.
 */
static int run_in(const char *cgroup, const char *ns, int (*fn)(void *), void *arg)
{
	char path[PATH_MAX + 32], pid[32];
	int st, fd;
	pid_t child = fork();

	cr_assert_geq(child, 0);
	if (child == 0) {
		alarm(10);
		snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup);
		snprintf(pid, sizeof(pid), "%d", getpid());
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, pid, strlen(pid)) < 0)
			_exit(254);
		close(fd);
		snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET))
			_exit(253);
		_exit(fn(arg));
	}
	cr_assert_eq(waitpid(child, &st, 0), child);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct attempt {
	int type;	 /* SOCK_STREAM or SOCK_DGRAM */
	const char *src; /* bind to it first, or NULL */
	const char *dst;
	int port;
	int wait_ms; /* for a TCP handshake in progress */
};

/* connect() once: 0 when connected, else the errno (ETIMEDOUT when still in progress). */
static int try_connect(void *arg)
{
	const struct attempt *a = arg;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(a->port)};
	struct pollfd p = {.events = POLLOUT};
	int fd = socket(AF_INET, a->type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int err = 0;
	socklen_t len = sizeof(err);

	if (fd < 0)
		return errno;
	if (a->src) {
		struct sockaddr_in src = {.sin_family = AF_INET};

		inet_pton(AF_INET, a->src, &src.sin_addr);
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)))
			return errno;
	}
	inet_pton(AF_INET, a->dst, &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return errno;
	p.fd = fd;
	if (poll(&p, 1, a->wait_ms) != 1)
		return ETIMEDOUT;
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	return err;
}

static int attempt_from(enum sb_side side, int type, const char *dst, int port)
{
	struct attempt a = {.type = type, .dst = dst, .port = port, .wait_ms = 300};

	return run_in(side == SB_CLIENT ? sb.cg_client : sb.cg_server,
		      side == SB_CLIENT ? sb.ns_client : sb.ns_server, try_connect, &a);
}

/* An IPv4 UDP datagram's non-first fragment, sent from a raw socket: no ports to judge. */
static int send_fragment(void *arg)
{
	struct {
		struct iphdr ip;
		char payload[16];
	} pkt = {.ip = {.ihl = 5, .version = 4, .ttl = 64, .protocol = IPPROTO_UDP}};
	struct sockaddr_in dst = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);

	(void)arg;
	if (fd < 0)
		return errno;
	pkt.ip.tot_len = htons(sizeof(pkt));
	pkt.ip.frag_off = htons(100); /* offset 800 bytes: not the first fragment */
	inet_pton(AF_INET, SB_CLIENT_V4, &pkt.ip.saddr);
	inet_pton(AF_INET, SB_SERVER_V4, &pkt.ip.daddr);
	dst.sin_addr.s_addr = pkt.ip.daddr;
	if (sendto(fd, &pkt, sizeof(pkt), 0, (struct sockaddr *)&dst, sizeof(dst)) < 0)
		return errno == EPERM ? 0 : errno; /* the drop is what we want */
	return 0;
}

/* --- records ------------------------------------------------------------------ */

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v = json_object_object_get(o, key);

	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static bool jis(struct json_object *o, const char *key, const char *want)
{
	const char *v = jstr(o, key);

	return want ? v && strcmp(v, want) == 0 : v == NULL;
}

static const char *side_id(struct json_object *o, const char *side)
{
	return jstr(json_object_object_get(o, side), "spiffe_id");
}

/* What a record must show; NULL fields are not checked (except as noted). */
struct expect {
	const char *reason;
	const char *event;
	const char *hook;
	const char *local; /* SPIFFE ID */
	const char *peer;
	int dst_port; /* 0: not checked */
	const char *rule;
};

static bool record_is(struct json_object *o, const struct expect *e)
{
	struct json_object *port = json_object_object_get(o, "dst_port");

	if (!jis(o, "type", "flow") || !jis(o, "reason", e->reason))
		return false;
	if ((e->event && !jis(o, "event", e->event)) || (e->hook && !jis(o, "hook", e->hook)))
		return false;
	if (e->dst_port && json_object_get_int(port) != e->dst_port)
		return false;
	return true;
}

/* The first record of a JSON-lines text matching e; NULL (a new reference otherwise). */
static struct json_object *find_in(const char *text, const struct expect *e)
{
	const char *p = text;

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char *line = strndup(p, len);
		struct json_object *o = json_tokener_parse(line);

		free(line);
		if (o && record_is(o, e))
			return o;
		json_object_put(o);
		p = nl ? nl + 1 : NULL;
	}
	return NULL;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	if (!f)
		return strdup("");
	buf = malloc(OUTPUT_MAX);
	cr_assert_not_null(buf);
	n = fread(buf, 1, OUTPUT_MAX - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

/* Waits (bounded) for the flow log to hold a record like e; returns it. */
static struct json_object *wait_flow_log(const struct expect *e)
{
	long deadline = now_ms() + WAIT_MS;
	struct json_object *o = NULL;

	while (!o && now_ms() < deadline) {
		char *text = read_file(flow_log);

		o = find_in(text, e);
		free(text);
		if (!o)
			usleep(STEP_MS * 1000);
	}
	return o;
}

/* The record must be in the flow log and in `observe -j`, with the identities it names. */
static void expect_reported(const struct expect *e)
{
	struct json_object *o = wait_flow_log(e);

	cr_assert_not_null(o, "%s: no %s record in the flow log %s", e->reason,
			   e->event ? e->event : "", flow_log);
	cr_expect(jis(o, "verdict", "deny"), "%s: verdict %s", e->reason, jstr(o, "verdict"));
	if (e->local)
		cr_expect_str_eq(side_id(o, "local") ?: "(null)", e->local, "%s: local side",
				 e->reason);
	if (e->peer)
		cr_expect_str_eq(side_id(o, "peer") ?: "(null)", e->peer, "%s: peer side",
				 e->reason);
	if (e->rule)
		cr_expect(jis(o, "rule", e->rule), "%s: rule %s", e->reason, jstr(o, "rule"));
	cr_expect_eq(strlen(jstr(o, "flow_id") ?: ""), 16, "%s: no flow ID", e->reason);
	json_object_put(o);

	cr_assert_eq(ctl("observe -j --last 100000 --reason %s", e->reason), 0, "%s", output);
	o = find_in(output, e);
	cr_expect_not_null(o, "%s: not in observe -j: %.2000s", e->reason, output);
	json_object_put(o);
}

/* --- the agent ------------------------------------------------------------------ */

static void write_policy(void)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/fedguard-%s-policy.yaml", sb.instance);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f,
		"version: 1\n"
		"rules:\n"
		"  - name: a-calls-b\n"
		"    action: allow\n"
		"    transport: authenticated\n"
		"    from: {spiffe_id: %s}\n"
		"    to: {spiffe_id: %s}\n"
		"    ports: [%d]\n"
		"    protocols: [tcp]\n"
		"  - name: b-calls-a\n"
		"    action: allow\n"
		"    transport: authenticated\n"
		"    from: {spiffe_id: %s}\n"
		"    to: {spiffe_id: %s}\n"
		"    ports: [%d]\n"
		"    protocols: [tcp]\n"
		"  - name: no-8082\n"
		"    action: deny\n"
		"    from: {spiffe_id: %s}\n"
		"    to: {spiffe_id: %s}\n"
		"    ports: [%d]\n"
		"  - name: a-calls-b-with-mtls\n"
		"    action: allow\n"
		"    transport: authenticated\n"
		"    from: {spiffe_id: %s}\n"
		"    to: {spiffe_id: %s}\n"
		"    ports: [%d]\n"
		"    auth: required\n"
		"  - name: a-calls-c-encrypted\n"
		"    action: allow\n"
		"    from: {spiffe_id: %s}\n"
		"    to: {spiffe_id: %s}\n"
		"    ports: [%d]\n",
		A, B, SB_ECHO_PORT, B, A, SB_ECHO_PORT, A, B, PORT_DENY_RULE, A, B, PORT_MTLS, A, C,
		PORT_TUNNEL);
	fclose(f);
	cr_assert_eq(ctl("policy apply %s", path), 0, "policy apply: %s", output);
	unlink(path);
}

static void register_workloads(void)
{
	cr_assert_eq(
		ctl("workload add --spiffe-id %s --cgroup %s --ip %s --netns /var/run/netns/%s", A,
		    sb.cg_client, SB_CLIENT_V4, sb.ns_client),
		0, "workload add a: %s", output);
	cr_assert_eq(
		ctl("workload add --spiffe-id %s --cgroup %s --ip %s --netns /var/run/netns/%s", B,
		    sb.cg_server, SB_SERVER_V4, sb.ns_server),
		0, "workload add b: %s", output);
	write_policy();
}

static void start(const char *a1, const char *a2, const char *a3, const char *a4, const char *a5,
		  const char *a6, const char *a7)
{
	int r;

	fg_test_require_root_bpf();
	cr_assert_not_null(getenv("FEDGUARDCTL"), "FEDGUARDCTL is not set");
	output = malloc(OUTPUT_MAX);
	cr_assert_not_null(output);
	r = sb_setup(&sb, true);
	cr_assert_eq(r, 0, "sandbox: %s", strerror(-r));
	snprintf(flow_log, sizeof(flow_log), "%s/flows.log", sb_state_dir(&sb));
	r = sb_agent_start_args(&sb, a1, a2, a3, a4, a5, a6, a7, NULL);
	cr_assert_eq(r, 0, "fedguardd did not become ready (%s); log: %s", strerror(-r),
		     sb_log_path(&sb));
	register_workloads();
}

static void setup(void)
{
	start("--metrics-listen=127.0.0.1:0", "--log-allowed", "--alert-deny-threshold=20",
	      "--alert-window=3600", NULL, NULL, NULL);
}

static void setup_flood(void)
{
	start("--metrics-listen=127.0.0.1:0", "--events-rate=20", "--events-burst=20",
	      "--flow-log-max-bytes=8192", "--flow-log-keep=1", "--alert-deny-threshold=0", NULL);
}

static void teardown(void)
{
	if (nobody_cg[0])
		rmdir(nobody_cg);
	sb_teardown(&sb);
	free(output);
}

TestSuite(observe, .init = setup, .fini = teardown, .timeout = 300);
TestSuite(observe_flood, .init = setup_flood, .fini = teardown, .timeout = 300);

/* --- every drop reason, from a real workload to the flow log and observe --------------- */

static void quarantine_reasons(void)
{
	struct expect local = {
		"deny_quarantine_local", "quarantine_hit", "connect", A, B, SB_ECHO_PORT};
	struct expect peer = {
		"deny_quarantine_peer", "quarantine_hit", "connect", B, A, SB_ECHO_PORT};
	struct expect td = {"deny_quarantine_td", "quarantine_hit", "connect", A, B, SB_ECHO_PORT};

	cr_assert_eq(ctl("quarantine add %s --reason test", A), 0, "%s", output);
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT), EPERM);
	cr_expect_eq(attempt_from(SB_SERVER, SOCK_STREAM, SB_CLIENT_V4, SB_ECHO_PORT), EPERM);
	cr_assert_eq(ctl("quarantine del %s", A), 0, "%s", output);
	expect_reported(&local);
	expect_reported(&peer);

	cr_assert_eq(ctl("quarantine add spiffe://mesh.test"), 0, "%s", output);
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT), EPERM);
	cr_assert_eq(ctl("quarantine del spiffe://mesh.test"), 0, "%s", output);
	expect_reported(&td);
}

static int no_identity(void)
{
	struct attempt a = {
		.type = SOCK_STREAM, .dst = SB_SERVER_V4, .port = SB_ECHO_PORT, .wait_ms = 300};

	snprintf(nobody_cg, sizeof(nobody_cg), "%s/nobody", sb.cg_root);
	cr_assert_eq(mkdir(nobody_cg, 0755), 0, "%s: %s", nobody_cg, strerror(errno));
	return run_in(nobody_cg, sb.ns_client, try_connect, &a);
}

/* An expired fg_auth entry for A -> B (this node's address: none, all zero). */
static void auth_expired(__u32 a_id, __u32 b_id)
{
	struct fg_auth_key k = {.local_id = a_id, .peer_id = b_id};
	struct fg_auth_value v = {.expiry_ns = 1};
	int fd = sb_map(&sb, "fg_auth");

	cr_assert_geq(fd, 0);
	cr_assert_eq(bpf_map_update_elem(fd, &k, &v, BPF_ANY), 0);
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_DGRAM, SB_SERVER_V4, PORT_MTLS), EPERM);
	cr_assert_eq(bpf_map_delete_elem(fd, &k), 0);
	close(fd);
}

/* Fills fg_sockets with made-up sockets, connects, and removes them again. */
static void map_full(void)
{
	struct fg_sock_binding b = {};
	int fd = sb_map(&sb, "fg_sockets");
	__u64 key, n = 0;

	cr_assert_geq(fd, 0);
	for (key = 1ULL << 62; n <= 262144 && bpf_map_update_elem(fd, &key, &b, BPF_NOEXIST) == 0;
	     key++)
		n++;
	cr_assert_eq(errno, E2BIG, "filling fg_sockets stopped after %llu: %s",
		     (unsigned long long)n, strerror(errno));
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT), EPERM);
	for (key = 1ULL << 62; n; key++, n--)
		cr_assert_eq(bpf_map_delete_elem(fd, &key), 0);
	close(fd);
}

/* The identity number the agent gave a registered workload. */
static __u32 identity_of(const char *id)
{
	struct json_object *o, *list, *w;
	__u32 n = 0;

	cr_assert_eq(ctl("-j workload list"), 0, "%s", output);
	o = json_tokener_parse(output);
	list = json_object_object_get(o, "workloads");
	for (size_t i = 0; i < json_object_array_length(list) && !n; i++) {
		w = json_object_array_get_idx(list, i);
		if (jis(w, "spiffe_id", id))
			n = (__u32)json_object_get_int64(json_object_object_get(w, "identity"));
	}
	json_object_put(o);
	cr_assert_gt(n, 0, "%s is not registered: %s", id, output);
	return n;
}

Test(observe, every_reason_a_workload_can_cause_reaches_the_flow_log_and_observe)
{
	struct expect plain[] = {
		{"deny_policy", "drop", "connect", A, B, PORT_DENIED},
		{"deny_rule", "drop", "connect", A, B, PORT_DENY_RULE, "no-8082"},
		{"deny_unknown_peer", "drop", "connect", A, NULL, SB_ECHO_PORT},
		{"deny_no_identity", "drop", "connect", NULL, NULL, SB_ECHO_PORT},
		{"deny_auth_missing", "drop", "connect", A, B, PORT_MTLS},
		{"deny_auth_expired", "drop", "connect", A, B, PORT_MTLS},
		{"deny_spoof", "drop", "skb_egress", A, B, SB_ECHO_PORT},
		{"deny_malformed", "drop", "skb_egress", NULL, NULL, 0},
		{"deny_map_full", "drop", "connect", A, B, SB_ECHO_PORT},
		{"deny_no_tunnel", "drop", "connect", A, C, PORT_TUNNEL, "a-calls-c-encrypted"},
	};
	struct attempt spoof = {.type = SOCK_STREAM,
				.src = SPOOF_V4,
				.dst = SB_SERVER_V4,
				.port = SB_ECHO_PORT,
				.wait_ms = 300};

	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, SB_SERVER_V4, PORT_DENIED), EPERM);
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, SB_SERVER_V4, PORT_DENY_RULE), EPERM);
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, UNKNOWN_V4, SB_ECHO_PORT), EPERM);
	/* to another node, policy wants it encrypted: without --tunnel-listen, refused at once */
	cr_assert_eq(ctl("endpoint add --spiffe-id %s --ip %s --node 10.231.0.1", C, REMOTE_V4), 0,
		     "endpoint add c: %s", output);
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, REMOTE_V4, PORT_TUNNEL), EPERM);
	cr_expect_eq(no_identity(), EPERM);
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_DGRAM, SB_SERVER_V4, PORT_MTLS), EPERM);
	auth_expired(identity_of(A), identity_of(B));
	cr_assert_eq(sb_sh("ip -n %s addr add %s/24 dev fgc0", sb.ns_client, SPOOF_V4), 0);
	/* connect() allows it; its SYN, from an address that is not A's, is dropped */
	cr_expect_eq(run_in(sb.cg_client, sb.ns_client, try_connect, &spoof), ETIMEDOUT);
	cr_expect_eq(run_in(sb.cg_client, sb.ns_client, send_fragment, NULL), 0);
	map_full();
	quarantine_reasons();

	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		expect_reported(&plain[i]);
}

/* --- allowed flows, auth needed, filters ------------------------------------------------ */

/* The record of an accepted socket, matched by the client's port. */
static bool accepted_is(struct json_object *o, int client_port)
{
	return jis(o, "event", "allow") && jis(o, "hook", "sockops") &&
	       jis(o, "direction", "ingress") &&
	       json_object_get_int(json_object_object_get(o, "src_port")) == client_port &&
	       json_object_get_int(json_object_object_get(o, "dst_port")) == SB_ECHO_PORT &&
	       jis(o, "src", SB_CLIENT_V4) && jis(o, "dst", SB_SERVER_V4);
}

Test(observe, allowed_connections_and_their_accepting_ends_are_reported)
{
	struct expect connect_allow = {"allow_policy", "allow", "connect", A, B, SB_ECHO_PORT};
	struct sockaddr_in me;
	socklen_t len = sizeof(me);
	struct json_object *o;
	bool found = false;
	int fd;

	fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "A -> B:8080: %s", strerror(-fd));
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&me, &len), 0);
	cr_expect_eq(sb_echo(fd, "hello", 2000), 0);
	close(fd);

	o = wait_flow_log(&connect_allow);
	cr_assert_not_null(o, "no allow record of the connect");
	cr_expect(jis(o, "verdict", "allow"));
	cr_expect_str_eq(side_id(o, "local"), A);
	cr_expect(jis(o, "rule", "a-calls-b"), "rule %s", jstr(o, "rule"));
	json_object_put(o);

	/* the accepting end, bound by sockops on B's side, with the client's real port */
	for (long deadline = now_ms() + WAIT_MS; !found && now_ms() < deadline;) {
		cr_assert_eq(ctl("observe -j --verdict allow --identity %s --last 1000", B), 0,
			     "%s", output);
		for (char *p = strtok(output, "\n"); p && !found; p = strtok(NULL, "\n")) {
			o = json_tokener_parse(p);
			found = o && accepted_is(o, ntohs(me.sin_port));
			if (found) {
				cr_expect_str_eq(side_id(o, "local"), B);
				cr_expect_str_eq(side_id(o, "peer"), A);
			}
			json_object_put(o);
		}
		if (!found)
			usleep(STEP_MS * 1000);
	}
	cr_expect(found, "no allow record of B accepting port %d", ntohs(me.sin_port));
}

/* A TCP connect to a->dst:a->port left in progress: the socket, or -errno. */
static int connect_pending(const struct attempt *a)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(a->port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	inet_pton(AF_INET, a->dst, &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS)
		return -errno;
	return fd;
}

/* TCP_SYNCNT of a connect, as the kernel left it (255: no socket). */
static int syn_retries(void *arg)
{
	int fd = connect_pending(arg), v = 0;
	socklen_t len = sizeof(v);

	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_SYNCNT, &v, &len))
		return 255;
	return v;
}

/* The first SYN retransmit timeout of a connect in progress, in ms (255: none). */
static int syn_rto_ms(void *arg)
{
	int fd = connect_pending(arg);
	struct tcp_info ti = {};
	socklen_t len = sizeof(ti);

	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return 255;
	return ti.tcpi_rto / 1000 > 254 ? 254 : (int)(ti.tcpi_rto / 1000);
}

/*
 * A connect held for mTLS retransmits its SYN after a few ms (so a cold
 * pair's first connection costs its handshake, not the 1 s SYN RTO), and
 * retries enough times to outlast the agent's exchange: with a first RTO of
 * r and n retries the kernel waits at least r * (2^(n+1) - 1) >= 4 s. A
 * connect that does not wait keeps the kernel's defaults.
 */
Test(observe, a_held_connect_retries_early_and_long_enough)
{
	struct attempt held = {.dst = SB_SERVER_V4, .port = PORT_MTLS};
	struct attempt direct = {.dst = SB_SERVER_V4, .port = SB_ECHO_PORT};
	int rto, n, dflt;

	rto = run_in(sb.cg_client, sb.ns_client, syn_rto_ms, &held);
	n = run_in(sb.cg_client, sb.ns_client, syn_retries, &held);
	dflt = run_in(sb.cg_client, sb.ns_client, syn_retries, &direct);
	cr_assert(rto >= 1 && rto <= 10, "first SYN RTO of a held connect: %d ms", rto);
	cr_expect_geq((long)rto * ((2L << n) - 1), 4000, "%d retries of %d ms give up too early",
		      n, rto);
	cr_expect_lt((long)rto * ((2L << (n - 1)) - 1), 4000, "%d retries: more than needed", n);
	cr_expect_eq(dflt, 6, "a connect not held got TCP_SYNCNT %d", dflt);
}

Test(observe, auth_needed_and_filters)
{
	struct expect needed = {"deny_auth_missing", "auth_needed", "connect", A, B, PORT_MTLS};
	struct expect held = {"deny_auth_missing", "drop", "skb_egress", A, B, PORT_MTLS};
	struct json_object *o;

	/* TCP waits for mTLS: connect() goes on, its SYNs are held back */
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, SB_SERVER_V4, PORT_MTLS), ETIMEDOUT);
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, SB_SERVER_V4, PORT_DENIED), EPERM);
	o = wait_flow_log(&needed);
	cr_assert_not_null(o, "no auth_needed record");
	cr_expect(jis(o, "verdict", "pending"), "verdict %s", jstr(o, "verdict"));
	json_object_put(o);
	o = wait_flow_log(&held);
	cr_expect_not_null(o, "no drop of the held SYN");
	json_object_put(o);

	cr_assert_eq(ctl("observe -j --last 1000 --port %d", PORT_MTLS), 0, "%s", output);
	cr_expect(strstr(output, "\"dst_port\":8083") != NULL, "%s", output);
	cr_expect(strstr(output, "\"dst_port\":8081") == NULL, "--port let 8081 through: %s",
		  output);
	cr_assert_eq(ctl("observe -j --last 1000 --verdict pending"), 0, "%s", output);
	cr_expect(strstr(output, "\"event\":\"auth_needed\"") != NULL, "%s", output);
	cr_expect(strstr(output, "\"event\":\"drop\"") == NULL, "--verdict let a drop through");
	cr_assert_eq(ctl("observe -j --last 1000 --trust-domain other.test"), 0, "%s", output);
	cr_expect_eq(output[0], '\0', "records of another trust domain: %s", output);
	cr_assert_eq(ctl("observe -j --last 1000 --trust-domain mesh.test --reason deny_policy"), 0,
		     "%s", output);
	cr_expect(strstr(output, "\"dst_port\":8081") != NULL, "%s", output);
	cr_expect_eq(ctl("observe -j --last 1 --since 1m"), 0, "%s", output);
	cr_expect(strchr(output, '\n') && strchr(output, '\n')[1] == '\0',
		  "--last 1 is not one line: %s", output);
	cr_expect_eq(ctl("observe --reason nonsense"), 1, "%s", output);
	cr_expect_eq(ctl("observe --since yesterday"), 2, "%s", output);

	/* the readable form: one line a flow */
	cr_assert_eq(ctl("observe --last 1 --reason deny_policy"), 0, "%s", output);
	cr_expect(strstr(output, "deny_policy") && strstr(output, A) && strstr(output, ":8081"),
		  "text line: %s", output);
}

/* --- following --------------------------------------------------------------------- */

/* fedguardctl observe --follow -j in a child; its stdout on *out. */
static pid_t follower(int *out, const char *extra)
{
	int p[2];
	pid_t pid;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		execl(getenv("FEDGUARDCTL"), "fedguardctl", "--instance", sb.instance, "observe",
		      "--follow", "-j", extra, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	*out = p[0];
	return pid;
}

/* Waits (bounded) until the agent counts @n followers, from its metrics. */
static void wait_followers(int n);

static char *read_line(int fd, char *buf, size_t len)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	size_t got = 0;

	while (got + 1 < len) {
		if (poll(&p, 1, WAIT_MS) != 1 || read(fd, buf + got, 1) != 1)
			return NULL;
		if (buf[got++] == '\n')
			break;
	}
	buf[got] = 0;
	return buf;
}

Test(observe, follow_streams_matching_records_as_they_come)
{
	char line[65536];
	int out, st;
	pid_t pid = follower(&out, "--reason=deny_policy");
	struct json_object *o;

	wait_followers(1);
	/* not wanted by the filter, sent first: it must not come before the wanted one */
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, UNKNOWN_V4, SB_ECHO_PORT), EPERM);
	cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, SB_SERVER_V4, PORT_DENIED), EPERM);
	cr_assert_not_null(read_line(out, line, sizeof(line)), "no record streamed");
	o = json_tokener_parse(line);
	cr_assert_not_null(o, "not JSON: %s", line);
	cr_expect(jis(o, "reason", "deny_policy"), "the first streamed record: %s", line);
	cr_expect_eq(json_object_get_int(json_object_object_get(o, "dst_port")), PORT_DENIED);
	json_object_put(o);

	kill(pid, SIGINT);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "observe --follow ended with %d", st);
	close(out);
	wait_followers(0);
}

/* --- metrics ----------------------------------------------------------------------- */

static int metrics_port(void)
{
	char *log = read_file(sb_log_path(&sb)), *p = strstr(log, "(port ");
	int port = p ? atoi(p + 6) : 0;

	free(log);
	cr_assert_gt(port, 0, "no metrics port in the agent's log %s", sb_log_path(&sb));
	return port;
}

/* GET /metrics over TCP; the body. */
static char *scrape(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(metrics_port()),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: fedguard\r\n\r\n";
	struct timeval tv = {.tv_sec = 10};
	char *buf = malloc(SCRAPE_MAX), *body;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t got = 0;
	ssize_t n;

	cr_assert(buf && fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	cr_assert_eq(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(req) - 1);
	while (got + 1 < SCRAPE_MAX && (n = recv(fd, buf + got, SCRAPE_MAX - 1 - got, 0)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = 0;
	cr_assert(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "response: %.300s", buf);
	body = strstr(buf, "\r\n\r\n");
	cr_assert_not_null(body);
	memmove(buf, body + 4, strlen(body + 4) + 1);
	return buf;
}

/*
 * Checks the exposition line by line: every sample follows the HELP and
 * TYPE lines of its own family, families are contiguous, values parse.
 * Returns the value of the sample whose text before the value is @want
 * (-1 when there is none).
 */
/* Whether a sample's name belongs to the family typed, of type kind. */
static bool in_family(const char *name, const char *typed, const char *kind)
{
	static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
	size_t n = strlen(typed);

	if (strcmp(name, typed) == 0)
		return true;
	if (strcmp(kind, "histogram") != 0 || strncmp(name, typed, n) != 0)
		return false;
	for (size_t i = 0; i < 3; i++) {
		if (strcmp(name + n, suffixes[i]) == 0)
			return true;
	}
	return false;
}

static double check_exposition(char *text, const char *want)
{
	char family[256] = "", typed[256] = "", kind[32] = "";
	double found = -1;

	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char name[256], *sp = strrchr(line, ' '), *end;
		double v;

		if (strncmp(line, "# HELP ", 7) == 0) {
			cr_assert_eq(sscanf(line + 7, "%255s", family), 1, "%s", line);
			cr_assert(strncmp(family, "fedguard_", 9) == 0, "name %s", family);
			typed[0] = 0;
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			cr_assert_eq(sscanf(line + 7, "%255s %31s", typed, kind), 2, "%s", line);
			cr_assert_str_eq(typed, family, "TYPE without its HELP: %s", line);
			cr_assert(!strcmp(kind, "counter") || !strcmp(kind, "gauge") ||
					  !strcmp(kind, "histogram"),
				  "%s", line);
			continue;
		}
		cr_assert_not_null(sp, "not a sample: %s", line);
		cr_assert_eq(sscanf(line, "%255[^{ ]", name), 1, "%s", line);
		cr_assert(in_family(name, typed, kind),
			  "sample outside its family (no HELP/TYPE): %s", line);
		v = strtod(sp + 1, &end); /* also +Inf and NaN */
		cr_assert(*end == '\0' && end != sp + 1, "value of %s", line);
		*sp = 0;
		if (strcmp(line, want) == 0)
			found = v;
		*sp = ' ';
	}
	return found;
}

static double metric(const char *want)
{
	char *body = scrape();
	double v = check_exposition(body, want);

	free(body);
	return v;
}

static void wait_followers(int n)
{
	long deadline = now_ms() + WAIT_MS;

	while (metric("fedguard_observe_followers") != n && now_ms() < deadline)
		usleep(STEP_MS * 1000);
	cr_assert_eq(metric("fedguard_observe_followers"), n, "followers never came to %d", n);
}

static __u64 counter_of(__u32 reason)
{
	struct fg_counter sum[FG_REASON_MAX];
	int fd = sb_map(&sb, "fg_counters");

	cr_assert_geq(fd, 0);
	cr_assert_eq(fg_test_counters_sum(fd, sum), 0);
	close(fd);
	return sum[reason].packets;
}

static struct fg_ev_stats ev_stats(void)
{
	int ncpu = libbpf_num_possible_cpus(), fd = sb_map(&sb, "fg_ev_stats");
	struct fg_ev_stats *v = calloc((size_t)ncpu, sizeof(*v)), sum = {};
	__u32 zero = 0;

	cr_assert(fd >= 0 && v);
	cr_assert_eq(bpf_map_lookup_elem(fd, &zero, v), 0);
	for (int c = 0; c < ncpu; c++) {
		sum.emitted += v[c].emitted;
		sum.suppressed += v[c].suppressed;
		sum.lost += v[c].lost;
	}
	free(v);
	close(fd);
	return sum;
}

Test(observe, metrics_scraped_over_http_match_the_kernel_counters)
{
	const char *deny = "fedguard_verdicts_total{verdict=\"deny\",reason=\"deny_policy\"}";
	__u64 before, after, emitted;
	double v;

	for (int i = 0; i < 7; i++)
		cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, SB_SERVER_V4, PORT_DENIED),
			     EPERM);
	before = counter_of(FG_REASON_DENY_POLICY);
	v = metric(deny);
	after = counter_of(FG_REASON_DENY_POLICY);
	cr_expect_geq(before, 7);
	cr_expect(v >= (double)before && v <= (double)after, "scraped %.0f, map said %llu..%llu", v,
		  (unsigned long long)before, (unsigned long long)after);

	cr_expect_eq(metric("fedguard_map_entries{map=\"fg_cgroups\"}"), 2, "two workloads");
	cr_expect_eq(metric("fedguard_map_max_entries{map=\"fg_sockets\"}"), 262144);
	cr_expect_eq(metric("fedguard_workloads"), 2);
	cr_expect_eq(metric("fedguard_policy_version"), 1);
	cr_expect_geq(metric("fedguard_policy_generation"), 2, "a policy was applied");
	cr_expect_eq(metric("fedguard_quarantined{kind=\"identity\"}"), 0);
	cr_assert_eq(ctl("quarantine add %s", B), 0, "%s", output);
	cr_expect_eq(metric("fedguard_quarantined{kind=\"identity\"}"), 1);
	emitted = ev_stats().emitted;
	cr_expect_geq(metric("fedguard_events_emitted_total"), (double)emitted);
	cr_expect_eq(metric("fedguard_events_lost_total"), 0);
	cr_expect_geq(metric("fedguard_flow_records_total{event=\"drop\"}"), 7);
	cr_expect_eq(metric("fedguard_auth_handshake_duration_seconds_bucket{role=\"asker\","
			    "le=\"+Inf\"}"),
		     0, "handshakes without --trust-domain");
}

/* --- alerts --------------------------------------------------------------------------- */

Test(observe, a_burst_of_denies_raises_an_alert)
{
	struct json_object *o, *subject;
	char *text;

	for (int i = 0; i < 25; i++)
		cr_expect_eq(attempt_from(SB_CLIENT, SOCK_STREAM, SB_SERVER_V4, PORT_DENIED),
			     EPERM);
	for (long deadline = now_ms() + WAIT_MS; now_ms() < deadline; usleep(STEP_MS * 1000)) {
		cr_assert_eq(ctl("alerts -j"), 0, "%s", output);
		if (strstr(output, "deny_rate"))
			break;
	}
	o = json_tokener_parse(output);
	cr_assert_not_null(o, "alerts -j: %s", output);
	cr_expect(jis(o, "kind", "deny_rate"), "%s", output);
	subject = json_object_object_get(o, "subject");
	cr_expect(jis(subject, "spiffe_id", A), "%s", output);
	cr_expect_eq(json_object_get_int(json_object_object_get(o, "count")), 20);
	json_object_put(o);

	/* in the flow log as a record of its own, and in the agent's log */
	for (long deadline = now_ms() + WAIT_MS; now_ms() < deadline; usleep(STEP_MS * 1000)) {
		text = read_file(flow_log);
		if (strstr(text, "\"type\":\"alert\""))
			break;
		free(text);
		text = NULL;
	}
	cr_expect_not_null(text, "no alert record in the flow log");
	free(text);
	text = read_file(sb_log_path(&sb));
	cr_expect(strstr(text, "alert 1 deny_rate") != NULL, "not in the agent's log");
	free(text);
	cr_assert_eq(ctl("alerts"), 0, "%s", output);
	cr_expect(strstr(output, "deny_rate") && strstr(output, A), "text: %s", output);
}

/* --- the flood limit ---------------------------------------------------------------------- */

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

Test(observe_flood, a_flood_of_denies_is_limited_counted_and_bounded_on_disk)
{
	enum { FLOOD = 3000 };
	struct fg_ev_stats s0 = ev_stats(), s1;
	char rotated[PATH_MAX + 40], *text;
	int n, records = 0;
	double suppressed;

	/* each connect fails with EPERM at once: one deny_policy drop event each */
	n = sb_connect_many(&sb, SB_SERVER_V4, PORT_DENIED, FLOOD);
	cr_assert_eq(n, 0, "denied connects connected: %d", n);
	s1 = ev_stats();
	cr_expect_gt(s1.suppressed, s0.suppressed, "nothing was suppressed");
	cr_expect_geq((s1.emitted - s0.emitted) + (s1.suppressed - s0.suppressed) +
			      (s1.lost - s0.lost),
		      FLOOD, "fewer events than drops");
	fprintf(stderr,
		"flood: %d denied connects: %llu events reported, %llu suppressed, "
		"%llu lost\n",
		FLOOD, (unsigned long long)(s1.emitted - s0.emitted),
		(unsigned long long)(s1.suppressed - s0.suppressed),
		(unsigned long long)(s1.lost - s0.lost));

	suppressed = metric("fedguard_events_suppressed_total");
	cr_expect(suppressed >= (double)s1.suppressed &&
			  suppressed <= (double)ev_stats().suppressed,
		  "scraped %.0f suppressed, the map said %llu", suppressed,
		  (unsigned long long)s1.suppressed);

	/* the flow log: what was reported at most, in at most two files of 8 KiB */
	cr_assert_eq(ctl("observe -j --last 100000 --reason deny_policy"), 0, "%s", output);
	for (char *p = output; (p = strchr(p, '\n')); p++)
		records++;
	cr_expect_leq(records, (int)(s1.emitted - s0.emitted), "more records than events");
	cr_expect_gt(records, 0);
	snprintf(rotated, sizeof(rotated), "%s.1", flow_log);
	for (long deadline = now_ms() + WAIT_MS; now_ms() < deadline; usleep(STEP_MS * 1000)) {
		if (file_size(rotated) > 0)
			break;
	}
	cr_expect_leq(file_size(flow_log), 8192);
	cr_expect_leq(file_size(rotated), 8192);
	cr_expect_gt(file_size(rotated), 0, "the flow log never rotated");
	snprintf(rotated, sizeof(rotated), "%s.2", flow_log);
	cr_expect_eq(file_size(rotated), -1, "more rotated files than --flow-log-keep=1");
	text = read_file(flow_log);
	cr_expect(text[0] == '{' && text[strlen(text) - 1] == '\n', "not whole lines");
	free(text);
}
