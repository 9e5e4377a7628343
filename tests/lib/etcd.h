/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A real etcd for tests: one member on loopback, on free ports, with its
 * data directory in a temporary directory that fg_etcd_destroy() removes.
 * The binary is $FG_ETCD, else /usr/bin/etcd (Debian's etcd-server).
 */
#ifndef FG_TEST_ETCD_H
#define FG_TEST_ETCD_H

#include <stdbool.h>
#include <sys/types.h>

enum {
	FG_ETCD_READY_MS = 20000,	/* the longest wait for /health */
	FG_ETCD_STOP_MS = 5000,		/* SIGTERM, then SIGKILL after this */
};

struct fg_etcd {
	pid_t pid;		/* 0 while stopped */
	char dir[256];		/* the temporary directory: data/, etcd.log */
	int client_port, peer_port;
	char host[64];		/* the address it listens on */
	char netns[64];		/* the network namespace it runs in ("": the test's) */
	char url[96];		/* http://host:client_port, or https:// with tls */
	/*
	 * Set before fg_etcd_start_in() for clients over TLS only: the server's
	 * certificate and key, the CA its clients' certificates must chain to,
	 * and a client certificate and key for the readiness check.
	 */
	struct {
		char cert[256], key[256], ca[256], client_cert[256], client_key[256];
	} tls;
};

/* The etcd binary, or NULL (and a reason in why) when there is none. */
const char *fg_etcd_binary(char *why, size_t why_len);

/* Skips (or fails under CI=true) the test without an etcd binary. */
void fg_etcd_require(void);

/* A new etcd in a new temporary directory, ready to answer. 0 or -errno. */
int fg_etcd_start(struct fg_etcd *e);

/*
 * The same inside network namespace netns (a name of `ip netns`) on address
 * host, ports 2379 and 2380: for agents that run in namespaces of their own.
 */
int fg_etcd_start_in(struct fg_etcd *e, const char *netns, const char *host);

/* Runs fn(ctx) on a thread inside e's network namespace (store requests to it): fn's result. */
int fg_etcd_call(const struct fg_etcd *e, int (*fn)(void *ctx), void *ctx);

/* Stops it (SIGTERM, SIGKILL after FG_ETCD_STOP_MS); keeps the data. */
void fg_etcd_stop(struct fg_etcd *e);

/* Starts it again on the same ports and data. 0 or -errno. */
int fg_etcd_restart(struct fg_etcd *e);

/* Stops it and removes its directory. */
void fg_etcd_destroy(struct fg_etcd *e);

/* A TCP port on 127.0.0.1 that was free a moment ago, or -errno. */
int fg_free_port(void);

#endif /* FG_TEST_ETCD_H */
