// SPDX-License-Identifier: Apache-2.0
/*
 * Peer authentication end to end: two nodes, each a network namespace
 * with its own fedguardd, trust domain and CA, and one workload each in a
 * namespace of its own behind its node, the nodes routing between them.
 *
 *   wa (10.233.1.2) -- node A (10.233.1.1 | 10.233.0.1) -- node B (10.233.0.2 | 10.233.2.1) -- wb (10.233.2.2)
 *   spiffe://a.test/client                                                  spiffe://b.test/server
 *
 * Policy on both nodes: client -> server port 8080 with auth: required.
 * The client connects; the datapath holds its SYN while agent A asks agent
 * B for the server's SVID over mTLS and both write fg_auth.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>

#include <fedguard/abi.h>

#include "control.h"
#include "ctl_client.h"
#include "lib/authtest.h"
#include "lib/pki.h"
#include "lib/require.h"
#include "lib/rogue.h"
#include "lib/sandbox.h"
#include "sys.h"

#define CLIENT "spiffe://a.test/client"
#define SERVER "spiffe://b.test/server"

enum {
	AUTH_PORT = 18443,
	SVID_TTL = 6,		/* seconds: renewals happen during the tests */
	READY_MS = 60000,
	WAIT_MS = 10000,
	ECHO_MS = 2000,
	SILENCE_MS = 600,
	ROUNDS = 5,
};

struct node {
	const char *td;
	const char *addr;	/* the node's, on the link between the nodes */
	const char *gw;		/* the node's, on the link to its workload */
	const char *waddr;	/* the workload's */
	const char *id;		/* the workload's SPIFFE ID */
	const char *peer_id;	/* the other node's workload */
	const char *peer_waddr;
	char tag;		/* MAC addresses 02:fa:00:00:TAG:xx */
	char instance[32];
	char ns[32];		/* the node's network namespace */
	char wns[32];		/* the workload's */
	char cg[PATH_MAX];	/* the subtree the node's agent manages */
	char wcg[PATH_MAX];	/* the workload's cgroup in it */
	char dir[PATH_MAX];	/* CA files, state, log */
	struct at_ca ca;
	pid_t agent;
};

static struct node A = { .td = "a.test", .addr = "10.233.0.1", .gw = "10.233.1.1",
			 .waddr = "10.233.1.2", .id = CLIENT, .peer_id = SERVER,
			 .peer_waddr = "10.233.2.2", .tag = 1 };
static struct node B = { .td = "b.test", .addr = "10.233.0.2", .gw = "10.233.2.1",
			 .waddr = "10.233.2.2", .id = SERVER, .peer_id = CLIENT,
			 .peer_waddr = "10.233.1.2", .tag = 2 };
static char root_cg[PATH_MAX], tmp_dir[PATH_MAX];
static pid_t server;

static const char policy[] = "version: 1\n"
			     "rules:\n"
			     "  - name: client-to-server\n"
			     "    action: allow\n"
			     "    from: {spiffe_id: " CLIENT "}\n"
			     "    to: {spiffe_id: " SERVER "}\n"
			     "    ports: [8080]\n"
			     "    auth: required\n";

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- the world ---------------------------------------------------------------------------- */

static void names(struct node *n, char tag)
{
	snprintf(n->instance, sizeof(n->instance), "fg%c%d", tag, getpid());
	snprintf(n->ns, sizeof(n->ns), "fgn%c%d", tag, getpid());
	snprintf(n->wns, sizeof(n->wns), "fgw%c%d", tag, getpid());
	snprintf(n->cg, sizeof(n->cg), "%.3000s/%c", root_cg, tag);
	snprintf(n->wcg, sizeof(n->wcg), "%.3000s/%c/w", root_cg, tag);
	snprintf(n->dir, sizeof(n->dir), "%.3000s/%c", tmp_dir, tag);
}

/*
 * A node's namespace, its workload's, the veth between them, routes, and
 * static neighbours: address resolution would otherwise be timed too.
 */
static int net_node(struct node *n)
{
	if (sb_sh("ip netns add %s && ip netns add %s", n->ns, n->wns) ||
	    sb_sh("ip link add w0 address 02:fa:00:00:%02x:01 netns %s type veth"
		  " peer name w0 address 02:fa:00:00:%02x:02 netns %s", n->tag, n->ns, n->tag, n->wns) ||
	    sb_sh("ip -n %s addr add %s/24 dev w0 && ip -n %s link set w0 up && ip -n %s link set lo up"
		  " && ip -n %s neigh add %s lladdr 02:fa:00:00:%02x:02 dev w0 nud permanent",
		  n->ns, n->gw, n->ns, n->ns, n->ns, n->waddr, n->tag) ||
	    sb_sh("ip -n %s addr add %s/24 dev w0 && ip -n %s link set w0 up && ip -n %s link set lo up"
		  " && ip -n %s route add default via %s"
		  " && ip -n %s neigh add %s lladdr 02:fa:00:00:%02x:01 dev w0 nud permanent",
		  n->wns, n->waddr, n->wns, n->wns, n->wns, n->gw, n->wns, n->gw, n->tag) ||
	    sb_sh("ip netns exec %s sysctl -qw net.ipv4.ip_forward=1", n->ns))
		return -EIO;
	return 0;
}

/* The link between the nodes, from n's side. */
static int net_link(struct node *n, struct node *other, const char *other_net)
{
	return sb_sh("ip -n %s addr add %s/24 dev n0 && ip -n %s link set n0 up"
		     " && ip -n %s route add %s via %s"
		     " && ip -n %s neigh add %s lladdr 02:fa:00:00:00:%02x dev n0 nud permanent",
		     n->ns, n->addr, n->ns, n->ns, other_net, other->addr, n->ns, other->addr,
		     other->tag) ? -EIO : 0;
}

static int net_setup(void)
{
	char old[32] = "0";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_child_ehash_entries", "re");
	int r;

	if (f) {
		if (!fgets(old, sizeof(old), f))
			snprintf(old, sizeof(old), "0");
		old[strcspn(old, "\n")] = 0;
		fclose(f);
	}
	/* own TCP hash tables for the namespaces, as ARCHITECTURE.md recommends; put back */
	if (sb_sh("sysctl -qw net.ipv4.tcp_child_ehash_entries=1024"))
		return -EIO;
	r = net_node(&A);
	if (!r)
		r = net_node(&B);
	sb_sh("sysctl -qw net.ipv4.tcp_child_ehash_entries=%s", old);
	if (r || sb_sh("ip link add n0 address 02:fa:00:00:00:01 netns %s type veth"
		       " peer name n0 address 02:fa:00:00:00:02 netns %s", A.ns, B.ns))
		return -EIO;
	r = net_link(&A, &B, "10.233.2.0/24");
	return r ? r : net_link(&B, &A, "10.233.1.0/24");
}

static int cgroups_setup(void)
{
	struct sys_mount m;
	int r = sys_cgroup2_mount(&m);

	if (r)
		return r;
	snprintf(root_cg, sizeof(root_cg), "%.3000s/fgauth%d", m.target, getpid());
	names(&A, 'a');
	names(&B, 'b');
	if (mkdir(root_cg, 0755) || mkdir(A.cg, 0755) || mkdir(A.wcg, 0755) ||
	    mkdir(B.cg, 0755) || mkdir(B.wcg, 0755))
		return -errno;
	return 0;
}

/* The CA files, the bundle, and the root alone as PEM (root.pem). */
static int pki_setup(struct node *n)
{
	char path[PATH_MAX + 16];
	STACK_OF(X509) *root;
	int r = at_ca_make(n->td, time(NULL), 86400, &n->ca);

	if (!r && mkdir(n->dir, 0700))
		r = -errno;
	if (!r)
		r = at_ca_write(&n->ca, n->dir);
	snprintf(path, sizeof(path), "%s/root.pem", n->dir);
	root = pki_stack(n->ca.root, NULL);
	if (!r)
		r = pki_write_chain(path, root);
	sk_X509_pop_free(root, X509_free);
	return r;
}

/* --- agents --------------------------------------------------------------------------------- */

static void agent_exec(struct node *n, int log_fd)
{
	char cert[PATH_MAX + 16], key[PATH_MAX + 16], state[PATH_MAX + 16];
	char ba[PATH_MAX + 32], bb[PATH_MAX + 32], listen[64], ttl[16], ns[PATH_MAX];
	const char *agent = getenv("FEDGUARDD");
	int fd;

	snprintf(cert, sizeof(cert), "%s/node-ca.pem", n->dir);
	snprintf(key, sizeof(key), "%s/node-ca.key", n->dir);
	snprintf(state, sizeof(state), "%s/state", n->dir);
	snprintf(ba, sizeof(ba), "a.test=%s/bundle.json", A.dir);
	snprintf(bb, sizeof(bb), "b.test=%s/bundle.json", B.dir);
	snprintf(listen, sizeof(listen), "%s:%d", n->addr, AUTH_PORT);
	snprintf(ttl, sizeof(ttl), "%d", SVID_TTL);
	snprintf(ns, sizeof(ns), "/var/run/netns/%s", n->ns);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	dup2(log_fd, STDERR_FILENO);
	fd = open(ns, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET))
		_exit(126);
	execl(agent, agent, "--instance", n->instance, "--cgroup", n->cg, "--state-dir", state,
	      "--trust-domain", n->td, "--node-cert", cert, "--node-key", key, "--node-name",
	      n->td[0] == 'a' ? "a" : "b", "--bundle", ba, "--bundle", bb, "--node-address",
	      n->addr, "--auth-listen", listen, "--svid-ttl", ttl, "-v", NULL);
	_exit(127);
}

static const char *log_path(const struct node *n)
{
	static char path[2][PATH_MAX + 16];
	char (*p)[PATH_MAX + 16] = &path[n == &A ? 0 : 1];

	snprintf(*p, sizeof(*p), "%s/agent.log", n->dir);
	return *p;
}

/* Lines of n's agent log that contain needle. */
static int log_count(const struct node *n, const char *needle)
{
	FILE *f = fopen(log_path(n), "re");
	char line[4096];
	int count = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		count += strstr(line, needle) != NULL;
	fclose(f);
	return count;
}

static int agent_start(struct node *n)
{
	long deadline = now_ms() + READY_MS;
	int fd = open(log_path(n), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || !getenv("FEDGUARDD"))
		return -ENOENT;
	n->agent = fork();
	if (n->agent == 0)
		agent_exec(n, fd);
	close(fd);
	while (now_ms() < deadline) {
		if (log_count(n, "ready") > 0)
			return 0;
		if (waitpid(n->agent, NULL, WNOHANG) == n->agent) {
			n->agent = 0;
			return -ECHILD;
		}
		usleep(20000);
	}
	return -ETIMEDOUT;
}

static void agent_stop(struct node *n)
{
	if (n->agent <= 0)
		return;
	kill(n->agent, SIGCONT);
	kill(n->agent, SIGTERM);
	waitpid(n->agent, NULL, 0);
	n->agent = 0;
}

/* --- control requests ------------------------------------------------------------------------- */

static int request(struct node *n, const char *command, const char *args_json,
		   struct json_object **result)
{
	struct ctl c = { .instance = n->instance };
	struct json_object *args = args_json ? json_tokener_parse(args_json) : NULL, *res = NULL;
	int r;

	control_default_path(n->instance, c.socket_buf, sizeof(c.socket_buf));
	c.socket_path = c.socket_buf;
	r = ctl_request(&c, command, args, &res);
	if (result)
		*result = res;
	else
		json_object_put(res);
	return r;
}

static void register_node(struct node *n)
{
	char args[PATH_MAX * 2];
	struct json_object *doc = json_object_new_object(), *res;
	int r;

	snprintf(args, sizeof(args),
		 "{\"spiffe_id\": \"%s\", \"cgroup\": \"%s\", \"ips\": [\"%s\"],"
		 " \"netns\": \"/var/run/netns/%s\"}", n->id, n->wcg, n->waddr, n->wns);
	cr_assert_eq(request(n, "workload.add", args, NULL), 0, "workload.add on %s", n->instance);
	snprintf(args, sizeof(args), "{\"spiffe_id\": \"%s\", \"ips\": [\"%s\"], \"node\": \"%s\"}",
		 n->peer_id, n->peer_waddr, n == &A ? B.addr : A.addr);
	cr_assert_eq(request(n, "endpoint.add", args, NULL), 0, "endpoint.add on %s", n->instance);
	json_object_object_add(doc, "document", json_object_new_string(policy));
	json_object_object_add(doc, "source", json_object_new_string("auth.yaml"));
	r = request(n, "policy.apply", json_object_to_json_string(doc), &res);
	json_object_put(doc);
	json_object_put(res);
	cr_assert_eq(r, 0, "policy.apply on %s", n->instance);
}

/* fedguardctl --instance of n and args; its exit status, its stdout and stderr in out. */
__attribute__((format(printf, 4, 5))) static int ctl(struct node *n, char *out, size_t len,
						      const char *fmt, ...)
{
	char args[1024], cmd[2048];
	size_t got = 0;
	va_list ap;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s --instance %s %s 2>&1", getenv("FEDGUARDCTL"), n->instance,
		 args);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (got + 1 < len && fgets(out + got, (int)(len - got), p))
		got += strlen(out + got);
	out[got] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* --- maps ---------------------------------------------------------------------------------------- */

static int map_of(const struct node *n, const char *name)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "/sys/fs/bpf/fedguard/%s/%s", n->instance, name);
	fd = bpf_obj_get(path);
	cr_assert_geq(fd, 0, "map %s: %s", path, strerror(errno));
	return fd;
}

static __u64 mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

/* The latest expiry among n's valid fg_auth entries; 0 when there is none. */
static __u64 auth_expiry(const struct node *n)
{
	int fd = map_of(n, "fg_auth");
	struct fg_auth_key key, next, *prev = NULL;
	struct fg_auth_value v;
	__u64 now = mono_ns(), best = 0;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(fd, &next, &v) == 0 && v.expiry_ns > now && v.expiry_ns > best)
			best = v.expiry_ns;
		key = next;
		prev = &key;
	}
	close(fd);
	return best;
}

static bool wait_auth(const struct node *n, long ms)
{
	for (long end = now_ms() + ms; now_ms() < end; usleep(5000))
		if (auth_expiry(n))
			return true;
	return false;
}

static __u64 counter(const struct node *n, __u32 reason)
{
	int ncpu = libbpf_num_possible_cpus(), fd = map_of(n, "fg_counters");
	struct fg_counter c[ncpu];
	__u64 sum = 0;

	cr_assert_eq(bpf_map_lookup_elem(fd, &reason, c), 0);
	close(fd);
	for (int i = 0; i < ncpu; i++)
		sum += c[i].packets;
	return sum;
}

static void flush_both(void)
{
	cr_assert_eq(request(&A, "auth.flush", NULL, NULL), 0);
	cr_assert_eq(request(&B, "auth.flush", NULL, NULL), 0);
	cr_assert_eq(auth_expiry(&A), 0);
	cr_assert_eq(auth_expiry(&B), 0);
}

/* --- set-up and tear-down ------------------------------------------------------------------------ */

static void teardown(void);

/* A failed set-up removes what it made: Criterion runs no teardown after it. */
#define setup_check(cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			teardown();                                                                \
			cr_assert_fail(__VA_ARGS__);                                               \
		}                                                                                  \
	} while (0)

static void setup(void)
{
	int r;

	fg_test_require_root_bpf();
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/fgauth%d", getpid());
	setup_check(mkdir(tmp_dir, 0700) == 0, "%s: %m", tmp_dir);
	r = cgroups_setup();
	setup_check(r == 0, "cgroups: %s", strerror(-r));
	setup_check(pki_setup(&A) == 0 && pki_setup(&B) == 0, "CAs");
	r = net_setup();
	setup_check(r == 0, "network namespaces: %s", strerror(-r));
	setup_check(sb_serve_in(B.wcg, B.wns, &server) == 0, "echo server");
	for (struct node *n = &A; n; n = n == &A ? &B : NULL) {
		r = agent_start(n);
		setup_check(r == 0, "fedguardd %s did not start (%s); log: %s", n->instance,
			    strerror(-r), log_path(n));
	}
	register_node(&A);
	register_node(&B);
}

static void teardown(void)
{
	const char *agent = getenv("FEDGUARDD");

	if (server > 0) {
		kill(-server, SIGKILL);
		waitpid(server, NULL, 0);
	}
	for (struct node *n = &A; n; n = n == &A ? &B : NULL) {
		agent_stop(n);
		if (agent && n->instance[0])
			sb_sh("%s --instance %s --uninstall -q", agent, n->instance);
		if (n->ns[0])
			sb_sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", n->ns,
			      n->wns);
		for (int i = 0; i < 50 && n->wcg[0] && rmdir(n->wcg) && errno == EBUSY; i++)
			usleep(20000);
		if (n->cg[0])
			rmdir(n->cg);
		at_ca_free(&n->ca);
	}
	if (root_cg[0])
		rmdir(root_cg);
	if (tmp_dir[0] && !getenv("FG_TEST_KEEP_LOGS"))
		sb_sh("rm -rf %s", tmp_dir);
}

TestSuite(auth, .init = setup, .fini = teardown, .timeout = 180);

/* --- helpers of the tests ------------------------------------------------------------------------ */

/* Time to first byte from the client to the server, in microseconds (or -errno). */
static int first_byte(void)
{
	return sb_first_byte_in(A.wcg, A.wns, AF_INET, B.waddr, SB_ECHO_PORT);
}

static int connect_client(void)
{
	return sb_connect_in(A.wcg, A.wns, AF_INET, SOCK_STREAM, B.waddr, SB_ECHO_PORT);
}

/* A file's content, NUL-terminated; 0 or -errno. */
static int read_file(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	long len;
	char *buf;

	if (!f)
		return -errno;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)len + 1);
	if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*out = buf;
	return buf ? 0 : -EIO;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static int median(int *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_int);
	return v[n / 2];
}

/* --- tests ---------------------------------------------------------------------------------------- */

Test(auth, traffic_flows_only_after_the_handshake)
{
	__u64 held = counter(&A, FG_REASON_DENY_AUTH_MISSING);
	int outcomes = log_count(&A, "auth: '");
	struct json_object *res;
	const char *text;
	int us;

	flush_both();
	/* agent B cannot answer: the client's SYN stays held, nothing gets through */
	kill(B.agent, SIGSTOP);
	us = first_byte();
	cr_expect_lt(us, 0, "data flowed without a handshake (%d us)", us);
	cr_expect_eq(auth_expiry(&A), 0, "A authenticated with a stopped peer");
	cr_expect_eq(auth_expiry(&B), 0);
	cr_expect_gt(counter(&A, FG_REASON_DENY_AUTH_MISSING), held, "no SYN was held for auth");
	kill(B.agent, SIGCONT);
	/* the handshake begun while B was stopped ends, one way or the other */
	for (long end = now_ms() + WAIT_MS; now_ms() < end && log_count(&A, "auth: '") == outcomes;)
		usleep(20000);

	/* with B answering, a cold connection works, and both sides hold the pair */
	flush_both();
	us = first_byte();
	cr_expect_gt(us, 0, "no connection after the handshake: %s", strerror(-us));
	cr_expect(auth_expiry(&A) && auth_expiry(&B), "fg_auth is not written on both sides");
	cr_assert_eq(request(&A, "auth.list", NULL, &res), 0);
	text = json_object_to_json_string_ext(res, JSON_C_TO_STRING_NOSLASHESCAPE);
	cr_expect(strstr(text, SERVER) && strstr(text, B.addr), "auth list on A: %s", text);
	json_object_put(res);
	cr_assert_eq(request(&B, "auth.list", NULL, &res), 0);
	text = json_object_to_json_string_ext(res, JSON_C_TO_STRING_NOSLASHESCAPE);
	cr_expect(strstr(text, CLIENT) && strstr(text, A.addr), "auth list on B: %s", text);
	json_object_put(res);

}

Test(auth, time_to_first_byte_cold_preauthenticated_cached)
{
	int cold[ROUNDS], pre[ROUNDS], cached[ROUNDS];

	for (int i = 0; i < ROUNDS; i++) {
		flush_both();
		cold[i] = first_byte();
		cr_assert_gt(cold[i], 0, "cold connection: %s", strerror(-cold[i]));
		cached[i] = first_byte();
		cr_assert_gt(cached[i], 0);

		flush_both();
		register_node(&A);	/* a policy apply: pre-authentication of its pairs */
		cr_assert(wait_auth(&A, WAIT_MS), "no pre-authentication");
		pre[i] = first_byte();
		cr_assert_gt(pre[i], 0);
	}
	printf("time to first byte, median of %d: cold pair %.2f ms, pre-authenticated %.2f ms, "
	       "cached %.2f ms\n", ROUNDS, median(cold, ROUNDS) / 1000.0,
	       median(pre, ROUNDS) / 1000.0, median(cached, ROUNDS) / 1000.0);
	/* the point: a cold pair never pays the 1 s SYN retransmit */
	cr_expect_lt(median(cold, ROUNDS), 500000);
}

/* A hostile asker on node A's namespace, from address from; the answer's status. */
static int rogue_from_node_a(const char *from, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
			     char *reply, size_t len)
{
	struct at_peer p = {};
	int pipefd[2], status = -EIO;
	char ns[PATH_MAX];
	pid_t pid;

	at_addr(B.addr, AUTH_PORT, &p.to, &p.to_len);
	at_addr(from, 0, &p.from, &p.from_len);
	snprintf(ns, sizeof(ns), "/var/run/netns/%s", A.ns);
	cr_assert_eq(pipe(pipefd), 0);
	pid = fork();
	if (pid == 0) {
		int fd = open(ns, O_RDONLY | O_CLOEXEC);

		if (fd >= 0 && setns(fd, CLONE_NEWNET) == 0)
			status = at_rogue_ask(&p, SERVER, cert, key, chain, FG_DIR_EGRESS, reply,
					      len);
		if (write(pipefd[1], &status, sizeof(status)) < 0 ||
		    write(pipefd[1], reply, len) < 0)
			_exit(1);
		_exit(0);
	}
	close(pipefd[1]);
	if (read(pipefd[0], &status, sizeof(status)) != sizeof(status) ||
	    read(pipefd[0], reply, len) < 0)
		status = -EIO;
	close(pipefd[0]);
	waitpid(pid, NULL, 0);
	return status;
}

Test(auth, impostors_cannot_authenticate)
{
	struct at_ca rogue;
	X509 *cert;
	EVP_PKEY *key;
	char reply[256] = "";
	int r;

	/* node A's operator cannot even register a workload of b.test there */
	r = request(&A, "workload.add",
		    "{\"spiffe_id\": \"spiffe://b.test/server2\", \"cgroup\": \"/\"}", NULL);
	cr_expect_eq(r, -EINVAL, "a foreign workload was registered: %d", r);

	flush_both();
	/* the client's ID in a leaf of b.test's CA: b.test cannot vouch for a.test */
	cr_assert_eq(at_forge_leaf(CLIENT, B.ca.node, B.ca.node_key, time(NULL), 3600, &cert, &key), 0);
	r = rogue_from_node_a(A.addr, cert, key, B.ca.node_chain, reply, sizeof(reply));
	cr_expect_eq(r, 1, "forged client not refused (%d): %s", r, reply);
	cr_expect(strstr(reply, "untrusted"), "%s", reply);
	X509_free(cert);
	EVP_PKEY_free(key);

	/* a CA that calls itself a.test, but is not in a.test's bundle */
	cr_assert_eq(at_ca_make("a.test", time(NULL), 86400, &rogue), 0);
	cr_assert_eq(at_forge_leaf(CLIENT, rogue.node, rogue.node_key, time(NULL), 3600, &cert, &key), 0);
	r = rogue_from_node_a(A.addr, cert, key, rogue.node_chain, reply, sizeof(reply));
	cr_expect_eq(r, 1, "rogue CA's client not refused (%d): %s", r, reply);
	X509_free(cert);
	EVP_PKEY_free(key);
	at_ca_free(&rogue);

	/* a genuine SVID of the client, stolen and used from another address than node A's */
	cr_assert_eq(sb_sh("ip -n %s addr add 10.233.0.9/24 dev n0", A.ns), 0);
	cr_assert_eq(at_forge_leaf(CLIENT, A.ca.node, A.ca.node_key, time(NULL), 3600, &cert, &key), 0);
	r = rogue_from_node_a("10.233.0.9", cert, key, A.ca.node_chain, reply, sizeof(reply));
	cr_expect_eq(r, 1, "the client's SVID from elsewhere was accepted (%d): %s", r, reply);
	cr_expect(strstr(reply, "another node"), "%s", reply);
	X509_free(cert);
	EVP_PKEY_free(key);
	cr_expect_eq(auth_expiry(&B), 0, "B authenticated an impostor");
}

Test(auth, deleting_a_trust_domain_cuts_its_sockets)
{
	struct json_object *res, *v;
	char *doc = NULL, path[PATH_MAX + 32];
	struct json_object *args;
	const char *text;
	int fd, us;

	fd = connect_client();
	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	cr_assert_eq(sb_echo(fd, "before", ECHO_MS), 0);
	/* the client's socket, bound to both identities and authenticated */
	cr_assert_eq(request(&A, "sockets.list", NULL, &res), 0);
	text = json_object_to_json_string_ext(res, JSON_C_TO_STRING_NOSLASHESCAPE);
	cr_expect(strstr(text, "\"local\":\"" CLIENT "\"") && strstr(text, "\"peer\":\"" SERVER "\"") &&
			  strstr(text, "\"state\":\"allowed\"") && strstr(text, "\"auth\":\"mtls\""),
		  "sockets list: %s", text);
	json_object_put(res);

	cr_assert_eq(request(&A, "bundle.del", "{\"trust_domain\": \"b.test\"}", &res), 0);
	cr_expect(json_object_object_get_ex(res, "sockets_destroyed", &v) &&
			  json_object_get_int(v) >= 1,
		  "bundle.del: %s", json_object_to_json_string(res));
	json_object_put(res);
	cr_expect_eq(sb_echo(fd, "after", ECHO_MS), -ECONNABORTED,
		     "the connection to b.test survived the deletion of its bundle");
	close(fd);
	cr_expect_eq(auth_expiry(&A), 0, "fg_auth of b.test survived");
	us = first_byte();
	cr_expect_lt(us, 0, "a new connection to b.test without its bundle");
	cr_assert_eq(request(&A, "bundle.list", NULL, &res), 0);
	cr_expect_null(strstr(json_object_to_json_string(res), "b.test"));
	json_object_put(res);

	/* the bundle back, by bundle.set: traffic again */
	snprintf(path, sizeof(path), "%s/bundle.json", B.dir);
	cr_assert_eq(read_file(path, &doc), 0);
	args = json_object_new_object();
	json_object_object_add(args, "trust_domain", json_object_new_string("b.test"));
	json_object_object_add(args, "document", json_object_new_string(doc));
	cr_assert_eq(request(&A, "bundle.set", json_object_to_json_string(args), NULL), 0);
	json_object_put(args);
	free(doc);
	cr_assert_eq(request(&A, "auth.flush", NULL, NULL), 0);	/* no backoff */
	us = first_byte();
	cr_expect_gt(us, 0, "no connection with the bundle back: %s", strerror(-us));
}

Test(auth, svid_rotation_keeps_connections_alive)
{
	int fd = connect_client(), renewed = log_count(&A, "renewed");
	__u64 first = auth_expiry(&A);
	char msg[32];

	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	/* two and a half SVID lifetimes, a message every half second */
	for (int i = 0; i < 5 * SVID_TTL; i++) {
		snprintf(msg, sizeof(msg), "message %d", i);
		cr_assert_eq(sb_echo(fd, msg, ECHO_MS), 0, "%s lost after %d ms", msg, i * 500);
		usleep(500 * 1000);
	}
	close(fd);
	cr_expect_gt(log_count(&A, "renewed"), renewed, "no SVID was renewed");
	cr_expect_gt(auth_expiry(&A), first + 1000000000ull * SVID_TTL,
		     "the pair was not authenticated again with the new SVIDs");
}

Test(auth, expiry_without_renewal_stops_new_traffic)
{
	int fd = connect_client(), us;
	__u64 expiry;

	cr_assert_geq(fd, 0);
	cr_assert_eq(sb_echo(fd, "before", ECHO_MS), 0);
	/* neither agent renews anything */
	kill(A.agent, SIGSTOP);
	kill(B.agent, SIGSTOP);
	expiry = auth_expiry(&A);
	cr_assert_gt(expiry, 0);
	while (mono_ns() < expiry + 100000000ull)
		usleep(50 * 1000);
	cr_expect_eq(sb_echo(fd, "expired", SILENCE_MS), -ETIMEDOUT,
		     "traffic flowed after the authentication expired");
	us = first_byte();
	cr_expect_lt(us, 0, "a new connection without authentication");
	close(fd);
	kill(A.agent, SIGCONT);
	kill(B.agent, SIGCONT);
	/* the agents back: a new connection is authenticated again */
	cr_assert_eq(request(&A, "auth.flush", NULL, NULL), 0);
	us = first_byte();
	cr_expect_gt(us, 0, "no recovery: %s", strerror(-us));
}

Test(auth, fedguardctl_shows_sockets_authentications_and_bundles)
{
	static char out[16384];
	int fd = connect_client();

	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	cr_assert_eq(sb_echo(fd, "hello", ECHO_MS), 0);

	cr_expect_eq(ctl(&A, out, sizeof(out), "sockets list"), 0, "%s", out);
	cr_expect(strstr(out, CLIENT) && strstr(out, SERVER) && strstr(out, "allowed") &&
			  strstr(out, "egress") && strstr(out, "mtls"),
		  "sockets list on A:\n%s", out);
	cr_expect_eq(ctl(&B, out, sizeof(out), "sockets list"), 0, "%s", out);
	cr_expect(strstr(out, "ingress") && strstr(out, CLIENT), "sockets list on B:\n%s", out);

	cr_expect_eq(ctl(&A, out, sizeof(out), "auth list"), 0, "%s", out);
	cr_expect(strstr(out, SERVER) && strstr(out, B.addr) && strstr(out, " s"),
		  "auth list:\n%s", out);
	cr_expect_eq(ctl(&A, out, sizeof(out), "-j auth list"), 0, "%s", out);
	cr_expect(strstr(out, "\"expires_in\"") && strstr(out, "\"trust_domain\""), "%s", out);

	cr_expect_eq(ctl(&A, out, sizeof(out), "bundle list"), 0, "%s", out);
	cr_expect(strstr(out, "a.test") && strstr(out, "b.test") && strstr(out, "yes"),
		  "bundle list:\n%s", out);
	cr_expect_eq(ctl(&A, out, sizeof(out), "bundle del a.test"), 1, "%s", out);
	cr_expect(strstr(out, "own trust domain"), "%s", out);
	/* the same roots as PEM: nothing changes for the connection */
	cr_expect_eq(ctl(&A, out, sizeof(out), "bundle set b.test %s/root.pem", B.dir), 0, "%s",
		     out);
	cr_expect(strstr(out, "sockets destroyed: 0"), "%s", out);
	cr_expect_eq(sb_echo(fd, "still there", ECHO_MS), 0);

	cr_expect_eq(ctl(&A, out, sizeof(out), "auth flush"), 0, "%s", out);
	cr_expect(strstr(out, "1 authentications removed"), "%s", out);
	/* the connection's next packets ask again: it keeps working */
	cr_expect_eq(sb_echo(fd, "after the flush", ECHO_MS), 0, "flush broke the connection");
	close(fd);
}
