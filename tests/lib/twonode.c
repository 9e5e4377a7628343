// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "twonode.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
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
#include <json-c/json.h>

#include <fedguard/abi.h>

#include "control.h"
#include "ctl_client.h"
#include "pki.h"
#include "sandbox.h"
#include "sys.h"

enum {
	READY_MS = 60000,
};

struct tn_node tn_a = { .td = "a.test", .addr = "10.233.0.1", .gw = "10.233.1.1",
			.waddr = "10.233.1.2", .id = TN_CLIENT, .peer_id = TN_SERVER,
			.peer_waddr = "10.233.2.2", .tag = 1 };
struct tn_node tn_b = { .td = "b.test", .addr = "10.233.0.2", .gw = "10.233.2.1",
			.waddr = "10.233.2.2", .id = TN_SERVER, .peer_id = TN_CLIENT,
			.peer_waddr = "10.233.1.2", .tag = 2 };
static char root_cg[PATH_MAX], tmp_dir[PATH_MAX];
static pid_t server;
static int svid_ttl;

static const char policy[] = "version: 1\n"
			     "rules:\n"
			     "  - name: client-to-server\n"
			     "    action: allow\n"
			     "    transport: authenticated\n"
			     "    from: {spiffe_id: " TN_CLIENT "}\n"
			     "    to: {spiffe_id: " TN_SERVER "}\n"
			     "    ports: [8080]\n"
			     "    auth: required\n";

long tn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

__u64 tn_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

/* --- the world ---------------------------------------------------------------------------- */

static void names(struct tn_node *n, char tag)
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
static int net_node(struct tn_node *n)
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
static int net_link(struct tn_node *n, struct tn_node *other, const char *other_net)
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
	r = net_node(&tn_a);
	if (!r)
		r = net_node(&tn_b);
	sb_sh("sysctl -qw net.ipv4.tcp_child_ehash_entries=%s", old);
	if (r || sb_sh("ip link add n0 address 02:fa:00:00:00:01 netns %s type veth"
		       " peer name n0 address 02:fa:00:00:00:02 netns %s", tn_a.ns, tn_b.ns))
		return -EIO;
	r = net_link(&tn_a, &tn_b, "10.233.2.0/24");
	return r ? r : net_link(&tn_b, &tn_a, "10.233.1.0/24");
}

static int cgroups_setup(void)
{
	struct sys_mount m;
	int r = sys_cgroup2_mount(&m);

	if (r)
		return r;
	snprintf(root_cg, sizeof(root_cg), "%.3000s/fgauth%d", m.target, getpid());
	names(&tn_a, 'a');
	names(&tn_b, 'b');
	if (mkdir(root_cg, 0755) || mkdir(tn_a.cg, 0755) || mkdir(tn_a.wcg, 0755) ||
	    mkdir(tn_b.cg, 0755) || mkdir(tn_b.wcg, 0755))
		return -errno;
	return 0;
}

/* The CA files, the bundle, and the root alone as PEM (root.pem). */
static int pki_setup(struct tn_node *n)
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

static void agent_exec(struct tn_node *n, int log_fd)
{
	char cert[PATH_MAX + 16], key[PATH_MAX + 16], state[PATH_MAX + 16];
	char ba[PATH_MAX + 32], bb[PATH_MAX + 32], listen[64], ttl[16], ns[PATH_MAX];
	const char *agent = getenv("FEDGUARDD");
	int fd;

	snprintf(cert, sizeof(cert), "%s/node-ca.pem", n->dir);
	snprintf(key, sizeof(key), "%s/node-ca.key", n->dir);
	snprintf(state, sizeof(state), "%s/state", n->dir);
	snprintf(ba, sizeof(ba), "a.test=%s/bundle.json", tn_a.dir);
	snprintf(bb, sizeof(bb), "b.test=%s/bundle.json", tn_b.dir);
	snprintf(listen, sizeof(listen), "%s:%d", n->addr, TN_AUTH_PORT);
	snprintf(ttl, sizeof(ttl), "%d", svid_ttl);
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

const char *tn_log_path(const struct tn_node *n)
{
	static char path[2][PATH_MAX + 16];
	char (*p)[PATH_MAX + 16] = &path[n == &tn_a ? 0 : 1];

	snprintf(*p, sizeof(*p), "%s/agent.log", n->dir);
	return *p;
}

int tn_log_count(const struct tn_node *n, const char *needle)
{
	FILE *f = fopen(tn_log_path(n), "re");
	char line[4096];
	int count = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		count += strstr(line, needle) != NULL;
	fclose(f);
	return count;
}

int tn_agent_start(struct tn_node *n)
{
	long deadline = tn_now_ms() + READY_MS;
	int fd = open(tn_log_path(n), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || !getenv("FEDGUARDD"))
		return -ENOENT;
	n->agent = fork();
	if (n->agent == 0)
		agent_exec(n, fd);
	close(fd);
	while (tn_now_ms() < deadline) {
		if (tn_log_count(n, "ready") > 0)
			return 0;
		if (waitpid(n->agent, NULL, WNOHANG) == n->agent) {
			n->agent = 0;
			return -ECHILD;
		}
		usleep(20000);
	}
	return -ETIMEDOUT;
}

void tn_agent_stop(struct tn_node *n)
{
	if (n->agent <= 0)
		return;
	kill(n->agent, SIGCONT);
	kill(n->agent, SIGTERM);
	waitpid(n->agent, NULL, 0);
	n->agent = 0;
}

/* --- control requests ------------------------------------------------------------------------- */

int tn_request(struct tn_node *n, const char *command, const char *args_json,
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

int tn_register(struct tn_node *n)
{
	char args[PATH_MAX * 2];
	struct json_object *doc = json_object_new_object();
	int r;

	snprintf(args, sizeof(args),
		 "{\"spiffe_id\": \"%s\", \"cgroup\": \"%s\", \"ips\": [\"%s\"],"
		 " \"netns\": \"/var/run/netns/%s\"}", n->id, n->wcg, n->waddr, n->wns);
	r = tn_request(n, "workload.add", args, NULL);
	snprintf(args, sizeof(args), "{\"spiffe_id\": \"%s\", \"ips\": [\"%s\"], \"node\": \"%s\"}",
		 n->peer_id, n->peer_waddr, n == &tn_a ? tn_b.addr : tn_a.addr);
	if (!r)
		r = tn_request(n, "endpoint.add", args, NULL);
	json_object_object_add(doc, "document", json_object_new_string(policy));
	json_object_object_add(doc, "source", json_object_new_string("auth.yaml"));
	if (!r)
		r = tn_request(n, "policy.apply", json_object_to_json_string(doc), NULL);
	json_object_put(doc);
	return r;
}

/* --- maps ---------------------------------------------------------------------------------------- */

int tn_map(const struct tn_node *n, const char *name)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "/sys/fs/bpf/fedguard/%s/%s", n->instance, name);
	fd = bpf_obj_get(path);
	return fd < 0 ? -errno : fd;
}

__u64 tn_auth_expiry(const struct tn_node *n)
{
	int fd = tn_map(n, "fg_auth");
	struct fg_auth_key key, next, *prev = NULL;
	struct fg_auth_value v;
	__u64 now = tn_mono_ns(), best = 0;

	if (fd < 0)
		return 0;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(fd, &next, &v) == 0 && v.expiry_ns > now && v.expiry_ns > best)
			best = v.expiry_ns;
		key = next;
		prev = &key;
	}
	close(fd);
	return best;
}

bool tn_wait_auth(const struct tn_node *n, long ms)
{
	for (long end = tn_now_ms() + ms; tn_now_ms() < end; usleep(5000))
		if (tn_auth_expiry(n))
			return true;
	return false;
}

int tn_flush_both(void)
{
	int r = tn_request(&tn_a, "auth.flush", NULL, NULL);

	if (!r)
		r = tn_request(&tn_b, "auth.flush", NULL, NULL);
	if (!r && (tn_auth_expiry(&tn_a) || tn_auth_expiry(&tn_b)))
		r = -ENOTEMPTY;
	return r;
}

/* --- set-up and tear-down ------------------------------------------------------------------------ */

#define STEP(expr, ...)                                                                             \
	do {                                                                                       \
		r = (expr);                                                                        \
		if (r) {                                                                           \
			snprintf(why, why_len, __VA_ARGS__);                                       \
			return r;                                                                  \
		}                                                                                  \
	} while (0)

int tn_setup(int ttl, char *why, size_t why_len)
{
	int r;

	svid_ttl = ttl;
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/fgauth%d", getpid());
	STEP(mkdir(tmp_dir, 0700) ? -errno : 0, "%s: %s", tmp_dir, strerror(errno));
	STEP(cgroups_setup(), "cgroups: %s", strerror(-r));
	STEP(pki_setup(&tn_a), "the CA of a.test: %s", strerror(-r));
	STEP(pki_setup(&tn_b), "the CA of b.test: %s", strerror(-r));
	STEP(net_setup(), "network namespaces: %s", strerror(-r));
	STEP(sb_serve_in(tn_b.wcg, tn_b.wns, &server), "echo server: %s", strerror(-r));
	STEP(tn_agent_start(&tn_a), "fedguardd %s did not start (%s); log: %s", tn_a.instance,
	     strerror(-r), tn_log_path(&tn_a));
	STEP(tn_agent_start(&tn_b), "fedguardd %s did not start (%s); log: %s", tn_b.instance,
	     strerror(-r), tn_log_path(&tn_b));
	STEP(tn_register(&tn_a), "registrations on %s: %s", tn_a.instance, strerror(-r));
	STEP(tn_register(&tn_b), "registrations on %s: %s", tn_b.instance, strerror(-r));
	return 0;
}

void tn_teardown(void)
{
	const char *agent = getenv("FEDGUARDD");

	if (server > 0) {
		kill(-server, SIGKILL);
		waitpid(server, NULL, 0);
		server = 0;
	}
	for (struct tn_node *n = &tn_a; n; n = n == &tn_a ? &tn_b : NULL) {
		tn_agent_stop(n);
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
		memset(&n->ca, 0, sizeof(n->ca));
		n->instance[0] = n->ns[0] = n->wcg[0] = n->cg[0] = 0;
	}
	if (root_cg[0])
		rmdir(root_cg);
	root_cg[0] = 0;
	if (tmp_dir[0] && !getenv("FG_TEST_KEEP_LOGS"))
		sb_sh("rm -rf %s", tmp_dir);
	tmp_dir[0] = 0;
}

/* --- the client ------------------------------------------------------------------------------------ */

int tn_first_byte(void)
{
	return sb_first_byte_in(tn_a.wcg, tn_a.wns, AF_INET, tn_b.waddr, SB_ECHO_PORT);
}

int tn_connect_client(void)
{
	return sb_connect_in(tn_a.wcg, tn_a.wns, AF_INET, SOCK_STREAM, tn_b.waddr, SB_ECHO_PORT);
}
