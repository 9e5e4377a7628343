/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Two nodes for peer authentication end to end, shared by tests/test_auth.c
 * and bench/bench_ttfb.c: each node a network namespace with its own
 * fedguardd (the binary named by $FEDGUARDD), trust domain and CA, and one
 * workload each in a namespace of its own behind its node, the nodes
 * routing between them.
 *
 *   wa (10.233.1.2) -- node A (10.233.1.1 | 10.233.0.1) -- node B (10.233.0.2 | 10.233.2.1) -- wb (10.233.2.2)
 *   spiffe://a.test/client                                                  spiffe://b.test/server
 *
 * Policy on both nodes: client -> server port 8080 with auth: required.
 * An echo server runs in wb's cgroup (SB_ECHO_PORT, SB_OTHER_PORT).
 * Everything is named after the pid and removed by tn_teardown(), also
 * after a failed tn_setup(). Functions return 0 or -errno.
 */
#ifndef FG_TEST_TWONODE_H
#define FG_TEST_TWONODE_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include <linux/types.h>

#include "authtest.h"

struct json_object;

#define TN_CLIENT "spiffe://a.test/client"
#define TN_SERVER "spiffe://b.test/server"

enum {
	TN_AUTH_PORT = 18443,
};

struct tn_node {
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

extern struct tn_node tn_a, tn_b;

/*
 * Builds the world, starts both agents with SVIDs of @svid_ttl seconds and
 * registers both workloads and the policy. On failure, *why says which
 * step failed; call tn_teardown() either way.
 */
int tn_setup(int svid_ttl, char *why, size_t why_len);
void tn_teardown(void);

/* Workload, endpoint and policy on n (again: a policy apply pre-authenticates). */
int tn_register(struct tn_node *n);

/* A control request to n's agent; *result (if given) is the caller's. */
int tn_request(struct tn_node *n, const char *command, const char *args_json,
	       struct json_object **result);

const char *tn_log_path(const struct tn_node *n);

/* Lines of n's agent log that contain needle. */
int tn_log_count(const struct tn_node *n, const char *needle);

int tn_agent_start(struct tn_node *n);
void tn_agent_stop(struct tn_node *n);

/* A pinned map of n's instance: its fd, or -errno. */
int tn_map(const struct tn_node *n, const char *name);

/* The latest expiry among n's valid fg_auth entries; 0 when there is none. */
__u64 tn_auth_expiry(const struct tn_node *n);

/* Waits up to ms for a valid fg_auth entry on n. */
bool tn_wait_auth(const struct tn_node *n, long ms);

/* auth.flush on both agents; -ENOTEMPTY if an entry is left. */
int tn_flush_both(void);

/* Time to first byte from the client to the server, in microseconds (or -errno). */
int tn_first_byte(void);

/* A connected socket of the client to the server, or -errno. */
int tn_connect_client(void);

__u64 tn_mono_ns(void);
long tn_now_ms(void);

#endif /* FG_TEST_TWONODE_H */
