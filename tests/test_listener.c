// SPDX-License-Identifier: Apache-2.0
/*
 * agent/listener.c, the accepting thread of the engines that serve other
 * agents: real TCP sockets on loopback. Every wait is bounded.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "listener.h"

struct seen {
	atomic_int n;
	atomic_int nonblocking;
	atomic_int from_loopback;
};

static void record(void *ctx, int fd, const struct sockaddr_storage *from, socklen_t len)
{
	struct seen *s = ctx;
	const struct sockaddr_in *in = (const struct sockaddr_in *)from;

	if (fcntl(fd, F_GETFL) & O_NONBLOCK)
		atomic_fetch_add(&s->nonblocking, 1);
	if (len == sizeof(*in) && in->sin_addr.s_addr == htonl(INADDR_LOOPBACK))
		atomic_fetch_add(&s->from_loopback, 1);
	close(fd);
	atomic_fetch_add(&s->n, 1);
}

static struct sockaddr_storage loopback(uint16_t port)
{
	struct sockaddr_storage ss = {};
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;

	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return ss;
}

static void dial(uint16_t port)
{
	struct sockaddr_storage ss = loopback(port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)), 0,
		     "connect: %s", strerror(errno));
	close(fd);
}

/* Waits up to 5 s for the callback to have run n times. */
static bool wait_for(struct seen *s, int n)
{
	for (int i = 0; i < 500 && atomic_load(&s->n) < n; i++)
		usleep(10000);
	return atomic_load(&s->n) >= n;
}

Test(listener, accepts_until_stopped_and_starts_again)
{
	struct sockaddr_storage any = loopback(0);
	struct listener l;
	struct seen s = {};

	listener_init(&l);
	cr_assert_eq(listener_open(&l, &any, sizeof(struct sockaddr_in), 16), 0);
	cr_assert_neq(l.port, 0, "no port bound");
	cr_assert_eq(listener_start(&l, record, &s), 0);
	cr_expect_eq(listener_start(&l, record, &s), -EALREADY);
	for (int i = 0; i < 3; i++)
		dial(l.port);
	cr_assert(wait_for(&s, 3), "%d of 3 connections accepted", atomic_load(&s.n));
	cr_expect_eq(atomic_load(&s.nonblocking), 3, "accepted sockets must be non-blocking");
	cr_expect_eq(atomic_load(&s.from_loopback), 3, "the peer's address");

	listener_stop(&l);
	cr_expect(!l.running);
	listener_stop(&l);	/* twice: nothing to do */
	cr_assert_eq(listener_start(&l, record, &s), 0, "no restart after a stop");
	dial(l.port);
	cr_expect(wait_for(&s, 4), "the restarted thread accepts nothing");
	listener_close(&l);
	cr_expect_eq(l.fd, -1);
	listener_close(&l);
}

Test(listener, a_port_in_use_is_refused_with_its_errno)
{
	struct sockaddr_storage any = loopback(0), taken;
	struct listener a, b;

	listener_init(&a);
	listener_init(&b);
	cr_assert_eq(listener_open(&a, &any, sizeof(struct sockaddr_in), 16), 0);
	taken = loopback(a.port);
	errno = 0;
	cr_expect_eq(listener_open(&b, &taken, sizeof(struct sockaddr_in), 16), -EADDRINUSE);
	cr_expect_eq(errno, EADDRINUSE, "errno for %%m: %s", strerror(errno));
	cr_expect_eq(b.fd, -1, "a failed open leaves no socket");
	cr_expect_eq(listener_start(&b, record, NULL), -EBADF);
	listener_close(&a);
	listener_close(&b);
}

static void *mask_of(void *arg)
{
	sigset_t *out = arg;

	pthread_sigmask(SIG_SETMASK, NULL, out);
	return NULL;
}

Test(listener, spawned_threads_take_no_signal)
{
	sigset_t mask, before, after;
	pthread_t t;

	pthread_sigmask(SIG_SETMASK, NULL, &before);
	cr_assert_eq(thread_spawn(&t, mask_of, &mask), 0);
	pthread_join(t, NULL);
	pthread_sigmask(SIG_SETMASK, NULL, &after);
	cr_expect(sigismember(&mask, SIGPIPE), "SIGPIPE reaches the thread");
	cr_expect(sigismember(&mask, SIGTERM), "SIGTERM reaches the thread");
	cr_expect_eq(sigismember(&after, SIGPIPE), sigismember(&before, SIGPIPE),
		     "the caller's mask changed");
}
