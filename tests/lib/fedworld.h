/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A federation on one kernel, for the mesh and federation tests: one or two
 * meshes (trust domains a.test and b.test, each with its CA, policy key and
 * etcd), each of one or two nodes. A node is a network namespace with its
 * own fedguardd; each node has one workload, a network namespace of its own
 * behind the node and a cgroup in the node's managed subtree, running the
 * sandbox's echo server. The nodes share one L2 segment, a bridge in a
 * namespace of its own:
 *
 *   node i       fgn<i><pid>  10.234.0.i/24 on the bridge   instance fgf<i><pid>
 *   workload i   fgw<i><pid>  10.234.i.2/24, via the node's 10.234.i.1
 *   etcd of a mesh, in its first node's namespace: http://10.234.0.<i>:2379
 *
 * Everything is made with the operators' tools (fedguard-ca, fedguardctl)
 * and removed by fw_teardown(), also after a failed test.
 */
#ifndef FG_TEST_FEDWORLD_H
#define FG_TEST_FEDWORLD_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "etcd.h"

enum {
	FW_NODES_MAX = 4,
	FW_MESHES_MAX = 2,
	FW_AUTH_PORT = 18443,
	FW_PEER_PORT = 18444,
	FW_BUNDLE_PORT = 18445,
	FW_LEASE_TTL = 4,	/* seconds: a dead node's endpoints expire quickly */
};

struct fw_mesh {
	char td[32];
	char dir[PATH_MAX];	/* ca/, pk/policy.{key,pub}, bundle.json */
	struct fg_etcd etcd;
	int first, n;		/* its nodes: node[first] .. node[first + n - 1] */
};

struct fw_node {
	char name[16];		/* "a1", "a2", "b1", ... */
	int idx;		/* 1-based: its addresses */
	int mesh;
	char ns[32], wns[32], instance[32];
	char cg[PATH_MAX], wcg[PATH_MAX], dir[PATH_MAX];
	char addr[32], gw[32], waddr[32];
	char wid[128];		/* its workload's SPIFFE ID: spiffe://TD/ns/NAME/app */
	pid_t agent, server;
};

struct fw_world {
	char xns[32];		/* the namespace of the bridge */
	char root_cg[PATH_MAX], dir[PATH_MAX];
	struct fw_mesh mesh[FW_MESHES_MAX];
	struct fw_node node[FW_NODES_MAX];
	int n_meshes, n_nodes;
	bool no_federation;	/* the meshes do not federate (before fw_agent_start()) */
	/*
	 * Before fw_setup(): each mesh's etcd over TLS, requiring client
	 * certificates of the mesh's CA, presenting an X.509-SVID with this
	 * path (e.g. "/etcd", the ID agents expect) minted by fedguard-ca.
	 */
	const char *store_tls_path;
};

/* Builds meshes x per_mesh nodes with workloads, CAs, keys and an etcd each. 0 or -errno. */
int fw_setup(struct fw_world *w, int meshes, int per_mesh);

/* The extra agent arguments of node n (NULL-terminated, or NULL for none). */
typedef const char *const *(*fw_extra_fn)(const struct fw_node *n, void *ctx);

/*
 * fw_setup(), then every node's agent started (with extra(n, ctx)'s
 * arguments when extra is given) and its workload registered. On failure
 * the failing node's last log lines go to stderr, everything is torn down,
 * and why names the node and the cause. 0 or -errno.
 */
int fw_up(struct fw_world *w, int meshes, int per_mesh, fw_extra_fn extra, void *ctx, char *why,
	  size_t len);

/* Stops and removes everything fw_setup() and the agents made. */
void fw_teardown(struct fw_world *w);

/*
 * Starts n's fedguardd with the mesh options (its store, policy key, own
 * bundle) and the strings of extra (NULL-terminated, may be NULL); waits
 * for its ready line. 0 or -errno.
 */
int fw_agent_start(struct fw_world *w, struct fw_node *n, const char *const *extra);

/* Sends sig and reaps the agent. */
void fw_agent_stop(struct fw_node *n, int sig);

/* Runs $FEDGUARDCTL --instance n's ARGS; output (stdout and stderr) in out. Its exit status. */
int fw_ctl(const struct fw_node *n, char *out, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

struct json_object;

/* A control request to n's agent; *res (may be NULL) is the caller's. 0 or -errno. */
int fw_request(const struct fw_node *n, const char *command, const char *args_json,
	       struct json_object **res);

/* workload.add of n's workload, with label node=NAME. 0 or -errno. */
int fw_register(struct fw_node *n);

/*
 * Writes yaml to a file, signs it with key (NULL: the mesh's policy key)
 * and applies it at n with fedguardctl. Its exit status; out gets its output.
 */
int fw_policy_apply(struct fw_world *w, struct fw_node *n, const char *yaml, const char *key,
		    char *out, size_t len);

/* Lines of n's agent log containing needle. */
int fw_log_count(const struct fw_node *n, const char *needle);

/* n's agent log file. */
const char *fw_log_path(const struct fw_node *n);

long fw_now_ms(void);

#endif /* FG_TEST_FEDWORLD_H */
