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
 * Across a federation of four agents (tests/lib/fedworld.c: meshes a.test
 * and b.test of two nodes each, every node its own fedguardd): a busy flow
 * from node a1's workload to a server of this program in node b1's
 * workload, across the meshes, on the direct kernel path (`transport:
 * authenticated`, `auth: required`) or tunnelled (no `transport`: TLS
 * between a1's and b1's agents), the two alternating. From t0,
 * quarantine.add of the calling workload at its own agent (a1), and the
 * same clock:
 *
 *   first drop      as on one node, at the caller (a1)
 *   teardown        of the caller's socket (a1's agent)
 *   far teardown    of the server's socket on b1, when its read or write
 *                   fails or it reads the end: b1's agent has learnt the
 *                   quarantine over the federation (a1 -> b1) and
 *                   destroyed the socket (ECONNABORTED), or a relay has
 *                   ended the flow (tunnelled); the causes are counted
 *
 * The baseline is a1's quarantine.list round trip. After each trial the
 * quarantine is released at a1 and the next trial waits (bounded) until b1
 * no longer lists it.
 *
 *   FEDGUARDD=... FEDGUARDCTL=... FEDGUARD_CA=... bench_quarantine [--quick] [--federation]
 *
 * --federation: only the federation's trials. FEDGUARDCTL and FEDGUARD_CA
 * name a build's binaries, as for the kernel tests: fedworld makes the
 * meshes' CAs and policies with them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "fedworld.h"
#include "sandbox.h"

#define CLIENT "spiffe://bench.test/client"
#define SERVER "spiffe://bench.test/server"

enum {
	TRIALS = 100,
	QUICK_TRIALS = 10,
	STALL_MS = 2000,	/* a trial whose flow is not torn down by then failed */
	SETTLE_US = 20000,	/* after quarantine.del, before the next connection */
	FED_PORT = 9090,	/* the server's in b1's workload (fedworld's echo has 8080) */
	FED_TUN_PORT = 9091,	/* the same server, the flow tunnelled */
	TUNNEL_PORT = 18446,	/* the agents' --tunnel-listen; the redirect is on the next */
	RELEASE_MS = 10000,	/* a release not at b1 by then, or no new flow: failed */
};

static struct sandbox sb;
static bool sb_up;
static struct fw_world w;
static bool w_up;
static struct fw_node *const a1 = &w.node[0], *const b1 = &w.node[2];

static void teardown(void)
{
	if (sb_up)
		sb_teardown(&sb);
	sb_up = false;
	if (w_up)
		fw_teardown(&w);
	w_up = false;
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

	sb_up = true;
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

/* Waits (bounded) until the flow has made some round trips: 0 once it is busy. */
static int wait_busy(struct flow *f)
{
	for (int i = 0; i < 1000 && atomic_load(&f->round_trips) < 100; i++)
		usleep(1000);
	return atomic_load(&f->round_trips) < 100 ? -ETIMEDOUT : 0;
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
	if (wait_busy(&f))
		die("the flow is not busy", ETIMEDOUT);
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

/*
 * p50 and p99 of the member at off of n trials (those >= 0: a trial may lack
 * a figure), against the p50 and p99 of their noop_ms.
 */
static void report(const char *where, const char *what, size_t off, struct trial *t, int n,
		   const char *target99)
{
	double v[TRIALS], noop[TRIALS];
	int k = 0;

	for (int i = 0; i < n; i++) {
		double x = *(double *)((char *)&t[i] + off);

		if (x < 0)
			continue;
		v[k] = x;
		noop[k++] = t[i].noop_ms;
	}
	if (k == 0) {
		printf("@result|4 quarantine|%s, %s: p99|-|ms|-|%s\n", where, what, target99);
		return;
	}
	printf("@result|4 quarantine|%s, %s: p50|%.3f|ms|%.3f|-\n", where, what,
	       quantile(v, k, 0.5), quantile(noop, k, 0.5));
	printf("@result|4 quarantine|%s, %s: p99|%.3f|ms|%.3f|%s\n", where, what,
	       quantile(v, k, 0.99), quantile(noop, k, 0.99), target99);
}

static void one_node(int n, struct trial *t)
{
	world();
	for (int i = 0; i < n; i++)
		one_node_trial(&t[i]);
	sb_teardown(&sb);	/* its agent must not share the CPUs with the federation's */
	sb_up = false;
	report("one node", "to the first drop", offsetof(struct trial, first_drop_ms), t, n,
	       "value<1");
	report("one node", "to the busy flow's teardown", offsetof(struct trial, teardown_ms), t,
	       n, "-");
	report("one node", "quarantine.add round trip", offsetof(struct trial, request_ms), t, n,
	       "-");
	report("one node", "inside the agent (elapsed_us)", offsetof(struct trial, agent_ms), t,
	       n, "-");
}

/* --- across a federation of four agents ------------------------------------------------------ */

static void fed_die(const char *what, int r)
{
	fprintf(stderr, "bench_quarantine: federation: %s: %s (agent logs: %s/*/agent.log)\n",
		what, strerror(r < 0 ? -r : r), w.dir);
	exit(1);
}

/*
 * Workload a1 may call b1's server: on FED_PORT on the direct kernel path, with mTLS
 * between the agents; on FED_TUN_PORT through the agents' tunnel.
 */
static const char *fed_policy(void)
{
	static char doc[2048];

	snprintf(doc, sizeof(doc),
		 "version: 1\n"
		 "rules:\n"
		 "  - name: a1-to-b1\n"
		 "    action: allow\n"
		 "    transport: authenticated\n"
		 "    from: {spiffe_id: %s}\n"
		 "    to: {spiffe_id: %s}\n"
		 "    ports: [%d]\n"
		 "    auth: required\n"
		 "  - name: a1-to-b1-tunnelled\n"
		 "    action: allow\n"
		 "    from: {spiffe_id: %s}\n"
		 "    to: {spiffe_id: %s}\n"
		 "    ports: [%d]\n", a1->wid, b1->wid, FED_PORT, a1->wid, b1->wid, FED_TUN_PORT);
	return doc;
}

/* Whether n's list command has an entry whose field is value. */
static bool fed_listed(const struct fw_node *n, const char *command, const char *key,
		       const char *field, const char *value)
{
	struct json_object *res = NULL, *list, *v;
	bool found = false;

	if (fw_request(n, command, NULL, &res) == 0 && json_object_object_get_ex(res, key, &list))
		for (size_t i = 0; !found && i < json_object_array_length(list); i++)
			found = json_object_object_get_ex(json_object_array_get_idx(list, i), field,
							  &v) &&
				strcmp(json_object_get_string(v), value) == 0;
	json_object_put(res);
	return found;
}

/* Waits (RELEASE_MS at most) until n's list is as wanted: 0, or -ETIMEDOUT. */
static int fed_wait_listed(const struct fw_node *n, const char *command, const char *key,
			   const char *field, const char *value, bool present)
{
	double t0 = now_us();

	while (now_us() - t0 < RELEASE_MS * 1e3) {
		if (fed_listed(n, command, key, field, value) == present)
			return 0;
		usleep(2000);
	}
	return -ETIMEDOUT;
}

/* In a child inside n's workload: a listening TCP socket on its address, handed back. */
static int listen_in(const struct fw_node *n, int port)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char byte = 0;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int sp[2], fd = -1;
	pid_t pid;

	/* SEQPACKET: a child that fails without sending ends the parent's recvmsg() */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp))
		return -errno;
	pid = fork();
	if (pid == 0) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
		int one = 1;

		close(sp[0]);
		inet_pton(AF_INET, n->waddr, &a.sin_addr);
		if (sb_enter(n->wcg, n->wns))
			_exit(1);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
		    bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16))
			_exit(1);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		_exit(sendmsg(sp[1], &msg, 0) < 0);
	}
	close(sp[1]);
	if (pid > 0 && recvmsg(sp[0], &msg, MSG_CMSG_CLOEXEC) > 0 &&
	    (cm = CMSG_FIRSTHDR(&msg)) && cm->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	close(sp[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return fd >= 0 ? fd : -EIO;
}

/*
 * Four agents with the tunnel, a1 -> b1 allowed in both meshes' policies, each knowing the
 * other's workload; the server's listening sockets for the direct and the tunnelled flow.
 */
static void fed_world(int *direct, int *tunnelled)
{
	char out[4096], tunnel[64];
	const char *what = "fedworld: 2 meshes x 2 nodes", *extra[] = { tunnel, NULL };
	int r;

	w_up = true;
	r = fw_setup(&w, 2, 2);
	for (int i = 0; !r && i < w.n_nodes; i++) {
		what = w.node[i].name;
		snprintf(tunnel, sizeof(tunnel), "--tunnel-listen=%s:%d", w.node[i].addr,
			 TUNNEL_PORT);
		r = fw_agent_start(&w, &w.node[i], extra);
		if (!r)
			r = fw_register(&w.node[i]);
	}
	if (r)
		fed_die(what, r);
	if (fw_policy_apply(&w, a1, fed_policy(), NULL, out, sizeof(out)) ||
	    fw_policy_apply(&w, b1, fed_policy(), NULL, out, sizeof(out))) {
		fprintf(stderr, "%s", out);
		fed_die("policy apply", EINVAL);
	}
	if (fed_wait_listed(a1, "endpoint.list", "endpoints", "spiffe_id", b1->wid, true) ||
	    fed_wait_listed(b1, "endpoint.list", "endpoints", "spiffe_id", a1->wid, true))
		fed_die("a1 and b1 learn each other's workload", ETIMEDOUT);
	*direct = listen_in(b1, FED_PORT);
	*tunnelled = listen_in(b1, FED_TUN_PORT);
	if (*direct < 0 || *tunnelled < 0)
		fed_die("the server's sockets in b1's workload", EIO);
}

/* The far end: echoes one byte at a time until its socket fails or stalls for STALL_MS. */
static void *echo(void *arg)
{
	struct flow *f = arg;
	char c;

	for (;;) {
		struct pollfd p = { .fd = f->fd, .events = POLLIN };
		int r = poll(&p, 1, STALL_MS);

		if (r <= 0) {
			f->error = r == 0 ? ETIMEDOUT : errno;
			break;
		}
		r = (int)recv(f->fd, &c, 1, 0);
		if (r != 1) {
			f->error = r == 0 ? EPIPE : errno;	/* EPIPE: an orderly end */
			break;
		}
		if (send(f->fd, &c, 1, MSG_NOSIGNAL) != 1) {
			f->error = errno;
			break;
		}
	}
	f->error_us = now_us();
	return NULL;
}

/* One byte from fd to to, within STALL_MS: 0 or -errno. */
static int pass_byte(int from, int to)
{
	struct pollfd p = { .fd = to, .events = POLLIN };
	char c = 'c';

	if (send(from, &c, 1, MSG_NOSIGNAL) != 1)
		return -errno;
	if (poll(&p, 1, STALL_MS) != 1)
		return -ETIMEDOUT;
	return recv(to, &c, 1, 0) == 1 ? 0 : -EIO;
}

/*
 * A connection a1 -> b1's server on port, accepted, one byte each way through it (a
 * tunnelled flow reaches the server once the agents' TLS is up): both ends' sockets, or
 * NULL and what failed.
 */
static const char *fed_connect_once(int listener, int port, struct flow *near, struct flow *far)
{
	double t0 = now_us();
	struct pollfd p = { .fd = listener, .events = POLLIN };

	/* after a release, b1 may still be a moment behind a1: retry, bounded */
	do {
		near->fd = sb_connect_in(a1->wcg, a1->wns, AF_INET, SOCK_STREAM, b1->waddr, port);
		if (near->fd < 0)
			usleep(10000);
	} while (near->fd < 0 && now_us() - t0 < RELEASE_MS * 1e3);
	if (near->fd < 0)
		return "connect a1 -> b1";
	if (send(near->fd, "c", 1, MSG_NOSIGNAL) != 1 || poll(&p, 1, STALL_MS) != 1)
		return "accept at b1 (none within 2 s)";
	far->fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	if (far->fd < 0)
		return "accept at b1";
	p = (struct pollfd){ .fd = far->fd, .events = POLLIN };
	if (poll(&p, 1, STALL_MS) != 1 || recv(far->fd, (char[1]){ 0 }, 1, 0) != 1)
		return "the first byte at b1";
	if (pass_byte(far->fd, near->fd))
		return "the first byte's echo at a1";
	return NULL;
}

/* Set-ups that failed and were tried again, per path: counted in the table. */
static void fed_connect(int listener, int port, struct flow *near, struct flow *far,
			int *retries)
{
	for (int attempt = 0; attempt < 5; attempt++) {
		const char *failed = fed_connect_once(listener, port, near, far);
		int e = errno;

		if (!failed)
			return;
		fprintf(stderr, "bench_quarantine: federation, port %d: set-up failed at %s (%s); "
			"again\n", port, failed, strerror(e));
		if (near->fd >= 0)
			close(near->fd);
		if (far->fd > 0)
			close(far->fd);
		near->fd = far->fd = -1;
		(*retries)++;
		usleep(100000);
	}
	fed_die("five set-ups of a flow a1 -> b1 in a row", EIO);
}

/* How the far ends ended, per path. */
struct far_ends {
	int aborted, reset, ended, stalled, retries;
};

static void fed_trial(int listener, int port, struct trial *t, struct far_ends *ends)
{
	struct flow near = { .fd = -1 }, far = { .fd = -1 };
	char args[256];
	pthread_t tn, tf;
	double t0, t1;

	t0 = now_us();
	if (fw_request(a1, "quarantine.list", NULL, NULL))
		fed_die("quarantine.list", EIO);
	t->noop_ms = ms_since(t0, now_us());

	fed_connect(listener, port, &near, &far, &ends->retries);
	if (pthread_create(&tf, NULL, echo, &far) || pthread_create(&tn, NULL, busy, &near))
		fed_die("thread", EAGAIN);
	if (wait_busy(&near))
		fed_die("the flow a1 -> b1 is not busy", ETIMEDOUT);
	snprintf(args, sizeof(args), "{\"target\": \"%s\", \"reason\": \"bench\"}", a1->wid);
	t0 = now_us();
	if (fw_request(a1, "quarantine.add", args, NULL))
		fed_die("quarantine.add", EIO);
	t1 = now_us();
	pthread_join(tn, NULL);
	pthread_join(tf, NULL);
	/* tunnelled, a1's relay may reset the caller's socket before a1's sweep destroys it */
	if ((near.error != ECONNABORTED && near.error != ECONNRESET) || !near.first_fail_us)
		fed_die("a1's busy flow was not torn down by the quarantine", near.error);
	t->request_ms = ms_since(t0, t1);
	t->first_drop_ms = ms_since(t0, near.first_fail_us);
	t->teardown_ms = ms_since(t0, near.error_us);
	/* a stall is no teardown: the far end was left open */
	t->agent_ms = far.error != ETIMEDOUT ? ms_since(t0, far.error_us) : -1;
	ends->aborted += far.error == ECONNABORTED;
	ends->reset += far.error == ECONNRESET;
	ends->stalled += far.error == ETIMEDOUT;
	ends->ended += far.error != ECONNABORTED && far.error != ECONNRESET &&
		       far.error != ETIMEDOUT;
	close(near.fd);
	close(far.fd);

	snprintf(args, sizeof(args), "{\"target\": \"%s\"}", a1->wid);
	if (fw_request(a1, "quarantine.del", args, NULL))
		fed_die("quarantine.del", EIO);
	if (fed_wait_listed(b1, "quarantine.list", "quarantine", "target", a1->wid, false))
		fed_die("the release reaches b1", ETIMEDOUT);
	usleep(SETTLE_US);
}

static void fed_report(const char *path, struct trial *t, int n, const struct far_ends *e)
{
	char where[64];

	snprintf(where, sizeof(where), "federation (4 agents), %s", path);
	fprintf(stderr, "bench_quarantine: federation, %s: far ends: %d destroyed by b1's agent, "
		"%d reset, %d ended, %d stalled; %d set-ups tried again\n", path, e->aborted,
		e->reset, e->ended, e->stalled, e->retries);
	report(where, "first drop at the caller", offsetof(struct trial, first_drop_ms), t, n,
	       "-");
	report(where, "caller's teardown", offsetof(struct trial, teardown_ms), t, n, "-");
	report(where, "far node's teardown", offsetof(struct trial, agent_ms), t, n, "value<50");
	report(where, "quarantine.add round trip", offsetof(struct trial, request_ms), t, n, "-");
	printf("@result|4 quarantine|%s: far ends destroyed by b1's agent"
	       "|%d|trials|%d|-\n", where, e->aborted, n);
	printf("@result|4 quarantine|%s: set-ups failed and tried again"
	       "|%d|trials|%d|-\n", where, e->retries, n);
}

/* The direct and the tunnelled flow alternate, the order changing from trial to trial. */
static void federation(int n, struct trial *direct, struct trial *tunnelled)
{
	struct far_ends ed = { 0 }, et = { 0 };
	int ld, lt;

	fed_world(&ld, &lt);
	for (int i = 0; i < n; i++) {
		if (i % 2 == 0)
			fed_trial(ld, FED_PORT, &direct[i], &ed);
		fed_trial(lt, FED_TUN_PORT, &tunnelled[i], &et);
		if (i % 2 == 1)
			fed_trial(ld, FED_PORT, &direct[i], &ed);
	}
	close(ld);
	close(lt);
	fw_teardown(&w);
	w_up = false;
	fed_report("direct", direct, n, &ed);
	fed_report("tunnelled", tunnelled, n, &et);
}

int main(int argc, char **argv)
{
	bool quick = false, fed_only = false;
	static struct trial t[TRIALS], t2[TRIALS];
	int n;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			quick = true;
		} else if (strcmp(argv[i], "--federation") == 0) {
			fed_only = true;
		} else {
			fprintf(stderr, "usage: bench_quarantine [--quick] [--federation]\n");
			return 2;
		}
	}
	n = quick ? QUICK_TRIALS : TRIALS;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	atexit(teardown);

	if (!fed_only)
		one_node(n, t);

	memset(t, 0, sizeof(t));
	federation(n, t, t2);
	return 0;
}
