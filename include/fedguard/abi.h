/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ABI shared by the BPF datapath and userspace: map keys and values,
 * event records and the reason codes the programs count. BPF objects and
 * userspace include this one header; nothing here is kept in sync by hand.
 *
 * Rules: fixed-width __u* types only, explicit padding, no bool or enum-typed
 * fields (enums below only name values so that they appear in BTF), and a
 * _Static_assert on every struct size. Ports are host byte order in policy
 * keys and network byte order nowhere else; addresses are network order.
 */
#ifndef FEDGUARD_ABI_H
#define FEDGUARD_ABI_H

#ifndef __bpf__
#include <linux/types.h>
#endif

/* Map names (at most 15 characters); pins live under FG_PIN_ROOT/<instance>/. */
#define FG_PIN_ROOT "/sys/fs/bpf/fedguard"

/* Node-local numeric identities. BPF sees only these numbers. */
enum fg_identity {
	FG_ID_UNKNOWN = 0,	   /* never matched by policy: unknown is denied */
	FG_ID_HOST = 1,		   /* the node itself */
	FG_ID_WORLD = 2,	   /* addresses outside every mesh, if configured */
	FG_ID_DYNAMIC_MIN = 256,   /* first identity the agent hands out */
	FG_ID_DYNAMIC_MAX = 0xffffff,
	FG_ID_ANY = 0x7fffffff,	   /* policy key wildcard for the peer side */
};

enum fg_family {
	FG_AF_INET = 4,
	FG_AF_INET6 = 6,
};

/* Direction of the connection a policy entry or socket binding is about. */
enum fg_direction {
	FG_DIR_META = 0,	/* the policy generation entry, see fg_policy_key */
	FG_DIR_EGRESS = 1,	/* initiated by the local workload */
	FG_DIR_INGRESS = 2,	/* initiated by the peer */
};

enum fg_action {
	FG_ACT_NONE = 0,
	FG_ACT_ALLOW = 1,
	FG_ACT_DENY = 2,
	FG_ACT_META = 3,	/* the generation entry; never a verdict */
};

/* How an allowed flow travels (fg_policy_value.transport). */
enum fg_transport {
	FG_TRANSPORT_DIRECT = 0,	/* the direct path (authenticated when auth says so) */
	FG_TRANSPORT_TUNNEL = 1,	/* inside a TLS tunnel between the workloads' agents */
};

enum fg_auth_mode {
	FG_AUTH_NONE = 0,	/* policy alone decides */
	FG_AUTH_MTLS = 1,	/* an fg_auth entry for the pair must be valid */
};

/*
 * Why a packet or a socket operation was allowed or dropped. Indexes
 * fg_counters; carried in events. Append only: values are ABI.
 */
enum fg_reason {
	FG_REASON_ALLOW_POLICY = 0,	/* an allow entry matched */
	FG_REASON_ALLOW_ESTABLISHED,	/* socket binding or flow entry, still valid */
	FG_REASON_ALLOW_REPLY,		/* TC: reply of a flow that policy allows */
	FG_REASON_ALLOW_UNMANAGED,	/* TC: no local workload on either end */
	FG_REASON_DENY_POLICY,		/* no allow entry: default deny */
	FG_REASON_DENY_RULE,		/* a deny entry matched (overrides allow) */
	FG_REASON_DENY_NO_IDENTITY,	/* caller's cgroup has no identity */
	FG_REASON_DENY_UNKNOWN_PEER,	/* peer address not in fg_ipcache */
	FG_REASON_DENY_QUARANTINE_LOCAL, /* the local identity is quarantined */
	FG_REASON_DENY_QUARANTINE_PEER,	/* the peer identity is quarantined */
	FG_REASON_DENY_QUARANTINE_TD,	/* either side's trust domain is */
	FG_REASON_DENY_AUTH_MISSING,	/* mTLS required, no fg_auth entry */
	FG_REASON_DENY_AUTH_EXPIRED,	/* mTLS required, entry expired */
	FG_REASON_DENY_SPOOF,		/* source address is not the sender's */
	FG_REASON_DENY_MALFORMED,	/* truncated or unparsable packet */
	FG_REASON_DENY_NO_POLICY,	/* no policy map installed yet */
	FG_REASON_DENY_MAP_FULL,	/* could not record socket state */
	FG_REASON_DENY_NO_TUNNEL,	/* policy wants the tunnel; the flow cannot or did not take it */
	FG_REASON_MAX,
};

enum fg_hook {
	FG_HOOK_CONNECT = 1,
	FG_HOOK_SENDMSG = 2,
	FG_HOOK_SOCKOPS = 3,
	FG_HOOK_SKB_EGRESS = 4,
	FG_HOOK_SKB_INGRESS = 5,
	FG_HOOK_TC_EGRESS = 6,
	FG_HOOK_TC_INGRESS = 7,
};

/* fg_cgroups: cgroup id (u64) -> the workload identity of that cgroup. */
struct fg_cgroup_info {
	__u32 identity;
	__u32 td;		/* trust domain id, 0 = none */
	__u32 flags;
	__u32 pad;
};
_Static_assert(sizeof(struct fg_cgroup_info) == 16, "fg_cgroup_info size");

/*
 * fg_ipcache: LPM trie over {family, addr}. prefixlen counts the bits after
 * itself, so it is 32 (family and padding) plus the address prefix length.
 * IPv4 addresses use the first 4 bytes of addr.
 */
struct fg_ipcache_key {
	__u32 prefixlen;
	__u8 family;		/* enum fg_family */
	__u8 pad[3];
	__u8 addr[16];
};
_Static_assert(sizeof(struct fg_ipcache_key) == 24, "fg_ipcache_key size");

#define FG_IPCACHE_PREFIX_BASE 32

enum fg_ipcache_flags {
	FG_IPC_LOCAL = 1,	/* a workload of this node */
};

struct fg_ipcache_value {
	__u32 identity;
	__u32 td;
	__u32 flags;		/* enum fg_ipcache_flags */
	__u32 pad;
	__u8 node[16];		/* owning node address (IPv4-mapped for v4) */
};
_Static_assert(sizeof(struct fg_ipcache_value) == 32, "fg_ipcache_value size");

/*
 * fg_policy: the active rule map, reached through slot 0 of fg_policy_slot
 * (ARRAY_OF_MAPS) so that a new rule set replaces the old in one update.
 * src is the initiator of the connection, dst its target. The peer side
 * (dst for egress, src for ingress) may be FG_ID_ANY and port may be 0 for
 * any port; the local side is always exact.
 *
 * The all-zero key (dir FG_DIR_META) holds the map's generation in rule_id:
 * a socket binding made under another generation is judged again.
 */
struct fg_policy_key {
	__u32 src_id;
	__u32 dst_id;
	__u16 port;		/* destination port, host order; 0 = any */
	__u8 proto;		/* IPPROTO_TCP or IPPROTO_UDP */
	__u8 dir;		/* enum fg_direction */
};
_Static_assert(sizeof(struct fg_policy_key) == 12, "fg_policy_key size");

/*
 * fg_policy_value.shape of the generation entry: the probes a rule map
 * does not need, because no entry of it has that wildcard. 0 (the
 * generation entry of a map written before shapes, or a map that has both
 * wildcards) means every probe.
 */
enum fg_policy_shape {
	FG_SHAPE_NO_ANY_PEER = 1,	/* no entry has FG_ID_ANY on its peer side */
	FG_SHAPE_NO_ANY_PORT = 2,	/* no entry has port 0 */
};

struct fg_policy_value {
	__u8 action;		/* enum fg_action */
	__u8 auth;		/* enum fg_auth_mode */
	__u8 transport;		/* enum fg_transport */
	__u8 shape;		/* generation entry: enum fg_policy_shape bits; 0 elsewhere */
	__u32 rule_id;		/* the rule that produced the entry */
};
_Static_assert(sizeof(struct fg_policy_value) == 8, "fg_policy_value size");

/* fg_quarantine: {kind, id} -> when and why. */
enum fg_quarantine_kind {
	FG_Q_IDENTITY = 1,
	FG_Q_TRUST_DOMAIN = 2,
};

struct fg_quarantine_key {
	__u32 kind;		/* enum fg_quarantine_kind */
	__u32 id;
};
_Static_assert(sizeof(struct fg_quarantine_key) == 8, "fg_quarantine_key size");

struct fg_quarantine_value {
	__u64 since_ns;		/* CLOCK_REALTIME, for operators */
	__u32 reason;		/* operator-chosen code */
	__u32 pad;
};
_Static_assert(sizeof(struct fg_quarantine_value) == 16, "fg_quarantine_value size");

/* fg_auth: a verified mTLS handshake between two identities and a node. */
struct fg_auth_key {
	__u32 local_id;
	__u32 peer_id;
	__u8 peer_node[16];
};
_Static_assert(sizeof(struct fg_auth_key) == 24, "fg_auth_key size");

struct fg_auth_value {
	__u64 expiry_ns;	/* CLOCK_MONOTONIC, compared to bpf_ktime_get_ns */
};
_Static_assert(sizeof(struct fg_auth_value) == 8, "fg_auth_value size");

enum fg_sock_state {
	FG_SOCK_ALLOWED = 1,
	FG_SOCK_AUTH_WAIT = 2,	/* allowed by policy, waiting for fg_auth */
	FG_SOCK_TUNNEL = 3,	/* carried by the tunnel: redirected to the agent or
				 * delivered by it; authenticated by the tunnel */
};

/* fg_sockets: socket cookie (u64) -> the identities the socket is bound to. */
struct fg_sock_binding {
	__u32 local_id;
	__u32 peer_id;
	__u32 local_td;
	__u32 peer_td;
	__u8 peer_node[16];
	__u32 policy_gen;	/* fg_policy generation of the verdict */
	__u32 rule_id;
	__u16 port;		/* policy port (destination), host order */
	__u8 state;		/* enum fg_sock_state */
	__u8 dir;		/* enum fg_direction */
	__u8 auth;		/* enum fg_auth_mode */
	__u8 proto;
	__u16 pad;
};
_Static_assert(sizeof(struct fg_sock_binding) == 48, "fg_sock_binding size");

/*
 * The encrypted transport (docs/transport.md). The connect hook sends a
 * connection that policy wants encrypted to the agent's redirect listener
 * instead of its destination:
 *
 *   fg_tun_orig  socket cookie -> where the connection was going, and (once
 *                sockops saw the connection start) where it comes from
 *   fg_tun_src   {family, source address, source port} of a redirected
 *                connection -> its socket cookie: how the agent that accepts
 *                the connection finds fg_tun_orig and fg_sockets
 *
 * At the far end the agent connects to the destination workload from an
 * address and port of its node and records, before the SYN leaves, whom
 * that connection carries:
 *
 *   fg_tun_peer  {family, agent address, agent port} -> the source workload
 *                the tunnel authenticated, its trust domain and node
 */
struct fg_tun_key {
	__u32 family;		/* enum fg_family; IPv4-mapped IPv6 is IPv4 */
	__u32 addr[4];		/* IPv4 in addr[0], network order */
	__u16 port;		/* network order */
	__u16 pad;
};
_Static_assert(sizeof(struct fg_tun_key) == 24, "fg_tun_key size");

struct fg_tun_orig {
	__u32 family;		/* enum fg_family of the original destination */
	__u32 daddr[4];		/* the original destination, network order */
	__u16 dport;		/* network order */
	__u16 pad;
	struct fg_tun_key src;	/* family 0 until sockops saw the connect */
};
_Static_assert(sizeof(struct fg_tun_orig) == 48, "fg_tun_orig size");

struct fg_tun_peer {
	__u32 identity;		/* the source workload the tunnel authenticated */
	__u32 td;		/* its trust domain */
	__u8 node[16];		/* its node, IPv4-mapped for v4 */
};
_Static_assert(sizeof(struct fg_tun_peer) == 24, "fg_tun_peer size");

/*
 * fg_counters: per-CPU, indexed by enum fg_reason. The map has room for
 * FG_COUNTERS_MAX reasons so that a reason added later does not change its
 * layout: a new agent still adopts the pinned map.
 */
enum { FG_COUNTERS_MAX = 64 };
_Static_assert((int)FG_REASON_MAX <= (int)FG_COUNTERS_MAX,
	       "fg_counters has no room for every reason");

struct fg_counter {
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct fg_counter) == 16, "fg_counter size");

/* fg_flows: TC flow table (LRU), keyed by the 5-tuple as first seen. */
struct fg_flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;		/* network order */
	__u16 dport;		/* network order */
	__u8 proto;
	__u8 family;		/* enum fg_family */
	__u16 pad;
};
_Static_assert(sizeof(struct fg_flow_key) == 40, "fg_flow_key size");

struct fg_flow_value {
	__u32 local_id;		/* identities the flow was allowed between */
	__u32 peer_id;
	__u32 rule_id;
	__u32 policy_gen;	/* judged again under another generation */
	__u8 auth;		/* enum fg_auth_mode: re-checked on every packet */
	__u8 pad[7];
};
_Static_assert(sizeof(struct fg_flow_value) == 24, "fg_flow_value size");

enum fg_event_type {
	FG_EV_DROP = 1,
	FG_EV_AUTH_NEEDED = 2,
	FG_EV_ALLOW = 3,
};

/* fg_events ring buffer record. */
struct fg_event {
	__u64 ts_ns;		/* bpf_ktime_get_ns */
	__u64 cookie;		/* socket cookie, 0 when there is no socket */
	__u64 cgroup_id;
	__u32 local_id;
	__u32 peer_id;
	__u32 rule_id;
	__u16 reason;		/* enum fg_reason */
	__u8 type;		/* enum fg_event_type */
	__u8 hook;		/* enum fg_hook */
	__u8 dir;		/* enum fg_direction */
	__u8 proto;
	__u8 family;		/* enum fg_family, 0 when unknown */
	__u8 pad;
	__u16 sport;		/* network order */
	__u16 dport;		/* network order */
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 peer_node[16];
};
_Static_assert(sizeof(struct fg_event) == 96, "fg_event size");

/*
 * fg_ev_stats: per CPU, one entry (key 0). What became of the events the
 * programs wanted to report, and the token bucket that limits drop and
 * allow events (auth-needed events are never limited: peer authentication
 * depends on them). Written by fg_emit(); read by the agent and bpftool.
 */
struct fg_ev_stats {
	__u64 emitted;		/* submitted to fg_events */
	__u64 suppressed;	/* over cfg_events_rate: not reported */
	__u64 lost;		/* fg_events was full: reservation failed */
	__u64 tokens;		/* bucket level, in billionths of an event */
	__u64 refill_ns;	/* bpf_ktime_get_ns of the last refill */
};
_Static_assert(sizeof(struct fg_ev_stats) == 40, "fg_ev_stats size");

#endif /* FEDGUARD_ABI_H */
