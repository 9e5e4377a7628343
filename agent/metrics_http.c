// SPDX-License-Identifier: Apache-2.0
/*
 * The metrics responder. One epoll set holds the listening socket, a
 * timerfd armed for the earliest connection deadline, and the connections;
 * each connection goes READ (the request head) -> WRITE (the response) ->
 * DRAIN (our side shut down, waiting for the client to close, so that
 * closing never resets a response the client has not read yet).
 */
#define _GNU_SOURCE
#include "metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "addr.h"
#include "cleanup.h"
#include "io.h"
#include "log.h"

enum conn_state {
	CONN_READ,
	CONN_WRITE,
	CONN_DRAIN,
};

enum status_index {
	ST_200,
	ST_400,
	ST_404,
	ST_405,
	ST_431,
	ST_500,
};

struct conn {
	int fd;
	enum conn_state state;
	int64_t deadline_ms;
	char req[METRICS_HTTP_REQUEST_MAX];
	size_t req_len;
	char *out; /* the whole response, out_len bytes */
	size_t out_len;
	size_t sent;
};

struct metrics_http {
	int epoll_fd;
	int listen_fd;
	int timer_fd;
	__u16 port;
	unsigned int timeout_ms;
	unsigned int max_conns;
	metrics_http_body_fn body;
	void *ctx;
	struct conn **conns; /* max_conns slots, NULL when free */
	struct metrics_http_stats stats;
};

int metrics_http_parse_listen(const char *s, struct sockaddr_storage *out, socklen_t *len)
{
	struct sockaddr_storage ss = {};
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *h = s;
	size_t hlen;
	char *end;
	unsigned long port;

	colon = strrchr(s, ':');
	if (!colon || colon == s)
		return -EINVAL;
	hlen = (size_t)(colon - s);
	if (s[0] == '[') {
		if (colon[-1] != ']' || hlen < 3)
			return -EINVAL;
		h = s + 1;
		hlen -= 2;
	}
	if (hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port > 65535 || colon[1] == '-' || colon[1] == '+')
		return -EINVAL;
	if (s[0] != '[' && inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons((__u16)port);
		*len = sizeof(struct sockaddr_in);
	} else if (s[0] == '[' &&
		   inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((__u16)port);
		*len = sizeof(struct sockaddr_in6);
	} else {
		return -EINVAL;
	}
	*out = ss;
	return 0;
}

static int epoll_set(struct metrics_http *h, int op, int fd, __u32 events, void *ptr)
{
	struct epoll_event ev = {.events = events, .data.ptr = ptr};

	return epoll_ctl(h->epoll_fd, op, fd, &ev) < 0 ? -errno : 0;
}

static void conn_close(struct metrics_http *h, unsigned int slot)
{
	struct conn *c = h->conns[slot];

	close(c->fd); /* leaves the epoll set with it */
	free(c->out);
	free(c);
	h->conns[slot] = NULL;
}

/* The timer fires at the earliest deadline; disarmed with no connection. */
static void timer_arm(struct metrics_http *h)
{
	struct itimerspec its = {};
	int64_t first = 0;

	for (unsigned int i = 0; i < h->max_conns; i++) {
		if (h->conns[i] && (!first || h->conns[i]->deadline_ms < first))
			first = h->conns[i]->deadline_ms;
	}
	if (first) {
		int64_t in = first - io_now_ms();

		in = in > 0 ? in : 1;
		its.it_value.tv_sec = in / 1000;
		its.it_value.tv_nsec = (in % 1000) * 1000000L;
	}
	timerfd_settime(h->timer_fd, 0, &its, NULL);
}

static int listen_on(const char *spec, int *fd_out, __u16 *port)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;

	if (metrics_http_parse_listen(spec, &ss, &len))
		return log_error_errno(-EINVAL, "metrics: '%s' is not ADDR:PORT or [ADDR]:PORT",
				       spec);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return log_error_errno(-errno, "metrics: '%s': cannot create a socket", spec);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		return log_error_errno(-errno, "metrics: cannot bind '%s'", spec);
	if (listen(fd, 16) < 0)
		return log_error_errno(-errno, "metrics: cannot listen on '%s'", spec);
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return log_error_errno(-errno, "metrics: '%s': getsockname", spec);
	*port = addr_sockaddr_port(&ss);
	*fd_out = take_fd(&fd);
	return 0;
}

static int setup(struct metrics_http *h, const struct metrics_http_config *cfg)
{
	int r;

	h->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	h->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (h->epoll_fd < 0 || h->timer_fd < 0)
		return log_error_errno(-errno, "metrics: cannot create its epoll set or timer");
	r = listen_on(cfg->listen, &h->listen_fd, &h->port);
	if (r)
		return r;
	r = epoll_set(h, EPOLL_CTL_ADD, h->listen_fd, EPOLLIN, &h->listen_fd);
	if (!r)
		r = epoll_set(h, EPOLL_CTL_ADD, h->timer_fd, EPOLLIN, &h->timer_fd);
	if (r)
		return log_error_errno(r, "metrics: epoll");
	return 0;
}

int metrics_http_start(const struct metrics_http_config *cfg, struct metrics_http **out)
{
	struct metrics_http *h = calloc(1, sizeof(*h));
	int r;

	if (!h)
		return log_error_errno(-ENOMEM, "metrics");
	h->epoll_fd = h->listen_fd = h->timer_fd = -1;
	h->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : METRICS_HTTP_TIMEOUT_MS;
	h->max_conns = cfg->max_conns ? cfg->max_conns : METRICS_HTTP_CONNS_MAX;
	h->body = cfg->body;
	h->ctx = cfg->ctx;
	h->conns = calloc(h->max_conns, sizeof(*h->conns));
	r = h->conns ? setup(h, cfg) : log_error_errno(-ENOMEM, "metrics");
	if (r) {
		metrics_http_free(h);
		return r;
	}
	*out = h;
	return 0;
}

void metrics_http_free(struct metrics_http *h)
{
	if (!h)
		return;
	for (unsigned int i = 0; h->conns && i < h->max_conns; i++) {
		if (h->conns[i])
			conn_close(h, i);
	}
	free(h->conns);
	if (h->listen_fd >= 0)
		close(h->listen_fd);
	if (h->timer_fd >= 0)
		close(h->timer_fd);
	if (h->epoll_fd >= 0)
		close(h->epoll_fd);
	free(h);
}

int metrics_http_fd(const struct metrics_http *h)
{
	return h->epoll_fd;
}

__u16 metrics_http_port(const struct metrics_http *h)
{
	return h->port;
}

void metrics_http_stats(const struct metrics_http *h, struct metrics_http_stats *out)
{
	*out = h->stats;
}

/* --- responses ------------------------------------------------------------ */

static const struct {
	const char *line;
	const char *body;
} statuses[] = {
	[ST_200] = {"200 OK", NULL},
	[ST_400] = {"400 Bad Request", "bad request\n"},
	[ST_404] = {"404 Not Found", "not found: only /metrics is served\n"},
	[ST_405] = {"405 Method Not Allowed", "method not allowed: only GET\n"},
	[ST_431] = {"431 Request Header Fields Too Large", "request head too large\n"},
	[ST_500] = {"500 Internal Server Error", "could not collect the metrics\n"},
};

/* The whole response into c->out: status line, headers, body. NULL out when out of memory. */
static void respond(struct metrics_http *h, struct conn *c, enum status_index st,
		    const struct metrics_buf *body)
{
	const char *text = body ? body->p : statuses[st].body;
	size_t len = body ? body->len : strlen(text);
	char head[256];
	int n;

	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
		     "Connection: close\r\n\r\n",
		     statuses[st].line, st == ST_200 ? METRICS_CONTENT_TYPE : "text/plain", len,
		     st == ST_405 ? "Allow: GET\r\n" : "");
	c->state = CONN_WRITE;
	c->sent = 0;
	c->out = malloc((size_t)n + len);
	if (!c->out)
		return;
	memcpy(c->out, head, (size_t)n);
	if (len)
		memcpy(c->out + n, text, len);
	c->out_len = (size_t)n + len;
	h->stats.responses[st]++;
}

/* The status of a complete request head. */
static enum status_index judge(const char *req, size_t len)
{
	const char *eol = memchr(req, '\n', len), *sp1, *sp2, *q;
	size_t line = eol ? (size_t)(eol - req) : len;
	size_t path_len;

	if (line && req[line - 1] == '\r')
		line--;
	sp1 = memchr(req, ' ', line);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', line - (size_t)(sp1 + 1 - req)) : NULL;
	if (!sp1 || !sp2 || sp2 == sp1 + 1 || memchr(sp2 + 1, ' ', line - (size_t)(sp2 + 1 - req)))
		return ST_400;
	if ((size_t)(req + line - (sp2 + 1)) != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1'))
		return ST_400;
	if (sp1 - req != 3 || strncmp(req, "GET", 3) != 0)
		return ST_405;
	q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
	path_len = (size_t)((q ? q : sp2) - (sp1 + 1));
	if (path_len != 8 || strncmp(sp1 + 1, "/metrics", 8) != 0)
		return ST_404;
	return ST_200;
}

static void answer(struct metrics_http *h, struct conn *c)
{
	struct metrics_buf body = {};
	enum status_index st = judge(c->req, c->req_len);

	if (st == ST_200 && (h->body(h->ctx, &body) < 0 || body.err)) {
		log_debug_errno(body.err ? body.err : -EIO, "metrics: collecting failed");
		st = ST_500;
	}
	respond(h, c, st, st == ST_200 ? &body : NULL);
	metrics_buf_free(&body);
}

/* --- connections ------------------------------------------------------------ */

static bool head_complete(const struct conn *c)
{
	return memmem(c->req, c->req_len, "\r\n\r\n", 4) || memmem(c->req, c->req_len, "\n\n", 2);
}

/* Reads what is there; false when the connection is to be closed. */
static bool conn_read(struct metrics_http *h, struct conn *c)
{
	char scratch[4096];
	ssize_t n;

	for (;;) {
		bool drain = c->state == CONN_DRAIN || c->req_len == sizeof(c->req);
		char *to = drain ? scratch : c->req + c->req_len;
		size_t room = drain ? sizeof(scratch) : sizeof(c->req) - c->req_len;

		n = recv(c->fd, to, room, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN;
		if (n == 0)
			return false; /* the client closed: nothing (more) to answer */
		if (drain)
			continue;
		c->req_len += (size_t)n;
		if (head_complete(c)) {
			answer(h, c);
			return true;
		}
		if (c->req_len == sizeof(c->req)) {
			respond(h, c, ST_431, NULL);
			return true;
		}
	}
}

/* Sends what it can; false when the connection is to be closed. */
static bool conn_write(struct conn *c)
{
	while (c->sent < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->sent, c->out_len - c->sent, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN;
		c->sent += (size_t)n;
	}
	shutdown(c->fd, SHUT_WR);
	c->state = CONN_DRAIN;
	return true;
}

static void conn_event(struct metrics_http *h, unsigned int slot, __u32 events)
{
	struct conn *c = h->conns[slot];
	enum conn_state before = c->state;
	bool keep = true;

	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR) && c->state != CONN_WRITE)
		keep = conn_read(h, c);
	if (keep && c->state == CONN_WRITE)
		keep = c->out ? conn_write(c) : false;
	if (!keep) {
		conn_close(h, slot);
		return;
	}
	if (c->state != before)
		epoll_set(h, EPOLL_CTL_MOD, c->fd, c->state == CONN_WRITE ? EPOLLOUT : EPOLLIN, c);
}

static void accept_all(struct metrics_http *h)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(h->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		unsigned int slot;
		struct conn *c;

		if (fd < 0)
			return;
		for (slot = 0; slot < h->max_conns && h->conns[slot]; slot++)
			;
		c = slot < h->max_conns ? calloc(1, sizeof(*c)) : NULL;
		if (!c || epoll_set(h, EPOLL_CTL_ADD, fd, EPOLLIN, c)) {
			h->stats.refused++;
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->deadline_ms = io_now_ms() + h->timeout_ms;
		h->conns[slot] = c;
	}
}

static void expire(struct metrics_http *h)
{
	int64_t now = io_now_ms();
	__u64 ticks;

	if (read(h->timer_fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		log_debug_errno(-errno, "metrics: timer");
	for (unsigned int i = 0; i < h->max_conns; i++) {
		if (h->conns[i] && h->conns[i]->deadline_ms <= now) {
			if (h->conns[i]->state != CONN_DRAIN)
				h->stats.timeouts++;
			conn_close(h, i);
		}
	}
}

static int slot_of(const struct metrics_http *h, const struct conn *c)
{
	for (unsigned int i = 0; i < h->max_conns; i++) {
		if (h->conns[i] == c)
			return (int)i;
	}
	return -1;
}

void metrics_http_dispatch(struct metrics_http *h)
{
	struct epoll_event ev[16];
	int n = epoll_wait(h->epoll_fd, ev, 16, 0);

	for (int i = 0; i < n; i++) {
		int slot;

		if (ev[i].data.ptr == &h->listen_fd) {
			accept_all(h);
		} else if (ev[i].data.ptr == &h->timer_fd) {
			expire(h);
		} else {
			/* a connection closed earlier in this batch is no longer in a slot */
			slot = slot_of(h, ev[i].data.ptr);
			if (slot >= 0)
				conn_event(h, (unsigned int)slot, ev[i].events);
		}
	}
	timer_arm(h);
}
