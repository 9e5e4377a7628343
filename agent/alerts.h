/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Local anomaly detection: flow records in, alerts out.
 *
 *   deny_rate       one identity had deny_threshold drops within a window
 *   spoofing        a drop for a spoofed source address (deny_spoof)
 *   quarantine_hit  traffic of (or to) a quarantined identity was dropped
 *   auth_failures   authentication with one peer failed auth_failures times
 *                   within a window (outcomes the agent reports)
 *
 * Drops are counted against the identity that initiated the connection:
 * the local workload for egress, the peer for ingress; unknown peers all
 * count as identity 0. Windows are fixed (they start with the first drop
 * counted) and each kind of alert is raised at most once per identity and
 * window. The detector tracks at most ALERTS_TRACKED identities at once;
 * when all are in their window, drops of new identities are not tracked
 * (counted in alerts_stats.untracked). The last `keep` alerts are kept.
 *
 * Single-threaded: the agent's main thread. Nothing here logs.
 */
#ifndef FEDGUARD_ALERTS_H
#define FEDGUARD_ALERTS_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"

struct json_object;

enum alert_kind {
	ALERT_DENY_RATE = 1,
	ALERT_SPOOFING,
	ALERT_QUARANTINE_HIT,
	ALERT_AUTH_FAILURES,
	ALERT_KIND_MAX,
};

enum {
	ALERTS_TRACKED = 4096,
	ALERTS_DENY_THRESHOLD_DEFAULT = 100,
	ALERTS_WINDOW_S_DEFAULT = 10,
	ALERTS_AUTH_FAILURES_DEFAULT = 5,
	ALERTS_KEEP_DEFAULT = 1024,
};

struct alerts_config {
	unsigned int deny_threshold; /* drops per window that raise deny_rate; 0: off */
	unsigned int auth_failures;  /* failures per window that raise auth_failures; 0: off */
	unsigned int window_s;	     /* at least 1 */
	unsigned int keep;	     /* alerts kept in memory; 0: the default */
};

struct alert {
	__u64 seq; /* increasing from 1 */
	__s64 time_ms;
	__u8 kind;		/* enum alert_kind */
	__u32 identity;		/* the identity the alert is about */
	struct flow_name *name; /* its SPIFFE ID, NULL when unknown */
	__u32 count;		/* drops counted in the window */
	__u32 threshold;
	__u32 window_s;
	struct flow_record flow; /* the drop that raised it (names shared) */
};

struct alerts_stats {
	__u64 raised[ALERT_KIND_MAX];
	__u64 untracked;
};

struct alerts;

int alerts_new(const struct alerts_config *cfg, struct alerts **out);

/*
 * New thresholds and window (keep stays as it was): they apply from the
 * next record on, to the windows already open as well. -EINVAL for a
 * window of 0.
 */
int alerts_set_config(struct alerts *a, const struct alerts_config *cfg);
void alerts_free(struct alerts *a);

/*
 * Counts a record; returns how many alerts it raised (0 to 3). They are
 * the newest of alerts_each(), with seq above alerts_last_seq() before.
 */
int alerts_feed(struct alerts *a, const struct flow_record *r);

/* The seq of the newest alert, 0 before the first. */
__u64 alerts_last_seq(const struct alerts *a);

/* The kept alerts, oldest first: calls fn for each with seq > after. */
void alerts_each(const struct alerts *a, __u64 after, void (*fn)(void *ctx, const struct alert *),
		 void *ctx);

void alerts_stats(const struct alerts *a, struct alerts_stats *out);

const char *alert_kind_name(__u8 kind);

/* The alert as JSON ("type": "alert"); NULL when out of memory. */
struct json_object *alert_to_json(const struct alert *al, const char *instance);

#endif /* FEDGUARD_ALERTS_H */
