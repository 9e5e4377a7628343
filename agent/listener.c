// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "addr.h"
#include "cleanup.h"
#include "listener.h"

void listener_init(struct listener *l)
{
	*l = (struct listener){ .fd = -1, .stop_fd = -1 };
}

int listener_open(struct listener *l, const struct sockaddr_storage *addr, socklen_t len,
		  int backlog)
{
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	int one = 1;
	_cleanup_close_ int fd = socket(addr->ss_family,
					SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	_cleanup_close_ int stop = -1;

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (const struct sockaddr *)addr, len) || listen(fd, backlog) ||
	    getsockname(fd, (struct sockaddr *)&bound, &blen))
		return -errno;
	stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (stop < 0)
		return -errno;
	l->port = addr_sockaddr_port(&bound);
	l->fd = take_fd(&fd);
	l->stop_fd = take_fd(&stop);
	return 0;
}

static void *accepting(void *arg)
{
	struct listener *l = arg;
	struct pollfd p[2] = { { .fd = l->fd, .events = POLLIN },
			       { .fd = l->stop_fd, .events = POLLIN } };

	for (;;) {
		struct sockaddr_storage from;
		socklen_t len = sizeof(from);
		int fd;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		fd = accept4(l->fd, (struct sockaddr *)&from, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			l->on_accept(l->ctx, fd, &from, len);
	}
	return NULL;
}

int listener_start(struct listener *l, listener_accept_fn on_accept, void *ctx)
{
	int r;

	if (l->running)
		return -EALREADY;
	if (l->fd < 0 || l->stop_fd < 0)
		return -EBADF;
	l->on_accept = on_accept;
	l->ctx = ctx;
	r = thread_spawn(&l->thread, accepting, l);
	if (r)
		return -r;
	l->running = true;
	return 0;
}

void listener_stop(struct listener *l)
{
	uint64_t one = 1;

	if (!l->running)
		return;
	if (write(l->stop_fd, &one, sizeof(one)) < 0) {
		/* an eventfd write fails only on overflow: it is readable then */
	}
	pthread_join(l->thread, NULL);
	l->running = false;
	if (read(l->stop_fd, &one, sizeof(one)) < 0) {
		/* drained already: nothing to undo for a restart */
	}
}

void listener_close(struct listener *l)
{
	listener_stop(l);
	if (l->fd >= 0)
		close(l->fd);
	if (l->stop_fd >= 0)
		close(l->stop_fd);
	l->fd = l->stop_fd = -1;
}

int thread_spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}
