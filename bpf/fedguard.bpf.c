// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * fedguard's datapath: the hooks. Each entry point gathers what it knows
 * (cgroup, socket binding, packet), asks the verdict in lib/verdict.h and
 * returns it; counting and drop events happen in fg_report().
 *
 *   cgroup/connect4|6      new connection of a managed workload
 *   cgroup/sendmsg4|6      unconnected UDP send with an address
 *   cgroup/getpeername4|6  a tunnelled socket shows its real peer
 *   cgroup/sock_release    forget the socket's binding
 *   sockops                bind accepted sockets; short SYN RTO while
 *                          a socket waits for mTLS; note where a
 *                          tunnelled connection comes from
 *   cgroup_skb/egress      every packet of managed sockets, both ways
 *   cgroup_skb/ingress
 *   tc (clsact in/out)     node perimeter on the node's interfaces
 *   iter/tcp               tear-down: quarantined identities (fg_iter_tcp),
 *                          a trust domain no longer trusted (fg_iter_auth)
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <fedguard/abi.h>

#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/verdict.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * BTF anchors. Types used only by inlined code reach BTF as forward
 * declarations or not at all; libbpf then cannot size the fg_policy_slot
 * inner map, the agent cannot give its policy maps BTF, and bpftool cannot
 * name the enums. These read-only constants (never read) pull them in.
 */
const volatile struct fg_policy_key fg_btf_policy_key;
const volatile struct fg_policy_value fg_btf_policy_value;
const volatile struct fg_event fg_btf_event;
const volatile struct {
	enum fg_reason reason;
	enum fg_action action;
	enum fg_direction dir;
	enum fg_auth_mode auth;
	enum fg_transport transport;
	enum fg_quarantine_kind quarantine;
	enum fg_sock_state sock_state;
	enum fg_event_type event;
	enum fg_hook hook;
	enum fg_identity identity;
	enum fg_ipcache_flags ipcache_flags;
	enum fg_family family;
} fg_btf_enums;

enum fg_hook_consts {
	FG_SK_DROP = 0,
	FG_SK_PASS = 1,
	/* "no opinion": cls_bpf goes on to the next filter (another
	 * instance's) and passes the packet when none is left */
	FG_TC_ACT_UNSPEC = -1,
	FG_TC_ACT_SHOT = 2,
	FG_AF_INET_SYS = 2,	/* AF_INET as sockets report it */
	FG_AF_INET6_SYS = 10,
	FG_TCP_LISTEN = 10,	/* enum tcp_states, include/net/tcp_states.h */
};

/* ::ffff:a.b.c.d is IPv4 for policy purposes: fold it. */
static __always_inline void fg_addr_from_v6(struct fg_pkt *p, const __u32 a[4], bool dst)
{
	__u32 *out = dst ? p->daddr : p->saddr;

	if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff)) {
		p->family = FG_AF_INET;
		out[0] = a[3];
		return;
	}
	p->family = FG_AF_INET6;
	__builtin_memcpy(out, a, 16);
}

/* --- socket address hooks ------------------------------------------------ */

static __always_inline struct fg_sock_binding fg_binding_of(const struct fg_judgement *j,
							   __u32 local_td, __u32 peer_td,
							   __u16 port, __u8 state)
{
	struct fg_sock_binding b = {
		.local_id = j->local_id,
		.peer_id = j->peer_id,
		.local_td = local_td,
		.peer_td = peer_td,
		.policy_gen = j->policy_gen,
		.rule_id = j->rule_id,
		.port = port,
		.state = state,
		.dir = j->dir,
		.auth = j->auth,
		.proto = IPPROTO_TCP,
	};

	__builtin_memcpy(b.peer_node, j->peer_node, 16);
	return b;
}

static __always_inline bool fg_tun_configured(__u8 family)
{
	if (!cfg_tun_port)
		return false;
	if (family == FG_AF_INET)
		return cfg_tun_addr4 != 0;
	return (cfg_tun_addr6[0] | cfg_tun_addr6[1] | cfg_tun_addr6[2] | cfg_tun_addr6[3]) != 0;
}

/*
 * A TCP connect that policy wants encrypted goes to the agent's redirect
 * listener: remember where it was going (kept when the same socket asks
 * again for the same destination, so that sockops' note of its source
 * stays), bind the socket in state FG_SOCK_TUNNEL, and let fg_sock_addr()
 * rewrite the address. A datagram cannot take the tunnel.
 */
static __always_inline __u32 fg_tunnel_bind(struct fg_judgement *j, __u32 local_td,
					    __u32 peer_td, __u16 port)
{
	struct fg_tun_orig o = { .family = j->pkt.family, .dport = j->pkt.dport };
	struct fg_tun_orig *old = bpf_map_lookup_elem(&fg_tun_orig, &j->cookie);
	struct fg_sock_binding b;

	if (j->hook != FG_HOOK_CONNECT || j->pkt.proto != IPPROTO_TCP ||
	    !fg_tun_configured(j->pkt.family))
		return FG_REASON_DENY_NO_TUNNEL;
	__builtin_memcpy(o.daddr, j->pkt.daddr, 16);
	if (!old || old->family != o.family || old->dport != o.dport ||
	    old->daddr[0] != o.daddr[0] || old->daddr[1] != o.daddr[1] ||
	    old->daddr[2] != o.daddr[2] || old->daddr[3] != o.daddr[3]) {
		if (bpf_map_update_elem(&fg_tun_orig, &j->cookie, &o, BPF_ANY))
			return FG_REASON_DENY_MAP_FULL;
	}
	b = fg_binding_of(j, local_td, peer_td, port, FG_SOCK_TUNNEL);
	if (bpf_map_update_elem(&fg_sockets, &j->cookie, &b, BPF_ANY)) {
		bpf_map_delete_elem(&fg_tun_orig, &j->cookie);
		return FG_REASON_DENY_MAP_FULL;
	}
	j->redirect = 1;
	return FG_REASON_ALLOW_POLICY;
}

/*
 * A managed workload connects or sends to j->pkt.daddr:dport. Only a TCP
 * connect may wait for mTLS (its SYN is held by the egress hook until
 * fg_auth has the pair); everything else needing auth fails at once. A
 * connection policy wants encrypted to a peer off this node is redirected
 * into the tunnel, which authenticates it.
 */
static __always_inline __u32 fg_sock_addr_judge(struct fg_judgement *j)
{
	struct fg_cgroup_info *local = fg_identity_current();
	struct fg_ipcache_value *peer;
	struct fg_sock_binding b;
	__u8 state = FG_SOCK_ALLOWED;
	__u32 r;

	if (!local)
		return FG_REASON_DENY_NO_IDENTITY;
	j->local_id = local->identity;
	peer = fg_ipcache_lookup(j->pkt.family, j->pkt.daddr);
	if (!peer)
		return FG_REASON_DENY_UNKNOWN_PEER;
	j->peer_id = peer->identity;
	__builtin_memcpy(j->peer_node, peer->node, 16);

	struct fg_conn c = {
		.local_id = j->local_id,
		.peer_id = j->peer_id,
		.port = bpf_ntohs(j->pkt.dport),
		.proto = j->pkt.proto,
		.dir = FG_DIR_EGRESS,
	};
	r = fg_decide(&c, local->td, peer->td, j);
	if (!fg_allowed(r))
		return r;
	if (fg_check_transport(j, peer->flags) != FG_NO_OBJECTION)
		return fg_tunnel_bind(j, local->td, peer->td, c.port);

	bool waits = j->hook == FG_HOOK_CONNECT && j->pkt.proto == IPPROTO_TCP;

	if (j->auth == FG_AUTH_MTLS) {
		__u32 a = fg_check_auth(j->local_id, j->peer_id, j->peer_node);

		if (a != FG_NO_OBJECTION) {
			fg_emit(j, FG_EV_AUTH_NEEDED, a);
			if (!waits)
				return a;
			state = FG_SOCK_AUTH_WAIT;
		}
	}
	if (!waits)
		return r;
	b = fg_binding_of(j, local->td, peer->td, c.port, state);
	if (bpf_map_update_elem(&fg_sockets, &j->cookie, &b, BPF_ANY))
		return FG_REASON_DENY_MAP_FULL;
	return r;
}

/*
 * Points a redirected connect at the agent's redirect listener. v6: the
 * hook is connect6 (a constant once inlined: the verifier refuses any
 * access to user_ip6 in a connect4 program, even behind a branch).
 */
static __always_inline void fg_sock_addr_redirect(struct bpf_sock_addr *ctx,
						  const struct fg_judgement *j, bool v6)
{
	ctx->user_port = bpf_htons((__u16)cfg_tun_port);
	if (!v6) {
		ctx->user_ip4 = cfg_tun_addr4;
	} else if (j->pkt.family == FG_AF_INET) {	/* an IPv4-mapped destination */
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = cfg_tun_addr4;
	} else {
		ctx->user_ip6[0] = cfg_tun_addr6[0];
		ctx->user_ip6[1] = cfg_tun_addr6[1];
		ctx->user_ip6[2] = cfg_tun_addr6[2];
		ctx->user_ip6[3] = cfg_tun_addr6[3];
	}
}

static __always_inline int fg_sock_addr(struct bpf_sock_addr *ctx, struct fg_judgement *j,
					bool v6)
{
	__u32 r;

	j->cookie = bpf_get_socket_cookie(ctx);
	j->cgroup_id = bpf_get_current_cgroup_id();
	j->pkt.proto = ctx->protocol;
	j->pkt.dport = (__u16)ctx->user_port;
	j->dir = FG_DIR_EGRESS;
	r = fg_sock_addr_judge(j);
	if (!fg_report(j, r))
		return FG_SK_DROP;
	if (j->redirect)
		fg_sock_addr_redirect(ctx, j, v6);
	/* a connect opens a flow; a sendmsg is one datagram: not reported */
	if (cfg_events_allow && j->hook == FG_HOOK_CONNECT)
		fg_emit(j, FG_EV_ALLOW, r);
	return FG_SK_PASS;
}

static __always_inline int fg_sock_addr4(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct fg_judgement j = { .hook = hook };

	j.pkt.family = FG_AF_INET;
	j.pkt.daddr[0] = ctx->user_ip4;
	return fg_sock_addr(ctx, &j, false);
}

static __always_inline int fg_sock_addr6(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct fg_judgement j = { .hook = hook };
	__u32 a[4];

	/* the context allows only 4-byte loads of user_ip6 */
	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
	fg_addr_from_v6(&j.pkt, a, true);
	return fg_sock_addr(ctx, &j, true);
}

SEC("cgroup/connect4")
int fg_connect4(struct bpf_sock_addr *ctx)
{
	return fg_sock_addr4(ctx, FG_HOOK_CONNECT);
}

SEC("cgroup/connect6")
int fg_connect6(struct bpf_sock_addr *ctx)
{
	return fg_sock_addr6(ctx, FG_HOOK_CONNECT);
}

SEC("cgroup/sendmsg4")
int fg_sendmsg4(struct bpf_sock_addr *ctx)
{
	return fg_sock_addr4(ctx, FG_HOOK_SENDMSG);
}

SEC("cgroup/sendmsg6")
int fg_sendmsg6(struct bpf_sock_addr *ctx)
{
	return fg_sock_addr6(ctx, FG_HOOK_SENDMSG);
}

/*
 * A redirected socket shows the peer it asked for, not the agent: the
 * application sees an ordinary connection to its destination.
 */
static __always_inline struct fg_tun_orig *fg_tun_orig_of(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	return bpf_map_lookup_elem(&fg_tun_orig, &cookie);
}

SEC("cgroup/getpeername4")
int fg_getpeername4(struct bpf_sock_addr *ctx)
{
	struct fg_tun_orig *o = fg_tun_orig_of(ctx);

	if (o && o->family == FG_AF_INET) {
		ctx->user_ip4 = o->daddr[0];
		ctx->user_port = o->dport;
	}
	return FG_SK_PASS;
}

SEC("cgroup/getpeername6")
int fg_getpeername6(struct bpf_sock_addr *ctx)
{
	struct fg_tun_orig *o = fg_tun_orig_of(ctx);

	if (!o)
		return FG_SK_PASS;
	if (o->family == FG_AF_INET) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = o->daddr[0];
	} else {
		ctx->user_ip6[0] = o->daddr[0];
		ctx->user_ip6[1] = o->daddr[1];
		ctx->user_ip6[2] = o->daddr[2];
		ctx->user_ip6[3] = o->daddr[3];
	}
	ctx->user_port = o->dport;
	return FG_SK_PASS;
}

SEC("cgroup/sock_release")
int fg_sock_release(struct bpf_sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct fg_tun_orig *o = bpf_map_lookup_elem(&fg_tun_orig, &cookie);

	bpf_map_delete_elem(&fg_sockets, &cookie);
	if (!o)
		return FG_SK_PASS;
	if (o->src.family) {
		__u64 *owner = bpf_map_lookup_elem(&fg_tun_src, &o->src);

		/* the source may be another socket's already: leave that */
		if (owner && *owner == cookie)
			bpf_map_delete_elem(&fg_tun_src, &o->src);
	}
	bpf_map_delete_elem(&fg_tun_orig, &cookie);
	return FG_SK_PASS;
}

/* --- sockops ------------------------------------------------------------- */

/*
 * The cgroup of an accepted socket (inherited from its listener). sockops
 * has no cgroup helper, so read it through the socket; only the exact
 * cgroup is matched here, and a socket of a descendant cgroup stays
 * unbound and is judged packet by packet (see ARCHITECTURE.md).
 */
static __always_inline __u64 fg_sockops_cgroup_id(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct tcp_sock *tp;

	if (!sk)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	return BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup, kn, id);
}

/* The socket's addresses as a packet it receives carries them. */
static __always_inline void fg_sockops_addrs(struct bpf_sock_ops *skops, struct fg_pkt *p)
{
	__u32 a[4];

	if (skops->family == FG_AF_INET_SYS) {
		p->family = FG_AF_INET;
		p->saddr[0] = skops->remote_ip4;
		p->daddr[0] = skops->local_ip4;
	} else {
		a[0] = skops->remote_ip6[0];
		a[1] = skops->remote_ip6[1];
		a[2] = skops->remote_ip6[2];
		a[3] = skops->remote_ip6[3];
		fg_addr_from_v6(p, a, false);
		a[0] = skops->local_ip6[0];
		a[1] = skops->local_ip6[1];
		a[2] = skops->local_ip6[2];
		a[3] = skops->local_ip6[3];
		fg_addr_from_v6(p, a, true);
	}
	/* remote_port is network order in the upper half, local_port host order */
	p->sport = bpf_htons((__u16)bpf_ntohl(skops->remote_port));
	p->dport = bpf_htons((__u16)skops->local_port);
	p->proto = IPPROTO_TCP;
}

/*
 * The peer of an accepted socket: the source workload the tunnel delivers
 * when the agent connected (fg_tun_peer), else the remote address's
 * identity. Its trust domain in *td, FG_PEER_TUNNELLED or its ipcache
 * flags in *flags; false for an unknown peer.
 */
static __always_inline bool fg_sockops_peer(struct fg_judgement *j, __u32 *td, __u32 *flags)
{
	struct fg_tun_peer *tp = fg_tun_peer_lookup(j->pkt.family, j->pkt.saddr, j->pkt.sport);
	struct fg_ipcache_value *peer;

	if (tp) {
		j->peer_id = tp->identity;
		*td = tp->td;
		*flags = FG_PEER_TUNNELLED;
		__builtin_memcpy(j->peer_node, tp->node, 16);
		return true;
	}
	peer = fg_ipcache_lookup(j->pkt.family, j->pkt.saddr);
	if (!peer)
		return false;
	j->peer_id = peer->identity;
	*td = peer->td;
	*flags = peer->flags;
	__builtin_memcpy(j->peer_node, peer->node, 16);
	return true;
}

static __always_inline void fg_sockops_accepted(struct bpf_sock_ops *skops)
{
	struct fg_judgement j = { .hook = FG_HOOK_SOCKOPS };
	struct fg_cgroup_info *local;
	struct fg_sock_binding b;
	__u8 state = FG_SOCK_ALLOWED;
	__u32 peer_td = 0, peer_flags = 0;

	j.cgroup_id = fg_sockops_cgroup_id(skops);
	local = fg_cgroup_lookup(j.cgroup_id);
	fg_sockops_addrs(skops, &j.pkt);
	if (!local || !fg_sockops_peer(&j, &peer_td, &peer_flags))
		return;
	j.cookie = bpf_get_socket_cookie(skops);
	j.local_id = local->identity;

	struct fg_conn c = {
		.local_id = j.local_id,
		.peer_id = j.peer_id,
		.port = (__u16)skops->local_port,
		.proto = IPPROTO_TCP,
		.dir = FG_DIR_INGRESS,
	};
	/* The ingress hook already judged the SYN; a refusal here leaves the
	 * socket unbound, so every packet is judged again and dropped. */
	if (!fg_allowed(fg_decide(&c, local->td, peer_td, &j)))
		return;
	if (fg_check_transport(&j, peer_flags) != FG_NO_OBJECTION)
		return;
	if (peer_flags & FG_PEER_TUNNELLED)
		state = FG_SOCK_TUNNEL;
	else if (j.auth == FG_AUTH_MTLS &&
		 fg_check_auth(j.local_id, j.peer_id, j.peer_node) != FG_NO_OBJECTION)
		state = FG_SOCK_AUTH_WAIT;
	b = fg_binding_of(&j, local->td, peer_td, c.port, state);
	if (bpf_map_update_elem(&fg_sockets, &j.cookie, &b, BPF_ANY) == 0 && cfg_events_allow)
		fg_emit(&j, FG_EV_ALLOW, FG_REASON_ALLOW_POLICY);
}

/*
 * A socket waiting for mTLS retransmits its SYN after milliseconds, so that
 * a cold pair's first connection costs a handshake, not a 1 s SYN RTO. The
 * kernel gives up a connect after n retries, r * (2^(n+1) - 1) for a first
 * RTO of r (longer with net.ipv4.tcp_syn_linear_timeouts): n is raised so
 * that a held connect outlives the agent's exchange (FG_AUTH_HOLD_MS)
 * however short r is; only raised: an application's higher value stays.
 */
static __always_inline void fg_sockops_timeout(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct fg_sock_binding *b = bpf_map_lookup_elem(&fg_sockets, &cookie);
	__u32 jiffies, rto_ms;
	int retries, have = 0;

	if (!b || b->state != FG_SOCK_AUTH_WAIT)
		return;
	jiffies = cfg_auth_syn_rto_ms * cfg_hz / 1000;
	jiffies = jiffies ? jiffies : 1;
	skops->reply = jiffies;
	rto_ms = jiffies * 1000 / (cfg_hz ? cfg_hz : 1);
	for (retries = 1; retries < FG_SYN_RETRIES_MAX; retries++)
		if ((__u64)rto_ms * ((2ULL << retries) - 1) >= FG_AUTH_HOLD_MS)
			break;
	/* a full socket at connect(): the helpers' condition; no error to act on */
	if (!skops->is_fullsock ||
	    bpf_getsockopt(skops, FG_SOL_TCP, FG_TCP_SYNCNT, &have, sizeof(have)) ||
	    have >= retries)
		return;
	bpf_setsockopt(skops, FG_SOL_TCP, FG_TCP_SYNCNT, &retries, sizeof(retries));
}

/*
 * A redirected connection starts (its SYN is about to leave): note its
 * source, the only thing the agent that accepts it will know of it.
 */
static __always_inline void fg_sockops_connect(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct fg_tun_orig *o = bpf_map_lookup_elem(&fg_tun_orig, &cookie);
	struct fg_tun_key k = {};
	struct fg_pkt p = {};

	if (!o)
		return;
	fg_sockops_addrs(skops, &p);	/* the source is the "destination" here */
	k.family = p.family;
	__builtin_memcpy(k.addr, p.daddr, 16);
	k.port = p.dport;
	/* without the note the agent refuses the connection: fail closed */
	if (bpf_map_update_elem(&fg_tun_src, &k, &cookie, BPF_ANY) == 0)
		o->src = k;
}

SEC("sockops")
int fg_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		fg_sockops_connect(skops);
		break;
	case BPF_SOCK_OPS_TIMEOUT_INIT:
		fg_sockops_timeout(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		fg_sockops_accepted(skops);
		break;
	default:
		break;
	}
	return 1;
}

/* --- cgroup_skb ---------------------------------------------------------- */

/* The ipcache flags of the packet's peer: who it goes to, or comes from. */
static __always_inline __u32 fg_skb_peer_flags(const struct fg_pkt *p, __u8 pkt_dir)
{
	struct fg_ipcache_value *peer =
		fg_ipcache_lookup(p->family, pkt_dir == FG_DIR_EGRESS ? p->daddr : p->saddr);

	return peer ? peer->flags : 0;
}

/*
 * A packet of a socket with a binding: re-check what can change. A
 * tunnelled socket (FG_SOCK_TUNNEL) was authenticated by the tunnel; a
 * direct one that a new policy wants encrypted is cut off.
 */
static __always_inline __u32 fg_skb_bound(struct fg_judgement *j, struct fg_sock_binding *b,
					  __u8 pkt_dir)
{
	__u32 gen = 0;
	__u32 r;

	j->local_id = b->local_id;
	j->peer_id = b->peer_id;
	j->rule_id = b->rule_id;
	j->dir = b->dir;
	__builtin_memcpy(j->peer_node, b->peer_node, 16);
	if (pkt_dir == FG_DIR_EGRESS) {
		r = fg_check_source(&j->pkt, b->local_id);
		if (r != FG_NO_OBJECTION)
			return r;
	}
	r = fg_check_quarantine(b->local_id, b->local_td, b->peer_id, b->peer_td);
	if (r != FG_NO_OBJECTION)
		return r;

	__u8 shape;
	void *rules = fg_policy_rules(&gen, &shape);

	if (!rules)
		return FG_REASON_DENY_NO_POLICY;
	if (gen != b->policy_gen) {
		struct fg_conn c = {
			.local_id = b->local_id,
			.peer_id = b->peer_id,
			.port = b->port,
			.proto = b->proto,
			.dir = b->dir,
		};

		r = fg_policy_match(rules, shape, &c, j);
		if (!fg_allowed(r))
			return r;
		if (b->state != FG_SOCK_TUNNEL &&
		    fg_check_transport(j, fg_skb_peer_flags(&j->pkt, pkt_dir)) != FG_NO_OBJECTION)
			return FG_REASON_DENY_NO_TUNNEL;
		b->rule_id = j->rule_id;
		b->auth = j->auth;
		b->policy_gen = gen;
	}
	if (b->auth == FG_AUTH_MTLS && b->state != FG_SOCK_TUNNEL) {
		r = fg_check_auth(b->local_id, b->peer_id, b->peer_node);
		if (r != FG_NO_OBJECTION)
			return r;
		b->state = FG_SOCK_ALLOWED;
	}
	return FG_REASON_ALLOW_ESTABLISHED;
}

/*
 * The end of a redirected connection: once the application closed it,
 * sock_release has forgotten its binding, but its FIN and the ACKs that
 * follow still travel to and from the agent's redirect listener. Only
 * packets that open nothing pass: a new connection to the listener must
 * come redirected, bound, through the connect hook.
 */
static __always_inline bool fg_tun_listener_end(const struct fg_pkt *p, __u8 pkt_dir)
{
	bool egress = pkt_dir == FG_DIR_EGRESS;
	const __u32 *addr = egress ? p->daddr : p->saddr;
	__u16 port = egress ? p->dport : p->sport;

	if (!cfg_tun_port || p->proto != IPPROTO_TCP || fg_pkt_opens(p) ||
	    port != bpf_htons((__u16)cfg_tun_port))
		return false;
	if (p->family == FG_AF_INET)
		return cfg_tun_addr4 && addr[0] == cfg_tun_addr4;
	return addr[0] == cfg_tun_addr6[0] && addr[1] == cfg_tun_addr6[1] &&
	       addr[2] == cfg_tun_addr6[2] && addr[3] == cfg_tun_addr6[3] &&
	       (addr[0] | addr[1] | addr[2] | addr[3]);
}

/*
 * A packet of a socket without a binding (UDP, raw, pre-existing sockets,
 * and a connection's first packets before sockops bound it). Its peer is
 * the source workload a tunnel delivers when the agent's end of the
 * connection is in fg_tun_peer, else the peer address's identity.
 */
static __always_inline __u32 fg_skb_unbound(struct __sk_buff *skb, struct fg_judgement *j,
					    __u8 pkt_dir)
{
	struct fg_cgroup_info *local = fg_identity_skb(skb);
	bool egress = pkt_dir == FG_DIR_EGRESS;
	const __u32 *addr = egress ? j->pkt.daddr : j->pkt.saddr;
	struct fg_ipcache_value *peer;
	struct fg_tun_peer *tp;
	__u32 r;

	if (!local)
		return FG_REASON_DENY_NO_IDENTITY;
	j->local_id = local->identity;
	if (egress) {
		r = fg_check_source(&j->pkt, local->identity);
		if (r != FG_NO_OBJECTION)
			return r;
	}
	if (fg_tun_listener_end(&j->pkt, pkt_dir))
		return FG_REASON_ALLOW_ESTABLISHED;
	tp = fg_tun_peer_lookup(j->pkt.family, addr, egress ? j->pkt.dport : j->pkt.sport);
	if (tp) {
		j->peer_id = tp->identity;
		__builtin_memcpy(j->peer_node, tp->node, 16);
		return fg_judge_packet(j, local->td, tp->td, FG_PEER_TUNNELLED, pkt_dir);
	}
	peer = fg_ipcache_lookup(j->pkt.family, addr);
	if (!peer)
		return FG_REASON_DENY_UNKNOWN_PEER;
	j->peer_id = peer->identity;
	__builtin_memcpy(j->peer_node, peer->node, 16);
	return fg_judge_packet(j, local->td, peer->td, peer->flags, pkt_dir);
}

static __always_inline int fg_skb(struct __sk_buff *skb, __u8 hook, __u8 pkt_dir)
{
	struct fg_judgement j = { .hook = hook, .dir = pkt_dir };
	struct fg_sock_binding *b;
	__u32 r;
	int err;

	j.cookie = bpf_get_socket_cookie(skb);
	j.cgroup_id = bpf_skb_cgroup_id(skb);
	err = fg_parse_l3(skb, 0, &j.pkt);
	if (err == FG_PARSE_NOT_IP)
		return FG_SK_PASS;
	if (err != FG_PARSE_OK) {	/* fragments too: the socket is ours */
		r = FG_REASON_DENY_MALFORMED;
	} else {
		b = bpf_map_lookup_elem(&fg_sockets, &j.cookie);
		r = b ? fg_skb_bound(&j, b, pkt_dir) : fg_skb_unbound(skb, &j, pkt_dir);
	}
	return fg_report(&j, r) ? FG_SK_PASS : FG_SK_DROP;
}

SEC("cgroup_skb/egress")
int fg_skb_egress(struct __sk_buff *skb)
{
	return fg_skb(skb, FG_HOOK_SKB_EGRESS, FG_DIR_EGRESS);
}

SEC("cgroup_skb/ingress")
int fg_skb_ingress(struct __sk_buff *skb)
{
	return fg_skb(skb, FG_HOOK_SKB_INGRESS, FG_DIR_INGRESS);
}

/* --- TC: the node perimeter ---------------------------------------------- */

static __always_inline void fg_flow_key_of(struct fg_flow_key *k, const struct fg_pkt *p,
					   bool reverse)
{
	__builtin_memcpy(k->saddr, reverse ? p->daddr : p->saddr, 16);
	__builtin_memcpy(k->daddr, reverse ? p->saddr : p->daddr, 16);
	k->sport = reverse ? p->dport : p->sport;
	k->dport = reverse ? p->sport : p->dport;
	k->proto = p->proto;
	k->family = p->family;
	k->pad = 0;
}

/* A flow entry still valid for these identities under the current policy. */
static __always_inline bool fg_flow_valid(struct fg_judgement *j, const struct fg_flow_value *v)
{
	__u32 gen = 0;
	__u8 shape;

	if (!v || v->local_id != j->local_id || v->peer_id != j->peer_id)
		return false;
	if (!fg_policy_rules(&gen, &shape) || gen != v->policy_gen)
		return false;
	j->rule_id = v->rule_id;
	j->auth = v->auth;
	return true;
}

static __always_inline __u32 fg_tc_known_flow(struct fg_judgement *j,
					      const struct fg_ipcache_value *local,
					      const struct fg_ipcache_value *peer)
{
	__u32 r = fg_check_quarantine(j->local_id, local->td, j->peer_id, peer->td);

	if (r != FG_NO_OBJECTION)
		return r;
	if (j->auth == FG_AUTH_MTLS) {
		r = fg_check_auth(j->local_id, j->peer_id, j->peer_node);
		if (r != FG_NO_OBJECTION)
			return r;
	}
	return FG_REASON_ALLOW_ESTABLISHED;
}

static __always_inline __u32 fg_tc_judge(struct fg_judgement *j, __u8 pkt_dir, int parsed)
{
	struct fg_ipcache_value *src = fg_ipcache_lookup(j->pkt.family, j->pkt.saddr);
	struct fg_ipcache_value *dst = fg_ipcache_lookup(j->pkt.family, j->pkt.daddr);
	bool src_local = src && (src->flags & FG_IPC_LOCAL);
	bool dst_local = dst && (dst->flags & FG_IPC_LOCAL);
	struct fg_ipcache_value *local, *peer;
	struct fg_flow_key k;
	__u32 r;

	if (pkt_dir == FG_DIR_INGRESS && src_local)
		return FG_REASON_DENY_SPOOF;	/* our workload's address from outside */
	if (pkt_dir == FG_DIR_INGRESS ? !dst_local : !src_local)
		return FG_REASON_ALLOW_UNMANAGED;
	local = pkt_dir == FG_DIR_INGRESS ? dst : src;
	peer = pkt_dir == FG_DIR_INGRESS ? src : dst;
	if (!local)
		return FG_REASON_ALLOW_UNMANAGED;	/* verifier: implied by *_local */
	j->local_id = local->identity;
	if (parsed == FG_PARSE_FRAGMENT)
		return FG_REASON_DENY_MALFORMED;
	if (!peer)
		return FG_REASON_DENY_UNKNOWN_PEER;
	j->peer_id = peer->identity;
	__builtin_memcpy(j->peer_node, peer->node, 16);

	fg_flow_key_of(&k, &j->pkt, false);
	if (fg_flow_valid(j, bpf_map_lookup_elem(&fg_flows, &k)))
		return fg_tc_known_flow(j, local, peer);
	/* a SYN opens a connection of its own: never a reply of a known flow */
	fg_flow_key_of(&k, &j->pkt, true);
	if (!fg_pkt_opens(&j->pkt) && fg_flow_valid(j, bpf_map_lookup_elem(&fg_flows, &k)))
		return fg_tc_known_flow(j, local, peer);

	r = fg_judge_packet(j, local->td, peer->td, peer->flags, pkt_dir);
	if (fg_allowed(r)) {
		struct fg_flow_value v = {
			.local_id = j->local_id,
			.peer_id = j->peer_id,
			.rule_id = j->rule_id,
			.policy_gen = j->policy_gen,
			.auth = j->auth,
		};

		fg_flow_key_of(&k, &j->pkt, false);
		/* a new flow entry is a new flow: reported, its packets are not */
		if (bpf_map_update_elem(&fg_flows, &k, &v, BPF_ANY) == 0 && cfg_events_allow)
			fg_emit(j, FG_EV_ALLOW, r);
	}
	return r;
}

static __always_inline int fg_tc(struct __sk_buff *skb, __u8 hook, __u8 pkt_dir)
{
	struct fg_judgement j = { .hook = hook, .dir = pkt_dir };
	int err = fg_parse_l3(skb, FG_ETH_HLEN, &j.pkt);
	__u32 r;

	if (err == FG_PARSE_NOT_IP)
		return FG_TC_ACT_UNSPEC;
	r = err >= FG_PARSE_OK ? fg_tc_judge(&j, pkt_dir, err) : FG_REASON_DENY_MALFORMED;
	return fg_report(&j, r) ? FG_TC_ACT_UNSPEC : FG_TC_ACT_SHOT;
}

SEC("tc")
int fg_tc_ingress(struct __sk_buff *skb)
{
	return fg_tc(skb, FG_HOOK_TC_INGRESS, FG_DIR_INGRESS);
}

SEC("tc")
int fg_tc_egress(struct __sk_buff *skb)
{
	return fg_tc(skb, FG_HOOK_TC_EGRESS, FG_DIR_EGRESS);
}

/* --- quarantine tear-down ------------------------------------------------ */

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/*
 * The identities a TCP socket serves: its binding when it has one, else the
 * identity of its cgroup (sockets older than the agent, or unbound ones).
 */
static __always_inline bool fg_sock_quarantined(struct sock_common *skc)
{
	__u64 cookie = bpf_get_socket_cookie(skc);
	struct fg_sock_binding *b = bpf_map_lookup_elem(&fg_sockets, &cookie);
	struct fg_cgroup_info *info;
	struct sock *sk;

	if (b)
		return fg_check_quarantine(b->local_id, b->local_td, b->peer_id, b->peer_td) !=
		       FG_NO_OBJECTION;
	sk = (struct sock *)bpf_skc_to_tcp_sock(skc);
	if (!sk)
		return false;
	info = fg_cgroup_lookup(BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id));
	return info && fg_check_quarantine(info->identity, info->td, 0, 0) != FG_NO_OBJECTION;
}

/*
 * Run by the agent in each workload's network namespace after a quarantine
 * change: destroys (ECONNABORTED to the application) every TCP socket of a
 * quarantined identity or talking to one, and writes each destroyed
 * socket's cookie to the iterator output so the agent can count them.
 */
SEC("iter/tcp")
int fg_iter_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	__u64 cookie;

	if (!skc)
		return 0;
	/* libbpf 1.1 rejects the kfunc when struct sock_common is only a
	 * forward declaration in our BTF: reading a field emits the full type */
	if (skc->skc_family != FG_AF_INET_SYS && skc->skc_family != FG_AF_INET6_SYS)
		return 0;
	/* a listener is no connection: the workload serves again on release */
	if (skc->skc_state == FG_TCP_LISTEN)
		return 0;
	if (!fg_sock_quarantined(skc))
		return 0;
	cookie = bpf_get_socket_cookie(skc);
	if (bpf_sock_destroy(skc) == 0)
		bpf_seq_write(ctx->meta->seq, &cookie, sizeof(cookie));
	return 0;
}

/* --- cutting the sockets of a trust domain no longer trusted -------------- */

/*
 * The trust domain whose authenticated sockets fg_iter_auth cuts, set by
 * the agent (through the skeleton's .bss) before each run; 0 cuts nothing.
 */
volatile __u32 fg_cut_td = 0;

/*
 * Run by the agent in each workload's network namespace after it removed
 * the fg_auth entries of a trust domain whose bundle was deleted or
 * revoked: destroys every TCP socket that policy binds to mTLS with a peer
 * of that trust domain and whose pair has no valid authentication left,
 * connected or still waiting for one, and writes each destroyed socket's
 * cookie to the iterator output.
 */
SEC("iter/tcp")
int fg_iter_auth(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct fg_sock_binding *b;
	__u32 td = fg_cut_td;
	__u64 cookie;

	if (!skc || !td)
		return 0;
	if (skc->skc_family != FG_AF_INET_SYS && skc->skc_family != FG_AF_INET6_SYS)
		return 0;
	if (skc->skc_state == FG_TCP_LISTEN)
		return 0;
	cookie = bpf_get_socket_cookie(skc);
	b = bpf_map_lookup_elem(&fg_sockets, &cookie);
	if (!b || b->auth != FG_AUTH_MTLS || b->peer_td != td)
		return 0;
	if (fg_check_auth(b->local_id, b->peer_id, b->peer_node) == FG_NO_OBJECTION)
		return 0;
	if (bpf_sock_destroy(skc) == 0)
		bpf_seq_write(ctx->meta->seq, &cookie, sizeof(cookie));
	return 0;
}
