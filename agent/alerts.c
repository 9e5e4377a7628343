// SPDX-License-Identifier: Apache-2.0
/*
 * The detector keeps one window per (kind, identity) in an open-addressing
 * table of ALERTS_TRACKED slots; a slot whose window has ended is free for
 * reuse, so the table never grows. Raised alerts go to a ring of `keep`.
 */
#include "alerts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "reason.h"

struct window {
	__s64 start_ms; /* 0: free */
	__u32 identity;
	__u32 count;
	__u8 kind;
	bool raised;
};

struct alerts {
	struct alerts_config cfg;
	struct window slots[ALERTS_TRACKED];
	struct alert *ring; /* cfg.keep alerts; the oldest is overwritten */
	size_t n;	    /* alerts in the ring */
	size_t next;	    /* where the next one goes */
	__u64 seq;
	struct alerts_stats stats;
};

int alerts_new(const struct alerts_config *cfg, struct alerts **out)
{
	struct alerts *a;

	if (!cfg->window_s)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->cfg = *cfg;
	if (!a->cfg.keep)
		a->cfg.keep = ALERTS_KEEP_DEFAULT;
	a->ring = calloc(a->cfg.keep, sizeof(*a->ring));
	if (!a->ring) {
		free(a);
		return -ENOMEM;
	}
	*out = a;
	return 0;
}

int alerts_set_config(struct alerts *a, const struct alerts_config *cfg)
{
	if (!cfg->window_s)
		return -EINVAL;
	a->cfg.deny_threshold = cfg->deny_threshold;
	a->cfg.auth_failures = cfg->auth_failures;
	a->cfg.window_s = cfg->window_s;
	return 0;
}

static void alert_release(struct alert *al)
{
	flow_name_put(al->name);
	flow_record_release(&al->flow);
	memset(al, 0, sizeof(*al));
}

void alerts_free(struct alerts *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->cfg.keep; i++)
		alert_release(&a->ring[i]);
	free(a->ring);
	free(a);
}

const char *alert_kind_name(__u8 kind)
{
	static const char *const names[ALERT_KIND_MAX] = {
		[ALERT_DENY_RATE] = "deny_rate",
		[ALERT_SPOOFING] = "spoofing",
		[ALERT_QUARANTINE_HIT] = "quarantine_hit",
		[ALERT_AUTH_FAILURES] = "auth_failures",
	};

	return kind < ALERT_KIND_MAX && names[kind] ? names[kind] : "unknown";
}

/* The window of (kind, identity): found, or a free or ended slot; NULL when all are busy. */
static struct window *window_of(struct alerts *a, __u8 kind, __u32 identity, __s64 now)
{
	__u32 h = (identity * 2654435761u) ^ kind;
	__s64 span = (__s64)a->cfg.window_s * 1000;
	struct window *reuse = NULL;

	for (unsigned int i = 0; i < ALERTS_TRACKED; i++) {
		struct window *w = &a->slots[(h + i) % ALERTS_TRACKED];

		if (w->start_ms && w->kind == kind && w->identity == identity)
			return w;
		if (!w->start_ms) /* never used: the key is not further on */
			return reuse ? reuse : w;
		if (!reuse && now - w->start_ms >= span)
			reuse = w;
	}
	return reuse;
}

/*
 * Counts one drop for (kind, identity); true when it reaches threshold in
 * the window for the first time.
 */
static bool count(struct alerts *a, __u8 kind, __u32 identity, __u32 threshold, __s64 now,
		  __u32 *seen)
{
	struct window *w = window_of(a, kind, identity, now);

	if (!w) {
		a->stats.untracked++;
		return false;
	}
	if (!w->start_ms || w->kind != kind || w->identity != identity ||
	    now - w->start_ms >= (__s64)a->cfg.window_s * 1000)
		*w = (struct window){.start_ms = now ? now : 1, .identity = identity, .kind = kind};
	w->count++;
	*seen = w->count;
	if (w->raised || w->count < threshold)
		return false;
	w->raised = true;
	return true;
}

static void raise_alert(struct alerts *a, __u8 kind, __u32 identity, struct flow_name *name,
			__u32 seen, __u32 threshold, const struct flow_record *r)
{
	struct alert *al = &a->ring[a->next];

	alert_release(al);
	al->seq = ++a->seq;
	al->time_ms = r->time_ms;
	al->kind = kind;
	al->identity = identity;
	al->name = flow_name_get(name);
	al->count = seen;
	al->threshold = threshold;
	al->window_s = a->cfg.window_s;
	flow_record_copy(&al->flow, r);
	a->next = (a->next + 1) % a->cfg.keep;
	if (a->n < a->cfg.keep)
		a->n++;
	a->stats.raised[kind]++;
}

/* The identity a drop counts against: whoever initiated the connection. */
static void initiator(const struct flow_record *r, __u32 *id, struct flow_name **name)
{
	bool peer = r->dir == FG_DIR_INGRESS || r->reason == FG_REASON_DENY_QUARANTINE_PEER;

	if (r->reason == FG_REASON_DENY_QUARANTINE_LOCAL)
		peer = false;
	*id = peer ? r->peer_id : r->local_id;
	*name = peer ? r->peer_name : r->local_name;
}

/* An authentication failure counts against the peer. */
static int feed_auth(struct alerts *a, const struct flow_record *r)
{
	__u32 seen = 0;

	if (!a->cfg.auth_failures ||
	    !count(a, ALERT_AUTH_FAILURES, r->peer_id, a->cfg.auth_failures, r->time_ms, &seen))
		return 0;
	raise_alert(a, ALERT_AUTH_FAILURES, r->peer_id, r->peer_name, seen, a->cfg.auth_failures,
		    r);
	return 1;
}

int alerts_feed(struct alerts *a, const struct flow_record *r)
{
	struct flow_name *name;
	__u32 id, seen = 0;
	int raised = 0;

	if (r->kind == FLOW_AUTH_FAILED)
		return feed_auth(a, r);
	if (r->kind != FLOW_DROP && r->kind != FLOW_QUARANTINE_HIT)
		return 0;
	initiator(r, &id, &name);
	if (r->kind == FLOW_QUARANTINE_HIT &&
	    count(a, ALERT_QUARANTINE_HIT, id, 1, r->time_ms, &seen)) {
		raise_alert(a, ALERT_QUARANTINE_HIT, id, name, seen, 1, r);
		raised++;
	}
	if (r->reason == FG_REASON_DENY_SPOOF &&
	    count(a, ALERT_SPOOFING, id, 1, r->time_ms, &seen)) {
		raise_alert(a, ALERT_SPOOFING, id, name, seen, 1, r);
		raised++;
	}
	if (a->cfg.deny_threshold &&
	    count(a, ALERT_DENY_RATE, id, a->cfg.deny_threshold, r->time_ms, &seen)) {
		raise_alert(a, ALERT_DENY_RATE, id, name, seen, a->cfg.deny_threshold, r);
		raised++;
	}
	return raised;
}

__u64 alerts_last_seq(const struct alerts *a)
{
	return a->seq;
}

void alerts_each(const struct alerts *a, __u64 after, void (*fn)(void *ctx, const struct alert *),
		 void *ctx)
{
	size_t first = (a->next + a->cfg.keep - a->n) % a->cfg.keep;

	for (size_t i = 0; i < a->n; i++) {
		const struct alert *al = &a->ring[(first + i) % a->cfg.keep];

		if (al->seq > after)
			fn(ctx, al);
	}
}

void alerts_stats(const struct alerts *a, struct alerts_stats *out)
{
	*out = a->stats;
}

static const char *describe(const struct alert *al, char *buf, size_t len)
{
	const char *who = al->name ? al->name->s : "an unknown identity";

	switch (al->kind) {
	case ALERT_DENY_RATE:
		snprintf(buf, len, "%s had %u connections or packets denied within %u s", who,
			 al->count, al->window_s);
		break;
	case ALERT_SPOOFING:
		snprintf(buf, len, "%s sent from an address that is not its own", who);
		break;
	case ALERT_AUTH_FAILURES:
		snprintf(buf, len, "authentication with %s failed %u times within %u s", who,
			 al->count, al->window_s);
		break;
	default:
		snprintf(buf, len, "traffic of quarantined %s was dropped (%s)", who,
			 reason_name(al->flow.reason));
		break;
	}
	return buf;
}

struct json_object *alert_to_json(const struct alert *al, const char *instance)
{
	struct json_object *o = json_object_new_object(), *who, *flow;
	char t[32], msg[2304]; /* a SPIFFE ID of at most 2048 bytes and the words */

	if (!o)
		return NULL;
	json_object_object_add(o, "type", json_object_new_string("alert"));
	json_object_object_add(
		o, "time",
		flow_time_format(al->time_ms, t, sizeof(t)) ? NULL : json_object_new_string(t));
	json_object_object_add(o, "alert_id", json_object_new_uint64(al->seq));
	json_object_object_add(o, "instance", instance ? json_object_new_string(instance) : NULL);
	json_object_object_add(o, "kind", json_object_new_string(alert_kind_name(al->kind)));
	who = json_object_new_object();
	json_object_object_add(who, "identity", json_object_new_int64(al->identity));
	json_object_object_add(who, "spiffe_id",
			       al->name ? json_object_new_string(al->name->s) : NULL);
	json_object_object_add(o, "subject", who);
	json_object_object_add(o, "count", json_object_new_int64(al->count));
	json_object_object_add(o, "threshold", json_object_new_int64(al->threshold));
	json_object_object_add(o, "window_s", json_object_new_int64(al->window_s));
	json_object_object_add(o, "message",
			       json_object_new_string(describe(al, msg, sizeof(msg))));
	flow = flow_to_json(&al->flow, NULL);
	json_object_object_del(flow, "instance");
	json_object_object_add(o, "flow", flow);
	return o;
}
