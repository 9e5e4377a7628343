// SPDX-License-Identifier: Apache-2.0
/*
 * The workload side of the network benchmarks: an echo server and three
 * clients, run inside the benchmark's namespaces and cgroups by
 * bench/net.sh (nsenter), so that whatever enforces on the path (nothing,
 * fedguard, iptables, nftables) judges real sockets.
 *
 *   bench_net serve PORT
 *       echo server (epoll, one thread): echoes what it reads, closes at EOF
 *   bench_net rr ADDR PORT SECONDS
 *       one connection, one byte back and forth: requests a second, and the
 *       p50 and p99 of the round trip
 *   bench_net crr ADDR PORT SECONDS [RATE]
 *       connect() and close() in a loop (abortive close, SO_LINGER 0, so
 *       that no TIME_WAIT exhausts the ports); at most RATE a second when
 *       given: connections a second, p50 and p99 of one connect()
 *
 * Clients print one line, `rate=R p50_us=X p99_us=Y n=N errors=E`, and stop
 * after SECONDS or MAX_SAMPLES, whichever comes first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
	MAX_SAMPLES = 4 * 1000 * 1000,
	MAX_SECONDS = 600,
	IO_TIMEOUT_MS = 2000,
	MAX_ERRORS = 1000,
	EPOLL_BATCH = 64,
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int usage(void)
{
	fprintf(stderr, "usage: bench_net serve PORT\n"
			"       bench_net rr ADDR PORT SECONDS\n"
			"       bench_net crr ADDR PORT SECONDS [RATE]\n");
	return 2;
}

/* --- the server ---------------------------------------------------------------------------- */

static int listener(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4096))
		return -errno;
	return fd;
}

static void accept_all(int ep, int lfd)
{
	int one = 1;

	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct epoll_event ev = { .events = EPOLLIN };

		if (c < 0)
			return;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ev.data.fd = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev))
			close(c);
	}
}

static void echo_once(int fd)
{
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n > 0 && write(fd, buf, (size_t)n) == n)
		return;
	if (n < 0 && errno == EAGAIN)
		return;
	close(fd);	/* EOF, reset or a failed write: the epoll entry goes with it */
}

static int serve(int port)
{
	struct epoll_event ev = { .events = EPOLLIN }, evs[EPOLL_BATCH];
	int lfd = listener(port), ep = epoll_create1(EPOLL_CLOEXEC);

	if (lfd < 0 || ep < 0) {
		fprintf(stderr, "bench_net: listen on port %d: %s\n", port, strerror(-lfd));
		return 1;
	}
	ev.data.fd = lfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev))
		return 1;
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int n = epoll_wait(ep, evs, EPOLL_BATCH, -1);

		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == lfd)
				accept_all(ep, lfd);
			else
				echo_once(evs[i].data.fd);
		}
	}
}

/* --- clients ----------------------------------------------------------------------------------- */

struct samples {
	float *us;
	long n;
	long errors;
};

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return x < y ? -1 : x > y;
}

static void report(struct samples *s, double elapsed)
{
	double p50 = 0, p99 = 0;

	if (s->n > 0) {
		qsort(s->us, (size_t)s->n, sizeof(*s->us), cmp_float);
		p50 = s->us[s->n / 2];
		p99 = s->us[s->n * 99 / 100];
	}
	printf("rate=%.1f p50_us=%.2f p99_us=%.2f n=%ld errors=%ld\n", s->n / elapsed, p50, p99,
	       s->n, s->errors);
}

static int target(const char *addr, int port, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	return inet_pton(AF_INET, addr, &sin->sin_addr) == 1 ? 0 : -EINVAL;
}

/* Waits for fd to be readable, bounded; 0 or -errno. */
static int wait_in(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r = poll(&p, 1, IO_TIMEOUT_MS);

	return r == 1 ? 0 : r == 0 ? -ETIMEDOUT : -errno;
}

/* A TCP socket whose connect() gives up after IO_TIMEOUT_MS; or -errno. */
static int tcp_socket(void)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_MS / 1000 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static int rr(const struct sockaddr_in *sin, double seconds, struct samples *s)
{
	int fd = tcp_socket(), one = 1;
	double end = now_s() + seconds;
	char c = 'x';

	if (fd < 0)
		return fd;
	if (connect(fd, (const struct sockaddr *)sin, sizeof(*sin))) {
		close(fd);
		return -errno;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (s->n < MAX_SAMPLES) {
		double t0 = now_s();

		if (t0 >= end)
			break;
		if (write(fd, &c, 1) != 1 || wait_in(fd) || read(fd, &c, 1) != 1) {
			s->errors++;
			break;	/* a broken connection ends the run: its errors are reported */
		}
		s->us[s->n++] = (float)((now_s() - t0) * 1e6);
	}
	close(fd);
	return 0;
}

/* One connect() and an abortive close(); its time in us, or -errno. */
static double connect_close(const struct sockaddr_in *sin)
{
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	double t0 = now_s(), us;
	int fd = tcp_socket();

	if (fd < 0)
		return fd;
	if (connect(fd, (const struct sockaddr *)sin, sizeof(*sin))) {
		int err = errno;

		close(fd);
		return -err;
	}
	us = (now_s() - t0) * 1e6;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
	close(fd);
	return us;
}

static int crr(const struct sockaddr_in *sin, double seconds, double rate, struct samples *s)
{
	double start = now_s(), end = start + seconds;

	while (s->n < MAX_SAMPLES && s->errors < MAX_ERRORS) {
		double t = now_s(), us;

		if (t >= end)
			break;
		if (rate > 0 && t < start + s->n / rate) {
			usleep((useconds_t)((start + s->n / rate - t) * 1e6));
			continue;
		}
		us = connect_close(sin);
		if (us < 0)
			s->errors++;
		else
			s->us[s->n++] = (float)us;
	}
	return 0;
}

static int client(int argc, char **argv)
{
	struct samples s = { .us = calloc(MAX_SAMPLES, sizeof(float)) };
	double seconds = argc > 4 ? atof(argv[4]) : 0, t0;
	struct sockaddr_in sin;
	int r;

	if (argc < 5 || seconds <= 0 || seconds > MAX_SECONDS ||
	    target(argv[2], atoi(argv[3]), &sin))
		return usage();
	if (!s.us)
		return 1;
	t0 = now_s();
	if (strcmp(argv[1], "rr") == 0)
		r = rr(&sin, seconds, &s);
	else
		r = crr(&sin, seconds, argc > 5 ? atof(argv[5]) : 0, &s);
	if (r) {
		fprintf(stderr, "bench_net: %s to %s:%s: %s\n", argv[1], argv[2], argv[3],
			strerror(-r));
		return 1;
	}
	report(&s, now_s() - t0);
	free(s.us);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && strcmp(argv[1], "serve") == 0)
		return serve(atoi(argv[2]));
	if (argc >= 5 && (strcmp(argv[1], "rr") == 0 || strcmp(argv[1], "crr") == 0))
		return client(argc, argv);
	return usage();
}
