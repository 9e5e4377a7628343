// SPDX-License-Identifier: Apache-2.0
/*
 * What a link costs, against plain TCP between the same loopback addresses
 * in the same run: two link engines in one process, A (a.test, 127.0.0.1)
 * dialing B (b.test, 127.0.0.2), as in tests/test_link.c.
 *
 *   round trip  a small message to B's caller and back, one at a time:
 *               caller, A's thread, TLS, B's thread, the JSON check, B's
 *               caller, and back; the baseline is a TCP echo thread
 *   throughput  MIBS messages of 1 MiB from A's caller to B's caller; the
 *               baseline writes the same bytes to a TCP reader thread
 *   connect     link_dial() to UP (TCP, a full TLS 1.3 handshake with both
 *               node SVIDs validated, both hellos); the baseline is a TCP
 *               connect() and accept()
 *
 * Prints medians, 90th percentiles, CPU time (both sides share the
 * process) and the ratios link/TCP.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "authtest.h"
#include "bundle.h"
#include "link.h"
#include "rogue.h"
#include "svids.h"

enum {
	ROUNDS = 2000,		/* round trips */
	MIBS = 64,		/* messages of 1 MiB */
	CONNECTS = 50,
	WAIT_MS = 10000,
	SMALL_LEN = 24,
};

#define B_ID "spiffe://b.test/fedguard/node/b1"

struct side {
	const char *td, *name, *ip;
	struct at_ca ca;
	struct svids *svids;
	struct link_engine *e;
};

static struct side A = { .td = "a.test", .name = "a1", .ip = "127.0.0.1" };
static struct side B = { .td = "b.test", .name = "b1", .ip = "127.0.0.2" };

static void die(const char *what, int r)
{
	fprintf(stderr, "bench_link: %s: %s\n", what, strerror(r < 0 ? -r : r));
	exit(1);
}

static double wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sorts v and returns its median; its 90th percentile in *p90. */
static double median(double *v, int n, double *p90)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	*p90 = v[n * 9 / 10];
	return v[n / 2];
}

/* --- the engines ------------------------------------------------------------------------ */

static bool admit_all(void *ctx, const struct link_peer *p, char *why, size_t len)
{
	return true;
}

static void side_start(struct side *s, bool listen)
{
	struct svids_config sc = { .trust_domain = s->td, .node_name = s->name, .ttl = 3600 };
	struct link_config cfg = { .outbox_max = (MIBS + 1) << 20,
				   .event_bytes_max = (size_t)(MIBS + 1) << 20,
				   .admit = admit_all };
	char why[SVIDS_WHY_MAX];
	int r;

	r = at_ca_make(s->td, time(NULL), 86400, &s->ca);
	if (r)
		die("CA", r);
	sc.ca = s->ca.node;
	sc.ca_key = s->ca.node_key;
	sc.ca_chain = s->ca.node_chain;
	r = svids_new(&sc, time(NULL), &s->svids, why, sizeof(why));
	if (r)
		die(why, r);
	cfg.svids = s->svids;
	at_addr(s->ip, 0, &cfg.source, &cfg.source_len);
	if (listen)
		at_addr(s->ip, 0, &cfg.listen, &cfg.listen_len);
	r = link_engine_new(&cfg, &s->e, why, sizeof(why));
	if (!r)
		r = link_engine_start(s->e, why, sizeof(why));
	if (r)
		die(why, r);
}

static void trust_both(void)
{
	struct bundle_set *set;
	struct auth_trust *ta, *tb;

	if (bundle_set_new(&set) || at_bundle_add(set, &A.ca) || at_bundle_add(set, &B.ca) ||
	    auth_trust_new(set, &ta) || auth_trust_new(set, &tb))
		die("trust", ENOMEM);
	bundle_set_free(set);
	link_engine_set_trust(A.e, ta);
	link_engine_set_trust(B.e, tb);
}

/* The next event of s of type; exits on a DOWN or after WAIT_MS. */
static struct link_event next(struct side *s, enum link_event_type type)
{
	struct pollfd p = { .fd = link_engine_fd(s->e), .events = POLLIN };
	struct link_event ev;

	for (;;) {
		if (link_engine_collect(s->e, &ev, 1) == 1) {
			if (ev.type == type)
				return ev;
			if (ev.type == LINK_EV_DOWN && type != LINK_EV_DOWN) {
				fprintf(stderr, "bench_link: link down: %s\n", ev.text);
				exit(1);
			}
			link_event_release(&ev);
			continue;
		}
		if (poll(&p, 1, WAIT_MS) != 1)
			die("no event", ETIMEDOUT);
	}
}

static uint64_t link_up(uint64_t *at_b)
{
	char addr[64];
	uint64_t id;
	struct link_event ev;

	snprintf(addr, sizeof(addr), "%s:%u", B.ip, link_engine_port(B.e));
	if (link_dial(A.e, addr, B_ID, &id))
		die("dial", EINVAL);
	ev = next(&A, LINK_EV_UP);
	link_event_release(&ev);
	ev = next(&B, LINK_EV_UP);
	*at_b = ev.id;
	link_event_release(&ev);
	return id;
}

/* --- plain TCP ----------------------------------------------------------------------------- */

/* A connected pair of TCP sockets, 127.0.0.1 to 127.0.0.2. */
static void tcp_pair(int *client, int *server)
{
	int l = at_listen(B.ip, 0), one = 1;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (l < 0)
		die("listen", l);
	getsockname(l, (struct sockaddr *)&ss, &len);
	*client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*client < 0 || connect(*client, (struct sockaddr *)&ss, len))
		die("connect", errno);
	*server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (*server < 0)
		die("accept", errno);
	setsockopt(*client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(l);
}

static int read_full(int fd, void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = read(fd, (char *)buf + done, len - done);

		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static void *echo(void *arg)
{
	int fd = *(int *)arg;
	char buf[SMALL_LEN];

	while (read_full(fd, buf, sizeof(buf)) == 0)
		if (write(fd, buf, sizeof(buf)) != sizeof(buf))
			break;
	return NULL;
}

static void *drain(void *arg)
{
	int fd = *(int *)arg;
	static char buf[1 << 16];
	size_t total = 0;

	while (total < (size_t)MIBS << 20) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n <= 0)
			break;
		total += (size_t)n;
	}
	return NULL;
}

/* --- the measures ------------------------------------------------------------------------------- */

static double rtt_link(uint64_t id, uint64_t at_b, double *p90, double *cpu)
{
	static double ms[ROUNDS];
	char msg[SMALL_LEN + 1];
	double c0 = cpu_ms();

	for (int i = 0; i < ROUNDS; i++) {
		struct link_event ev;
		double t0 = wall_ms();

		snprintf(msg, sizeof(msg), "{\"s\":\"%016d\"}", i);
		if (link_send(A.e, id, msg, SMALL_LEN))
			die("send", EIO);
		ev = next(&B, LINK_EV_MESSAGE);
		if (link_send(B.e, at_b, ev.text, ev.len))
			die("echo", EIO);
		link_event_release(&ev);
		ev = next(&A, LINK_EV_MESSAGE);
		link_event_release(&ev);
		ms[i] = wall_ms() - t0;
	}
	*cpu = (cpu_ms() - c0) / ROUNDS;
	return median(ms, ROUNDS, p90);
}

static double rtt_tcp(double *p90, double *cpu)
{
	static double ms[ROUNDS];
	char msg[SMALL_LEN + 1];
	pthread_t t;
	int c, s;
	double c0;

	tcp_pair(&c, &s);
	pthread_create(&t, NULL, echo, &s);
	c0 = cpu_ms();
	for (int i = 0; i < ROUNDS; i++) {
		double t0 = wall_ms();

		snprintf(msg, sizeof(msg), "{\"s\":\"%016d\"}", i);
		if (write(c, msg, SMALL_LEN) != SMALL_LEN || read_full(c, msg, SMALL_LEN))
			die("tcp echo", errno);
		ms[i] = wall_ms() - t0;
	}
	*cpu = (cpu_ms() - c0) / ROUNDS;
	close(c);
	pthread_join(t, NULL);
	close(s);
	return median(ms, ROUNDS, p90);
}

/* MiB/s of MIBS messages of 1 MiB from A's caller to B's caller; CPU ms per MiB in *cpu. */
static double throughput_link(uint64_t id, double *cpu)
{
	size_t len = 1 << 20;
	char *msg = malloc(len);
	double t0 = wall_ms(), c0 = cpu_ms();

	memset(msg, 'x', len);
	memcpy(msg, "{\"d\":\"", 6);
	memcpy(msg + len - 2, "\"}", 2);
	for (int i = 0; i < MIBS; i++)
		if (link_send(A.e, id, msg, len))
			die("send 1 MiB", EIO);
	for (int i = 0; i < MIBS; i++) {
		struct link_event ev = next(&B, LINK_EV_MESSAGE);

		if (ev.len != len)
			die("a message of another length", EPROTO);
		link_event_release(&ev);
	}
	*cpu = (cpu_ms() - c0) / MIBS;
	free(msg);
	return MIBS / ((wall_ms() - t0) / 1e3);
}

static double throughput_tcp(double *cpu)
{
	static char buf[1 << 20];
	pthread_t t;
	int c, s;
	double t0, c0;

	tcp_pair(&c, &s);
	memset(buf, 'x', sizeof(buf));
	pthread_create(&t, NULL, drain, &s);
	t0 = wall_ms();
	c0 = cpu_ms();
	for (int i = 0; i < MIBS; i++)
		for (size_t done = 0; done < sizeof(buf);) {
			ssize_t n = write(c, buf + done, sizeof(buf) - done);

			if (n <= 0)
				die("tcp write", errno);
			done += (size_t)n;
		}
	pthread_join(t, NULL);
	*cpu = (cpu_ms() - c0) / MIBS;
	t0 = MIBS / ((wall_ms() - t0) / 1e3);
	close(c);
	close(s);
	return t0;
}

static double connect_link(double *p90, double *cpu)
{
	static double ms[CONNECTS];
	double c0 = cpu_ms();

	for (int i = 0; i < CONNECTS; i++) {
		double t0 = wall_ms();
		uint64_t at_b, id = link_up(&at_b);
		struct link_event ev;

		ms[i] = wall_ms() - t0;
		link_undial(A.e, id);
		ev = next(&B, LINK_EV_DOWN);
		link_event_release(&ev);
		ev = next(&A, LINK_EV_DOWN);
		link_event_release(&ev);
	}
	*cpu = (cpu_ms() - c0) / CONNECTS;
	return median(ms, CONNECTS, p90);
}

static double connect_tcp(double *p90)
{
	static double ms[CONNECTS];

	for (int i = 0; i < CONNECTS; i++) {
		double t0 = wall_ms();
		int c, s;

		tcp_pair(&c, &s);
		ms[i] = wall_ms() - t0;
		close(c);
		close(s);
	}
	return median(ms, CONNECTS, p90);
}

int main(void)
{
	double l50, l90, lcpu, t50, t90, tcpu, lt, tt, ltcpu, ttcpu, c50, c90, ccpu, k50, k90;
	uint64_t id, at_b;

	signal(SIGPIPE, SIG_IGN);
	side_start(&B, true);
	side_start(&A, false);
	trust_both();
	id = link_up(&at_b);
	l50 = rtt_link(id, at_b, &l90, &lcpu);
	t50 = rtt_tcp(&t90, &tcpu);
	printf("round trip, link: median %.3f ms, p90 %.3f ms, %.3f ms CPU (%d rounds)\n", l50, l90,
	       lcpu, ROUNDS);
	printf("round trip, TCP:  median %.3f ms, p90 %.3f ms, %.3f ms CPU\n", t50, t90, tcpu);
	printf("round trip link/TCP: latency %.1f, CPU %.1f\n", l50 / t50, lcpu / tcpu);
	lt = throughput_link(id, &ltcpu);
	tt = throughput_tcp(&ttcpu);
	printf("throughput, link: %.0f MiB/s, %.2f ms CPU per MiB (%d messages of 1 MiB)\n", lt,
	       ltcpu, MIBS);
	printf("throughput, TCP:  %.0f MiB/s, %.2f ms CPU per MiB\n", tt, ttcpu);
	printf("throughput TCP/link: %.1f, CPU link/TCP %.1f\n", tt / lt, ltcpu / ttcpu);
	link_undial(A.e, id);
	link_event_release((struct link_event[]){ next(&B, LINK_EV_DOWN) });
	link_event_release((struct link_event[]){ next(&A, LINK_EV_DOWN) });
	c50 = connect_link(&c90, &ccpu);
	k50 = connect_tcp(&k90);
	printf("connect, link: median %.2f ms, p90 %.2f ms, %.2f ms CPU (%d links)\n", c50, c90,
	       ccpu, CONNECTS);
	printf("connect, TCP:  median %.3f ms, p90 %.3f ms\n", k50, k90);
	printf("connect link/TCP: %.0f\n", c50 / k50);
	link_engine_free(A.e);
	link_engine_free(B.e);
	svids_free(A.svids);
	svids_free(B.svids);
	at_ca_free(&A.ca);
	at_ca_free(&B.ca);
	return 0;
}
