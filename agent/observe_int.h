/* SPDX-License-Identifier: Apache-2.0 */
/* The observer's insides, shared by observe*.c and cmd_observe.c only. */
#ifndef FEDGUARD_OBSERVE_INT_H
#define FEDGUARD_OBSERVE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "alerts.h"
#include "flow.h"
#include "flowlog.h"
#include "metrics_http.h"
#include "observe.h"

/* SPIFFE IDs by identity number and rule names by rule id, from the agent's state. */
struct observe_names {
	bool built;
	unsigned long state_gen; /* of the state they were taken from */
	struct observe_id_name {
		__u32 id;
		struct flow_name *name;
	} * ids; /* sorted by id */
	size_t n_ids;
	struct flow_name **rules; /* rule id - 1 -> name */
	size_t n_rules;
	char *doc; /* the policy text the rules come from */
};

/* A connection handed over by `observe --follow` or `alerts --follow`. */
struct observe_follower {
	int fd;
	bool alerts;		   /* alerts, else flow records */
	struct flow_filter filter; /* strings point into identity, trust_domain */
	char *identity;
	char *trust_domain;
	char *buf; /* not sent yet: len bytes of OBSERVE_FOLLOWER_BUFFER */
	size_t len;
	__u64 lost;    /* records not sent since the last notice */
	bool want_out; /* registered for EPOLLOUT */
};

/* Upper bounds of the handshake latency histogram, in seconds. */
#define OBSERVE_AUTH_BUCKETS_S                                                                     \
	{                                                                                          \
		0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5                    \
	}
enum {
	OBSERVE_AUTH_BUCKETS = 11,
	OBSERVE_ROLES = 3, /* enum auth_role: 1 asker, 2 answerer */
};

/* Handshakes by role: outcomes, and the latency of the successful ones. */
struct observe_auth_stats {
	__u64 outcomes[OBSERVE_ROLES][2];		    /* [role][ok] */
	__u64 buckets[OBSERVE_ROLES][OBSERVE_AUTH_BUCKETS]; /* not cumulative */
	double sum_s[OBSERVE_ROLES];
};

/*
 * Fill levels of the instance's hash-like maps, recomputed for a scrape
 * when older than OBSERVE_FILL_MAX_AGE_MS: walking full maps takes about
 * 0.1 s of the main loop, so scrapes in a row must not repeat it.
 */
enum {
	OBSERVE_FILL_MAX_AGE_MS = 5000,
	OBSERVE_FILL_MAPS = 32,
};

struct observe_map_fill {
	__s64 at_ms; /* io_now_ms() when counted; 0: never */
	struct {
		char name[16 + 1]; /* BPF_OBJ_NAME_LEN + 1 */
		__u64 entries;
		__u32 max;
	} v[OBSERVE_FILL_MAPS];
	size_t n;
};

struct observe {
	struct agent *ag;
	unsigned int cfg_auto_quarantine;	/* 1 << enum alert_kind: quarantine its subject */
	char instance[72];
	struct flowlog *flowlog; /* NULL: no flow log */
	struct alerts *alerts;
	struct metrics_http *http; /* NULL: no metrics endpoint */
	int epoll_fd;
	struct flow_record *ring; /* the last ring_cap records, oldest at ring_first */
	size_t ring_cap;
	size_t ring_n;
	size_t ring_next;
	__u64 seq;
	struct observe_names names;
	struct observe_follower *followers[OBSERVE_FOLLOWERS_MAX];
	__u64 records[FLOW_KIND_MAX]; /* records made, by kind */
	__u64 flowlog_json_errors;    /* records that could not be serialised */
	__u64 follower_lost;	      /* records followers were too slow for */
	struct observe_auth_stats auth;
	struct observe_map_fill fill;
};

/* observe_names.c */
void observe_names_free(struct observe_names *n);
/* Sets the record's SPIFFE IDs and rule name from the agent's current state. */
void observe_names_resolve(struct observe *o, struct flow_record *r);

/* observe.c */
/* Stamps a complete record (seq, flow ID) and hands it to ring, log, detector, followers. */
void observe_record(struct observe *o, struct flow_record *r);
/* The kept records, oldest first. */
const struct flow_record *observe_ring_at(const struct observe *o, size_t i);
/* Makes fd a follower (taking it); -ENOSPC when OBSERVE_FOLLOWERS_MAX follow already. */
int observe_follow(struct observe *o, int fd, bool alerts, const struct flow_filter *f);
size_t observe_followers(const struct observe *o);

#endif /* FEDGUARD_OBSERVE_INT_H */
