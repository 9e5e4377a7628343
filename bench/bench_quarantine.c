// SPDX-License-Identifier: Apache-2.0
/*
 * Quarantine (issue 7, item 4): from `quarantine add` to the first dropped
 * packet, and to the tear-down of an established, busy flow, over TRIALS
 * trials, p50 and p99.
 *
 * One node: the sandbox of the kernel tests (tests/lib/sandbox.c), a real
 * fedguardd, the client a registered workload in its own cgroup and network
 * namespace, an echo server behind a veth. In each trial the client's
 * connection is busy: one byte back and forth, without pause, from a thread
 * of this process (the socket stays the client's: its cgroup and namespace
 * are fixed at creation). Then, from t0, the quarantine.add request over
 * the control socket, as fedguardctl sends it (without fedguardctl's own
 * process start):
 *
 *   first drop  the send time of the first request that got no echo: the
 *               drop is in that send (egress) or its echo (ingress), one
 *               round trip (~20 us here) later at most; or of the first send
 *               refused, when the socket was destroyed before any packet
 *               could be dropped
 *   teardown    when the application's read() or write() fails
 *               (ECONNABORTED from bpf_sock_destroy())
 *   request     until the agent's reply has come back
 *
 * Baseline, in the same trials: the round trip of a control request that
 * changes nothing (quarantine.list), the floor of any command.
 *
 * Across a federation of four agents: not measured yet (federation is not
 * built); federation_trials() is where it goes, with the same clock.
 *
 *   FEDGUARDD=build/agent/fedguardd bench_quarantine [--quick]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "sandbox.h"

#define CLIENT "spiffe://bench.test/client"
#define SERVER "spiffe://bench.test/server"

enum {
	TRIALS = 100,
	QUICK_TRIALS = 10,
	STALL_MS = 2000,	/* a trial whose flow is not torn down by then failed */
	SETTLE_US = 20000,	/* after quarantine.del, before the next connection */
};

static struct sandbox sb;

static void teardown(void)
{
	sb_teardown(&sb);
}

static void on_signal(int sig)
{
	exit(128 + sig);	/* atexit's teardown removes the sandbox */
}

static void die(const char *what, int r)
{
	fprintf(stderr, "bench_quarantine: %s: %s (agent log: %s)\n", what,
		strerror(r < 0 ? -r : r), sb_log_path(&sb));
	exit(1);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* --- the busy flow ------------------------------------------------------------------------- */

struct flow {
	int fd;
	atomic_long round_trips;
	double first_fail_us;	/* send time of the first request without echo */
	double error_us;	/* when read or write failed */
	int error;
};

/* One byte back and forth until the connection fails or stalls for STALL_MS. */
static void *busy(void *arg)
{
	struct flow *f = arg;
	char c = 'q';

	for (;;) {
		struct pollfd p = { .fd = f->fd, .events = POLLIN };
		double t = now_us();
		int r;

		if (send(f->fd, &c, 1, MSG_NOSIGNAL) != 1) {
			f->error = errno;	/* destroyed before a packet could be dropped */
			if (!f->first_fail_us)
				f->first_fail_us = t;
			break;
		}
		r = poll(&p, 1, 1);
		if (r == 0) {	/* no echo within a millisecond: remember the send */
			if (!f->first_fail_us)
				f->first_fail_us = t;
			r = poll(&p, 1, STALL_MS);
		}
		if (r <= 0) {
			f->error = r == 0 ? ETIMEDOUT : errno;
			break;
		}
		if (recv(f->fd, &c, 1, 0) != 1) {
			f->error = errno;
			if (!f->first_fail_us)
				f->first_fail_us = t;
			break;
		}
		f->first_fail_us = 0;	/* only late, not lost: the scheduler, not a drop */
		atomic_fetch_add(&f->round_trips, 1);
	}
	f->error_us = now_us();
	return NULL;
}

/* --- requests ----------------------------------------------------------------------------------- */

static int request(const char *command, const char *args_json, struct json_object **result)
{
	struct json_object *args = args_json ? json_tokener_parse(args_json) : NULL, *res = NULL;
	int r = sb_request(&sb, command, args, &res);

	if (result)
		*result = res;
	else
		json_object_put(res);
	return r;
}

static void world(void)
{
	char args[PATH_MAX + 256];
	int r;

	r = sb_setup(&sb, false);
	if (r)
		die("sandbox", r);
	r = sb_agent_start(&sb);
	if (r)
		die("fedguardd", r);
	snprintf(args, sizeof(args),
		 "{\"spiffe_id\": \"" CLIENT "\", \"cgroup\": \"%s\", \"ips\": [\"%s\"],"
		 " \"netns\": \"/var/run/netns/%s\"}", sb.cg_client, SB_CLIENT_V4, sb.ns_client);
	if (!sb_request_id(&sb, "workload.add", args) ||
	    !sb_request_id(&sb, "endpoint.add",
			   "{\"spiffe_id\": \"" SERVER "\", \"ips\": [\"" SB_SERVER_V4 "\"]}"))
		die("registrations", EINVAL);
	r = sb_policy_apply(&sb, "version: 1\nrules:\n  - name: client-to-server\n"
				 "    action: allow\n    transport: authenticated\n    from: {spiffe_id: " CLIENT "}\n"
				 "    to: {spiffe_id: " SERVER "}\n    ports: [8080]\n");
	if (r)
		die("policy", r);
}

/* --- trials --------------------------------------------------------------------------------------- */

struct trial {
	double first_drop_ms, teardown_ms, request_ms, agent_ms, noop_ms;
};

static double ms_since(double t0, double t)
{
	return (t - t0) / 1e3;
}

/* Waits (bounded) until the flow has made some round trips: it is busy. */
static void wait_busy(struct flow *f)
{
	for (int i = 0; i < 1000 && atomic_load(&f->round_trips) < 100; i++)
		usleep(1000);
	if (atomic_load(&f->round_trips) < 100)
		die("the flow is not busy", ETIMEDOUT);
}

static void one_node_trial(struct trial *t)
{
	struct flow f = { 0 };
	struct json_object *res, *v;
	pthread_t th;
	double t0, t1;

	t0 = now_us();
	if (request("quarantine.list", NULL, NULL))
		die("quarantine.list", EIO);
	t->noop_ms = ms_since(t0, now_us());

	f.fd = sb_connect(&sb, AF_INET, SOCK_STREAM, SB_SERVER_V4, SB_ECHO_PORT);
	if (f.fd < 0)
		die("connect", f.fd);
	if (pthread_create(&th, NULL, busy, &f))
		die("thread", EAGAIN);
	wait_busy(&f);
	t0 = now_us();
	if (request("quarantine.add", "{\"target\": \"" CLIENT "\", \"reason\": \"bench\"}", &res))
		die("quarantine.add", EIO);
	t1 = now_us();
	pthread_join(th, NULL);
	if (f.error != ECONNABORTED || !f.first_fail_us)
		die("the busy flow was not torn down by the quarantine", f.error);
	t->request_ms = ms_since(t0, t1);
	t->first_drop_ms = ms_since(t0, f.first_fail_us);
	t->teardown_ms = ms_since(t0, f.error_us);
	t->agent_ms = json_object_object_get_ex(res, "elapsed_us", &v) ?
			      json_object_get_int64(v) / 1e3 : 0;
	json_object_put(res);
	close(f.fd);
	if (request("quarantine.del", "{\"target\": \"" CLIENT "\"}", NULL))
		die("quarantine.del", EIO);
	usleep(SETTLE_US);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n values, by nearest rank; sorts v. */
static double quantile(double *v, int n, double q)
{
	int i = (int)(q * n + 0.999999) - 1;

	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static void report(const char *what, size_t off, struct trial *t, int n, const char *target99)
{
	double v[TRIALS], noop[TRIALS];

	for (int i = 0; i < n; i++) {
		v[i] = *(double *)((char *)&t[i] + off);
		noop[i] = t[i].noop_ms;
	}
	printf("@result|4 quarantine|one node, %s: p50|%.3f|ms|%.3f|-\n", what,
	       quantile(v, n, 0.5), quantile(noop, n, 0.5));
	printf("@result|4 quarantine|one node, %s: p99|%.3f|ms|%.3f|%s\n", what,
	       quantile(v, n, 0.99), quantile(noop, n, 0.99), target99);
}

/* Four nodes, each its own agent: needs federation (issue 5), which does not exist yet. */
static void federation_trials(void)
{
	printf("@result|4 quarantine|federation of four agents, first drop: p99|-|ms|-|value<50\n");
	printf("@result|4 quarantine|federation of four agents, teardown: p99|-|ms|-|-\n");
}

int main(int argc, char **argv)
{
	bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	int n = quick ? QUICK_TRIALS : TRIALS;
	static struct trial t[TRIALS];

	if (argc > 2 || (argc == 2 && !quick)) {
		fprintf(stderr, "usage: bench_quarantine [--quick]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	atexit(teardown);
	world();
	for (int i = 0; i < n; i++)
		one_node_trial(&t[i]);
	report("to the first drop", offsetof(struct trial, first_drop_ms), t, n, "value<1");
	report("to the busy flow's teardown", offsetof(struct trial, teardown_ms), t, n, "-");
	report("quarantine.add round trip", offsetof(struct trial, request_ms), t, n, "-");
	report("inside the agent (elapsed_us)", offsetof(struct trial, agent_ms), t, n, "-");
	federation_trials();
	return 0;
}
