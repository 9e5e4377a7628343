// SPDX-License-Identifier: Apache-2.0
/*
 * The encrypted transport (issue 8, item 6): what the tunnel costs a flow
 * between workloads of two nodes, against the direct kernel path measured
 * in the same run.
 *
 * One mesh of two nodes (tests/lib/fedworld.h), both agents started with
 * --tunnel-listen. Node a1's workload calls node a2's, where this program
 * runs a server of its own on three ports, one policy rule each:
 *
 *   direct         PORT_DIRECT  transport: authenticated: the kernel path,
 *                               allowed by policy, nothing more
 *   authenticated  PORT_AUTH    the same with auth: required: the kernel
 *                               path once the agents' mTLS handshake for the
 *                               pair is done (cached: paid once per run)
 *   encrypted      PORT_TUNNEL  no transport said: redirected to a1's agent,
 *                               carried in TLS 1.3 to a2's agent, which
 *                               connects to the server
 *
 * The figures are medians over rounds in which the variants alternate, their
 * order rotating from round to round:
 *
 *   throughput   one connection moves BULK_MIB one way; the clock starts
 *                when the server has answered the connection's first byte
 *                (the tunnel's handshake is done by then) and stops when
 *                the client has the server's count of the last byte
 *   round trip   one connection, one byte back and forth for RR_MS: p50, p99
 *   CPU per GiB  utime + stime (/proc/PID/stat) during the bulk transfers:
 *                both agents, which encrypt and relay; and all four
 *                processes (agents, client, server), against the direct path
 *   flows        100 and 1,000 connections at once, each one byte back and
 *                forth without pause: round trips a second over all, their
 *                p99, and the time to set the flows up (in batches of
 *                SETUP_BATCH, see there), direct against encrypted; and the
 *                agents' peak RSS meanwhile, against theirs before any flow
 *
 * Every connection ends in order (shutdown, then the server's EOF), and
 * after each encrypted measurement the agents must have ended its flows
 * before the next one starts (flows_close() and tunnel_drain() say why).
 *
 * The client runs in a child process inside a1's workload (a socket's
 * cgroup and network namespace are those of its creator) and hands its
 * figures back through a pipe. Everything is removed on exit, also after a
 * failure or a signal (atexit: fw_teardown()); FW_KEEP=1 keeps the agents'
 * logs in the world's directory.
 *
 *   FEDGUARDD=... FEDGUARDCTL=... FEDGUARD_CA=... bench_tunnel [--quick]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <linux/types.h>

#include "cleanup.h"
#include "fedworld.h"
#include "sandbox.h"

enum {
	TUNNEL_PORT = 18446,	/* the redirect listener is on the next port */
	PORT_TUNNEL = 9080,	/* not fedworld's 8080/8081: its own echo server has those */
	PORT_DIRECT = 9081,
	PORT_AUTH = 9082,

	ROUNDS = 7,
	QUICK_ROUNDS = 3,
	FLOW_ROUNDS = 3,
	QUICK_FLOW_ROUNDS = 1,
	BULK_MIB = 256,
	QUICK_BULK_MIB = 16,
	RR_MS = 1000,
	QUICK_RR_MS = 200,
	FLOWS_MS = 2000,
	QUICK_FLOWS_MS = 300,
	/*
	 * Flows are connected this many at a time, the next batch once each
	 * has echoed: every tunnelled flow must finish its TLS handshake
	 * within TUNNEL_HANDSHAKE_MS (3 s) of being accepted. A thousand at
	 * once took 1.7 s on the two CPUs here: a busier machine would reset
	 * some, and the figure would be the handshake deadline's, not the
	 * tunnel's.
	 */
	SETUP_BATCH = 100,

	IO_MS = 10000,		/* the longest wait for one connect, read or write */
	CHILD_S = 120,		/* a measurement still running then is killed */
	WAIT_MS = 30000,	/* for policy and endpoints to reach both agents */
	DRAIN_MS = 15000,	/* for the agents to end the flows of a measurement */
	CHUNK = 256 * 1024,
	MAX_SAMPLES = 4 * 1000 * 1000,
	EPOLL_BATCH = 256,
	NOFILE_MIN = 4096,
	RSS_STEP_MS = 50,	/* how often the agents' memory is sampled during a measurement */
};

enum variant {
	DIRECT,
	AUTHENTICATED,
	ENCRYPTED,
	VARIANTS,
};

static const struct {
	const char *name;	/* in the figures */
	int port;
} variants[VARIANTS] = {
	[DIRECT] = { "direct", PORT_DIRECT },
	[AUTHENTICATED] = { "authenticated", PORT_AUTH },
	[ENCRYPTED] = { "encrypted", PORT_TUNNEL },
};

/* A connection's first byte says what it wants of the server. */
enum {
	MODE_ECHO = 'E',	/* every later byte comes back */
	MODE_SINK = 'S',	/* 'k' at once, then the bytes are counted; at EOF the count */
};

/* A measurement for the client: BULK one transfer, FLOWS n connections at once. */
struct job {
	enum { JOB_BULK, JOB_FLOWS } kind;
	int port;
	int flows;
	long bytes;
	int ms;
};

/* What the client hands back through its pipe. */
struct outcome {
	int err;		/* 0, or the -errno that ended the measurement */
	int flows;		/* connections that were up */
	int failed;		/* connections that failed, at set-up or later */
	double seconds;		/* the measured span */
	double count;		/* in it: bytes (bulk) or round trips (flows) */
	double p50_us, p99_us;	/* flows: the round trips' */
	double setup_s;		/* flows: connecting them all, each up to its first echo */
	double cpu_s;		/* the client's own utime + stime */
	double agents_rss_mib;	/* measured by the parent: both agents' peak VmRSS */
};

static struct fw_world w;
static struct fw_node *const src = &w.node[0], *const dst = &w.node[1];
static pid_t server;
static double idle_rss;	/* both agents' VmRSS once the world is up, before any measurement */

static void teardown(void)
{
	if (server > 0) {
		kill(server, SIGKILL);
		waitpid(server, NULL, 0);
		server = 0;
	}
	fw_teardown(&w);
}

static void on_signal(int sig)
{
	exit(128 + sig);	/* atexit's teardown removes the world */
}

/* What the agents said last, then exit: the logs go with the world. */
static void die(const char *what, int r)
{
	fprintf(stderr, "bench_tunnel: %s: %s\n", what, strerror(r < 0 ? -r : r));
	for (int i = 0; i < w.n_nodes; i++) {
		fprintf(stderr, "bench_tunnel: the end of %s's log:\n", w.node[i].name);
		sb_sh("tail -n 8 %s >&2", fw_log_path(&w.node[i]));
	}
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return x < y ? -1 : x > y;
}

/* The median of n values; sorts v. */
static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The q-quantile (0..1) of n sorted samples, by nearest rank. */
static double quantile(const float *v, long n, double q)
{
	long i = (long)(q * (double)n + 0.999999) - 1;

	return n ? v[i < 0 ? 0 : i >= n ? n - 1 : i] : 0;
}

/*
 * What the world needs of this machine: an etcd, and descriptors for a
 * thousand flows in the client, the server and each agent (three a flow:
 * both sockets and an eventfd), which inherit this process's hard limit.
 */
static int preflight(void)
{
	struct rlimit rl;
	char why[256];

	if (!fg_etcd_binary(why, sizeof(why))) {
		fprintf(stderr, "bench_tunnel: %s\n", why);
		return -ENOENT;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -errno;
	if (rl.rlim_max < NOFILE_MIN) {
		fprintf(stderr, "bench_tunnel: RLIMIT_NOFILE: a hard limit of %llu, %d needed\n",
			(unsigned long long)rl.rlim_max, NOFILE_MIN);
		return -EMFILE;
	}
	rl.rlim_cur = rl.rlim_max;
	return setrlimit(RLIMIT_NOFILE, &rl) ? -errno : 0;
}

/* --- the server, in a2's workload ------------------------------------------------------------ */

struct sconn {
	char mode;	/* 0 until the connection's first byte */
	__u64 bytes;	/* sink: counted so far */
};

static int server_listen(int ep, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct epoll_event ev = { .events = EPOLLIN };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ev.data.u64 = (__u64)fd << 1 | 1;	/* bit 0: a listener */
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4096) ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		return -errno;
	return 0;
}

static void server_accept(int ep, int lfd, struct sconn *conns, int max)
{
	int fd, one = 1;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (__u64)fd << 1 };

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (fd >= max || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			continue;
		}
		conns[fd] = (struct sconn){ 0 };
	}
}

/* A sink at EOF answers with its count (the client reads it, then closes); the rest just end. */
static void server_end(int fd, const struct sconn *c, bool eof)
{
	if (eof && c->mode == MODE_SINK)
		(void)!write(fd, &c->bytes, sizeof(c->bytes));	/* if not: a short read there */
	close(fd);	/* its epoll entry goes with it */
}

static void server_read(int fd, struct sconn *c, char *buf)
{
	ssize_t n = read(fd, buf, CHUNK), off = 0;

	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0)
		return server_end(fd, c, n == 0);
	if (!c->mode) {
		c->mode = buf[off++];
		if (c->mode == MODE_SINK && write(fd, "k", 1) != 1)
			return server_end(fd, c, false);
	}
	/* echoes are a byte or two: a partial write is a broken connection */
	if (c->mode == MODE_ECHO && n > off && write(fd, buf + off, n - off) != n - off)
		return server_end(fd, c, false);
	c->bytes += (__u64)(n - off);
}

/* One thread, epoll: echo and sink connections on the three ports. */
static void server_main(int ready_fd)
{
	static char buf[CHUNK];
	static const int ports[] = { PORT_TUNNEL, PORT_DIRECT, PORT_AUTH };
	struct epoll_event evs[EPOLL_BATCH];
	struct rlimit rl = { 0 };
	struct sconn *conns;
	int ep = epoll_create1(EPOLL_CLOEXEC), max;

	getrlimit(RLIMIT_NOFILE, &rl);
	max = rl.rlim_cur > 65536 ? 65536 : (int)rl.rlim_cur;
	conns = calloc((size_t)max, sizeof(*conns));
	if (ep < 0 || !conns)
		_exit(1);
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
		if (server_listen(ep, ports[i]))
			_exit(1);
	if (write(ready_fd, "r", 1) != 1)
		_exit(1);
	for (;;) {
		int n = epoll_wait(ep, evs, EPOLL_BATCH, -1);

		for (int i = 0; i < n; i++) {
			int fd = (int)(evs[i].data.u64 >> 1);

			if (evs[i].data.u64 & 1)
				server_accept(ep, fd, conns, max);
			else
				server_read(fd, &conns[fd], buf);
		}
	}
}

/* The server as a process of a2's workload, ready to accept. 0 or -errno. */
static int server_start(void)
{
	_cleanup_close_ int rd = -1;
	int p[2];
	char c;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	rd = p[0];
	server = fork();
	if (server < 0)
		return -errno;
	if (server == 0) {
		signal(SIGINT, SIG_DFL);	/* never the parent's teardown */
		signal(SIGTERM, SIG_DFL);
		if (sb_enter(dst->wcg, dst->wns))
			_exit(1);
		server_main(p[1]);
	}
	close(p[1]);
	if (poll(&(struct pollfd){ .fd = rd, .events = POLLIN }, 1, IO_MS) != 1 ||
	    read(rd, &c, 1) != 1)
		return -ETIMEDOUT;
	return 0;
}

/* --- the client, in a1's workload ------------------------------------------------------------ */

/* A blocking TCP connection to a2's workload, every call bounded by IO_MS. fd or -errno. */
static int client_connect(int port)
{
	struct timeval tv = { .tv_sec = IO_MS / 1000 };
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	_cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -errno;
	inet_pton(AF_INET, dst->waddr, &a.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
		return -errno;
	return take_fd(&fd);
}

static int read_full(int fd, void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n <= 0)
			return n == 0 ? -ECONNRESET : -errno;
		got += (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	for (size_t sent = 0; sent < len;) {
		ssize_t n = send(fd, (const char *)buf + sent, len - sent, MSG_NOSIGNAL);

		if (n <= 0)
			return n == 0 ? -EIO : -errno;
		sent += (size_t)n;
	}
	return 0;
}

/* One transfer of j->bytes to the sink, timed from its 'k' to its count. */
static int bulk(const struct job *j, struct outcome *o)
{
	_cleanup_free_ char *buf = malloc(CHUNK);
	_cleanup_close_ int fd = client_connect(j->port);
	__u64 count = 0;
	double t0;
	char k;
	int r;

	if (fd < 0 || !buf)
		return fd < 0 ? fd : -ENOMEM;
	memset(buf, 0x5a, CHUNK);
	r = write_full(fd, &(char){ MODE_SINK }, 1);
	if (!r)
		r = read_full(fd, &k, 1);
	t0 = now_s();
	for (long sent = 0; !r && sent < j->bytes; sent += CHUNK)
		r = write_full(fd, buf, CHUNK);
	if (!r)
		r = shutdown(fd, SHUT_WR) ? -errno : read_full(fd, &count, sizeof(count));
	if (r)
		return r;
	o->seconds = now_s() - t0;
	/* the server's EOF: the flow ends in order on both nodes (flows_close() says why) */
	if (read(fd, &k, 1) != 0)
		o->failed++;
	o->count = (double)count;
	o->flows = 1;
	return count == (__u64)j->bytes ? 0 : -EIO;
}

/* The flows of one measurement: a descriptor and a send time each, and the round trips. */
struct flows {
	int n;
	int *fd;
	double *t0;
	float *us;
	long n_us;
	long done;	/* round trips, also those beyond MAX_SAMPLES */
};

static void flow_drop(struct flows *f, int i, struct outcome *o)
{
	if (f->fd[i] >= 0)
		close(f->fd[i]);
	f->fd[i] = -1;
	o->failed++;
}

/* Connects the flows SETUP_BATCH at a time, each up to its first echo; a failed one stays -1. */
static int flows_open(struct flows *f, int port, struct outcome *o)
{
	double t0 = now_s();
	char c;

	for (int i = 0; i < f->n; i += SETUP_BATCH) {
		int end = i + SETUP_BATCH < f->n ? i + SETUP_BATCH : f->n;

		for (int k = i; k < end; k++) {
			f->fd[k] = client_connect(port);
			if (f->fd[k] < 0 || write_full(f->fd[k], "Ex", 2))
				flow_drop(f, k, o);
		}
		for (int k = i; k < end; k++)
			if (f->fd[k] >= 0 && read_full(f->fd[k], &c, 1))
				flow_drop(f, k, o);
	}
	o->setup_s = now_s() - t0;
	o->flows = f->n - o->failed;
	return o->flows ? 0 : -ECONNREFUSED;
}

/* One flow's echo came (or its end): note the round trip, send the next unless time is up. */
static void flow_turn(struct flows *f, int i, double end, struct outcome *o)
{
	double t;
	char c;
	ssize_t n = read(f->fd[i], &c, 1);

	if (n < 0 && errno == EAGAIN)
		return;
	if (n != 1)
		return flow_drop(f, i, o);
	t = now_s();
	if (f->n_us < MAX_SAMPLES)
		f->us[f->n_us++] = (float)((t - f->t0[i]) * 1e6);
	f->done++;
	f->t0[i] = t;
	if (t < end && send(f->fd[i], "x", 1, MSG_NOSIGNAL) != 1)
		flow_drop(f, i, o);
}

/*
 * Ends every flow in order: shutdown(SHUT_WR), then reads (and drops what was
 * still on its way) up to the server's EOF, within IO_MS. A plain close()
 * would be the application's right too, but a tunnelled flow then stays
 * relayed for minutes (docs/BENCHMARKS.md): the next measurement would share
 * the agents with the flows of this one.
 */
static void flows_close(struct flows *f, int ep, struct outcome *o)
{
	struct epoll_event evs[EPOLL_BATCH];
	double end = now_s() + IO_MS / 1e3;
	int open = 0;
	char buf[64];

	for (int i = 0; i < f->n; i++)
		if (f->fd[i] >= 0 && shutdown(f->fd[i], SHUT_WR) == 0)
			open++;
		else if (f->fd[i] >= 0)
			flow_drop(f, i, o);
	while (open > 0 && now_s() < end) {
		int n = epoll_wait(ep, evs, EPOLL_BATCH, 100);

		for (int k = 0; k < n; k++) {
			int i = (int)evs[k].data.u32;
			ssize_t r = read(f->fd[i], buf, sizeof(buf));

			if (r > 0 || (r < 0 && errno == EAGAIN))
				continue;
			if (r < 0)
				o->failed++;
			close(f->fd[i]);
			f->fd[i] = -1;
			open--;
		}
	}
	o->failed += open;	/* no orderly end within IO_MS */
}

/* Every flow one byte back and forth without pause, for ms; then their orderly end. */
static int flows_run(struct flows *f, int ms, struct outcome *o)
{
	_cleanup_close_ int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event evs[EPOLL_BATCH];
	double start = now_s(), end = start + ms / 1e3;

	if (ep < 0)
		return -errno;
	for (int i = 0; i < f->n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (__u32)i };

		if (f->fd[i] < 0)
			continue;
		fcntl(f->fd[i], F_SETFL, O_NONBLOCK);
		f->t0[i] = now_s();
		if (epoll_ctl(ep, EPOLL_CTL_ADD, f->fd[i], &ev) ||
		    send(f->fd[i], "x", 1, MSG_NOSIGNAL) != 1)
			flow_drop(f, i, o);
	}
	while (now_s() < end) {
		int n = epoll_wait(ep, evs, EPOLL_BATCH, 100);

		for (int k = 0; k < n; k++)
			flow_turn(f, (int)evs[k].data.u32, end, o);
	}
	o->seconds = now_s() - start;
	o->count = (double)f->done;
	flows_close(f, ep, o);
	return 0;
}

static int flows(const struct job *j, struct outcome *o)
{
	struct flows f = { .n = j->flows };
	int r = -ENOMEM;

	f.fd = malloc(sizeof(*f.fd) * (size_t)f.n);
	f.t0 = calloc((size_t)f.n, sizeof(*f.t0));
	f.us = malloc(sizeof(*f.us) * MAX_SAMPLES);
	if (f.fd && f.t0 && f.us) {
		r = flows_open(&f, j->port, o);
		if (!r)
			r = flows_run(&f, j->ms, o);
	}
	if (!r) {
		qsort(f.us, (size_t)f.n_us, sizeof(*f.us), cmp_float);
		o->p50_us = quantile(f.us, f.n_us, 0.5);
		o->p99_us = quantile(f.us, f.n_us, 0.99);
	}
	free(f.fd), free(f.t0), free(f.us);	/* what is still open closes with the process */
	return r;
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* The child: becomes a process of a1's workload, measures, writes the outcome, exits. */
static __attribute__((noreturn)) void client_main(const struct job *j, int out)
{
	struct outcome o = { 0 };
	struct rusage ru;

	signal(SIGINT, SIG_DFL);	/* never the parent's teardown */
	signal(SIGTERM, SIG_DFL);
	alarm(CHILD_S);
	o.err = sb_enter(src->wcg, src->wns);
	if (!o.err)
		o.err = j->kind == JOB_BULK ? bulk(j, &o) : flows(j, &o);
	getrusage(RUSAGE_SELF, &ru);
	o.cpu_s = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
	_exit(write(out, &o, sizeof(o)) == sizeof(o) ? 0 : 1);
}

/* --- the agents, from /proc ------------------------------------------------------------------ */

/* utime + stime of pid, in seconds. */
static double cpu_of(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long utime, stime;
	_cleanup_fclose_ FILE *f = NULL;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "re");
	if (!f || !fgets(buf, sizeof(buf), f) || !(p = strrchr(buf, ')')))
		return 0;
	/* after the name: state (field 3) ... utime (14) and stime (15) */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
		   &stime) != 2)
		return 0;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double agents_cpu(void)
{
	return cpu_of(src->agent) + cpu_of(dst->agent);
}

/* VmRSS of pid in MiB, or 0. */
static double rss_of(pid_t pid)
{
	char path[64], line[256];
	_cleanup_fclose_ FILE *f = NULL;
	unsigned long kib = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f) && sscanf(line, "VmRSS: %lu", &kib) != 1)
		;
	return (double)kib / 1024;
}

static double agents_rss(void)
{
	return rss_of(src->agent) + rss_of(dst->agent);
}

/* --- measurements ---------------------------------------------------------------------------- */

/*
 * Runs j in a new child inside a1's workload: 0 and its outcome in o, or
 * -errno. While it runs, the agents' RSS is sampled: its peak goes to o.
 */
static int measure(const struct job *j, struct outcome *o)
{
	struct pollfd p = { .events = POLLIN };
	double peak = 0;
	int fds[2], r = -ETIMEDOUT;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(fds[0]), close(fds[1]);
		return r;
	}
	if (pid == 0)
		client_main(j, fds[1]);
	close(fds[1]);
	p.fd = fds[0];
	for (int left = (CHILD_S + 5) * 1000; left > 0; left -= RSS_STEP_MS) {
		int n = poll(&p, 1, RSS_STEP_MS);
		double rss = agents_rss();

		peak = rss > peak ? rss : peak;
		if (n == 0)
			continue;
		if (n == 1 && read(p.fd, o, sizeof(*o)) == sizeof(*o))
			r = o->err;
		break;
	}
	close(p.fd);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	o->agents_rss_mib = peak;
	return r;
}

/* --- the world ------------------------------------------------------------------------------- */

static const char *policy(void)
{
	static char doc[2048];

	snprintf(doc, sizeof(doc),
		 "version: 1\n"
		 "rules:\n"
		 "  - name: encrypted\n"
		 "    action: allow\n"
		 "    from: {spiffe_id: %s}\n"
		 "    to: {spiffe_id: %s}\n"
		 "    ports: [%d]\n"
		 "  - name: direct\n"
		 "    action: allow\n"
		 "    transport: authenticated\n"
		 "    from: {spiffe_id: %s}\n"
		 "    to: {spiffe_id: %s}\n"
		 "    ports: [%d]\n"
		 "  - name: authenticated\n"
		 "    action: allow\n"
		 "    transport: authenticated\n"
		 "    auth: required\n"
		 "    from: {spiffe_id: %s}\n"
		 "    to: {spiffe_id: %s}\n"
		 "    ports: [%d]\n",
		 src->wid, dst->wid, PORT_TUNNEL, src->wid, dst->wid, PORT_DIRECT, src->wid,
		 dst->wid, PORT_AUTH);
	return doc;
}

/* Whether n has policy version 1 in force and knows id as an endpoint. */
static bool node_ready(struct fw_node *n, const char *id)
{
	struct json_object *res = NULL, *o, *list;
	bool ready = false;

	if (fw_request(n, "status", NULL, &res) || !json_object_object_get_ex(res, "policy", &o) ||
	    !json_object_object_get_ex(o, "version", &o) || json_object_get_int64(o) != 1) {
		json_object_put(res);
		return false;
	}
	json_object_put(res);
	res = NULL;
	if (fw_request(n, "endpoint.list", NULL, &res) == 0 &&
	    json_object_object_get_ex(res, "endpoints", &list))
		for (size_t i = 0; !ready && i < json_object_array_length(list); i++) {
			o = json_object_object_get(json_object_array_get_idx(list, i), "spiffe_id");
			ready = o && strcmp(json_object_get_string(o), id) == 0;
		}
	json_object_put(res);
	return ready;
}

/* A first echo on each port, retried until WAIT_MS: the whole path works, caches are warm. */
static void warm_up(void)
{
	long t0 = fw_now_ms();

	for (int v = 0; v < VARIANTS; v++) {
		struct job j = { JOB_FLOWS, variants[v].port, .flows = 1, .ms = 50 };
		struct outcome o;
		int r;

		while ((r = measure(&j, &o)) && fw_now_ms() - t0 < WAIT_MS)
			usleep(100000);
		if (r)
			die(variants[v].name, r);
	}
}

static void world_up(void)
{
	char tunnel[64], out[4096];
	const char *extra[] = { tunnel, NULL };
	long t0;
	int r;

	r = fw_setup(&w, 1, 2);
	for (int i = 0; !r && i < w.n_nodes; i++) {
		snprintf(tunnel, sizeof(tunnel), "--tunnel-listen=%s:%d", w.node[i].addr,
			 TUNNEL_PORT);
		r = fw_agent_start(&w, &w.node[i], extra);
		if (!r)
			r = fw_register(&w.node[i]);
	}
	if (r)
		die("the world (fedworld: 1 mesh x 2 nodes)", r);
	r = server_start();
	if (r)
		die("the server in a2's workload", r);
	if (fw_policy_apply(&w, src, policy(), NULL, out, sizeof(out))) {
		fprintf(stderr, "%s", out);
		die("policy apply", EINVAL);
	}
	t0 = fw_now_ms();
	while (fw_now_ms() - t0 < WAIT_MS &&
	       !(node_ready(src, dst->wid) && node_ready(dst, src->wid)))
		usleep(50000);
	if (!node_ready(src, dst->wid) || !node_ready(dst, src->wid))
		die("policy and endpoints on both nodes", ETIMEDOUT);
	idle_rss = agents_rss();
	warm_up();
	fprintf(stderr, "bench_tunnel: ready: agents %d (%s) and %d (%s), server %d; "
		"agents' RSS %.1f MiB\n", src->agent, src->name, dst->agent, dst->name, server,
		idle_rss);
}

/* A number of the tunnel's part of n's status ("active", "refused_out", ...), or -1. */
static long tunnel_field(struct fw_node *n, const char *field)
{
	struct json_object *res = NULL, *t, *v;
	long value = -1;

	if (fw_request(n, "status", NULL, &res) == 0 &&
	    json_object_object_get_ex(res, "tunnel", &t) && json_object_object_get_ex(t, field, &v))
		value = json_object_get_int64(v);
	json_object_put(res);
	return value;
}

/*
 * Waits (up to DRAIN_MS) until neither agent relays a flow any more: the
 * flows of one measurement must not load the agents during the next. How
 * long that took goes into the log.
 */
static void tunnel_drain(const char *after)
{
	double t0 = now_s();
	long a = 0, b = 0;

	while ((now_s() - t0) * 1e3 < DRAIN_MS) {
		a = tunnel_field(src, "active");
		b = tunnel_field(dst, "active");
		if (a == 0 && b == 0)
			break;
		usleep(10000);
	}
	fprintf(stderr, "bench_tunnel: after %s: %ld and %ld flows still relayed, %.2f s later\n",
		after, a, b, now_s() - t0);
}

/* --- rounds ---------------------------------------------------------------------------------- */

/* Per variant and round: what the figures are the medians of. */
struct bulk_figures {
	double mib_s[VARIANTS][ROUNDS];
	double agents_s_gib[VARIANTS][ROUNDS];	/* both agents' CPU per GiB */
	double all_s_gib[VARIANTS][ROUNDS];	/* agents, client and server */
};

struct rr_figures {
	double p50[VARIANTS][ROUNDS], p99[VARIANTS][ROUNDS], rate[VARIANTS][ROUNDS];
};

static void bulk_one(enum variant v, long bytes, int k, struct bulk_figures *b)
{
	struct job j = { JOB_BULK, variants[v].port, .bytes = bytes };
	double a0 = agents_cpu(), s0 = cpu_of(server), agents, gib;
	struct outcome o;
	int r = measure(&j, &o);

	if (r)
		die(variants[v].name, r);
	gib = o.count / (1 << 30);
	agents = agents_cpu() - a0;
	b->mib_s[v][k] = o.count / (1 << 20) / o.seconds;
	b->agents_s_gib[v][k] = agents / gib;
	b->all_s_gib[v][k] = (agents + cpu_of(server) - s0 + o.cpu_s) / gib;
	fprintf(stderr, "bench_tunnel: bulk %s: %.0f MiB/s, agents %.3f s, client %.3f s%s\n",
		variants[v].name, b->mib_s[v][k], agents, o.cpu_s,
		o.failed ? ", no orderly end" : "");
	if (v == ENCRYPTED)
		tunnel_drain("a bulk transfer");
}

static void rr_one(enum variant v, int ms, int k, struct rr_figures *f)
{
	struct job j = { JOB_FLOWS, variants[v].port, .flows = 1, .ms = ms };
	struct outcome o;
	int r = measure(&j, &o);

	if (r)
		die(variants[v].name, r);
	f->p50[v][k] = o.p50_us;
	f->p99[v][k] = o.p99_us;
	f->rate[v][k] = o.count / o.seconds;
	if (v == ENCRYPTED)
		tunnel_drain("a round trip flow");
}

/* ROUNDS rounds of the three variants, their order rotated: bulk, then round trips. */
static void path_rounds(int rounds, long bytes, int ms, struct bulk_figures *b,
			struct rr_figures *f)
{
	for (int k = 0; k < rounds; k++)
		for (int i = 0; i < VARIANTS; i++)
			bulk_one((enum variant)((i + k) % VARIANTS), bytes, k, b);
	for (int k = 0; k < rounds; k++)
		for (int i = 0; i < VARIANTS; i++)
			rr_one((enum variant)((i + k) % VARIANTS), ms, k, f);
}

static void result(const char *figure, double value, const char *unit, double base)
{
	if (base < 0)
		printf("@result|8 tunnel|%s|%.6g|%s|-|-\n", figure, value, unit);
	else
		printf("@result|8 tunnel|%s|%.6g|%s|%.6g|-\n", figure, value, unit, base);
}

/* One row per variant, the direct path the others' baseline. */
static void result_variants(const char *what, double v[VARIANTS][ROUNDS], int n,
			    const char *unit)
{
	static const char *const how[VARIANTS] = {
		[DIRECT] = "direct (transport: authenticated)",
		[AUTHENTICATED] = "authenticated (auth: required)",
		[ENCRYPTED] = "encrypted (tunnel)",
	};
	double base = median(v[DIRECT], n);
	char figure[128];

	for (int i = 0; i < VARIANTS; i++) {
		snprintf(figure, sizeof(figure), "%s, %s", what, how[i]);
		result(figure, i == DIRECT ? base : median(v[i], n), unit, i == DIRECT ? -1 : base);
	}
}

static void path_report(struct bulk_figures *b, struct rr_figures *f, int n, long bytes)
{
	char what[128];

	snprintf(what, sizeof(what), "throughput, %ld MiB one way", bytes >> 20);
	result_variants(what, b->mib_s, n, "MiB/s");
	result_variants("1-byte round trip p50", f->p50, n, "us");
	result_variants("1-byte round trip p99", f->p99, n, "us");
	result("CPU per GiB, encrypted: both agents", median(b->agents_s_gib[ENCRYPTED], n),
	       "s/GiB", -1);
	result("CPU per GiB, agents+client+server: encrypted (baseline: direct)",
	       median(b->all_s_gib[ENCRYPTED], n), "s/GiB", median(b->all_s_gib[DIRECT], n));
	result("flows at once: 1, direct: round trips/s", median(f->rate[DIRECT], n), "rt/s", -1);
	result("flows at once: 1, encrypted: round trips/s", median(f->rate[ENCRYPTED], n), "rt/s",
	       median(f->rate[DIRECT], n));
}

/* --- many flows at once ---------------------------------------------------------------------- */

struct flow_figures {
	double rate[2][FLOW_ROUNDS], p99[2][FLOW_ROUNDS], setup[2][FLOW_ROUNDS];
	double rss[2][FLOW_ROUNDS];	/* both agents' peak VmRSS */
	int failed[2];
};

static void flows_one(enum variant v, int n, int ms, int k, struct flow_figures *f)
{
	struct job j = { JOB_FLOWS, variants[v].port, .flows = n, .ms = ms };
	int x = v == ENCRYPTED;
	struct outcome o;
	int r = measure(&j, &o);

	if (r)
		die(variants[v].name, r);
	f->rate[x][k] = o.count / o.seconds;
	f->p99[x][k] = o.p99_us;
	f->setup[x][k] = o.setup_s;
	f->rss[x][k] = o.agents_rss_mib;
	f->failed[x] += o.failed;
	fprintf(stderr, "bench_tunnel: %d %s flows: %d up, %d failed, set up in %.2f s, "
		"%.0f round trips/s, p50 %.0f us, p99 %.0f us, agents' RSS %.1f MiB\n", n,
		variants[v].name, o.flows, o.failed, o.setup_s, f->rate[x][k], o.p50_us, o.p99_us,
		o.agents_rss_mib);
	if (v == ENCRYPTED)
		tunnel_drain("many flows");
}

static void flows_report(int n, struct flow_figures *f, int rounds)
{
	static const char *const fig[] = { "round trips/s", "round trip p99", "set-up" };
	static const char *const unit[] = { "rt/s", "us", "s" };
	double(*v[])[FLOW_ROUNDS] = { f->rate, f->p99, f->setup };
	const char *failed[2] = { f->failed[0] ? " (flows failed: see the log)" : "",
				  f->failed[1] ? " (flows failed: see the log)" : "" };
	char figure[128];

	for (size_t m = 0; m < sizeof(v) / sizeof(v[0]); m++) {
		double base = median(v[m][0], rounds);

		snprintf(figure, sizeof(figure), "flows at once: %d, direct: %s%s", n, fig[m],
			 failed[0]);
		result(figure, base, unit[m], -1);
		snprintf(figure, sizeof(figure), "flows at once: %d, encrypted: %s%s", n, fig[m],
			 failed[1]);
		result(figure, median(v[m][1], rounds), unit[m], base);
	}
	/* the direct flows do not touch the agents: the baseline is their RSS before any flow */
	snprintf(figure, sizeof(figure), "flows at once: %d, encrypted: both agents' peak RSS", n);
	result(figure, median(f->rss[1], rounds), "MiB", idle_rss);
}

static void flow_rounds(int n, int rounds, int ms)
{
	struct flow_figures f = { 0 };

	for (int k = 0; k < rounds; k++) {
		flows_one(k % 2 ? ENCRYPTED : DIRECT, n, ms, k, &f);
		flows_one(k % 2 ? DIRECT : ENCRYPTED, n, ms, k, &f);
	}
	flows_report(n, &f, rounds);
}

/* The tunnel's counters of both agents, into the log: refusals say what went wrong. */
static void tunnel_log(void)
{
	for (int i = 0; i < w.n_nodes; i++) {
		struct json_object *res = NULL, *t;

		if (fw_request(&w.node[i], "status", NULL, &res) == 0 &&
		    json_object_object_get_ex(res, "tunnel", &t))
			fprintf(stderr, "bench_tunnel: %s tunnel: %s\n", w.node[i].name,
				json_object_to_json_string(t));
		json_object_put(res);
	}
}

int main(int argc, char **argv)
{
	bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	int rounds = quick ? QUICK_ROUNDS : ROUNDS;
	int flow_n = quick ? QUICK_FLOW_ROUNDS : FLOW_ROUNDS;
	long bytes = (long)(quick ? QUICK_BULK_MIB : BULK_MIB) << 20;
	static struct bulk_figures bulk_fig;
	static struct rr_figures rr_fig;

	if (argc > 2 || (argc == 2 && !quick)) {
		fprintf(stderr, "usage: bench_tunnel [--quick]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (preflight())
		return 1;
	atexit(teardown);

	/* two nodes, their agents, the server, the policy; every path tried once */
	world_up();

	/* throughput, CPU and round trips of the three paths */
	path_rounds(rounds, bytes, quick ? QUICK_RR_MS : RR_MS, &bulk_fig, &rr_fig);
	path_report(&bulk_fig, &rr_fig, rounds, bytes);

	/* many flows at once, direct against encrypted */
	flow_rounds(100, flow_n, quick ? QUICK_FLOWS_MS : FLOWS_MS);
	flow_rounds(1000, flow_n, quick ? QUICK_FLOWS_MS : FLOWS_MS);

	tunnel_log();
	return 0;
}
