/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A real little world for kernel tests: a managed cgroup subtree with one
 * workload cgroup, a client and a server network namespace joined by a
 * veth pair, an echo server in the server namespace, and a real fedguardd
 * (the binary named by $FEDGUARDD) enforcing on the subtree. Everything is
 * named after the test's pid and removed by sb_teardown(), also after a
 * failed run.
 *
 *   client netns  fgc<pid>  10.231.0.1/24  fd00:231::1/64  cgroup .../client
 *   server netns  fgs<pid>  10.231.0.2/24  fd00:231::2/64  cgroup .../server
 *                                                          (managed only)
 */
#ifndef FG_TEST_SANDBOX_H
#define FG_TEST_SANDBOX_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include <linux/types.h>

#define SB_CLIENT_V4 "10.231.0.1"
#define SB_SERVER_V4 "10.231.0.2"
#define SB_CLIENT_V6 "fd00:231::1"
#define SB_SERVER_V6 "fd00:231::2"
#define SB_CLIENT_MAC "02:66:67:00:00:01"
#define SB_SERVER_MAC "02:66:67:00:00:02"
#define SB_ECHO_PORT 8080
#define SB_OTHER_PORT 8081	/* also served, never allowed by the tests */

enum sb_side {
	SB_CLIENT,
	SB_SERVER,
};

struct sandbox {
	bool managed;			/* the server side is a workload too */
	char instance[64];
	char pin_dir[PATH_MAX];
	char cg_root[PATH_MAX];		/* the managed subtree */
	char cg_client[PATH_MAX];	/* the client workload */
	char cg_server[PATH_MAX];	/* the server workload, when managed */
	__u64 client_cgid;
	char ns_client[32];
	char ns_server[32];
	pid_t agent;
	pid_t server;			/* echo server on the server side */
	pid_t client_server;		/* and on the client side, when managed */
};

/*
 * Creates cgroups, namespaces, veth and the echo server. With @managed, the
 * server side runs in its own cgroup of the managed subtree, and the client
 * side serves too, so that both can be workloads calling each other.
 */
int sb_setup(struct sandbox *sb, bool managed);

/* Stops everything sb_setup() and sb_agent_start() made and removes it. */
void sb_teardown(struct sandbox *sb);

/* Starts fedguardd on the subtree and waits (bounded) for its ready line. */
int sb_agent_start(struct sandbox *sb);

/* The same with more fedguardd arguments (strings, NULL-terminated, at most 8). */
int sb_agent_start_args(struct sandbox *sb, ...);

/* Sends @sig to the agent and reaps it. */
int sb_agent_stop(struct sandbox *sb, int sig);

/*
 * Connects from a process in the client cgroup and namespace and hands the
 * connected socket back: returns its fd, or -errno of socket()/connect().
 */
int sb_connect(struct sandbox *sb, int family, int type, const char *addr, int port);

/*
 * sb_connect() from a process of @cgroup (NULL: none) in network namespace
 * @netns (a name of `ip netns`), for tests that build their own world.
 */
int sb_connect_in(const char *cgroup, const char *netns, int family, int type, const char *addr,
		  int port);

/*
 * The sandbox's echo server (TCP on SB_ECHO_PORT and SB_OTHER_PORT, UDP on
 * SB_ECHO_PORT) in @cgroup (NULL: none) and @netns; *pid leads its process
 * group: kill(-*pid, SIGKILL) stops it.
 */
int sb_serve_in(const char *cgroup, const char *netns, pid_t *pid);

/* The same echo server on other ports: TCP on both, UDP on @port. */
int sb_serve_ports_in(const char *cgroup, const char *netns, int port, int other_port, pid_t *pid);

/*
 * Time to first byte from a process of @cgroup in @netns: connect() to
 * addr:port (TCP), send one byte, receive its echo. Returns the
 * microseconds from before connect() to the echo, or -errno (connect
 * bounded to 3 s, the echo to 3 s more).
 */
int sb_first_byte_in(const char *cgroup, const char *netns, int family, const char *addr, int port);

/*
 * In a child process: become a process of @cgroup (NULL: none) in network
 * namespace @netns, to die with the parent; 0 or -errno.
 */
int sb_enter(const char *cgroup, const char *netns);

/* sb_connect() from either side. */
int sb_connect_from(struct sandbox *sb, enum sb_side side, int family, int type, const char *addr,
		    int port);

/*
 * Opens and closes @count TCP connections to the echo server from the
 * client cgroup; returns how many connected, or -errno.
 */
int sb_connect_many(struct sandbox *sb, const char *addr, int port, int count);

/* Sends @msg and waits up to @timeout_ms for it to come back; 0 or -errno. */
int sb_echo(int fd, const char *msg, int timeout_ms);

/* Runs a shell command; returns its exit status (or -1). */
int sb_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct json_object;

/* A control request to the sandbox's agent (takes @args); 0 or -errno. */
int sb_request(struct sandbox *sb, const char *command, struct json_object *args,
	       struct json_object **result);

/* A request whose result names an identity: that number, 0 on failure. */
__u32 sb_request_id(struct sandbox *sb, const char *command, const char *args_json);

/* policy.apply of a YAML document; 0 or -errno. */
int sb_policy_apply(struct sandbox *sb, const char *yaml);

/* The agent's --state-dir, removed by sb_teardown(). */
const char *sb_state_dir(const struct sandbox *sb);

/* Where the agent's stderr goes. */
const char *sb_log_path(const struct sandbox *sb);

/* Opens a pinned map of the sandbox's instance. */
int sb_map(struct sandbox *sb, const char *name);

#endif /* FG_TEST_SANDBOX_H */
