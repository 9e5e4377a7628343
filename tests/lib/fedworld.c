// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "fedworld.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "control.h"
#include "ctl_client.h"
#include "sandbox.h"
#include "sys.h"

enum {
	READY_MS = 60000,	/* BPF verification takes seconds, several agents at once more */
	ARGS_MAX = 64,
};

long fw_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* --- the network --------------------------------------------------------------------------- */

static int net_node(struct fw_world *w, struct fw_node *n)
{
	if (sb_sh("ip netns add %s && ip netns add %s", n->ns, n->wns) ||
	    sb_sh("ip link add n0 netns %s type veth peer name v%d netns %s", n->ns, n->idx,
		  w->xns) ||
	    sb_sh("ip -n %s link set v%d master br0 up", w->xns, n->idx) ||
	    sb_sh("ip -n %s addr add %s/24 dev n0 && ip -n %s link set n0 up"
		  " && ip -n %s link set lo up", n->ns, n->addr, n->ns, n->ns) ||
	    sb_sh("ip link add w0 netns %s type veth peer name w0 netns %s", n->ns, n->wns) ||
	    sb_sh("ip -n %s addr add %s/24 dev w0 && ip -n %s link set w0 up", n->ns, n->gw,
		  n->ns) ||
	    sb_sh("ip -n %s addr add %s/24 dev w0 && ip -n %s link set w0 up"
		  " && ip -n %s link set lo up && ip -n %s route add default via %s", n->wns,
		  n->waddr, n->wns, n->wns, n->wns, n->gw) ||
	    sb_sh("ip netns exec %s sysctl -qw net.ipv4.ip_forward=1", n->ns))
		return -EIO;
	return 0;
}

/* Every node routes to every other node's workload through that node. */
static int net_routes(struct fw_world *w)
{
	for (int i = 0; i < w->n_nodes; i++)
		for (int j = 0; j < w->n_nodes; j++)
			if (i != j && sb_sh("ip -n %s route add 10.234.%d.0/24 via %s", w->node[i].ns,
					    w->node[j].idx, w->node[j].addr))
				return -EIO;
	return 0;
}

static int net_setup(struct fw_world *w)
{
	char old[32] = "0";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_child_ehash_entries", "re");
	int r = 0;

	if (f) {
		if (!fgets(old, sizeof(old), f))
			snprintf(old, sizeof(old), "0");
		old[strcspn(old, "\n")] = 0;
		fclose(f);
	}
	if (sb_sh("ip netns add %s && ip -n %s link add br0 type bridge"
		  " && ip -n %s link set br0 up", w->xns, w->xns, w->xns))
		return -EIO;
	/* own TCP hash tables for the namespaces (ARCHITECTURE.md), put back after */
	if (sb_sh("sysctl -qw net.ipv4.tcp_child_ehash_entries=1024"))
		return -EIO;
	for (int i = 0; i < w->n_nodes && !r; i++)
		r = net_node(w, &w->node[i]);
	sb_sh("sysctl -qw net.ipv4.tcp_child_ehash_entries=%s", old);
	return r ? r : net_routes(w);
}

/* --- PKI ------------------------------------------------------------------------------------- */

static int ca_tool(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int ca_tool(const char *fmt, ...)
{
	const char *ca = getenv("FEDGUARD_CA");
	char args[2048];
	va_list ap;

	if (!ca)
		return -ENOENT;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	return sb_sh("%s %s >/dev/null", ca, args) ? -EIO : 0;
}

static int pki_setup(struct fw_world *w)
{
	for (int m = 0; m < w->n_meshes; m++) {
		struct fw_mesh *mesh = &w->mesh[m];

		if (ca_tool("init --trust-domain %s --out %s/ca", mesh->td, mesh->dir) ||
		    sb_sh("%s bundle --ca %s/ca > %s/bundle.json", getenv("FEDGUARD_CA"), mesh->dir,
			  mesh->dir) ||
		    ca_tool("policy-key --out %s/pk", mesh->dir))
			return -EIO;
	}
	for (int i = 0; i < w->n_nodes; i++) {
		struct fw_node *n = &w->node[i];

		if (ca_tool("issue-node --ca %s/ca --node %s --out %s/pki", w->mesh[n->mesh].dir,
			    n->name, n->dir))
			return -EIO;
	}
	return 0;
}

/* --- set-up and tear-down --------------------------------------------------------------------- */

static void names(struct fw_world *w, int meshes, int per_mesh)
{
	static const char *const tds[] = { "a.test", "b.test" };

	w->n_meshes = meshes;
	w->n_nodes = meshes * per_mesh;
	snprintf(w->xns, sizeof(w->xns), "fgx%d", getpid());
	for (int m = 0; m < meshes; m++) {
		struct fw_mesh *mesh = &w->mesh[m];

		snprintf(mesh->td, sizeof(mesh->td), "%s", tds[m]);
		snprintf(mesh->dir, sizeof(mesh->dir), "%.3000s/%s", w->dir, tds[m]);
		mesh->first = m * per_mesh;
		mesh->n = per_mesh;
	}
	for (int i = 0; i < w->n_nodes; i++) {
		struct fw_node *n = &w->node[i];

		n->idx = i + 1;
		n->mesh = i / per_mesh;
		snprintf(n->name, sizeof(n->name), "%c%d", 'a' + n->mesh, i % per_mesh + 1);
		snprintf(n->ns, sizeof(n->ns), "fgn%d%d", n->idx, getpid());
		snprintf(n->wns, sizeof(n->wns), "fgw%d%d", n->idx, getpid());
		snprintf(n->instance, sizeof(n->instance), "fgf%d%d", n->idx, getpid());
		snprintf(n->cg, sizeof(n->cg), "%.3000s/%s", w->root_cg, n->name);
		snprintf(n->wcg, sizeof(n->wcg), "%.3000s/%s/w", w->root_cg, n->name);
		snprintf(n->dir, sizeof(n->dir), "%.3000s/%s", w->dir, n->name);
		snprintf(n->addr, sizeof(n->addr), "10.234.0.%d", n->idx);
		snprintf(n->gw, sizeof(n->gw), "10.234.%d.1", n->idx);
		snprintf(n->waddr, sizeof(n->waddr), "10.234.%d.2", n->idx);
		snprintf(n->wid, sizeof(n->wid), "spiffe://%s/ns/%s/app", tds[n->mesh], n->name);
	}
}

/* The etcd's SVID and a client's, both minted with the mesh's root CA. */
static int store_tls(struct fw_world *w, struct fw_mesh *m)
{
	typeof(m->etcd.tls) *t = &m->etcd.tls;

	if (ca_tool("svid --ca %s/ca --spiffe-id spiffe://%s%s --ttl 86400 --out %s/etcd-tls",
		    m->dir, m->td, w->store_tls_path, m->dir) ||
	    ca_tool("svid --ca %s/ca --spiffe-id spiffe://%s/test/client --ttl 86400 --out "
		    "%s/client-tls", m->dir, m->td, m->dir))
		return -EIO;
	snprintf(t->cert, sizeof(t->cert), "%.200s/etcd-tls/svid.pem", m->dir);
	snprintf(t->key, sizeof(t->key), "%.200s/etcd-tls/svid.key", m->dir);
	snprintf(t->ca, sizeof(t->ca), "%.200s/ca/ca.pem", m->dir);
	snprintf(t->client_cert, sizeof(t->client_cert), "%.200s/client-tls/svid.pem", m->dir);
	snprintf(t->client_key, sizeof(t->client_key), "%.200s/client-tls/svid.key", m->dir);
	return 0;
}

static int dirs_setup(struct fw_world *w)
{
	if (mkdir(w->root_cg, 0755))
		return -errno;
	for (int m = 0; m < w->n_meshes; m++)
		if (mkdir(w->mesh[m].dir, 0700))
			return -errno;
	for (int i = 0; i < w->n_nodes; i++)
		if (mkdir(w->node[i].dir, 0700) || mkdir(w->node[i].cg, 0755) ||
		    mkdir(w->node[i].wcg, 0755))
			return -errno;
	return 0;
}

int fw_setup(struct fw_world *w, int meshes, int per_mesh)
{
	const char *store_tls_path = w->store_tls_path;
	struct sys_mount m;
	int r;

	*w = (struct fw_world){ .store_tls_path = store_tls_path };
	if (!getenv("FEDGUARDD") || !getenv("FEDGUARDCTL") || !getenv("FEDGUARD_CA")) {
		fprintf(stderr, "fedworld: FEDGUARDD, FEDGUARDCTL and FEDGUARD_CA must name the "
			"binaries (meson test sets them)\n");
		return -ENOENT;
	}
	if (meshes < 1 || meshes > FW_MESHES_MAX || per_mesh < 1 ||
	    meshes * per_mesh > FW_NODES_MAX)
		return -EINVAL;
	r = sys_cgroup2_mount(&m);
	if (r)
		return r;
	snprintf(w->root_cg, sizeof(w->root_cg), "%.3000s/fgfed%d", m.target, getpid());
	snprintf(w->dir, sizeof(w->dir), "/tmp/fgfed-XXXXXX");
	if (!mkdtemp(w->dir))
		return -errno;
	names(w, meshes, per_mesh);
	r = dirs_setup(w);
	if (!r)
		r = net_setup(w);
	if (!r)
		r = pki_setup(w);
	for (int i = 0; i < w->n_meshes && !r; i++) {
		struct fw_node *first = &w->node[w->mesh[i].first];

		r = w->store_tls_path ? store_tls(w, &w->mesh[i]) : 0;
		if (!r)
			r = fg_etcd_start_in(&w->mesh[i].etcd, first->ns, first->addr);
	}
	for (int i = 0; i < w->n_nodes && !r; i++)
		r = sb_serve_in(w->node[i].wcg, w->node[i].wns, &w->node[i].server);
	return r;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

/* Kills whatever still runs in cgroup path (and below), then removes it. */
static void cgroup_remove(const char *path)
{
	sb_sh("[ -d %s ] && for f in $(find %s -name cgroup.procs); do"
	      " for p in $(cat $f); do kill -9 $p; done; done 2>/dev/null; true", path, path);
	for (int i = 0; i < 50; i++) {
		if (sb_sh("[ ! -d %s ] || find %s -depth -type d -exec rmdir {} + 2>/dev/null", path,
			  path) == 0 || sb_sh("[ -d %s ]", path) != 0)
			return;
		usleep(20000);
	}
}

void fw_teardown(struct fw_world *w)
{
	const char *agent = getenv("FEDGUARDD");

	for (int i = 0; i < w->n_nodes; i++) {
		struct fw_node *n = &w->node[i];

		fw_agent_stop(n, SIGTERM);
		if (n->server > 0)
			kill(-n->server, SIGKILL);
		if (agent && n->instance[0])
			sb_sh("%s --instance %s --uninstall -q", agent, n->instance);
	}
	for (int m = 0; m < w->n_meshes; m++)
		fg_etcd_destroy(&w->mesh[m].etcd);
	for (int i = 0; i < w->n_nodes; i++)
		sb_sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", w->node[i].ns,
		      w->node[i].wns);
	if (w->xns[0])
		sb_sh("ip netns del %s 2>/dev/null", w->xns);
	if (w->root_cg[0])
		cgroup_remove(w->root_cg);
	if (w->dir[0] && !getenv("FW_KEEP"))
		nftw(w->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* --- agents ------------------------------------------------------------------------------------ */

const char *fw_log_path(const struct fw_node *n)
{
	static char path[FW_NODES_MAX][PATH_MAX + 16];
	char *p = path[(n->idx - 1) % FW_NODES_MAX];

	snprintf(p, PATH_MAX + 16, "%s/agent.log", n->dir);
	return p;
}

int fw_log_count(const struct fw_node *n, const char *needle)
{
	FILE *f = fopen(fw_log_path(n), "re");
	char line[4096];
	int count = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		count += strstr(line, needle) != NULL;
	fclose(f);
	return count;
}

/* argv of n's agent: the node's and the mesh's options, then extra. */
static void agent_args(struct fw_world *w, struct fw_node *n, const char *const *extra,
		       char buf[][PATH_MAX + 64], const char **argv)
{
	struct fw_mesh *mesh = &w->mesh[n->mesh];
	int a = 0, b = 0;

#define ARG(...) (snprintf(buf[b], PATH_MAX + 64, __VA_ARGS__), argv[a++] = buf[b++])
	argv[a++] = getenv("FEDGUARDD");
	argv[a++] = "--instance";
	argv[a++] = n->instance;
	argv[a++] = "--cgroup";
	argv[a++] = n->cg;
	ARG("--state-dir=%s/state", n->dir);
	ARG("--trust-domain=%s", mesh->td);
	ARG("--node-cert=%s/pki/node-ca.pem", n->dir);
	ARG("--node-key=%s/pki/node-ca.key", n->dir);
	ARG("--node-name=%s", n->name);
	ARG("--bundle=%s=%s/bundle.json", mesh->td, mesh->dir);
	ARG("--node-address=%s", n->addr);
	ARG("--auth-listen=%s:%d", n->addr, FW_AUTH_PORT);
	ARG("--policy-key=%s/pk/policy.pub", mesh->dir);
	ARG("--store=etcd=%s", mesh->etcd.url);
	ARG("--store-lease-ttl=%d", FW_LEASE_TTL);
	ARG("--peer-listen=%s:%d", n->addr, FW_PEER_PORT);
	if (n->idx - 1 == mesh->first)	/* the mesh's first node serves its bundle */
		ARG("--bundle-endpoint-listen=%s:%d", n->addr, FW_BUNDLE_PORT);
	for (int m = 0; m < w->n_meshes; m++) {
		const struct fw_mesh *o = &w->mesh[m];
		const struct fw_node *ep = &w->node[o->first];

		if (o == mesh || w->no_federation)
			continue;
		ARG("--federate-with=%s=https://%s:%d/,spiffe://%s/fedguard/node/%s,%s/bundle.json",
		    o->td, ep->addr, FW_BUNDLE_PORT, o->td, ep->name, o->dir);
	}
	argv[a++] = "-v";
	for (int i = 0; extra && extra[i] && a < ARGS_MAX - 1; i++)
		argv[a++] = extra[i];
	argv[a] = NULL;
#undef ARG
}

static void agent_exec(struct fw_world *w, struct fw_node *n, const char *const *extra, int log)
{
	static char buf[ARGS_MAX][PATH_MAX + 64];
	const char *argv[ARGS_MAX];
	char ns[PATH_MAX];
	int fd;

	agent_args(w, n, extra, buf, argv);
	snprintf(ns, sizeof(ns), "/var/run/netns/%s", n->ns);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	dup2(log, STDERR_FILENO);
	fd = open(ns, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET))
		_exit(126);
	execv(argv[0], (char *const *)argv);
	_exit(127);
}

int fw_up(struct fw_world *w, int meshes, int per_mesh, fw_extra_fn extra, void *ctx, char *why,
	  size_t len)
{
	int r = fw_setup(w, meshes, per_mesh);

	if (r) {
		snprintf(why, len, "the world: %s", strerror(-r));
		fw_teardown(w);
		return r;
	}
	for (int i = 0; i < w->n_nodes; i++) {
		struct fw_node *n = &w->node[i];

		r = fw_agent_start(w, n, extra ? extra(n, ctx) : NULL);
		if (!r)
			r = fw_register(n);
		if (r) {
			snprintf(why, len, "%s: %s", n->name, strerror(-r));
			sb_sh("tail -n 5 %s >&2", fw_log_path(n));
			fw_teardown(w);
			return r;
		}
	}
	return 0;
}

int fw_agent_start(struct fw_world *w, struct fw_node *n, const char *const *extra)
{
	long deadline = fw_now_ms() + READY_MS;
	int fd, ready;

	if (!getenv("FEDGUARDD"))
		return -ENOENT;
	fd = open(fw_log_path(n), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ready = fw_log_count(n, "ready");
	n->agent = fork();
	if (n->agent == 0)
		agent_exec(w, n, extra, fd);
	close(fd);
	while (fw_now_ms() < deadline) {
		if (fw_log_count(n, "ready") > ready)
			return 0;
		if (waitpid(n->agent, NULL, WNOHANG) == n->agent) {
			n->agent = 0;
			return -ECHILD;
		}
		usleep(20000);
	}
	return -ETIMEDOUT;
}

void fw_agent_stop(struct fw_node *n, int sig)
{
	if (n->agent <= 0)
		return;
	kill(n->agent, SIGCONT);
	kill(n->agent, sig);
	waitpid(n->agent, NULL, 0);
	n->agent = 0;
}

/* --- talking to agents --------------------------------------------------------------------------- */

int fw_ctl(const struct fw_node *n, char *out, size_t len, const char *fmt, ...)
{
	const char *ctl = getenv("FEDGUARDCTL");
	char args[4096], cmd[8192];
	size_t used = 0;
	va_list ap;
	FILE *p;
	int st;

	if (!ctl)
		return -ENOENT;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s --instance %s %s 2>&1", ctl, n->instance, args);
	p = popen(cmd, "re");
	if (!p)
		return -errno;
	if (out && len)
		out[0] = 0;
	while (out && used + 1 < len) {
		size_t got = fread(out + used, 1, len - used - 1, p);

		if (got == 0)
			break;
		used += got;
	}
	if (out && len)
		out[used] = 0;
	st = pclose(p);
	return st == -1 ? -1 : WEXITSTATUS(st);
}

int fw_request(const struct fw_node *n, const char *command, const char *args_json,
	       struct json_object **res)
{
	struct ctl c = { .instance = n->instance };
	struct json_object *args = args_json ? json_tokener_parse(args_json) : NULL, *out = NULL;
	int r;

	control_default_path(n->instance, c.socket_buf, sizeof(c.socket_buf));
	c.socket_path = c.socket_buf;
	r = ctl_request(&c, command, args, &out);
	if (res)
		*res = out;
	else
		json_object_put(out);
	return r;
}

int fw_register(struct fw_node *n)
{
	char args[PATH_MAX * 2];

	snprintf(args, sizeof(args),
		 "{\"spiffe_id\": \"%s\", \"cgroup\": \"%s\", \"ips\": [\"%s\"],"
		 " \"netns\": \"/var/run/netns/%s\", \"labels\": {\"node\": \"%s\"}}", n->wid,
		 n->wcg, n->waddr, n->wns, n->name);
	return fw_request(n, "workload.add", args, NULL);
}

int fw_policy_apply(struct fw_world *w, struct fw_node *n, const char *yaml, const char *key,
		    char *out, size_t len)
{
	char path[PATH_MAX + 32], pk[PATH_MAX + 32];
	static int seq;
	FILE *f;
	int r;

	snprintf(path, sizeof(path), "%s/policy-%d.yaml", n->dir, ++seq);
	snprintf(pk, sizeof(pk), "%s/pk/policy.key", w->mesh[n->mesh].dir);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	fputs(yaml, f);
	fclose(f);
	r = fw_ctl(n, out, len, "policy sign %s --key %s", path, key ? key : pk);
	if (r)
		return r;
	return fw_ctl(n, out, len, "policy apply %s", path);
}
