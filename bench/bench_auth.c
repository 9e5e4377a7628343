// SPDX-License-Identifier: Apache-2.0
/*
 * What peer authentication costs: two authentication engines in one
 * process over loopback (A at 127.0.0.1 with CLIENTS workloads of a.test,
 * B at 127.0.0.2 with one server of b.test), as in
 * tests/test_auth_protocol.c.
 *
 *   full      one exchange after another, each a full TLS 1.3 handshake
 *   resumed   the same with the asker's session resumed
 *   burst     CLIENTS pairs asked for at once (the askers' pool works them)
 *
 * Prints median and 90th percentile latency (ask to recorded result), CPU
 * time per exchange (both sides: they share the process) and the ratio of
 * resumed to full. Time to first byte of a connection through the kernel
 * (cold, pre-authenticated, cached) is printed by tests/test_auth.c.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "auth.h"
#include "bundle.h"
#include "authtest.h"
#include "svids.h"

enum {
	ROUNDS = 200,
	CLIENTS = 64,
	SERVER_NUM = 1000,	/* A's number for B's server; A's clients are 1..CLIENTS */
	B_SERVER = 2000,	/* B's own numbers */
	B_CLIENT0 = 3000,
	WAIT_MS = 10000,
};

#define SERVER "spiffe://b.test/server"

struct side {
	const char *td, *ip;
	__u8 node[16];
	struct at_ca ca;
	struct svids *svids;
	struct auth_engine *e;
};

static struct side A = { .td = "a.test", .ip = "127.0.0.1" };
static struct side B = { .td = "b.test", .ip = "127.0.0.2" };
static char client_ids[CLIENTS][64];

static int discard(void *ctx, const struct fg_auth_key *key, __u64 expiry_ns)
{
	return 0;
}

static const struct auth_ops ops = { .write = discard };

static void die(const char *what, int r)
{
	fprintf(stderr, "bench_auth: %s: %s\n", what, strerror(r < 0 ? -r : r));
	exit(1);
}

static void node_of(const char *ip, __u8 node[16])
{
	memset(node, 0, 16);
	node[10] = node[11] = 0xff;
	inet_pton(AF_INET, ip, node + 12);
}

static void side_init(struct side *s, const char *const *ids, size_t n)
{
	struct svids_config cfg = { .trust_domain = s->td, .node_name = "bench", .ttl = 3600 };
	char why[SVIDS_WHY_MAX];
	int r;

	node_of(s->ip, s->node);
	r = at_ca_make(s->td, time(NULL), 86400, &s->ca);
	if (r)
		die("CA", r);
	cfg.ca = s->ca.node;
	cfg.ca_key = s->ca.node_key;
	cfg.ca_chain = s->ca.node_chain;
	if (svids_new(&cfg, time(NULL), &s->svids, why, sizeof(why)) ||
	    svids_sync(s->svids, ids, n, time(NULL), why, sizeof(why))) {
		fprintf(stderr, "bench_auth: SVIDs: %s\n", why);
		exit(1);
	}
}

static int engine(struct side *s, __u16 port)
{
	struct auth_config cfg = { .ops = &ops, .ops_ctx = s, .askers_max = CLIENTS };
	char why[AUTH_WHY_MAX];
	struct sockaddr_in *sin = (struct sockaddr_in *)&cfg.listen;
	int r;

	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	inet_pton(AF_INET, s->ip, &sin->sin_addr);
	cfg.listen_len = sizeof(*sin);
	memcpy(cfg.node, s->node, 16);
	r = auth_engine_new(&cfg, s->svids, &s->e, why, sizeof(why));
	if (r)
		die(why, r);
	r = auth_engine_start(s->e, why, sizeof(why));
	if (r) {
		auth_engine_free(s->e);
		s->e = NULL;
	}
	return r;
}

static void views_and_trust(void)
{
	struct auth_view *va, *vb;
	struct bundle_set *set;
	struct auth_trust *ta, *tb;

	auth_view_new(&va);
	auth_view_new(&vb);
	auth_view_add_identity(va, SERVER, SERVER_NUM, false, B.node);
	auth_view_add_identity(vb, SERVER, B_SERVER, true, B.node);
	for (int i = 0; i < CLIENTS; i++) {
		auth_view_add_identity(va, client_ids[i], (__u32)i + 1, true, A.node);
		auth_view_add_pair(va, FG_DIR_EGRESS, (__u32)i + 1, SERVER_NUM, FG_AUTH_MTLS);
		auth_view_add_identity(vb, client_ids[i], B_CLIENT0 + (__u32)i, false, A.node);
	}
	auth_view_add_pair(vb, FG_DIR_INGRESS, B_SERVER, FG_ID_ANY, FG_AUTH_MTLS);
	if (auth_view_seal(va) || auth_view_seal(vb))
		die("views", EINVAL);
	auth_engine_set_view(A.e, va);
	auth_engine_set_view(B.e, vb);
	if (bundle_set_new(&set) || at_bundle_add(set, &A.ca) || at_bundle_add(set, &B.ca) ||
	    auth_trust_new(set, &ta) || auth_trust_new(set, &tb))
		die("trust", ENOMEM);
	bundle_set_free(set);
	auth_engine_set_trust(A.e, ta);
	auth_engine_set_trust(B.e, tb);
}

/* The next n asker outcomes of A; exits on a failure. */
static void wait_outcomes(struct auth_outcome *out, int n)
{
	struct pollfd p = { .fd = auth_engine_fd(A.e), .events = POLLIN };
	struct auth_outcome o[CLIENTS];
	int got = 0;

	while (got < n) {
		if (poll(&p, 1, WAIT_MS) != 1)
			die("no outcome", ETIMEDOUT);
		for (size_t i = 0, k = auth_engine_collect(A.e, o, CLIENTS); i < k; i++) {
			if (!o[i].ok) {
				fprintf(stderr, "bench_auth: exchange failed: %s\n", o[i].why);
				exit(1);
			}
			out[got++] = o[i];
		}
	}
}

static void ask(int client)
{
	struct auth_ask q = { .local = (__u32)client + 1, .peer = SERVER_NUM, .dir = FG_DIR_EGRESS };

	memcpy(q.node, B.node, 16);
	if (auth_engine_ask(A.e, &q))
		die("ask", EALREADY);
}

static double cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static double wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_u32(const void *a, const void *b)
{
	__u32 x = *(const __u32 *)a, y = *(const __u32 *)b;

	return x < y ? -1 : x > y;
}

/* ROUNDS exchanges one after another; median latency in us, CPU ms each in *cpu. */
static __u32 sequential(bool resume, double *cpu, __u32 *p90)
{
	static __u32 us[ROUNDS];
	struct auth_outcome o;
	double c0;

	ask(0);	/* a session to resume, and warm caches */
	wait_outcomes(&o, 1);
	c0 = cpu_ms();
	for (int i = 0; i < ROUNDS; i++) {
		if (!resume)
			auth_engine_forget(A.e, NULL, NULL);
		ask(0);
		wait_outcomes(&o, 1);
		if (o.resumed != resume)
			die(resume ? "a session did not resume" : "a session resumed", EPROTO);
		us[i] = o.elapsed_us;
	}
	*cpu = (cpu_ms() - c0) / ROUNDS;
	qsort(us, ROUNDS, sizeof(*us), cmp_u32);
	*p90 = us[ROUNDS * 9 / 10];
	return us[ROUNDS / 2];
}

static void burst(void)
{
	static struct auth_outcome o[CLIENTS];
	double t0 = wall_ms(), c0 = cpu_ms();

	auth_engine_forget(A.e, NULL, NULL);
	for (int i = 0; i < CLIENTS; i++)
		ask(i);
	wait_outcomes(o, CLIENTS);
	printf("burst: %d pairs at once in %.1f ms (%.0f exchanges/s), %.2f ms CPU each\n", CLIENTS,
	       wall_ms() - t0, CLIENTS / ((wall_ms() - t0) / 1e3), (cpu_ms() - c0) / CLIENTS);
}

int main(void)
{
	const char *ids[CLIENTS], *server = SERVER;
	double cpu_full, cpu_res;
	__u32 full, res, p90_full, p90_res;
	int tries = 0;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < CLIENTS; i++) {
		snprintf(client_ids[i], sizeof(client_ids[i]), "spiffe://a.test/client-%d", i);
		ids[i] = client_ids[i];
	}
	side_init(&A, ids, CLIENTS);
	side_init(&B, &server, 1);
	while (engine(&B, 0) || engine(&A, auth_engine_port(B.e))) {
		auth_engine_free(B.e);
		if (++tries == 20)
			die("no common port", EADDRINUSE);
	}
	views_and_trust();
	full = sequential(false, &cpu_full, &p90_full);
	res = sequential(true, &cpu_res, &p90_res);
	printf("full:    median %u us, p90 %u us, %.2f ms CPU per exchange (%d rounds)\n", full,
	       p90_full, cpu_full, ROUNDS);
	printf("resumed: median %u us, p90 %u us, %.2f ms CPU per exchange (%d rounds)\n", res,
	       p90_res, cpu_res, ROUNDS);
	printf("resumed/full: latency %.2f, CPU %.2f\n", (double)res / full, cpu_res / cpu_full);
	burst();
	auth_engine_free(A.e);
	auth_engine_free(B.e);
	svids_free(A.svids);
	svids_free(B.svids);
	at_ca_free(&A.ca);
	at_ca_free(&B.ca);
	return 0;
}
