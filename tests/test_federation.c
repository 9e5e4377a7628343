// SPDX-License-Identifier: Apache-2.0
/*
 * The mesh and the federation end to end (docs/federation.md): real
 * fedguardd agents in node namespaces, each mesh with its own etcd, CA and
 * policy key, workloads behind the nodes, driven with fedguardctl and
 * control requests as an operator would (tests/lib/fedworld.h).
 *
 * Mesh a.test, nodes a1 and a2: endpoints learned through the store,
 * signed policies that converge (and replayed or forged ones that do not),
 * quarantine propagation and its teardown of live connections, an agent
 * that was down, etcd stopped and restarted under load, a dead agent's
 * endpoints expiring. Mesh a.test federated with b.test: endpoints and
 * quarantines across meshes, foreign quarantines (of an identity or of the
 * whole other trust domain) and their releases reported as alerts, a
 * compromised mesh, bad bundle endpoints. Propagation times are printed,
 * never asserted.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "auth.h"
#include "bundle.h"
#include "bundle_endpoint.h"
#include "lib/etcd.h"
#include "lib/fedworld.h"
#include "lib/require.h"
#include "lib/sandbox.h"
#include "link.h"
#include "store.h"
#include "svids.h"

enum {
	WAIT_MS = 15000,
	ECHO_MS = 3000,
};

static struct fw_world w;
static struct fw_node *a1 = &w.node[0], *a2 = &w.node[1];

/* --- the world -------------------------------------------------------------------------------- */

/* Everything of the world, torn down again on failure: a failed init gets no fini. */
static void world_up(int meshes, fw_extra_fn extra, void *ctx)
{
	char why[256];

	fg_test_require_root_bpf();
	fg_etcd_require();
	if (fw_up(&w, meshes, 2, extra, ctx, why, sizeof(why)))
		cr_assert_fail("%s", why);
}

static void mesh_up(void)
{
	world_up(1, NULL, NULL);
}

static void mesh_down(void)
{
	fw_teardown(&w);
}

TestSuite(mesh, .init = mesh_up, .fini = mesh_down, .timeout = 240);

/* --- helpers ------------------------------------------------------------------------------------ */

/* The member named of the object of result's array key whose field equals value, or NULL. */
static struct json_object *find_in(struct json_object *res, const char *key, const char *field,
				   const char *value)
{
	struct json_object *list = json_object_object_get(res, key);

	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		struct json_object *o = json_object_array_get_idx(list, i);
		struct json_object *v = json_object_object_get(o, field);

		if (v && strcmp(json_object_get_string(v), value) == 0)
			return o;
	}
	return NULL;
}

/* Whether n's list command holds an entry with field = value (present) or not. */
static bool listed(struct fw_node *n, const char *command, const char *key, const char *field,
		   const char *value)
{
	struct json_object *res = NULL;
	bool found = fw_request(n, command, NULL, &res) == 0 &&
		     find_in(res, key, field, value) != NULL;

	json_object_put(res);
	return found;
}

/* Milliseconds until listed() is as wanted, or -1 after ms. */
static long wait_listed(struct fw_node *n, const char *command, const char *key, const char *field,
			const char *value, bool present, long ms)
{
	long t0 = fw_now_ms();

	while (fw_now_ms() - t0 < ms) {
		if (listed(n, command, key, field, value) == present)
			return fw_now_ms() - t0;
		usleep(2000);
	}
	return -1;
}

static long policy_version(struct fw_node *n)
{
	struct json_object *res = NULL;
	long v = -1;

	if (fw_request(n, "policy.status", NULL, &res) == 0)
		v = (long)json_object_get_int64(json_object_object_get(res, "version"));
	json_object_put(res);
	return v;
}

static long wait_version(struct fw_node *n, long version, long ms)
{
	long t0 = fw_now_ms();

	while (fw_now_ms() - t0 < ms) {
		if (policy_version(n) == version)
			return fw_now_ms() - t0;
		usleep(2000);
	}
	return -1;
}

/* Both workloads may call each other on 8080 with mTLS; version v. */
static const char *mutual(long v)
{
	static char doc[1024];

	snprintf(doc, sizeof(doc),
		 "version: %ld\n"
		 "rules:\n"
		 "  - name: a1-to-a2\n"
		 "    action: allow\n"
		 "    transport: authenticated\n"
		 "    from: {spiffe_id: %s}\n"
		 "    to: {spiffe_id: %s}\n"
		 "    ports: [8080]\n"
		 "    auth: required\n"
		 "  - name: a2-to-a1\n"
		 "    action: allow\n"
		 "    transport: authenticated\n"
		 "    from: {spiffe_id: %s}\n"
		 "    to: {spiffe_id: %s}\n"
		 "    ports: [8080]\n"
		 "    auth: required\n",
		 v, a1->wid, a2->wid, a2->wid, a1->wid);
	return doc;
}

static void apply_ok(struct fw_node *n, const char *yaml)
{
	char out[4096];
	int r = fw_policy_apply(&w, n, yaml, NULL, out, sizeof(out));

	cr_assert_eq(r, 0, "policy apply at %s: %s", n->name, out);
}

/* A connection from n's workload to m's, with one echo through it; its fd, or -errno. */
static int call(struct fw_node *n, struct fw_node *m, int port)
{
	int fd = sb_connect_in(n->wcg, n->wns, AF_INET, SOCK_STREAM, m->waddr, port);

	if (fd < 0)
		return fd;
	if (sb_echo(fd, "ping", ECHO_MS)) {
		close(fd);
		return -EIO;
	}
	return fd;
}

/* The workloads call each other: the mesh's endpoints, policy and authentication work. */
static void mesh_ready(void)
{
	long t;

	t = wait_listed(a2, "endpoint.list", "endpoints", "spiffe_id", a1->wid, true, WAIT_MS);
	cr_assert_geq(t, 0, "a2 learns a1's workload from the store");
	cr_assert_geq(wait_listed(a1, "endpoint.list", "endpoints", "spiffe_id", a2->wid, true,
				  WAIT_MS), 0, "and a1 a2's");
	apply_ok(a1, mutual(1));
	t = wait_version(a2, 1, WAIT_MS);
	cr_assert_geq(t, 0, "the policy applied at a1 reaches a2");
	printf("mesh: policy applied at a1 in force at a2 after %ld ms\n", t);
}

/* --- tests ---------------------------------------------------------------------------------------- */

Test(mesh, endpoints_and_policy_reach_every_agent_and_traffic_flows)
{
	struct json_object *res = NULL, *ep;
	char out[8192];
	int fd;

	mesh_ready();
	cr_assert_eq(fw_request(a2, "endpoint.list", NULL, &res), 0);
	ep = find_in(res, "endpoints", "spiffe_id", a1->wid);
	cr_assert_not_null(ep);
	cr_expect_str_eq(json_object_get_string(json_object_object_get(ep, "origin")), "node:a1");
	cr_expect_str_eq(json_object_get_string(json_object_object_get(ep, "node")), a1->addr);
	cr_expect_str_eq(json_object_get_string(json_object_object_get(
				 json_object_object_get(ep, "labels"), "node")), "a1",
			 "labels travel too");
	json_object_put(res);

	fd = call(a1, a2, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "a1's workload calls a2's: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
	fd = call(a2, a1, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "and back: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
	fd = sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, a2->waddr, SB_OTHER_PORT);
	cr_expect_eq(fd, -EPERM, "a port no rule allows: EPERM at once");

	cr_expect_eq(fw_ctl(a1, out, sizeof(out), "policy status"), 0, "%s", out);
	cr_expect_not_null(strstr(out, "every agent enforces it"), "%s", out);
	cr_expect_eq(fw_ctl(a1, out, sizeof(out), "peer list"), 0, "%s", out);
	cr_expect_not_null(strstr(out, "a2"), "%s", out);
	cr_expect_not_null(strstr(out, " up "), "the link to a2 is up: %s", out);
	cr_expect_eq(fw_ctl(a2, out, sizeof(out), "status"), 0, "%s", out);
	cr_expect_not_null(strstr(out, "mesh store"), "%s", out);
	cr_expect_not_null(strstr(out, "reachable, in sync"), "%s", out);
}

Test(mesh, a_quarantine_reaches_every_agent_and_cuts_live_connections)
{
	long t;
	char out[4096];
	int fd, r;

	mesh_ready();
	fd = call(a2, a1, SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "a live connection a2 -> a1: %s", strerror(-fd));

	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "quarantine add %s --reason test", a2->wid), 0,
		     "%s", out);
	t = wait_listed(a2, "quarantine.list", "quarantine", "target", a2->wid, true, WAIT_MS);
	cr_assert_geq(t, 0, "a2 enforces a1's quarantine");
	printf("mesh: quarantine issued at a1 in force at a2 after %ld ms\n", t);
	r = sb_echo(fd, "after", ECHO_MS);
	cr_expect_neq(r, 0, "the quarantined workload's live connection is cut");
	close(fd);
	fd = sb_connect_in(a2->wcg, a2->wns, AF_INET, SOCK_STREAM, a1->waddr, SB_ECHO_PORT);
	cr_expect_eq(fd, -EPERM, "new connects fail at once");
	if (fd >= 0)
		close(fd);

	/* released at the other agent: lifted everywhere */
	cr_assert_eq(fw_ctl(a2, out, sizeof(out), "quarantine del %s", a2->wid), 0, "%s", out);
	t = wait_listed(a1, "quarantine.list", "quarantine", "target", a2->wid, false, WAIT_MS);
	cr_assert_geq(t, 0, "the release reaches a1");
	printf("mesh: release issued at a2 in force at a1 after %ld ms\n", t);
	fd = call(a2, a1, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "traffic flows again: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
}

/* Puts value at key (relative to a.test's prefix) straight into etcd. */
struct meddle {
	const char *url, *key, *value;
};

static int meddle_here(void *ctx)
{
	struct meddle *m = ctx;
	struct store *s;
	char key[256];
	int r = store_open(m->url, NULL, &s);

	if (r)
		return r;
	snprintf(key, sizeof(key), "/fedguard/a.test/%s", m->key);
	r = store_put(s, key, m->value, strlen(m->value), 0);
	store_close(s);
	return r;
}

static int meddle(const char *key, const char *value)
{
	struct meddle m = { .url = w.mesh[0].etcd.url, .key = key, .value = value };

	return fg_etcd_call(&w.mesh[0].etcd, meddle_here, &m);
}

static int peek_here(void *ctx)
{
	struct meddle *m = ctx;
	struct store *s;
	char key[256];
	void *val = NULL;
	size_t len;
	int64_t rev;
	int r = store_open(m->url, NULL, &s);

	if (r)
		return r;
	snprintf(key, sizeof(key), "/fedguard/a.test/%s", m->key);
	r = store_get(s, key, &val, &len, &rev);
	free(val);
	store_close(s);
	return r;
}

/* Whether a.test's store holds a quarantine record of target. */
static bool stored(const char *target)
{
	char key[256];
	struct meddle m = { .url = w.mesh[0].etcd.url, .key = key };

	snprintf(key, sizeof(key), "quarantine/%s", target);
	return fg_etcd_call(&w.mesh[0].etcd, peek_here, &m) == 0;
}

Test(mesh, replayed_forged_and_garbage_policies_change_nothing)
{
	char out[8192], key[PATH_MAX + 32], doc[16384];
	struct json_object *rec;
	FILE *f;
	int fd;

	mesh_ready();
	apply_ok(a1, mutual(2));
	cr_assert_geq(wait_version(a2, 2, WAIT_MS), 0);

	/* an older, validly signed version, at the other agent: a rollback */
	cr_expect_eq(fw_policy_apply(&w, a2, mutual(1), NULL, out, sizeof(out)), 1);
	cr_expect_not_null(strstr(out, "rollback"), "%s", out);

	/* a newer version signed by another key */
	snprintf(key, sizeof(key), "%s/rogue", a2->dir);
	cr_assert_eq(sb_sh("%s policy-key --out %s >/dev/null", getenv("FEDGUARD_CA"), key), 0);
	strcat(key, "/policy.key");
	cr_expect_eq(fw_policy_apply(&w, a2, mutual(9), key, out, sizeof(out)), 1);
	cr_expect_not_null(strstr(out, "refused"), "%s", out);

	/* the old version, replayed straight into the store with its valid signature */
	snprintf(key, sizeof(key), "%s/policy-1.yaml", a1->dir);
	rec = json_object_new_object();
	json_object_object_add(rec, "version", json_object_new_int(1));
	json_object_object_add(rec, "source", json_object_new_string("replay"));
	f = fopen(key, "re");
	cr_assert_not_null(f);
	doc[fread(doc, 1, sizeof(doc) - 1, f)] = 0;
	fclose(f);
	json_object_object_add(rec, "document", json_object_new_string(doc));
	strcat(key, ".sig");
	f = fopen(key, "re");
	cr_assert_not_null(f);
	doc[fread(doc, 1, sizeof(doc) - 1, f)] = 0;
	fclose(f);
	json_object_object_add(rec, "signature", json_object_new_string(doc));
	cr_assert_eq(meddle("policy", json_object_to_json_string(rec)), 0);
	json_object_put(rec);
	/* garbage in the other keys */
	cr_assert_eq(meddle("quarantine/not-an-id", "{\"kind\":\"identity\"}"), 0);
	cr_assert_eq(meddle("endpoints/rogue", "[1,2,3]"), 0);
	cr_assert_eq(meddle("endpoints/evil", "{\"node\":\"10.234.0.9\",\"endpoints\":"
				"[{\"spiffe_id\":\"spiffe://b.test/x\",\"ips\":[\"10.9.9.9\"]},"
				"{\"spiffe_id\":\"spiffe://a.test/wide\",\"ips\":[\"0.0.0.0/0\"]}]}"),
		     0);

	usleep(500000);
	cr_expect_eq(policy_version(a1), 2, "the replay does not roll a1 back");
	cr_expect_eq(policy_version(a2), 2, "nor a2");
	cr_expect_gt(fw_log_count(a2, "older than version 2 in force"), 0, "and it is logged");
	cr_expect(!listed(a2, "quarantine.list", "quarantine", "target", "not-an-id"));
	cr_expect(!listed(a2, "endpoint.list", "endpoints", "spiffe_id", "spiffe://b.test/x"),
		  "a mesh's store speaks only for its own trust domain");
	cr_expect(!listed(a2, "endpoint.list", "endpoints", "spiffe_id", "spiffe://a.test/wide"),
		  "and only for host addresses");
	cr_expect_gt(fw_log_count(a2, "not of trust domain 'a.test'"), 0);
	fd = call(a1, a2, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "the policy in force still works: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
}

Test(mesh, an_agent_that_was_down_gets_what_it_missed)
{
	char out[4096];
	long t0, t;

	mesh_ready();
	fw_agent_stop(a2, SIGTERM);
	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "quarantine add %s --reason while-down",
			    a2->wid), 0, "%s", out);
	apply_ok(a1, mutual(3));
	t0 = fw_now_ms();
	cr_assert_eq(fw_agent_start(&w, a2, NULL), 0);
	t = wait_listed(a2, "quarantine.list", "quarantine", "target", a2->wid, true, WAIT_MS);
	cr_assert_geq(t, 0, "the quarantine issued while a2 was down is enforced when it returns");
	cr_expect_geq(wait_version(a2, 3, WAIT_MS), 0, "and the policy too");
	printf("mesh: a2 restarted; missed quarantine in force %ld ms after its start "
	       "(%ld ms from the start command)\n", t, fw_now_ms() - t0);
	cr_expect_eq(sb_connect_in(a2->wcg, a2->wns, AF_INET, SOCK_STREAM, a1->waddr,
				   SB_ECHO_PORT), -EPERM);
}

Test(mesh, an_unreachable_store_keeps_the_last_state_and_catches_up)
{
	struct fg_etcd *etcd = &w.mesh[0].etcd;
	char out[8192];
	long t;
	int fd;

	mesh_ready();
	fd = call(a1, a2, SB_ECHO_PORT);
	cr_assert_geq(fd, 0);
	fg_etcd_stop(etcd);
	cr_expect_eq(sb_echo(fd, "during", ECHO_MS), 0, "live traffic goes on without the store");
	close(fd);
	fd = call(a1, a2, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "new allowed connections too: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
	cr_expect_eq(sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, a2->waddr,
				   SB_OTHER_PORT), -EPERM, "and denied ones stay denied");

	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "quarantine add %s --reason outage", a2->wid),
		     0, "%s", out);
	cr_expect(listed(a1, "quarantine.list", "quarantine", "target", a2->wid),
		  "in force at once where it was issued");
	usleep(1500000);
	cr_expect_eq(fw_ctl(a1, out, sizeof(out), "status"), 0);
	cr_expect_not_null(strstr(out, "UNREACHABLE"), "status says so: %s", out);
	cr_expect_not_null(strstr(out, "enforcing the last known state"), "%s", out);

	t = wait_listed(a2, "quarantine.list", "quarantine", "target", a2->wid, true, WAIT_MS);
	cr_assert_geq(t, 0, "the push over the peers' link reaches a2 without the store");

	cr_assert_eq(fg_etcd_restart(etcd), 0);
	t = fw_now_ms();
	while (fw_now_ms() - t < WAIT_MS && !stored(a2->wid))
		usleep(20000);
	cr_expect(stored(a2->wid), "and the store gets it once it is back");
	printf("mesh: quarantine issued while etcd was down in the store %ld ms after etcd was "
	       "back\n", fw_now_ms() - t);
	cr_expect_eq(fw_ctl(a1, out, sizeof(out), "status"), 0);
	cr_expect_not_null(strstr(out, "reachable, in sync"), "%s", out);
}

/* --- etcd stopped and restarted under load ---------------------------------------------------- */

/*
 * Flows that must not break while the store goes and comes back: each runs
 * on a thread of its own, either one connection echoing in a loop or a new
 * connection (with one echo) each round, until told to stop, for at most
 * LOAD_ROUNDS_MAX rounds and LOAD_MS_MAX.
 */
enum {
	LOAD_ROUNDS_MAX = 4000,
	LOAD_MS_MAX = 100000,
	LOAD_ECHO_GAP_US = 20000,
	LOAD_CALL_GAP_US = 100000,
	OUTAGE_ROUNDS = 4,	/* changes while the store is down: 2 at each agent */
	OUTAGE_MS = 3 * FW_LEASE_TTL * 1000,	/* the shortest outage: leases outlived */
};

struct load {
	struct fw_node *from, *to;
	bool fresh;			/* a new connection each round */
	pthread_t thread;
	long rounds;
	int err;			/* the first failure, -errno; 0: none */
	long err_round;
	bool cut_short;			/* ended by its bounds, not by load_stop() */
};

static atomic_bool load_stopping;

static int load_round(struct load *l, int *fd)
{
	int r;

	if (l->fresh) {
		r = call(l->from, l->to, SB_ECHO_PORT);
		if (r >= 0)
			close(r);
		return r < 0 ? r : 0;
	}
	return sb_echo(*fd, "load", ECHO_MS);
}

static void *load_run(void *arg)
{
	struct load *l = arg;
	long t0 = fw_now_ms();
	int fd = l->fresh ? -1 : call(l->from, l->to, SB_ECHO_PORT);

	if (fd < 0 && !l->fresh) {
		l->err = fd;
		return NULL;
	}
	while (!atomic_load(&load_stopping)) {
		int r;

		if (l->rounds >= LOAD_ROUNDS_MAX || fw_now_ms() - t0 > LOAD_MS_MAX) {
			l->cut_short = true;
			break;
		}
		r = load_round(l, &fd);
		l->rounds++;
		if (r) {
			l->err = r;
			l->err_round = l->rounds;
			break;
		}
		usleep(l->fresh ? LOAD_CALL_GAP_US : LOAD_ECHO_GAP_US);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void load_start(struct load *l, size_t n)
{
	atomic_store(&load_stopping, false);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(pthread_create(&l[i].thread, NULL, load_run, &l[i]), 0);
}

static void load_stop(struct load *l, size_t n)
{
	atomic_store(&load_stopping, true);
	for (size_t i = 0; i < n; i++)
		pthread_join(l[i].thread, NULL);
}

/* n's mesh store as status reports it: reachable, and writes still waiting. */
static bool store_state(struct fw_node *n, bool *reachable, long *pending)
{
	struct json_object *res = NULL, *s;
	bool ok = fw_request(n, "status", NULL, &res) == 0 &&
		  (s = json_object_object_get(res, "store"));

	if (ok) {
		*reachable = json_object_get_boolean(json_object_object_get(s, "reachable"));
		*pending = (long)json_object_get_int64(json_object_object_get(s, "pending_writes"));
	}
	json_object_put(res);
	return ok;
}

/* Milliseconds until n's store is unreachable (want false) or reachable with nothing pending. */
static long wait_store(struct fw_node *n, bool want, long ms)
{
	long t0 = fw_now_ms(), pending;
	bool reachable;

	while (fw_now_ms() - t0 < ms) {
		if (store_state(n, &reachable, &pending) && reachable == want &&
		    (!want || pending == 0))
			return fw_now_ms() - t0;
		usleep(20000);
	}
	return -1;
}

/* Change k made while the store is down: a workload at one agent and a quarantine. */
struct outage_change {
	struct fw_node *at, *other;
	char workload[128], victim[128];
	bool released;			/* the other agent released the quarantine */
};

static void outage_change(struct outage_change *c, int k)
{
	char args[PATH_MAX * 2], out[4096];

	c->at = k % 2 ? a2 : a1;
	c->other = k % 2 ? a1 : a2;
	c->released = k < 2;
	snprintf(c->workload, sizeof(c->workload), "spiffe://a.test/ns/%s/extra%d", c->at->name, k);
	snprintf(c->victim, sizeof(c->victim), "spiffe://a.test/ns/victim/v%d", k);
	cr_assert_eq(sb_sh("mkdir -p %s/extra%d", c->at->cg, k), 0);
	snprintf(args, sizeof(args), "{\"spiffe_id\": \"%s\", \"cgroup\": \"%s/extra%d\","
		 " \"ips\": [\"10.234.%d.%d\"]}", c->workload, c->at->cg, k, c->at->idx, 20 + k);
	cr_assert_eq(fw_request(c->at, "workload.add", args, NULL), 0, "workload '%s'",
		     c->workload);
	cr_assert_eq(fw_ctl(c->at, out, sizeof(out), "quarantine add %s --reason outage-%d",
			    c->victim, k), 0, "%s", out);
	cr_assert_geq(wait_listed(c->other, "quarantine.list", "quarantine", "target", c->victim,
				  true, WAIT_MS), 0, "%s's quarantine reaches %s over the link",
		      c->at->name, c->other->name);
	if (!c->released)
		return;
	/* released at the agent that did not issue it: two agents' writes for one key */
	cr_assert_eq(fw_ctl(c->other, out, sizeof(out), "quarantine del %s", c->victim), 0, "%s",
		     out);
	cr_assert_geq(wait_listed(c->at, "quarantine.list", "quarantine", "target", c->victim,
				  false, WAIT_MS), 0, "and the release back");
}

/* Every agent holds every change of the outage, as does the store. */
static void outage_converged(const struct outage_change *c, size_t n)
{
	struct fw_node *agents[] = { a1, a2 };

	for (size_t i = 0; i < n; i++) {
		cr_expect_geq(wait_listed(c[i].other, "endpoint.list", "endpoints", "spiffe_id",
					  c[i].workload, true, WAIT_MS), 0,
			      "%s learns '%s', registered at %s while the store was down",
			      c[i].other->name, c[i].workload, c[i].at->name);
		cr_expect_eq(stored(c[i].victim), !c[i].released, "the store %s '%s'",
			     c[i].released ? "does not hold the released" : "holds", c[i].victim);
		for (size_t j = 0; j < 2; j++)
			cr_expect_eq(listed(agents[j], "quarantine.list", "quarantine", "target",
					    c[i].victim), !c[i].released, "%s %s '%s'",
				     agents[j]->name, c[i].released ? "released" : "enforces",
				     c[i].victim);
	}
}

/* Denied connects both ways: EPERM at once, store or no store. */
static void denied_stays_denied(void)
{
	cr_expect_eq(sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, a2->waddr,
				   SB_OTHER_PORT), -EPERM, "a denied connect stays denied");
	cr_expect_eq(sb_connect_in(a2->wcg, a2->wns, AF_INET, SOCK_STREAM, a1->waddr,
				   SB_OTHER_PORT), -EPERM, "both ways");
}

/*
 * While the store is down, from t_down: the changes, a release of a
 * quarantine the store holds (pre), a policy; then the outage goes on
 * under load for OUTAGE_MS in all.
 */
static void outage(struct outage_change *change, const char *pre, long t_down)
{
	char out[8192];

	for (int k = 0; k < OUTAGE_ROUNDS; k++) {
		outage_change(&change[k], k);
		denied_stays_denied();
	}
	cr_assert_eq(fw_ctl(a2, out, sizeof(out), "quarantine del %s", pre), 0, "%s", out);
	cr_assert_geq(wait_listed(a1, "quarantine.list", "quarantine", "target", pre, false,
				  WAIT_MS), 0, "a release reaches a1 over the link");
	apply_ok(a2, mutual(2));
	while (fw_now_ms() - t_down < OUTAGE_MS) {
		denied_stays_denied();
		usleep(200000);
	}
	cr_expect_eq(fw_ctl(a1, out, sizeof(out), "status"), 0);
	cr_expect_not_null(strstr(out, "UNREACHABLE"), "still down after the changes: %s", out);
	cr_expect_eq(policy_version(a1), 1, "a policy travels only through the store");
}

static void load_report(const struct load *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		cr_expect_eq(l[i].err, 0, "flow %zu (%s -> %s, %s) broke at round %ld: %s", i,
			     l[i].from->name, l[i].to->name,
			     l[i].fresh ? "new connections" : "one connection", l[i].err_round,
			     strerror(-l[i].err));
		cr_expect(!l[i].cut_short, "flow %zu ran until the end", i);
		printf("mesh: flow %s -> %s (%s): %ld rounds, %s\n", l[i].from->name, l[i].to->name,
		       l[i].fresh ? "new connections" : "one connection", l[i].rounds,
		       l[i].err ? "one failed" : "none failed");
	}
}

Test(mesh, etcd_stopped_and_restarted_under_load_breaks_no_flow_and_converges)
{
	static const char pre[] = "spiffe://a.test/ns/victim/pre";
	struct load load[] = {
		{ .from = a1, .to = a2 }, { .from = a2, .to = a1 },
		{ .from = a1, .to = a2, .fresh = true }, { .from = a2, .to = a1, .fresh = true },
	};
	struct outage_change change[OUTAGE_ROUNDS];
	struct fg_etcd *etcd = &w.mesh[0].etcd;
	size_t n_load = sizeof(load) / sizeof(load[0]);
	long t, t_down, t_up;
	char out[8192];

	mesh_ready();
	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "quarantine add %s", pre), 0, "%s", out);
	for (t = fw_now_ms(); fw_now_ms() - t < WAIT_MS && !stored(pre);)
		usleep(20000);
	cr_assert(stored(pre), "a quarantine in the store before the outage");
	load_start(load, n_load);
	usleep(500000);

	fg_etcd_stop(etcd);
	t_down = fw_now_ms();
	cr_assert_geq(wait_store(a1, false, WAIT_MS), 0, "a1 finds the store gone");
	cr_assert_geq(wait_store(a2, false, WAIT_MS), 0, "and a2");
	cr_expect_eq(fw_ctl(a2, out, sizeof(out), "status"), 0);
	cr_expect_not_null(strstr(out, "UNREACHABLE"), "status says so: %s", out);
	cr_expect_not_null(strstr(out, "enforcing the last known state"), "%s", out);
	outage(change, pre, t_down);

	cr_assert_eq(fg_etcd_restart(etcd), 0);
	t_up = fw_now_ms();
	printf("mesh: etcd down for %ld ms under load; meanwhile %d workloads registered, %d "
	       "quarantines issued and %d released, a policy applied\n", t_up - t_down,
	       OUTAGE_ROUNDS, OUTAGE_ROUNDS, OUTAGE_ROUNDS / 2 + 1);
	cr_expect_geq(wait_store(a1, true, WAIT_MS), 0, "a1's writes reach the store once back");
	cr_expect_geq(wait_store(a2, true, WAIT_MS), 0, "and a2's");
	t = wait_version(a1, 2, WAIT_MS);
	cr_expect_geq(t, 0, "the policy applied at a2 while the store was down reaches a1");
	printf("mesh: etcd back; both agents' writes in the store %ld ms later, the policy at a1 "
	       "%ld ms later\n", fw_now_ms() - t_up, t);
	for (int i = 0; i < 2; i++) {
		if (i)
			usleep(1000000);	/* and nothing lands later that undoes them */
		outage_converged(change, OUTAGE_ROUNDS);
		cr_expect(!stored(pre), "the release made meanwhile reaches the store");
		cr_expect(!listed(a1, "quarantine.list", "quarantine", "target", pre));
		cr_expect(!listed(a2, "quarantine.list", "quarantine", "target", pre));
	}
	cr_expect_eq(fw_ctl(a1, out, sizeof(out), "status"), 0);
	cr_expect_not_null(strstr(out, "reachable, in sync"), "%s", out);

	load_stop(load, n_load);
	load_report(load, n_load);
	denied_stays_denied();
}

Test(mesh, a_dead_agents_endpoints_expire)
{
	long t;

	mesh_ready();
	fw_agent_stop(a2, SIGKILL);
	t = wait_listed(a1, "endpoint.list", "endpoints", "spiffe_id", a2->wid, false,
			WAIT_MS + FW_LEASE_TTL * 1000);
	cr_assert_geq(t, 0, "a1 forgets a2's workload once a2's lease expires");
	printf("mesh: a killed agent's endpoints withdrawn after %ld ms (lease %d s)\n", t,
	       FW_LEASE_TTL);
	cr_expect_eq(sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, a2->waddr,
				   SB_ECHO_PORT), -EPERM, "an unknown peer now");
	cr_assert_eq(fw_agent_start(&w, a2, NULL), 0);
	t = wait_listed(a1, "endpoint.list", "endpoints", "spiffe_id", a2->wid, true, WAIT_MS);
	cr_expect_geq(t, 0, "back with its agent");
}

/* --- two meshes, federated -------------------------------------------------------------------------- */

/*
 * Mesh a.test (a1, a2) and mesh b.test (b1, b2), each with its etcd, CA and
 * policy key. a1 and b1 serve their meshes' bundle endpoints; every agent
 * links to the other mesh's first agent (--federate-with). Policy: a1's
 * workload may call b1's, b2's may call a2's, both with mTLS, in both
 * meshes' policies.
 */
static struct fw_node *b1 = &w.node[2], *b2 = &w.node[3];

static void fed_up(void)
{
	world_up(2, NULL, NULL);
}

TestSuite(federation, .init = fed_up, .fini = mesh_down, .timeout = 300);

static const char *cross(long v)
{
	static char doc[2048];

	snprintf(doc, sizeof(doc),
		 "version: %ld\n"
		 "rules:\n"
		 "  - name: a1-to-b1\n"
		 "    action: allow\n"
		 "    transport: authenticated\n"
		 "    from: {spiffe_id: %s}\n"
		 "    to: {spiffe_id: %s}\n"
		 "    ports: [8080]\n"
		 "    auth: required\n"
		 "  - name: b2-to-a2\n"
		 "    action: allow\n"
		 "    transport: authenticated\n"
		 "    from: {spiffe_id: %s}\n"
		 "    to: {spiffe_id: %s}\n"
		 "    ports: [8080]\n"
		 "    auth: required\n",
		 v, a1->wid, b1->wid, b2->wid, a2->wid);
	return doc;
}

/* Both meshes' policies, and every agent knowing the other mesh's workloads it needs. */
static void federation_ready(void)
{
	struct { struct fw_node *at; const char *id; } need[] = {
		{ a1, b1->wid }, { a2, b2->wid }, { b1, a1->wid }, { b2, a2->wid },
		{ a2, b1->wid }, { b2, a1->wid },
	};
	long t;

	apply_ok(a1, cross(1));
	apply_ok(b1, cross(1));
	cr_assert_geq(wait_version(a2, 1, WAIT_MS), 0);
	cr_assert_geq(wait_version(b2, 1, WAIT_MS), 0);
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		t = wait_listed(need[i].at, "endpoint.list", "endpoints", "spiffe_id", need[i].id,
				true, WAIT_MS);
		cr_assert_geq(t, 0, "%s learns '%s' from the other mesh", need[i].at->name,
			      need[i].id);
	}
}

Test(federation, endpoints_cross_as_policy_allows_and_calls_authenticate)
{
	static const char secret[] = "spiffe://b.test/ns/b1/secret";
	struct json_object *res = NULL, *ep;
	char out[8192], args[PATH_MAX + 256];
	long t0;
	int fd;

	snprintf(args, sizeof(args), "{\"spiffe_id\": \"%s\", \"cgroup\": \"%s/secret\","
		 " \"ips\": [\"10.234.3.9\"]}", secret, b1->cg);
	cr_assert_eq(sb_sh("mkdir -p %s/secret", b1->cg), 0);
	cr_assert_eq(fw_request(b1, "workload.add", args, NULL), 0, "a workload nobody calls");
	federation_ready();
	cr_assert_eq(fw_request(a2, "endpoint.list", NULL, &res), 0);
	ep = find_in(res, "endpoints", "spiffe_id", b1->wid);
	cr_assert_not_null(ep);
	cr_expect_str_eq(json_object_get_string(json_object_object_get(ep, "origin")),
			 "td:b.test");
	cr_expect_str_eq(json_object_get_string(json_object_object_get(ep, "node")), b1->addr);
	json_object_put(res);
	cr_expect(listed(a1, "endpoint.list", "endpoints", "spiffe_id", b2->wid),
		  "b2's workload calls into a.test: its agents must know who calls");
	cr_expect(!listed(a1, "endpoint.list", "endpoints", "spiffe_id", secret),
		  "a workload no rule names across the meshes is not told");

	fd = call(a1, b1, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "a1's workload calls b1's across the meshes: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
	fd = call(b2, a2, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "b2's workload calls a2's: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
	fd = sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, b2->waddr, SB_ECHO_PORT);
	cr_expect_eq(fd, -EPERM, "a1 -> b2 is denied at once");
	fd = sb_connect_in(b1->wcg, b1->wns, AF_INET, SOCK_STREAM, a1->waddr, SB_ECHO_PORT);
	cr_expect_eq(fd, -EPERM, "and so is b1 -> a1, the wrong way round");

	cr_expect_eq(fw_ctl(a2, out, sizeof(out), "peer list"), 0, "%s", out);
	cr_expect_not_null(strstr(out, "b1"), "a2 links with b.test's agent b1: %s", out);
	cr_expect_eq(fw_ctl(b1, out, sizeof(out), "peer list"), 0, "%s", out);
	cr_expect_not_null(strstr(out, "linked to us"), "b1 serves a.test's agents: %s", out);
	cr_expect_eq(fw_ctl(a2, out, sizeof(out), "bundle list"), 0, "%s", out);
	cr_expect_not_null(strstr(out, "b.test"), "%s", out);
	t0 = fw_now_ms();
	while (fw_now_ms() - t0 < WAIT_MS && !fw_log_count(a2, "bundle fetched from https://"))
		usleep(20000);
	cr_expect_gt(fw_log_count(a2, "bundle fetched from https://"), 0,
		     "a2 fetched b.test's bundle from b1's bundle endpoint");
}

Test(federation, a_mesh_quarantines_its_own_identity_in_every_mesh)
{
	char out[4096];
	long t, tb1, tb2;
	int fd;

	federation_ready();
	fd = call(a1, b1, SB_ECHO_PORT);
	cr_assert_geq(fd, 0, "a live flow a1 -> b1: %s", strerror(-fd));
	fw_agent_stop(b2, SIGTERM);	/* b2 is down when the quarantine is issued */

	t = fw_now_ms();
	cr_assert_eq(fw_ctl(a2, out, sizeof(out), "quarantine add %s --reason compromised",
			    a1->wid), 0, "%s", out);
	tb1 = wait_listed(b1, "quarantine.list", "quarantine", "target", a1->wid, true, WAIT_MS);
	cr_assert_geq(tb1, 0, "b1 enforces a.test's quarantine of its own identity");
	printf("federation: quarantine issued at a2 in force at b1 after %ld ms "
	       "(a2 -> a1 -> b1)\n", fw_now_ms() - t);
	cr_expect_neq(sb_echo(fd, "after", ECHO_MS), 0, "the flow into mesh b is cut");
	close(fd);

	cr_assert_eq(fw_agent_start(&w, b2, NULL), 0);
	tb2 = wait_listed(b2, "quarantine.list", "quarantine", "target", a1->wid, true, WAIT_MS);
	cr_assert_geq(tb2, 0, "b2, down meanwhile, enforces it once it is back");
	printf("federation: b2 restarted; the quarantine it missed in force %ld ms after its "
	       "start\n", tb2);

	cr_expect_neq(fw_ctl(b1, out, sizeof(out), "quarantine del %s", a1->wid), 0);
	cr_expect_not_null(strstr(out, "which alone can release it"), "%s", out);
	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "quarantine del %s", a1->wid), 0, "%s", out);
	t = wait_listed(b2, "quarantine.list", "quarantine", "target", a1->wid, false, WAIT_MS);
	cr_assert_geq(t, 0, "the release travels the same way");
	fd = call(a1, b1, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "and traffic flows again: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
}

Test(federation, a_foreign_quarantine_stays_home_and_is_reported)
{
	struct json_object *res = NULL, *remote;
	char out[4096];
	long t;
	int fd;

	federation_ready();
	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "quarantine add %s --reason suspicious",
			    b1->wid), 0, "%s", out);
	cr_assert_geq(wait_listed(a2, "quarantine.list", "quarantine", "target", b1->wid, true,
				  WAIT_MS), 0, "in force in the issuing mesh");
	fd = sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, b1->waddr, SB_ECHO_PORT);
	cr_expect_eq(fd, -EPERM, "a.test no longer calls it");
	t = fw_now_ms();
	while (fw_now_ms() - t < WAIT_MS) {
		json_object_put(res);
		res = NULL;
		if (fw_request(b2, "alerts", NULL, &res) == 0 &&
		    (remote = json_object_object_get(res, "remote")) &&
		    json_object_array_length(remote) > 0)
			break;
		usleep(5000);
	}
	remote = json_object_object_get(res, "remote");
	cr_assert(remote && json_object_array_length(remote) > 0, "b2 is told with an alert");
	printf("federation: alert of a.test's quarantine of b1's workload at b2 after %ld ms\n",
	       fw_now_ms() - t);
	cr_expect_str_eq(json_object_get_string(json_object_object_get(
				 json_object_array_get_idx(remote, 0), "kind")), "foreign_quarantine");
	json_object_put(res);
	cr_expect(!listed(b1, "quarantine.list", "quarantine", "target", b1->wid),
		  "but mesh b does not enforce what another mesh says of its identities");
	cr_expect(!listed(b2, "quarantine.list", "quarantine", "target", b1->wid));
	cr_expect_eq(fw_ctl(b2, out, sizeof(out), "alerts"), 0);
	cr_expect_not_null(strstr(out, "a.test"), "fedguardctl alerts shows it: %s", out);
}

/* Whether o's member name is the string value. */
static bool field_is(struct json_object *o, const char *name, const char *value)
{
	struct json_object *v = json_object_object_get(o, name);

	return v && json_object_is_type(v, json_type_string) &&
	       strcmp(json_object_get_string(v), value) == 0;
}

/* The alert of kind about target that n got from another agent within ms, or NULL; the caller's. */
static struct json_object *wait_alert(struct fw_node *n, const char *kind, const char *target,
				      long ms)
{
	long t0 = fw_now_ms();

	while (fw_now_ms() - t0 < ms) {
		struct json_object *res = NULL, *remote = NULL, *found = NULL;

		if (fw_request(n, "alerts", NULL, &res) == 0)
			remote = json_object_object_get(res, "remote");
		for (size_t i = 0; remote && i < json_object_array_length(remote) && !found; i++) {
			struct json_object *al = json_object_array_get_idx(remote, i);

			if (field_is(al, "kind", kind) && field_is(al, "target", target))
				found = json_object_get(al);
		}
		json_object_put(res);
		if (found)
			return found;
		usleep(5000);
	}
	return NULL;
}

/*
 * Both agents of mesh b are told of kind about target by mesh a, as alerts
 * to another mesh are (no text); t0: when the change was made. The alert's
 * id goes to id.
 */
static void b_alerted(const char *kind, const char *target, long t0, char *id, size_t len)
{
	struct fw_node *b[] = { b1, b2 };

	for (size_t i = 0; i < 2; i++) {
		struct json_object *al = wait_alert(b[i], kind, target, WAIT_MS);

		cr_assert_not_null(al, "%s gets a %s alert about '%s'", b[i]->name, kind, target);
		printf("federation: %s alert about %s at %s after %ld ms\n", kind, target,
		       b[i]->name, fw_now_ms() - t0);
		cr_expect(field_is(al, "trust_domain", "a.test"), "from mesh a");
		cr_expect_null(json_object_object_get(al, "reason"),
			       "the text stays home, as with every alert to another mesh");
		snprintf(id, len, "%s", json_object_get_string(json_object_object_get(al, "id")));
		json_object_put(al);
	}
}

Test(federation, a_foreign_quarantines_release_is_reported)
{
	char out[4096], id[512], released[512];
	long t;
	int fd;

	federation_ready();
	t = fw_now_ms();
	cr_assert_eq(fw_ctl(a2, out, sizeof(out), "quarantine add %s --reason suspicious",
			    b1->wid), 0, "%s", out);
	b_alerted("foreign_quarantine", b1->wid, t, id, sizeof(id));
	cr_expect_eq(sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, b1->waddr,
				   SB_ECHO_PORT), -EPERM, "in force in mesh a");

	t = fw_now_ms();
	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "quarantine del %s", b1->wid), 0, "%s", out);
	b_alerted("foreign_quarantine_released", b1->wid, t, released, sizeof(released));
	cr_expect(strncmp(released, id, strlen(id)) == 0 && strcmp(released + strlen(id),
								   "/released") == 0,
		  "the release names the quarantine it ends: '%s' after '%s'", released, id);
	cr_expect_eq(fw_ctl(b2, out, sizeof(out), "alerts"), 0);
	cr_expect_not_null(strstr(out, "foreign_quarantine_released"), "fedguardctl alerts: %s",
			   out);
	fd = call(a1, b1, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "and traffic flows again: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
}

Test(federation, a_foreign_trust_domain_quarantine_stays_home_is_reported_and_released)
{
	static const char b_td[] = "spiffe://b.test";
	char out[4096], id[512];
	int ab, ba, fd;
	long t;

	federation_ready();
	ab = call(a1, b1, SB_ECHO_PORT);
	cr_assert_geq(ab, 0, "a live flow a1 -> b1: %s", strerror(-ab));
	ba = call(b2, a2, SB_ECHO_PORT);
	cr_assert_geq(ba, 0, "and b2 -> a2: %s", strerror(-ba));

	t = fw_now_ms();
	cr_assert_eq(fw_ctl(a2, out, sizeof(out), "quarantine add %s --reason td", b_td), 0, "%s",
		     out);
	cr_assert_geq(wait_listed(a1, "quarantine.list", "quarantine", "target", b_td, true,
				  WAIT_MS), 0, "every agent of mesh a enforces it");
	printf("federation: quarantine of trust domain b.test issued at a2 in force at a1 after "
	       "%ld ms\n", fw_now_ms() - t);
	b_alerted("foreign_quarantine", b_td, t, id, sizeof(id));
	fd = sb_echo(ab, "after", ECHO_MS);
	cr_expect(fd != 0 && fd != -ETIMEDOUT, "a1's live flow to b.test is cut (destroyed, not "
		  "stalled): %s", strerror(-fd));
	cr_expect_neq(sb_echo(ba, "after", ECHO_MS), 0, "and b.test's live flow into a2");
	close(ab);
	close(ba);
	cr_expect_eq(sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, b1->waddr,
				   SB_ECHO_PORT), -EPERM, "a1 calls no workload of b.test");
	fd = call(b2, a2, SB_ECHO_PORT);
	cr_expect_lt(fd, 0, "and a2 takes no call from one");
	if (fd >= 0)
		close(fd);
	cr_expect(!listed(b1, "quarantine.list", "quarantine", "target", b_td),
		  "mesh b does not enforce what mesh a says of it");
	cr_expect(!listed(b2, "quarantine.list", "quarantine", "target", b_td));

	t = fw_now_ms();
	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "quarantine del %s", b_td), 0, "%s", out);
	cr_assert_geq(wait_listed(a2, "quarantine.list", "quarantine", "target", b_td, false,
				  WAIT_MS), 0, "the release reaches every agent of mesh a");
	b_alerted("foreign_quarantine_released", b_td, t, id, sizeof(id));
	fd = call(a1, b1, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "traffic to b.test flows again: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
	fd = call(b2, a2, SB_ECHO_PORT);
	cr_expect_geq(fd, 0, "and from it: %s", strerror(-fd));
	if (fd >= 0)
		close(fd);
}

Test(federation, removing_a_trust_domain_removes_what_its_mesh_announced)
{
	char out[4096];
	int fd;

	federation_ready();
	fd = call(a1, b1, SB_ECHO_PORT);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "bundle del b.test"), 0, "%s", out);
	cr_expect(!listed(a1, "endpoint.list", "endpoints", "spiffe_id", b1->wid),
		  "b.test's endpoints are gone at once");
	cr_expect_neq(sb_echo(fd, "after", ECHO_MS), 0, "its live connections are cut");
	close(fd);
	cr_expect_eq(sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, b1->waddr,
				   SB_ECHO_PORT), -EPERM);
	usleep(500000);
	cr_expect(!listed(a1, "endpoint.list", "endpoints", "spiffe_id", b1->wid),
		  "and stay gone: no link brings them back");
	cr_expect_eq(fw_ctl(a1, out, sizeof(out), "peer list"), 0);
	cr_expect(strstr(out, "b1") == NULL || strstr(out, "connecting"), "%s", out);

	/* a2 restarted without its --federate-with: b.test's announcements go too */
	cr_assert(listed(a2, "endpoint.list", "endpoints", "spiffe_id", b1->wid));
	fw_agent_stop(a2, SIGTERM);
	w.no_federation = true;
	cr_assert_eq(fw_agent_start(&w, a2, NULL), 0);
	cr_expect(!listed(a2, "endpoint.list", "endpoints", "spiffe_id", b1->wid),
		  "what a mesh no longer federated announced is forgotten at start");
	cr_expect_gt(fw_log_count(a2, "is no longer federated"), 0);
}

/* --- a compromised mesh ------------------------------------------------------------------------- */

/*
 * An impostor in b1's place: b1's agent stopped, and in its namespace, on
 * its addresses, a link listener and a bundle endpoint presenting b1's own
 * node SVID, minted with b1's node CA as whoever compromised mesh b could.
 */
struct rogue {
	struct svids *svids;
	struct link_engine *links;
	struct bep_server *bep;
	char why[1024];
	int r;
};

static struct rogue rogue;

static bool rogue_admit(void *ctx, const struct link_peer *peer, char *why, size_t len)
{
	return true;
}

static void *rogue_thread(void *arg)
{
	char ns[PATH_MAX], cert[PATH_MAX + 32], key[PATH_MAX + 32], bundle[PATH_MAX + 32];
	struct link_config lc = { .admit = rogue_admit };
	struct bundle_set *set = NULL;
	struct bundle *a_bundle = NULL;
	struct svids_config sc = { .trust_domain = "b.test", .node_name = "b1", .ttl = 3600 };
	struct auth_trust *trust = NULL;
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *ca_key = NULL;
	int fd;

	(void)arg;
	snprintf(ns, sizeof(ns), "/var/run/netns/%s", b1->ns);
	snprintf(cert, sizeof(cert), "%s/pki/node-ca.pem", b1->dir);
	snprintf(key, sizeof(key), "%s/pki/node-ca.key", b1->dir);
	snprintf(bundle, sizeof(bundle), "%s/bundle.json", w.mesh[0].dir);
	fd = open(ns, O_RDONLY | O_CLOEXEC);
	rogue.r = fd < 0 || setns(fd, CLONE_NEWNET) ? -errno : 0;
	if (fd >= 0)
		close(fd);
	if (!rogue.r)
		rogue.r = svids_load_ca(cert, key, &chain, &ca_key, rogue.why, sizeof(rogue.why));
	if (!rogue.r) {
		sc.ca = sk_X509_value(chain, 0);
		sc.ca_key = ca_key;
		sc.ca_chain = chain;
		rogue.r = svids_new(&sc, time(NULL), &rogue.svids, rogue.why, sizeof(rogue.why));
	}
	if (!rogue.r)
		rogue.r = bundle_set_new(&set) ?: bundle_load_file("a.test", bundle, &a_bundle,
								    rogue.why, sizeof(rogue.why));
	if (!rogue.r && !(rogue.r = bundle_set_replace(set, "a.test", a_bundle)))
		rogue.r = auth_trust_new(set, &trust);
	lc.svids = rogue.svids;
	if (!rogue.r)
		rogue.r = link_parse_listen("10.234.0.3:18444", &lc.listen, &lc.listen_len) ?:
			  link_engine_new(&lc, &rogue.links, rogue.why, sizeof(rogue.why)) ?:
			  link_engine_start(rogue.links, rogue.why, sizeof(rogue.why));
	if (!rogue.r)
		link_engine_set_trust(rogue.links, trust);
	else
		auth_trust_put(trust);
	if (!rogue.r) {
		_cleanup_svids_cred_ struct svids_cred *c =
			svids_get(rogue.svids, svids_node_id(rogue.svids));
		struct bep_server_config bc = { .listen = "10.234.0.3:18445", .cert = c->cert,
						.key = c->key, .chain = c->chain,
						.bundle_json = "{not a bundle" };

		rogue.r = bep_server_start(&bc, &rogue.bep, rogue.why, sizeof(rogue.why));
	}
	bundle_set_free(set);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(ca_key);
	return NULL;
}

static void rogue_start(void)
{
	pthread_t t;

	fw_agent_stop(b1, SIGTERM);
	cr_assert_eq(pthread_create(&t, NULL, rogue_thread, NULL), 0);
	pthread_join(t, NULL);
	cr_assert_eq(rogue.r, 0, "the impostor: %s (%s)", strerror(-rogue.r), rogue.why);
}

static void rogue_stop(void)
{
	if (rogue.bep)
		bep_server_stop(rogue.bep);
	link_engine_free(rogue.links);
	svids_free(rogue.svids);
	rogue = (struct rogue){};
}

/* Answers every a.test agent that links with msgs, for ms; how many linked. */
static int rogue_serve(const char *const *msgs, long ms)
{
	long t0 = fw_now_ms();
	int linked = 0;

	while (fw_now_ms() - t0 < ms) {
		struct pollfd p = { .fd = link_engine_fd(rogue.links), .events = POLLIN };
		struct link_event ev[16];
		size_t n;

		poll(&p, 1, 50);
		n = link_engine_collect(rogue.links, ev, 16);
		for (size_t i = 0; i < n; i++) {
			if (ev[i].type == LINK_EV_UP && ev[i].peer_td &&
			    strcmp(ev[i].peer_td, "a.test") == 0) {
				linked++;
				for (const char *const *m = msgs; *m; m++)
					link_send(rogue.links, ev[i].id, *m, strlen(*m));
			}
			link_event_release(&ev[i]);
		}
	}
	return linked;
}

Test(federation, a_compromised_mesh_speaks_only_for_its_own_identities)
{
	static const char *const forged[] = {
		"{\"type\":\"endpoints\",\"endpoints\":["
		"{\"spiffe_id\":\"spiffe://a.test/ns/evil\",\"ips\":[\"10.234.3.50\"],"
		"\"node\":\"10.234.0.3\"},"
		"{\"spiffe_id\":\"spiffe://b.test/ns/b1/new\",\"ips\":[\"10.234.3.51\"],"
		"\"node\":\"10.234.0.3\"}]}",
		"{\"type\":\"quarantine_set\",\"records\":{"
		"\"spiffe://a.test/ns/a2/app\":{\"kind\":\"identity\",\"reason\":\"rogue\"},"
		"\"spiffe://a.test\":{\"kind\":\"trust_domain\",\"reason\":\"rogue\"},"
		"\"spiffe://b.test/ns/b1/gone\":{\"kind\":\"identity\",\"reason\":\"its own\"}}}",
		NULL,
	};
	int linked;

	federation_ready();
	rogue_start();
	linked = rogue_serve(forged, 6000);
	cr_assert_geq(linked, 2, "a.test's agents link to the impostor (b1's SVID is valid)");
	cr_assert_geq(wait_listed(a2, "endpoint.list", "endpoints", "spiffe_id",
				  "spiffe://b.test/ns/b1/new", true, WAIT_MS), 0,
		      "mesh b may announce its own identities");
	cr_expect(!listed(a2, "endpoint.list", "endpoints", "spiffe_id", "spiffe://a.test/ns/evil"),
		  "but not one of a.test");
	cr_expect(listed(a2, "quarantine.list", "quarantine", "target", "spiffe://b.test/ns/b1/gone"),
		  "it may quarantine its own");
	cr_expect(!listed(a2, "quarantine.list", "quarantine", "target", a2->wid),
		  "but not a.test's workloads");
	cr_expect(!listed(a1, "quarantine.list", "quarantine", "target", "spiffe://a.test"),
		  "nor a.test itself");
	cr_expect_gt(fw_log_count(a2, "not of trust domain 'b.test' (a mesh speaks only"), 0);
	cr_expect_gt(fw_log_count(a2, "which is not of its trust domain: refused"), 0);
	/* what it may say of its own it says: b's endpoints are now the impostor's set */
	cr_expect(!listed(a2, "endpoint.list", "endpoints", "spiffe_id", b2->wid));
	rogue_stop();
}

/* b.test's bundle as a2 holds it: authorities and sequence, as text. */
static void bundle_of_b(char *out, size_t len)
{
	struct json_object *res = NULL, *b;

	out[0] = 0;
	if (fw_request(a2, "bundle.list", NULL, &res) == 0 &&
	    (b = find_in(res, "bundles", "trust_domain", "b.test")))
		snprintf(out, len, "%s/%s",
			 json_object_get_string(json_object_object_get(b, "authorities")),
			 json_object_get_string(json_object_object_get(b, "sequence")));
	json_object_put(res);
}

/* a2 restarted fetches at once: waits for its verdict on the impostor's document. */
static void fetch_refused(const char *what)
{
	int before = fw_log_count(a2, "bundle not fetched from https://10.234.0.3");
	long t0;

	fw_agent_stop(a2, SIGTERM);
	cr_assert_eq(fw_agent_start(&w, a2, NULL), 0);
	t0 = fw_now_ms();
	while (fw_now_ms() - t0 < WAIT_MS &&
	       fw_log_count(a2, "bundle not fetched from https://10.234.0.3") == before)
		usleep(20000);
	cr_expect_gt(fw_log_count(a2, "bundle not fetched from https://10.234.0.3"), before,
		     "a bundle endpoint serving %s is refused", what);
}

Test(federation, a_bundle_endpoint_serving_garbage_a_huge_body_or_an_older_bundle_is_refused)
{
	char before[128], after[128], path[PATH_MAX + 32];
	static const char *const none[] = { NULL };
	struct bundle *b = NULL;
	char *json = NULL, *huge;
	char why[1024];

	federation_ready();
	bundle_of_b(before, sizeof(before));
	cr_assert_neq(before[0], 0, "a2 holds b.test's bundle");
	rogue_start();
	rogue_serve(none, 100);

	fetch_refused("garbage");
	cr_expect_gt(fw_log_count(a2, "not JSON"), 0, "and says why");

	huge = malloc(2 << 20);
	memset(huge, ' ', (2 << 20) - 1);
	huge[(2 << 20) - 1] = 0;
	huge[0] = '{';
	cr_assert_eq(bep_server_set_bundle(rogue.bep, huge), 0);
	free(huge);
	fetch_refused("a body over 1 MiB");
	cr_expect_gt(fw_log_count(a2, "body longer than"), 0);

	snprintf(path, sizeof(path), "%s/bundle.json", w.mesh[1].dir);
	cr_assert_eq(bundle_load_file("b.test", path, &b, why, sizeof(why)), 0, "%s", why);
	b->sequence -= 1;	/* b.test's own authorities, an older sequence: a replay */
	cr_assert_eq(bundle_write(b, &json), 0);
	cr_assert_eq(bep_server_set_bundle(rogue.bep, json), 0);
	free(json);
	bundle_free(b);
	fetch_refused("an older bundle");
	cr_expect_gt(fw_log_count(a2, "is lower than"), 0);

	bundle_of_b(after, sizeof(after));
	cr_expect_str_eq(after, before, "the bundle in force stays as it was");
	rogue_stop();
}

/* --- the store over TLS ------------------------------------------------------------------------ */

/*
 * a.test's etcd over https, requiring client certificates of the mesh's
 * CA: the agents reach it with their node SVIDs (from memory) and accept
 * it only if it presents spiffe://a.test/etcd.
 */
static void tls_up(const char *path)
{
	w.store_tls_path = path;
	world_up(1, NULL, NULL);
}

static void tls_good_up(void)
{
	tls_up("/etcd");
}

static void tls_bad_up(void)
{
	tls_up("/not-etcd");
}

Test(mesh_tls, agents_reach_an_https_store_with_their_node_svids, .init = tls_good_up,
     .fini = mesh_down, .timeout = 240)
{
	char out[8192];
	long t;

	cr_assert_str_eq(w.mesh[0].etcd.url, "https://10.234.0.1:2379");
	mesh_ready();
	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "quarantine add %s", a2->wid), 0, "%s", out);
	t = wait_listed(a2, "quarantine.list", "quarantine", "target", a2->wid, true, WAIT_MS);
	cr_expect_geq(t, 0);
	fw_agent_stop(a2, SIGTERM);
	cr_assert_eq(fw_ctl(a1, out, sizeof(out), "quarantine del %s", a2->wid), 0, "%s", out);
	cr_assert_eq(fw_agent_start(&w, a2, NULL), 0);
	t = wait_listed(a2, "quarantine.list", "quarantine", "target", a2->wid, false, WAIT_MS);
	if (t < 0)
		sb_sh("tail -n 40 %s >&2; echo ==== a1 >&2; tail -n 20 %s >&2", fw_log_path(a2),
		      fw_log_path(a1));
	cr_expect_geq(t, 0, "what a2 missed comes from the https store");
	cr_expect_eq(fw_ctl(a2, out, sizeof(out), "status"), 0);
	cr_expect_not_null(strstr(out, "https://10.234.0.1:2379, reachable, in sync"), "%s", out);
}

Test(mesh_tls, a_store_with_another_identity_is_refused, .init = tls_bad_up, .fini = mesh_down,
     .timeout = 240)
{
	char out[8192];
	long t0 = fw_now_ms();

	while (fw_now_ms() - t0 < WAIT_MS && !fw_log_count(a1, "id-mismatch"))
		usleep(50000);
	cr_expect_gt(fw_log_count(a1, "the store's SVID is rejected (id-mismatch)"), 0,
		     "an etcd presenting spiffe://a.test/not-etcd is no store of a.test's");
	cr_expect_eq(fw_ctl(a1, out, sizeof(out), "status"), 0);
	cr_expect_not_null(strstr(out, "UNREACHABLE"), "%s", out);
	cr_expect_eq(fw_ctl(a1, out, sizeof(out), "-j peer list"), 0);
	cr_expect_null(strstr(out, "\"a2\""), "nothing was read from it: %s", out);
}

/* --- alerts across the federation ----------------------------------------------------------------- */

/* a.test's agents get ctx's options, b.test's a low deny threshold */
static const char *const *alerts_extra(const struct fw_node *n, void *ctx)
{
	static const char *const low[] = { "--alert-deny-threshold=5", "--alert-window=30", NULL };

	return n->mesh == 0 ? ctx : low;
}

/* The federation with a low deny threshold, and more options for a.test's agents. */
static void alerts_up(const char *const *a_extra)
{
	world_up(2, alerts_extra, (void *)a_extra);
}

static void alerts_redacted_up(void)
{
	static const char *const extra[] = { "--alert-deny-threshold=5", "--alert-window=30",
					     "--metrics-listen=127.0.0.1:9464", NULL };

	alerts_up(extra);
}

static void alerts_named_up(void)
{
	static const char *const extra[] = { "--alert-deny-threshold=5", "--alert-window=30",
					     "--share-names-with=b.test",
					     "--alert-quarantine=deny_rate", NULL };

	alerts_up(extra);
}

/* The first alert from another agent at n within ms, or NULL; the caller puts it. */
static struct json_object *remote_alert(struct fw_node *n, long ms)
{
	long t0 = fw_now_ms();

	while (fw_now_ms() - t0 < ms) {
		struct json_object *res = NULL, *remote, *al = NULL;

		if (fw_request(n, "alerts", NULL, &res) == 0 &&
		    (remote = json_object_object_get(res, "remote")) &&
		    json_object_array_length(remote) > 0)
			al = json_object_get(json_object_array_get_idx(remote, 0));
		json_object_put(res);
		if (al)
			return al;
		usleep(2000);
	}
	return NULL;
}

/* a2's workload makes ten connects that policy denies: a deny_rate alert at a2. */
static long provoke(void)
{
	long t0 = fw_now_ms();

	for (int i = 0; i < 10; i++)
		cr_assert_eq(sb_connect_in(a2->wcg, a2->wns, AF_INET, SOCK_STREAM, b2->waddr,
					   SB_ECHO_PORT), -EPERM);
	return t0;
}

/* n's metrics, scraped over HTTP inside its namespace as Prometheus would. */
static void scrape(struct fw_node *n, char *out, size_t len)
{
	char cmd[512];
	size_t used = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "nsenter --net=/var/run/netns/%s bash -c 'exec 3<>/dev/tcp/127.0.0.1/9464 && "
		 "printf \"GET /metrics HTTP/1.0\\r\\n\\r\\n\" >&3 && timeout 5 cat <&3'", n->ns);
	p = popen(cmd, "re");
	cr_assert_not_null(p);
	while (used + 1 < len) {
		size_t got = fread(out + used, 1, len - used - 1, p);

		if (!got)
			break;
		used += got;
	}
	out[used] = 0;
	pclose(p);
}

/* Whether b1's peer list shows a2's totals with its ten drops. */
static bool a2_drops_seen_at_b1(void)
{
	struct json_object *res = NULL, *list, *t;
	bool seen = false;

	if (fw_request(b1, "peer.list", NULL, &res) == 0 &&
	    (list = json_object_object_get(res, "peers")))
		for (size_t i = 0; i < json_object_array_length(list) && !seen; i++) {
			struct json_object *p = json_object_array_get_idx(list, i);

			t = json_object_object_get(p, "telemetry");
			seen = field_is(p, "node", "a2") && t &&
			       json_object_get_int64(json_object_object_get(t, "drops")) >= 10;
		}
	json_object_put(res);
	return seen;
}

Test(fedalerts, an_alert_reaches_every_agent_redacted_across_meshes, .init = alerts_redacted_up,
     .fini = mesh_down, .timeout = 300)
{
	struct json_object *at_a1, *at_b1, *at_b2;
	static char metrics[1 << 16];
	const char *target;
	long t0;

	federation_ready();
	cr_assert_eq(sb_sh("timeout -s INT 4 %s --instance %s alerts --follow -j > %s/follow.out "
			   "2>&1 &", getenv("FEDGUARDCTL"), b2->instance, b2->dir), 0);
	usleep(500000);
	t0 = provoke();
	at_a1 = remote_alert(a1, WAIT_MS);
	at_b2 = remote_alert(b2, WAIT_MS);
	cr_assert_not_null(at_a1, "a1 sees a2's alert");
	cr_assert_not_null(at_b2, "and so does b2, in the other mesh");
	printf("alerts: a deny_rate alert raised at a2 seen at b2 %ld ms after the first denied "
	       "connect\n", fw_now_ms() - t0);
	at_b1 = remote_alert(b1, WAIT_MS);
	cr_assert_not_null(at_b1);

	cr_expect_str_eq(json_object_get_string(json_object_object_get(at_a1, "kind")),
			 "deny_rate");
	cr_expect_str_eq(json_object_get_string(json_object_object_get(at_a1, "target")), a2->wid,
			 "inside the mesh, full names");
	cr_expect_not_null(json_object_object_get(at_a1, "reason"));
	target = json_object_get_string(json_object_object_get(at_b2, "target"));
	cr_expect(strncmp(target, "spiffe://a.test/#", 17) == 0 && strlen(target) == 17 + 24,
		  "across meshes: the trust domain and a keyed hash of the path: '%s'", target);
	cr_expect_null(strstr(target, "ns/a2"), "no trace of the name: '%s'", target);
	cr_expect_null(json_object_object_get(at_b2, "reason"), "nor in the text, dropped");
	cr_expect_str_eq(json_object_get_string(json_object_object_get(at_b1, "target")), target,
			 "one key for the whole mesh: the same hash everywhere");
	t0 = fw_now_ms();
	while (fw_now_ms() - t0 < WAIT_MS + 5000 && !a2_drops_seen_at_b1())
		usleep(100000);
	cr_expect(a2_drops_seen_at_b1(), "b1 sees a2's numbers (aggregated telemetry, no names)");
	cr_expect_eq(sb_sh("grep -q '\"type\":\"remote_alert\"' %s/follow.out", b2->dir), 0,
		     "fedguardctl alerts --follow at b2 showed it as it came");
	scrape(a1, metrics, sizeof(metrics));
	cr_expect_not_null(strstr(metrics, "fedguard_store_reachable 1"), "%s", metrics);
	cr_expect_not_null(strstr(metrics, "fedguard_peers{state=\"up\"} 2"),
			   "a1's links to a2 and to b1 are up: %s", metrics);
	cr_expect_not_null(strstr(metrics, "fedguard_bundle_age_seconds{trust_domain=\"b.test\"}"),
			   "%s", metrics);
	cr_expect_null(strstr(metrics, "fedguard_remote_alerts_total 0"),
		       "a1 counted a2's alert: %s", metrics);
	json_object_put(at_a1);
	json_object_put(at_b1);
	json_object_put(at_b2);
}

Test(fedalerts, named_alerts_and_automatic_quarantine, .init = alerts_named_up,
     .fini = mesh_down, .timeout = 300)
{
	struct json_object *at_b2, *res = NULL, *rec;
	const char *why;
	long t0, t;

	federation_ready();
	t0 = provoke();
	at_b2 = remote_alert(b2, WAIT_MS);
	cr_assert_not_null(at_b2);
	cr_expect_str_eq(json_object_get_string(json_object_object_get(at_b2, "target")), a2->wid,
			 "--share-names-with b.test: full names for b.test");
	json_object_put(at_b2);
	t = wait_listed(b2, "quarantine.list", "quarantine", "target", a2->wid, true, WAIT_MS);
	cr_assert_geq(t, 0, "--alert-quarantine deny_rate: a2's workload is quarantined, in every "
		      "mesh since it is a.test's own");
	printf("alerts: automatic quarantine in force at b2 %ld ms after the first denied "
	       "connect\n", fw_now_ms() - t0);
	cr_assert_eq(fw_request(a1, "quarantine.list", NULL, &res), 0);
	rec = find_in(res, "quarantine", "target", a2->wid);
	cr_assert_not_null(rec);
	why = json_object_get_string(json_object_object_get(rec, "reason"));
	cr_expect(why && strstr(why, "automatic: deny_rate alert"), "reason: %s",
		  why ? why : "(none)");
	json_object_put(res);
	cr_expect_eq(sb_connect_in(a2->wcg, a2->wns, AF_INET, SOCK_STREAM, a1->waddr,
				   SB_ECHO_PORT), -EPERM);
}
