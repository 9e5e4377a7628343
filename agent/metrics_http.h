/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal HTTP/1.1 responder for Prometheus scrapes: `GET /metrics`
 * (a query string is ignored), nothing else. Every connection gets one
 * response and is closed (Connection: close). Bounded everywhere: at most
 * max_conns connections at once (more are closed at accept), a request
 * head of at most METRICS_HTTP_REQUEST_MAX bytes, and timeout_ms for a
 * connection's whole life (read, write and the wait for the client to
 * close). Nothing blocks: the caller polls metrics_http_fd() and calls
 * metrics_http_dispatch() when it is readable, from one thread.
 *
 *	200  GET /metrics: the body the callback wrote
 *	400  not an HTTP/1.x request line
 *	404  another path
 *	405  another method (Allow: GET)
 *	431  a request head longer than METRICS_HTTP_REQUEST_MAX
 *	500  the callback failed
 *
 * Conventions: functions return >= 0 or a negative errno; output
 * parameters are written only on success. metrics_http_start() logs the
 * cause of a failure; connections log at debug level only.
 */
#ifndef FEDGUARD_METRICS_HTTP_H
#define FEDGUARD_METRICS_HTTP_H

#include <sys/socket.h>

#include <linux/types.h>

#include "metrics.h"

enum {
	METRICS_HTTP_REQUEST_MAX = 8192,
	METRICS_HTTP_TIMEOUT_MS = 5000,
	METRICS_HTTP_CONNS_MAX = 8,
};

/* Writes the exposition into out; a negative errno gives a 500. */
typedef int (*metrics_http_body_fn)(void *ctx, struct metrics_buf *out);

struct metrics_http_config {
	const char *listen;	 /* "ADDR:PORT" or "[ADDR]:PORT"; port 0: any free port */
	unsigned int timeout_ms; /* 0: METRICS_HTTP_TIMEOUT_MS */
	unsigned int max_conns;	 /* 0: METRICS_HTTP_CONNS_MAX */
	metrics_http_body_fn body;
	void *ctx;
};

struct metrics_http_stats {
	__u64 responses[6]; /* 200, 400, 404, 405, 431, 500 in that order */
	__u64 refused;	    /* closed at accept: max_conns reached */
	__u64 timeouts;
};

struct metrics_http;

/* "ADDR:PORT" or "[ADDR]:PORT" (IPv4 or IPv6, port 0 to 65535); -EINVAL otherwise. */
int metrics_http_parse_listen(const char *s, struct sockaddr_storage *out, socklen_t *len);

int metrics_http_start(const struct metrics_http_config *cfg, struct metrics_http **out);
void metrics_http_free(struct metrics_http *h);

/* An epoll descriptor: readable when connections or a deadline need work. */
int metrics_http_fd(const struct metrics_http *h);

/* Accepts, reads, answers and closes what is ready; never blocks. */
void metrics_http_dispatch(struct metrics_http *h);

/* The port listened on (the one picked when the config said 0). */
__u16 metrics_http_port(const struct metrics_http *h);

void metrics_http_stats(const struct metrics_http *h, struct metrics_http_stats *out);

#endif /* FEDGUARD_METRICS_HTTP_H */
