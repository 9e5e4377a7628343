/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A TCP listening socket and the thread that accepts on it, for what
 * serves other agents (peer authentication, links, the bundle endpoint): open,
 * start with a callback for each accepted connection, stop. The callback
 * runs on the accepting thread and owns the descriptor it is given
 * (non-blocking, close-on-exec); nothing else is accepted until it returns,
 * and listener_stop() waits for it: one that serves the connection itself
 * (the bundle endpoint) must be cut short by its owner first.
 */
#ifndef FEDGUARD_LISTENER_H
#define FEDGUARD_LISTENER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

typedef void (*listener_accept_fn)(void *ctx, int fd, const struct sockaddr_storage *from,
				   socklen_t from_len);

struct listener {
	int fd;		/* the listening socket, -1 before listener_open() */
	int stop_fd;	/* eventfd: the accepting thread returns once it is readable */
	uint16_t port;	/* the port bound (the one asked for, or the kernel's choice for 0) */
	pthread_t thread;
	bool running;
	listener_accept_fn on_accept;
	void *ctx;
};

/* A listener with nothing open: what listener_close() accepts too. */
void listener_init(struct listener *l);

/*
 * Binds and listens on @addr (SO_REUSEADDR). Returns 0 or -errno, with
 * errno left as the failing call set it, for "%m".
 */
int listener_open(struct listener *l, const struct sockaddr_storage *addr, socklen_t len,
		  int backlog);

/* Starts the accepting thread; 0 or -errno (pthread_create's). */
int listener_start(struct listener *l, listener_accept_fn on_accept, void *ctx);

/* Stops and joins the accepting thread, if it runs; the socket stays open. */
void listener_stop(struct listener *l);

/* Stops, then closes the sockets. */
void listener_close(struct listener *l);

/*
 * pthread_create() of a thread with every signal blocked: signals are the
 * main thread's business, and a write to a connection the peer closed must
 * fail with EPIPE rather than kill the process with SIGPIPE. 0 or an errno.
 */
int thread_spawn(pthread_t *t, void *(*fn)(void *), void *arg);

#endif /* FEDGUARD_LISTENER_H */
