// SPDX-License-Identifier: Apache-2.0
/*
 * The observer: records from events, the ring, the flow log, alerts and
 * followers. One epoll set holds the metrics responder's own epoll
 * descriptor and the followers' connections; followers are registered for
 * nothing but hang-ups (always reported) until they have output waiting,
 * then for EPOLLOUT as well.
 */
#define _GNU_SOURCE
#include "observe.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "auth.h"
#include "commands.h"
#include "events.h"
#include "fed.h"
#include "log.h"
#include "observe_int.h"

/* Serialised records end with a newline on the wire; JSON text never holds one. */
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* --- followers --------------------------------------------------------------- */

static void follower_free(struct observe_follower *f)
{
	close(f->fd);
	free(f->identity);
	free(f->trust_domain);
	free(f->buf);
	free(f);
}

static void follower_drop(struct observe *o, size_t i, const char *why)
{
	log_debug("observe: follower on fd %d gone: %s", o->followers[i]->fd, why);
	follower_free(o->followers[i]);
	o->followers[i] = NULL;
}

static void follower_want_out(struct observe *o, struct observe_follower *f, bool want)
{
	struct epoll_event ev = {.events = want ? EPOLLOUT : 0, .data.ptr = f};

	if (f->want_out == want)
		return;
	if (epoll_ctl(o->epoll_fd, EPOLL_CTL_MOD, f->fd, &ev) == 0)
		f->want_out = want;
}

/* Sends what is buffered; false when the connection is dead. */
static bool follower_flush(struct observe *o, struct observe_follower *f)
{
	while (f->len) {
		ssize_t n = send(f->fd, f->buf, f->len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return false;
		memmove(f->buf, f->buf + n, f->len - (size_t)n);
		f->len -= (size_t)n;
	}
	follower_want_out(o, f, f->len > 0);
	return true;
}

static bool follower_fits(const struct observe_follower *f, size_t len)
{
	return f->len + len + 1 <= OBSERVE_FOLLOWER_BUFFER;
}

static void follower_put(struct observe_follower *f, const char *line, size_t len)
{
	memcpy(f->buf + f->len, line, len);
	f->buf[f->len + len] = '\n';
	f->len += len + 1;
}

/* Queues a line, after telling of the records lost before it if any. */
static void follower_push(struct observe *o, struct observe_follower *f, const char *line,
			  size_t len)
{
	char notice[64];
	int n;

	if (f->lost) {
		n = snprintf(notice, sizeof(notice), "{\"type\":\"lost\",\"records\":%llu}",
			     (unsigned long long)f->lost);
		if (!follower_fits(f, (size_t)n + len + 1)) {
			f->lost++;
			o->follower_lost++;
			return;
		}
		follower_put(f, notice, (size_t)n);
		f->lost = 0;
	}
	if (!follower_fits(f, len)) {
		f->lost++;
		o->follower_lost++;
		return;
	}
	follower_put(f, line, len);
}

static void followers_send(struct observe *o, bool alerts, const struct flow_record *r,
			   const char *line, size_t len)
{
	for (size_t i = 0; i < OBSERVE_FOLLOWERS_MAX; i++) {
		struct observe_follower *f = o->followers[i];

		if (!f || f->alerts != alerts || (r && !flow_filter_match(&f->filter, r)))
			continue;
		follower_push(o, f, line, len);
		if (!follower_flush(o, f))
			follower_drop(o, i, "send failed");
	}
}

static char *strdup_opt(const char *s, bool *fail)
{
	char *d = s ? strdup(s) : NULL;

	if (s && !d)
		*fail = true;
	return d;
}

static int follower_new(int fd, bool alerts, const struct flow_filter *flt,
			struct observe_follower **out)
{
	struct observe_follower *f = calloc(1, sizeof(*f));
	bool fail = false;

	if (!f)
		return -ENOMEM;
	f->fd = fd;
	f->alerts = alerts;
	f->filter = *flt;
	f->identity = strdup_opt(flt->identity, &fail);
	f->trust_domain = strdup_opt(flt->trust_domain, &fail);
	f->filter.identity = f->identity;
	f->filter.trust_domain = f->trust_domain;
	f->buf = malloc(OBSERVE_FOLLOWER_BUFFER);
	if (fail || !f->buf) {
		f->fd = -1;
		follower_free(f);
		return -ENOMEM;
	}
	*out = f;
	return 0;
}

int observe_follow(struct observe *o, int fd, bool alerts, const struct flow_filter *flt)
{
	struct epoll_event ev = {.events = 0};
	struct observe_follower *f;
	size_t i;
	int r;

	for (i = 0; i < OBSERVE_FOLLOWERS_MAX && o->followers[i]; i++)
		;
	if (i == OBSERVE_FOLLOWERS_MAX)
		return -ENOSPC;
	r = follower_new(fd, alerts, flt, &f);
	if (r)
		return r;
	ev.data.ptr = f;
	if (epoll_ctl(o->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		r = -errno;
		f->fd = -1; /* the caller still owns fd */
		follower_free(f);
		return r;
	}
	o->followers[i] = f;
	log_debug("observe: fd %d follows %s", fd, alerts ? "alerts" : "flows");
	return 0;
}

size_t observe_followers(const struct observe *o)
{
	size_t n = 0;

	for (size_t i = 0; i < OBSERVE_FOLLOWERS_MAX; i++)
		n += o->followers[i] != NULL;
	return n;
}

/* --- records ----------------------------------------------------------------- */

const struct flow_record *observe_ring_at(const struct observe *o, size_t i)
{
	size_t first = (o->ring_next + o->ring_cap - o->ring_n) % o->ring_cap;

	return &o->ring[(first + i) % o->ring_cap];
}

static void ring_push(struct observe *o, const struct flow_record *r)
{
	struct flow_record *slot = &o->ring[o->ring_next];

	flow_record_release(slot);
	flow_record_copy(slot, r);
	o->ring_next = (o->ring_next + 1) % o->ring_cap;
	if (o->ring_n < o->ring_cap)
		o->ring_n++;
}

/* One JSON line to the flow log and to the followers of its kind. */
static void publish(struct observe *o, struct json_object *obj, bool alert,
		    const struct flow_record *r)
{
	const char *line;
	size_t len;

	if (!obj) {
		o->flowlog_json_errors++;
		return;
	}
	line = json_object_to_json_string_length(obj, JSON_FLAGS, &len);
	if (line && o->flowlog)
		flowlog_append(o->flowlog, line, len); /* a full buffer is counted there */
	if (line)
		followers_send(o, alert, alert ? NULL : r, line, len);
	json_object_put(obj);
}

static void publish_alert(void *ctx, const struct alert *al)
{
	struct observe *o = ctx;
	struct json_object *obj = alert_to_json(al, o->instance);

	log_warn("alert %llu %s: %s", (unsigned long long)al->seq, alert_kind_name(al->kind),
		 json_object_get_string(json_object_object_get(obj, "message")));
	if (obj && o->ag) {
		fed_alert_raised(o->ag, obj);	/* to the mesh and the federation */
		if (o->cfg_auto_quarantine & (1u << al->kind) && al->name)
			quarantine_automatic(o->ag, al->name->s, alert_kind_name(al->kind), al->seq);
	}
	publish(o, obj, true, NULL);
}

void observe_remote_alert(struct observe *o, struct json_object *alert)
{
	if (o && alert)
		publish(o, json_object_get(alert), true, NULL);
}

void observe_record(struct observe *o, struct flow_record *r)
{
	__u64 last_alert = alerts_last_seq(o->alerts);

	r->seq = ++o->seq;
	/* a flow ID both agents know (the tunnel's) stands; else the 5-tuple's */
	if (!r->flow_id)
		r->flow_id = r->family ? flow_id(r) : 0;
	o->records[r->kind < FLOW_KIND_MAX ? r->kind : 0]++;
	ring_push(o, r);
	publish(o, flow_to_json(r, o->instance), false, r);
	if (alerts_feed(o->alerts, r) > 0)
		alerts_each(o->alerts, last_alert, publish_alert, o);
}

/* CLOCK_REALTIME minus CLOCK_MONOTONIC, to date events by bpf_ktime_get_ns(). */
static __s64 real_offset_ns(void)
{
	struct timespec real, mono;

	clock_gettime(CLOCK_REALTIME, &real);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	return (real.tv_sec - mono.tv_sec) * 1000000000LL + (real.tv_nsec - mono.tv_nsec);
}

static void on_event(void *ctx, const struct fg_event *e)
{
	struct observe *o = ctx;
	struct flow_record r;

	if (flow_from_event(e, real_offset_ns(), &r))
		return;
	observe_names_resolve(o, &r);
	observe_record(o, &r);
	flow_record_release(&r);
}

void observe_auth_result(struct observe *o, const struct observe_auth *a)
{
	struct flow_record r = {
		.kind = a->ok ? FLOW_AUTH_OK : FLOW_AUTH_FAILED,
		.verdict = a->ok ? FLOW_V_ALLOW : FLOW_V_DENY,
		.reason = FLOW_NO_REASON,
		.dir = a->dir,
		.local_id = a->local_id,
		.peer_id = a->peer_id,
		.elapsed_us = a->elapsed_us,
	};
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	r.time_ms = now.tv_sec * 1000LL + now.tv_nsec / 1000000;
	memcpy(r.peer_node, a->peer_node, 16);
	if (!a->ok && a->why)
		r.why = flow_name_new(a->why);
	observe_names_resolve(o, &r);
	observe_record(o, &r);
	flow_record_release(&r);
}

void observe_tunnel_result(struct observe *o, const struct observe_tunnel *t)
{
	struct flow_record r = {
		.kind = FLOW_TUNNEL,
		.verdict = t->ok ? FLOW_V_ALLOW : FLOW_V_DENY,
		.reason = FLOW_NO_REASON,
		.flow_id = t->flow_id,
		.dir = t->dir,
		.local_id = t->local_id,
		.peer_id = t->peer_id,
		.proto = IPPROTO_TCP,
		.family = t->family,
		.sport = t->sport,
		.dport = t->dport,
	};
	struct timespec now;

	if (!o)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	r.time_ms = now.tv_sec * 1000LL + now.tv_nsec / 1000000;
	memcpy(r.saddr, t->saddr, 16);
	memcpy(r.daddr, t->daddr, 16);
	memcpy(r.peer_node, t->peer_node, 16);
	if (!t->ok && t->why)
		r.why = flow_name_new(t->why);
	observe_names_resolve(o, &r);
	observe_record(o, &r);
	flow_record_release(&r);
}

void observe_auth_outcome(struct observe *o, const struct auth_outcome *out)
{
	static const double bounds[OBSERVE_AUTH_BUCKETS] = OBSERVE_AUTH_BUCKETS_S;
	struct observe_auth a = {
		.local_id = out->key.local_id,
		.peer_id = out->key.peer_id,
		.dir = out->dir,
		.ok = out->ok,
		.elapsed_us = out->elapsed_us,
		.why = out->ok ? NULL : out->why,
	};
	unsigned int role = out->role < OBSERVE_ROLES ? out->role : 0;
	double s = out->elapsed_us / 1e6;

	if (!o)
		return;
	memcpy(a.peer_node, out->key.peer_node, 16);
	o->auth.outcomes[role][out->ok]++;
	if (out->ok) {
		for (unsigned int i = 0; i < OBSERVE_AUTH_BUCKETS; i++) {
			if (s <= bounds[i]) {
				o->auth.buckets[role][i]++;
				break;
			}
		}
		o->auth.sum_s[role] += s;
	}
	observe_auth_result(o, &a);
}

/* --- life ---------------------------------------------------------------------- */

int observe_fd(const struct observe *o)
{
	return o->epoll_fd;
}

void observe_dispatch(struct observe *o)
{
	struct epoll_event ev[16];
	int n = epoll_wait(o->epoll_fd, ev, 16, 0);

	for (int i = 0; i < n; i++) {
		struct observe_follower *f = ev[i].data.ptr;
		size_t j;

		if (!f) {
			metrics_http_dispatch(o->http);
			continue;
		}
		/* a follower dropped earlier in this batch is in no slot any more */
		for (j = 0; j < OBSERVE_FOLLOWERS_MAX && o->followers[j] != f; j++)
			;
		if (j == OBSERVE_FOLLOWERS_MAX)
			continue;
		if (ev[i].events & (EPOLLHUP | EPOLLERR))
			follower_drop(o, j, "closed by the client");
		else if (!follower_flush(o, f))
			follower_drop(o, j, "send failed");
	}
}

static int open_parts(struct observe *o, const struct observe_config *cfg)
{
	struct metrics_http_config mc = {
		.listen = cfg->metrics_listen, .body = observe_metrics, .ctx = o};
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	int r;

	r = alerts_new(&cfg->alerts, &o->alerts);
	if (r)
		return log_error_errno(r, "alerts: window of %u s", cfg->alerts.window_s);
	if (cfg->flowlog.path) {
		r = flowlog_open(&cfg->flowlog, &o->flowlog);
		if (r)
			return r;
	}
	o->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (o->epoll_fd < 0)
		return log_error_errno(-errno, "observe: epoll");
	if (!cfg->metrics_listen)
		return 0;
	r = metrics_http_start(&mc, &o->http);
	if (r)
		return r;
	if (epoll_ctl(o->epoll_fd, EPOLL_CTL_ADD, metrics_http_fd(o->http), &ev) < 0)
		return log_error_errno(-errno, "observe: epoll");
	log_info("metrics: serving GET /metrics on %s (port %u)", cfg->metrics_listen,
		 metrics_http_port(o->http));
	return 0;
}

static int subscribe(struct observe *o)
{
	static const __u8 types[] = {FG_EV_DROP, FG_EV_ALLOW, FG_EV_AUTH_NEEDED};
	int r;

	for (size_t i = 0; i < sizeof(types); i++) {
		r = events_subscribe(o->ag->events, types[i], on_event, o);
		if (r)
			return log_error_errno(r, "observe: cannot subscribe to events of type %u",
					       types[i]);
	}
	return 0;
}

int observe_start(const struct observe_config *cfg, struct agent *ag, struct observe **out)
{
	struct observe *o = calloc(1, sizeof(*o));
	int r;

	if (!o)
		return log_error_errno(-ENOMEM, "observe");
	o->ag = ag;
	o->epoll_fd = -1;
	snprintf(o->instance, sizeof(o->instance), "%s", cfg->instance);
	o->ring_cap = cfg->ring ? cfg->ring : OBSERVE_RING_DEFAULT;
	o->cfg_auto_quarantine = cfg->auto_quarantine;
	o->ring = calloc(o->ring_cap, sizeof(*o->ring));
	r = o->ring ? open_parts(o, cfg) : log_error_errno(-ENOMEM, "observe: ring");
	if (!r)
		r = subscribe(o);
	if (r) {
		observe_free(o);
		return r;
	}
	*out = o;
	return 0;
}

void observe_totals(struct observe *o, struct observe_totals *out)
{
	*out = (struct observe_totals){};
	if (!o)
		return;
	out->drops = o->records[FLOW_DROP];
	out->quarantine_hits = o->records[FLOW_QUARANTINE_HIT];
	out->allows = o->records[FLOW_ALLOW];
	out->auth_ok = o->records[FLOW_AUTH_OK];
	out->auth_failed = o->records[FLOW_AUTH_FAILED];
	out->alerts = alerts_last_seq(o->alerts);
}

int observe_set_alerts(struct observe *o, const struct alerts_config *cfg)
{
	return o ? alerts_set_config(o->alerts, cfg) : -EINVAL;
}

void observe_free(struct observe *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < OBSERVE_FOLLOWERS_MAX; i++) {
		if (o->followers[i])
			follower_free(o->followers[i]);
	}
	for (size_t i = 0; o->ring && i < o->ring_cap; i++)
		flow_record_release(&o->ring[i]);
	free(o->ring);
	metrics_http_free(o->http);
	if (o->epoll_fd >= 0)
		close(o->epoll_fd);
	flowlog_close(o->flowlog);
	alerts_free(o->alerts);
	observe_names_free(&o->names);
	free(o);
}
