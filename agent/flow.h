/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Flow records: what the flow log, `fedguardctl observe` and the alert
 * detector see of one datapath event (struct fg_event) or of one event of
 * the agent (an authentication outcome). A record holds numbers and
 * references to shared names, so a ring of them costs a fixed size per
 * record whatever the SPIFFE IDs are. docs/observability.md describes the
 * JSON form.
 *
 * Conventions: functions return >= 0 or a negative errno; output
 * parameters are written only on success. Nothing here logs.
 */
#ifndef FEDGUARD_FLOW_H
#define FEDGUARD_FLOW_H

#include <stdbool.h>
#include <stddef.h>

#include <fedguard/abi.h>

struct json_object;

/* What a record reports. */
enum flow_kind {
	FLOW_DROP = 1,	     /* a drop; reason says why */
	FLOW_QUARANTINE_HIT, /* a drop whose reason is a quarantine reason */
	FLOW_ALLOW,	     /* a new connection or flow (fedguardd --log-allowed) */
	FLOW_AUTH_NEEDED,    /* policy wants mTLS for a pair without it */
	FLOW_AUTH_OK,	     /* the agent authenticated a pair */
	FLOW_AUTH_FAILED,    /* the agent could not */
	FLOW_TUNNEL,	     /* the agent carries a flow in a tunnel, or refused to */
	FLOW_KIND_MAX,
};

enum flow_verdict {
	FLOW_V_ALLOW = 1,
	FLOW_V_DENY,
	FLOW_V_PENDING, /* waits for authentication */
	FLOW_V_MAX,
};

/* No reason in a record (agent events): reason_name() gives NULL for it. */
#define FLOW_NO_REASON FG_REASON_MAX

/* Coarse time of the flow ID: records of one flow within one minute share it. */
#define FLOW_ID_BUCKET_S 60

/* A reference-counted, immutable string: a SPIFFE ID or a rule name. */
struct flow_name {
	unsigned int refs;
	char s[];
};

/* A new name with one reference; NULL when out of memory. */
struct flow_name *flow_name_new(const char *s);
struct flow_name *flow_name_get(struct flow_name *n);
void flow_name_put(struct flow_name *n);

struct flow_record {
	__u64 seq;     /* the observer's, increasing from 1 */
	__s64 time_ms; /* CLOCK_REALTIME, milliseconds */
	__u64 flow_id; /* flow_id(), 0 until set */
	__u64 cookie;  /* socket cookie, 0 when there is none */
	__u64 cgroup_id;
	__u32 local_id;
	__u32 peer_id;
	__u32 rule_id;	  /* 0 when no rule decided */
	__u32 elapsed_us; /* authentication outcomes: how long it took */
	__u16 reason;	  /* enum fg_reason, or FLOW_NO_REASON */
	__u16 sport;	  /* host order; 0 when unknown */
	__u16 dport;
	__u8 kind;	/* enum flow_kind */
	__u8 verdict;	/* enum flow_verdict */
	__u8 hook;	/* enum fg_hook, 0 for agent events */
	__u8 dir;	/* enum fg_direction of the connection */
	__u8 proto;	/* IPPROTO_*, 0 when unknown */
	__u8 family;	/* enum fg_family, 0 when unknown */
	__u8 saddr[16]; /* IPv4 in the first 4 bytes, as in struct fg_event */
	__u8 daddr[16];
	__u8 peer_node[16];	      /* IPv4-mapped for v4; all zero when unknown */
	struct flow_name *local_name; /* SPIFFE IDs, rule name: NULL when unknown */
	struct flow_name *peer_name;
	struct flow_name *rule_name;
	struct flow_name *why; /* authentication failures: the cause */
};

/*
 * A record of a datapath event, without names, seq or flow ID.
 * real_offset_ns turns the event's CLOCK_MONOTONIC time into
 * CLOCK_REALTIME. -EINVAL for an event type this agent does not know.
 */
int flow_from_event(const struct fg_event *e, __s64 real_offset_ns, struct flow_record *out);

/* Drops the record's name references and zeroes it. */
void flow_record_release(struct flow_record *r);

/* A copy sharing the names (references taken). */
void flow_record_copy(struct flow_record *dst, const struct flow_record *src);

/*
 * The flow ID: the first 8 bytes of SHA-256 over "fgflow1", the protocol,
 * both endpoints (16-byte address, IPv4 mapped, then the port in network
 * order) in byte order, smaller first, and the minute of time_ms (8 bytes,
 * network order). Both directions of a connection, and every node that
 * sees it within the same minute, get the same ID. A record without a
 * source address and port (connect and sendmsg hooks run before the kernel
 * picks them) cannot be matched by its 5-tuple anyway: the socket cookie
 * (8 bytes, network order) is hashed after the minute, so that its ID
 * names that one socket.
 */
__u64 flow_id(const struct flow_record *r);

/* The names of the enums as the JSON shows them; "unknown" when out of range. */
const char *flow_kind_name(__u8 kind);
const char *flow_verdict_name(__u8 verdict);
const char *flow_hook_name(__u8 hook);
const char *flow_dir_name(__u8 dir);
const char *flow_proto_name(__u8 proto, char *buf, size_t len);

/* enum flow_verdict of "allow", "deny", "pending"; -EINVAL otherwise. */
int flow_verdict_from_name(const char *name);

/* "2026-01-02T03:04:05.678Z" (RFC 3339, UTC, milliseconds); buf of 32 bytes. */
int flow_time_format(__s64 time_ms, char *buf, size_t len);

/*
 * The RFC 3339 time of the flow log ("2026-01-02T03:04:05Z", with optional
 * fraction and a Z or +hh:mm offset) in milliseconds; -EINVAL otherwise.
 */
int flow_time_parse(const char *s, __s64 *out_ms);

/* A family and address as text ("10.0.0.1", "fd00::1"); NULL when unknown or all zero. */
const char *flow_addr_text(__u8 family, const __u8 *addr, char *buf, size_t len);

/*
 * The record as a JSON object ("type": "flow"): see docs/observability.md.
 * instance names the agent; NULL when out of memory.
 */
struct json_object *flow_to_json(const struct flow_record *r, const char *instance);

/* Which records `observe` shows; zero fields (and NULL strings) match anything. */
struct flow_filter {
	__s64 since_ms;		  /* records at or after this time */
	__u8 verdict;		  /* enum flow_verdict */
	int reason;		  /* enum fg_reason + 1; 0: any */
	const char *identity;	  /* the SPIFFE ID of either side */
	const char *trust_domain; /* the trust domain of either side */
	__u16 port;		  /* either port */
};

bool flow_filter_match(const struct flow_filter *f, const struct flow_record *r);

/* Whether a SPIFFE ID belongs to a trust domain (given by name, without "spiffe://"). */
bool flow_in_trust_domain(const char *spiffe_id, const char *td);

#endif /* FEDGUARD_FLOW_H */
