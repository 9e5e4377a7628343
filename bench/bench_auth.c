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
 *   s_time    full exchanges a second against `openssl s_time -new` to an
 *             `openssl s_server`, in alternation: the same SVIDs, keys and
 *             chains (written to files), TLS 1.3 only on both, OpenSSL's
 *             default groups and suites as the engine uses, each side
 *             verifying the other's chain (s_server with -Verify)
 *
 * Prints median and 90th percentile latency (ask to recorded result), CPU
 * time per exchange (both sides: they share the process) and the ratio of
 * resumed to full, and "@result" lines for scripts/bench.sh. Time to first
 * byte of a connection through the kernel (cold, pre-authenticated,
 * cached) is bench_ttfb's.
 *
 *   bench_auth [--quick]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "bundle.h"
#include "authtest.h"
#include "pki.h"
#include "svids.h"

enum {
	MAX_ROUNDS = 200,
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
static int rounds = MAX_ROUNDS;

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

/* rounds exchanges one after another; median latency in us, CPU ms each in *cpu. */
static __u32 sequential(bool resume, double *cpu, __u32 *p90)
{
	static __u32 us[MAX_ROUNDS];
	struct auth_outcome o;
	double c0;

	ask(0);	/* a session to resume, and warm caches */
	wait_outcomes(&o, 1);
	c0 = cpu_ms();
	for (int i = 0; i < rounds; i++) {
		if (!resume)
			auth_engine_forget(A.e, NULL, NULL);
		ask(0);
		wait_outcomes(&o, 1);
		if (o.resumed != resume)
			die(resume ? "a session did not resume" : "a session resumed", EPROTO);
		us[i] = o.elapsed_us;
	}
	*cpu = (cpu_ms() - c0) / rounds;
	qsort(us, (size_t)rounds, sizeof(*us), cmp_u32);
	*p90 = us[rounds * 9 / 10];
	return us[rounds / 2];
}

/* Full exchanges one after another for @seconds: exchanges a second. */
static double full_rate(double seconds)
{
	double t0 = wall_ms(), end = t0 + seconds * 1e3;
	struct auth_outcome o;
	long n = 0;

	while (wall_ms() < end && n < 1000000) {
		auth_engine_forget(A.e, NULL, NULL);
		ask(0);
		wait_outcomes(&o, 1);
		n++;
	}
	return n / ((wall_ms() - t0) / 1e3);
}

static void burst(void)
{
	static struct auth_outcome o[CLIENTS];
	double t0 = wall_ms(), c0 = cpu_ms();

	auth_engine_forget(A.e, NULL, NULL);
	for (int i = 0; i < CLIENTS; i++)
		ask(i);
	wait_outcomes(o, CLIENTS);
	double ms = wall_ms() - t0;

	printf("burst: %d pairs at once in %.1f ms (%.0f exchanges/s), %.2f ms CPU each\n", CLIENTS,
	       ms, CLIENTS / (ms / 1e3), (cpu_ms() - c0) / CLIENTS);
	printf("@result|5 auth|engine: %d pairs at once|%.0f|exch/s|-|-\n", CLIENTS,
	       CLIENTS / (ms / 1e3));
}

/* --- openssl s_server and s_time, with the same credentials ------------------------------------ */

struct openssl_peer {
	char dir[64];
	int port;
	pid_t server;
};

static void write_cred(const char *dir, const char *name, struct svids_cred *c, X509 *root)
{
	char path[128];
	STACK_OF(X509) *leaf = pki_stack(c->cert, NULL), *ca = pki_stack(root, NULL);
	int r;

	for (int i = 0; i < sk_X509_num(c->chain); i++)
		sk_X509_push(ca, X509_dup(sk_X509_value(c->chain, i)));
	snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
	r = pki_write_chain(path, leaf);
	snprintf(path, sizeof(path), "%s/%s-chain.pem", dir, name);
	if (!r)
		r = pki_write_chain(path, c->chain);
	/* what the other side verifies this one with: its root and its node CA */
	snprintf(path, sizeof(path), "%s/%s-ca.pem", dir, name);
	if (!r)
		r = pki_write_chain(path, ca);
	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	if (!r)
		r = pki_write_key(path, c->key);
	sk_X509_pop_free(leaf, X509_free);
	sk_X509_pop_free(ca, X509_free);
	if (r)
		die(path, r);
}

static void openssl_creds(struct openssl_peer *o)
{
	struct svids_cred *client = svids_get(A.svids, client_ids[0]);
	struct svids_cred *server = svids_get(B.svids, SERVER);

	snprintf(o->dir, sizeof(o->dir), "/tmp/fgbench-auth%d", getpid());
	if (!client || !server || mkdir(o->dir, 0700))
		die("credentials for openssl", errno ? errno : ENOENT);
	write_cred(o->dir, "client", client, A.ca.root);
	write_cred(o->dir, "server", server, B.ca.root);
	svids_cred_put(client);
	svids_cred_put(server);
}

/* s_server on 127.0.0.2, TLS 1.3 only, asking for and verifying the client's certificate. */
static void openssl_server(struct openssl_peer *o)
{
	char accept[32], cert[96], chain[96], key[96], ca[96];

	o->port = 20000 + getpid() % 20000;
	snprintf(accept, sizeof(accept), "127.0.0.2:%d", o->port);
	snprintf(cert, sizeof(cert), "%s/server.pem", o->dir);
	snprintf(chain, sizeof(chain), "%s/server-chain.pem", o->dir);
	snprintf(key, sizeof(key), "%s/server.key", o->dir);
	snprintf(ca, sizeof(ca), "%s/client-ca.pem", o->dir);
	fflush(stdout);
	o->server = fork();
	if (o->server == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, STDOUT_FILENO);	/* it reports every verification */
		dup2(null, STDERR_FILENO);
		execlp("openssl", "openssl", "s_server", "-quiet", "-tls1_3", "-accept", accept,
		       "-cert", cert, "-cert_chain", chain, "-key", key, "-Verify", "2", "-CAfile",
		       ca, "-verify_return_error", (char *)NULL);
		_exit(127);
	}
	usleep(300000);	/* s_server says nothing when it listens; it is quick to start */
}

/* s_time -new for @seconds: handshakes a second, counted by s_time, timed here. */
static double openssl_rate(struct openssl_peer *o, int seconds)
{
	char connect[32], cert[96], key[96], ca[96], secs[16], line[256];
	double t0 = wall_ms(), n = -1;
	int pipefd[2];
	pid_t pid;
	FILE *f;

	snprintf(connect, sizeof(connect), "127.0.0.2:%d", o->port);
	snprintf(cert, sizeof(cert), "%s/client.pem", o->dir);
	snprintf(key, sizeof(key), "%s/client.key", o->dir);
	snprintf(ca, sizeof(ca), "%s/server-ca.pem", o->dir);
	snprintf(secs, sizeof(secs), "%d", seconds);
	if (pipe(pipefd))
		die("pipe", errno);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, STDERR_FILENO);
		dup2(pipefd[1], STDOUT_FILENO);
		execlp("openssl", "openssl", "s_time", "-connect", connect, "-new", "-tls1_3",
		       "-time", secs, "-cert", cert, "-key", key, "-CAfile", ca, "-verify", "2",
		       (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	f = fdopen(pipefd[0], "r");
	while (f && fgets(line, sizeof(line), f))
		if (n < 0 && strstr(line, "connections in"))
			n = atof(line);
	if (f)
		fclose(f);
	waitpid(pid, NULL, 0);
	if (n <= 0)
		die("openssl s_time counted no connection", EPROTO);
	return n / ((wall_ms() - t0) / 1e3);
}

static void openssl_stop(struct openssl_peer *o)
{
	char cmd[128];

	if (o->server > 0) {
		kill(o->server, SIGTERM);
		waitpid(o->server, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", o->dir);
	if (o->dir[0] && system(cmd))
		fprintf(stderr, "bench_auth: could not remove %s\n", o->dir);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The engine's full exchanges and s_time's handshakes, in alternation. */
static void against_s_time(int pairs, int seconds)
{
	struct openssl_peer o = { 0 };
	double engine[16], ossl[16];

	openssl_creds(&o);
	openssl_server(&o);
	for (int i = 0; i < pairs; i++) {
		engine[i] = full_rate(seconds);
		ossl[i] = openssl_rate(&o, seconds);
	}
	openssl_stop(&o);
	qsort(engine, (size_t)pairs, sizeof(double), cmp_double);
	qsort(ossl, (size_t)pairs, sizeof(double), cmp_double);
	printf("full exchanges a second: engine %.0f, openssl s_time %.0f (medians of %d)\n",
	       engine[pairs / 2], ossl[pairs / 2], pairs);
	printf("@result|5 auth|full mTLS handshakes/s, engine vs openssl s_time|%.0f|hs/s|%.0f|"
	       "ratio>=0.8\n", engine[pairs / 2], ossl[pairs / 2]);
}

int main(int argc, char **argv)
{
	bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	const char *ids[CLIENTS], *server = SERVER;
	double cpu_full, cpu_res;
	__u32 full, res, p90_full, p90_res;
	int tries = 0;

	if (argc > 2 || (argc == 2 && !quick)) {
		fprintf(stderr, "usage: bench_auth [--quick]\n");
		return 2;
	}
	rounds = quick ? 20 : MAX_ROUNDS;
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
	       p90_full, cpu_full, rounds);
	printf("resumed: median %u us, p90 %u us, %.2f ms CPU per exchange (%d rounds)\n", res,
	       p90_res, cpu_res, rounds);
	printf("resumed/full: latency %.2f, CPU %.2f\n", (double)res / full, cpu_res / cpu_full);
	printf("@result|5 auth|engine exchange, full: p50 ask to result|%.2f|ms|-|-\n", full / 1e3);
	printf("@result|5 auth|engine exchange, resumed: p50 (baseline: full)|%.2f|ms|%.2f|-\n",
	       res / 1e3, full / 1e3);
	printf("@result|5 auth|engine CPU per exchange, full (both sides)|%.2f|ms|-|-\n", cpu_full);
	burst();
	against_s_time(quick ? 1 : 5, quick ? 1 : 2);
	auth_engine_free(A.e);
	auth_engine_free(B.e);
	svids_free(A.svids);
	svids_free(B.svids);
	at_ca_free(&A.ca);
	at_ca_free(&B.ca);
	return 0;
}
