// SPDX-License-Identifier: Apache-2.0
/*
 * The link engine: connections and their threads, the accepting thread,
 * outboxes, events and snapshots. What a connection does on the wire is in
 * link_conn.c.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "auth.h"
#include "addr.h"
#include "cleanup.h"
#include "io.h"
#include "link_int.h"
#include "svid.h"

enum {
	FAIL_INTERVAL_MS = 100,	/* failed incoming connections reported: 10 a second, */
	FAIL_BURST = 20,	/* after a burst of 20 */
	LISTEN_BACKLOG = 64,
};

/* --- addresses and frames -------------------------------------------------------------------- */

int link_parse_listen(const char *s, struct sockaddr_storage *out, socklen_t *len)
{
	return auth_parse_listen(s, out, len);
}

const char *link_addr_str(const struct sockaddr *sa, char *buf)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned int port;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		port = ntohs(sin6->sin6_port);
	} else {
		snprintf(buf, LINK_ADDR_MAX, "(no address)");
		return buf;
	}
	snprintf(buf, LINK_ADDR_MAX, "%s port %u", ip, port);
	return buf;
}

/* The same host, whatever the port. */
static bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

struct link_frame *link_frame_new(enum link_frame_type type, const void *payload, size_t len)
{
	struct link_frame *f = malloc(sizeof(*f) + LINK_HEADER + len);
	__u32 n = (__u32)len + 1;

	if (!f)
		return NULL;
	*f = (struct link_frame){ .len = LINK_HEADER + len, .message = type == LINK_FRAME_MESSAGE };
	f->data[0] = (unsigned char)(n >> 24);
	f->data[1] = (unsigned char)(n >> 16);
	f->data[2] = (unsigned char)(n >> 8);
	f->data[3] = (unsigned char)n;
	f->data[4] = (unsigned char)type;
	memcpy(f->data + LINK_HEADER, payload, len);
	return f;
}

static void frames_free(struct link_frame *f)
{
	while (f) {
		struct link_frame *next = f->next;

		free(f);
		f = next;
	}
}

/* --- events ---------------------------------------------------------------------------------- */

void link_event_release(struct link_event *ev)
{
	free(ev->peer_id);
	free(ev->peer_td);
	free(ev->text);
	ev->peer_id = ev->peer_td = ev->text = NULL;
}

/*
 * Makes the eventfd readable. Done when the queue stops being empty, and by
 * a collect that leaves events behind: so the reader always has a reason to
 * come back while events wait. Lock held.
 */
static void event_signal(struct link_engine *e)
{
	__u64 one = 1;

	if (write(e->event_fd, &one, sizeof(one)) < 0) {
		/* the counter is full: the reader is woken anyway */
	}
}

/* Queues ev (taking its strings), dropping the oldest events beyond the bounds. Lock held. */
static void event_push(struct link_engine *e, struct link_event *ev)
{
	size_t max = e->cfg.events_max;

	while (e->ev_n && (e->ev_n == max || e->ev_bytes + ev->len > e->cfg.event_bytes_max)) {
		struct link_event *old = &e->events[e->ev_head];

		e->ev_bytes -= old->len;
		link_event_release(old);
		e->ev_head = (e->ev_head + 1) % max;
		e->ev_n--;
		e->stats.events_dropped++;
	}
	e->events[(e->ev_head + e->ev_n) % max] = *ev;
	e->ev_n++;
	e->ev_bytes += ev->len;
	if (e->ev_n == 1)
		event_signal(e);
}

/* An UP or DOWN event of c, with its peer and text (copied). Lock held. */
static void event_of(struct link_engine *e, struct link_conn *c, enum link_event_type type,
		     const char *text, bool was_up)
{
	struct link_event ev = { .type = type, .dir = c->dir, .id = c->id, .was_up = was_up,
				 .attempts = c->attempts, .addr = c->addr,
				 .addr_len = c->addr_len, .not_after = c->not_after };

	ev.text = strdup(text);
	ev.peer_id = c->peer_id[0] ? strdup(c->peer_id) : NULL;
	ev.peer_td = c->peer_td[0] ? strdup(c->peer_td) : NULL;
	if (!ev.text || (c->peer_id[0] && !ev.peer_id) || (c->peer_td[0] && !ev.peer_td)) {
		link_event_release(&ev);
		e->stats.events_dropped++;
		return;
	}
	ev.len = strlen(ev.text);
	event_push(e, &ev);
}

/* --- connections ----------------------------------------------------------------------------- */

static struct link_conn *conn_new(struct link_engine *e, enum link_dir dir,
				  const struct sockaddr *addr, socklen_t len)
{
	struct link_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->e = e;
	c->dir = dir;
	c->fd = -1;
	c->state = LINK_CONNECTING;
	c->since_ms = io_now_ms();
	memcpy(&c->addr, addr, len);
	c->addr_len = len;
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0) {
		free(c);
		return NULL;
	}
	return c;
}

static void conn_free(struct link_conn *c)
{
	frames_free(c->out_head);
	if (c->fd >= 0)
		close(c->fd);
	close(c->wake_fd);
	free(c->expected);
	free(c);
}

static void conn_wake(struct link_conn *c)
{
	__u64 one = 1;

	if (write(c->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is full: the thread is woken anyway */
	}
}

/* Asks the connection in progress to end, with the first reason given. Lock held. */
__attribute__((format(printf, 2, 3))) static void conn_close_locked(struct link_conn *c,
								   const char *fmt, ...)
{
	va_list ap;

	if (c->close_req)
		return;
	va_start(ap, fmt);
	vsnprintf(c->close_why, sizeof(c->close_why), fmt, ap);
	va_end(ap);
	c->close_req = true;
	conn_wake(c);
}

/* The connection of id that has not ended, or NULL. Lock held. */
static struct link_conn *conn_find(struct link_engine *e, uint64_t id)
{
	for (struct link_conn *c = e->conns; c; c = c->next)
		if (c->id == id && !c->ending)
			return c;
	return NULL;
}

/* Whether trust t has authorities for td. */
static bool td_trusted(struct auth_trust *t, const char *td)
{
	const struct svid_trust *st = t ? auth_trust_svid(t) : NULL;

	for (size_t i = 0; st && i < st->n; i++)
		if (strcmp(st->domains[i].td, td) == 0)
			return sk_X509_num(st->domains[i].roots) > 0;
	return false;
}

/* Joins and frees the connections whose thread has ended. Never with the lock held. */
static void reap(struct link_engine *e)
{
	struct link_conn *dead = NULL, *next;

	pthread_mutex_lock(&e->lock);
	for (struct link_conn **p = &e->conns; *p;) {
		struct link_conn *c = *p;

		if (!c->exited) {
			p = &c->next;
			continue;
		}
		*p = c->next;
		c->next = dead;
		dead = c;
	}
	pthread_mutex_unlock(&e->lock);
	for (; dead; dead = next) {
		next = dead->next;
		pthread_join(dead->thread, NULL);
		conn_free(dead);
	}
}

/* --- what a connection's thread asks of the engine ------------------------------------------- */

bool link_conn_begin(struct link_conn *c, struct auth_trust **trust)
{
	struct link_engine *e = c->e;
	bool go;

	pthread_mutex_lock(&e->lock);
	go = !c->ending && !e->stopping;
	if (go && c->dir == LINK_OUT)
		c->close_req = false;	/* a request for the previous connection */
	*trust = go ? auth_trust_get(e->trust) : NULL;
	pthread_mutex_unlock(&e->lock);
	return go;
}

int link_conn_verified(struct link_conn *c, const char *spiffe_id, const char *td, char *why,
		       size_t why_len)
{
	struct link_engine *e = c->e;
	int r = 0;

	pthread_mutex_lock(&e->lock);
	snprintf(c->peer_id, sizeof(c->peer_id), "%s", spiffe_id);
	snprintf(c->peer_td, sizeof(c->peer_td), "%s", td);
	if (!td_trusted(e->trust, td)) {
		snprintf(why, why_len, "the trust domain '%s' is no longer trusted", td);
		r = -ECANCELED;
	} else if (c->close_req) {
		snprintf(why, why_len, "%s", c->close_why);
		r = -ECANCELED;
	}
	pthread_mutex_unlock(&e->lock);
	return r;
}

void link_conn_up(struct link_conn *c, char *hello, time_t not_after)
{
	struct link_engine *e = c->e;
	struct link_event ev = { .type = LINK_EV_UP, .dir = c->dir, .id = c->id, .text = hello,
				 .len = strlen(hello), .addr = c->addr, .addr_len = c->addr_len,
				 .not_after = not_after };

	pthread_mutex_lock(&e->lock);
	c->state = LINK_UP;
	c->since_ms = io_now_ms();
	c->not_after = not_after;
	c->attempts = 0;
	c->reported[0] = 0;
	ev.peer_id = strdup(c->peer_id);
	ev.peer_td = strdup(c->peer_td);
	if (ev.peer_id && ev.peer_td) {
		event_push(e, &ev);
	} else {
		link_event_release(&ev);
		e->stats.events_dropped++;
	}
	pthread_mutex_unlock(&e->lock);
}

void link_conn_message(struct link_conn *c, char *text, size_t len)
{
	struct link_engine *e = c->e;
	struct link_event ev = { .type = LINK_EV_MESSAGE, .dir = c->dir, .id = c->id,
				 .text = text, .len = len };

	pthread_mutex_lock(&e->lock);
	c->msgs_in++;
	/* who sent it: the proven peer (a message comes only after the hellos) */
	ev.peer_id = c->peer_id[0] ? strdup(c->peer_id) : NULL;
	ev.peer_td = c->peer_td[0] ? strdup(c->peer_td) : NULL;
	event_push(e, &ev);
	pthread_mutex_unlock(&e->lock);
}

void link_conn_received(struct link_conn *c, size_t bytes, int64_t now_ms)
{
	pthread_mutex_lock(&c->e->lock);
	c->bytes_in += bytes;
	c->last_rx_ms = now_ms;
	pthread_mutex_unlock(&c->e->lock);
}

size_t link_conn_take(struct link_conn *c, unsigned char *buf, size_t max,
		      struct link_frame **big, unsigned int *msgs)
{
	struct link_frame *f, *copied = NULL;
	size_t used = 0;

	*big = NULL;
	*msgs = 0;
	pthread_mutex_lock(&c->e->lock);
	f = c->out_head;
	if (f && f->len > max) {
		c->out_head = f->next;
		f->next = NULL;
		*big = f;
		*msgs = f->message;
		used = f->len;
	}
	while (!*big && (f = c->out_head) && used + f->len <= max) {
		memcpy(buf + used, f->data, f->len);
		used += f->len;
		*msgs += f->message;
		c->out_head = f->next;
		f->next = copied;
		copied = f;
	}
	if (!c->out_head)
		c->out_tail = NULL;
	pthread_mutex_unlock(&c->e->lock);
	frames_free(copied);
	return used;
}

void link_conn_written(struct link_conn *c, size_t frames, unsigned int msgs, size_t wire)
{
	pthread_mutex_lock(&c->e->lock);
	c->out_bytes -= frames;
	c->msgs_out += msgs;
	c->bytes_out += wire;
	pthread_mutex_unlock(&c->e->lock);
}

bool link_conn_close_asked(struct link_conn *c, char *why, size_t why_len)
{
	__u64 count;
	bool asked;

	if (read(c->wake_fd, &count, sizeof(count)) < 0) {
		/* nothing signalled */
	}
	pthread_mutex_lock(&c->e->lock);
	asked = c->close_req;
	if (asked)
		snprintf(why, why_len, "%s", c->close_why);
	pthread_mutex_unlock(&c->e->lock);
	return asked;
}

/* --- a connection's thread ------------------------------------------------------------------- */

/* A failed incoming connection may be reported: 10 a second after a burst of 20. Lock held. */
static bool incoming_report_due(struct link_engine *e, int64_t now)
{
	int64_t tat = e->fail_tokens_ms > now ? e->fail_tokens_ms : now;

	if (tat - now > FAIL_BURST * FAIL_INTERVAL_MS)
		return false;
	e->fail_tokens_ms = tat + FAIL_INTERVAL_MS;
	return true;
}

/* A dial's failure is reported when its cause is new, or every LINK_FAIL_REPORT_MS. Lock held. */
static bool dial_report_due(struct link_conn *c, const char *why, int64_t now)
{
	if (strcmp(c->reported, why) == 0 && now - c->reported_ms < LINK_FAIL_REPORT_MS)
		return false;
	snprintf(c->reported, sizeof(c->reported), "%s", why);
	c->reported_ms = now;
	return true;
}

/* Reports a failed attempt, rate limited. Lock held. */
static void report_failure(struct link_engine *e, struct link_conn *c, const char *why)
{
	int64_t now = io_now_ms();
	bool due = c->dir == LINK_OUT ? dial_report_due(c, why, now) : incoming_report_due(e, now);

	if (due)
		event_of(e, c, LINK_EV_DOWN, why, false);
	else
		e->stats.fail_suppressed++;
}

/*
 * Records the end of an attempt and reports it; returns whether the dial
 * goes on. *failures counts the attempts that failed in a row.
 */
static bool conn_ended(struct link_conn *c, const struct link_end *end, unsigned int *failures)
{
	struct link_engine *e = c->e;
	struct link_frame *dropped;
	bool go_on;

	pthread_mutex_lock(&e->lock);
	c->state = LINK_CONNECTING;
	c->since_ms = io_now_ms();
	dropped = c->out_head;
	c->out_head = c->out_tail = NULL;
	c->out_bytes = 0;
	*failures = end->was_up ? 0 : *failures + 1;
	if (end->why[0])
		snprintf(c->last_error, sizeof(c->last_error), "%s", end->why);
	if (end->was_up) {
		c->attempts = 0;
		event_of(e, c, LINK_EV_DOWN, end->why, true);
	} else if (end->why[0] && !c->ending && !e->stopping) {
		c->attempts = *failures;
		report_failure(e, c, end->why);
	}
	if (c->dir == LINK_IN)
		c->ending = true;
	go_on = !c->ending && !e->stopping;
	pthread_mutex_unlock(&e->lock);
	frames_free(dropped);
	return go_on;
}

static bool conn_is_ending(struct link_conn *c)
{
	__u64 count;
	bool ending;

	if (read(c->wake_fd, &count, sizeof(count)) < 0) {
		/* nothing signalled */
	}
	pthread_mutex_lock(&c->e->lock);
	ending = c->ending || c->e->stopping;
	pthread_mutex_unlock(&c->e->lock);
	return ending;
}

/* Waits ms before the next attempt: true when the dial ends meanwhile. */
static bool conn_sleep(struct link_conn *c, unsigned int ms)
{
	struct pollfd p = { .fd = c->wake_fd, .events = POLLIN };
	int64_t until = io_now_ms() + ms;

	for (;;) {
		int64_t left = until - io_now_ms();

		if (conn_is_ending(c))
			return true;
		if (left <= 0)
			return false;
		poll(&p, 1, (int)left);
	}
}

/* retry_min_ms doubled per failure up to retry_max_ms, give or take a quarter. */
static unsigned int retry_delay(const struct link_config *cfg, unsigned int failures)
{
	unsigned int ms = cfg->retry_min_ms;

	for (unsigned int i = 1; i < failures && ms < cfg->retry_max_ms; i++)
		ms *= 2;
	if (ms > cfg->retry_max_ms)
		ms = cfg->retry_max_ms;
	return ms / 4 * 3 + arc4random_uniform(ms / 2 + 1);
}

/*
 * A connection's thread: one attempt for an incoming connection; for a
 * dial, attempts until it is undialed, each after a backoff (none after a
 * planned end: SVIDs renewed or expiring).
 */
static void *conn_thread(void *arg)
{
	struct link_conn *c = arg;
	struct link_end end;
	unsigned int failures = 0;

	for (;;) {
		link_conn_run(c, &end);
		if (!conn_ended(c, &end, &failures))
			break;
		unsigned int delay = retry_delay(&c->e->cfg, failures ? failures : 1);

		if (conn_sleep(c, end.redial ? 0 : delay))
			break;
	}
	pthread_mutex_lock(&c->e->lock);
	c->exited = true;
	c->e->n_conns--;
	pthread_mutex_unlock(&c->e->lock);
	return NULL;
}

/* Gives c an id, adds it to the engine and starts its thread: 0 or -errno. Lock held. */
static int conn_start(struct link_engine *e, struct link_conn *c)
{
	int r;

	c->id = ++e->last_id;
	c->next = e->conns;
	e->conns = c;
	e->n_conns++;
	r = thread_spawn(&c->thread, conn_thread, c);
	if (r) {
		e->conns = c->next;
		e->n_conns--;
		return -r;
	}
	return 0;
}

/* --- accepting ------------------------------------------------------------------------------- */

/* Incoming connections from the host of from whose thread runs. Lock held. */
static unsigned int from_count(struct link_engine *e, const struct sockaddr_storage *from)
{
	unsigned int n = 0;

	for (struct link_conn *c = e->conns; c; c = c->next)
		n += c->dir == LINK_IN && !c->exited && same_host(&c->addr, from);
	return n;
}

/* Starts a thread for an accepted connection, or closes it at once beyond the limits. */
static void accept_conn(struct link_engine *e, int fd, const struct sockaddr_storage *from,
			socklen_t len)
{
	struct link_conn *c;
	bool taken = false;

	reap(e);	/* also when the caller collects nothing for a while */
	c = conn_new(e, LINK_IN, (const struct sockaddr *)from, len);
	pthread_mutex_lock(&e->lock);
	if (c && !e->stopping && e->n_conns < e->cfg.conns_max &&
	    from_count(e, from) < e->cfg.in_per_addr) {
		c->fd = fd;
		taken = conn_start(e, c) == 0;
		if (!taken)
			c->fd = -1;
	}
	if (!taken)
		e->stats.refused++;
	pthread_mutex_unlock(&e->lock);
	if (!taken) {
		close(fd);
		if (c)
			conn_free(c);
	}
}

static void on_accept(void *ctx, int fd, const struct sockaddr_storage *from, socklen_t len)
{
	accept_conn(ctx, fd, from, len);
}

/* --- the engine ------------------------------------------------------------------------------ */

static bool is_inet(const struct sockaddr_storage *ss, socklen_t len)
{
	return (ss->ss_family == AF_INET && len == sizeof(struct sockaddr_in)) ||
	       (ss->ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6));
}

#define DEFAULT(field, value)                                                                      \
	do {                                                                                       \
		if (!cfg->field)                                                                   \
			cfg->field = (value);                                                      \
	} while (0)

static void config_defaults(struct link_config *cfg)
{
	DEFAULT(heartbeat_ms, LINK_HEARTBEAT_MS_DEFAULT);
	DEFAULT(dead_ms, LINK_DEAD_MS_DEFAULT);
	DEFAULT(handshake_ms, LINK_HANDSHAKE_MS_DEFAULT);
	DEFAULT(retry_min_ms, LINK_RETRY_MIN_MS_DEFAULT);
	DEFAULT(retry_max_ms, LINK_RETRY_MAX_MS_DEFAULT);
	DEFAULT(frame_max, LINK_FRAME_MAX_DEFAULT);
	DEFAULT(outbox_max, LINK_OUTBOX_MAX_DEFAULT);
	DEFAULT(conns_max, LINK_CONNS_MAX_DEFAULT);
	DEFAULT(in_per_addr, LINK_IN_PER_ADDR_DEFAULT);
	DEFAULT(events_max, LINK_EVENTS_MAX_DEFAULT);
	DEFAULT(event_bytes_max, LINK_EVENT_BYTES_DEFAULT);
}

#undef DEFAULT

/* Why cfg (with its defaults) cannot run, or NULL. */
static const char *config_error(const struct link_config *cfg)
{
	if (!cfg->svids)
		return "no SVID store";
	if (cfg->listen.ss_family != AF_UNSPEC && !is_inet(&cfg->listen, cfg->listen_len))
		return "the listen address is neither IPv4 nor IPv6";
	if (cfg->listen.ss_family != AF_UNSPEC && !cfg->admit)
		return "an engine that listens needs an admit callback";
	if (cfg->source.ss_family != AF_UNSPEC && !is_inet(&cfg->source, cfg->source_len))
		return "the source address is neither IPv4 nor IPv6";
	if (cfg->source.ss_family != AF_UNSPEC && addr_sockaddr_port(&cfg->source))
		return "the source address has a port";
	if (cfg->dead_ms <= cfg->heartbeat_ms)
		return "the dead time is not longer than the heartbeat interval";
	if (cfg->retry_max_ms < cfg->retry_min_ms)
		return "the longest retry delay is shorter than the first";
	if (cfg->frame_max > LINK_FRAME_MAX_LIMIT)
		return "the frame limit is over LINK_FRAME_MAX_LIMIT";
	if (cfg->outbox_max < LINK_HEADER + cfg->frame_max)
		return "the outbox limit holds no frame of the frame limit";
	if (cfg->event_bytes_max < cfg->frame_max)
		return "the event bytes limit holds no frame of the frame limit";
	return NULL;
}

int link_engine_new(const struct link_config *cfg, struct link_engine **out, char *why,
		    size_t why_len)
{
	struct link_engine *e;
	const char *bad;
	int r;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	config_defaults(&e->cfg);
	bad = config_error(&e->cfg);
	if (bad) {
		snprintf(why, why_len, "link configuration: %s", bad);
		free(e);
		return -EINVAL;
	}
	listener_init(&e->listen);
	pthread_mutex_init(&e->lock, NULL);
	e->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	e->events = calloc(e->cfg.events_max, sizeof(*e->events));
	r = e->event_fd < 0 ? -errno : e->events ? 0 : -ENOMEM;
	if (!r)
		r = link_tls_init(e, why, why_len);
	else
		snprintf(why, why_len, "%s", strerror(-r));
	if (r) {
		link_engine_free(e);
		return r;
	}
	*out = e;
	return 0;
}

int link_engine_start(struct link_engine *e, char *why, size_t why_len)
{
	int r;

	char addr[LINK_ADDR_MAX];

	if (e->listen.running)
		return -EALREADY;
	if (e->cfg.listen.ss_family == AF_UNSPEC)
		return 0;
	if (e->listen.fd < 0) {
		r = listener_open(&e->listen, &e->cfg.listen, e->cfg.listen_len, LISTEN_BACKLOG);
		if (r) {
			snprintf(why, why_len, "listening on %s: %s",
				 link_addr_str((const struct sockaddr *)&e->cfg.listen, addr),
				 strerror(-r));
			return r;
		}
	}
	r = listener_start(&e->listen, on_accept, e);
	if (r)
		snprintf(why, why_len, "no accepting thread: %s", strerror(-r));
	return r;
}

uint16_t link_engine_port(const struct link_engine *e)
{
	return e->listen.port;
}

/* Stops the accepting thread, then every connection, and joins them all. */
static void engine_stop(struct link_engine *e)
{
	listener_stop(&e->listen);
	pthread_mutex_lock(&e->lock);
	e->stopping = true;
	for (struct link_conn *c = e->conns; c; c = c->next) {
		conn_close_locked(c, "the engine stops");
		conn_wake(c);	/* also a dial between attempts, or one closing already */
	}
	pthread_mutex_unlock(&e->lock);
	/* nothing adds connections any more, and nobody else reaps */
	while (e->conns) {
		struct link_conn *c = e->conns;

		pthread_join(c->thread, NULL);
		e->conns = c->next;
		conn_free(c);
	}
}

void link_engine_free(struct link_engine *e)
{
	if (!e)
		return;
	engine_stop(e);
	link_tls_free(e);
	for (size_t i = 0; i < e->ev_n; i++)
		link_event_release(&e->events[(e->ev_head + i) % e->cfg.events_max]);
	free(e->events);
	auth_trust_put(e->trust);
	listener_close(&e->listen);
	if (e->event_fd >= 0)
		close(e->event_fd);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

/*
 * Asks every connection of a peer of trust domain td (or, td NULL, of one
 * that t does not trust) to close with why; returns how many were up.
 * Incoming connections know their peer's trust domain once its chain
 * validated, dials from the start; one that validates afterwards checks
 * the trust again (link_conn_verified()). Lock held.
 */
static int close_tds(struct link_engine *e, const char *td, struct auth_trust *t, const char *why)
{
	int closed = 0;

	for (struct link_conn *c = e->conns; c; c = c->next) {
		if (c->ending || !c->peer_td[0])
			continue;
		if (td ? strcmp(c->peer_td, td) != 0 : td_trusted(t, c->peer_td))
			continue;
		if (why)
			conn_close_locked(c, "%s", why);
		else
			conn_close_locked(c, "the trust domain '%s' is %s", c->peer_td,
					  td ? "revoked" : "no longer trusted");
		closed += c->state == LINK_UP;
	}
	return closed;
}

int link_engine_set_trust(struct link_engine *e, struct auth_trust *t)
{
	struct auth_trust *old;
	int closed;

	pthread_mutex_lock(&e->lock);
	old = e->trust;
	e->trust = t;
	closed = close_tds(e, NULL, t, NULL);
	pthread_mutex_unlock(&e->lock);
	auth_trust_put(old);
	return closed;
}

int link_close_td(struct link_engine *e, const char *td, const char *why)
{
	int closed;

	if (!td)
		return -EINVAL;
	pthread_mutex_lock(&e->lock);
	closed = close_tds(e, td, NULL, why);
	pthread_mutex_unlock(&e->lock);
	return closed;
}

/* --- dials ----------------------------------------------------------------------------------- */

int link_dial(struct link_engine *e, const char *addr, const char *expected_id, uint64_t *id)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (link_parse_listen(addr, &ss, &len))
		return -EINVAL;
	return link_dial_addr(e, (const struct sockaddr *)&ss, len, expected_id, id);
}

int link_dial_addr(struct link_engine *e, const struct sockaddr *addr, socklen_t addr_len,
		   const char *expected_id, uint64_t *id)
{
	struct sockaddr_storage ss = {};
	struct spiffe_id sid;
	struct link_conn *c;
	int r;

	if (!addr || addr_len > sizeof(ss) || !expected_id)
		return -EINVAL;
	memcpy(&ss, addr, addr_len);
	if (!is_inet(&ss, addr_len) || !addr_sockaddr_port(&ss) ||
	    spiffe_check(expected_id, &sid, NULL) != SPIFFE_OK || !sid.path_len)
		return -EINVAL;
	reap(e);
	c = conn_new(e, LINK_OUT, addr, addr_len);
	if (!c || !(c->expected = strdup(expected_id))) {
		if (c)
			conn_free(c);
		return -ENOMEM;
	}
	snprintf(c->peer_id, sizeof(c->peer_id), "%s", expected_id);
	snprintf(c->peer_td, sizeof(c->peer_td), "%.*s", (int)sid.td_len, sid.td);
	pthread_mutex_lock(&e->lock);
	r = e->stopping ? -ESHUTDOWN : e->n_conns >= e->cfg.conns_max ? -ENOSPC : conn_start(e, c);
	if (!r)
		*id = c->id;
	pthread_mutex_unlock(&e->lock);
	if (r)
		conn_free(c);
	return r;
}

int link_undial(struct link_engine *e, uint64_t id)
{
	struct link_conn *c;
	int r = -ENOENT;

	pthread_mutex_lock(&e->lock);
	c = conn_find(e, id);
	if (c && c->dir == LINK_OUT) {
		c->ending = true;
		conn_close_locked(c, "undialed");
		conn_wake(c);	/* a dial between attempts has no close to see */
		r = 0;
	}
	pthread_mutex_unlock(&e->lock);
	return r;
}

/* --- sending --------------------------------------------------------------------------------- */

/* Queues f to c, or says why not. Lock held. */
static int enqueue(struct link_engine *e, struct link_conn *c, struct link_frame *f)
{
	if (c->state != LINK_UP || c->close_req)
		return -ENOTCONN;
	if (c->out_bytes + f->len > e->cfg.outbox_max) {
		conn_close_locked(c, "outbox full: %zu bytes queued, the limit is %zu",
				  c->out_bytes, e->cfg.outbox_max);
		return -ENOBUFS;
	}
	if (c->out_tail)
		c->out_tail->next = f;
	else
		c->out_head = f;
	c->out_tail = f;
	c->out_bytes += f->len;
	conn_wake(c);
	return 0;
}

int link_send(struct link_engine *e, uint64_t id, const char *msg, size_t len)
{
	struct link_frame *f;
	struct link_conn *c;
	int r;

	if (!msg || !len)
		return -EINVAL;
	if (len > e->cfg.frame_max)
		return -EMSGSIZE;
	f = link_frame_new(LINK_FRAME_MESSAGE, msg, len);	/* copied before the lock */
	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&e->lock);
	c = conn_find(e, id);
	r = c ? enqueue(e, c, f) : -ENOENT;
	pthread_mutex_unlock(&e->lock);
	if (r)
		free(f);
	return r;
}

int link_broadcast(struct link_engine *e, enum link_dir dir, const char *msg, size_t len)
{
	_cleanup_free_ uint64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int sent = 0;

	pthread_mutex_lock(&e->lock);
	for (struct link_conn *c = e->conns; c; c = c->next)
		cap += c->state == LINK_UP;
	ids = cap ? calloc(cap, sizeof(*ids)) : NULL;
	for (struct link_conn *c = e->conns; ids && c; c = c->next)
		if (c->state == LINK_UP && !c->ending && (!dir || c->dir == dir))
			ids[n++] = c->id;
	pthread_mutex_unlock(&e->lock);
	if (cap && !ids)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		sent += link_send(e, ids[i], msg, len) == 0;
	return sent;
}

int link_close(struct link_engine *e, uint64_t id, const char *why)
{
	struct link_conn *c;

	pthread_mutex_lock(&e->lock);
	c = conn_find(e, id);
	if (c)
		conn_close_locked(c, "%s", why ? why : "closed by this side");
	pthread_mutex_unlock(&e->lock);
	return c ? 0 : -ENOENT;
}

/* --- events and snapshots -------------------------------------------------------------------- */

int link_engine_fd(const struct link_engine *e)
{
	return e->event_fd;
}

size_t link_engine_collect(struct link_engine *e, struct link_event *out, size_t max)
{
	__u64 count;
	size_t n = 0;

	if (read(e->event_fd, &count, sizeof(count)) < 0) {
		/* nothing signalled: collect what is there anyway */
	}
	reap(e);
	pthread_mutex_lock(&e->lock);
	while (n < max && e->ev_n) {
		out[n++] = e->events[e->ev_head];
		e->ev_bytes -= e->events[e->ev_head].len;
		e->ev_head = (e->ev_head + 1) % e->cfg.events_max;
		e->ev_n--;
	}
	if (e->ev_n)	/* more than max: stay readable */
		event_signal(e);
	pthread_mutex_unlock(&e->lock);
	return n;
}

static void info_of(const struct link_conn *c, struct link_info *i)
{
	*i = (struct link_info){ .id = c->id, .dir = c->dir, .state = c->state,
				 .addr = c->addr, .addr_len = c->addr_len,
				 .since_ms = c->since_ms, .last_rx_ms = c->last_rx_ms,
				 .bytes_in = c->bytes_in, .bytes_out = c->bytes_out,
				 .msgs_in = c->msgs_in, .msgs_out = c->msgs_out,
				 .attempts = c->attempts };
	if (c->state == LINK_UP)
		i->not_after = c->not_after;
	snprintf(i->peer_id, sizeof(i->peer_id), "%s", c->peer_id);
	snprintf(i->peer_td, sizeof(i->peer_td), "%s", c->peer_td);
	snprintf(i->last_error, sizeof(i->last_error), "%s", c->last_error);
}

static int cmp_info(const void *a, const void *b)
{
	uint64_t x = ((const struct link_info *)a)->id, y = ((const struct link_info *)b)->id;

	return x < y ? -1 : x > y;
}

int link_list(struct link_engine *e, struct link_info **out, size_t *n)
{
	struct link_info *list;
	size_t count = 0, i = 0;

	reap(e);
	pthread_mutex_lock(&e->lock);
	for (struct link_conn *c = e->conns; c; c = c->next)
		count += !c->ending;
	list = calloc(count ? count : 1, sizeof(*list));
	for (struct link_conn *c = e->conns; list && c; c = c->next)
		if (!c->ending)
			info_of(c, &list[i++]);
	pthread_mutex_unlock(&e->lock);
	if (!list)
		return -ENOMEM;
	qsort(list, count, sizeof(*list), cmp_info);
	*out = list;
	*n = count;
	return 0;
}

void link_engine_stats(struct link_engine *e, struct link_stats *out)
{
	pthread_mutex_lock(&e->lock);
	*out = e->stats;
	pthread_mutex_unlock(&e->lock);
}
