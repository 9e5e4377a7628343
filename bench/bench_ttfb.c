// SPDX-License-Identifier: Apache-2.0
/*
 * Time to first byte through the kernel (issue 7 item 5, issue 4 item 6):
 * connect(), send one byte, receive its echo, from the client workload on
 * node A to the server workload on node B, in the two-node world of the
 * authentication tests (tests/lib/twonode.h: two namespaces, an agent
 * each, policy client -> server with auth: required). Per round, in turn:
 *
 *   baseline    the same path without enforcement: a client outside the
 *               managed cgroups to an echo server outside them, on another
 *               port of the same namespaces
 *   cold        both agents' authentications flushed: the SYN is held while
 *               agent A asks agent B, then retransmitted (--auth-syn-rto-ms)
 *   cached      the same pair again, right after: fg_auth holds it
 *   pre-auth    flushed, then a policy apply, which pre-authenticates the
 *               pairs it allows; the connection comes once fg_auth is written
 *
 * Medians and the largest of ROUNDS rounds.
 *
 *   FEDGUARDD=build/agent/fedguardd bench_ttfb [--quick]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"
#include "twonode.h"

enum {
	ROUNDS = 21,
	QUICK_ROUNDS = 3,
	SVID_TTL = 3600,
	WAIT_MS = 10000,
	PLAIN_PORT = 9080,	/* the unenforced echo server */
	PLAIN_OTHER = 9081,
};

static pid_t plain_server;

static void teardown(void)
{
	if (plain_server > 0) {
		kill(-plain_server, SIGKILL);
		waitpid(plain_server, NULL, 0);
		plain_server = 0;
	}
	tn_teardown();
}

static void on_signal(int sig)
{
	exit(128 + sig);	/* atexit's teardown removes the world */
}

static void die(const char *what, int r)
{
	fprintf(stderr, "bench_ttfb: %s: %s (logs: %s, %s)\n", what, strerror(r < 0 ? -r : r),
		tn_log_path(&tn_a), tn_log_path(&tn_b));
	exit(1);
}

static double us_of(int r, const char *what)
{
	if (r < 0)
		die(what, r);
	return r;
}

static double baseline(void)
{
	return us_of(sb_first_byte_in(NULL, tn_a.wns, AF_INET, tn_b.waddr, PLAIN_PORT),
		     "baseline connection");
}

static void flush(void)
{
	int r = tn_flush_both();

	if (r)
		die("auth.flush", r);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, double *base, int n, const char *target)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	qsort(base, (size_t)n, sizeof(*base), cmp_double);
	printf("@result|5 auth|time to first byte, %s pair: p50|%.2f|ms|%.2f|%s\n", what,
	       v[n / 2] / 1e3, base[n / 2] / 1e3, target);
	printf("@result|5 auth|time to first byte, %s pair: max of %d|%.2f|ms|%.2f|-\n", what, n,
	       v[n - 1] / 1e3, base[n - 1] / 1e3);
}

int main(int argc, char **argv)
{
	bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	static double cold[ROUNDS], cached[ROUNDS], pre[ROUNDS], base[3][ROUNDS];
	int n = quick ? QUICK_ROUNDS : ROUNDS;
	char why[PATH_MAX + 128] = "";
	int r;

	if (argc > 2 || (argc == 2 && !quick)) {
		fprintf(stderr, "usage: bench_ttfb [--quick]\n");
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	atexit(teardown);
	r = tn_setup(SVID_TTL, why, sizeof(why));
	if (r) {
		fprintf(stderr, "bench_ttfb: %s\n", why);
		return 1;
	}
	r = sb_serve_ports_in(NULL, tn_b.wns, PLAIN_PORT, PLAIN_OTHER, &plain_server);
	if (r)
		die("the unenforced echo server", r);
	baseline();	/* the first connection of a namespace warms what it warms */
	for (int i = 0; i < n; i++) {
		base[0][i] = baseline();
		flush();
		cold[i] = us_of(tn_first_byte(), "cold connection");
		base[1][i] = baseline();
		cached[i] = us_of(tn_first_byte(), "cached connection");
		flush();
		r = tn_register(&tn_a);	/* a policy apply: pre-authentication of its pairs */
		if (r || !tn_wait_auth(&tn_a, WAIT_MS))
			die("no pre-authentication", r ? r : -ETIMEDOUT);
		base[2][i] = baseline();
		pre[i] = us_of(tn_first_byte(), "pre-authenticated connection");
	}
	report("cold", cold, base[0], n, "value<20");
	report("cached", cached, base[1], n, "-");
	report("pre-authenticated", pre, base[2], n, "-");
	return 0;
}
