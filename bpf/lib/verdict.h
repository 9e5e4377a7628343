/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The verdict: the one implementation of fedguard's decision, used by every
 * hook. Building blocks, from the bottom:
 *
 *   identity   cgroup -> local identity, address -> peer identity (ipcache)
 *   quarantine identity or trust domain of either side
 *   policy     the active rule map, deny overriding allow, peer and port
 *              wildcards
 *   auth       a valid fg_auth entry where policy demands mTLS
 *
 * Each returns an enum fg_reason, or FG_NO_OBJECTION when it has nothing
 * against the traffic. Hooks compose them and report the final reason
 * through fg_report(), which counts it and emits a drop event.
 */
#ifndef FG_BPF_VERDICT_H
#define FG_BPF_VERDICT_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <fedguard/abi.h>

#include "lib/maps.h"
#include "lib/parse.h"

/* Level of the managed subtree's root below the cgroup2 mount (root = 0). */
const volatile __u32 cfg_cgroup_root_level = 0;
/* First SYN retransmit timeout of a socket still waiting for mTLS, in ms. */
const volatile __u32 cfg_auth_syn_rto_ms = 4;
/* The kernel's HZ, to turn milliseconds into jiffies for sockops. */
const volatile __u32 cfg_hz = 250;
/* Report allowed new connections and flows (FG_EV_ALLOW), never packets. */
const volatile __u32 cfg_events_allow = 0;
/*
 * Drop and allow events each CPU may report per second, and how many it
 * may report at once after a quiet spell; 0 = no limit. Excess events are
 * counted in fg_ev_stats, not reported. The agent keeps burst >= 1.
 */
const volatile __u32 cfg_events_rate = 0;
const volatile __u32 cfg_events_burst = 0;
/*
 * The agent's redirect listener for the encrypted transport: the port
 * (host order; 0 = this node has no tunnel, and flows that policy wants
 * encrypted are denied) and its address for IPv4 and IPv6 connections
 * (network order; zero = none for that family). Workloads must be able to
 * reach it: the node's address.
 */
const volatile __u32 cfg_tun_port = 0;
const volatile __u32 cfg_tun_addr4 = 0;
const volatile __u32 cfg_tun_addr6[4] = {};

enum fg_verdict_consts {
	FG_NO_OBJECTION = FG_REASON_MAX,
	/* registered cgroups are looked for this many levels below the root */
	FG_CGROUP_MAX_DEPTH = 8,
	FG_POLICY_PROBES = 4,	/* {peer, any} x {port, any} */
	FG_EV_TOKEN = 1000000000, /* one event: buckets count billionths */
	/* peer flag beside enum fg_ipcache_flags: the peer came through the
	 * tunnel (fg_tun_peer), authenticated by it */
	FG_PEER_TUNNELLED = 0x100,
	/* a connect held for mTLS outlives the agent's 3 s exchange deadline */
	FG_AUTH_HOLD_MS = 4000,
	FG_SYN_RETRIES_MAX = 16,
	FG_SOL_TCP = 6,		/* SOL_TCP and TCP_SYNCNT: macros, not in vmlinux.h */
	FG_TCP_SYNCNT = 7,
};

/* Everything a hook learns on the way to its verdict; what events carry. */
struct fg_judgement {
	struct fg_pkt pkt;
	__u64 cookie;
	__u64 cgroup_id;
	__u32 local_id;
	__u32 peer_id;
	__u32 rule_id;
	__u32 policy_gen;
	__u32 peer_node[4];
	__u8 hook;		/* enum fg_hook */
	__u8 dir;		/* enum fg_direction of the connection */
	__u8 auth;		/* enum fg_auth_mode the policy demanded */
	__u8 transport;		/* enum fg_transport the policy demanded */
	__u8 redirect;		/* connect hooks: send the socket to the tunnel */
	__u8 pad[3];
};

/* A connection as policy sees it. */
struct fg_conn {
	__u32 local_id;
	__u32 peer_id;
	__u16 port;		/* destination port of the connection, host order */
	__u8 proto;
	__u8 dir;		/* enum fg_direction */
};

static __always_inline bool fg_allowed(__u32 reason)
{
	return reason < FG_REASON_DENY_POLICY;
}

static __always_inline void fg_count(__u32 reason, __u32 bytes)
{
	struct fg_counter *c = bpf_map_lookup_elem(&fg_counters, &reason);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/*
 * This CPU's token bucket: refilled at cfg_events_rate events a second up
 * to cfg_events_burst. Per CPU, so no atomics; a program that interrupts
 * another on the same CPU may make a count or the level a little off,
 * never unbounded.
 */
static __always_inline bool fg_ev_admit(struct fg_ev_stats *s)
{
	__u64 cap = (__u64)cfg_events_burst * FG_EV_TOKEN;
	__u64 now, dt, refill;

	if (!cfg_events_rate)
		return true;
	now = bpf_ktime_get_ns();
	dt = now - s->refill_ns;
	s->refill_ns = now;
	/* dt * rate would overflow after a long quiet spell: cap it first */
	refill = dt >= cap / cfg_events_rate ? cap : dt * cfg_events_rate;
	s->tokens = s->tokens + refill > cap ? cap : s->tokens + refill;
	if (s->tokens < FG_EV_TOKEN) {
		s->suppressed++;
		return false;
	}
	s->tokens -= FG_EV_TOKEN;
	return true;
}

static __always_inline void fg_emit(const struct fg_judgement *j, __u8 type, __u32 reason)
{
	__u32 zero = 0;
	struct fg_ev_stats *s = bpf_map_lookup_elem(&fg_ev_stats, &zero);
	struct fg_event *e;

	/* auth-needed events start peer authentication: never suppressed */
	if (s && type != FG_EV_AUTH_NEEDED && !fg_ev_admit(s))
		return;
	e = bpf_ringbuf_reserve(&fg_events, sizeof(*e), 0);
	if (!e) {
		if (s)
			s->lost++;
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->cookie = j->cookie;
	e->cgroup_id = j->cgroup_id;
	e->local_id = j->local_id;
	e->peer_id = j->peer_id;
	e->rule_id = j->rule_id;
	e->reason = reason;
	e->type = type;
	e->hook = j->hook;
	e->dir = j->dir;
	e->proto = j->pkt.proto;
	e->family = j->pkt.family;
	e->pad = 0;
	e->sport = j->pkt.sport;
	e->dport = j->pkt.dport;
	__builtin_memcpy(e->saddr, j->pkt.saddr, 16);
	__builtin_memcpy(e->daddr, j->pkt.daddr, 16);
	__builtin_memcpy(e->peer_node, j->peer_node, 16);
	bpf_ringbuf_submit(e, 0);
	if (s)
		s->emitted++;
}

/* Count the final reason, report a drop; true when the traffic may pass. */
static __always_inline bool fg_report(struct fg_judgement *j, __u32 reason)
{
	fg_count(reason, j->pkt.len);
	if (fg_allowed(reason))
		return true;
	fg_emit(j, FG_EV_DROP, reason);
	return false;
}

/* --- identity ------------------------------------------------------------ */

static __always_inline struct fg_ipcache_value *fg_ipcache_lookup(__u8 family, const __u32 addr[4])
{
	struct fg_ipcache_key k = { .family = family };

	if (family == FG_AF_INET) {
		k.prefixlen = FG_IPCACHE_PREFIX_BASE + 32;
		__builtin_memcpy(k.addr, addr, 4);
	} else {
		k.prefixlen = FG_IPCACHE_PREFIX_BASE + 128;
		__builtin_memcpy(k.addr, addr, 16);
	}
	return bpf_map_lookup_elem(&fg_ipcache, &k);
}

static __always_inline struct fg_cgroup_info *fg_cgroup_lookup(__u64 id)
{
	return id ? bpf_map_lookup_elem(&fg_cgroups, &id) : NULL;
}

/*
 * The identity of the calling task's cgroup: its own entry, else the
 * deepest registered ancestor inside the managed subtree.
 */
static __always_inline struct fg_cgroup_info *fg_identity_current(void)
{
	struct fg_cgroup_info *info = fg_cgroup_lookup(bpf_get_current_cgroup_id());

	for (int i = FG_CGROUP_MAX_DEPTH; i >= 0 && !info; i--)
		info = fg_cgroup_lookup(bpf_get_current_ancestor_cgroup_id(cfg_cgroup_root_level + i));
	return info;
}

/* The same for the socket that owns @skb. */
static __always_inline struct fg_cgroup_info *fg_identity_skb(struct __sk_buff *skb)
{
	struct fg_cgroup_info *info = fg_cgroup_lookup(bpf_skb_cgroup_id(skb));

	for (int i = FG_CGROUP_MAX_DEPTH; i >= 0 && !info; i--)
		info = fg_cgroup_lookup(bpf_skb_ancestor_cgroup_id(skb, cfg_cgroup_root_level + i));
	return info;
}

/* A packet a workload sends must carry one of that workload's addresses. */
static __always_inline __u32 fg_check_source(const struct fg_pkt *p, __u32 local_id)
{
	struct fg_ipcache_value *src = fg_ipcache_lookup(p->family, p->saddr);

	if (!src || src->identity != local_id)
		return FG_REASON_DENY_SPOOF;
	return FG_NO_OBJECTION;
}

/* --- quarantine ---------------------------------------------------------- */

static __always_inline bool fg_quarantined(__u32 kind, __u32 id)
{
	struct fg_quarantine_key k = { .kind = kind, .id = id };

	return id && bpf_map_lookup_elem(&fg_quarantine, &k);
}

static __always_inline __u32 fg_check_quarantine(__u32 local_id, __u32 local_td, __u32 peer_id,
						 __u32 peer_td)
{
	if (fg_quarantined(FG_Q_IDENTITY, local_id))
		return FG_REASON_DENY_QUARANTINE_LOCAL;
	if (fg_quarantined(FG_Q_IDENTITY, peer_id))
		return FG_REASON_DENY_QUARANTINE_PEER;
	/* most flows stay in one trust domain: one lookup for both then */
	if (fg_quarantined(FG_Q_TRUST_DOMAIN, local_td) ||
	    (peer_td != local_td && fg_quarantined(FG_Q_TRUST_DOMAIN, peer_td)))
		return FG_REASON_DENY_QUARANTINE_TD;
	return FG_NO_OBJECTION;
}

/* --- policy -------------------------------------------------------------- */

/*
 * The active rule map, its generation and its shape (the probes it needs),
 * or NULL when none is installed.
 */
static __always_inline void *fg_policy_rules(__u32 *gen, __u8 *shape)
{
	struct fg_policy_key meta = {};
	struct fg_policy_value *v;
	__u32 zero = 0;
	void *rules;

	rules = bpf_map_lookup_elem(&fg_policy_slot, &zero);
	if (!rules)
		return NULL;
	v = bpf_map_lookup_elem(rules, &meta);
	*gen = v ? v->rule_id : 0;
	*shape = v ? v->shape : 0;
	return rules;
}

/*
 * Probe exact and wildcard entries. Any deny entry wins; otherwise the most
 * specific allow names the rule and the strictest auth mode of all matching
 * allows applies. A wildcard the map's shape says it lacks is not probed:
 * a lookup saved, and the same verdict.
 */
static __always_inline __u32 fg_policy_match(void *rules, __u8 shape, const struct fg_conn *c,
					     struct fg_judgement *j)
{
	bool allowed = false;

	j->auth = FG_AUTH_NONE;
	j->transport = FG_TRANSPORT_DIRECT;
	j->rule_id = 0;
	for (int i = 0; i < FG_POLICY_PROBES; i++) {
		__u32 peer = (i & 1) ? FG_ID_ANY : c->peer_id;

		if (((i & 1) && (shape & FG_SHAPE_NO_ANY_PEER)) ||
		    ((i & 2) && (shape & FG_SHAPE_NO_ANY_PORT)))
			continue;
		struct fg_policy_key k = {
			.src_id = c->dir == FG_DIR_EGRESS ? c->local_id : peer,
			.dst_id = c->dir == FG_DIR_EGRESS ? peer : c->local_id,
			.port = (i & 2) ? 0 : c->port,
			.proto = c->proto,
			.dir = c->dir,
		};
		struct fg_policy_value *v = bpf_map_lookup_elem(rules, &k);

		if (!v)
			continue;
		if (v->action == FG_ACT_DENY) {
			j->rule_id = v->rule_id;
			j->auth = FG_AUTH_NONE;
			j->transport = FG_TRANSPORT_DIRECT;
			return FG_REASON_DENY_RULE;
		}
		if (v->action != FG_ACT_ALLOW)
			continue;
		if (!allowed)
			j->rule_id = v->rule_id;
		if (v->auth > j->auth)
			j->auth = v->auth;
		if (v->transport > j->transport)	/* the tunnel is the stricter */
			j->transport = v->transport;
		allowed = true;
	}
	return allowed ? FG_REASON_ALLOW_POLICY : FG_REASON_DENY_POLICY;
}

/* --- auth ---------------------------------------------------------------- */

static __always_inline __u32 fg_check_auth(__u32 local_id, __u32 peer_id, const void *node)
{
	struct fg_auth_key k = { .local_id = local_id, .peer_id = peer_id };
	struct fg_auth_value *v;

	__builtin_memcpy(k.peer_node, node, 16);
	v = bpf_map_lookup_elem(&fg_auth, &k);
	if (!v)
		return FG_REASON_DENY_AUTH_MISSING;
	if (v->expiry_ns <= bpf_ktime_get_ns())
		return FG_REASON_DENY_AUTH_EXPIRED;
	return FG_NO_OBJECTION;
}

/* --- transport ------------------------------------------------------------ */

/*
 * An allowed flow that policy wants encrypted may only travel through the
 * tunnel: unless its peer is a workload of this node (flows that stay on
 * the node are never tunnelled) or it came through the tunnel, it is
 * denied. peer_flags: enum fg_ipcache_flags of the peer, or
 * FG_PEER_TUNNELLED.
 */
static __always_inline __u32 fg_check_transport(const struct fg_judgement *j, __u32 peer_flags)
{
	if (j->transport != FG_TRANSPORT_TUNNEL)
		return FG_NO_OBJECTION;
	if (peer_flags & (FG_IPC_LOCAL | FG_PEER_TUNNELLED))
		return FG_NO_OBJECTION;
	return FG_REASON_DENY_NO_TUNNEL;
}

/*
 * The source workload a tunnel delivered this connection for: the agent
 * connected from {family, addr, port} of its node (fg_tun_peer). NULL when
 * the address and port are no tunnel's.
 */
static __always_inline struct fg_tun_peer *fg_tun_peer_lookup(__u8 family, const __u32 addr[4],
							      __u16 port)
{
	struct fg_tun_key k = { .family = family, .port = port };

	if (family == FG_AF_INET)
		k.addr[0] = addr[0];
	else
		__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&fg_tun_peer, &k);
}

/* --- compositions -------------------------------------------------------- */

/*
 * Decide a new connection @c between two known identities: quarantine, then
 * policy. Auth is left to the caller, which knows whether it can wait.
 */
static __always_inline __u32 fg_decide(const struct fg_conn *c, __u32 local_td, __u32 peer_td,
				       struct fg_judgement *j)
{
	__u32 r = fg_check_quarantine(c->local_id, local_td, c->peer_id, peer_td);
	void *rules;
	__u8 shape;

	if (r != FG_NO_OBJECTION)
		return r;
	rules = fg_policy_rules(&j->policy_gen, &shape);
	if (!rules)
		return FG_REASON_DENY_NO_POLICY;
	j->dir = c->dir;
	return fg_policy_match(rules, shape, c, j);
}

/*
 * Judge one packet between a local identity and a known peer without any
 * per-socket state: the connection it opens if it opens one (policy in the
 * packet's direction); else also as a reply of a connection the other side
 * opened (policy in the other direction, ports swapped). Stateless, so a
 * reply is admitted exactly when policy admits the forward connection.
 * A flow policy wants encrypted passes only through the tunnel
 * (fg_check_transport()).
 */
static __always_inline __u32 fg_judge_packet(struct fg_judgement *j, __u32 local_td,
					      __u32 peer_td, __u32 peer_flags, __u8 pkt_dir)
{
	struct fg_conn c = {
		.local_id = j->local_id,
		.peer_id = j->peer_id,
		.port = bpf_ntohs(j->pkt.dport),
		.proto = j->pkt.proto,
		.dir = pkt_dir,
	};
	__u32 r = fg_decide(&c, local_td, peer_td, j);
	__u32 fwd_rule = j->rule_id;
	__u32 auth;

	if ((r == FG_REASON_DENY_POLICY || r == FG_REASON_DENY_RULE) && !fg_pkt_opens(&j->pkt)) {
		c.port = bpf_ntohs(j->pkt.sport);
		c.dir = pkt_dir == FG_DIR_EGRESS ? FG_DIR_INGRESS : FG_DIR_EGRESS;
		if (fg_allowed(fg_decide(&c, local_td, peer_td, j))) {
			r = FG_REASON_ALLOW_REPLY;
		} else {
			j->rule_id = fwd_rule;
			j->dir = pkt_dir;
		}
	}
	if (!fg_allowed(r))
		return r;
	auth = fg_check_transport(j, peer_flags);
	if (auth != FG_NO_OBJECTION)
		return auth;
	/* the tunnel authenticated both workloads: that is the mTLS */
	if (j->auth != FG_AUTH_MTLS || (peer_flags & FG_PEER_TUNNELLED))
		return r;
	auth = fg_check_auth(j->local_id, j->peer_id, j->peer_node);
	return auth == FG_NO_OBJECTION ? r : auth;
}

#endif /* FG_BPF_VERDICT_H */
