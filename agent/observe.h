/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the agent sees of the datapath and tells operators: the events of
 * fg_events (and the agent's own, such as authentication outcomes) become
 * flow records (flow.h) that go to
 *
 *   - a ring of the last records in memory, for `fedguardctl observe`;
 *   - the flow log file (flowlog.h), with alerts as records of their own;
 *   - the alert detector (alerts.h);
 *   - followers: control connections handed over by `observe --follow`
 *     and `alerts --follow`, written without blocking; a follower too slow
 *     to read loses records and is told how many;
 *
 * and the Prometheus endpoint (--metrics-listen) reports counters of all
 * of it. Everything runs on the agent's main thread: the main loop polls
 * observe_fd() and calls observe_dispatch(); events arrive through the
 * subscriptions made on the agent's events reader. docs/observability.md
 * is the operator's view.
 *
 * Conventions: functions return >= 0 or a negative errno; output
 * parameters are written only on success. observe_start() logs the cause
 * of a failure; the rest logs at debug level, and alerts at warning level.
 */
#ifndef FEDGUARD_OBSERVE_H
#define FEDGUARD_OBSERVE_H

#include <stdbool.h>

#include <json-c/json.h>
#include <linux/types.h>

#include "alerts.h"
#include "control.h"
#include "flowlog.h"
#include "metrics.h"

struct agent;

enum {
	OBSERVE_RING_DEFAULT = 8192, /* records kept for `observe` */
	OBSERVE_FOLLOWERS_MAX = 16,
	OBSERVE_FOLLOWER_BUFFER = 256 * 1024, /* bytes waiting for one slow follower */
	OBSERVE_LAST_DEFAULT = 20,	      /* records `observe` returns without --last */
};

struct observe_config {
	const char *instance;
	struct flowlog_config flowlog; /* path NULL: no flow log */
	unsigned int ring;	       /* 0: OBSERVE_RING_DEFAULT */
	const char *metrics_listen;    /* NULL: no metrics endpoint */
	struct alerts_config alerts;
	unsigned int auto_quarantine;  /* 1 << enum alert_kind: quarantine the alert's subject */
};

struct observe;

/* What a node shares with its peers, in numbers only: records by kind since the start. */
struct observe_totals {
	__u64 drops, quarantine_hits, allows, auth_ok, auth_failed, alerts;
};

void observe_totals(struct observe *o, struct observe_totals *out);

/* An alert another agent sent ({"type": "remote_alert", ...}): to the flow log and followers. */
void observe_remote_alert(struct observe *o, struct json_object *alert);

/*
 * Subscribes to the agent's events, opens the flow log, listens for
 * metrics scrapes. The agent's datapath, events reader and state must be
 * set up.
 */
int observe_start(const struct observe_config *cfg, struct agent *ag, struct observe **out);

/* The alert detector's thresholds and window, changed at run time (SIGHUP). */
int observe_set_alerts(struct observe *o, const struct alerts_config *cfg);

/* Writes out the flow log, closes followers and the metrics endpoint. */
void observe_free(struct observe *o);

/* Readable (an epoll descriptor) when followers or scrapes need work. */
int observe_fd(const struct observe *o);

/* Serves what is ready; never blocks. */
void observe_dispatch(struct observe *o);

/*
 * The outcome of one peer authentication, as the agent's peer
 * authentication reports it: becomes an auth_ok or auth_failed record
 * (flow log, observe, followers) and counts towards the auth_failures
 * alert. why (may be NULL) is copied.
 */
struct observe_auth {
	__u32 local_id;	    /* this side's identity */
	__u32 peer_id;	    /* the other side's */
	__u8 peer_node[16]; /* the other side's node, IPv4-mapped for v4 */
	__u8 dir;	    /* enum fg_direction: FG_DIR_EGRESS when local initiates */
	bool ok;
	__u32 elapsed_us;
	const char *why; /* the cause, when not ok */
};

void observe_auth_result(struct observe *o, const struct observe_auth *a);

/*
 * A flow of the encrypted transport as the agent's tunnel reports it: a
 * record of kind tunnel, allow when it relays, deny with why when it was
 * refused. flow_id is the ID both agents of the flow record (the source's
 * agent makes it and sends it along); the addresses and ports are the leg
 * on this node (workload -> original destination at the source, agent ->
 * workload at the destination). Does nothing when o is NULL.
 */
struct observe_tunnel {
	__u64 flow_id;
	__u32 local_id;	    /* this node's workload */
	__u32 peer_id;	    /* the other node's */
	__u8 dir;	    /* FG_DIR_EGRESS when the local workload calls */
	bool ok;
	__u8 family;	    /* enum fg_family of the leg */
	__u8 saddr[16];	    /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u16 sport, dport; /* host order */
	__u8 peer_node[16]; /* IPv4-mapped for v4 */
	const char *why;    /* the cause, when not ok */
};

void observe_tunnel_result(struct observe *o, const struct observe_tunnel *t);

struct auth_outcome;

/*
 * One outcome of the authentication engine (auth.h) as peerauth collects
 * it: observe_auth_result(), and the handshake counters and latency
 * histogram of the metrics. Does nothing when o is NULL.
 */
void observe_auth_outcome(struct observe *o, const struct auth_outcome *out);

/* The Prometheus exposition of the agent, as GET /metrics serves it. */
int observe_metrics(void *observe, struct metrics_buf *out);

/*
 * Control commands (docs/control-protocol.md): `observe` and `alerts`
 * answer with the kept records; with "follow" their take functions turn
 * the connection into a follower once the reply is sent.
 */
int cmd_observe(void *ctx, struct json_object *args, struct json_object *result,
		struct control_error *err);
int cmd_observe_take(void *ctx, struct json_object *args, int fd);
int cmd_alerts(void *ctx, struct json_object *args, struct json_object *result,
	       struct control_error *err);
int cmd_alerts_take(void *ctx, struct json_object *args, int fd);

#endif /* FEDGUARD_OBSERVE_H */
